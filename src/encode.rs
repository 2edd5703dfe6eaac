//! Aggregation with exact size accounting.
//!
//! # Layout
//!
//! On the wire the key tables come before the records, but a new key can
//! arrive with the last record. Rewriting records when a key arrives would
//! cost a copy per record, so the buffer is laid out like this while an
//! aggregate is built:
//!
//! ```text
//! 0    4            4+P          R-E          R                 R+D        cap
//! |    | pk entries | free (gap) | ehk entries| records ...      | free ...  |
//! ```
//!
//! * Partition-key entries (`0A len key`) are appended forward from byte 4.
//! * Explicit-hash-key entries (`12 len key`) are stacked downward below
//!   `R`, so the newest is lowest: they are in reverse table order.
//! * Record entries (`1A len ...`) are appended forward from `R`, each
//!   written once, in its final form, straight from the caller's data.
//!
//! [`finish`](Aggregator::finish) reverses the explicit-hash-key entries in
//! place (each entry, then the whole block: O(E), no scratch), moves the
//! partition-key entries up against them and writes the magic in front, so
//! the aggregate is the contiguous run `[R-E-P-4, R+D+16)`; then it hashes
//! the body once and appends the MD5. Keys are moved, never record data.
//!
//! Records move only when a guess about `R` proves wrong: when the tables
//! outgrow the gap, or when the records reach the end of the buffer while
//! the gap still has room. Each move splits the free room between the gap
//! and the tail in the proportion the tables and the records hold (the
//! gap's share at most doubling it), and the next aggregate starts with a
//! gap sized from the last one, a little larger than its tables: a steady
//! stream of aggregates moves nothing until its records reach the end of
//! the buffer, and then once, into the gap's slack.
//!
//! Keys are found through the index of `src/index.rs`, whose slots point at
//! the key bytes already in the buffer: no key is stored twice, and no
//! lookup scans a table.

use core::fmt;

use crate::decode::Tag;
use crate::error::Error;
use crate::index::{
    EHK_BIT, EMPTY, FixedIndex, SEED_EHK, SEED_PK, Slot, Slots, bucket, hash_key, insert, same_key,
};
use crate::limits::{DIGEST_LEN, MAGIC};
use crate::wire::{Reader, put_varint, varint_len};

use crate::limits::{DEFAULT_LIMIT, MAX_INDEX_KEYS, MAX_LIMIT, MAX_PARTITION_KEY_UNITS, MIN_LIMIT};

const TAG_PK: u8 = 0x0A;
const TAG_EHK: u8 = 0x12;
const TAG_RECORD: u8 = 0x1A;
const TAG_REC_PK: u8 = 0x08;
const TAG_REC_EHK: u8 = 0x10;
const TAG_REC_DATA: u8 = 0x1A;
const TAG_REC_TAG: u8 = 0x22;
const TAG_TAG_KEY: u8 = 0x0A;
const TAG_TAG_VALUE: u8 = 0x12;

/// One user record to aggregate, borrowing its parts.
///
/// Every aggregator takes records as this type. Tags (field 4 of the
/// protobuf `Record`, which the KPL reads and writes but seldom fills) are
/// written after the data, each key before its value, as Google protobuf
/// writes them.
///
/// # Examples
/// ```
/// use kinesis_agg::{Record, Tag};
/// let tags = [Tag { key: "unit", value: Some("C") }];
/// let r = Record::new("sensor-1", b"21.5").with_explicit_hash_key("42").with_tags(&tags);
/// assert_eq!(r.explicit_hash_key, Some("42"));
/// assert_eq!(r.tags.len(), 1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record<'r> {
    /// Partition key: 1 to 256 UTF-16 code units.
    pub partition_key: &'r str,
    /// Optional explicit hash key: decimal, 0 to 2^128-1.
    pub explicit_hash_key: Option<&'r str>,
    /// The data.
    pub data: &'r [u8],
    /// Tags, in order (usually none).
    pub tags: &'r [Tag<'r>],
}

impl<'r> Record<'r> {
    /// A record without an explicit hash key or tags.
    pub const fn new(partition_key: &'r str, data: &'r [u8]) -> Self {
        Record {
            partition_key,
            explicit_hash_key: None,
            data,
            tags: &[],
        }
    }

    /// The same record with an explicit hash key.
    pub const fn with_explicit_hash_key(mut self, explicit_hash_key: &'r str) -> Self {
        self.explicit_hash_key = Some(explicit_hash_key);
        self
    }

    /// The same record with an explicit hash key when `Some`, none when
    /// `None`.
    pub const fn with_optional_explicit_hash_key(mut self, explicit_hash_key: Option<&'r str>) -> Self {
        self.explicit_hash_key = explicit_hash_key;
        self
    }

    /// The same record with these tags.
    pub const fn with_tags(mut self, tags: &'r [Tag<'r>]) -> Self {
        self.tags = tags;
        self
    }
}

/// A record the aggregator did not take, handed back with the reason.
///
/// With [`Error::Full`], finish the aggregate and add the record again;
/// any other error means this record can never be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused<'r> {
    /// The record, unchanged.
    pub record: Record<'r>,
    /// Why.
    pub error: Error,
}

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl core::error::Error for Refused<'_> {}

/// Checks a partition key: 1 to 256 UTF-16 code units.
///
/// # Examples
/// ```
/// use kinesis_agg::{check_partition_key, Error};
/// assert_eq!(check_partition_key("k"), Ok(()));
/// assert_eq!(check_partition_key(""), Err(Error::InvalidPartitionKey { utf16_len: 0 }));
/// // 128 characters outside the BMP are 256 UTF-16 code units: the maximum.
/// assert_eq!(check_partition_key(&"😀".repeat(128)), Ok(()));
/// ```
pub fn check_partition_key(key: &str) -> Result<(), Error> {
    // Every UTF-16 code unit needs at least one UTF-8 byte, so a key of 1
    // to 256 bytes is decided without counting; others are counted (and
    // an invalid one reports its exact length).
    if (1..=MAX_PARTITION_KEY_UNITS).contains(&key.len()) {
        return Ok(());
    }
    let units = key.encode_utf16().count();
    if (1..=MAX_PARTITION_KEY_UNITS).contains(&units) {
        Ok(())
    } else {
        Err(Error::InvalidPartitionKey { utf16_len: units })
    }
}

/// Checks an explicit hash key: `0|[1-9][0-9]{0,38}`, at most 2^128-1.
///
/// # Examples
/// ```
/// use kinesis_agg::{check_explicit_hash_key, Error};
/// assert_eq!(check_explicit_hash_key("123"), Ok(()));
/// assert_eq!(check_explicit_hash_key("0123"), Err(Error::InvalidHashKey { position: 0 }));
/// ```
pub fn check_explicit_hash_key(key: &str) -> Result<(), Error> {
    crate::hash::parse_hash_key(key).map(|_| ())
}

// ---------------------------------------------------------------------------
// Core state, shared by the no-heap and the alloc aggregator
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Core {
    limit: usize,
    /// Start of the records region.
    r: usize,
    pk_bytes: usize,
    ehk_bytes: usize,
    rec_bytes: usize,
    count: usize,
    pk_count: u32,
    ehk_count: u32,
    /// Whether the first record has an explicit hash key (ehk entry 0).
    first_has_ehk: bool,
    /// UTF-8 length of the outer (first) partition key.
    outer_pk_len: usize,
    /// The last partition key used: (index, offset, len).
    last_pk: Option<(u32, u32, u32)>,
    /// Whether the last two records had the same partition key: only then
    /// is `last_pk` tried before the index (a stream of varied keys skips
    /// the comparison).
    repeat: bool,
    /// Gap to leave before the records of the next aggregate.
    next_gap: usize,
    /// Bytes a record entry may take without passing the limit or the end
    /// of the buffer (0 while empty, so the first record takes the full
    /// path). Kept by every add and by finish.
    room: usize,
}

/// Where the parts of a finished aggregate lie in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Done {
    start: usize,
    end: usize,
    pk: (usize, usize),
    ehk: Option<(usize, usize)>,
    records: usize,
}

/// What adding a record would do.
#[derive(Clone, Copy, Debug)]
struct Plan {
    pk: Lookup,
    ehk: Option<Lookup>,
    pk_entry: usize,
    ehk_entry: usize,
    rec_entry: usize,
    inner: usize,
    /// Blob size after the add.
    size: usize,
}

impl Plan {
    /// How many keys the add brings into each table (0 or 1 each).
    fn new_keys(&self) -> (usize, usize) {
        (
            usize::from(matches!(self.pk, Lookup::New(_))),
            usize::from(matches!(self.ehk, Some(Lookup::New(_)))),
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Lookup {
    /// Already in the table: index and the slot's `pos`.
    Found(u32, u32),
    /// New key with this hash.
    New(u32),
}

const fn entry_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Length of a `Tag` message's fields.
const fn tag_inner(tag: &Tag<'_>) -> usize {
    entry_len(tag.key.len())
        + match tag.value {
            Some(v) => entry_len(v.len()),
            None => 0,
        }
}

/// Bytes the tags take inside a record: one entry each.
fn tags_len(tags: &[Tag<'_>]) -> usize {
    tags.iter().map(|t| entry_len(tag_inner(t))).sum()
}

/// Writes a record entry (tag, length, fields 1, 2, 3 and 4) into `out`,
/// which is exactly as long as the entry; `inner` is the length of its
/// fields.
#[inline(always)]
fn write_record(
    out: &mut [u8],
    inner: usize,
    pk_idx: u32,
    ehk_idx: Option<u32>,
    data: &[u8],
    tags: &[Tag<'_>],
) {
    out[0] = TAG_RECORD;
    let mut at = put_varint(out, 1, inner as u64);
    out[at] = TAG_REC_PK;
    at = put_varint(out, at + 1, u64::from(pk_idx));
    if let Some(e) = ehk_idx {
        out[at] = TAG_REC_EHK;
        at = put_varint(out, at + 1, u64::from(e));
    }
    out[at] = TAG_REC_DATA;
    at = put_varint(out, at + 1, data.len() as u64);
    out[at..at + data.len()].copy_from_slice(data);
    at += data.len();
    for tag in tags {
        at = write_tag(out, at, tag);
    }
}

/// Writes one tag entry at `out[at..]` and returns the position after it.
#[inline(never)]
fn write_tag(out: &mut [u8], at: usize, tag: &Tag<'_>) -> usize {
    out[at] = TAG_REC_TAG;
    let mut at = put_varint(out, at + 1, tag_inner(tag) as u64);
    at = write_entry(out, at, TAG_TAG_KEY, tag.key.as_bytes());
    if let Some(v) = tag.value {
        at = write_entry(out, at, TAG_TAG_VALUE, v.as_bytes());
    }
    at
}

/// Writes `tag`, the length of `bytes` and `bytes` at `out[at..]`; returns
/// the position after them. Key table entries and tags' fields.
#[inline(never)]
fn write_entry(out: &mut [u8], at: usize, tag: u8, bytes: &[u8]) -> usize {
    out[at] = tag;
    let at = put_varint(out, at + 1, bytes.len() as u64);
    out[at..at + bytes.len()].copy_from_slice(bytes);
    at + bytes.len()
}

/// Blob size of an aggregate holding only `rec`.
fn alone_size(rec: &Record<'_>) -> usize {
    let mut inner = 2 + entry_len(rec.data.len()) + tags_len(rec.tags);
    let mut tables = entry_len(rec.partition_key.len());
    if let Some(e) = rec.explicit_hash_key {
        inner += 2;
        tables += entry_len(e.len());
    }
    MAGIC.len() + tables + entry_len(inner) + DIGEST_LEN
}

impl Core {
    fn new(limit: usize) -> Result<Self, Error> {
        if !(MIN_LIMIT..=MAX_LIMIT).contains(&limit) {
            return Err(Error::InvalidLimit { limit });
        }
        Ok(Core::unchecked(limit))
    }

    /// A core for a limit already known to be in range.
    const fn unchecked(limit: usize) -> Self {
        Core {
            limit,
            r: 64,
            pk_bytes: 0,
            ehk_bytes: 0,
            rec_bytes: 0,
            count: 0,
            pk_count: 0,
            ehk_count: 0,
            first_has_ehk: false,
            outer_pk_len: 0,
            last_pk: None,
            repeat: false,
            next_gap: 64,
            room: 0,
        }
    }

    fn encoded_len(&self) -> usize {
        if self.count == 0 {
            0
        } else {
            MAGIC.len() + self.pk_bytes + self.ehk_bytes + self.rec_bytes + DIGEST_LEN
        }
    }

    #[inline]
    fn find(&self, buf: &[u8], slots: &[Slot], key: &[u8], hash: u32, ehk: bool) -> Option<(u32, u32)> {
        let n = slots.len();
        if n == 0 {
            return None;
        }
        let mut i = bucket(hash, n);
        loop {
            let s = slots[i];
            if s.meta == EMPTY {
                return None;
            }
            if s.hash == hash && (s.meta & EHK_BIT != 0) == ehk && s.len as usize == key.len() {
                let at = if ehk {
                    self.r - s.pos as usize
                } else {
                    s.pos as usize
                };
                if same_key(buf.get(at..at + key.len()), key) {
                    return Some((s.meta & !EHK_BIT, s.pos));
                }
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// The partition key's table index and position, if it is in the table.
    #[inline]
    fn find_pk(&self, buf: &[u8], slots: &[Slot], pk: &[u8]) -> Option<(u32, u32)> {
        if self.repeat
            && let Some(hit) = self.last_pk_is(buf, pk)
        {
            return Some(hit);
        }
        self.find(buf, slots, pk, hash_key(pk, SEED_PK), false)
    }

    /// The last partition key's table index and position, if `pk` is it.
    #[inline(always)]
    fn last_pk_is(&self, buf: &[u8], pk: &[u8]) -> Option<(u32, u32)> {
        if let Some((idx, pos, len)) = self.last_pk {
            let (at, len) = (pos as usize, len as usize);
            if len == pk.len() && same_key(buf.get(at..at + len), pk) {
                return Some((idx, pos));
            }
        }
        None
    }

    #[inline]
    fn lookup_pk(&self, buf: &[u8], slots: &[Slot], pk: &str) -> Result<Lookup, Error> {
        if let Some((idx, pos)) = self.last_pk_is(buf, pk.as_bytes()) {
            return Ok(Lookup::Found(idx, pos));
        }
        let hash = hash_key(pk.as_bytes(), SEED_PK);
        match self.find(buf, slots, pk.as_bytes(), hash, false) {
            Some((i, pos)) => Ok(Lookup::Found(i, pos)),
            None => {
                check_partition_key(pk)?;
                Ok(Lookup::New(hash))
            }
        }
    }

    #[inline]
    fn lookup_ehk(&self, buf: &[u8], slots: &[Slot], ehk: &str) -> Result<Lookup, Error> {
        let hash = hash_key(ehk.as_bytes(), SEED_EHK);
        match self.find(buf, slots, ehk.as_bytes(), hash, true) {
            Some((i, pos)) => Ok(Lookup::Found(i, pos)),
            None => {
                check_explicit_hash_key(ehk)?;
                Ok(Lookup::New(hash))
            }
        }
    }

    /// Sizes what adding `rec` would write. Validates new keys only: a key
    /// already in a table was checked when it was added.
    #[inline]
    fn plan(&self, buf: &[u8], slots: &[Slot], rec: &Record<'_>) -> Result<Plan, Error> {
        let pk = self.lookup_pk(buf, slots, rec.partition_key)?;
        let ehk = match rec.explicit_hash_key {
            None => None,
            Some(e) => Some(self.lookup_ehk(buf, slots, e)?),
        };
        Ok(self.plan_with(rec, pk, ehk))
    }

    /// Sizes what adding `rec` would write, given its key lookups.
    #[inline]
    fn plan_with(&self, rec: &Record<'_>, pk: Lookup, ehk: Option<Lookup>) -> Plan {
        let (pk_idx, pk_entry) = match pk {
            Lookup::Found(i, _) => (i, 0),
            Lookup::New(_) => (self.pk_count, entry_len(rec.partition_key.len())),
        };
        let mut inner = 1 + varint_len(u64::from(pk_idx));
        let ehk_entry = match (ehk, rec.explicit_hash_key) {
            (Some(l), Some(e)) => {
                let (idx, entry) = match l {
                    Lookup::Found(i, _) => (i, 0),
                    Lookup::New(_) => (self.ehk_count, entry_len(e.len())),
                };
                inner += 1 + varint_len(u64::from(idx));
                entry
            }
            _ => 0,
        };
        inner += entry_len(rec.data.len()) + tags_len(rec.tags);
        let rec_entry = entry_len(inner);
        let size = MAGIC.len()
            + self.pk_bytes
            + pk_entry
            + self.ehk_bytes
            + ehk_entry
            + self.rec_bytes
            + rec_entry
            + DIGEST_LEN;
        Plan {
            pk,
            ehk,
            pk_entry,
            ehk_entry,
            rec_entry,
            inner,
            size,
        }
    }

    /// Checks a plan against the limit, the buffer and the index.
    #[inline]
    fn admit<S: Slots>(&self, plan: &Plan, rec: &Record<'_>, cap: usize, slots: &mut S) -> Result<(), Error> {
        self.room(plan, rec, cap)?;
        let (new_pk, new_ehk) = plan.new_keys();
        if new_pk + new_ehk > 0 {
            // A fixed index holds at least one key of each table, so an
            // empty aggregate always has room.
            crate::index::reserve(
                slots,
                self.pk_count as usize,
                new_pk,
                self.ehk_count as usize,
                new_ehk,
            )?;
        }
        Ok(())
    }

    /// What [`add`](Self::add) would answer for `rec`, without adding it:
    /// the plan checked against the limit, the buffer (`cap` bytes) and
    /// the index, which is not grown.
    fn check<S: Slots>(&self, buf: &[u8], slots: &S, rec: &Record<'_>, cap: usize) -> Result<(), Error> {
        let plan = self.plan(buf, slots.as_ref(), rec)?;
        self.room(&plan, rec, cap)?;
        let (new_pk, new_ehk) = plan.new_keys();
        crate::index::has_room(
            slots,
            self.pk_count as usize + new_pk,
            self.ehk_count as usize + new_ehk,
        )
    }

    /// Checks a plan's bytes against the limit and the buffer.
    #[inline]
    fn room(&self, plan: &Plan, rec: &Record<'_>, cap: usize) -> Result<(), Error> {
        let outer = if self.count == 0 {
            rec.partition_key.len()
        } else {
            self.outer_pk_len
        };
        let counted = plan.size + outer;
        if counted > self.limit || plan.size > cap {
            let alone = alone_size(rec);
            let counted_alone = alone + rec.partition_key.len();
            if self.count == 0 || counted_alone > self.limit || alone > cap {
                return Err(Error::RecordTooLarge {
                    size: counted_alone,
                    limit: self.limit.min(cap + rec.partition_key.len()),
                });
            }
            return Err(Error::Full);
        }
        Ok(())
    }

    /// Moves the ehk entries and records so that the tables and the records
    /// after this add both fit.
    #[inline]
    fn make_room(&mut self, buf: &mut [u8], plan: &Plan) {
        let need_gap = MAGIC.len() + self.pk_bytes + plan.pk_entry + self.ehk_bytes + plan.ehk_entry;
        let need_tail = self.rec_bytes + plan.rec_entry + DIGEST_LEN;
        if self.r >= need_gap && self.r + need_tail <= buf.len() {
            return;
        }
        self.move_records(buf, need_gap, need_tail);
    }

    #[cold]
    #[inline(never)]
    fn move_records(&mut self, buf: &mut [u8], need_gap: usize, need_tail: usize) {
        #[cfg(test)]
        crate::wire::work::count(crate::wire::work::Work::Moves);
        let cap = buf.len();
        // plan.size == need_gap + need_tail <= cap was checked by admit.
        let free = cap - need_gap - need_tail;
        // The free room goes to the tables (the gap) and to the records
        // (the tail) in the proportion each holds now, the gap's share at
        // most doubling it: both then run out at about the same time. An
        // even split moved every record again at each halving of the room
        // left: three times near the end of a full 1 MiB aggregate of 100
        // repeated keys, where this moves them once. `need_gap` counts the
        // magic, so the divisor is never zero.
        let share = free / ((need_gap + need_tail) / need_gap);
        let new_r = need_gap + share.min(need_gap);
        let from = self.r - self.ehk_bytes;
        buf.copy_within(from..self.r + self.rec_bytes, new_r - self.ehk_bytes);
        self.r = new_r;
    }

    /// Writes the record. `plan` came from `plan` and passed `admit`.
    #[inline]
    fn commit<S: Slots>(&mut self, buf: &mut [u8], slots: &mut S, rec: &Record<'_>, plan: &Plan) {
        if self.count == 0 {
            // First record of an aggregate: place R from the last gap.
            let need_tail = plan.rec_entry + DIGEST_LEN;
            let need_gap = MAGIC.len() + plan.pk_entry + plan.ehk_entry;
            let cap = buf.len();
            let want = self.next_gap.max(need_gap);
            self.r = want.min(cap - need_tail).max(need_gap);
            self.first_has_ehk = rec.explicit_hash_key.is_some();
            self.outer_pk_len = rec.partition_key.len();
        } else {
            self.make_room(buf, plan);
        }
        let pk_idx = match plan.pk {
            Lookup::Found(i, _) => i,
            Lookup::New(hash) => {
                let key = rec.partition_key.as_bytes();
                let at = write_entry(buf, MAGIC.len() + self.pk_bytes, TAG_PK, key) - key.len();
                let idx = self.pk_count;
                insert(
                    slots.as_mut(),
                    Slot {
                        hash,
                        meta: idx,
                        pos: at as u32,
                        len: key.len() as u32,
                    },
                );
                self.pk_bytes += plan.pk_entry;
                self.pk_count += 1;
                idx
            }
        };
        let pk_pos = match plan.pk {
            Lookup::Found(_, pos) => pos,
            Lookup::New(_) => (MAGIC.len() + self.pk_bytes - rec.partition_key.len()) as u32,
        };
        self.repeat = self.last_pk.is_some_and(|(last, _, _)| last == pk_idx);
        self.last_pk = Some((pk_idx, pk_pos, rec.partition_key.len() as u32));
        let ehk_idx = match (plan.ehk, rec.explicit_hash_key) {
            (Some(Lookup::Found(i, _)), _) => Some(i),
            (Some(Lookup::New(hash)), Some(e)) => {
                let key = e.as_bytes();
                let start = self.r - self.ehk_bytes - plan.ehk_entry;
                let at = write_entry(buf, start, TAG_EHK, key) - key.len();
                let idx = self.ehk_count;
                insert(
                    slots.as_mut(),
                    Slot {
                        hash,
                        meta: idx | EHK_BIT,
                        pos: (self.r - at) as u32,
                        len: key.len() as u32,
                    },
                );
                self.ehk_bytes += plan.ehk_entry;
                self.ehk_count += 1;
                Some(idx)
            }
            _ => None,
        };
        let start = self.r + self.rec_bytes;
        write_record(
            &mut buf[start..start + plan.rec_entry],
            plan.inner,
            pk_idx,
            ehk_idx,
            rec.data,
            rec.tags,
        );
        self.rec_bytes += plan.rec_entry;
        self.count += 1;
    }

    #[inline]
    fn add<S: Slots>(&mut self, buf: &mut [u8], slots: &mut S, rec: &Record<'_>) -> Result<(), Error> {
        // The common case: both keys already in the tables, no tags, and
        // the record fits after the records already written. One pass, no
        // moves.
        let s = slots.as_ref();
        if rec.tags.is_empty()
            && let Some((pk_idx, pk_pos)) = self.find_pk(buf, s, rec.partition_key.as_bytes())
        {
            let ehk_idx = match rec.explicit_hash_key {
                None => Some(None),
                Some(e) => {
                    let e = e.as_bytes();
                    self.find(buf, s, e, hash_key(e, SEED_EHK), true)
                        .map(|(i, _)| Some(i))
                }
            };
            if let Some(ehk_idx) = ehk_idx
                && self.append_found(buf, rec.data, pk_idx, ehk_idx)
            {
                self.repeat = self.last_pk.is_some_and(|(last, _, _)| last == pk_idx);
                self.last_pk = Some((pk_idx, pk_pos, rec.partition_key.len() as u32));
                return Ok(());
            }
        }
        self.add_planned(buf, slots, rec)
    }

    /// Adds a record with a new key, the first record of an aggregate, or
    /// one that needs the records moved or does not fit.
    #[inline(never)]
    fn add_planned<S: Slots>(
        &mut self,
        buf: &mut [u8],
        slots: &mut S,
        rec: &Record<'_>,
    ) -> Result<(), Error> {
        let plan = self.plan(buf, slots.as_ref(), rec)?;
        self.admit(&plan, rec, buf.len(), slots)?;
        self.commit(buf, slots, rec, &plan);
        self.update_room(buf.len());
        Ok(())
    }

    /// Appends a record whose keys are both in the tables, if it fits
    /// within the limit and after the records already in the buffer;
    /// `false` (and nothing written) otherwise.
    #[inline(always)]
    fn append_found(&mut self, buf: &mut [u8], data: &[u8], pk_idx: u32, ehk_idx: Option<u32>) -> bool {
        let mut inner = 2 + varint_len(u64::from(pk_idx)) + varint_len(data.len() as u64) + data.len();
        if let Some(e) = ehk_idx {
            inner += 1 + varint_len(u64::from(e));
        }
        let entry = 1 + varint_len(inner as u64) + inner;
        if entry > self.room {
            return false;
        }
        let start = self.r + self.rec_bytes;
        write_record(&mut buf[start..start + entry], inner, pk_idx, ehk_idx, data, &[]);
        self.rec_bytes += entry;
        self.room -= entry;
        self.count += 1;
        true
    }

    /// Recomputes `room` after the full path or a finish.
    fn update_room(&mut self, cap: usize) {
        self.room = if self.count == 0 {
            0
        } else {
            let by_limit = self.limit.saturating_sub(self.outer_pk_len + self.encoded_len());
            let by_buf = cap.saturating_sub(self.r + self.rec_bytes + DIGEST_LEN);
            by_limit.min(by_buf)
        };
    }

    fn size_with(&self, buf: &[u8], slots: &[Slot], rec: &Record<'_>) -> Result<usize, Error> {
        self.plan(buf, slots, rec).map(|p| p.size)
    }

    /// Lays the aggregate out contiguously, appends the MD5 and resets.
    fn finish<S: Slots>(&mut self, buf: &mut [u8], slots: &mut S) -> Option<Done> {
        let done = self.lay_out(buf, slots)?;
        write_digest(buf, &done);
        Some(done)
    }

    /// [`finish`](Self::finish) but for the MD5: the trailer is left for
    /// [`write_digest`].
    fn lay_out<S: Slots>(&mut self, buf: &mut [u8], slots: &mut S) -> Option<Done> {
        if self.count == 0 {
            return None;
        }
        let (p, e, r, d) = (self.pk_bytes, self.ehk_bytes, self.r, self.rec_bytes);
        // The ehk entries sit in reverse table order below R: reverse each
        // entry, then the whole block, which restores table order.
        let block = &mut buf[r - e..r];
        let mut i = 0;
        while i < block.len() {
            let end = key_range(block, i).1.min(block.len());
            block[i..end].reverse();
            i = end;
        }
        block.reverse();
        let start = r - e - p - MAGIC.len();
        buf.copy_within(MAGIC.len()..MAGIC.len() + p, start + MAGIC.len());
        buf[start..start + MAGIC.len()].copy_from_slice(&MAGIC);
        let body_end = r + d;
        let pk = key_range(buf, start + MAGIC.len());
        let ehk = self.first_has_ehk.then(|| key_range(buf, r - e));
        let done = Done {
            start,
            end: body_end + DIGEST_LEN,
            pk,
            ehk,
            records: self.count,
        };
        // Reset for the next aggregate, leaving a gap a little larger than
        // this one's tables.
        self.next_gap = (MAGIC.len() + p + e + (p + e) / 4 + 64)
            .min(buf.len() / 2)
            .max(MAGIC.len());
        self.pk_bytes = 0;
        self.ehk_bytes = 0;
        self.rec_bytes = 0;
        self.count = 0;
        self.pk_count = 0;
        self.ehk_count = 0;
        self.first_has_ehk = false;
        self.outer_pk_len = 0;
        self.last_pk = None;
        self.repeat = false;
        self.room = 0;
        slots.as_mut().fill(Slot::FREE);
        Some(done)
    }
}

/// Writes the MD5 of a laid-out aggregate's body into its trailer.
fn write_digest(buf: &mut [u8], done: &Done) {
    let (body, trailer) = body_and_trailer(buf, done);
    let digest = crate::checksum::md5(body);
    trailer.copy_from_slice(&digest);
}

/// A laid-out aggregate's body and trailer.
fn body_and_trailer<'b>(buf: &'b mut [u8], done: &Done) -> (&'b [u8], &'b mut [u8]) {
    let (body, trailer) = buf[done.start + MAGIC.len()..done.end]
        .split_at_mut(done.end - done.start - MAGIC.len() - DIGEST_LEN);
    (body, trailer)
}

/// The key bytes of the table entry starting at `at` (tag, length, key).
fn key_range(buf: &[u8], at: usize) -> (usize, usize) {
    // The entry was written by this aggregator; a length that does not
    // read (never the case) makes an empty key rather than a panic.
    let mut r = Reader::at(buf, at + 1, 0);
    let len = r.varint().map_or(0, |l| l as usize);
    (r.pos(), r.pos() + len)
}

fn key_str(buf: &[u8], (a, b): (usize, usize)) -> &str {
    // The bytes were copied from a `&str`; the fallback is never taken.
    buf.get(a..b)
        .and_then(|k| core::str::from_utf8(k).ok())
        .unwrap_or("")
}

// ---------------------------------------------------------------------------
// The no-heap aggregator
// ---------------------------------------------------------------------------

/// A finished aggregate, borrowed from the aggregator's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished<'b> {
    /// The Kinesis data blob: magic, body, MD5.
    pub data: &'b [u8],
    /// The outer partition key (the first user record's).
    pub partition_key: &'b str,
    /// The outer explicit hash key (the first user record's, if it has one).
    pub explicit_hash_key: Option<&'b str>,
    /// How many user records it holds.
    pub record_count: usize,
}

/// The no-heap aggregator: aggregates into a buffer `B` the caller gives
/// (`&mut [u8]`, `[u8; N]`, `Vec<u8>`: anything `AsMut<[u8]> +
/// AsRef<[u8]>`; an aggregate never exceeds its length) and never
/// allocates. `I` is where its key index lives; name it through
/// [`Aggregator`] (the index inside the aggregator, sized by a const
/// parameter) or [`IndexedAggregator`] (the index in the caller's slots,
/// sized at run time). [`RecordAggregator`](crate::RecordAggregator) is
/// this aggregator over buffers and an index it owns.
pub struct BufferAggregator<B, I> {
    buf: B,
    slots: I,
    core: Core,
}

/// Aggregates into storage the caller gives, and never allocates: a
/// [`BufferAggregator`] with its key index inside it.
///
/// `KEYS` (default 32) is the most distinct keys of each table one
/// aggregate takes: `KEYS` partition keys and `KEYS` explicit hash keys,
/// as [`deaggregate_fixed::<KEYS>`](crate::deaggregate_fixed) reads them.
/// The next new key of a full table is refused with
/// [`Error::KeyCapacity`]. The key index keeps four 16-byte slots per key,
/// so that lookups rarely probe: memory is the buffer plus `128 * KEYS`
/// bytes.
///
/// # Examples
/// ```
/// use kinesis_agg::{Aggregator, Record, Error};
/// let mut buf = [0u8; 512];
/// let mut agg = Aggregator::<_, 8>::new(&mut buf[..]);
/// agg.add(Record::new("sensor-1", b"21.5")).unwrap();
/// agg.add(Record::new("sensor-2", b"19.0")).unwrap();
/// assert_eq!(agg.record_count(), 2);
/// let size = agg.encoded_len();
/// let done = agg.finish().unwrap();
/// assert_eq!(done.data.len(), size);
/// assert_eq!(done.partition_key, "sensor-1");
/// assert_eq!(done.record_count, 2);
/// ```
pub type Aggregator<B, const KEYS: usize = 32> = BufferAggregator<B, FixedIndex<KEYS>>;

/// The no-heap aggregator with its key index in caller storage whose size
/// is chosen at run time (an [`Aggregator`]'s is inside it, sized by its
/// `KEYS` parameter). It writes the same bytes as an [`Aggregator`] whose
/// `KEYS` is `index.len() / INDEX_SLOTS_PER_KEY`, and refuses the same
/// records.
///
/// # Examples
/// ```
/// use kinesis_agg::{INDEX_SLOTS_PER_KEY, IndexedAggregator, KeySlot, Record};
/// let mut buf = [0u8; 512];
/// let mut index = [KeySlot::FREE; 3 * INDEX_SLOTS_PER_KEY];
/// let mut agg = IndexedAggregator::new(&mut buf[..], &mut index, 512).unwrap();
/// assert_eq!(agg.key_capacity(), Some(3));
/// for key in ["a", "b", "c"] {
///     agg.add(Record::new(key, b"21.5")).unwrap();
/// }
/// // A fourth distinct key needs another aggregate.
/// assert!(agg.add(Record::new("d", b"19.0")).is_err());
/// let done = agg.finish().unwrap();
/// assert_eq!(done.record_count, 3);
/// ```
pub type IndexedAggregator<'i, B> = BufferAggregator<B, &'i mut [Slot]>;

impl<B: AsMut<[u8]> + AsRef<[u8]>, const KEYS: usize> BufferAggregator<B, FixedIndex<KEYS>> {
    // One key of each table, so that any first record (partition key and
    // explicit hash key) fits; table indices stay below the
    // explicit-hash-key bit.
    const CHECK_KEYS: () = assert!(KEYS >= 1 && KEYS < MAX_INDEX_KEYS, "KEYS must be at least 1");

    /// An aggregator with the default 1 MiB limit over `buf`.
    pub fn new(buf: B) -> Self {
        let () = Self::CHECK_KEYS;
        BufferAggregator {
            buf,
            slots: FixedIndex::new(),
            core: Core::unchecked(DEFAULT_LIMIT),
        }
    }

    /// An aggregator with a size limit (data blob plus outer partition key,
    /// [`MIN_LIMIT`](crate::MIN_LIMIT)..=[`MAX_LIMIT`](crate::MAX_LIMIT)).
    /// The buffer's length caps the blob too.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] outside that range.
    pub fn with_limit(buf: B, limit: usize) -> Result<Self, Error> {
        let () = Self::CHECK_KEYS;
        Ok(BufferAggregator {
            buf,
            slots: FixedIndex::new(),
            core: Core::new(limit)?,
        })
    }

    /// Gives the buffer back.
    pub fn into_inner(self) -> B {
        self.buf
    }
}

impl<'i, B: AsMut<[u8]> + AsRef<[u8]>> BufferAggregator<B, &'i mut [Slot]> {
    /// An aggregator over `buf` with its key index in `index` and a size
    /// limit as [`Aggregator::with_limit`] takes. The index's slots are
    /// freed first, whatever they held.
    ///
    /// # Errors
    /// [`Error::InvalidLimit`] for a limit outside
    /// [`MIN_LIMIT`](crate::MIN_LIMIT)..=[`MAX_LIMIT`](crate::MAX_LIMIT);
    /// [`Error::InvalidIndex`] for an index of fewer than
    /// [`INDEX_SLOTS_PER_KEY`](crate::INDEX_SLOTS_PER_KEY) slots (no room
    /// for a first record's keys) or of 2^28 keys or more.
    pub fn new(buf: B, index: &'i mut [Slot], limit: usize) -> Result<Self, Error> {
        // One key of each table, so that any first record fits; table
        // indices stay below the explicit-hash-key bit.
        if !(1..MAX_INDEX_KEYS).contains(&crate::index::slice_keys(index.len())) {
            return Err(Error::InvalidIndex { slots: index.len() });
        }
        let core = Core::new(limit)?;
        index.fill(Slot::FREE);
        Ok(BufferAggregator {
            buf,
            slots: index,
            core,
        })
    }

    /// Gives the buffer and the index back.
    pub fn into_parts(self) -> (B, &'i mut [Slot]) {
        (self.buf, self.slots)
    }
}

impl<B: AsMut<[u8]> + AsRef<[u8]>, I: Slots> BufferAggregator<B, I> {
    /// The configured limit.
    pub fn limit(&self) -> usize {
        self.core.limit
    }

    /// Distinct keys of each table one aggregate takes (`None` for an
    /// index that grows).
    pub fn key_capacity(&self) -> Option<usize> {
        self.slots.key_capacity()
    }

    /// Adds a record, or hands it back.
    ///
    /// # Errors
    /// [`Error::Full`] when its bytes do not fit now, or
    /// [`Error::KeyCapacity`] when it brings a key the index has no room
    /// for (finish, then add again; [`ErrorKind::Full`](crate::ErrorKind)
    /// covers both); [`Error::RecordTooLarge`] when it cannot fit even
    /// alone; [`Error::InvalidPartitionKey`] or [`Error::InvalidHashKey`]
    /// for keys Kinesis would refuse. The aggregator is unchanged.
    #[inline]
    pub fn add<'r>(&mut self, record: Record<'r>) -> Result<(), Refused<'r>> {
        self.core
            .add(self.buf.as_mut(), &mut self.slots, &record)
            .map_err(|error| Refused { record, error })
    }

    /// Exact size of the blob [`finish`](Self::finish) would return now (0
    /// when empty: nothing would be returned).
    pub fn encoded_len(&self) -> usize {
        self.core.encoded_len()
    }

    /// What [`encoded_len`](Self::encoded_len) would be after adding
    /// `record`, without adding it and whether or not it would fit. Add
    /// the outer partition key's length for what Kinesis counts.
    ///
    /// # Errors
    /// Invalid keys, as [`add`](Self::add).
    pub fn encoded_len_with(&self, record: &Record<'_>) -> Result<usize, Error> {
        self.core
            .size_with(self.buf.as_ref(), self.slots.as_ref(), record)
    }

    /// What [`add`](Self::add) would answer for `record`, without adding
    /// it: `Ok` when the current aggregate would take it, else the error
    /// `add` would give ([`Error::Full`] or [`Error::KeyCapacity`] when it
    /// fits only a later aggregate, [`Error::RecordTooLarge`] when it fits
    /// none, invalid keys).
    ///
    /// # Errors
    /// As [`add`](Self::add).
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Aggregator, Error, Record};
    /// let mut agg = Aggregator::<_, 4>::with_limit([0u8; 64], 64).unwrap();
    /// let r = Record::new("k", b"0123456789");
    /// assert_eq!(agg.check(&r), Ok(()));
    /// agg.add(r).unwrap();
    /// agg.add(r).unwrap();
    /// assert_eq!(agg.check(&r), Err(Error::Full));
    /// assert_eq!(agg.record_count(), 2);
    /// ```
    pub fn check(&self, record: &Record<'_>) -> Result<(), Error> {
        self.core
            .check(self.buf.as_ref(), &self.slots, record, self.buf.as_ref().len())
    }

    /// Number of user records in the current aggregate.
    pub fn record_count(&self) -> usize {
        self.core.count
    }

    /// `true` when no record has been added since the last finish.
    pub fn is_empty(&self) -> bool {
        self.core.count == 0
    }

    /// Completes the current aggregate and starts a new one. `None` when
    /// empty: an empty aggregate is never produced.
    pub fn finish(&mut self) -> Option<Finished<'_>> {
        let done = self.core.finish(self.buf.as_mut(), &mut self.slots)?;
        Some(finished(self.buf.as_ref(), &done))
    }
}

impl<B, I: Slots> fmt::Debug for BufferAggregator<B, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferAggregator")
            .field("limit", &self.core.limit)
            .field("key_capacity", &self.slots.key_capacity())
            .field("record_count", &self.core.count)
            .field("encoded_len", &self.core.encoded_len())
            .finish_non_exhaustive()
    }
}

/// The finished aggregate `done` describes, in `buf`.
fn finished<'b>(buf: &'b [u8], done: &Done) -> Finished<'b> {
    Finished {
        data: &buf[done.start..done.end],
        partition_key: key_str(buf, done.pk),
        explicit_hash_key: done.ehk.map(|r| key_str(buf, r)),
        record_count: done.records,
    }
}

// ---------------------------------------------------------------------------
// The alloc aggregator
// ---------------------------------------------------------------------------

#[cfg(feature = "alloc")]
pub(crate) use self::owned::digests_of;
#[cfg(feature = "alloc")]
pub use self::owned::{Aggregate, Digested, RecordAggregator, Undigested, UndigestedAggregate};

#[cfg(feature = "alloc")]
mod owned {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec::Vec;
    use core::marker::PhantomData;

    /// The state of an [`Aggregate`] whose MD5 trailer is written: its
    /// data is an aggregated record.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Digested {}

    /// The state of an aggregate completed without its MD5 trailer
    /// ([`RecordAggregator::finish_undigested`]): its keys and sizes are
    /// known, its data is not an aggregated record until
    /// [`digest`](Aggregate::digest) writes the trailer.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Undigested {}

    /// A completed aggregate that owns its bytes.
    ///
    /// It lives in a buffer as long as the limit, which
    /// [`RecordAggregator::recycle`] takes back. Comparing, hashing and
    /// cloning look only at what it holds ([`data`](Self::data) and the
    /// keys): a clone copies the blob into a buffer of its own size.
    ///
    /// `S` says whether its MD5 trailer is written: an
    /// [`UndigestedAggregate`] offers its keys and sizes but not its data,
    /// and becomes an `Aggregate` when digested.
    pub struct Aggregate<S = Digested> {
        buf: Vec<u8>,
        done: Done,
        state: PhantomData<S>,
    }

    /// An aggregate completed without its MD5 trailer, to be digested
    /// later, several together: see [`RecordAggregator::finish_undigested`].
    pub type UndigestedAggregate = Aggregate<Undigested>;

    impl<S> Aggregate<S> {
        /// The outer partition key (the first user record's).
        pub fn partition_key(&self) -> &str {
            key_str(&self.buf, self.done.pk)
        }
        /// The outer explicit hash key (the first user record's, if any).
        pub fn explicit_hash_key(&self) -> Option<&str> {
            self.done.ehk.map(|r| key_str(&self.buf, r))
        }
        /// How many user records it holds.
        pub fn record_count(&self) -> usize {
            self.done.records
        }
        /// What Kinesis counts against a record's size limit: the data
        /// blob plus the outer partition key's UTF-8 bytes.
        pub fn counted_len(&self) -> usize {
            self.done.end - self.done.start + self.partition_key().len()
        }

        fn with_state<T>(self) -> Aggregate<T> {
            Aggregate {
                buf: self.buf,
                done: self.done,
                state: PhantomData,
            }
        }
    }

    impl Aggregate {
        /// The Kinesis data blob: magic, body, MD5.
        pub fn data(&self) -> &[u8] {
            &self.buf[self.done.start..self.done.end]
        }

        /// The data blob as an owned vector (moves the bytes to the front of
        /// the buffer it already owns; no allocation).
        pub fn into_data(mut self) -> Vec<u8> {
            self.buf.truncate(self.done.end);
            self.buf.drain(..self.done.start);
            self.buf
        }
    }

    impl Aggregate<Undigested> {
        /// Writes the MD5 trailer: the aggregate is complete.
        ///
        /// # Examples
        /// ```
        /// use kinesis_agg::{Record, RecordAggregator};
        /// let (mut a, mut b) = (RecordAggregator::new(), RecordAggregator::new());
        /// a.add(Record::new("k", b"one")).unwrap();
        /// b.add(Record::new("k", b"one")).unwrap();
        /// let later = a.finish_undigested().unwrap();
        /// assert_eq!(later.record_count(), 1);
        /// assert_eq!(later.digest(), b.finish().unwrap());
        /// ```
        pub fn digest(mut self) -> Aggregate {
            let (body, trailer) = body_and_trailer(&mut self.buf, &self.done);
            trailer.copy_from_slice(&crate::checksum::md5(body));
            self.with_state()
        }

        /// Writes the MD5 trailers of many aggregates, computed side by
        /// side ([`MD5_LANES`](crate::MD5_LANES) at a time, several times
        /// faster than one after another): the digested aggregates, in
        /// order.
        ///
        /// # Examples
        /// ```
        /// use kinesis_agg::{Aggregate, Record, RecordAggregator};
        /// let (mut agg, mut now) = (RecordAggregator::new(), RecordAggregator::new());
        /// let (mut later, mut singly) = (Vec::new(), Vec::new());
        /// for key in ["a", "b", "c", "d", "e"] {
        ///     agg.add(Record::new(key, b"data")).unwrap();
        ///     now.add(Record::new(key, b"data")).unwrap();
        ///     later.extend(agg.finish_undigested());
        ///     singly.extend(now.finish());
        /// }
        /// assert_eq!(Aggregate::digest_all(later), singly);
        /// ```
        pub fn digest_all(aggregates: impl IntoIterator<Item = Self>) -> Vec<Aggregate> {
            let all: Vec<Self> = aggregates.into_iter().collect();
            let digests = digests_of(all.iter().map(Self::body));
            all.into_iter()
                .zip(digests)
                .map(|(a, d)| a.with_digest(d))
                .collect()
        }

        /// The protobuf body, between the magic and the trailer.
        pub(crate) fn body(&self) -> &[u8] {
            &self.buf[self.done.start + MAGIC.len()..self.done.end - DIGEST_LEN]
        }

        /// With `md5`, its body's MD5, written in the trailer.
        pub(crate) fn with_digest(mut self, md5: [u8; DIGEST_LEN]) -> Aggregate {
            body_and_trailer(&mut self.buf, &self.done)
                .1
                .copy_from_slice(&md5);
            self.with_state()
        }
    }

    /// The MD5s of `bodies`, in order: side by side when there are
    /// several, without a vector of results when there is one.
    pub(crate) fn digests_of<'b>(
        bodies: impl ExactSizeIterator<Item = &'b [u8]>,
    ) -> core::iter::Chain<core::option::IntoIter<[u8; DIGEST_LEN]>, alloc::vec::IntoIter<[u8; DIGEST_LEN]>>
    {
        let n = bodies.len();
        let mut one = None;
        let mut many = Vec::new();
        if n == 1 {
            one = bodies.map(crate::checksum::md5).next();
        } else {
            many = alloc::vec![[0u8; DIGEST_LEN]; n];
            crate::checksum::md5_each(bodies.enumerate(), |i, d| many[i] = d);
        }
        one.into_iter().chain(many)
    }

    impl Clone for Aggregate {
        fn clone(&self) -> Self {
            let start = self.done.start;
            let shift = |(a, b): (usize, usize)| (a - start, b - start);
            Aggregate {
                buf: self.data().to_vec(),
                done: Done {
                    start: 0,
                    end: self.done.end - start,
                    pk: shift(self.done.pk),
                    ehk: self.done.ehk.map(shift),
                    records: self.done.records,
                },
                state: PhantomData,
            }
        }
    }

    impl PartialEq for Aggregate {
        fn eq(&self, other: &Self) -> bool {
            // The blob holds the tables, so equal blobs have equal
            // partition keys; the outer explicit hash key is compared
            // since the blob says only which entry it is, not whether the
            // first record has one.
            self.data() == other.data() && self.explicit_hash_key() == other.explicit_hash_key()
        }
    }

    impl Eq for Aggregate {}

    impl core::hash::Hash for Aggregate {
        fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
            self.data().hash(state);
            self.explicit_hash_key().hash(state);
        }
    }

    impl<S> fmt::Debug for Aggregate<S> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Aggregate")
                .field("partition_key", &self.partition_key())
                .field("explicit_hash_key", &self.explicit_hash_key())
                .field("record_count", &self.record_count())
                .field("len", &(self.done.end - self.done.start))
                .finish()
        }
    }

    type Callback = Box<dyn FnMut(&Aggregate) + Send>;

    /// Aggregates into buffers it owns, in the manner of the Python
    /// module's `RecordAggregator`: the [`BufferAggregator`] over a buffer
    /// and a key index it owns.
    ///
    /// Each aggregate gets a buffer as long as the limit (allocated zeroed,
    /// so untouched pages cost no memory); hand finished aggregates back
    /// with [`recycle`](Self::recycle) and no further buffer is allocated.
    /// The key index grows to the largest number of keys seen and is
    /// reused, so after warm-up adding a record allocates nothing. It is
    /// `Send` (callbacks must be), so it can live in a spawned task.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Record, RecordAggregator};
    /// let mut agg = RecordAggregator::with_limit(200).unwrap();
    /// let mut done = Vec::new();
    /// for i in 0..10u8 {
    ///     if let Some(full) = agg.add(Record::new("key", &[i; 40])).unwrap() {
    ///         done.push(full);
    ///     }
    /// }
    /// done.extend(agg.finish());
    /// assert!(done.iter().all(|a| a.counted_len() <= 200));
    /// assert_eq!(done.iter().map(|a| a.record_count()).sum::<usize>(), 10);
    /// ```
    pub struct RecordAggregator {
        inner: BufferAggregator<Vec<u8>, Vec<Slot>>,
        spare: Vec<Vec<u8>>,
        callbacks: Vec<Callback>,
    }

    impl Default for RecordAggregator {
        fn default() -> Self {
            RecordAggregator::new()
        }
    }

    impl fmt::Debug for RecordAggregator {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RecordAggregator")
                .field("inner", &self.inner)
                .finish_non_exhaustive()
        }
    }

    impl core::ops::Deref for RecordAggregator {
        type Target = BufferAggregator<Vec<u8>, Vec<Slot>>;

        /// The aggregator it owns, to read: its
        /// [`limit`](BufferAggregator::limit),
        /// [`encoded_len`](BufferAggregator::encoded_len),
        /// [`encoded_len_with`](BufferAggregator::encoded_len_with),
        /// [`record_count`](BufferAggregator::record_count) and
        /// [`is_empty`](BufferAggregator::is_empty). Adding and finishing go
        /// through the `RecordAggregator`, which owns the buffers.
        fn deref(&self) -> &Self::Target {
            &self.inner
        }
    }

    impl RecordAggregator {
        /// An aggregator with the default limit of 1 MiB.
        pub fn new() -> Self {
            RecordAggregator {
                inner: BufferAggregator {
                    buf: Vec::new(),
                    slots: Vec::new(),
                    core: Core::unchecked(DEFAULT_LIMIT),
                },
                spare: Vec::new(),
                callbacks: Vec::new(),
            }
        }

        /// An aggregator with a size limit (data blob plus outer partition
        /// key, [`MIN_LIMIT`](crate::MIN_LIMIT)..=[`MAX_LIMIT`](crate::MAX_LIMIT)).
        ///
        /// # Errors
        /// [`Error::InvalidLimit`] outside that range.
        pub fn with_limit(limit: usize) -> Result<Self, Error> {
            let mut agg = RecordAggregator::new();
            agg.inner.core = Core::new(limit)?;
            Ok(agg)
        }

        /// Registers a callback run (on the caller's thread) with every
        /// aggregate this aggregator completes, from [`add`](Self::add) and
        /// from [`finish`](Self::finish), before it is returned.
        pub fn on_complete(&mut self, callback: impl FnMut(&Aggregate) + Send + 'static) {
            self.callbacks.push(Box::new(callback));
        }

        /// Removes every callback.
        pub fn clear_callbacks(&mut self) {
            self.callbacks.clear();
        }

        fn ensure_buf(&mut self) {
            if self.inner.buf.is_empty() {
                let limit = self.inner.core.limit;
                self.inner.buf = self.spare.pop().unwrap_or_else(|| alloc::vec![0u8; limit]);
            }
        }

        /// Adds a record. When the current aggregate cannot take it, that
        /// aggregate is completed and returned, and the record starts the
        /// next one.
        ///
        /// # Errors
        /// Invalid keys ([`ErrorKind::InvalidRecord`](crate::ErrorKind)),
        /// or a record too large to fit even alone; nothing changes then.
        pub fn add(&mut self, record: Record<'_>) -> Result<Option<Aggregate>, Error> {
            match self.try_add(record) {
                Ok(()) => Ok(None),
                Err(Refused { error, .. }) if error.kind() == crate::ErrorKind::Full => {
                    let done = self.finish();
                    self.try_add(record).map_err(|r| r.error)?;
                    Ok(done)
                }
                Err(r) => Err(r.error),
            }
        }

        /// What [`try_add`](Self::try_add) would answer for `record`,
        /// without adding it: `Ok` when the current aggregate would take
        /// it, [`Error::Full`] when only the next one would,
        /// [`Error::RecordTooLarge`] or invalid keys otherwise.
        ///
        /// # Errors
        /// As [`try_add`](Self::try_add).
        pub fn check(&self, record: &Record<'_>) -> Result<(), Error> {
            let inner = &self.inner;
            let cap = inner.core.limit;
            inner.core.check(&inner.buf, &inner.slots, record, cap)
        }

        /// Adds a record to the current aggregate or hands it back, as
        /// [`BufferAggregator::add`] does (the growable key index never
        /// refuses a key, so the only refusal for room is [`Error::Full`]).
        ///
        /// # Errors
        /// As [`BufferAggregator::add`].
        #[inline]
        pub fn try_add<'r>(&mut self, record: Record<'r>) -> Result<(), Refused<'r>> {
            self.ensure_buf();
            self.inner.add(record)
        }

        /// Lays the current aggregate out and takes its buffer: the next
        /// aggregate gets another.
        fn take(&mut self) -> Option<Aggregate<Undigested>> {
            let inner = &mut self.inner;
            let done = inner.core.lay_out(&mut inner.buf, &mut inner.slots)?;
            Some(Aggregate {
                buf: core::mem::take(&mut inner.buf),
                done,
                state: PhantomData,
            })
        }

        /// Completes and returns the current aggregate (`None` when empty),
        /// after running the callbacks with it.
        pub fn finish(&mut self) -> Option<Aggregate> {
            let agg = self.take()?.digest();
            for cb in &mut self.callbacks {
                cb(&agg);
            }
            Some(agg)
        }

        /// Completes the current aggregate without writing its MD5 trailer
        /// (`None` when empty), for a caller that digests aggregates later,
        /// several at once ([`Aggregate::digest_all`]): the same bytes as
        /// [`finish`](Self::finish) once digested. Callbacks are not run.
        ///
        /// # Examples
        /// ```
        /// use kinesis_agg::{Aggregate, Record, RecordAggregator};
        /// let mut shards = [RecordAggregator::new(), RecordAggregator::new()];
        /// shards[0].add(Record::new("a", b"first shard")).unwrap();
        /// shards[1].add(Record::new("b", b"second shard")).unwrap();
        /// let a = shards[0].finish_undigested().unwrap();
        /// let b = shards[1].finish_undigested().unwrap();
        /// let [a, b] = <[Aggregate; 2]>::try_from(Aggregate::digest_all([a, b])).unwrap();
        /// let read = kinesis_agg::deaggregate(a.data()).unwrap();
        /// assert!(matches!(read, kinesis_agg::Deaggregated::Aggregated(_)));
        /// assert_eq!(b.partition_key(), "b");
        /// ```
        pub fn finish_undigested(&mut self) -> Option<UndigestedAggregate> {
            self.take()
        }

        /// Takes back a finished aggregate's buffer for reuse, so that no
        /// new buffer is allocated for the next aggregate. At most two
        /// buffers are kept; a buffer of another aggregator's limit is
        /// dropped.
        pub fn recycle<S>(&mut self, aggregate: Aggregate<S>) {
            let buf = aggregate.buf;
            if buf.len() == self.inner.core.limit && self.spare.len() < 2 {
                self.spare.push(buf);
            }
        }
    }
}

#[cfg(test)]
#[cfg(feature = "alloc")]
mod tests {
    //! The edges of the room an aggregate has. Which path a record takes
    //! (the one-pass add of known keys, the full one) only changes speed,
    //! never a byte: `CODEC_COUNT` in `benches/codec.rs` counts the
    //! instructions of each workload, and the tests of `tests/` compare the
    //! bytes with prost's.
    use super::*;

    /// A record of known keys that fills the aggregate to the limit, to
    /// the byte, fits; one byte more does not, and changes nothing.
    #[test]
    fn a_record_that_fills_the_limit_exactly_fits() {
        let limit = 1_000;
        let mut buf = alloc::vec![0u8; 4096];
        let mut agg = Aggregator::<_, 2>::with_limit(&mut buf[..], limit).unwrap();
        agg.add(Record::new("k", b"first")).unwrap();
        let data = [1u8; 1000];
        let n = (0..1000)
            .rev()
            .find(|&n| agg.encoded_len_with(&Record::new("k", &data[..n])).unwrap() < limit)
            .unwrap();
        let before = agg.encoded_len();
        assert_eq!(
            agg.add(Record::new("k", &data[..n + 1])).unwrap_err().error,
            Error::Full
        );
        assert_eq!(agg.encoded_len(), before);
        agg.add(Record::new("k", &data[..n])).unwrap();
        // The limit counts the outer partition key ("k").
        assert_eq!(agg.encoded_len() + 1, limit);
        assert_eq!(agg.add(Record::new("k", b"")).unwrap_err().error, Error::Full);
        let size = agg.encoded_len();
        assert_eq!(agg.finish().unwrap().data.len(), size);
    }

    /// The same when the caller's buffer is what bounds the aggregate: a
    /// record that fills the buffer to the byte fits, one byte more is
    /// refused.
    #[test]
    fn a_record_that_fills_the_buffer_exactly_fits() {
        let mut buf = alloc::vec![0u8; 600];
        let mut agg = Aggregator::<_, 2>::new(&mut buf[..]);
        agg.add(Record::new("k", b"first")).unwrap();
        let data = [1u8; 600];
        let fits = |agg: &Aggregator<&mut [u8], 2>, n: usize| {
            agg.encoded_len_with(&Record::new("k", &data[..n])).unwrap() <= 600
        };
        let n = (0..600).rev().find(|&n| fits(&agg, n)).unwrap();
        assert_eq!(
            agg.add(Record::new("k", &data[..n + 1])).unwrap_err().error,
            Error::Full
        );
        agg.add(Record::new("k", &data[..n])).unwrap();
        let size = agg.encoded_len();
        assert!(size > 600 - 4, "{size}: the buffer was not filled");
        assert_eq!(agg.finish().unwrap().data.len(), size);
    }

    /// Fills aggregates of `limit` with 100-byte records over `keys`
    /// distinct keys taken in turn; the moves of records while filling
    /// each, the first aggregate (whose gap starts small) and the next.
    fn moves_filling(limit: usize, keys: usize) -> [u64; 2] {
        let keys: alloc::vec::Vec<alloc::string::String> =
            (0..keys).map(|k| alloc::format!("{k:036}")).collect();
        let mut agg = owned::RecordAggregator::with_limit(limit).unwrap();
        let data = [7u8; 100];
        let mut out = [0; 2];
        crate::wire::work::take(crate::wire::work::Work::Moves);
        let mut i = 0;
        for slot in &mut out {
            loop {
                let done = agg.add(Record::new(&keys[i % keys.len()], &data)).unwrap();
                i += 1;
                if let Some(done) = done {
                    *slot = crate::wire::work::take(crate::wire::work::Work::Moves);
                    assert!(done.counted_len() <= limit);
                    agg.recycle(done);
                    break;
                }
            }
        }
        out
    }

    /// A full aggregate of repeated keys moves its records at most once
    /// near its end (the room left split by what the tables and records
    /// hold, not evenly, which moved them at each halving of it); the
    /// first aggregate's gap grows by doubling, a few moves while it is
    /// small.
    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn records_move_a_few_times_per_aggregate() {
        let [first, next] = moves_filling(1 << 20, 100);
        assert!(next <= 1, "{next} moves filling an aggregate of repeated keys");
        assert!(first <= 9, "{first} moves filling the first aggregate");
        // A new key every record: the tables grow all along, and the gap
        // with them by doubling, never a move per key.
        let [first, next] = moves_filling(1 << 20, 20_000);
        assert!(
            first <= 24 && next <= 24,
            "{first} and {next} moves with a new key every record"
        );
    }

    /// A buffer that the records outgrow, with tagged records among them:
    /// every aggregate is exact and reads back whole.
    #[test]
    fn records_that_need_room_or_carry_tags_make_exact_aggregates() {
        let tags = [Tag {
            key: "t",
            value: None,
        }];
        let mut buf = alloc::vec![0u8; 400];
        let mut agg = Aggregator::<_, 8>::new(&mut buf[..]);
        let data = [1u8; 30];
        let mut n = 0;
        while agg
            .add(Record::new("k", &data).with_tags(if n % 3 == 0 { &tags } else { &[] }))
            .is_ok()
        {
            n += 1;
        }
        assert!(n > 5);
        let size = agg.encoded_len();
        let done = agg.finish().unwrap();
        assert_eq!(done.data.len(), size);
        assert_eq!(done.record_count, n);
        let Ok(crate::Deaggregated::Aggregated(read)) = crate::deaggregate(done.data) else {
            panic!("not read back")
        };
        let tagged: alloc::vec::Vec<usize> = read.records().map(|r| r.tags.count()).collect();
        assert_eq!(
            tagged,
            (0..n)
                .map(|i| usize::from(i % 3 == 0))
                .collect::<alloc::vec::Vec<_>>()
        );
    }
}
