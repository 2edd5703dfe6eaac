//! The crate's one error type.

use core::fmt;

use crate::limits::{
    INDEX_SLOTS_PER_KEY, MAX_INDEX_KEYS, MAX_LIMIT, MAX_NESTING, MAX_PARTITION_KEY_UNITS, MIN_LIMIT,
};

/// Which key table an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// `partition_key_table` (field 1 of `AggregatedRecord`).
    PartitionKey,
    /// `explicit_hash_key_table` (field 2 of `AggregatedRecord`).
    ExplicitHashKey,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::PartitionKey => "partition key",
            Table::ExplicitHashKey => "explicit hash key",
        })
    }
}

/// A required protobuf field that was absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Required {
    /// `Record.partition_key_index` (field 1).
    PartitionKeyIndex,
    /// `Record.data` (field 3).
    Data,
    /// `Tag.key` (field 1).
    TagKey,
}

impl fmt::Display for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Required::PartitionKeyIndex => "Record.partition_key_index",
            Required::Data => "Record.data",
            Required::TagKey => "Tag.key",
        })
    }
}

/// Everything that can go wrong, in every feature set.
///
/// The error is `Copy`, allocates nothing, and says where and what.
/// Offsets count from the first byte of the Kinesis data blob (the first
/// magic byte), so they point into exactly the bytes the caller passed.
///
/// A blob that is not aggregated is *not* an error: it is
/// [`Deaggregated::Plain`](crate::Deaggregated::Plain).
/// A record an aggregator refuses comes back in a
/// [`Refused`](crate::Refused) with the reason; [`Error::kind`] sorts every
/// variant into "full: finish and add again", "this record is invalid",
/// "the data read is broken" and "the configuration is wrong", so that a
/// caller decides with one `match`.
///
/// # Examples
/// ```
/// use kinesis_agg::{Aggregator, Error, ErrorKind, Record};
/// let mut buf = [0u8; 64];
/// let mut agg = Aggregator::<_, 1>::new(&mut buf[..]);
/// agg.add(Record::new("a", b"1")).unwrap();
/// let refused = agg.add(Record::new("b", b"2")).unwrap_err();
/// assert_eq!(refused.error, Error::KeyCapacity { table: kinesis_agg::Table::PartitionKey, capacity: 1 });
/// assert_eq!(refused.error.kind(), ErrorKind::Full);
/// let bad = agg.add(Record::new("", b"3")).unwrap_err();
/// assert_eq!(bad.error.kind(), ErrorKind::InvalidRecord);
/// ```
///
/// What follows is what the library and the CLI do with every class of
/// bad input, where the reader deliberately differs from prost, and how
/// much memory each type needs.
///
#[doc = include_str!("../docs/robustness.md")]
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    // ---- deaggregation: the protobuf body ----
    /// Input ended inside a varint, a fixed-width value or a group.
    Truncated {
        /// Where the value that ran past the end starts.
        offset: usize,
    },
    /// A length prefix points past the end of its enclosing message.
    LengthPastEnd {
        /// Offset of the length prefix.
        offset: usize,
    },
    /// A varint longer than 10 bytes.
    VarintTooLong {
        /// Offset of the varint's first byte.
        offset: usize,
    },
    /// A field tag with field number 0 or above 2^29-1.
    InvalidTag {
        /// Offset of the tag.
        offset: usize,
    },
    /// Wire type 6 or 7, which protobuf does not define.
    InvalidWireType {
        /// Offset of the tag.
        offset: usize,
        /// The wire type found.
        wire_type: u8,
    },
    /// An end-group tag with no matching start-group tag.
    UnexpectedEndGroup {
        /// Offset of the end-group tag.
        offset: usize,
    },
    /// Groups nested deeper than 100, the limit of Google's parsers.
    NestingTooDeep {
        /// Offset of the group that went too deep.
        offset: usize,
    },
    /// A required field is missing.
    MissingField {
        /// Offset of the message that lacks it.
        offset: usize,
        /// Which field.
        field: Required,
    },
    /// A record's index points outside its key table.
    IndexOutOfRange {
        /// Offset of the record.
        offset: usize,
        /// Which table.
        table: Table,
        /// The index found.
        index: u64,
        /// How many entries the table has.
        len: usize,
    },
    /// A key table entry, tag key or tag value that is not UTF-8.
    InvalidUtf8 {
        /// Offset of the string's first byte.
        offset: usize,
    },
    /// More distinct keys in a table of the body than the caller's fixed
    /// key table holds (see [`FixedTable`](crate::FixedTable)).
    TableFull {
        /// Offset of the key that did not fit.
        offset: usize,
        /// Which table.
        table: Table,
        /// The capacity.
        capacity: usize,
    },
    /// Strict mode: the blob starts with the magic but its MD5 trailer is wrong.
    ChecksumMismatch,

    // ---- aggregation ----
    /// A partition key that is empty or longer than 256 UTF-16 code units.
    InvalidPartitionKey {
        /// Its length in UTF-16 code units.
        utf16_len: usize,
    },
    /// A hash key (an explicit hash key, or a bound of a range) that is not
    /// a decimal integer in 0..=2^128-1 written without leading zeros.
    InvalidHashKey {
        /// Where in the key string (a byte index from 0, not a blob
        /// offset) the first offending character is: a non-digit, a
        /// leading zero, or the digit that takes the value past 2^128-1; 0
        /// for an empty string.
        position: usize,
    },
    /// The aggregate has no room for this record's bytes now (under the
    /// limit or in the buffer); finish it and add the record again.
    Full,
    /// The aggregate's key index has no room for another key of this table
    /// (a no-heap [`Aggregator`](crate::Aggregator) takes `KEYS` keys per
    /// table); finish it and add the record again.
    KeyCapacity {
        /// The table that is full.
        table: Table,
        /// How many keys of that table one aggregate takes.
        capacity: usize,
    },
    /// The record cannot fit in any aggregate under this limit.
    RecordTooLarge {
        /// Bytes an aggregate holding only this record would count against
        /// the limit (data blob plus outer partition key).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A size limit outside what the aggregator supports.
    InvalidLimit {
        /// The limit asked for.
        limit: usize,
    },
    /// A caller's key index (for an
    /// [`IndexedAggregator`](crate::IndexedAggregator)) too small for one
    /// key of each table, or larger than an aggregate's tables can number.
    InvalidIndex {
        /// The index's length in slots.
        slots: usize,
    },

    // ---- hash keys and shards ----
    /// A hash key range whose bounds are not hash keys, or whose start
    /// exceeds its end.
    InvalidHashKeyRange,
    /// A shard map whose open shards overlap.
    ShardsOverlap {
        /// Index (in the sorted map) of the shard that overlaps the one before it.
        shard: usize,
    },
    /// A record whose hash key no shard of the map owns (a map with gaps).
    NoShardForHashKey {
        /// The hash key.
        hash_key: u128,
    },
    /// ListShards JSON that could not be read.
    InvalidShardList {
        /// Line of the problem (1-based; 0 when not a syntax error).
        line: usize,
        /// Column of the problem.
        column: usize,
    },
}

/// What kind of failure an [`Error`] is, to decide what to do next.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// An aggregator refused a valid record for lack of room ([`Error::Full`],
    /// [`Error::KeyCapacity`]): finish the aggregate and add it again.
    Full,
    /// A record (or key) that no aggregate can take: an invalid key, or a
    /// record too large even alone. Adding it again will fail again.
    InvalidRecord,
    /// Data read was broken: an aggregated body that breaks a rule (with
    /// its byte offset), a checksum mismatch in strict mode, a shard list
    /// of the wrong shape or with overlapping shards or bad ranges, a hash
    /// key no shard of the map owns.
    InvalidData,
    /// A setting or caller-chosen capacity is wrong: a size limit out of
    /// range, or a fixed key table too small for the body read.
    InvalidConfig,
}

impl Error {
    /// Which kind of failure this is.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Error, ErrorKind};
    /// assert_eq!(Error::Full.kind(), ErrorKind::Full);
    /// assert_eq!(Error::Truncated { offset: 4 }.kind(), ErrorKind::InvalidData);
    /// assert_eq!(Error::InvalidLimit { limit: 1 }.kind(), ErrorKind::InvalidConfig);
    /// ```
    pub const fn kind(&self) -> ErrorKind {
        match self {
            Error::Full | Error::KeyCapacity { .. } => ErrorKind::Full,
            Error::InvalidPartitionKey { .. }
            | Error::InvalidHashKey { .. }
            | Error::RecordTooLarge { .. } => ErrorKind::InvalidRecord,
            Error::InvalidLimit { .. } | Error::InvalidIndex { .. } | Error::TableFull { .. } => {
                ErrorKind::InvalidConfig
            }
            Error::Truncated { .. }
            | Error::LengthPastEnd { .. }
            | Error::VarintTooLong { .. }
            | Error::InvalidTag { .. }
            | Error::InvalidWireType { .. }
            | Error::UnexpectedEndGroup { .. }
            | Error::NestingTooDeep { .. }
            | Error::MissingField { .. }
            | Error::IndexOutOfRange { .. }
            | Error::InvalidUtf8 { .. }
            | Error::ChecksumMismatch
            | Error::NoShardForHashKey { .. }
            | Error::ShardsOverlap { .. }
            | Error::InvalidHashKeyRange
            | Error::InvalidShardList { .. } => ErrorKind::InvalidData,
        }
    }

    /// The variant's name (`"MissingField"`), stable across releases: what
    /// the bindings give as an error's code, without formatting the error.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::Error;
    /// assert_eq!(Error::Truncated { offset: 9 }.name(), "Truncated");
    /// assert_eq!(Error::ChecksumMismatch.name(), "ChecksumMismatch");
    /// ```
    pub const fn name(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "Truncated",
            Error::LengthPastEnd { .. } => "LengthPastEnd",
            Error::VarintTooLong { .. } => "VarintTooLong",
            Error::InvalidTag { .. } => "InvalidTag",
            Error::InvalidWireType { .. } => "InvalidWireType",
            Error::UnexpectedEndGroup { .. } => "UnexpectedEndGroup",
            Error::NestingTooDeep { .. } => "NestingTooDeep",
            Error::MissingField { .. } => "MissingField",
            Error::IndexOutOfRange { .. } => "IndexOutOfRange",
            Error::InvalidUtf8 { .. } => "InvalidUtf8",
            Error::TableFull { .. } => "TableFull",
            Error::ChecksumMismatch => "ChecksumMismatch",
            Error::InvalidPartitionKey { .. } => "InvalidPartitionKey",
            Error::InvalidHashKey { .. } => "InvalidHashKey",
            Error::Full => "Full",
            Error::KeyCapacity { .. } => "KeyCapacity",
            Error::RecordTooLarge { .. } => "RecordTooLarge",
            Error::InvalidLimit { .. } => "InvalidLimit",
            Error::InvalidIndex { .. } => "InvalidIndex",
            Error::InvalidHashKeyRange => "InvalidHashKeyRange",
            Error::ShardsOverlap { .. } => "ShardsOverlap",
            Error::NoShardForHashKey { .. } => "NoShardForHashKey",
            Error::InvalidShardList { .. } => "InvalidShardList",
        }
    }

    /// The offset in the Kinesis data blob the error points at, for the
    /// errors of a blob read (a position in a hash key string is not one:
    /// see [`Error::InvalidHashKey`]).
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::Error;
    /// assert_eq!(Error::Truncated { offset: 9 }.offset(), Some(9));
    /// assert_eq!(Error::InvalidHashKey { position: 3 }.offset(), None);
    /// assert_eq!(Error::Full.offset(), None);
    /// ```
    pub fn offset(&self) -> Option<usize> {
        match *self {
            Error::Truncated { offset }
            | Error::LengthPastEnd { offset }
            | Error::VarintTooLong { offset }
            | Error::InvalidTag { offset }
            | Error::InvalidWireType { offset, .. }
            | Error::UnexpectedEndGroup { offset }
            | Error::NestingTooDeep { offset }
            | Error::MissingField { offset, .. }
            | Error::IndexOutOfRange { offset, .. }
            | Error::InvalidUtf8 { offset }
            | Error::TableFull { offset, .. } => Some(offset),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Truncated { offset } => {
                write!(f, "input ends inside the value at byte {offset}")
            }
            Error::LengthPastEnd { offset } => {
                write!(f, "length at byte {offset} runs past the end of its message")
            }
            Error::VarintTooLong { offset } => {
                write!(f, "varint at byte {offset} is longer than 10 bytes")
            }
            Error::InvalidTag { offset } => {
                write!(f, "invalid field number in the tag at byte {offset}")
            }
            Error::InvalidWireType { offset, wire_type } => {
                write!(f, "invalid wire type {wire_type} at byte {offset}")
            }
            Error::UnexpectedEndGroup { offset } => {
                write!(f, "end-group tag at byte {offset} closes no open group")
            }
            Error::NestingTooDeep { offset } => {
                write!(f, "group at byte {offset} nests deeper than {MAX_NESTING}")
            }
            Error::MissingField { offset, field } => {
                write!(f, "message at byte {offset} lacks required field {field}")
            }
            Error::IndexOutOfRange {
                offset,
                table,
                index,
                len,
            } => write!(
                f,
                "record at byte {offset} uses {table} index {index} but the table has {len} entries"
            ),
            Error::InvalidUtf8 { offset } => {
                write!(f, "string at byte {offset} is not valid UTF-8")
            }
            Error::TableFull {
                offset,
                table,
                capacity,
            } => write!(
                f,
                "{table} table entry at byte {offset} exceeds the capacity of {capacity} keys"
            ),
            Error::ChecksumMismatch => {
                f.write_str("blob starts with the aggregation magic but its MD5 checksum is wrong")
            }
            Error::InvalidPartitionKey { utf16_len } => write!(
                f,
                "partition key must be 1 to {MAX_PARTITION_KEY_UNITS} UTF-16 code units, not {utf16_len}"
            ),
            Error::InvalidHashKey { position } => write!(
                f,
                "hash key must be a decimal integer from 0 to 2^128-1 without leading zeros (bad at character {position})"
            ),
            Error::Full => f.write_str("the aggregate is full; finish it and add the record again"),
            Error::KeyCapacity { table, capacity } => write!(
                f,
                "the aggregate already holds {capacity} {table} keys, all it takes; finish it and add the record again"
            ),
            Error::RecordTooLarge { size, limit } => write!(
                f,
                "record needs {size} bytes alone, more than the limit of {limit}"
            ),
            Error::InvalidHashKeyRange => f.write_str(
                "hash key range must be START:END, decimal hash keys from 0 to 2^128-1, START <= END",
            ),
            Error::ShardsOverlap { shard } => {
                write!(f, "shard {shard} of the map overlaps the shard before it")
            }
            Error::NoShardForHashKey { hash_key } => {
                // Written as the library writes hash keys: formatting a u128
                // would bring core's 128-bit formatting into small builds.
                let mut digits = [0u8; crate::limits::HASH_KEY_MAX_DIGITS];
                f.write_str("no shard of the map owns hash key ")?;
                f.write_str(crate::hash::write_hash_key(hash_key, &mut digits))
            }
            Error::InvalidShardList { line, column } => write!(
                f,
                "not ListShards JSON (shards with ShardId and HashKeyRange) at line {line}, column {column}"
            ),
            Error::InvalidLimit { limit } => {
                write!(f, "size limit {limit} is outside {MIN_LIMIT}..={MAX_LIMIT}")
            }
            Error::InvalidIndex { slots } => write!(
                f,
                "a key index of {slots} slots is outside {INDEX_SLOTS_PER_KEY}..{} ({INDEX_SLOTS_PER_KEY} slots per key of each table)",
                INDEX_SLOTS_PER_KEY * MAX_INDEX_KEYS
            ),
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;
    use std::vec::Vec;

    /// A hash key in a message is its whole decimal value, as Rust's own
    /// formatting of the number writes it.
    #[test]
    fn a_hash_key_in_a_message_is_written_whole() {
        for hash_key in [0, 7, 10, u128::from(u64::MAX) + 1, u128::MAX / 3, u128::MAX] {
            let got = Error::NoShardForHashKey { hash_key }.to_string();
            assert_eq!(got, std::format!("no shard of the map owns hash key {hash_key}"));
        }
    }

    /// One sample of every variant.
    fn samples() -> Vec<Error> {
        std::vec![
            Error::Truncated { offset: 11 },
            Error::LengthPastEnd { offset: 12 },
            Error::VarintTooLong { offset: 13 },
            Error::InvalidTag { offset: 14 },
            Error::InvalidWireType {
                offset: 15,
                wire_type: 7,
            },
            Error::UnexpectedEndGroup { offset: 16 },
            Error::NestingTooDeep { offset: 17 },
            Error::MissingField {
                offset: 18,
                field: Required::Data,
            },
            Error::IndexOutOfRange {
                offset: 19,
                table: Table::PartitionKey,
                index: 5,
                len: 2,
            },
            Error::InvalidUtf8 { offset: 20 },
            Error::TableFull {
                offset: 21,
                table: Table::PartitionKey,
                capacity: 8,
            },
            Error::ChecksumMismatch,
            Error::InvalidPartitionKey { utf16_len: 300 },
            Error::InvalidHashKey { position: 22 },
            Error::Full,
            Error::KeyCapacity {
                table: Table::ExplicitHashKey,
                capacity: 6,
            },
            Error::RecordTooLarge {
                size: 2000,
                limit: 1000,
            },
            Error::InvalidLimit { limit: 3 },
            Error::InvalidIndex { slots: 5 },
            Error::InvalidHashKeyRange,
            Error::ShardsOverlap { shard: 4 },
            Error::NoShardForHashKey { hash_key: 77 },
            Error::InvalidShardList { line: 3, column: 9 },
        ]
    }

    /// Which variant a sample is. A match without a catch-all: a variant
    /// added to the enum does not compile here until it has a sample,
    /// which the test below then checks.
    const fn variant(e: &Error) -> usize {
        match e {
            Error::Truncated { .. } => 0,
            Error::LengthPastEnd { .. } => 1,
            Error::VarintTooLong { .. } => 2,
            Error::InvalidTag { .. } => 3,
            Error::InvalidWireType { .. } => 4,
            Error::UnexpectedEndGroup { .. } => 5,
            Error::NestingTooDeep { .. } => 6,
            Error::MissingField { .. } => 7,
            Error::IndexOutOfRange { .. } => 8,
            Error::InvalidUtf8 { .. } => 9,
            Error::TableFull { .. } => 10,
            Error::ChecksumMismatch => 11,
            Error::InvalidPartitionKey { .. } => 12,
            Error::InvalidHashKey { .. } => 13,
            Error::Full => 14,
            Error::KeyCapacity { .. } => 15,
            Error::RecordTooLarge { .. } => 16,
            Error::InvalidLimit { .. } => 17,
            Error::InvalidIndex { .. } => 18,
            Error::InvalidHashKeyRange => 19,
            Error::ShardsOverlap { .. } => 20,
            Error::NoShardForHashKey { .. } => 21,
            Error::InvalidShardList { .. } => 22,
        }
    }

    /// Every variant has a sample, a message of its own that names the
    /// offset it carries, and a kind.
    #[test]
    fn every_variant_has_a_sample_and_a_message_of_its_own() {
        let all = samples();
        let mut seen = [false; 23];
        let mut texts = Vec::new();
        for e in &all {
            seen[variant(e)] = true;
            let text = e.to_string();
            assert!(!texts.contains(&text), "two errors read the same: {text}");
            if let Some(off) = e.offset() {
                assert!(text.contains(&off.to_string()), "{text}");
            }
            texts.push(text);
        }
        // Every kind is used; "full" is exactly the two refusals for room.
        let kind = |k| all.iter().filter(|e| e.kind() == k).count();
        assert_eq!(kind(ErrorKind::Full), 2);
        assert_eq!(kind(ErrorKind::InvalidRecord), 3);
        assert_eq!(kind(ErrorKind::InvalidConfig), 3);
        assert_eq!(kind(ErrorKind::InvalidData), all.len() - 8);
        let missing: Vec<usize> = (0..seen.len()).filter(|&i| !seen[i]).collect();
        assert!(missing.is_empty(), "variants without a sample: {missing:?}");
        assert!(
            Error::InvalidHashKey { position: 22 }
                .to_string()
                .contains("character 22")
        );
    }

    /// `name` is the variant's name as written in the source (what
    /// `Debug` prints before any field), a different one for each.
    #[test]
    fn every_variant_is_named_as_written() {
        let mut names = Vec::new();
        for e in samples() {
            let debug = std::format!("{e:?}");
            let written = debug
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default();
            assert_eq!(e.name(), written);
            assert!(!names.contains(&e.name()), "{} twice", e.name());
            names.push(e.name());
        }
    }
}
