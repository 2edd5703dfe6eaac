//! The format's and the Kinesis API's numbers, in one place.
//!
//! Every other module takes its limits from here, and this module takes
//! nothing from any other: the error type's messages, the aggregators'
//! checks, the producer's defaults, the CLI's flags and the bindings all
//! name these constants rather than writing a number again.

/// The four magic bytes that start every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// Length of the MD5 trailer.
pub const DIGEST_LEN: usize = 16;

/// The size limit used unless another is asked for: 1 MiB, what a Kinesis
/// record may hold by default (data blob plus outer partition key), and so
/// also the largest user record a stream takes by default.
pub const DEFAULT_LIMIT: usize = 1_048_576;

/// The largest limit accepted: 10 MiB, what a stream configured for large
/// records accepts.
pub const MAX_LIMIT: usize = 10_485_760;

/// The smallest limit accepted: the size of the smallest aggregate (one
/// record with a one-byte partition key and empty data, 29 bytes) plus its
/// one-byte outer partition key.
pub const MIN_LIMIT: usize = 30;

/// Longest partition key, in UTF-16 code units.
pub const MAX_PARTITION_KEY_UNITS: usize = 256;

/// Longest decimal hash key: 2^128-1 has 39 digits.
pub const HASH_KEY_MAX_DIGITS: usize = 39;

/// PutRecords accepts at most this many entries per call.
pub const PUT_RECORDS_MAX_ENTRIES: usize = 500;

/// PutRecords accepts at most this many bytes per call, counting each
/// entry's data and partition key (UTF-8 bytes) as Kinesis does.
pub const PUT_RECORDS_MAX_BYTES: usize = 5 * 1024 * 1024;

/// What one shard takes in a second: bytes (data plus partition keys).
pub const SHARD_BYTES_PER_SECOND: usize = 1_048_576;

/// What one shard takes in a second: Kinesis records.
pub const SHARD_RECORDS_PER_SECOND: usize = 1_000;

/// Slots of a caller's key index per key it holds (one partition key and
/// one explicit hash key, four slots each): an index of `n` slots takes
/// `n / INDEX_SLOTS_PER_KEY` keys of each table.
pub const INDEX_SLOTS_PER_KEY: usize = 8;

/// Keys of each table an aggregator's index may number: table indices stay
/// below the bit that marks an explicit hash key's slot.
pub(crate) const MAX_INDEX_KEYS: usize = 1 << 28;

/// Deepest nesting of groups and messages the reader accepts, as in
/// Google's parsers (their default recursion limit is 100).
pub(crate) const MAX_NESTING: usize = 100;
