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

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::decode::{Deaggregated, Tag};
use crate::encode::{Aggregate, Record, RecordAggregator, Refused};
use crate::error::{Error, ErrorKind};
use crate::hash::{HashKeyRange, effective_hash_key, route, write_hash_key};
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<Shard>,
    ranges: Vec<HashKeyRange>,
    /// The ids again, shared with the aggregates (no copy per aggregate).
    ids: Vec<Arc<str>>,
}

impl ShardMap {
    /// A map of these shards (any order).
    ///
    /// # Errors
    /// [`Error::ShardsOverlap`] when two ranges share a hash key. Gaps are
    /// allowed: a record in a gap is refused on add.
    pub fn new(shards: impl IntoIterator<Item = Shard>) -> Result<Self, Error> {
        let mut shards: Vec<Shard> = shards.into_iter().collect();
        shards.sort_by_key(|s| s.range);
        for (i, w) in shards.windows(2).enumerate() {
            if w[1].range.start <= w[0].range.end {
                return Err(Error::ShardsOverlap { shard: i + 1 });
            }
        }
        let ranges = shards.iter().map(|s| s.range).collect();
        let ids = shards.iter().map(|s| Arc::from(s.id.as_str())).collect();
        Ok(ShardMap { shards, ranges, ids })
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
        }
    }

    /// The shards, sorted by hash key.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The index in [`shards`](Self::shards) of the shard owning
    /// `hash_key`.
    pub fn route_index(&self, hash_key: u128) -> Option<usize> {
        route(&self.ranges, hash_key)
    }

    /// The shard owning `hash_key` (by binary search, as
    /// [`route`](crate::route) does over a slice).
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
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShardAggregate {
    shard_id: Arc<str>,
    /// Index of the shard in the map it was made under.
    shard: usize,
    /// The first user record's effective hash key, in decimal.
    ehk: [u8; HASH_KEY_MAX_DIGITS],
    ehk_len: u8,
    aggregate: Aggregate,
}

impl ShardAggregate {
    /// The shard it belongs to.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The outer explicit hash key to put it with: the first user record's
    /// effective hash key, inside the shard's range (what the KPL does).
    pub fn explicit_hash_key(&self) -> &str {
        let digits = &self.ehk[HASH_KEY_MAX_DIGITS - usize::from(self.ehk_len)..];
        // Only ASCII digits were written.
        core::str::from_utf8(digits).unwrap_or("0")
    }

    /// The outer partition key: the first user record's.
    pub fn partition_key(&self) -> &str {
        self.aggregate.partition_key()
    }

    /// The Kinesis data blob.
    pub fn data(&self) -> &[u8] {
        self.aggregate.data()
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
    pub fn aggregate(&self) -> &Aggregate {
        &self.aggregate
    }

    /// The aggregate, giving up the shard.
    pub fn into_aggregate(self) -> Aggregate {
        self.aggregate
    }
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
    cap: Option<usize>,
    clock: u64,
    /// Sum of the shards' encoded sizes, kept as they change.
    buffered: usize,
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
        let shards = map
            .shards
            .iter()
            .map(|_| PerShard {
                agg: RecordAggregator::with_limit(limit).unwrap_or_default(),
                first: 0,
                started: 0,
            })
            .collect();
        ShardedAggregator {
            map,
            shards,
            limit,
            cap: None,
            clock: 0,
            buffered: 0,
        }
    }

    /// Caps the bytes buffered over all shards: when an add takes the total
    /// past `bytes`, the largest buffered aggregates are completed and
    /// returned with that add until the total is within the cap again.
    pub fn with_buffer_cap(mut self, bytes: usize) -> Self {
        self.cap = Some(bytes);
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

    /// `true` when no record is buffered.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.agg.is_empty())
    }

    fn complete(&mut self, i: usize) -> Option<ShardAggregate> {
        let s = &mut self.shards[i];
        self.buffered -= s.agg.encoded_len();
        let aggregate = s.agg.finish()?;
        let mut ehk = [0u8; HASH_KEY_MAX_DIGITS];
        let ehk_len = write_hash_key(s.first, &mut ehk).len() as u8;
        Some(ShardAggregate {
            shard_id: self.map.ids[i].clone(),
            shard: i,
            ehk,
            ehk_len,
            aggregate,
        })
    }

    /// Takes back a sent aggregate's buffer, so that the next aggregate of
    /// any shard reuses it instead of allocating one.
    pub fn recycle(&mut self, aggregate: ShardAggregate) {
        let i = if aggregate.shard < self.shards.len() {
            aggregate.shard
        } else {
            0
        };
        if let Some(s) = self.shards.get_mut(i) {
            s.agg.recycle(aggregate.aggregate);
        }
    }

    /// Adds a user record to its shard's aggregate. Returns the aggregates
    /// this completed: the shard's previous one when the record did not
    /// fit, and the largest buffered one when the buffer cap was passed.
    ///
    /// # Errors
    /// Invalid keys, a record too large even alone, or a hash key no shard
    /// owns; nothing changes then.
    pub fn add(&mut self, record: Record<'_>) -> Result<Vec<ShardAggregate>, Error> {
        let hash_key = effective_hash_key(record.partition_key, record.explicit_hash_key)?;
        let i = self
            .map
            .route_index(hash_key)
            .ok_or(Error::NoShardForHashKey { hash_key })?;
        let mut out = Vec::new();
        self.clock += 1;
        let before = self.shards[i].agg.encoded_len();
        match self.shards[i].agg.try_add(record) {
            Ok(()) => self.buffered += self.shards[i].agg.encoded_len() - before,
            Err(Refused { error, .. }) if error.kind() == ErrorKind::Full => {
                // The record fits an empty aggregate (else it would be
                // RecordTooLarge), so the retry succeeds.
                out.extend(self.complete(i));
                self.shards[i].agg.try_add(record).map_err(|r| r.error)?;
                self.buffered += self.shards[i].agg.encoded_len();
            }
            Err(r) => return Err(r.error),
        }
        let s = &mut self.shards[i];
        if s.agg.record_count() == 1 {
            s.first = hash_key;
            s.started = self.clock;
        }
        if let Some(cap) = self.cap {
            while self.buffered_bytes() > cap {
                let largest = (0..self.shards.len()).max_by_key(|&j| self.shards[j].agg.encoded_len());
                match largest.and_then(|j| self.complete(j)) {
                    Some(a) => out.push(a),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Completes the aggregate that was started first, if any.
    pub fn finish_oldest(&mut self) -> Option<ShardAggregate> {
        let i = (0..self.shards.len())
            .filter(|&i| self.shards[i].agg.record_count() > 0)
            .min_by_key(|&i| self.shards[i].started)?;
        self.complete(i)
    }

    /// Completes every buffered aggregate, oldest first.
    pub fn finish_all(&mut self) -> Vec<ShardAggregate> {
        let mut out = Vec::new();
        while let Some(a) = self.finish_oldest() {
            out.push(a);
        }
        out
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
        let mut next = ShardedAggregator::with_limit(map, self.limit)?;
        next.cap = self.cap;
        next.clock = self.clock;
        let mut out = Vec::new();
        for a in buffered {
            out.extend(next.readd(&a)?);
            next.recycle(a);
        }
        *self = next;
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
