#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(feature = "api")]
pub mod api;
#[cfg(feature = "b64")]
pub mod b64;
#[cfg(feature = "aws-sdk")]
mod backoff;
mod checksum;
mod decode;
mod delivered;
mod encode;
mod error;
mod hash;
mod index;
#[cfg(feature = "alloc")]
mod keycache;
#[cfg(feature = "lambda")]
pub mod lambda;
mod limits;
#[cfg(feature = "alloc")]
mod owned;
#[cfg(feature = "producer")]
pub mod producer;
mod put;
#[cfg(feature = "aws-sdk")]
pub mod sdk;
#[cfg(feature = "alloc")]
mod shard;
mod wire;

pub use decode::{
    AggregatedRecord, Checksum, Deaggregated, Envelope, FixedTable, InRange, IndexedRecords, KeyIndices,
    KeyTable, Options, OutOfRange, PlainReason, Records, Tag, Tags, UserRecord, Verified, deaggregate_fixed,
};
#[cfg(feature = "alloc")]
pub use decode::{VecTable, deaggregate};
pub use delivered::{BrokenRecord, DeliveredRecord, KinesisRecord, OnInvalid};
#[cfg(feature = "alloc")]
pub use delivered::{try_for_each_user_record_of, user_records_of};
#[cfg(feature = "alloc")]
pub use encode::{Aggregate, Digested, RecordAggregator, Undigested, UndigestedAggregate};
pub use encode::{
    Aggregator, BufferAggregator, Finished, IndexedAggregator, Record, Refused, check_explicit_hash_key,
    check_partition_key,
};
pub use error::{Error, ErrorKind, Required, Table};
pub use hash::{HashKeyRange, effective_hash_key, parse_hash_key, partition_key_hash, route, write_hash_key};
pub use index::{FixedIndex, Slot as KeySlot, Slots as KeyIndex};
#[cfg(feature = "alloc")]
pub use keycache::HashKeyCache;
/// How many MD5s run side by side when many blobs are verified or many
/// aggregates digested together ([`Options::verify_into`],
/// [`Aggregate::digest_all`]): 8 on every x86-64 (two SSE2 vectors, or one
/// AVX2 vector with `RUSTFLAGS="-C target-feature=+avx2"`) and aarch64
/// (NEON), 16 with AVX-512 (`-C target-cpu=native` on a processor that has
/// it), 8 on WebAssembly with `simd128` (two 128-bit vectors); 1 on bare
/// metal, which keeps the compact single-stream code, and on WebAssembly
/// without `simd128`, where lanes of scalars are no faster.
pub const MD5_LANES: usize = checksum::LANES;
pub use limits::{
    DEFAULT_LIMIT, DIGEST_LEN, HASH_KEY_MAX_DIGITS, INDEX_SLOTS_PER_KEY, MAGIC, MAX_LIMIT,
    MAX_PARTITION_KEY_UNITS, MIN_LIMIT, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES,
    SHARD_BYTES_PER_SECOND, SHARD_RECORDS_PER_SECOND,
};
#[cfg(feature = "alloc")]
pub use owned::OwnedRecord;
pub use put::{Batch, PutRecordsBatcher};
#[cfg(feature = "alloc")]
pub use shard::{Inserted, ListedShard, Shard, ShardAggregate, ShardMap, ShardedAggregator};
