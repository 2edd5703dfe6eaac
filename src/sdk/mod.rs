//! The official Rust SDK's Kinesis types (feature `aws-sdk`): aggregates
//! into `PutRecordsRequestEntry`s, GetRecords `Record`s into user records,
//! a shard map from ListShards, a small helper that sends entries with
//! PutRecords within its limits and re-sends only the entries that failed,
//! and a reader of a whole stream (every shard, parents before children).
//!
//! No background threads here, no timers beyond the backoff between
//! retries of one call, no delivery policy beyond that: the `producer`
//! module is the one with those.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::list_shards::ListShardsError;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Record as SdkRecord, Shard as SdkShard};

use crate::backoff::{Backoff, Jitter};
use crate::decode::{Options, Verified};
use crate::delivered::{BrokenRecord, DeliveredRecord, KinesisRecord, OnInvalid};
use crate::encode::Aggregate;
use crate::error::Error;
use crate::hash::HashKeyRange;
use crate::put::{Batch, PutRecordsBatcher};
use crate::shard::{ListedShard, ShardAggregate, ShardMap};

mod stream;
pub use stream::{ShardPage, StartingPosition, StreamError, StreamReader};

/// The SDK's builder error (it cannot occur here: data and partition key
/// are always set, but the SDK's signature says it may).
pub type BuildError = aws_sdk_kinesis::error::BuildError;

/// An aggregate as a PutRecords entry: its data, outer partition key and
/// outer explicit hash key.
///
/// # Errors
/// The SDK's builder error, which setting both required fields rules out.
pub fn put_entry(aggregate: &Aggregate) -> Result<PutRecordsRequestEntry, BuildError> {
    entry(
        aggregate.data(),
        aggregate.partition_key(),
        aggregate.explicit_hash_key(),
    )
}

/// A shard's aggregate as a PutRecords entry, with the explicit hash key
/// that routes it to its shard.
///
/// # Errors
/// As [`put_entry`].
pub fn shard_put_entry(aggregate: &ShardAggregate) -> Result<PutRecordsRequestEntry, BuildError> {
    entry(
        aggregate.data(),
        aggregate.partition_key(),
        Some(aggregate.explicit_hash_key()),
    )
}

fn entry(
    data: &[u8],
    partition_key: &str,
    explicit_hash_key: Option<&str>,
) -> Result<PutRecordsRequestEntry, BuildError> {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(data))
        .partition_key(partition_key)
        .set_explicit_hash_key(explicit_hash_key.map(str::to_string))
        .build()
}

/// What happened to one GetRecords record read with a shard's range.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardRead<'a> {
    /// Every user record, in order.
    Records(Vec<DeliveredRecord<'a>>),
    /// The KCL would discard this aggregate: a user record lies outside the
    /// shard. Nothing is yielded; the caller is told.
    Discarded {
        /// The Kinesis record's sequence number.
        sequence_number: &'a str,
        /// The first user record outside the range.
        out_of_range: crate::decode::OutOfRange,
    },
}

/// The SDK record as the library's [`KinesisRecord`]: its data and
/// metadata.
pub fn kinesis_record(record: &SdkRecord) -> KinesisRecord<'_> {
    KinesisRecord::new(record.data().as_ref())
        .with_partition_key(Some(record.partition_key()))
        .with_sequence_number(Some(record.sequence_number()))
        .with_approximate_arrival_millis(
            record
                .approximate_arrival_timestamp()
                .and_then(|t| t.to_millis().ok()),
        )
}

/// Appends the user records of one GetRecords record (at `index` in its
/// batch, its envelope in `verified`) to `out`, under the KCL's rule when
/// `range` is given; says which user record broke it when the rule
/// discards the aggregate.
fn deliver<'a>(
    record: &'a SdkRecord,
    index: usize,
    verified: &Verified<'a>,
    on_invalid: OnInvalid,
    range: Option<HashKeyRange>,
    out: &mut Vec<DeliveredRecord<'a>>,
) -> Result<Option<crate::decode::OutOfRange>, BrokenRecord<'a>> {
    kinesis_record(record).deliver(index, verified, on_invalid, range, |r| {
        out.push(r?);
        Ok(())
    })
}

/// The envelopes of GetRecords records, their checksums verified side by
/// side.
fn verify_each(records: &[SdkRecord]) -> Vec<Verified<'_>> {
    let blobs: Vec<&[u8]> = records.iter().map(|r| r.data().as_ref()).collect();
    Options::new().verify_all(&blobs)
}

/// The user records of one GetRecords record, in order (`record` is its
/// position in the batch).
///
/// # Errors
/// A record with a valid checksum and a broken body.
pub fn user_records(record: &SdkRecord, index: usize) -> Result<Vec<DeliveredRecord<'_>>, BrokenRecord<'_>> {
    let mut out = Vec::new();
    let verified = Options::new().verify(record.data().as_ref());
    deliver(record, index, &verified, OnInvalid::Error, None, &mut out)?;
    Ok(out)
}

/// The user records of one GetRecords record read from a shard, with the
/// KCL's rule applied and reported (see
/// [`AggregatedRecord::check_range`](crate::AggregatedRecord::check_range)).
///
/// # Errors
/// A record with a valid checksum and a broken body.
pub fn user_records_in_shard(
    record: &SdkRecord,
    index: usize,
    range: HashKeyRange,
) -> Result<ShardRead<'_>, BrokenRecord<'_>> {
    let verified = Options::new().verify(record.data().as_ref());
    shard_read(record, index, &verified, range)
}

/// [`user_records_in_shard`] for every record of a GetRecords answer, in
/// order, their checksums verified side by side: the record at `i` is
/// numbered `first + i`.
pub fn user_records_in_shard_each(
    records: &[SdkRecord],
    first: usize,
    range: HashKeyRange,
) -> Vec<Result<ShardRead<'_>, BrokenRecord<'_>>> {
    let verified = verify_each(records);
    records
        .iter()
        .zip(&verified)
        .enumerate()
        .map(|(i, (r, v))| shard_read(r, first + i, v, range))
        .collect()
}

fn shard_read<'a>(
    record: &'a SdkRecord,
    index: usize,
    verified: &Verified<'a>,
    range: HashKeyRange,
) -> Result<ShardRead<'a>, BrokenRecord<'a>> {
    let mut out = Vec::new();
    Ok(
        match deliver(record, index, verified, OnInvalid::Error, Some(range), &mut out)? {
            None => ShardRead::Records(out),
            Some(out_of_range) => ShardRead::Discarded {
                sequence_number: record.sequence_number(),
                out_of_range,
            },
        },
    )
}

/// The user records of a batch of GetRecords records, in order, their
/// checksums verified side by side.
///
/// # Errors
/// The first record with a broken body, with its position in the batch
/// (`OnInvalid::Error`); with `OnInvalid::Passthrough` such a record is
/// handed on unchanged and this never fails.
pub fn batch_user_records(
    records: &[SdkRecord],
    on_invalid: OnInvalid,
) -> Result<Vec<DeliveredRecord<'_>>, BrokenRecord<'_>> {
    let mut out = Vec::new();
    let verified = verify_each(records);
    for (i, (r, v)) in records.iter().zip(&verified).enumerate() {
        deliver(r, i, v, on_invalid, None, &mut out)?;
    }
    Ok(out)
}

/// One SDK shard as the library's [`ListedShard`]. A shard without a hash
/// key range (which ListShards always gives) gets empty hash keys, which
/// [`ShardMap::from_listed`] refuses.
pub fn listed_shard(s: &SdkShard) -> ListedShard<'_> {
    let range = s.hash_key_range();
    ListedShard {
        shard_id: s.shard_id(),
        starting_hash_key: range.map_or("", |r| r.starting_hash_key()),
        ending_hash_key: range.map_or("", |r| r.ending_hash_key()),
        closed: s
            .sequence_number_range()
            .is_some_and(|r| r.ending_sequence_number().is_some()),
    }
}

/// A shard map of the open shards in ListShards output (shards whose
/// sequence number range has no end), as [`ShardMap::from_listed`].
///
/// # Errors
/// Bad hash keys, or open shards that overlap.
pub fn shard_map(shards: &[SdkShard]) -> Result<ShardMap, Error> {
    ShardMap::from_listed(shards.iter().map(listed_shard))
}

/// Why [`list_shard_map`] has no map.
#[derive(Debug)]
#[non_exhaustive]
pub enum ShardMapError {
    /// ListShards failed for good, or still failed when the time allowed
    /// was spent.
    ListShards(GaveUp<ListShardsError>),
    /// The shards listed make no map: bad hash keys, or open shards that
    /// overlap.
    Invalid(Error),
    /// No shard listed is open.
    NoOpenShard,
}

impl fmt::Display for ShardMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShardMapError::ListShards(e) => write!(f, "ListShards: {e}"),
            ShardMapError::Invalid(e) => write!(f, "the shards listed make no map: {e}"),
            ShardMapError::NoOpenShard => f.write_str("the stream has no open shard"),
        }
    }
}

impl core::error::Error for ShardMapError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ShardMapError::ListShards(e) => Some(e),
            ShardMapError::Invalid(e) => Some(e),
            ShardMapError::NoOpenShard => None,
        }
    }
}

/// The map of a stream's open shards, by ListShards (every page), tried
/// again through transient failures as [`retry_transient`] does for up to
/// `budget` (`Duration::ZERO`: one attempt), each attempt given
/// `attempt_timeout`. `on_retry` hears of each failure tried again.
///
/// # Errors
/// [`ShardMapError`]: the call failing, a listing that makes no map, or
/// no open shard.
pub async fn list_shard_map(
    client: &Client,
    stream: &str,
    budget: Duration,
    attempt_timeout: Duration,
    on_retry: impl FnMut(&str),
) -> Result<ShardMap, ShardMapError> {
    let shards = retry_transient(budget, attempt_timeout, on_retry, || list_shards(client, stream))
        .await
        .map_err(ShardMapError::ListShards)?;
    let map = shard_map(&shards).map_err(ShardMapError::Invalid)?;
    if map.shards().is_empty() {
        return Err(ShardMapError::NoOpenShard);
    }
    Ok(map)
}

/// The hash key range of one shard of ListShards output.
///
/// # Errors
/// Missing or bad hash keys.
pub fn shard_range(shard: &SdkShard) -> Result<HashKeyRange, Error> {
    let r = shard.hash_key_range().ok_or(Error::InvalidHashKeyRange)?;
    HashKeyRange::from_decimal(r.starting_hash_key(), r.ending_hash_key())
}

/// How [`put_all`] retries entries that PutRecords rejected: up to
/// `attempts` calls, each pause drawn from zero to a cap that doubles from
/// `first_backoff` up to `max_backoff` (exponential backoff with full
/// jitter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new()
    }
}

impl Retry {
    /// Eight attempts, the first retry after 100 ms, at most 5 s apart.
    pub const fn new() -> Self {
        Retry {
            attempts: 8,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The same with this many attempts per call, the first included.
    pub const fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts;
        self
    }

    /// The same with these waits: the first retry's, and the longest.
    pub const fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max;
        self
    }
}

/// What [`put_all`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutStats {
    /// PutRecords calls made, retries included.
    pub calls: usize,
    /// Entries accepted.
    pub entries: usize,
    /// Bytes accepted (data plus partition keys).
    pub bytes: usize,
    /// Entries sent again after PutRecords rejected them.
    pub retried: usize,
}

/// Why [`put_all`] stopped. Every variant carries what was accepted
/// before ([`PutStats::entries`] counts the entries accepted in order
/// from the first, except that entries of the failed call may have been
/// accepted too: see [`PutError::pending`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum PutError {
    /// A PutRecords call failed as a whole.
    Sdk {
        /// The SDK's error.
        error: aws_sdk_kinesis::Error,
        /// What had been accepted before.
        stats: PutStats,
        /// Every entry not known to be accepted, in order: those of the
        /// failed call (an entry an earlier attempt of the call did get in
        /// is not among them), then those never sent. Send these to resume.
        pending: Vec<PutRecordsRequestEntry>,
    },
    /// Some entries were still rejected after every attempt.
    GaveUp {
        /// How many.
        failed: usize,
        /// The last error code Kinesis gave for one of them.
        error_code: Option<String>,
        /// What had been accepted before.
        stats: PutStats,
        /// The rejected entries, in order, then those never sent.
        pending: Vec<PutRecordsRequestEntry>,
    },
    /// Kinesis answered a call with a different number of results than
    /// entries sent, so which entries it took is unknown.
    ShortResponse {
        /// Entries sent in the call.
        sent: usize,
        /// Results received.
        received: usize,
        /// What had been accepted before the call.
        stats: PutStats,
        /// The entries of that call, in order, then those never sent.
        pending: Vec<PutRecordsRequestEntry>,
    },
}

impl PutError {
    /// What had been accepted before the failure.
    pub fn stats(&self) -> PutStats {
        match self {
            PutError::Sdk { stats, .. }
            | PutError::GaveUp { stats, .. }
            | PutError::ShortResponse { stats, .. } => *stats,
        }
    }

    /// Every entry not known to be accepted, in order: the failed call's,
    /// then those never sent. Resume with these.
    pub fn pending(&self) -> &[PutRecordsRequestEntry] {
        match self {
            PutError::Sdk { pending, .. }
            | PutError::GaveUp { pending, .. }
            | PutError::ShortResponse { pending, .. } => pending,
        }
    }

    /// The entries not known to be accepted, to add those never sent to.
    fn pending_mut(&mut self) -> &mut Vec<PutRecordsRequestEntry> {
        match self {
            PutError::Sdk { pending, .. }
            | PutError::GaveUp { pending, .. }
            | PutError::ShortResponse { pending, .. } => pending,
        }
    }
}

impl fmt::Display for PutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Sdk { error, stats, .. } => write!(
                f,
                "PutRecords failed after {} entries were accepted: {error}",
                stats.entries
            ),
            PutError::ShortResponse { sent, received, .. } => write!(
                f,
                "PutRecords answered {received} results for {sent} entries; which were accepted is unknown"
            ),
            PutError::GaveUp {
                failed, error_code, ..
            } => write!(
                f,
                "{failed} entries still rejected after every retry (last error code {})",
                error_code.as_deref().unwrap_or("unknown")
            ),
        }
    }
}

impl core::error::Error for PutError {}

fn entry_size(e: &PutRecordsRequestEntry) -> usize {
    e.data().as_ref().len() + e.partition_key().len()
}

/// Sends `entries` to `stream` with PutRecords, in order, at most 500
/// entries and 5 MiB per call. When a call rejects some entries
/// (throttling, internal errors), only those are sent again, with
/// exponential backoff and full jitter, before the next call: entries are not reordered
/// across calls, though a rejected entry lands after the accepted ones of
/// its own call (use one entry per shard per call where strict order
/// matters).
///
/// # Errors
/// A call failing as a whole, a response that does not match its call, or
/// entries still rejected after `retry.attempts`. The error says what was
/// accepted and which entries are pending (the failed call's not known to
/// be accepted, then those never sent), so that a caller can resume
/// without sending duplicates and without losing any.
pub async fn put_all(
    client: &Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
    retry: Retry,
) -> Result<PutStats, PutError> {
    let mut stats = PutStats::default();
    let mut batch: Vec<PutRecordsRequestEntry> = Vec::new();
    let mut batcher = PutRecordsBatcher::new();
    let mut entries = entries.into_iter();
    while let Some(e) = entries.next() {
        if batcher.push(entry_size(&e)) == Batch::SendFirst
            && let Err(mut err) = send(client, stream, core::mem::take(&mut batch), retry, &mut stats).await
        {
            err.pending_mut().push(e);
            err.pending_mut().extend(entries);
            return Err(err);
        }
        batch.push(e);
    }
    if !batch.is_empty() {
        send(client, stream, batch, retry, &mut stats).await?;
    }
    Ok(stats)
}

async fn send(
    client: &Client,
    stream: &str,
    mut batch: Vec<PutRecordsRequestEntry>,
    retry: Retry,
    stats: &mut PutStats,
) -> Result<(), PutError> {
    let backoff = Backoff::new(retry.first_backoff, retry.max_backoff);
    let mut jitter = Jitter::from_clock();
    let mut last_code = None;
    for attempt in 0..retry.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(backoff.pause(attempt, &mut jitter)).await;
            stats.retried += batch.len();
        }
        stats.calls += 1;
        let out = match client
            .put_records()
            .stream_name(stream)
            .set_records(Some(batch.clone()))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                return Err(PutError::Sdk {
                    error: e.into(),
                    stats: *stats,
                    pending: batch,
                });
            }
        };
        if out.records().len() != batch.len() {
            return Err(PutError::ShortResponse {
                sent: batch.len(),
                received: out.records().len(),
                stats: *stats,
                pending: batch,
            });
        }
        let mut failed = Vec::new();
        for (entry, result) in batch.into_iter().zip(out.records()) {
            if let Some(code) = result.error_code() {
                last_code = Some(code.to_string());
                failed.push(entry);
            } else {
                stats.entries += 1;
                stats.bytes += entry_size(&entry);
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        batch = failed;
    }
    Err(PutError::GaveUp {
        failed: batch.len(),
        error_code: last_code,
        stats: *stats,
        pending: batch,
    })
}

/// Error codes of throttling.
pub(crate) fn throttling_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "LimitExceededException"
            | "KMSThrottlingException"
    )
}

/// Error codes that trying again may fix: throttling and the service's own
/// failures.
pub(crate) fn transient_code(code: &str) -> bool {
    throttling_code(code)
        || matches!(
            code,
            "InternalFailure"
                | "InternalFailureException"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "RequestTimeout"
                | "RequestTimeoutException"
        )
}

/// Whether trying a call again may fix its error: throttling (a throttling
/// code, or 429), the service's own failures (5xx), a timeout (or 408), a
/// connection that failed or was lost, an answer that could not be read
/// (a success status whose body does not parse: cut short in transit).
/// Not: a missing stream, a bad argument, denied access, an expired
/// iterator.
///
/// # Examples
/// ```
/// use aws_sdk_kinesis::error::SdkError;
/// use aws_sdk_kinesis::operation::list_shards::ListShardsError;
/// let e: SdkError<ListShardsError, aws_sdk_kinesis::config::http::HttpResponse> =
///     SdkError::timeout_error("no answer");
/// assert!(kinesis_agg::sdk::is_transient(&e));
/// ```
pub fn is_transient<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            matches!(status, 200..=299 | 408 | 429 | 500..) || s.err().code().is_some_and(transient_code)
        }
        _ => false,
    }
}

/// Why [`retry_transient`] stopped without an answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum GaveUp<E> {
    /// An error that trying again does not fix, or the last transient one
    /// when the time allowed was spent.
    Error {
        /// The error.
        error: alloc::boxed::Box<SdkError<E, HttpResponse>>,
        /// Attempts made, the last included.
        attempts: u32,
    },
    /// The last attempt had no answer within the attempt timeout, and the
    /// time allowed was spent.
    Timeout {
        /// Attempts made.
        attempts: u32,
    },
}

impl<E: ProvideErrorMetadata + core::error::Error + 'static> GaveUp<E> {
    /// The error's code, when the service gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            GaveUp::Error { error, .. } => error.code(),
            GaveUp::Timeout { .. } => None,
        }
    }
}

impl<E: ProvideErrorMetadata + core::error::Error + 'static> fmt::Display for GaveUp<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let attempts = match self {
            GaveUp::Error { error, attempts } => {
                match (error.code(), error.message()) {
                    (Some(c), Some(m)) => write!(f, "{c}: {m}")?,
                    (Some(c), None) => f.write_str(c)?,
                    _ => write!(f, "{}", aws_sdk_kinesis::error::DisplayErrorContext(error))?,
                }
                *attempts
            }
            GaveUp::Timeout { attempts } => {
                f.write_str("no answer within the attempt timeout")?;
                *attempts
            }
        };
        if attempts > 1 {
            write!(f, " (after {attempts} attempts)")?;
        }
        Ok(())
    }
}

impl<E: ProvideErrorMetadata + core::error::Error + 'static> core::error::Error for GaveUp<E> {}

/// Runs `call` until it answers, fails with an error that trying again
/// does not fix ([`is_transient`]), or `budget` has passed since the first
/// attempt: each attempt is given `attempt_timeout` (no answer by then
/// counts as a transient failure), and each pause before the next doubles
/// from 100 ms up to 5 s, with full jitter. `on_retry` hears of each
/// failure that will be tried again.
///
/// For calls that may be repeated: reads, ListShards, GetShardIterator.
///
/// # Errors
/// [`GaveUp`] with the error that stopped it.
pub async fn retry_transient<T, E, F, Fut>(
    budget: Duration,
    attempt_timeout: Duration,
    mut on_retry: impl FnMut(&str),
    mut call: F,
) -> Result<T, GaveUp<E>>
where
    E: ProvideErrorMetadata,
    F: FnMut() -> Fut,
    Fut: core::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
{
    let start = tokio::time::Instant::now();
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut jitter = Jitter::from_clock();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let failure = match tokio::time::timeout(attempt_timeout, call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if !is_transient(&e) => {
                return Err(GaveUp::Error {
                    error: alloc::boxed::Box::new(e),
                    attempts,
                });
            }
            Ok(Err(e)) => GaveUp::Error {
                error: alloc::boxed::Box::new(e),
                attempts,
            },
            Err(_) => GaveUp::Timeout { attempts },
        };
        let wait = backoff.pause(attempts, &mut jitter);
        if start.elapsed() + wait >= budget {
            return Err(failure);
        }
        on_retry(match &failure {
            GaveUp::Error { error, .. } => error.code().unwrap_or("Connection"),
            GaveUp::Timeout { .. } => "Timeout",
        });
        tokio::time::sleep(wait).await;
    }
}

/// Every shard of a stream, open and closed: ListShards, page by page.
///
/// # Errors
/// The SDK's error for the first page that failed.
pub async fn list_shards(
    client: &Client,
    stream: &str,
) -> Result<Vec<SdkShard>, SdkError<ListShardsError, HttpResponse>> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = match &token {
            Some(t) => client.list_shards().next_token(t),
            None => client.list_shards().stream_name(stream),
        };
        let out = req.send().await?;
        shards.extend(out.shards().iter().cloned());
        match out.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(shards),
        }
    }
}
