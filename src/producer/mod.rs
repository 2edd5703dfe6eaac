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
//! A user record whose data is itself an aggregated record (the magic and
//! a right checksum: what a KPL or an aggregating library wrote) is sent
//! alone, as it is, under its own keys: aggregated again it would be a user
//! record holding an aggregate, which consumers deaggregate only once (the
//! KCL would hand over the inner aggregate's bytes). Its receipt has no
//! sub-sequence number. The KPL nests such records.
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
//!     println!("{} {} {:?}", receipt.shard_id(), receipt.sequence_number(), receipt.sub_sequence_number());
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
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use std::vec;
use std::vec::Vec;
use tokio::time::Instant;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::sync::{Notify, Semaphore};

use crate::{
    Aggregate, Deaggregated, OwnedRecord, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES, Record,
    ShardAggregate, ShardMap, ShardedAggregator, Undigested, UndigestedAggregate,
};

mod config;
mod pump;
mod receipt;
mod state;
#[cfg(test)]
mod tests;
mod transport;

pub use config::{ConfigError, DEFAULT_MAX_USER_RECORD_SIZE, ProducerConfig};
use pump::pump;
pub use receipt::{Attempt, FailureKind, Receipt, ReceiptFuture, RecordError};
use receipt::{Carried, Put, Resolution, Slot, SlotTx};
use sealed::Sealed;
use state::*;
use transport::{EntryAnswer, PutAnswer, PutEntry, Transport};

/// Why a producer could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProducerError {
    /// A setting out of range.
    Config(ConfigError),
    /// The stream's shard map could not be had: ListShards failed for good,
    /// listed shards that make no map, or no open shard.
    Shards(crate::sdk::ShardMapError),
}

impl fmt::Display for ProducerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerError::Config(e) => write!(f, "producer configuration: {e}"),
            ProducerError::Shards(e) => write!(f, "cannot list the stream's shards: {e}"),
        }
    }
}

impl std::error::Error for ProducerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProducerError::Config(e) => Some(e),
            ProducerError::Shards(e) => Some(e),
        }
    }
}

impl From<ConfigError> for ProducerError {
    fn from(e: ConfigError) -> Self {
        ProducerError::Config(e)
    }
}

/// Why [`Producer::put`] or [`Producer::try_put`] found a user record
/// invalid: what Kinesis would refuse, or what the producer does not send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalid {
    /// Its partition key or explicit hash key
    /// ([`Error::InvalidPartitionKey`](crate::Error::InvalidPartitionKey),
    /// [`Error::InvalidHashKey`](crate::Error::InvalidHashKey)).
    Key(crate::Error),
    /// Its data is larger than
    /// [`max_user_record_size`](ProducerConfig::max_user_record_size).
    TooLarge {
        /// Bytes of data.
        size: usize,
        /// The most a record may hold.
        max: usize,
    },
    /// It has tags: the producer writes none, as the KPL.
    Tags,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Key(e) => fmt::Display::fmt(e, f),
            Invalid::TooLarge { size, max } => {
                write!(f, "{size} bytes of data, more than the {max} a record may hold")
            }
            Invalid::Tags => f.write_str("tags: the producer writes none (as the KPL)"),
        }
    }
}

/// What [`Producer::put`] and [`Producer::try_put`] take: an
/// [`OwnedRecord`], moved in, or a [`Record`] borrowed from the caller,
/// whose bytes the producer copies where they go (into the aggregate being
/// built, with no allocation of its own). Records with tags are refused:
/// the producer writes none, as the KPL.
pub trait Input: sealed::Sealed {}

impl Input for OwnedRecord {}
impl Input for Record<'_> {}

mod sealed {
    use super::{OwnedRecord, Record};

    pub trait Sealed {
        fn record(&self) -> Record<'_>;
        fn into_owned(self) -> OwnedRecord;
    }

    impl Sealed for OwnedRecord {
        fn record(&self) -> Record<'_> {
            self.as_record()
        }
        fn into_owned(self) -> OwnedRecord {
            self
        }
    }

    impl Sealed for Record<'_> {
        fn record(&self) -> Record<'_> {
            *self
        }
        fn into_owned(self) -> OwnedRecord {
            OwnedRecord::from(self)
        }
    }
}

/// A user record `put` or `try_put` did not take, handed back.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejected<R = OwnedRecord> {
    /// Invalid: a partition key or explicit hash key Kinesis would refuse,
    /// data over `max_user_record_size`, or tags.
    Invalid {
        /// The record.
        record: R,
        /// Why.
        reason: Invalid,
    },
    /// `try_put` only: the buffers are at their caps.
    Full {
        /// The record.
        record: R,
    },
    /// The producer is shutting down or shut down.
    Shutdown {
        /// The record.
        record: R,
    },
}

impl<R> Rejected<R> {
    /// The record handed back.
    pub fn into_record(self) -> R {
        match self {
            Rejected::Invalid { record, .. } | Rejected::Full { record } | Rejected::Shutdown { record } => {
                record
            }
        }
    }
}

impl<R> fmt::Display for Rejected<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Invalid { reason, .. } => write!(f, "invalid user record: {reason}"),
            Rejected::Full { .. } => f.write_str("the producer's buffers are full"),
            Rejected::Shutdown { .. } => f.write_str("the producer is shut down"),
        }
    }
}

impl<R: fmt::Debug> std::error::Error for Rejected<R> {}

/// A user record as [`Producer::validate`] found it.
#[derive(Clone, Copy)]
struct Checked {
    /// Its explicit hash key's value; `None`: its partition key's MD5.
    hash: Option<u128>,
    /// The bytes of buffer cap it holds.
    size: u32,
    /// Its data is itself an aggregated record: it is sent as it is.
    whole: bool,
}

struct Shared {
    transport: Arc<dyn Transport>,
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

impl Producer {
    /// A producer for `stream`, its shard map read with ListShards (tried
    /// again on throttling, 5xx, timeouts and lost connections, for up to
    /// `record_ttl`, each attempt given `request_timeout`).
    ///
    /// # Errors
    /// Settings out of range; ListShards failing for good (a missing
    /// stream, denied access, or still failing after `record_ttl`) or
    /// listing no open shard.
    pub async fn new(
        client: Client,
        stream: impl Into<String>,
        cfg: ProducerConfig,
    ) -> Result<Self, ProducerError> {
        Self::start(Arc::new(client), stream.into(), cfg).await
    }

    /// A producer on any transport (the unit tests' in-memory stream).
    pub(crate) async fn start(
        transport: Arc<dyn Transport>,
        stream: String,
        cfg: ProducerConfig,
    ) -> Result<Self, ProducerError> {
        cfg.check()?;
        let map = transport
            .shard_map(&stream, cfg.record_ttl, cfg.request_timeout)
            .await
            .map_err(ProducerError::Shards)?;
        let now = Instant::now();
        let shards = shard_states(&map, &cfg, now);
        let shared = Arc::new(Shared {
            metrics: Metrics::new(&stream),
            transport,
            stream,
            state: Mutex::new(State {
                shards,
                agg: sharded(map, &cfg),
                misrouted: Vec::new(),
                refresh_wanted: false,
                refreshing: false,
                refresh_after: now,
                refresh_failures: 0,
                flush_now: false,
                epoch: 0,
                base: 0,
                outstanding: VecDeque::from([0]),
                pending: 0,
                next_rotation: 0,
                jitter: crate::backoff::Jitter::from_clock(),
                next_look: now,
                fresh: (0, 0),
                anchor: now,
                batch: Batch::default(),
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
        self.shared.lock().agg.shard_map().clone()
    }

    /// Admits a user record, waiting while the buffers are at their caps,
    /// and returns the future of its receipt. The record is an
    /// [`OwnedRecord`] or a borrowed [`Record`] (see [`Input`]).
    ///
    /// # Errors
    /// [`Rejected::Invalid`] for a record Kinesis would refuse (checked
    /// here, before it is buffered), [`Rejected::Shutdown`] once
    /// [`shutdown`](Self::shutdown) has begun. The record is handed back.
    ///
    /// # Examples
    /// ```no_run
    /// # async fn run(producer: kinesis_agg::producer::Producer) -> Result<(), Box<dyn std::error::Error>> {
    /// use kinesis_agg::Record;
    /// let line = b"21.5";
    /// let receipt = producer.put(Record::new("sensor-7", line)).await?.await?;
    /// println!("{} {}", receipt.shard_id(), receipt.sequence_number());
    /// # Ok(()) }
    /// ```
    pub async fn put<R: Input>(&self, record: R) -> Result<ReceiptFuture, Rejected<R>> {
        let checked = match self.validate(record.record()) {
            Ok(v) => v,
            Err(reason) => return Err(Rejected::Invalid { record, reason }),
        };
        let size = checked.size;
        let s = &self.shared;
        // A writer that always finds room must still let the runtime run
        // other tasks (the producer's own among them, on a current-thread
        // runtime): it yields when its task's cooperative budget is spent.
        tokio::task::coop::consume_budget().await;
        // Room now: no waiting (released room goes to the puts already
        // waiting first, so this passes none of them).
        if let Ok(b) = s.bytes.try_acquire_many(size) {
            if let Ok(r) = s.records.try_acquire() {
                b.forget();
                r.forget();
                return self.admit(record, checked);
            }
            drop(b);
        }
        let (Ok(b), Ok(r)) = (s.bytes.acquire_many(size).await, s.records.acquire().await) else {
            return Err(Rejected::Shutdown { record });
        };
        b.forget();
        r.forget();
        self.admit(record, checked)
    }

    /// [`put`](Self::put) without waiting: [`Rejected::Full`] hands the
    /// record back while the buffers are at their caps.
    ///
    /// # Errors
    /// As `put`, and `Full`.
    pub fn try_put<R: Input>(&self, record: R) -> Result<ReceiptFuture, Rejected<R>> {
        let checked = match self.validate(record.record()) {
            Ok(v) => v,
            Err(reason) => return Err(Rejected::Invalid { record, reason }),
        };
        let size = checked.size;
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
        self.admit(record, checked)
    }

    fn validate(&self, r: Record<'_>) -> Result<Checked, Invalid> {
        crate::check_partition_key(r.partition_key).map_err(Invalid::Key)?;
        if !r.tags.is_empty() {
            return Err(Invalid::Tags);
        }
        let max = self.shared.cfg.max_user_record_size;
        if r.data.len() > max {
            return Err(Invalid::TooLarge {
                size: r.data.len(),
                max,
            });
        }
        // An explicit hash key routes the record; else its partition key's
        // MD5, found in the producer's cache (see `admit`).
        let hash = match r.explicit_hash_key {
            Some(e) => Some(crate::parse_hash_key(e).map_err(Invalid::Key)?),
            None => None,
        };
        Ok(Checked {
            hash,
            size: held_bytes(&r) as u32,
            // Its MD5, when it has the magic, taken here, outside the lock.
            whole: state::is_aggregate(r.data),
        })
    }

    fn admit<R: Input>(&self, record: R, checked: Checked) -> Result<ReceiptFuture, Rejected<R>> {
        let s = &self.shared;
        let mut st = s.lock();
        if s.closed.load(Ordering::Acquire) {
            drop(st);
            s.bytes.add_permits(checked.size as usize);
            s.records.add_permits(1);
            return Err(Rejected::Shutdown { record });
        }
        let epoch = st.epoch;
        let routed = self.place(&mut st, record, checked, epoch, &mut Clock::default());
        let back = st.outstanding.len() - 1;
        st.outstanding[back] += 1;
        st.pending += 1;
        s.metrics.received.increment(1);
        let woke = routed.woke;
        let index = routed.index;
        let slot = routed.take_slot(&st);
        drop(st);
        if woke {
            s.wake.notify_one();
        }
        Ok(ReceiptFuture::new(slot, index))
    }

    /// Routes an admitted record (its room taken) under the lock: by its
    /// explicit hash key, else its partition key's MD5 from the cache.
    fn place<R: Input>(
        &self,
        st: &mut State,
        record: R,
        checked: Checked,
        epoch: u64,
        clock: &mut Clock,
    ) -> Routed {
        let Checked { hash, size, whole } = checked;
        let hash = match hash {
            Some(h) => h,
            None => st.agg.hash_key(record.record().partition_key, None).unwrap_or(0),
        };
        let user = User { epoch, size };
        route(
            st,
            &self.shared.cfg,
            record,
            Routing { hash, whole },
            user,
            None,
            clock,
        )
    }

    /// [`try_put`](Self::try_put) for many records, answered in order, but
    /// admitted together: one taking of the producer's lock and, while
    /// there is room for all, of its caps (a PutRecords call's records,
    /// say). Less work a record than `try_put`.
    ///
    /// # Errors
    /// Each record's own, as `try_put` gives it: [`Rejected::Invalid`],
    /// [`Rejected::Shutdown`], and [`Rejected::Full`] for the first valid
    /// record that finds no room and every valid record after it (so that
    /// what is admitted keeps the order given: put those in turn).
    pub fn try_put_many<R: Input>(
        &self,
        records: impl IntoIterator<Item = R>,
    ) -> Vec<Result<ReceiptFuture, Rejected<R>>> {
        let s = &self.shared;
        let mut answers: Vec<Option<Result<ReceiptFuture, Rejected<R>>>> = Vec::new();
        let mut admit = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            answers.push(None);
            match self.validate(record.record()) {
                Ok(c) => admit.push((i, record, c)),
                Err(reason) => answers[i] = Some(Err(Rejected::Invalid { record, reason })),
            }
        }
        let admit = if s.closed.load(Ordering::Acquire) {
            for (i, record, _) in admit {
                answers[i] = Some(Err(Rejected::Shutdown { record }));
            }
            Vec::new()
        } else {
            self.take_room(admit, &mut answers)
        };
        if !admit.is_empty() {
            self.admit_all(admit, &mut answers);
        }
        // Every record was answered above, in exactly one of the branches.
        debug_assert!(answers.iter().all(Option::is_some));
        answers.into_iter().flatten().collect()
    }

    /// Takes the caps' room for `admit`: all at once when there is room
    /// for all; else record by record, as `try_put` would, until one finds
    /// none: it and the records after it are answered `Full`. Returns the
    /// records that have room.
    fn take_room<R: Input>(
        &self,
        admit: Vec<(usize, R, Checked)>,
        answers: &mut [Option<Result<ReceiptFuture, Rejected<R>>>],
    ) -> Vec<(usize, R, Checked)> {
        let s = &self.shared;
        let bytes: u64 = admit.iter().map(|(_, _, c)| u64::from(c.size)).sum();
        let together = u32::try_from(bytes)
            .ok()
            .zip(u32::try_from(admit.len()).ok())
            .and_then(|(bytes, n)| {
                let b = s.bytes.try_acquire_many(bytes).ok()?;
                let r = s.records.try_acquire_many(n).ok()?;
                Some((b, r))
            });
        if let Some((b, r)) = together {
            b.forget();
            r.forget();
            return admit;
        }
        let mut kept = Vec::with_capacity(admit.len());
        let mut room = true;
        for (i, record, c) in admit {
            if room {
                // Both or neither: a permit taken and not forgotten goes
                // back when dropped.
                if let (Ok(b), Ok(r)) = (s.bytes.try_acquire_many(c.size), s.records.try_acquire()) {
                    b.forget();
                    r.forget();
                    kept.push((i, record, c));
                    continue;
                }
                room = false;
            }
            answers[i] = Some(Err(Rejected::Full { record }));
        }
        kept
    }

    /// Routes records that have room, under one lock, their slots taken
    /// when all are written ([`Batch`]).
    fn admit_all<R: Input>(
        &self,
        admit: Vec<(usize, R, Checked)>,
        answers: &mut [Option<Result<ReceiptFuture, Rejected<R>>>],
    ) {
        let s = &self.shared;
        let mut st = s.lock();
        if s.closed.load(Ordering::Acquire) {
            drop(st);
            for (i, record, c) in admit {
                s.bytes.add_permits(c.size as usize);
                s.records.add_permits(1);
                answers[i] = Some(Err(Rejected::Shutdown { record }));
            }
            return;
        }
        let n = admit.len();
        let shards = st.shards.len();
        st.batch.begin(shards);
        let epoch = st.epoch;
        let mut clock = Clock::default();
        let mut woke = false;
        let mut placed = Vec::with_capacity(n);
        for (i, record, checked) in admit {
            let routed = self.place(&mut st, record, checked, epoch, &mut clock);
            woke |= routed.woke;
            let waits = match routed.slot {
                Some(own) => Err(own),
                None => Ok(st.batch.entry(routed.shard)),
            };
            placed.push((i, waits, routed.index));
        }
        let back = st.outstanding.len() - 1;
        st.outstanding[back] += n;
        st.pending += n;
        let slots = {
            let State { batch, shards, .. } = &mut *st;
            batch.end(shards)
        };
        drop(st);
        s.metrics.received.increment(n as u64);
        if woke {
            s.wake.notify_one();
        }
        for (i, waits, index) in placed {
            let slot = match waits {
                Ok(entry) => slots[entry as usize].clone(),
                Err(own) => own,
            };
            answers[i] = Some(Ok(ReceiptFuture::new(slot, index)));
        }
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
    let message: Arc<str> = Arc::from("the producer stopped before the record was sent");
    let stopped = |slot: SlotTx, attempts: Vec<Attempt>, carried: Carried| {
        slot.resolve(Resolution::Failed {
            kind: FailureKind::Shutdown,
            message: message.clone(),
            attempts: Arc::from(attempts),
            carried,
        });
    };
    let mut queued = Vec::new();
    let State { shards, agg, .. } = &mut *st;
    for (i, sh) in shards.iter_mut().enumerate() {
        sh.users = Users::default();
        sh.close_at = None;
        sh.oldest = None;
        let open = agg
            .complete(i)
            .map_or(Carried::Nothing, |a| Carried::undigested(a.into_aggregate()));
        stopped(std::mem::replace(&mut sh.slot, SlotTx::new()), Vec::new(), open);
        queued.extend(sh.ready.drain(..).chain(sh.retry.drain(..)));
    }
    queued.extend(st.misrouted.drain(..).map(|(k, _, _)| k));
    for k in queued {
        stopped(k.slot, k.attempts, Carried::from_payload(k.payload));
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

/// The aggregator of a map's shards, as the settings ask.
fn sharded(map: ShardMap, cfg: &ProducerConfig) -> ShardedAggregator {
    // The limit was checked with the settings.
    ShardedAggregator::with_limit(map.clone(), cfg.aggregation_max_size)
        .unwrap_or_else(|_| ShardedAggregator::new(map))
        .with_max_count(cfg.aggregation_max_count)
}

fn shard_states(map: &ShardMap, cfg: &ProducerConfig, now: Instant) -> Vec<ShardState> {
    map.shards()
        .iter()
        .map(|sh| ShardState::new(Arc::from(sh.id.as_str()), cfg, now))
        .collect()
}
