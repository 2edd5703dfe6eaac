//! Reading a whole stream: every shard, parents before children, each page
//! of records with the range of the shard it came from, through throttling,
//! failed calls and expired iterators.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_kinesis::operation::list_shards::ListShardsError;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{Record as SdkRecord, Shard as SdkShard, ShardIteratorType};

use super::{GaveUp, list_shards, retry_transient, shard_range};
use crate::error::Error;
use crate::hash::HashKeyRange;

/// Where a [`StreamReader`] starts.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum StartingPosition {
    /// The oldest record each shard keeps.
    TrimHorizon,
    /// Only records put from now (the children of a shard read from now
    /// are read from their start: they hold only newer records).
    Latest,
    /// This record, in the shard that holds it, then that shard's
    /// descendants from their start; other shards are not read.
    AtSequenceNumber(String),
    /// Records put from this time, in every shard.
    AtTimestamp(DateTime),
}

/// The shards of a stream and who begat whom: the order a reader must
/// follow so that each partition key's records come out in the order the
/// stream holds them. Pure: no calls, only the ids ListShards gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Lineage {
    /// Each shard's parents (a split has one, a merge two).
    parents: BTreeMap<String, [Option<String>; 2]>,
}

impl Lineage {
    /// Learns a shard and its parents (again, if it is known).
    pub(crate) fn insert(&mut self, id: &str, parent: Option<&str>, adjacent_parent: Option<&str>) {
        self.parents.insert(
            id.to_string(),
            [parent.map(str::to_string), adjacent_parent.map(str::to_string)],
        );
    }

    /// The shards to start now, in id order: those not yet started whose
    /// known parents are all done. A parent ListShards no longer lists
    /// (past the stream's retention) does not hold its children back.
    pub(crate) fn startable(&self, started: &BTreeSet<String>, done: &BTreeSet<String>) -> Vec<String> {
        self.parents
            .iter()
            .filter(|(id, _)| !started.contains(*id))
            .filter(|(_, parents)| {
                parents
                    .iter()
                    .flatten()
                    .all(|p| !self.parents.contains_key(p) || done.contains(p))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether `id` is `root` or descends from it, through either parent
    /// of a merge.
    pub(crate) fn descends(&self, id: &str, root: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = alloc::vec![id];
        while let Some(at) = todo.pop() {
            if at == root {
                return true;
            }
            if !seen.insert(at) {
                continue;
            }
            if let Some(parents) = self.parents.get(at) {
                todo.extend(parents.iter().flatten().map(String::as_str));
            }
        }
        false
    }

    /// Where to read shard `id` from, or `None` when it is not to be read:
    /// with a sequence number, only its shard (`root`) and that shard's
    /// descendants are; with `Latest`, the children of a shard already
    /// started are read from their start.
    pub(crate) fn start_for(
        &self,
        id: &str,
        from: &StartingPosition,
        root: Option<&str>,
        started: &BTreeSet<String>,
    ) -> Option<StartingPosition> {
        match from {
            StartingPosition::AtSequenceNumber(_) if Some(id) == root => Some(from.clone()),
            StartingPosition::AtSequenceNumber(_) => root
                .is_some_and(|r| self.descends(id, r))
                .then_some(StartingPosition::TrimHorizon),
            StartingPosition::Latest => {
                let parents = self.parents.get(id).into_iter().flatten().flatten();
                let after_started = parents.into_iter().any(|p| started.contains(p));
                Some(if after_started {
                    StartingPosition::TrimHorizon
                } else {
                    StartingPosition::Latest
                })
            }
            other => Some(other.clone()),
        }
    }
}

/// One GetRecords answer: the records of one shard, with the shard's range
/// (to apply the KCL's rule with
/// [`user_records_in_shard`](super::user_records_in_shard)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ShardPage {
    /// The shard read: its id and hash key range.
    pub shard: crate::Shard,
    /// The records, in the shard's order.
    pub records: Vec<SdkRecord>,
    /// How far behind the shard's newest record this page ends.
    pub millis_behind_latest: Option<i64>,
}

/// Why a [`StreamReader`] stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// ListShards failed for good.
    ListShards(GaveUp<ListShardsError>),
    /// GetShardIterator failed for good.
    GetShardIterator {
        /// The shard.
        shard_id: String,
        /// Why.
        error: GaveUp<GetShardIteratorError>,
    },
    /// GetRecords failed for good (an expired iterator is not this: the
    /// reader gets another and goes on after the last record read).
    GetRecords {
        /// The shard.
        shard_id: String,
        /// Why.
        error: GaveUp<GetRecordsError>,
    },
    /// ListShards gave a shard whose hash key range is not one.
    InvalidShard {
        /// The shard.
        shard_id: String,
        /// Why.
        error: Error,
    },
    /// No shard holds the sequence number to start at.
    SequenceNumberNotFound(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::ListShards(e) => write!(f, "ListShards: {e}"),
            StreamError::GetShardIterator { shard_id, error } => {
                write!(f, "GetShardIterator for {shard_id}: {error}")
            }
            StreamError::GetRecords { shard_id, error } => write!(f, "GetRecords on {shard_id}: {error}"),
            StreamError::InvalidShard { shard_id, error } => write!(f, "shard {shard_id}: {error}"),
            StreamError::SequenceNumberNotFound(seq) => {
                write!(f, "no shard of the stream holds sequence number {seq}")
            }
        }
    }
}

impl core::error::Error for StreamError {}

/// One shard being read.
struct Reading {
    id: String,
    range: HashKeyRange,
    /// Where it was started, to start again from when an iterator
    /// expires before a record was read.
    from: StartingPosition,
    iterator: Option<String>,
    /// The last sequence number read, to resume after an expired iterator.
    last: Option<String>,
    closed: bool,
}

/// Reads every shard of a stream, parents before children, page by page:
/// what `kinesis-agg tail` prints and what a test that must see every
/// record of a stream reads.
///
/// Calls that fail with throttling, 5xx answers, timeouts or lost
/// connections are tried again (for up to
/// [`retry_budget`](Self::retry_budget) each, every attempt given
/// [`request_timeout`](Self::request_timeout)); a GetRecords is repeated
/// with the same iterator, so no page is read twice; an expired iterator is
/// replaced by one after the last record read. Without
/// [`follow`](Self::follow) it ends when every shard is read to its end;
/// with it, it goes on as records arrive.
///
/// # Examples
/// ```no_run
/// # async fn run(client: aws_sdk_kinesis::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use kinesis_agg::sdk::{ShardRead, StartingPosition, StreamReader, user_records_in_shard};
/// let mut reader = StreamReader::new(client, "my-stream", StartingPosition::TrimHorizon);
/// while let Some(page) = reader.next_page().await? {
///     for (i, record) in page.records.iter().enumerate() {
///         if let Ok(ShardRead::Records(users)) = user_records_in_shard(record, i, page.shard.range) {
///             for u in users {
///                 println!("{} {:?}", page.shard.id, u.data);
///             }
///         }
///     }
/// }
/// # Ok(()) }
/// ```
pub struct StreamReader {
    client: Client,
    stream: String,
    from: StartingPosition,
    follow: bool,
    request_timeout: Duration,
    retry_budget: Duration,
    lineage: Lineage,
    /// ListShards' shards, by id.
    known: BTreeMap<String, SdkShard>,
    started: BTreeSet<String>,
    done: BTreeSet<String>,
    reading: Vec<Reading>,
    /// The shards of `reading` still to be read this round, by index.
    round: VecDeque<usize>,
    /// Whether this round read any record.
    got_any: bool,
    /// The shard that holds the starting sequence number, once found.
    root: Option<String>,
    relist: bool,
    idle_rounds: u32,
    retried: BTreeMap<String, u64>,
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("stream", &self.stream)
            .field("from", &self.from)
            .field("follow", &self.follow)
            .field("reading", &self.reading.iter().map(|r| &r.id).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StreamReader {
    /// A reader of `stream` from `from`, stopping at the end of every
    /// shard; calls tried again for up to two minutes, 20 s an attempt.
    pub fn new(client: Client, stream: impl Into<String>, from: StartingPosition) -> Self {
        StreamReader {
            client,
            stream: stream.into(),
            from,
            follow: false,
            request_timeout: Duration::from_secs(20),
            retry_budget: Duration::from_secs(120),
            lineage: Lineage::default(),
            known: BTreeMap::new(),
            started: BTreeSet::new(),
            done: BTreeSet::new(),
            reading: Vec::new(),
            round: VecDeque::new(),
            got_any: false,
            root: None,
            relist: true,
            idle_rounds: 0,
            retried: BTreeMap::new(),
        }
    }

    /// Keep reading as records arrive instead of ending at the end of
    /// every shard.
    #[must_use]
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// How long one call may take before it counts as failed and is tried
    /// again.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long a failing call keeps being tried again before the reader
    /// gives up.
    #[must_use]
    pub fn retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The calls tried again so far, by error code.
    pub fn retried(&self) -> &BTreeMap<String, u64> {
        &self.retried
    }

    /// The next page: the records of one GetRecords answer (possibly none),
    /// shards taken in turn. `None` when every shard is read to its end
    /// (never with [`follow`](Self::follow)).
    ///
    /// # Errors
    /// A call that failed for good, a broken shard list, or no shard holding
    /// the starting sequence number.
    pub async fn next_page(&mut self) -> Result<Option<ShardPage>, StreamError> {
        loop {
            if let Some(n) = self.round.pop_front() {
                if let Some(page) = self.read(n).await? {
                    return Ok(Some(page));
                }
                continue;
            }
            // The round is over: retire finished shards, start new ones.
            self.end_round().await;
            if self.relist {
                self.relist = false;
                self.list().await?;
            }
            if self.reading.is_empty() {
                if !self.follow {
                    return Ok(None);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.relist = true;
                continue;
            }
            self.round = (0..self.reading.len()).collect();
            self.got_any = false;
        }
    }

    /// Notes a call tried again.
    fn note(retried: &mut BTreeMap<String, u64>, code: &str) {
        *retried.entry(code.to_string()).or_default() += 1;
    }

    /// Reads one page of shard `n`; `None` when it has no iterator left.
    async fn read(&mut self, n: usize) -> Result<Option<ShardPage>, StreamError> {
        let Some(it) = self.reading[n].iterator.clone() else {
            return Ok(None);
        };
        let call = self.client.get_records().shard_iterator(it).limit(10_000);
        let retried = &mut self.retried;
        let answer = retry_transient(
            self.retry_budget,
            self.request_timeout,
            |c| Self::note(retried, c),
            || call.clone().send(),
        )
        .await;
        let out = match answer {
            Ok(out) => out,
            Err(e) if e.code() == Some("ExpiredIteratorException") => {
                let r = &self.reading[n];
                let from = match &r.last {
                    Some(seq) => Resume::After(seq.clone()),
                    None => Resume::From(r.from.clone()),
                };
                let id = r.id.clone();
                self.reading[n].iterator = self.iterator(&id, from).await?;
                self.round.push_front(n);
                return Ok(None);
            }
            Err(error) => {
                return Err(StreamError::GetRecords {
                    shard_id: self.reading[n].id.clone(),
                    error,
                });
            }
        };
        let r = &mut self.reading[n];
        if let Some(last) = out.records.last() {
            r.last = Some(last.sequence_number().to_string());
        }
        let caught_up = out.records.is_empty() && out.millis_behind_latest == Some(0);
        r.iterator = out.next_shard_iterator;
        // Done at the end of a closed shard; at the end of an open one
        // too without follow.
        if caught_up && (r.closed || !self.follow) {
            r.iterator = None;
        }
        self.got_any |= !out.records.is_empty();
        Ok(Some(ShardPage {
            shard: crate::Shard {
                id: r.id.clone(),
                range: r.range,
            },
            records: out.records,
            millis_behind_latest: out.millis_behind_latest,
        }))
    }

    /// Retires the shards read to their end; in follow mode, waits a
    /// little after a round that read nothing.
    async fn end_round(&mut self) {
        let before = self.reading.len();
        let done = &mut self.done;
        self.reading.retain(|r| {
            let finished = r.iterator.is_none();
            if finished {
                done.insert(r.id.clone());
            }
            !finished
        });
        if self.reading.len() != before {
            self.relist = true;
        }
        if before == 0 || self.got_any {
            self.idle_rounds = 0;
            return;
        }
        self.idle_rounds += 1;
        if self.follow {
            let pause = if self.idle_rounds > 3 { 1000 } else { 250 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if self.idle_rounds.is_multiple_of(10) {
                self.relist = true;
            }
        }
    }

    /// Lists the shards and starts those whose parents are read.
    async fn list(&mut self) -> Result<(), StreamError> {
        let retried = &mut self.retried;
        let shards = retry_transient(
            self.retry_budget,
            self.request_timeout,
            |c| Self::note(retried, c),
            || list_shards(&self.client, &self.stream),
        )
        .await
        .map_err(StreamError::ListShards)?;
        for s in shards {
            self.lineage
                .insert(s.shard_id(), s.parent_shard_id(), s.adjacent_parent_shard_id());
            self.known.insert(s.shard_id().to_string(), s);
        }
        if let (StartingPosition::AtSequenceNumber(seq), None) = (&self.from, &self.root) {
            self.root = Some(self.find_root(seq.clone()).await?);
        }
        loop {
            let ready = self.lineage.startable(&self.started, &self.done);
            if ready.is_empty() {
                return Ok(());
            }
            for id in ready {
                let from = self
                    .lineage
                    .start_for(&id, &self.from, self.root.as_deref(), &self.started);
                self.started.insert(id.clone());
                let Some(from) = from else {
                    // Not to be read: its children may be.
                    self.done.insert(id);
                    continue;
                };
                self.start(id, from).await?;
            }
        }
    }

    /// The shard that takes the starting sequence number: the first (by
    /// id) that gives an iterator at it.
    async fn find_root(&mut self, seq: String) -> Result<String, StreamError> {
        let ids: Vec<String> = self.known.keys().cloned().collect();
        for id in ids {
            let at = StartingPosition::AtSequenceNumber(seq.clone());
            if self.iterator(&id, Resume::From(at)).await.is_ok() {
                return Ok(id);
            }
        }
        Err(StreamError::SequenceNumberNotFound(seq))
    }

    /// Starts reading shard `id` from `from`.
    async fn start(&mut self, id: String, from: StartingPosition) -> Result<(), StreamError> {
        let Some(shard) = self.known.get(&id) else {
            return Ok(());
        };
        let range = shard_range(shard).map_err(|error| StreamError::InvalidShard {
            shard_id: id.clone(),
            error,
        })?;
        let closed = shard
            .sequence_number_range()
            .is_some_and(|r| r.ending_sequence_number().is_some());
        let iterator = self.iterator(&id, Resume::From(from.clone())).await?;
        self.reading.push(Reading {
            id,
            range,
            from,
            iterator,
            last: None,
            closed,
        });
        Ok(())
    }

    /// An iterator for shard `id`.
    async fn iterator(&mut self, id: &str, at: Resume) -> Result<Option<String>, StreamError> {
        let req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(id);
        let req = match at {
            Resume::After(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            Resume::From(StartingPosition::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            Resume::From(StartingPosition::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
            Resume::From(StartingPosition::AtSequenceNumber(seq)) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(seq),
            Resume::From(StartingPosition::AtTimestamp(t)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(t),
        };
        let retried = &mut self.retried;
        retry_transient(
            self.retry_budget,
            self.request_timeout,
            |c| Self::note(retried, c),
            || req.clone().send(),
        )
        .await
        .map(|o| o.shard_iterator)
        .map_err(|error| StreamError::GetShardIterator {
            shard_id: id.to_string(),
            error,
        })
    }
}

/// Where an iterator starts.
enum Resume {
    /// Where the shard's reading started.
    From(StartingPosition),
    /// After the last record read.
    After(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    /// A stream that split shard 0 into 2 and 3, then merged 1 and 2 into
    /// 4: shard 0 (parent of 2, 3) and 1 come first; 2 and 3 once 0 is
    /// done; 4 once 1 and 2 are.
    fn resharded() -> Lineage {
        let mut l = Lineage::default();
        l.insert("s0", None, None);
        l.insert("s1", None, None);
        l.insert("s2", Some("s0"), None);
        l.insert("s3", Some("s0"), None);
        l.insert("s4", Some("s1"), Some("s2"));
        l
    }

    #[test]
    fn parents_are_read_before_children() {
        let l = resharded();
        let none = set(&[]);
        assert_eq!(l.startable(&none, &none), ["s0", "s1"]);
        let started = set(&["s0", "s1"]);
        // Nothing more while the parents are being read.
        assert!(l.startable(&started, &none).is_empty());
        // The split's children once their parent is done.
        assert_eq!(l.startable(&started, &set(&["s0"])), ["s2", "s3"]);
        // The merge's child waits for both of its parents.
        let started = set(&["s0", "s1", "s2", "s3"]);
        assert!(l.startable(&started, &set(&["s0", "s2"])).is_empty());
        assert_eq!(l.startable(&started, &set(&["s0", "s1", "s2"])), ["s4"]);
    }

    #[test]
    fn a_parent_gone_from_the_list_does_not_hold_its_children() {
        let mut l = Lineage::default();
        l.insert("s2", Some("s0"), None);
        l.insert("s4", Some("s2"), Some("s1"));
        let none = set(&[]);
        assert_eq!(l.startable(&none, &none), ["s2"]);
        assert_eq!(l.startable(&set(&["s2"]), &set(&["s2"])), ["s4"]);
    }

    #[test]
    fn descent_follows_both_parents_of_a_merge() {
        let l = resharded();
        assert!(l.descends("s4", "s0"));
        assert!(l.descends("s4", "s1"));
        assert!(l.descends("s3", "s0"));
        assert!(l.descends("s0", "s0"));
        assert!(!l.descends("s3", "s1"));
        assert!(!l.descends("s1", "s0"));
        assert!(!l.descends("unknown", "s0"));
        // A cycle (never from Kinesis) ends rather than loops.
        let mut cyclic = Lineage::default();
        cyclic.insert("a", Some("b"), None);
        cyclic.insert("b", Some("a"), None);
        assert!(!cyclic.descends("a", "c"));
    }

    #[test]
    fn where_each_shard_starts() {
        let l = resharded();
        let seq = StartingPosition::AtSequenceNumber("49".into());
        let none = set(&[]);
        // A sequence number: its shard there, descendants from their
        // start, the rest not at all.
        assert_eq!(l.start_for("s0", &seq, Some("s0"), &none), Some(seq.clone()));
        assert_eq!(
            l.start_for("s4", &seq, Some("s0"), &none),
            Some(StartingPosition::TrimHorizon)
        );
        assert_eq!(l.start_for("s1", &seq, Some("s0"), &none), None);
        // Latest: shards with no parent started from now; children of a
        // started shard from their start.
        let latest = StartingPosition::Latest;
        assert_eq!(l.start_for("s0", &latest, None, &none), Some(latest.clone()));
        assert_eq!(
            l.start_for("s2", &latest, None, &set(&["s0"])),
            Some(StartingPosition::TrimHorizon)
        );
        assert_eq!(l.start_for("s2", &latest, None, &none), Some(latest.clone()));
        // The others everywhere.
        let t = StartingPosition::TrimHorizon;
        assert_eq!(l.start_for("s3", &t, None, &none), Some(t.clone()));
    }
}
