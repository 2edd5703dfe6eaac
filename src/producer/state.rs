//! The producer's state: Kinesis records being built, queued and in flight, per shard.

use super::*;

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/// A user record admitted and not yet answered (its answer goes to the
/// slot of the Kinesis record that carries it, at its position there; its
/// TTL runs from the arrival of that Kinesis record's oldest user record).
#[derive(Clone, Copy)]
pub(crate) struct User {
    /// The flush epoch it was put in.
    pub(crate) epoch: u64,
    /// Bytes of buffer cap it holds.
    pub(crate) size: u32,
}

/// The bytes of buffer cap a user record holds: its data and keys.
/// How a user record is routed: by its effective hash key, and `whole`
/// when its data is itself an aggregate ([`is_aggregate`]), sent alone.
#[derive(Clone, Copy)]
pub(crate) struct Routing {
    pub(crate) hash: u128,
    pub(crate) whole: bool,
}

/// Whether a user record's data is itself an aggregated record: the
/// magic, and a body whose MD5 is its trailer, as a consumer tells one.
/// Such a record is sent alone, as it is: aggregated again, it would be a
/// user record holding an aggregate, which no consumer reads twice (the
/// KCL deaggregates once and would hand over the inner aggregate's bytes).
pub(crate) fn is_aggregate(data: &[u8]) -> bool {
    matches!(
        crate::Options::new().envelope(data),
        Ok(crate::Envelope::Aggregated { .. })
    )
}

pub(crate) fn held_bytes(r: &Record<'_>) -> usize {
    r.data.len() + r.partition_key.len() + r.explicit_hash_key.map_or(0, str::len)
}

/// The user records of a Kinesis record, counted rather than listed (a
/// list would be one more cache line to touch per record): how many, the
/// bytes of buffer cap they hold, and how many were put in each flush
/// epoch, in order.
#[derive(Default)]
pub(crate) struct Users {
    pub(crate) count: usize,
    pub(crate) bytes: usize,
    /// (epoch, records), oldest first.
    pub(crate) epochs: Vec<(u64, usize)>,
}

impl Users {
    pub(crate) fn one(u: User) -> Self {
        let mut users = Users::default();
        users.push(u);
        users
    }

    pub(crate) fn push(&mut self, u: User) {
        self.count += 1;
        self.bytes += u.size as usize;
        match self.epochs.last_mut() {
            Some((e, n)) if *e == u.epoch => *n += 1,
            _ => self.epochs.push((u.epoch, 1)),
        }
    }

    /// Each record's epoch, in order.
    pub(crate) fn epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.epochs.iter().flat_map(|&(e, n)| std::iter::repeat_n(e, n))
    }
}

/// The time, read from the clock once, and only if it is needed: most user
/// records join an aggregate that started before them and need no time of
/// their own.
#[derive(Default)]
pub(crate) struct Clock(Option<Instant>);

impl Clock {
    pub(crate) fn at(t: Instant) -> Self {
        Clock(Some(t))
    }
    pub(crate) fn now(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

pub(crate) enum Payload {
    /// An aggregate whose MD5 is written when its call is sent, two at a
    /// time (see `pump::digest_all`), or when it is read.
    Pending(ShardAggregate<Undigested>),
    Aggregate(ShardAggregate),
    Plain(OwnedRecord),
}

/// A Kinesis record: ready to send, in flight, or waiting to retry.
pub(crate) struct KRecord {
    pub(crate) payload: Payload,
    /// The explicit hash key it is put with (an aggregate's: its first
    /// user record's effective hash key, which routes it to its shard).
    pub(crate) ehk: Option<String>,
    pub(crate) shard_id: Arc<str>,
    /// Its user records, and where their answer goes.
    pub(crate) users: Users,
    pub(crate) slot: SlotTx,
    pub(crate) attempts: Vec<Attempt>,
    /// The oldest user record's deadline (received + TTL).
    pub(crate) deadline: Instant,
    /// The oldest user record's arrival.
    pub(crate) oldest: Instant,
    /// When it goes at the latest: its shard's closing time, at most
    /// `record_max_buffered_time` after its oldest user record arrived.
    pub(crate) send_by: Instant,
    /// Not before: backoff.
    pub(crate) not_before: Instant,
    /// When it became ready, or its last attempt ended.
    pub(crate) since: Instant,
}

impl KRecord {
    pub(crate) fn partition_key(&self) -> &str {
        match &self.payload {
            Payload::Pending(a) => a.partition_key(),
            Payload::Aggregate(a) => a.partition_key(),
            Payload::Plain(r) => &r.partition_key,
        }
    }
    /// Its data blob, once an aggregate's MD5 is written
    /// ([`digest`](Self::digest) comes first; a pending aggregate has no
    /// data to read yet: empty).
    pub(crate) fn data(&self) -> &[u8] {
        match &self.payload {
            Payload::Pending(_) => {
                debug_assert!(false, "an aggregate read before its MD5 was written");
                &[]
            }
            Payload::Aggregate(a) => a.data(),
            Payload::Plain(r) => &r.data,
        }
    }
    /// The pending aggregate, taken out to be digested (put the digested
    /// one back with `Payload::Aggregate`).
    pub(crate) fn take_pending(&mut self) -> Option<ShardAggregate<Undigested>> {
        if !matches!(self.payload, Payload::Pending(_)) {
            return None;
        }
        match std::mem::replace(&mut self.payload, Payload::Plain(OwnedRecord::default())) {
            Payload::Pending(a) => Some(a),
            _ => None,
        }
    }
    /// Writes an aggregate's MD5, if not yet written.
    pub(crate) fn digest(&mut self) {
        if let Some(a) = self.take_pending() {
            self.payload = Payload::Aggregate(a.digest());
        }
    }
    /// What Kinesis counts against its limits.
    pub(crate) fn size(&self) -> usize {
        match &self.payload {
            Payload::Pending(a) => a.counted_len(),
            Payload::Aggregate(a) => a.counted_len(),
            Payload::Plain(r) => r.data.len() + r.partition_key.len(),
        }
    }
    pub(crate) fn aggregated(&self) -> bool {
        !matches!(self.payload, Payload::Plain(_))
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
        let (records, bytes) = (
            crate::SHARD_RECORDS_PER_SECOND as f64 * f,
            crate::SHARD_BYTES_PER_SECOND as f64 * f,
        );
        Bucket {
            records,
            bytes,
            last: now,
            rate_records: records,
            rate_bytes: bytes,
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

/// The producer's books for one shard of the map, beside the shard's
/// aggregate in the `ShardedAggregator` (at the same index).
pub(crate) struct ShardState {
    pub(crate) id: Arc<str>,
    /// The user records in the shard's aggregate, and where their answer
    /// goes.
    pub(crate) users: Users,
    pub(crate) slot: SlotTx,
    /// When the open aggregate goes at the latest ([`close_time`] of its
    /// first record's arrival); `None` while none is open.
    pub(crate) close_at: Option<Instant>,
    /// Arrival of the aggregate's oldest record (its first, but for
    /// records routed again after a reshard, which keep their Kinesis
    /// record's).
    pub(crate) oldest: Option<Instant>,
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
            users: Users::default(),
            slot: SlotTx::new(),
            close_at: None,
            oldest: None,
            ready: VecDeque::new(),
            retry: VecDeque::new(),
            bucket: Bucket::new(cfg.rate_limit, now),
            in_flight: 0,
        }
    }

    /// `done`, the aggregate of the user records in `users` (its MD5 not
    /// yet written: that is done when it is sent), as a Kinesis
    /// record with their slot; the next aggregate starts afresh. A single
    /// user record goes out unaggregated, as the KPL sends it (its buffer
    /// goes back to `agg`).
    pub(crate) fn seal(
        &mut self,
        done: ShardAggregate<Undigested>,
        agg: &mut ShardedAggregator,
        cfg: &ProducerConfig,
        now: Instant,
    ) -> KRecord {
        let users = std::mem::take(&mut self.users);
        let slot = std::mem::replace(&mut self.slot, SlotTx::new());
        let oldest = self.oldest.take().unwrap_or(now);
        let latest = oldest + cfg.record_max_buffered_time;
        let send_by = self.close_at.take().map_or(latest, |c| c.min(latest));
        let (payload, ehk) = if done.record_count() == 1 {
            let done = done.digest();
            let single = match crate::deaggregate(done.data()) {
                Ok(Deaggregated::Aggregated(a)) => a.records().next().map(OwnedRecord::from),
                _ => None,
            };
            match single {
                Some(r) => {
                    agg.recycle(done);
                    let ehk = r.explicit_hash_key.clone();
                    (Payload::Plain(r), ehk)
                }
                None => {
                    let ehk = done.explicit_hash_key().to_owned();
                    (Payload::Aggregate(done), Some(ehk))
                }
            }
        } else {
            let ehk = done.explicit_hash_key().to_owned();
            (Payload::Pending(done), Some(ehk))
        };
        KRecord {
            payload,
            ehk,
            shard_id: self.id.clone(),
            users,
            slot,
            attempts: Vec::new(),
            deadline: oldest + cfg.record_ttl,
            oldest,
            send_by,
            not_before: now,
            since: now,
        }
    }
}

pub(crate) struct State {
    /// The shards' aggregates, the map and the partition keys' MD5s.
    pub(crate) agg: ShardedAggregator,
    /// The books of each shard of `agg`'s map, at the same index.
    pub(crate) shards: Vec<ShardState>,
    /// Kinesis records that landed on a shard the map did not know, kept
    /// until the map is refreshed: (record, landing shard, sequence number).
    pub(crate) misrouted: Vec<(KRecord, String, String)>,
    pub(crate) refresh_wanted: bool,
    pub(crate) refreshing: bool,
    /// A failed refresh is tried again from then.
    pub(crate) refresh_after: Instant,
    pub(crate) refresh_failures: u32,
    /// Flush: complete every aggregate now.
    pub(crate) flush_now: bool,
    /// Current epoch, and user records outstanding per epoch from `base`.
    pub(crate) epoch: u64,
    pub(crate) base: u64,
    pub(crate) outstanding: VecDeque<usize>,
    /// User records buffered or in flight.
    pub(crate) pending: usize,
    pub(crate) next_rotation: usize,
    /// Draws the retries' jitter.
    pub(crate) jitter: crate::backoff::Jitter,
    /// When the pump means to look next. It is woken sooner only when
    /// something must go before then, or a full call's worth of Kinesis
    /// records became ready since it last looked (`fresh`): looking costs a
    /// pass over every shard, too much to pay for every aggregate.
    pub(crate) next_look: Instant,
    /// Kinesis records, and their bytes, that became ready since the pump
    /// last looked.
    pub(crate) fresh: (usize, usize),
    /// The origin of the shards' closing times ([`close_time`]).
    pub(crate) anchor: Instant,
    /// While a batch is admitted ([`Batch`]), its books; else empty.
    pub(crate) batch: Batch,
}

/// The slots the user records of a batch admitted under one lock
/// (`Producer::try_put_many`) wait on, each taken (its count raised) once,
/// after the batch's records are written, rather than after each record's
/// bytes: an atomic there waits for those stores to land, and that is
/// where much of a record's time went.
#[derive(Default)]
pub(crate) struct Batch {
    /// Per shard, while a record of the batch waits on the shard's
    /// current slot: that slot's entry; else [`NO_ENTRY`]. Empty when no
    /// batch is being admitted.
    open: Vec<u32>,
    entries: Vec<Entry>,
}

/// A slot records of a batch wait on.
enum Entry {
    /// The current slot of this shard.
    Open(usize),
    /// A slot taken when its aggregate was sealed during the batch.
    Taken(Arc<Slot>),
}

/// No entry in [`Batch`]'s `open`.
const NO_ENTRY: u32 = u32::MAX;

impl Batch {
    /// Starts a batch over `shards` shards.
    pub(crate) fn begin(&mut self, shards: usize) {
        self.open.clear();
        self.open.resize(shards, NO_ENTRY);
        self.entries.clear();
    }

    /// The entry of shard `i`'s current slot, made when no record of the
    /// batch waits on it yet.
    pub(crate) fn entry(&mut self, i: usize) -> u32 {
        if let Some(&e) = self.open.get(i)
            && e != NO_ENTRY
        {
            return e;
        }
        let e = self.entries.len() as u32;
        self.entries.push(Entry::Open(i));
        if let Some(o) = self.open.get_mut(i) {
            *o = e;
        }
        e
    }

    /// Shard `i`'s slot is about to be replaced (its aggregate sealed):
    /// takes it now for the batch's records that wait on it. Nothing
    /// outside a batch.
    pub(crate) fn sealing(&mut self, i: usize, slot: &Arc<Slot>) {
        if let Some(o) = self.open.get_mut(i)
            && *o != NO_ENTRY
        {
            self.entries[*o as usize] = Entry::Taken(slot.clone());
            *o = NO_ENTRY;
        }
    }

    /// Ends the batch: its slots by entry, the ones still open taken from
    /// `shards` now.
    pub(crate) fn end(&mut self, shards: &[ShardState]) -> Vec<Arc<Slot>> {
        self.open.clear();
        self.entries
            .drain(..)
            .map(|e| match e {
                Entry::Open(i) => shards[i].slot.slot().clone(),
                Entry::Taken(s) => s,
            })
            .collect()
    }
}

/// Shards' closing times are spread over the buffered time at about this
/// spacing (fewer moments with fewer shards).
const CLOSING_SPACING: Duration = Duration::from_millis(10);

/// When the aggregate of shard `i` of `n`, whose first user record arrived
/// at `t`, goes at the latest: the last of the shard's closing times at or
/// before `t + buffered`. A shard's closing times are `buffered` apart, at
/// its own phase: the shards are spread over about `buffered / 10 ms`
/// phases from `anchor` (the producer's start). Under load, a shard's next aggregate opens as soon as
/// its last one closed and so waits the whole buffered time, while the
/// shards' aggregates fall due at different moments instead of all at
/// once (which would make every call's answer wait for all of them to be
/// digested, encoded, signed and sent). An aggregate opened after a pause
/// may go sooner than `buffered`; never later.
pub(crate) fn close_time(anchor: Instant, i: usize, n: usize, t: Instant, buffered: Duration) -> Instant {
    let latest = t + buffered;
    let period = buffered.as_nanos();
    let phases = (period / CLOSING_SPACING.as_nanos()).clamp(1, n.max(1) as u128);
    let phase = period * (i as u128 % phases) / phases;
    let since = latest.saturating_duration_since(anchor).as_nanos();
    if period == 0 || since < phase {
        return latest;
    }
    let back = (since - phase) % period;
    // `back` < `buffered`, so this is after `t`.
    latest - Duration::from_nanos(back as u64)
}

/// Queues a Kinesis record that is ready. `true` when the pump should look
/// now: the record must go before the pump means to look, or a full call's
/// worth became ready since it last looked.
fn enqueue(
    sh: &mut ShardState,
    k: KRecord,
    fresh: &mut (usize, usize),
    next_look: Instant,
    cfg: &ProducerConfig,
) -> bool {
    let send_by = k.send_by;
    fresh.0 += 1;
    fresh.1 += k.size();
    sh.ready.push_back(k);
    send_by < next_look || fresh.0 >= cfg.collection_max_count || fresh.1 >= cfg.collection_max_size
}

impl State {
    /// Completes shard `i`'s aggregate into a Kinesis record.
    pub(crate) fn complete(&mut self, i: usize, cfg: &ProducerConfig, now: Instant) -> Option<KRecord> {
        let done = self.agg.complete(i)?;
        self.batch.sealing(i, self.shards[i].slot.slot());
        Some(self.shards[i].seal(done, &mut self.agg, cfg, now))
    }

    /// The shard a hash key goes to: its owner, or in a gap of a map being
    /// changed, the one before the gap (whose queue and rate limit it
    /// shares; it goes alone, so Kinesis routes it by its own key).
    pub(crate) fn shard_for(&self, hash: u128) -> usize {
        let map = self.agg.shard_map();
        map.route_index(hash).unwrap_or_else(|| {
            map.shards()
                .iter()
                .position(|s| s.range.start > hash)
                .unwrap_or(self.shards.len())
                .saturating_sub(1)
        })
    }

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
}

/// The producer's metrics: each a field, a kind and the KPL's name.
macro_rules! metrics {
    ($($field:ident: $kind:ident $macro:ident $name:literal,)*) => {
        pub(crate) struct Metrics {
            $(pub(crate) $field: metrics::$kind,)*
            pub(crate) stream: String,
        }

        impl Metrics {
            pub(crate) fn new(stream: &str) -> Self {
                Metrics {
                    $($field: metrics::$macro!($name, "stream" => stream.to_owned()),)*
                    stream: stream.to_owned(),
                }
            }
        }
    };
}

metrics! {
    received: Counter counter "UserRecordsReceived",
    user_put: Counter counter "UserRecordsPut",
    user_data_put: Counter counter "UserRecordsDataPut",
    kinesis_put: Counter counter "KinesisRecordsPut",
    kinesis_data_put: Counter counter "KinesisRecordsDataPut",
    all_errors: Counter counter "AllErrors",
    expired: Counter counter "UserRecordExpired",
    pending: Gauge gauge "UserRecordsPending",
    buffering_time: Histogram histogram "BufferingTime",
    retries_per_record: Histogram histogram "RetriesPerRecord",
    request_time: Histogram histogram "RequestTime",
    user_per_kinesis: Histogram histogram "UserRecordsPerKinesisRecord",
    kinesis_per_request: Histogram histogram "KinesisRecordsPerPutRecordsRequest",
}

impl Metrics {
    pub(crate) fn error(&self, code: &str) {
        self.all_errors.increment(1);
        metrics::counter!("ErrorsByCode", "stream" => self.stream.clone(), "code" => code.to_owned())
            .increment(1);
    }
}

/// Where `route` put a user record: its own slot (a record sent alone),
/// or `None` for the current slot of shard `shard` (the aggregate it went
/// into, whose slot is replaced only when that aggregate is sealed); its
/// position there; and whether the pump should look now (a Kinesis record
/// became ready).
pub(crate) struct Routed {
    pub(crate) woke: bool,
    pub(crate) slot: Option<Arc<Slot>>,
    pub(crate) shard: usize,
    pub(crate) index: u32,
}

impl Routed {
    /// Its slot, taken at once (not in a batch).
    pub(crate) fn take_slot(self, st: &State) -> Arc<Slot> {
        match self.slot {
            Some(s) => s,
            None => st.shards[self.shard].slot.slot().clone(),
        }
    }
}

/// Puts one admitted user record where it goes: its shard's aggregate, or
/// that shard's ready queue when it goes alone (aggregation off, too large
/// to aggregate, in a gap of a map being changed, or whole: see
/// [`Routing`]); `received` is its arrival, `None` for now (a new record).
pub(crate) fn route<R: Sealed>(
    st: &mut State,
    cfg: &ProducerConfig,
    record: R,
    routing: Routing,
    user: User,
    received: Option<Instant>,
    clock: &mut Clock,
) -> Routed {
    let Routing { hash, whole } = routing;
    let inserted = if cfg.aggregation && !whole {
        st.agg.insert(record.record(), Some(hash))
    } else {
        Err(crate::Error::Full)
    };
    let ins = match inserted {
        Ok(ins) => ins,
        Err(e) => {
            if let crate::Error::NoShardForHashKey { .. } = e {
                st.refresh_wanted = true;
            }
            let i = st.shard_for(hash);
            return alone(st, cfg, record.into_owned(), i, user, received, clock);
        }
    };
    let State {
        shards,
        agg,
        fresh,
        next_look,
        anchor,
        batch,
        ..
    } = st;
    let next_look = *next_look;
    let n = shards.len();
    let sh = &mut shards[ins.shard];
    let mut woke = false;
    if let Some(done) = ins.completed {
        batch.sealing(ins.shard, sh.slot.slot());
        let k = sh.seal(*done, agg, cfg, clock.now());
        woke |= enqueue(sh, k, fresh, next_look, cfg);
    }
    match (sh.close_at, received) {
        (None, _) => {
            let t = received.unwrap_or_else(|| clock.now());
            let close = close_time(*anchor, ins.shard, n, t, cfg.record_max_buffered_time);
            sh.close_at = Some(close);
            sh.oldest = Some(t);
            // A new aggregate: it completes by this time at the latest.
            woke |= close < next_look;
        }
        (Some(_), Some(r)) => sh.oldest = Some(sh.oldest.map_or(r, |o| o.min(r))),
        (Some(_), None) => {}
    }
    debug_assert_eq!(sh.users.count, ins.sub_sequence_number);
    let index = sh.users.count as u32;
    sh.users.push(user);
    Routed {
        woke,
        slot: None,
        shard: ins.shard,
        index,
    }
}

/// Queues a user record on shard `i` as a Kinesis record of its own.
fn alone(
    st: &mut State,
    cfg: &ProducerConfig,
    record: OwnedRecord,
    i: usize,
    user: User,
    received: Option<Instant>,
    clock: &mut Clock,
) -> Routed {
    let now = clock.now();
    let received = received.unwrap_or(now);
    let slot = SlotTx::new();
    let routed_slot = slot.slot().clone();
    let sh = &mut st.shards[i];
    let k = KRecord {
        deadline: received + cfg.record_ttl,
        oldest: received,
        send_by: received + cfg.record_max_buffered_time,
        ehk: record.explicit_hash_key.clone(),
        payload: Payload::Plain(record),
        shard_id: sh.id.clone(),
        users: Users::one(user),
        slot,
        attempts: Vec::new(),
        not_before: now,
        since: now,
    };
    Routed {
        woke: enqueue(sh, k, &mut st.fresh, st.next_look, cfg),
        slot: Some(routed_slot),
        shard: i,
        index: 0,
    }
}
