//! Shard-aware aggregation (feature `alloc`): one aggregator per shard, so
//! that every aggregate holds only user records of the shard it is routed
//! to, and KCL consumers keep every record.
//!
//! # When the shard map changes
//!
//! After a split or a merge, the open shards change. Aggregates still
//! buffered for a closed shard must not be sent as they are: Kinesis would
//! route each by its outer explicit hash key to *one* child, whose KCL
//! consumers would discard the records that belong to the other child.
//! Call [`ShardedAggregator::reshard`] with the new map (from ListShards):
//! it takes every buffered aggregate apart and routes its records again,
//! oldest aggregate first, so nothing is lost and each key's records keep
//! their order. Aggregates already handed out before the split are fine:
//! they reached the parent shard while it was open.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::decode::{Deaggregated, Tag};
use crate::encode::{Aggregate, Digested, Record, RecordAggregator, Refused, Undigested};
use crate::error::{Error, ErrorKind};
use crate::hash::{HashKeyRange, effective_hash_key, write_hash_key};
use crate::keycache::HashKeyCache;
use crate::limits::{DEFAULT_LIMIT, HASH_KEY_MAX_DIGITS};

/// One shard: its id and the hash keys it owns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// The shard id, such as `shardId-000000000001`.
    pub id: String,
    /// Its hash key range.
    pub range: HashKeyRange,
}

/// One shard as ListShards lists it, borrowed from whatever shape it was
/// read in (the API's JSON, an SDK's types, a binding's dictionaries): each
/// face maps its fields onto this, and [`ShardMap::from_listed`] decides
/// which are open and how they route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListedShard<'a> {
    /// `ShardId`.
    pub shard_id: &'a str,
    /// `HashKeyRange.StartingHashKey`, decimal.
    pub starting_hash_key: &'a str,
    /// `HashKeyRange.EndingHashKey`, decimal.
    pub ending_hash_key: &'a str,
    /// Whether `SequenceNumberRange` has an `EndingSequenceNumber`: the
    /// shard is closed (split or merged away) and takes no more records.
    pub closed: bool,
}

/// The open shards of a stream, sorted by hash key, without overlaps.
///
/// # Examples
/// ```
/// use kinesis_agg::{HashKeyRange, Shard, ShardMap};
/// let half = 1u128 << 127;
/// let map = ShardMap::new([
///     Shard { id: "shardId-1".into(), range: HashKeyRange::new(half, u128::MAX).unwrap() },
///     Shard { id: "shardId-0".into(), range: HashKeyRange::new(0, half - 1).unwrap() },
/// ])
/// .unwrap();
/// assert_eq!(map.route(3).unwrap().id, "shardId-0");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<Shard>,
    ranges: Vec<HashKeyRange>,
    /// The ids again, shared with the aggregates (no copy per aggregate).
    ids: Vec<Arc<str>>,
    /// Where a search for each slice of the hash key space starts.
    slices: Slices,
}

impl core::fmt::Debug for ShardMap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShardMap").field("shards", &self.shards).finish()
    }
}

/// Which shard a hash key goes to, in a step or two: the answer of a
/// binary search over the shards' ranges (eight unpredictable 128-bit
/// compares for 200 shards, on every user record) from a table.
///
/// The hash key space is cut into 4,096 equal slices; for each, the table
/// holds the last shard starting at or below the slice's first key. A
/// lookup starts there and steps past the shards that start further into
/// the slice (none or one, unless the stream has thousands of shards).
#[derive(Clone, PartialEq, Eq)]
struct Slices(Vec<u32>);

const SLICE_BITS: u32 = 12;
const SLICE_SHIFT: u32 = 128 - SLICE_BITS;

impl Slices {
    fn new(ranges: &[HashKeyRange]) -> Self {
        let mut first = Vec::with_capacity(1 << SLICE_BITS);
        let mut i = 0usize;
        for slice in 0..1u128 << SLICE_BITS {
            let key = slice << SLICE_SHIFT;
            while i + 1 < ranges.len() && ranges[i + 1].start <= key {
                i += 1;
            }
            first.push(i as u32);
        }
        Slices(first)
    }

    /// The index of the range holding `hash_key`, `None` in a gap.
    #[inline]
    fn route(&self, ranges: &[HashKeyRange], hash_key: u128) -> Option<usize> {
        let mut i = *self.0.get((hash_key >> SLICE_SHIFT) as usize)? as usize;
        while ranges.get(i + 1).is_some_and(|r| r.start <= hash_key) {
            i += 1;
        }
        ranges.get(i).filter(|r| r.contains(hash_key)).map(|_| i)
    }
}

/// Sorts shards by range: a heap sort, O(n log n) with no allocation and a
/// body of a few hundred bytes where the standard library's sorts add 5 to
/// 7 KiB to a WebAssembly build (a stream has at most some thousands of
/// shards, sorted once per map).
fn sort_by_range(v: &mut [Shard]) {
    fn sift_down(v: &mut [Shard], mut root: usize, end: usize) {
        loop {
            let mut child = 2 * root + 1;
            if child >= end {
                return;
            }
            if child + 1 < end && v[child].range < v[child + 1].range {
                child += 1;
            }
            if v[root].range >= v[child].range {
                return;
            }
            v.swap(root, child);
            root = child;
        }
    }
    let n = v.len();
    for root in (0..n / 2).rev() {
        sift_down(v, root, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

impl ShardMap {
    /// A map of these shards (any order).
    ///
    /// # Errors
    /// [`Error::ShardsOverlap`] when two ranges share a hash key. Gaps are
    /// allowed: a record in a gap is refused on add.
    pub fn new(shards: impl IntoIterator<Item = Shard>) -> Result<Self, Error> {
        let mut shards: Vec<Shard> = shards.into_iter().collect();
        sort_by_range(&mut shards);
        for (i, w) in shards.windows(2).enumerate() {
            if w[1].range.start <= w[0].range.end {
                return Err(Error::ShardsOverlap { shard: i + 1 });
            }
        }
        let ranges: Vec<HashKeyRange> = shards.iter().map(|s| s.range).collect();
        let ids = shards.iter().map(|s| Arc::from(s.id.as_str())).collect();
        let slices = Slices::new(&ranges);
        Ok(ShardMap {
            shards,
            ranges,
            ids,
            slices,
        })
    }

    /// A one-shard map owning every hash key.
    pub fn single(id: impl Into<String>) -> Self {
        let shard = Shard {
            id: id.into(),
            range: HashKeyRange::FULL,
        };
        ShardMap {
            ranges: alloc::vec![shard.range],
            ids: alloc::vec![Arc::from(shard.id.as_str())],
            shards: alloc::vec![shard],
            slices: Slices(alloc::vec![0; 1 << SLICE_BITS]),
        }
    }

    /// The shards, sorted by hash key.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The index in [`shards`](Self::shards) of the shard owning
    /// `hash_key` (`None` in a gap), in a step or two from a table of the
    /// hash key space's 4,096 slices: what [`route`](crate::route)'s binary
    /// search over the ranges answers.
    #[inline]
    pub fn route_index(&self, hash_key: u128) -> Option<usize> {
        self.slices.route(&self.ranges, hash_key)
    }

    /// The shard owning `hash_key`, as [`route_index`](Self::route_index).
    pub fn route(&self, hash_key: u128) -> Option<&Shard> {
        self.route_index(hash_key).map(|i| &self.shards[i])
    }

    /// The map of the open shards of a ListShards answer: closed shards are
    /// left out, since records go to open shards only.
    ///
    /// # Errors
    /// [`Error::InvalidHashKeyRange`] for an open shard whose hash keys
    /// are not hash keys or whose start exceeds its end (a closed shard's
    /// are not read), [`Error::ShardsOverlap`] when open shards overlap.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{ListedShard, ShardMap};
    /// let listed = [
    ///     ListedShard { shard_id: "shardId-0", starting_hash_key: "0", ending_hash_key: "340282366920938463463374607431768211455", closed: true },
    ///     ListedShard { shard_id: "shardId-1", starting_hash_key: "0", ending_hash_key: "9", closed: false },
    ///     ListedShard { shard_id: "shardId-2", starting_hash_key: "10", ending_hash_key: "340282366920938463463374607431768211455", closed: false },
    /// ];
    /// let map = ShardMap::from_listed(listed).unwrap();
    /// assert_eq!(map.shards().len(), 2);
    /// assert_eq!(map.route(10).unwrap().id, "shardId-2");
    /// ```
    pub fn from_listed<'a>(shards: impl IntoIterator<Item = ListedShard<'a>>) -> Result<Self, Error> {
        let mut open = Vec::new();
        for s in shards.into_iter().filter(|s| !s.closed) {
            open.push(Shard {
                id: s.shard_id.into(),
                range: HashKeyRange::from_decimal(s.starting_hash_key, s.ending_hash_key)?,
            });
        }
        ShardMap::new(open)
    }

    /// Reads the JSON that `aws kinesis list-shards` prints (or a
    /// ListShards API response): `{"Shards": [{"ShardId", "HashKeyRange":
    /// {"StartingHashKey", "EndingHashKey"}, "SequenceNumberRange": {...}}]}`.
    /// Closed shards (those whose `SequenceNumberRange` has an
    /// `EndingSequenceNumber`) are left out: records go to open shards only.
    ///
    /// # Errors
    /// [`Error::InvalidShardList`] for JSON of another shape,
    /// [`Error::InvalidHashKeyRange`] for bad hash keys,
    /// [`Error::ShardsOverlap`] when open shards overlap.
    #[cfg(feature = "json")]
    pub fn from_list_shards_json(json: &str) -> Result<Self, Error> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct List {
            shards: Vec<JsonShard>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct JsonShard {
            shard_id: String,
            hash_key_range: JsonRange,
            #[serde(default)]
            sequence_number_range: Option<JsonSeq>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct JsonRange {
            starting_hash_key: String,
            ending_hash_key: String,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct JsonSeq {
            #[serde(default)]
            ending_sequence_number: Option<String>,
        }
        let list: List = serde_json::from_str(json).map_err(|e| Error::InvalidShardList {
            line: e.line(),
            column: e.column(),
        })?;
        ShardMap::from_listed(list.shards.iter().map(|s| {
            ListedShard {
                shard_id: &s.shard_id,
                starting_hash_key: &s.hash_key_range.starting_hash_key,
                ending_hash_key: &s.hash_key_range.ending_hash_key,
                closed: s
                    .sequence_number_range
                    .as_ref()
                    .is_some_and(|r| r.ending_sequence_number.is_some()),
            }
        }))
    }
}

/// A completed aggregate for one shard.
///
/// Put it with [`partition_key`](Self::partition_key) and
/// [`explicit_hash_key`](Self::explicit_hash_key): the latter routes it to
/// its shard. Hand it back with [`ShardedAggregator::recycle`] once sent.
/// `S` says whether its MD5 trailer is written, as for
/// [`Aggregate`]: the low-level [`ShardedAggregator::insert`] and
/// [`ShardedAggregator::complete`] give them undigested, to be digested
/// several together.
pub struct ShardAggregate<S = Digested> {
    route: ShardRoute,
    aggregate: Aggregate<S>,
}

/// Where a shard aggregate goes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ShardRoute {
    shard_id: Arc<str>,
    /// Index of the shard in the map it was made under.
    shard: usize,
    /// The first user record's effective hash key, in decimal.
    ehk: [u8; HASH_KEY_MAX_DIGITS],
    ehk_len: u8,
}

impl<S> ShardAggregate<S> {
    /// The shard it belongs to.
    pub fn shard_id(&self) -> &str {
        &self.route.shard_id
    }

    /// The shard's id, shared with the map it was made under.
    pub fn shard_id_arc(&self) -> &Arc<str> {
        &self.route.shard_id
    }

    /// The shard's index in [`ShardMap::shards`] of the map it was made
    /// under.
    pub fn shard_index(&self) -> usize {
        self.route.shard
    }

    /// The outer explicit hash key to put it with: the first user record's
    /// effective hash key, inside the shard's range (what the KPL does).
    pub fn explicit_hash_key(&self) -> &str {
        let digits = &self.route.ehk[HASH_KEY_MAX_DIGITS - usize::from(self.route.ehk_len)..];
        // Only ASCII digits were written.
        core::str::from_utf8(digits).unwrap_or("0")
    }

    /// The outer partition key: the first user record's.
    pub fn partition_key(&self) -> &str {
        self.aggregate.partition_key()
    }

    /// How many user records it holds.
    pub fn record_count(&self) -> usize {
        self.aggregate.record_count()
    }

    /// What Kinesis counts against the size limit: data plus outer
    /// partition key.
    pub fn counted_len(&self) -> usize {
        self.aggregate.counted_len()
    }

    /// The aggregate itself. Its own
    /// [`explicit_hash_key`](Aggregate::explicit_hash_key) is the first
    /// record's explicit hash key, if any: put it with this one's instead.
    pub fn aggregate(&self) -> &Aggregate<S> {
        &self.aggregate
    }

    /// The aggregate, giving up the shard.
    pub fn into_aggregate(self) -> Aggregate<S> {
        self.aggregate
    }
}

impl ShardAggregate {
    /// The Kinesis data blob.
    pub fn data(&self) -> &[u8] {
        self.aggregate.data()
    }
}

impl ShardAggregate<Undigested> {
    /// Writes the MD5 trailer (see [`Aggregate::digest`]).
    pub fn digest(self) -> ShardAggregate {
        ShardAggregate {
            route: self.route,
            aggregate: self.aggregate.digest(),
        }
    }

    /// Writes the MD5 trailers of many shard aggregates side by side (see
    /// [`Aggregate::digest_all`]), in order.
    pub fn digest_all(aggregates: impl IntoIterator<Item = Self>) -> Vec<ShardAggregate> {
        let all: Vec<Self> = aggregates.into_iter().collect();
        let digests = crate::encode::digests_of(all.iter().map(|a| a.aggregate.body()));
        all.into_iter()
            .zip(digests)
            .map(|(a, d)| ShardAggregate {
                route: a.route,
                aggregate: a.aggregate.with_digest(d),
            })
            .collect()
    }
}

impl Clone for ShardAggregate {
    fn clone(&self) -> Self {
        ShardAggregate {
            route: self.route.clone(),
            aggregate: self.aggregate.clone(),
        }
    }
}

impl PartialEq for ShardAggregate {
    fn eq(&self, other: &Self) -> bool {
        self.route == other.route && self.aggregate == other.aggregate
    }
}

impl Eq for ShardAggregate {}

impl core::hash::Hash for ShardAggregate {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.route.hash(state);
        self.aggregate.hash(state);
    }
}

impl<S> core::fmt::Debug for ShardAggregate<S> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShardAggregate")
            .field("shard_id", &self.route.shard_id)
            .field("explicit_hash_key", &self.explicit_hash_key())
            .field("aggregate", &self.aggregate)
            .finish()
    }
}

/// Where [`ShardedAggregator::insert`] put a user record.
#[derive(Debug)]
#[non_exhaustive]
pub struct Inserted {
    /// The shard's index in the map's [`shards`](ShardMap::shards).
    pub shard: usize,
    /// The record's position in the shard's current aggregate: its
    /// sub-sequence number once the aggregate is put.
    pub sub_sequence_number: usize,
    /// The shard's previous aggregate, completed (without its MD5) because
    /// it had no room for this record or held `max_count` records already.
    /// It holds every record inserted into the shard since the aggregate
    /// before it. (Boxed: one allocation per aggregate keeps the answer
    /// of every insert small.)
    pub completed: Option<Box<ShardAggregate<Undigested>>>,
}

struct PerShard {
    agg: RecordAggregator,
    /// Effective hash key of the current aggregate's first record.
    first: u128,
    /// When the current aggregate was started (add counter).
    started: u64,
}

/// One [`RecordAggregator`] per shard of a [`ShardMap`].
///
/// Every aggregate it emits holds only user records whose effective hash
/// key lies in its shard, and carries an outer explicit hash key inside
/// that shard, so Kinesis routes it there and the KCL keeps all of it.
/// Records keep their order within a shard: the records of one partition
/// key (routed by that key) or of one explicit hash key stay in order.
/// Partition keys' MD5s, which route records, are remembered in a
/// [`HashKeyCache`].
///
/// [`add`](Self::add), [`finish_oldest`](Self::finish_oldest),
/// [`finish_all`](Self::finish_all) and [`reshard`](Self::reshard) do
/// everything; [`insert`](Self::insert), [`complete`](Self::complete) and
/// [`set_map`](Self::set_map) are the steps they are made of, for a caller
/// that keeps its own books per shard (a producer answering each record)
/// and digests aggregates in numbers.
///
/// # Examples
/// ```
/// use kinesis_agg::{HashKeyRange, Record, Shard, ShardMap, ShardedAggregator};
/// let half = 1u128 << 127;
/// let map = ShardMap::new([
///     Shard { id: "s0".into(), range: HashKeyRange::new(0, half - 1).unwrap() },
///     Shard { id: "s1".into(), range: HashKeyRange::new(half, u128::MAX).unwrap() },
/// ]).unwrap();
/// let mut agg = ShardedAggregator::new(map);
/// for i in 0..100 {
///     let key = format!("key-{i}");
///     let done = agg.add(Record::new(&key, b"reading")).unwrap();
///     assert!(done.is_empty()); // nothing full yet
/// }
/// assert_eq!(agg.record_count(), 100);
/// let out = agg.finish_all();
/// assert_eq!(out.len(), 2);
/// assert_eq!(out.iter().map(|a| a.record_count()).sum::<usize>(), 100);
/// for a in out {
///     // ... put a.data() with a.partition_key() and a.explicit_hash_key(), then:
///     agg.recycle(a);
/// }
/// ```
pub struct ShardedAggregator {
    map: ShardMap,
    shards: Vec<PerShard>,
    limit: usize,
    max_count: usize,
    cap: Option<usize>,
    clock: u64,
    /// Sum of the shards' encoded sizes, kept as they change.
    buffered: usize,
    keys: HashKeyCache,
}

impl core::fmt::Debug for ShardedAggregator {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ShardedAggregator")
            .field("shards", &self.map.shards.len())
            .field("limit", &self.limit)
            .field("buffered_bytes", &self.buffered_bytes())
            .finish_non_exhaustive()
    }
}

impl ShardedAggregator {
    /// Aggregates per shard with the default 1 MiB limit.
    pub fn new(map: ShardMap) -> Self {
        Self::build(map, DEFAULT_LIMIT)
    }

    /// Aggregates per shard with a limit per aggregate.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`].
    pub fn with_limit(map: ShardMap, limit: usize) -> Result<Self, Error> {
        RecordAggregator::with_limit(limit)?;
        Ok(Self::build(map, limit))
    }

    /// An empty aggregator for a limit already checked.
    fn build(map: ShardMap, limit: usize) -> Self {
        ShardedAggregator {
            shards: Self::per_shard(&map, limit),
            map,
            limit,
            max_count: usize::MAX,
            cap: None,
            clock: 0,
            buffered: 0,
            keys: HashKeyCache::new(),
        }
    }

    /// An empty aggregator for every shard of `map`.
    fn per_shard(map: &ShardMap, limit: usize) -> Vec<PerShard> {
        map.shards
            .iter()
            .map(|_| PerShard {
                agg: RecordAggregator::with_limit(limit).unwrap_or_default(),
                first: 0,
                started: 0,
            })
            .collect()
    }

    /// Caps the bytes buffered over all shards: when an add takes the total
    /// past `bytes`, the largest buffered aggregates are completed and
    /// returned with that add until the total is within the cap again
    /// ([`add`](Self::add) only).
    pub fn with_buffer_cap(mut self, bytes: usize) -> Self {
        self.cap = Some(bytes);
        self
    }

    /// Caps the user records one aggregate holds (KPL
    /// `AggregationMaxCount`; at least 1): a shard's aggregate that holds
    /// this many is completed before the next record goes in.
    pub fn with_max_count(mut self, records: usize) -> Self {
        self.max_count = records.max(1);
        self
    }

    /// The current map.
    pub fn shard_map(&self) -> &ShardMap {
        &self.map
    }

    /// Bytes buffered over all shards (exact encoded sizes).
    pub fn buffered_bytes(&self) -> usize {
        debug_assert_eq!(
            self.buffered,
            self.shards.iter().map(|s| s.agg.encoded_len()).sum::<usize>()
        );
        self.buffered
    }

    /// User records buffered over all shards.
    pub fn record_count(&self) -> usize {
        self.shards.iter().map(|s| s.agg.record_count()).sum()
    }

    /// User records buffered for one shard (by its index in the map).
    pub fn shard_record_count(&self, shard: usize) -> usize {
        self.shards.get(shard).map_or(0, |s| s.agg.record_count())
    }

    /// `true` when no record is buffered.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.agg.is_empty())
    }

    /// A user record's effective hash key, its partition key's MD5 found
    /// in this aggregator's [`HashKeyCache`].
    ///
    /// # Errors
    /// [`Error::InvalidHashKey`] for an explicit hash key that is not one.
    pub fn hash_key(&mut self, partition_key: &str, explicit_hash_key: Option<&str>) -> Result<u128, Error> {
        self.keys.hash_key(partition_key, explicit_hash_key)
    }

    /// Completes one shard's aggregate (by the shard's index in the map),
    /// without its MD5; `None` when it is empty.
    pub fn complete(&mut self, shard: usize) -> Option<ShardAggregate<Undigested>> {
        let s = self.shards.get_mut(shard)?;
        self.buffered -= s.agg.encoded_len();
        let aggregate = s.agg.finish_undigested()?;
        let mut ehk = [0u8; HASH_KEY_MAX_DIGITS];
        let ehk_len = write_hash_key(s.first, &mut ehk).len() as u8;
        Some(ShardAggregate {
            route: ShardRoute {
                shard_id: self.map.ids[shard].clone(),
                shard,
                ehk,
                ehk_len,
            },
            aggregate,
        })
    }

    /// Takes back a sent aggregate's buffer, so that the next aggregate of
    /// any shard reuses it instead of allocating one.
    pub fn recycle<S>(&mut self, aggregate: ShardAggregate<S>) {
        let i = if aggregate.route.shard < self.shards.len() {
            aggregate.route.shard
        } else {
            0
        };
        if let Some(s) = self.shards.get_mut(i) {
            s.agg.recycle(aggregate.aggregate);
        }
    }

    /// Puts a user record into its shard's aggregate: the step
    /// [`add`](Self::add) is made of. `hash_key` is its effective hash key
    /// when the caller knows it (else it is computed, the partition key's
    /// MD5 from the cache). Says where the record went and gives the
    /// shard's previous aggregate, without its MD5, when this record
    /// completed it. The buffer cap is not applied.
    ///
    /// # Errors
    /// Invalid keys, a record too large even alone, or a hash key no shard
    /// owns ([`Error::NoShardForHashKey`]); nothing changes then.
    #[inline]
    pub fn insert(&mut self, record: Record<'_>, hash_key: Option<u128>) -> Result<Inserted, Error> {
        let mut completed = None;
        let (shard, sub_sequence_number) = self.place(record, hash_key, &mut completed)?;
        Ok(Inserted {
            shard,
            sub_sequence_number,
            completed: completed.map(Box::new),
        })
    }

    /// [`insert`](Self::insert), the completed aggregate written where the
    /// caller keeps it (a large value returned would be copied on every
    /// record). Returns the shard and the record's position there.
    #[inline]
    fn place(
        &mut self,
        record: Record<'_>,
        hash_key: Option<u128>,
        completed: &mut Option<ShardAggregate<Undigested>>,
    ) -> Result<(usize, usize), Error> {
        let hash_key = match hash_key {
            Some(h) => h,
            None => self
                .keys
                .hash_key(record.partition_key, record.explicit_hash_key)?,
        };
        let i = self
            .map
            .route_index(hash_key)
            .ok_or(Error::NoShardForHashKey { hash_key })?;
        self.clock += 1;
        if self.shards[i].agg.record_count() >= self.max_count {
            *completed = self.complete(i);
        }
        let before = self.shards[i].agg.encoded_len();
        match self.shards[i].agg.try_add(record) {
            Ok(()) => self.buffered += self.shards[i].agg.encoded_len() - before,
            Err(Refused { error, .. }) if error.kind() == ErrorKind::Full => {
                // The record fits an empty aggregate (else it would be
                // RecordTooLarge), so the retry succeeds.
                *completed = self.complete(i);
                self.shards[i].agg.try_add(record).map_err(|r| r.error)?;
                self.buffered += self.shards[i].agg.encoded_len();
            }
            Err(r) => return Err(r.error),
        }
        let s = &mut self.shards[i];
        let count = s.agg.record_count();
        if count == 1 {
            s.first = hash_key;
            s.started = self.clock;
        }
        Ok((i, count - 1))
    }

    /// Adds a user record to its shard's aggregate. Returns the aggregates
    /// this completed: the shard's previous one when the record did not
    /// fit, and the largest buffered one when the buffer cap was passed.
    ///
    /// # Errors
    /// Invalid keys, a record too large even alone, or a hash key no shard
    /// owns; nothing changes then.
    pub fn add(&mut self, record: Record<'_>) -> Result<Vec<ShardAggregate>, Error> {
        let mut completed = None;
        self.place(record, None, &mut completed)?;
        let mut out: Vec<ShardAggregate<Undigested>> = completed.into_iter().collect();
        if let Some(cap) = self.cap {
            while self.buffered_bytes() > cap {
                let largest = (0..self.shards.len()).max_by_key(|&j| self.shards[j].agg.encoded_len());
                match largest.and_then(|j| self.complete(j)) {
                    Some(a) => out.push(a),
                    None => break,
                }
            }
        }
        Ok(ShardAggregate::digest_all(out))
    }

    /// The shard whose aggregate was started first, if any is buffered.
    fn oldest(&self) -> Option<usize> {
        (0..self.shards.len())
            .filter(|&i| self.shards[i].agg.record_count() > 0)
            .min_by_key(|&i| self.shards[i].started)
    }

    /// Completes the aggregate that was started first, if any.
    pub fn finish_oldest(&mut self) -> Option<ShardAggregate> {
        let i = self.oldest()?;
        self.complete(i).map(ShardAggregate::digest)
    }

    /// Completes every buffered aggregate, oldest first, their MD5s
    /// computed side by side.
    pub fn finish_all(&mut self) -> Vec<ShardAggregate> {
        ShardAggregate::digest_all(self.complete_all())
    }

    /// Completes every buffered aggregate, oldest first, without MD5s.
    fn complete_all(&mut self) -> Vec<ShardAggregate<Undigested>> {
        let mut out = Vec::new();
        while let Some(i) = self.oldest() {
            out.extend(self.complete(i));
        }
        out
    }

    /// Switches to a new shard map, completing (without their MD5s, oldest
    /// first) and returning every aggregate buffered under the old one:
    /// the step [`reshard`](Self::reshard) is made of, for a caller that
    /// routes those records again itself. Shard indices from here on are
    /// the new map's.
    pub fn set_map(&mut self, map: ShardMap) -> Vec<ShardAggregate<Undigested>> {
        let buffered = self.complete_all();
        self.shards = Self::per_shard(&map, self.limit);
        self.map = map;
        self.buffered = 0;
        buffered
    }

    /// Switches to a new shard map (after a split or merge), routing every
    /// buffered record again under it. Returns the aggregates completed
    /// while doing so. See the module docs.
    ///
    /// # Errors
    /// [`Error::NoShardForHashKey`] when the new map leaves a buffered
    /// record without a shard; the aggregator then keeps the old map and
    /// its records.
    pub fn reshard(&mut self, map: ShardMap) -> Result<Vec<ShardAggregate>, Error> {
        let buffered = self.finish_all();
        if let Err(e) = Self::routable(&buffered, &map) {
            // Put the records back as they were: the same records into the
            // same shards under the same limit form the same aggregates,
            // so nothing completes here.
            let cap = self.cap.take();
            for a in buffered {
                let done = self.readd(&a)?;
                debug_assert!(done.is_empty());
                self.recycle(a);
            }
            self.cap = cap;
            return Err(e);
        }
        let old = self.set_map(map);
        debug_assert!(old.is_empty());
        let mut out = Vec::new();
        for a in buffered {
            out.extend(self.readd(&a)?);
            self.recycle(a);
        }
        Ok(out)
    }

    fn routable(buffered: &[ShardAggregate], map: &ShardMap) -> Result<(), Error> {
        for a in buffered {
            if let Ok(Deaggregated::Aggregated(recs)) = crate::decode::deaggregate(a.data()) {
                for r in recs.records() {
                    let hash_key = effective_hash_key(r.partition_key, r.explicit_hash_key)?;
                    map.route_index(hash_key)
                        .ok_or(Error::NoShardForHashKey { hash_key })?;
                }
            }
        }
        Ok(())
    }

    fn readd(&mut self, a: &ShardAggregate) -> Result<Vec<ShardAggregate>, Error> {
        let mut out = Vec::new();
        let mut tags: Vec<Tag<'_>> = Vec::new();
        if let Ok(Deaggregated::Aggregated(recs)) = crate::decode::deaggregate(a.data()) {
            for r in recs.records() {
                tags.clear();
                tags.extend(r.tags);
                let record = Record::new(r.partition_key, r.data)
                    .with_optional_explicit_hash_key(r.explicit_hash_key)
                    .with_tags(&tags);
                out.extend(self.add(record)?);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::vec;

    proptest::proptest! {
        /// The heap sort orders shards as the standard sort does, ties
        /// (equal ranges) included.
        #[test]
        fn shards_sort_by_range_as_the_standard_sort_does(
            bounds in proptest::collection::vec((0u128..40, 0u128..40), 0..80),
        ) {
            let mut ours: Vec<Shard> = bounds
                .iter()
                .enumerate()
                .map(|(i, &(a, b))| Shard {
                    id: format!("{i}"),
                    range: HashKeyRange::new(a.min(b), a.max(b)).unwrap(),
                })
                .collect();
            let mut theirs = ours.clone();
            sort_by_range(&mut ours);
            theirs.sort_by_key(|s| s.range);
            let ranges = |v: &[Shard]| v.iter().map(|s| s.range).collect::<Vec<_>>();
            proptest::prop_assert_eq!(ranges(&ours), ranges(&theirs));
            let mut ids: Vec<&str> = ours.iter().map(|s| s.id.as_str()).collect();
            ids.sort_unstable();
            let mut all: Vec<&str> = theirs.iter().map(|s| s.id.as_str()).collect();
            all.sort_unstable();
            proptest::prop_assert_eq!(ids, all);
        }
    }

    fn map(bounds: &[(u128, u128)]) -> ShardMap {
        ShardMap::new(bounds.iter().enumerate().map(|(i, &(a, b))| Shard {
            id: format!("shardId-{i:012}"),
            range: HashKeyRange::new(a, b).unwrap(),
        }))
        .unwrap()
    }

    /// Keys at and around every boundary, every slice's first key, and a
    /// spread of others.
    fn probes(m: &ShardMap, seed: u64) -> Vec<u128> {
        let mut keys = vec![0, 1, u128::MAX, u128::MAX - 1];
        for s in m.shards() {
            for k in [s.range.start, s.range.end] {
                keys.extend([k.wrapping_sub(1), k, k.wrapping_add(1)]);
            }
        }
        let step = if cfg!(miri) { 64 } else { 1 };
        keys.extend((0..1u128 << SLICE_BITS).step_by(step).map(|s| s << SLICE_SHIFT));
        let mut x = seed | 1;
        for _ in 0..if cfg!(miri) { 200 } else { 20_000 } {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            keys.push(u128::from(x) << 64 | u128::from(x.rotate_left(29)));
        }
        keys
    }

    /// The slice table answers as a binary search over the ranges does.
    fn check(m: &ShardMap, seed: u64) {
        for k in probes(m, seed) {
            assert_eq!(m.route_index(k), crate::route(&m.ranges, k), "hash key {k}");
        }
    }

    #[test]
    fn the_slice_table_answers_as_the_binary_search() {
        // One shard; even splits of several sizes; shards narrower than a
        // slice; gaps (a map being changed); a lone shard in the middle.
        check(&ShardMap::single("shardId-000000000000"), 1);
        for n in [2u128, 3, 7, 200, 4096, 5000] {
            if cfg!(miri) && n > 200 {
                continue;
            }
            let w = u128::MAX / n;
            let bounds: Vec<(u128, u128)> = (0..n)
                .map(|i| (i * w, if i + 1 == n { u128::MAX } else { (i + 1) * w - 1 }))
                .collect();
            check(&map(&bounds), n as u64);
        }
        let narrow = 1u128 << 100;
        check(
            &map(&[
                (0, narrow),
                (narrow + 1, 2 * narrow),
                (2 * narrow + 1, 3 * narrow),
                (3 * narrow + 1, u128::MAX),
            ]),
            7,
        );
        let q = u128::MAX / 4;
        check(&map(&[(0, q), (2 * q, 3 * q)]), 11);
        check(&map(&[(q, 2 * q)]), 13);
        check(&map(&[(1, 5), (u128::MAX - 5, u128::MAX - 1)]), 17);
        check(&ShardMap::new(Vec::new()).unwrap(), 19);
    }
}
