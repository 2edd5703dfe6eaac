#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

mod checksum;
mod decode;
mod delivered;
mod encode;
mod error;
mod hash;
mod index;
#[cfg(feature = "lambda")]
pub mod lambda;
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
    AggregatedRecord, Checksum, Deaggregated, Envelope, FixedTable, InRange, KeyTable, Options, OutOfRange,
    PlainReason, Records, Tag, Tags, UserRecord, deaggregate_fixed,
};
#[cfg(feature = "alloc")]
pub use decode::{VecTable, deaggregate};
pub use delivered::{BrokenRecord, DeliveredRecord, KinesisRecord, OnInvalid};
#[cfg(feature = "alloc")]
pub use encode::{Aggregate, RecordAggregator};
pub use encode::{
    Aggregator, DEFAULT_LIMIT, Finished, INDEX_SLOTS_PER_KEY, IndexedAggregator, MAX_LIMIT,
    MAX_PARTITION_KEY_UNITS, MIN_LIMIT, Record, Refused, check_explicit_hash_key, check_partition_key,
};
pub use error::{Error, ErrorKind, Required, Table};
pub use hash::{
    HASH_KEY_MAX_DIGITS, HashKeyRange, effective_hash_key, parse_hash_key, partition_key_hash, route,
    write_hash_key,
};
pub use index::Slot as KeySlot;
#[cfg(feature = "alloc")]
pub use owned::OwnedRecord;
pub use put::{Batch, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES, PutRecordsBatcher};
#[cfg(feature = "alloc")]
pub use shard::{Shard, ShardAggregate, ShardMap, ShardedAggregator};
pub use wire::{DIGEST_LEN, MAGIC, MAX_NESTING, varint_len};

/// What the library and the CLI do with every class of bad input; where
/// we deliberately differ from prost; how much memory each type needs.
#[doc = include_str!("../docs/robustness.md")]
pub mod robustness {}
