//! An in-process producer (feature `producer`): what the KPL does for its
//! users, on tokio and `aws-sdk-kinesis`, with bounded memory and a result
//! for every user record.
//!
//! [`Producer::put`] admits a user record (waiting while the buffers are
//! at their caps) and returns a [`ReceiptFuture`]. Behind it, records are
//! aggregated per shard for at most [`ProducerConfig::record_max_buffered_time`],
//! collected into PutRecords calls (500 entries, 5 MiB), rate-limited per
//! shard with token buckets, sent over at most
//! [`ProducerConfig::max_concurrency`] calls at once, and retried with
//! backoff and jitter within their TTL. Every user record ends in a
//! [`Receipt`] (shard, sequence number, sub-sequence number, every attempt)
//! or a [`RecordError`] saying why: expired, rejected by Kinesis, throttled
//! with `fail_if_throttled`, or the producer shut down first.
//!
//! When a put lands on a shard the map did not expect (the stream was
//! resharded), the map is refreshed with ListShards and everything buffered
//! is routed again. An aggregate that landed on a shard whose range does
//! not hold every one of its user records would be discarded whole by the
//! KCL, so its user records are sent again, routed by the new map; one that
//! fits the shard it landed on is a success.
//!
//! # Examples
//! ```no_run
//! # async fn run(client: aws_sdk_kinesis::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use kinesis_agg::OwnedRecord;
//! use kinesis_agg::producer::{Producer, ProducerConfig};
//! let producer = Producer::new(client, "my-stream", ProducerConfig::default()).await?;
//! let mut receipts = Vec::new();
//! for i in 0..10_000 {
//!     let record = OwnedRecord { partition_key: format!("sensor-{}", i % 100), explicit_hash_key: None, data: b"21.5".to_vec() };
//!     receipts.push(producer.put(record).await?);
//! }
//! producer.flush().await;
//! for r in receipts {
//!     let receipt = r.await?;
//!     println!("{} {} {:?}", receipt.shard_id, receipt.sequence_number, receipt.sub_sequence_number);
//! }
//! producer.shutdown().await;
//! # Ok(()) }
//! ```

use std::borrow::ToOwned;
use std::boxed::Box;
use std::collections::VecDeque;
use std::fmt;
use std::format;
use std::future::Future;
use std::pin::Pin;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use std::vec;
use std::vec::Vec;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::sync::{Notify, Semaphore, oneshot};

use crate::{
    Aggregate, Deaggregated, HASH_KEY_MAX_DIGITS, OwnedRecord, PUT_RECORDS_MAX_BYTES,
    PUT_RECORDS_MAX_ENTRIES, RecordAggregator, ShardMap, effective_hash_key, write_hash_key,
};

/// The largest user record a stream takes by default (1 MiB); streams
/// configured for large records take up to 10 MiB.
pub const DEFAULT_MAX_USER_RECORD_SIZE: usize = 1 << 20;

/// The producer's settings. The defaults are the KPL's where it has one.
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    pub(crate) record_max_buffered_time: Duration,
    pub(crate) aggregation: bool,
    pub(crate) aggregation_max_size: usize,
    pub(crate) aggregation_max_count: usize,
    pub(crate) collection_max_count: usize,
    pub(crate) collection_max_size: usize,
    pub(crate) max_user_record_size: usize,
    pub(crate) rate_limit: u32,
    pub(crate) record_ttl: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_concurrency: usize,
    pub(crate) fail_if_throttled: bool,
    pub(crate) max_buffered_bytes: usize,
    pub(crate) max_buffered_records: usize,
    pub(crate) preserve_order: bool,
    pub(crate) first_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            record_max_buffered_time: Duration::from_millis(100),
            aggregation: true,
            aggregation_max_size: 51_200,
            aggregation_max_count: u32::MAX as usize,
            collection_max_count: PUT_RECORDS_MAX_ENTRIES,
            collection_max_size: PUT_RECORDS_MAX_BYTES,
            max_user_record_size: DEFAULT_MAX_USER_RECORD_SIZE,
            rate_limit: 150,
            record_ttl: Duration::from_secs(30),
            request_timeout: Duration::from_secs(6),
            max_concurrency: 24,
            fail_if_throttled: false,
            max_buffered_bytes: 64 << 20,
            max_buffered_records: 1 << 20,
            preserve_order: false,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $t:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, value: $t) -> Self {
            self.$name = value;
            self
        }
    };
}

impl ProducerConfig {
    setter!(
        /// Longest a user record waits to be aggregated and collected before
        /// it is sent (KPL `RecordMaxBufferedTime`, 100 ms).
        record_max_buffered_time: Duration
    );
    setter!(
        /// Aggregate user records (KPL `AggregationEnabled`, on). Off, every
        /// user record is its own Kinesis record.
        aggregation: bool
    );
    setter!(
        /// Largest aggregate, counted as Kinesis counts (data plus outer
        /// partition key; KPL `AggregationMaxSize`, 51,200). A user record
        /// larger than this goes out on its own.
        aggregation_max_size: usize
    );
    setter!(
        /// Most user records in one aggregate (KPL `AggregationMaxCount`).
        aggregation_max_count: usize
    );
    setter!(
        /// Most Kinesis records in one PutRecords call (KPL
        /// `CollectionMaxCount`, 500, the API's limit).
        collection_max_count: usize
    );
    setter!(
        /// Most bytes (data plus partition keys) in one PutRecords call (KPL
        /// `CollectionMaxSize`, 5 MiB, the API's limit).
        collection_max_size: usize
    );
    setter!(
        /// Largest user record accepted by `put` (1 MiB; up to 10 MiB for
        /// streams configured for large records).
        max_user_record_size: usize
    );
    setter!(
        /// Per-shard rate limit in percent of the shard's 1 MiB/s and 1,000
        /// records/s (KPL `RateLimit`, 150: a little over, so that Kinesis
        /// itself does the last of the throttling).
        rate_limit: u32
    );
    setter!(
        /// How long a user record may wait for a successful put before it
        /// fails as expired (KPL `RecordTtl`, 30 s).
        record_ttl: Duration
    );
    setter!(
        /// How long one PutRecords call may take before it counts as failed
        /// and is retried (KPL `RequestTimeout`, 6 s).
        request_timeout: Duration
    );
    setter!(
        /// Most PutRecords calls in flight at once (KPL `MaxConnections`, 24).
        max_concurrency: usize
    );
    setter!(
        /// Fail a user record the first time Kinesis throttles it instead of
        /// retrying (KPL `FailIfThrottled`, off).
        fail_if_throttled: bool
    );
    setter!(
        /// Cap on the bytes of user records buffered or in flight: `put`
        /// waits and `try_put` refuses while it is reached (64 MiB).
        max_buffered_bytes: usize
    );
    setter!(
        /// Cap on the user records buffered or in flight (1,048,576).
        max_buffered_records: usize
    );
    setter!(
        /// Keep each partition key's records in order across retries: at
        /// most one Kinesis record per shard in flight, and a failed one is
        /// retried before anything after it is sent (off; the KPL cannot
        /// promise this). It costs throughput: see the README.
        preserve_order: bool
    );
    setter!(
        /// Backoff before a record's first retry, doubled per retry with full
        /// jitter (100 ms).
        first_backoff: Duration
    );
    setter!(
        /// Longest backoff between retries (5 s).
        max_backoff: Duration
    );

    fn check(&self) -> Result<(), ProducerError> {
        let bad = |what: &str| Err(ProducerError::Config(what.to_owned()));
        if !(crate::MIN_LIMIT..=crate::MAX_LIMIT).contains(&self.aggregation_max_size) {
            return bad("aggregation_max_size must be 30 to 10,485,760");
        }
        if self.aggregation_max_count == 0 {
            return bad("aggregation_max_count must be at least 1");
        }
        if !(1..=PUT_RECORDS_MAX_ENTRIES).contains(&self.collection_max_count) {
            return bad("collection_max_count must be 1 to 500");
        }
        if !(1..=PUT_RECORDS_MAX_BYTES).contains(&self.collection_max_size) {
            return bad("collection_max_size must be 1 to 5 MiB");
        }
        if !(1..=crate::MAX_LIMIT).contains(&self.max_user_record_size) {
            return bad("max_user_record_size must be 1 to 10 MiB");
        }
        if self.rate_limit == 0 || self.max_concurrency == 0 {
            return bad("rate_limit and max_concurrency must be at least 1");
        }
        if self.max_buffered_bytes < self.max_user_record_size + 256 || self.max_buffered_records == 0 {
            return bad(
                "max_buffered_bytes must hold the largest user record, max_buffered_records one record",
            );
        }
        if self.max_buffered_bytes > u32::MAX as usize >> 1
            || self.max_buffered_records > u32::MAX as usize >> 1
        {
            return bad("max_buffered_bytes and max_buffered_records must be below 2^31");
        }
        Ok(())
    }
}

/// Why a producer could not start.
#[derive(Debug)]
pub enum ProducerError {
    /// A setting out of range.
    Config(String),
    /// ListShards failed, or listed no open shard.
    Shards(String),
}

impl fmt::Display for ProducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerError::Config(m) => write!(f, "producer configuration: {m}"),
            ProducerError::Shards(m) => write!(f, "cannot list the stream's shards: {m}"),
        }
    }
}

impl std::error::Error for ProducerError {}

/// One PutRecords attempt of the Kinesis record that carried a user record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Time from when the Kinesis record was ready (or its previous attempt
    /// ended) to the start of this attempt: backoff, rate limiting, waiting
    /// for a free connection.
    pub delay: Duration,
    /// How long the PutRecords call took.
    pub duration: Duration,
    /// The error code, `None` for the attempt that succeeded. Kinesis's
    /// codes (`ProvisionedThroughputExceededException`, `InternalFailure`,
    /// ...) or the producer's own: `Timeout` (no answer within the request
    /// timeout), `Connection` (the call failed before an answer),
    /// `WrongShard` (the aggregate landed on a shard whose range does not
    /// hold all its user records), `ShortResponse`.
    pub error_code: Option<String>,
    /// The error message, when there is one.
    pub error_message: Option<String>,
}

/// What became of a user record that was put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The shard that holds it.
    pub shard_id: Arc<str>,
    /// The sequence number of the Kinesis record that carried it.
    pub sequence_number: Arc<str>,
    /// Its position in that aggregate; `None` when it went out unaggregated.
    pub sub_sequence_number: Option<u64>,
    /// Every attempt, the successful last one included.
    pub attempts: Arc<[Attempt]>,
}

/// Why a user record failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Not put within its TTL.
    Expired,
    /// Kinesis rejected it with an error that retrying does not fix.
    Rejected,
    /// Throttled, with `fail_if_throttled`.
    Throttled,
    /// The producer shut down before it was sent.
    Shutdown,
}

/// A user record that failed for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// Why.
    pub kind: FailureKind,
    /// What happened, in words.
    pub message: String,
    /// Every attempt made.
    pub attempts: Arc<[Attempt]>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after {} attempts)", self.message, self.attempts.len())
    }
}

impl std::error::Error for RecordError {}

/// A user record `put` or `try_put` did not take, handed back.
#[derive(Debug)]
pub enum Rejected {
    /// Invalid: a partition key or explicit hash key Kinesis would refuse,
    /// or data over `max_user_record_size`.
    Invalid {
        /// The record.
        record: OwnedRecord,
        /// Why.
        reason: String,
    },
    /// `try_put` only: the buffers are at their caps.
    Full {
        /// The record.
        record: OwnedRecord,
    },
    /// The producer is shutting down or shut down.
    Shutdown {
        /// The record.
        record: OwnedRecord,
    },
}

impl Rejected {
    /// The record handed back.
    pub fn into_record(self) -> OwnedRecord {
        match self {
            Rejected::Invalid { record, .. } | Rejected::Full { record } | Rejected::Shutdown { record } => {
                record
            }
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Invalid { reason, .. } => write!(f, "invalid user record: {reason}"),
            Rejected::Full { .. } => f.write_str("the producer's buffers are full"),
            Rejected::Shutdown { .. } => f.write_str("the producer is shut down"),
        }
    }
}

impl std::error::Error for Rejected {}

/// The result of one user record, to await.
#[derive(Debug)]
pub struct ReceiptFuture(oneshot::Receiver<Result<Receipt, RecordError>>);

impl ReceiptFuture {
    /// The result if it is there, without waiting (`None`: not yet).
    pub fn try_take(&mut self) -> Option<Result<Receipt, RecordError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(dropped())),
        }
    }
}

fn dropped() -> RecordError {
    RecordError {
        kind: FailureKind::Shutdown,
        message: "the producer was dropped before the record was sent".to_owned(),
        attempts: Arc::from([]),
    }
}

impl Future for ReceiptFuture {
    type Output = Result<Receipt, RecordError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(dropped())))
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

type Sender = oneshot::Sender<Result<Receipt, RecordError>>;

/// A user record admitted and not yet answered.
struct Waiter {
    tx: Sender,
    epoch: u64,
    received: Instant,
    /// Bytes of buffer cap it holds.
    size: u32,
    /// Its attempts in Kinesis records before the one that carries it now
    /// (after a reshard re-routed it).
    prior: Option<Arc<[Attempt]>>,
}

enum Payload {
    Aggregate(Aggregate),
    Plain(OwnedRecord),
}

/// A Kinesis record: ready to send, in flight, or waiting to retry.
struct KRecord {
    payload: Payload,
    /// The explicit hash key it is put with (an aggregate's: its first
    /// user record's effective hash key, which routes it to its shard).
    ehk: Option<String>,
    shard_id: Arc<str>,
    waiters: Vec<Waiter>,
    attempts: Vec<Attempt>,
    /// The oldest waiter's deadline (received + TTL).
    deadline: Instant,
    /// The oldest waiter's arrival.
    oldest: Instant,
    /// Not before: backoff.
    not_before: Instant,
    /// When it became ready, or its last attempt ended.
    since: Instant,
}

impl KRecord {
    fn partition_key(&self) -> &str {
        match &self.payload {
            Payload::Aggregate(a) => a.partition_key(),
            Payload::Plain(r) => &r.partition_key,
        }
    }
    fn data(&self) -> &[u8] {
        match &self.payload {
            Payload::Aggregate(a) => a.data(),
            Payload::Plain(r) => &r.data,
        }
    }
    /// What Kinesis counts against its limits.
    fn size(&self) -> usize {
        self.data().len() + self.partition_key().len()
    }
    fn aggregated(&self) -> bool {
        matches!(self.payload, Payload::Aggregate(_))
    }
}

/// Per-shard token buckets: Kinesis records and bytes per second.
struct Bucket {
    records: f64,
    bytes: f64,
    last: Instant,
    rate_records: f64,
    rate_bytes: f64,
}

impl Bucket {
    fn new(percent: u32, now: Instant) -> Self {
        let f = f64::from(percent) / 100.0;
        Bucket {
            records: 1000.0 * f,
            bytes: 1_048_576.0 * f,
            last: now,
            rate_records: 1000.0 * f,
            rate_bytes: 1_048_576.0 * f,
        }
    }
    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.records = (self.records + dt * self.rate_records).min(self.rate_records);
        self.bytes = (self.bytes + dt * self.rate_bytes).min(self.rate_bytes);
    }
    /// Takes one record of `size` bytes, or says how long until it can. A
    /// record larger than a full bucket goes when the bucket is full.
    fn take(&mut self, size: usize, now: Instant) -> Result<(), Duration> {
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

struct ShardState {
    id: Arc<str>,
    agg: RecordAggregator,
    /// Waiters of the records in `agg`, in order.
    waiters: Vec<Waiter>,
    /// Effective hash key of `agg`'s first record.
    first: u128,
    /// Arrival of `agg`'s first record.
    started: Option<Instant>,
    ready: VecDeque<KRecord>,
    retry: VecDeque<KRecord>,
    bucket: Bucket,
    /// Kinesis records of this shard in flight.
    in_flight: usize,
}

impl ShardState {
    fn new(id: Arc<str>, cfg: &ProducerConfig, now: Instant) -> Self {
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
    fn complete(&mut self, ttl: Duration, now: Instant) -> Option<KRecord> {
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
fn to_krecord(
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

fn hash_text(key: u128) -> String {
    let mut buf = [0u8; HASH_KEY_MAX_DIGITS];
    write_hash_key(key, &mut buf).to_owned()
}

struct State {
    shards: Vec<ShardState>,
    map: ShardMap,
    /// Kinesis records that landed on a shard the map did not know, kept
    /// until the map is refreshed: (record, landing shard, sequence number).
    misrouted: Vec<(KRecord, String, String)>,
    refresh_wanted: bool,
    refreshing: bool,
    /// Flush: complete every aggregate now.
    flush_now: bool,
    /// Current epoch, and user records outstanding per epoch from `base`.
    epoch: u64,
    base: u64,
    outstanding: VecDeque<usize>,
    /// User records buffered or in flight.
    pending: usize,
    next_rotation: usize,
    rng: u64,
    keys: KeyHashes,
}

/// Partition keys' MD5s, remembered: a producer sees the same keys again
/// and again, and a lookup costs a tenth of the MD5. Direct-mapped by the
/// key index's own hash; a miss computes and replaces.
struct KeyHashes {
    slots: Vec<Option<(Box<str>, u128)>>,
}

impl KeyHashes {
    const SLOTS: usize = 8192;

    fn new() -> Self {
        KeyHashes {
            slots: (0..Self::SLOTS).map(|_| None).collect(),
        }
    }

    fn hash(&mut self, key: &str) -> u128 {
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
    fn settle(&mut self, epoch: u64, n: usize) {
        if let Some(c) = self.outstanding.get_mut((epoch - self.base) as usize) {
            *c -= n.min(*c);
        }
        self.pending -= n.min(self.pending);
    }

    /// The number of epochs before `epoch` still outstanding.
    fn settled_before(&mut self, epoch: u64) -> bool {
        while self.base < self.epoch && self.outstanding.front() == Some(&0) {
            self.outstanding.pop_front();
            self.base += 1;
        }
        self.base >= epoch
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

struct Metrics {
    received: metrics::Counter,
    user_put: metrics::Counter,
    user_data_put: metrics::Counter,
    kinesis_put: metrics::Counter,
    kinesis_data_put: metrics::Counter,
    all_errors: metrics::Counter,
    expired: metrics::Counter,
    pending: metrics::Gauge,
    buffering_time: metrics::Histogram,
    retries_per_record: metrics::Histogram,
    request_time: metrics::Histogram,
    user_per_kinesis: metrics::Histogram,
    kinesis_per_request: metrics::Histogram,
    stream: String,
}

impl Metrics {
    fn new(stream: &str) -> Self {
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
    fn error(&self, code: &str) {
        self.all_errors.increment(1);
        metrics::counter!("ErrorsByCode", "stream" => self.stream.clone(), "code" => code.to_owned())
            .increment(1);
    }
}

struct Shared {
    client: Client,
    stream: String,
    cfg: ProducerConfig,
    state: Mutex<State>,
    /// Wakes the pump.
    wake: Notify,
    /// Notified whenever user records are answered (flush waits on it).
    settled: Notify,
    bytes: Semaphore,
    records: Semaphore,
    calls: Arc<Semaphore>,
    closed: AtomicBool,
    stopped: AtomicBool,
    metrics: Metrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half
        // changed in a way that matters more than stopping: go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producer. Cheap to clone: clones share one set of buffers and one
/// background task. Dropping the last clone without
/// [`shutdown`](Producer::shutdown) abandons what is buffered: those user
/// records fail with [`FailureKind::Shutdown`]. See the module
/// documentation.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

/// Stops the background task when the last `Producer` clone goes.
struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.0.stopped.load(Ordering::Acquire) {
            abandon_all(&self.0);
        }
    }
}

impl fmt::Debug for Producer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("stream", &self.shared.stream)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

/// The shard map of a stream, by ListShards (open shards only).
pub async fn list_shard_map(client: &Client, stream: &str) -> Result<ShardMap, String> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = req.send().await.map_err(|e| describe_sdk_error(&e))?;
        shards.extend(out.shards().iter().cloned());
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let map = crate::sdk::shard_map(&shards).map_err(|e| e.to_string())?;
    if map.shards().is_empty() {
        return Err(format!("stream {stream} has no open shard"));
    }
    Ok(map)
}

fn describe_sdk_error<E: ProvideErrorMetadata + fmt::Display>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => e.to_string(),
    }
}

impl Producer {
    /// A producer for `stream`, its shard map read with ListShards.
    ///
    /// # Errors
    /// Settings out of range; ListShards failing or listing no open shard.
    pub async fn new(
        client: Client,
        stream: impl Into<String>,
        cfg: ProducerConfig,
    ) -> Result<Self, ProducerError> {
        cfg.check()?;
        let stream = stream.into();
        let map = list_shard_map(&client, &stream)
            .await
            .map_err(ProducerError::Shards)?;
        let now = Instant::now();
        let shards = shard_states(&map, &cfg, now);
        let seed =
            (now.elapsed().as_nanos() as u64) ^ (Arc::as_ptr(&Arc::new(0u8)) as u64) ^ 0x9E37_79B9_7F4A_7C15;
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&stream),
            client,
            stream,
            state: Mutex::new(State {
                shards,
                map,
                misrouted: Vec::new(),
                refresh_wanted: false,
                refreshing: false,
                flush_now: false,
                epoch: 0,
                base: 0,
                outstanding: VecDeque::from([0]),
                pending: 0,
                next_rotation: 0,
                rng: seed | 1,
                keys: KeyHashes::new(),
            }),
            wake: Notify::new(),
            settled: Notify::new(),
            bytes: Semaphore::new(cfg.max_buffered_bytes),
            records: Semaphore::new(cfg.max_buffered_records),
            calls: Arc::new(Semaphore::new(cfg.max_concurrency)),
            closed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            cfg,
        });
        tokio::spawn(pump(shared.clone()));
        Ok(Producer {
            _guard: Arc::new(Guard(shared.clone())),
            shared,
        })
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.shared.stream
    }

    /// User records admitted and not yet answered.
    pub fn pending(&self) -> usize {
        self.shared.lock().pending
    }

    /// The current shard map.
    pub fn shard_map(&self) -> ShardMap {
        self.shared.lock().map.clone()
    }

    /// Admits a user record, waiting while the buffers are at their caps,
    /// and returns the future of its receipt.
    ///
    /// # Errors
    /// [`Rejected::Invalid`] for a record Kinesis would refuse (checked
    /// here, before it is buffered), [`Rejected::Shutdown`] once
    /// [`shutdown`](Self::shutdown) has begun. The record is handed back.
    pub async fn put(&self, record: OwnedRecord) -> Result<ReceiptFuture, Rejected> {
        let (hash, size) = match self.validate(&record) {
            Ok(v) => v,
            Err(reason) => return Err(Rejected::Invalid { record, reason }),
        };
        let s = &self.shared;
        let (Ok(b), Ok(r)) = (s.bytes.acquire_many(size).await, s.records.acquire().await) else {
            return Err(Rejected::Shutdown { record });
        };
        b.forget();
        r.forget();
        self.admit(record, hash, size)
    }

    /// [`put`](Self::put) without waiting: [`Rejected::Full`] hands the
    /// record back while the buffers are at their caps.
    ///
    /// # Errors
    /// As `put`, and `Full`.
    pub fn try_put(&self, record: OwnedRecord) -> Result<ReceiptFuture, Rejected> {
        let (hash, size) = match self.validate(&record) {
            Ok(v) => v,
            Err(reason) => return Err(Rejected::Invalid { record, reason }),
        };
        let s = &self.shared;
        if s.closed.load(Ordering::Acquire) {
            return Err(Rejected::Shutdown { record });
        }
        let Ok(b) = s.bytes.try_acquire_many(size) else {
            return Err(Rejected::Full { record });
        };
        let Ok(r) = s.records.try_acquire() else {
            return Err(Rejected::Full { record });
        };
        b.forget();
        r.forget();
        self.admit(record, hash, size)
    }

    fn validate(&self, r: &OwnedRecord) -> Result<(Option<u128>, u32), String> {
        crate::check_partition_key(&r.partition_key).map_err(|e| e.to_string())?;
        if let Some(e) = &r.explicit_hash_key {
            crate::check_explicit_hash_key(e).map_err(|e| e.to_string())?;
        }
        let max = self.shared.cfg.max_user_record_size;
        if r.data.len() > max {
            return Err(format!(
                "{} bytes of data, more than the {max} a record may hold",
                r.data.len()
            ));
        }
        // An explicit hash key routes the record; else its partition key's
        // MD5, found in the producer's cache (see `admit`).
        let hash = match &r.explicit_hash_key {
            Some(e) => Some(crate::parse_hash_key(e).map_err(|e| e.to_string())?),
            None => None,
        };
        let size = r.data.len() + r.partition_key.len() + r.explicit_hash_key.as_ref().map_or(0, String::len);
        Ok((hash, size as u32))
    }

    fn admit(&self, record: OwnedRecord, hash: Option<u128>, size: u32) -> Result<ReceiptFuture, Rejected> {
        let s = &self.shared;
        let mut st = s.lock();
        if s.closed.load(Ordering::Acquire) {
            drop(st);
            s.bytes.add_permits(size as usize);
            s.records.add_permits(1);
            return Err(Rejected::Shutdown { record });
        }
        let hash = match hash {
            Some(h) => h,
            None => st.keys.hash(&record.partition_key),
        };
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let waiter = Waiter {
            tx,
            epoch: st.epoch,
            received: now,
            size,
            prior: None,
        };
        let woke = route(&mut st, &s.cfg, record, hash, waiter, now);
        let back = st.outstanding.len() - 1;
        st.outstanding[back] += 1;
        st.pending += 1;
        s.metrics.received.increment(1);
        drop(st);
        if woke {
            s.wake.notify_one();
        }
        Ok(ReceiptFuture(rx))
    }

    /// Sends everything buffered now (not waiting for
    /// `record_max_buffered_time`) and waits until every user record put
    /// before the call is answered.
    pub async fn flush(&self) {
        let s = &self.shared;
        let epoch = {
            let mut st = s.lock();
            st.epoch += 1;
            st.outstanding.push_back(0);
            st.flush_now = true;
            st.epoch
        };
        s.wake.notify_one();
        loop {
            let notified = s.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if s.lock().settled_before(epoch) {
                return;
            }
            notified.await;
        }
    }

    /// Stops taking records (`put` and `try_put` refuse them from now),
    /// flushes everything buffered, waits for every receipt, and stops the
    /// background task.
    pub async fn shutdown(&self) {
        let s = &self.shared;
        s.closed.store(true, Ordering::Release);
        s.bytes.close();
        s.records.close();
        self.flush().await;
        s.stopped.store(true, Ordering::Release);
        s.wake.notify_one();
    }

    /// Stops at once: every user record buffered fails with
    /// [`FailureKind::Shutdown`] now, and one in a call already sent when
    /// that call ends (with its receipt if the call put it, else with
    /// `Shutdown`: it is not retried). Returns how many user records were
    /// not yet answered.
    pub fn abandon(&self) -> usize {
        abandon_all(&self.shared)
    }
}

fn abandon_all(s: &Shared) -> usize {
    s.closed.store(true, Ordering::Release);
    s.stopped.store(true, Ordering::Release);
    s.bytes.close();
    s.records.close();
    let mut st = s.lock();
    let n = st.pending;
    let mut waiters = Vec::new();
    for sh in &mut st.shards {
        waiters.append(&mut sh.waiters);
        let _ = sh.agg.finish();
        for k in sh.ready.drain(..).chain(sh.retry.drain(..)) {
            waiters.extend(k.waiters);
        }
    }
    for (k, _, _) in st.misrouted.drain(..) {
        waiters.extend(k.waiters);
    }
    let empty: Arc<[Attempt]> = Arc::from([]);
    for w in waiters {
        let _ = w.tx.send(Err(RecordError {
            kind: FailureKind::Shutdown,
            message: "the producer stopped before the record was sent".to_owned(),
            attempts: w.prior.unwrap_or_else(|| empty.clone()),
        }));
    }
    // Records of calls in flight are answered when their calls end
    // (their receivers may already be gone).
    st.outstanding.iter_mut().for_each(|c| *c = 0);
    st.pending = 0;
    drop(st);
    s.settled.notify_waiters();
    s.wake.notify_one();
    n
}

fn shard_states(map: &ShardMap, cfg: &ProducerConfig, now: Instant) -> Vec<ShardState> {
    map.shards()
        .iter()
        .map(|sh| ShardState::new(Arc::from(sh.id.as_str()), cfg, now))
        .collect()
}

/// Puts one admitted user record where it goes: its shard's aggregate, or
/// that shard's ready queue when it goes alone. `true` when the pump
/// should look now (a Kinesis record became ready).
fn route(
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

// ---------------------------------------------------------------------------
// The background task: completing aggregates, collecting calls, answering
// ---------------------------------------------------------------------------

/// What a PutRecords result means for one Kinesis record.
enum Outcome {
    Put {
        shard_id: String,
        sequence_number: String,
    },
    Retry {
        code: String,
        message: Option<String>,
        throttled: bool,
    },
    Fail {
        code: String,
        message: Option<String>,
    },
}

/// Codes a retry may fix: throttling and the service's own failures.
fn retryable(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "LimitExceededException"
            | "InternalFailure"
            | "InternalFailureException"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "KMSThrottlingException"
            | "RequestTimeout"
            | "RequestTimeoutException"
    )
}

fn throttling(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "LimitExceededException"
            | "KMSThrottlingException"
    )
}

async fn pump(s: Arc<Shared>) {
    loop {
        if s.stopped.load(Ordering::Acquire) && s.lock().pending == 0 {
            return;
        }
        let notified = s.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        let (batches, refresh, next) = plan(&s, now);
        for (batch, permit) in batches {
            tokio::spawn(send(s.clone(), batch, permit));
        }
        if refresh {
            tokio::spawn(refresh_map(s.clone()));
        }
        let _ = tokio::time::timeout_at(next.into(), notified).await;
    }
}

type Batch = (Vec<KRecord>, tokio::sync::OwnedSemaphorePermit);

/// Under the lock: completes aggregates that are due, expires what is past
/// its TTL, and takes the calls to send now. Returns them, whether to
/// refresh the shard map, and when to look again.
fn plan(s: &Shared, now: Instant) -> (Vec<Batch>, bool, Instant) {
    let cfg = &s.cfg;
    let mut st = s.lock();
    let mut next = now + Duration::from_secs(1);
    let flush = std::mem::take(&mut st.flush_now);
    for sh in &mut st.shards {
        if let Some(t) = sh.started {
            let due = t + cfg.record_max_buffered_time;
            if flush || due <= now {
                if let Some(k) = sh.complete(cfg.record_ttl, now) {
                    sh.ready.push_back(k);
                }
            } else {
                next = next.min(due);
            }
        }
    }
    expire(s, &mut st, now);
    let refresh = (st.refresh_wanted || !st.misrouted.is_empty()) && !st.refreshing;
    if refresh {
        st.refreshing = true;
        st.refresh_wanted = false;
    }
    let mut batches = Vec::new();
    loop {
        if !due(&st, cfg, now, flush, &mut next) {
            break;
        }
        let Ok(permit) = s.calls.clone().try_acquire_owned() else {
            break;
        };
        let batch = collect(&mut st, cfg, now, &mut next);
        if batch.is_empty() {
            break;
        }
        batches.push((batch, permit));
    }
    drop(st);
    // Expiry may have answered records a flush waits for.
    s.settled.notify_waiters();
    (batches, refresh, next)
}

/// Whether a call should go now: a full call's worth is ready, or the
/// oldest ready user record has waited `record_max_buffered_time`, or a
/// flush asked, or a retry is due.
fn due(st: &State, cfg: &ProducerConfig, now: Instant, flush: bool, next: &mut Instant) -> bool {
    let (mut count, mut bytes) = (0usize, 0usize);
    let mut oldest: Option<Instant> = None;
    for sh in &st.shards {
        if cfg.preserve_order && sh.in_flight > 0 {
            continue;
        }
        if let Some(r) = sh.retry.front() {
            if r.not_before <= now {
                return true;
            }
            *next = (*next).min(r.not_before);
        }
        if let Some(k) = sh.ready.front() {
            if k.not_before > now {
                *next = (*next).min(k.not_before);
                continue;
            }
            if flush || !k.attempts.is_empty() {
                return true;
            }
            oldest = Some(oldest.map_or(k.oldest, |o| o.min(k.oldest)));
        }
        count += sh.ready.len();
        bytes += sh.ready.iter().map(KRecord::size).sum::<usize>();
        if count >= cfg.collection_max_count || bytes >= cfg.collection_max_size {
            return true;
        }
    }
    match oldest {
        Some(o) if o + cfg.record_max_buffered_time <= now => true,
        Some(o) => {
            *next = (*next).min(o + cfg.record_max_buffered_time);
            false
        }
        None => false,
    }
}

/// Takes one call's Kinesis records, shard by shard in turn, within the
/// call's limits and each shard's rate limit.
fn collect(st: &mut State, cfg: &ProducerConfig, now: Instant, next: &mut Instant) -> Vec<KRecord> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let n = st.shards.len();
    let start = st.next_rotation % n.max(1);
    st.next_rotation = st.next_rotation.wrapping_add(1);
    let mut progress = true;
    while progress && batch.len() < cfg.collection_max_count {
        progress = false;
        for j in 0..n {
            if batch.len() >= cfg.collection_max_count {
                break;
            }
            let sh = &mut st.shards[(start + j) % n];
            if cfg.preserve_order && sh.in_flight > 0 {
                continue;
            }
            // Retries first, then fresh records.
            let from_retry = sh.retry.front().is_some_and(|r| r.not_before <= now);
            let front = if from_retry {
                sh.retry.front()
            } else {
                sh.ready.front()
            };
            let Some(k) = front else { continue };
            if k.not_before > now {
                *next = (*next).min(k.not_before);
                continue;
            }
            let size = k.size();
            if bytes + size > cfg.collection_max_size {
                continue;
            }
            if let Err(wait) = sh.bucket.take(size, now) {
                *next = (*next).min(now + wait);
                continue;
            }
            let k = if from_retry {
                sh.retry.pop_front()
            } else {
                sh.ready.pop_front()
            };
            if let Some(k) = k {
                sh.in_flight += 1;
                bytes += size;
                batch.push(k);
                progress = !cfg.preserve_order;
            }
        }
    }
    batch
}

/// Fails every queued Kinesis record whose oldest user record is past its
/// TTL.
fn expire(s: &Shared, st: &mut State, now: Instant) {
    let mut dead = Vec::new();
    for sh in &mut st.shards {
        for q in [&mut sh.ready, &mut sh.retry] {
            if q.iter().any(|k| k.deadline <= now) {
                let (keep, gone): (VecDeque<KRecord>, VecDeque<KRecord>) =
                    q.drain(..).partition(|k| k.deadline > now);
                *q = keep;
                dead.extend(gone);
            }
        }
    }
    for k in dead {
        s.metrics.expired.increment(k.waiters.len() as u64);
        let msg = format!("expired: not put within its TTL of {:?}", s.cfg.record_ttl);
        fail(s, st, k, FailureKind::Expired, msg);
    }
}

fn entry(k: &KRecord) -> PutRecordsRequestEntry {
    // The builder only refuses a missing data or partition key.
    PutRecordsRequestEntry::builder()
        .data(Blob::new(k.data().to_vec()))
        .partition_key(k.partition_key())
        .set_explicit_hash_key(k.ehk.clone())
        .build()
        .unwrap_or_else(|_| {
            PutRecordsRequestEntry::builder()
                .build()
                .unwrap_or_else(|_| unreachable_entry())
        })
}

#[cold]
fn unreachable_entry() -> PutRecordsRequestEntry {
    // Never reached: data and partition key are always set above.
    PutRecordsRequestEntry::builder()
        .data(Blob::new(Vec::new()))
        .partition_key("-")
        .build()
        .expect("data and partition key are set")
}

async fn send(s: Arc<Shared>, batch: Vec<KRecord>, permit: tokio::sync::OwnedSemaphorePermit) {
    use tracing::Instrument;
    let entries: Vec<PutRecordsRequestEntry> = batch.iter().map(entry).collect();
    let n = batch.len();
    let span = tracing::debug_span!("PutRecords", stream = %s.stream, entries = n);
    let started = Instant::now();
    // The producer retries itself (within the TTL, counting each
    // attempt in the receipts): the SDK's own retries are turned off.
    let call = s
        .client
        .put_records()
        .stream_name(&s.stream)
        .set_records(Some(entries))
        .customize()
        .config_override(aws_sdk_kinesis::config::Builder::default().retry_config(RetryConfig::disabled()))
        .send();
    let result = tokio::time::timeout(s.cfg.request_timeout, call)
        .instrument(span)
        .await;
    let took = started.elapsed();
    s.metrics.request_time.record(took.as_secs_f64() * 1000.0);
    s.metrics.kinesis_per_request.record(n as f64);
    let outcomes: Vec<Outcome> = match result {
        Err(_) => {
            tracing::debug!(stream = %s.stream, entries = n, "PutRecords timed out");
            (0..n)
                .map(|_| Outcome::Retry {
                    code: "Timeout".to_owned(),
                    message: Some(format!("no answer within {:?}", s.cfg.request_timeout)),
                    throttled: false,
                })
                .collect()
        }
        Ok(Err(e)) => {
            let (code, message) = match (e.code(), e.message()) {
                (Some(c), m) => (c.to_owned(), m.map(str::to_owned)),
                (None, _) => (
                    "Connection".to_owned(),
                    Some(format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(&e))),
                ),
            };
            // Errors without a service code (connections, timeouts,
            // unreadable answers) and 5xx are retried; a service code
            // says itself.
            let service = e.as_service_error().is_some() || e.raw_response().is_some();
            let status = e.raw_response().map(|r| r.status().as_u16());
            let retry = !service || retryable(&code) || status.is_some_and(|s| s >= 500);
            tracing::debug!(stream = %s.stream, entries = n, code = %code, "PutRecords failed");
            (0..n)
                .map(|_| {
                    if retry {
                        Outcome::Retry {
                            code: code.clone(),
                            message: message.clone(),
                            throttled: throttling(&code),
                        }
                    } else {
                        Outcome::Fail {
                            code: code.clone(),
                            message: message.clone(),
                        }
                    }
                })
                .collect()
        }
        Ok(Ok(out)) if out.records().len() != n => (0..n)
            .map(|_| Outcome::Retry {
                code: "ShortResponse".to_owned(),
                message: Some(format!("{} results for {n} entries", out.records().len())),
                throttled: false,
            })
            .collect(),
        Ok(Ok(out)) => out
            .records()
            .iter()
            .map(|r| match (r.error_code(), r.shard_id(), r.sequence_number()) {
                (Some(code), _, _) => {
                    let message = r.error_message().map(str::to_owned);
                    if retryable(code) {
                        Outcome::Retry {
                            code: code.to_owned(),
                            message,
                            throttled: throttling(code),
                        }
                    } else {
                        Outcome::Fail {
                            code: code.to_owned(),
                            message,
                        }
                    }
                }
                (None, Some(shard), Some(seq)) => Outcome::Put {
                    shard_id: shard.to_owned(),
                    sequence_number: seq.to_owned(),
                },
                (None, _, _) => Outcome::Retry {
                    code: "ShortResponse".to_owned(),
                    message: Some("a result with neither an error nor a sequence number".to_owned()),
                    throttled: false,
                },
            })
            .collect(),
    };
    answer(&s, batch, outcomes, started, took);
    drop(permit);
    s.settled.notify_waiters();
    s.wake.notify_one();
}

/// Applies one call's outcomes.
fn answer(s: &Shared, batch: Vec<KRecord>, outcomes: Vec<Outcome>, started: Instant, took: Duration) {
    let cfg = &s.cfg;
    let mut st = s.lock();
    let now = Instant::now();
    for (mut k, outcome) in batch.into_iter().zip(outcomes) {
        // With preserve_order, a record that landed on another shard keeps
        // its shard blocked until the refreshed map says what to do.
        let blocks = cfg.preserve_order
            && k.aggregated()
            && matches!(&outcome, Outcome::Put { shard_id, .. } if shard_id.as_str() != &*k.shard_id);
        if !blocks && let Some(sh) = st.shards.iter_mut().find(|sh| sh.id == k.shard_id) {
            sh.in_flight = sh.in_flight.saturating_sub(1);
        }
        let (code, message) = match &outcome {
            Outcome::Put { .. } => (None, None),
            Outcome::Retry { code, message, .. } | Outcome::Fail { code, message } => {
                (Some(code.clone()), message.clone())
            }
        };
        if let Some(c) = &code {
            s.metrics.error(c);
        }
        k.attempts.push(Attempt {
            delay: started.saturating_duration_since(k.since),
            duration: took,
            error_code: code,
            error_message: message,
        });
        k.since = now;
        match outcome {
            Outcome::Put {
                shard_id,
                sequence_number,
            } => {
                if shard_id.as_str() == &*k.shard_id || !k.aggregated() {
                    if !st.map.shards().iter().any(|sh| sh.id == shard_id) {
                        st.refresh_wanted = true;
                    }
                    deliver(s, &mut st, k, &shard_id, &sequence_number);
                } else {
                    tracing::debug!(stream = %s.stream, expected = %k.shard_id, landed = %shard_id, "aggregate landed on another shard");
                    st.misrouted.push((k, shard_id, sequence_number));
                }
            }
            Outcome::Retry { code, .. } if s.stopped.load(Ordering::Acquire) => {
                let m = format!("the producer stopped before the record was put (last attempt: {code})");
                fail(s, &mut st, k, FailureKind::Shutdown, m);
            }
            Outcome::Retry { code, throttled, .. } => {
                if throttled && cfg.fail_if_throttled {
                    fail(
                        s,
                        &mut st,
                        k,
                        FailureKind::Throttled,
                        format!("throttled ({code}) with fail_if_throttled"),
                    );
                } else {
                    retry(s, &mut st, k, now);
                }
            }
            Outcome::Fail { code, message } => {
                let m = format!(
                    "rejected by Kinesis: {code}{}",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                );
                fail(s, &mut st, k, FailureKind::Rejected, m);
            }
        }
    }
}

/// Schedules another attempt with exponential backoff and full jitter,
/// or fails the record when that would pass its TTL.
fn retry(s: &Shared, st: &mut State, mut k: KRecord, now: Instant) {
    let cfg = &s.cfg;
    let failures = k.attempts.len().clamp(1, 30) as u32;
    let cap = cfg
        .first_backoff
        .saturating_mul(1 << (failures - 1).min(20))
        .min(cfg.max_backoff);
    let jitter = st.random() % (cap.as_micros() as u64 + 1);
    let wait = Duration::from_micros(jitter).max(Duration::from_millis(1));
    if now + wait >= k.deadline {
        let m = format!("expired: not put within its TTL of {:?}", cfg.record_ttl);
        s.metrics.expired.increment(k.waiters.len() as u64);
        fail(s, st, k, FailureKind::Expired, m);
        return;
    }
    k.not_before = now + wait;
    match st.shards.iter_mut().find(|sh| sh.id == k.shard_id) {
        Some(sh) if cfg.preserve_order => sh.ready.push_front(k),
        Some(sh) => sh.retry.push_back(k),
        // Its shard is gone from the map: route it again.
        None => reroute(s, st, k, now),
    }
}

fn attempts_of(prior: Option<Arc<[Attempt]>>, now: &Arc<[Attempt]>) -> Arc<[Attempt]> {
    match prior {
        None => now.clone(),
        Some(p) => p.iter().chain(now.iter()).cloned().collect(),
    }
}

/// Answers a Kinesis record's user records with receipts.
fn deliver(s: &Shared, st: &mut State, k: KRecord, shard_id: &str, sequence_number: &str) {
    let aggregated = k.aggregated();
    let size = k.size();
    let attempts: Arc<[Attempt]> = Arc::from(k.attempts);
    let shard: Arc<str> = st
        .shards
        .iter()
        .find(|sh| &*sh.id == shard_id)
        .map_or_else(|| Arc::from(shard_id), |sh| sh.id.clone());
    let seq: Arc<str> = Arc::from(sequence_number);
    let n = k.waiters.len();
    s.metrics.kinesis_put.increment(1);
    s.metrics.kinesis_data_put.increment(size as u64);
    s.metrics.user_put.increment(n as u64);
    s.metrics.user_per_kinesis.record(n as f64);
    s.metrics.retries_per_record.record((attempts.len() - 1) as f64);
    s.metrics
        .buffering_time
        .record(Instant::now().saturating_duration_since(k.oldest).as_secs_f64() * 1000.0);
    let (mut bytes, mut data) = (0usize, 0u64);
    for (i, w) in k.waiters.into_iter().enumerate() {
        bytes += w.size as usize;
        data += u64::from(w.size);
        st.settle(w.epoch, 1);
        let _ = w.tx.send(Ok(Receipt {
            shard_id: shard.clone(),
            sequence_number: seq.clone(),
            sub_sequence_number: aggregated.then_some(i as u64),
            attempts: attempts_of(w.prior, &attempts),
        }));
    }
    s.metrics.user_data_put.increment(data);
    s.metrics.pending.set(st.pending as f64);
    s.bytes.add_permits(bytes);
    s.records.add_permits(n);
    if let Payload::Aggregate(a) = k.payload
        && let Some(sh) = st.shards.iter_mut().find(|sh| &*sh.id == shard_id)
    {
        sh.agg.recycle(a);
    }
}

/// Answers a Kinesis record's user records with an error.
fn fail(s: &Shared, st: &mut State, k: KRecord, kind: FailureKind, message: String) {
    let attempts: Arc<[Attempt]> = Arc::from(k.attempts);
    let n = k.waiters.len();
    let mut bytes = 0usize;
    tracing::debug!(stream = %s.stream, records = n, ?kind, %message, "user records failed");
    for w in k.waiters {
        bytes += w.size as usize;
        st.settle(w.epoch, 1);
        let _ = w.tx.send(Err(RecordError {
            kind,
            message: message.clone(),
            attempts: attempts_of(w.prior, &attempts),
        }));
    }
    s.metrics.pending.set(st.pending as f64);
    s.bytes.add_permits(bytes);
    s.records.add_permits(n);
}

/// Effective hash keys of a Kinesis record's user records, in order.
fn hash_keys(k: &KRecord) -> Vec<u128> {
    match &k.payload {
        Payload::Plain(r) => effective_hash_key(&r.partition_key, r.explicit_hash_key.as_deref())
            .into_iter()
            .collect(),
        Payload::Aggregate(a) => match crate::deaggregate(a.data()) {
            Ok(Deaggregated::Aggregated(agg)) => agg
                .records()
                .map(|r| effective_hash_key(r.partition_key, r.explicit_hash_key).unwrap_or(0))
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// Routes a Kinesis record again under the current map: whole, to the
/// shard that holds all its user records; else record by record into the
/// shards' aggregates, each remembering the attempts so far.
fn reroute(s: &Shared, st: &mut State, mut k: KRecord, now: Instant) {
    let keys = hash_keys(&k);
    let mut shards = keys.iter().map(|h| st.map.route_index(*h));
    let first = shards.next().flatten();
    let one = first.is_some() && shards.all(|j| j == first);
    if let (true, Some(j)) = (one, first) {
        let sh = &mut st.shards[j];
        // Records routed here again before this one go first.
        if let Some(earlier) = sh.complete(s.cfg.record_ttl, now) {
            sh.ready.push_back(earlier);
        }
        k.shard_id = sh.id.clone();
        if k.attempts.is_empty() {
            sh.ready.push_back(k);
        } else {
            sh.retry.push_back(k);
        }
        return;
    }
    let attempts: Arc<[Attempt]> = Arc::from(std::mem::take(&mut k.attempts));
    let records: Vec<OwnedRecord> = match &k.payload {
        Payload::Plain(r) => vec![r.clone()],
        Payload::Aggregate(a) => match crate::deaggregate(a.data()) {
            Ok(Deaggregated::Aggregated(agg)) => agg.records().map(OwnedRecord::from).collect(),
            _ => Vec::new(),
        },
    };
    let mut woke = false;
    for ((record, mut w), hash) in records.into_iter().zip(k.waiters).zip(keys) {
        w.prior = Some(attempts_of(w.prior.take(), &attempts));
        woke |= route(st, &s.cfg, record, hash, w, now);
    }
    let _ = woke;
}

async fn refresh_map(s: Arc<Shared>) {
    let listed = list_shard_map(&s.client, &s.stream).await;
    let now = Instant::now();
    let mut st = s.lock();
    st.refreshing = false;
    match listed {
        Ok(map) => {
            let changed = map != st.map;
            if changed {
                tracing::info!(stream = %s.stream, shards = map.shards().len(), "shard map changed: routing buffered records again");
            }
            apply_map(&s, &mut st, map, changed, now);
        }
        Err(e) => {
            tracing::warn!(stream = %s.stream, error = %e, "ListShards failed; will try again");
            st.refresh_wanted = true;
        }
    }
    drop(st);
    s.settled.notify_waiters();
    s.wake.notify_one();
}

/// Settles a Kinesis record that landed on `landed`: a success when that
/// shard's range holds all its user records (the KCL keeps it), else its
/// user records are sent again, routed by the current map.
fn settle_misrouted(s: &Shared, st: &mut State, mut k: KRecord, landed: &str, seq: &str, now: Instant) {
    // Its shard stayed blocked with preserve_order (see `answer`).
    if s.cfg.preserve_order
        && let Some(sh) = st.shards.iter_mut().find(|sh| sh.id == k.shard_id)
    {
        sh.in_flight = sh.in_flight.saturating_sub(1);
    }
    let range = st
        .map
        .shards()
        .iter()
        .find(|sh| sh.id == landed)
        .map(|sh| sh.range);
    if range.is_some_and(|r| hash_keys(&k).iter().all(|h| r.contains(*h))) {
        deliver(s, st, k, landed, seq);
        return;
    }
    if let Some(a) = k.attempts.last_mut() {
        a.error_code = Some("WrongShard".to_owned());
        a.error_message = Some(format!(
            "put on {landed} (sequence number {seq}), whose range does not hold all its user records: the KCL would discard it"
        ));
    }
    s.metrics.error("WrongShard");
    reroute(s, st, k, now);
}

/// Switches to `map` (when `changed`): every aggregate being built is
/// completed and every queued Kinesis record routed again (split where
/// its user records now belong to different shards), after the records
/// that landed on unexpected shards are settled, oldest first, so that
/// each shard's queue keeps the order records were put in.
fn apply_map(s: &Shared, st: &mut State, map: ShardMap, changed: bool, now: Instant) {
    let misrouted = std::mem::take(&mut st.misrouted);
    if !changed {
        for (k, landed, seq) in misrouted {
            settle_misrouted(s, st, k, &landed, &seq, now);
        }
        return;
    }
    let mut queued = Vec::new();
    let mut in_flight = Vec::new();
    for mut sh in std::mem::take(&mut st.shards) {
        // Oldest first: queued records, then the aggregate being built.
        queued.extend(sh.ready.drain(..));
        queued.extend(sh.retry.drain(..));
        if let Some(k) = sh.complete(s.cfg.record_ttl, now) {
            queued.push(k);
        }
        in_flight.push((sh.id.clone(), sh.in_flight));
    }
    st.shards = shard_states(&map, &s.cfg, now);
    st.map = map;
    // In-flight counts carry over to shards that remain.
    for (id, n) in in_flight {
        if let Some(sh) = st.shards.iter_mut().find(|sh| sh.id == id) {
            sh.in_flight = n;
        }
    }
    for (k, landed, seq) in misrouted {
        settle_misrouted(s, st, k, &landed, &seq, now);
    }
    for k in queued {
        reroute(s, st, k, now);
    }
    for sh in &mut st.shards {
        if let Some(k) = sh.complete(s.cfg.record_ttl, now) {
            sh.ready.push_back(k);
        }
    }
}
