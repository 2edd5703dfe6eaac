//! The producer's state: Kinesis records being built, queued and in flight, per shard.

use super::*;

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

pub(crate) type Sender = oneshot::Sender<Result<Receipt, RecordError>>;

/// A user record admitted and not yet answered.
pub(crate) struct Waiter {
    pub(crate) tx: Sender,
    pub(crate) epoch: u64,
    pub(crate) received: Instant,
    /// Bytes of buffer cap it holds.
    pub(crate) size: u32,
    /// Its attempts in Kinesis records before the one that carries it now
    /// (after a reshard re-routed it).
    pub(crate) prior: Option<Arc<[Attempt]>>,
}

pub(crate) enum Payload {
    Aggregate(Aggregate),
    Plain(OwnedRecord),
}

/// A Kinesis record: ready to send, in flight, or waiting to retry.
pub(crate) struct KRecord {
    pub(crate) payload: Payload,
    /// The explicit hash key it is put with (an aggregate's: its first
    /// user record's effective hash key, which routes it to its shard).
    pub(crate) ehk: Option<String>,
    pub(crate) shard_id: Arc<str>,
    pub(crate) waiters: Vec<Waiter>,
    pub(crate) attempts: Vec<Attempt>,
    /// The oldest waiter's deadline (received + TTL).
    pub(crate) deadline: Instant,
    /// The oldest waiter's arrival.
    pub(crate) oldest: Instant,
    /// Not before: backoff.
    pub(crate) not_before: Instant,
    /// When it became ready, or its last attempt ended.
    pub(crate) since: Instant,
}

impl KRecord {
    pub(crate) fn partition_key(&self) -> &str {
        match &self.payload {
            Payload::Aggregate(a) => a.partition_key(),
            Payload::Plain(r) => &r.partition_key,
        }
    }
    pub(crate) fn data(&self) -> &[u8] {
        match &self.payload {
            Payload::Aggregate(a) => a.data(),
            Payload::Plain(r) => &r.data,
        }
    }
    /// What Kinesis counts against its limits.
    pub(crate) fn size(&self) -> usize {
        self.data().len() + self.partition_key().len()
    }
    pub(crate) fn aggregated(&self) -> bool {
        matches!(self.payload, Payload::Aggregate(_))
    }
}

/// Per-shard token buckets: Kinesis records and bytes per second.
pub(crate) struct Bucket {
    pub(crate) records: f64,
    pub(crate) bytes: f64,
    pub(crate) last: Instant,
    pub(crate) rate_records: f64,
    pub(crate) rate_bytes: f64,
}

impl Bucket {
    pub(crate) fn new(percent: u32, now: Instant) -> Self {
        let f = f64::from(percent) / 100.0;
        Bucket {
            records: 1000.0 * f,
            bytes: 1_048_576.0 * f,
            last: now,
            rate_records: 1000.0 * f,
            rate_bytes: 1_048_576.0 * f,
        }
    }
    pub(crate) fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.records = (self.records + dt * self.rate_records).min(self.rate_records);
        self.bytes = (self.bytes + dt * self.rate_bytes).min(self.rate_bytes);
    }
    /// Takes one record of `size` bytes, or says how long until it can. A
    /// record larger than a full bucket goes when the bucket is full.
    pub(crate) fn take(&mut self, size: usize, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        let need = (size as f64).min(self.rate_bytes);
        if self.records >= 1.0 && self.bytes >= need {
            self.records -= 1.0;
            self.bytes -= size as f64;
            return Ok(());
        }
        let wait_r = (1.0 - self.records).max(0.0) / self.rate_records;
        let wait_b = (need - self.bytes).max(0.0) / self.rate_bytes;
        Err(Duration::from_secs_f64(wait_r.max(wait_b)).max(Duration::from_millis(1)))
    }
}

pub(crate) struct ShardState {
    pub(crate) id: Arc<str>,
    pub(crate) agg: RecordAggregator,
    /// Waiters of the records in `agg`, in order.
    pub(crate) waiters: Vec<Waiter>,
    /// Effective hash key of `agg`'s first record.
    pub(crate) first: u128,
    /// Arrival of `agg`'s first record.
    pub(crate) started: Option<Instant>,
    pub(crate) ready: VecDeque<KRecord>,
    pub(crate) retry: VecDeque<KRecord>,
    pub(crate) bucket: Bucket,
    /// Kinesis records of this shard in flight.
    pub(crate) in_flight: usize,
}

impl ShardState {
    pub(crate) fn new(id: Arc<str>, cfg: &ProducerConfig, now: Instant) -> Self {
        ShardState {
            id,
            agg: RecordAggregator::with_limit(cfg.aggregation_max_size).unwrap_or_default(),
            waiters: Vec::new(),
            first: 0,
            started: None,
            ready: VecDeque::new(),
            retry: VecDeque::new(),
            bucket: Bucket::new(cfg.rate_limit, now),
            in_flight: 0,
        }
    }

    /// Completes the current aggregate into a Kinesis record.
    pub(crate) fn complete(&mut self, ttl: Duration, now: Instant) -> Option<KRecord> {
        let aggregate = self.agg.finish()?;
        let waiters = std::mem::take(&mut self.waiters);
        self.started = None;
        Some(to_krecord(
            &mut self.agg,
            aggregate,
            waiters,
            self.first,
            &self.id,
            ttl,
            now,
        ))
    }
}

/// A completed aggregate (its records' `waiters`) as a Kinesis record. A
/// single user record goes out unaggregated, as the KPL sends it (its
/// buffer goes back to `agg`).
pub(crate) fn to_krecord(
    agg: &mut RecordAggregator,
    done: Aggregate,
    waiters: Vec<Waiter>,
    first: u128,
    id: &Arc<str>,
    ttl: Duration,
    now: Instant,
) -> KRecord {
    let oldest = waiters.iter().map(|w| w.received).min().unwrap_or(now);
    let single = if done.record_count() == 1 {
        match crate::deaggregate(done.data()) {
            Ok(Deaggregated::Aggregated(a)) => a.records().next().map(OwnedRecord::from),
            _ => None,
        }
    } else {
        None
    };
    let (payload, ehk) = match single {
        Some(r) => {
            agg.recycle(done);
            let ehk = r.explicit_hash_key.clone();
            (Payload::Plain(r), ehk)
        }
        None => (Payload::Aggregate(done), Some(hash_text(first))),
    };
    KRecord {
        payload,
        ehk,
        shard_id: id.clone(),
        waiters,
        attempts: Vec::new(),
        deadline: oldest + ttl,
        oldest,
        not_before: now,
        since: now,
    }
}

pub(crate) fn hash_text(key: u128) -> String {
    let mut buf = [0u8; HASH_KEY_MAX_DIGITS];
    write_hash_key(key, &mut buf).to_owned()
}

pub(crate) struct State {
    pub(crate) shards: Vec<ShardState>,
    pub(crate) map: ShardMap,
    /// Kinesis records that landed on a shard the map did not know, kept
    /// until the map is refreshed: (record, landing shard, sequence number).
    pub(crate) misrouted: Vec<(KRecord, String, String)>,
    pub(crate) refresh_wanted: bool,
    pub(crate) refreshing: bool,
    /// Flush: complete every aggregate now.
    pub(crate) flush_now: bool,
    /// Current epoch, and user records outstanding per epoch from `base`.
    pub(crate) epoch: u64,
    pub(crate) base: u64,
    pub(crate) outstanding: VecDeque<usize>,
    /// User records buffered or in flight.
    pub(crate) pending: usize,
    pub(crate) next_rotation: usize,
    pub(crate) rng: u64,
    pub(crate) keys: KeyHashes,
}

/// Partition keys' MD5s, remembered: a producer sees the same keys again
/// and again, and a lookup costs a tenth of the MD5. Direct-mapped by the
/// key index's own hash; a miss computes and replaces.
pub(crate) struct KeyHashes {
    pub(crate) slots: Vec<Option<(Box<str>, u128)>>,
}

impl KeyHashes {
    const SLOTS: usize = 8192;

    pub(crate) fn new() -> Self {
        KeyHashes {
            slots: (0..Self::SLOTS).map(|_| None).collect(),
        }
    }

    pub(crate) fn hash(&mut self, key: &str) -> u128 {
        let i = crate::index::hash_key(key.as_bytes(), 0) as usize % Self::SLOTS;
        match &self.slots[i] {
            Some((k, h)) if **k == *key => *h,
            _ => {
                let h = crate::partition_key_hash(key);
                self.slots[i] = Some((Box::from(key), h));
                h
            }
        }
    }
}

impl State {
    pub(crate) fn settle(&mut self, epoch: u64, n: usize) {
        if let Some(c) = self.outstanding.get_mut((epoch - self.base) as usize) {
            *c -= n.min(*c);
        }
        self.pending -= n.min(self.pending);
    }

    /// The number of epochs before `epoch` still outstanding.
    pub(crate) fn settled_before(&mut self, epoch: u64) -> bool {
        while self.base < self.epoch && self.outstanding.front() == Some(&0) {
            self.outstanding.pop_front();
            self.base += 1;
        }
        self.base >= epoch
    }

    pub(crate) fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

pub(crate) struct Metrics {
    pub(crate) received: metrics::Counter,
    pub(crate) user_put: metrics::Counter,
    pub(crate) user_data_put: metrics::Counter,
    pub(crate) kinesis_put: metrics::Counter,
    pub(crate) kinesis_data_put: metrics::Counter,
    pub(crate) all_errors: metrics::Counter,
    pub(crate) expired: metrics::Counter,
    pub(crate) pending: metrics::Gauge,
    pub(crate) buffering_time: metrics::Histogram,
    pub(crate) retries_per_record: metrics::Histogram,
    pub(crate) request_time: metrics::Histogram,
    pub(crate) user_per_kinesis: metrics::Histogram,
    pub(crate) kinesis_per_request: metrics::Histogram,
    pub(crate) stream: String,
}

impl Metrics {
    pub(crate) fn new(stream: &str) -> Self {
        let s = stream.to_owned();
        Metrics {
            received: metrics::counter!("UserRecordsReceived", "stream" => s.clone()),
            user_put: metrics::counter!("UserRecordsPut", "stream" => s.clone()),
            user_data_put: metrics::counter!("UserRecordsDataPut", "stream" => s.clone()),
            kinesis_put: metrics::counter!("KinesisRecordsPut", "stream" => s.clone()),
            kinesis_data_put: metrics::counter!("KinesisRecordsDataPut", "stream" => s.clone()),
            all_errors: metrics::counter!("AllErrors", "stream" => s.clone()),
            expired: metrics::counter!("UserRecordExpired", "stream" => s.clone()),
            pending: metrics::gauge!("UserRecordsPending", "stream" => s.clone()),
            buffering_time: metrics::histogram!("BufferingTime", "stream" => s.clone()),
            retries_per_record: metrics::histogram!("RetriesPerRecord", "stream" => s.clone()),
            request_time: metrics::histogram!("RequestTime", "stream" => s.clone()),
            user_per_kinesis: metrics::histogram!("UserRecordsPerKinesisRecord", "stream" => s.clone()),
            kinesis_per_request: metrics::histogram!("KinesisRecordsPerPutRecordsRequest", "stream" => s.clone()),
            stream: s,
        }
    }
    pub(crate) fn error(&self, code: &str) {
        self.all_errors.increment(1);
        metrics::counter!("ErrorsByCode", "stream" => self.stream.clone(), "code" => code.to_owned())
            .increment(1);
    }
}

/// Puts one admitted user record where it goes: its shard's aggregate, or
/// that shard's ready queue when it goes alone. `true` when the pump
/// should look now (a Kinesis record became ready).
pub(crate) fn route(
    st: &mut State,
    cfg: &ProducerConfig,
    record: OwnedRecord,
    hash: u128,
    waiter: Waiter,
    now: Instant,
) -> bool {
    let i = match st.map.route_index(hash) {
        Some(i) => i,
        // A gap in the map (it is being changed): the nearest shard;
        // Kinesis routes by hash key, and the result tells the truth.
        None => {
            st.refresh_wanted = true;
            st.map
                .shards()
                .iter()
                .position(|s| s.range.start > hash)
                .unwrap_or(st.shards.len())
                .saturating_sub(1)
        }
    };
    let sh = &mut st.shards[i];
    let alone = |record: OwnedRecord, waiter: Waiter, sh: &mut ShardState| {
        let ehk = record.explicit_hash_key.clone();
        sh.ready.push_back(KRecord {
            deadline: waiter.received + cfg.record_ttl,
            oldest: waiter.received,
            payload: Payload::Plain(record),
            ehk,
            shard_id: sh.id.clone(),
            waiters: vec![waiter],
            attempts: Vec::new(),
            not_before: now,
            since: now,
        });
    };
    if !cfg.aggregation {
        alone(record, waiter, sh);
        return true;
    }
    let mut woke = false;
    if sh.agg.record_count() >= cfg.aggregation_max_count
        && let Some(k) = sh.complete(cfg.record_ttl, now)
    {
        sh.ready.push_back(k);
        woke = true;
    }
    match sh.agg.add(record.as_record()) {
        Ok(done) => {
            if let Some(done) = done {
                // The record did not fit: `done` holds the records before it.
                let waiters = std::mem::take(&mut sh.waiters);
                let k = to_krecord(&mut sh.agg, done, waiters, sh.first, &sh.id, cfg.record_ttl, now);
                sh.ready.push_back(k);
                sh.started = None;
                woke = true;
            }
            if sh.started.is_none() {
                sh.started = Some(waiter.received);
                sh.first = hash;
            }
            sh.waiters.push(waiter);
        }
        // Larger than an aggregate may be: alone, as the KPL sends it.
        Err(_) => {
            alone(record, waiter, sh);
            woke = true;
        }
    }
    woke
}
