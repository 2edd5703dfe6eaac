//! The native module of the `kinesis-agg` Python package,
//! `kinesis_agg._native`: the library's aggregators, reader and hash keys
//! as Python classes and functions.
//!
//! This crate only binds. The Python package around it holds the parts
//! that Python does better (the compatibility module's classes, threads,
//! boto3 calls). It forbids `unsafe` like the library: the FFI glue the
//! interpreter needs (module init, method tables) lives inside PyO3 and
//! its macros, which this crate does not write.
//!
//! Locking: every stateful object keeps its Rust state in a `Mutex` (the
//! classes are `frozen`, so Python threads may share them). No Python code
//! runs while a lock is held; the holder may release the interpreter while
//! it hashes a large aggregate, and a thread that finds the lock taken
//! waits with the interpreter released, so the holder can always finish.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use kinesis_agg as ka;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

mod aggregate;
mod compat;
mod convert;
mod put;
mod read;
mod shards;

use aggregate::{Aggregate, Aggregator};
use compat::{AggRecord, CompatAggregator};
use put::PutRecordsBatcher;
use read::{_b64decode, _lambda_dicts, UserRecord, deaggregate, deaggregate_many};
use shards::{ShardMap, ShardedAggregator, effective_hash_key, partition_key_hash};

pyo3::create_exception!(
    kinesis_agg,
    DeaggregationError,
    PyValueError,
    "An aggregated record whose checksum is right but whose body breaks the format.\n\n\
     `offset` is the byte offset in the body where the first violation was found\n\
     (None when the error has no position) and `reason` says what it is."
);

/// Blobs and aggregates at least this long are hashed with the
/// interpreter released, so other Python threads run meanwhile.
pub(crate) const RELEASE_GIL_AT: usize = 64 * 1024;

/// The compatibility module's limit (`MAX_BYTES_PER_RECORD`): the
/// library's default, what a Kinesis record holds by default.
pub(crate) const COMPAT_MAX_SIZE: i64 = ka::DEFAULT_LIMIT as i64;

// ------------------------------------------------------------------ module

/// The native core of the `kinesis_agg` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("MAGIC", PyBytes::new(py, &ka::MAGIC))?;
    m.add("DIGEST_SIZE", ka::DIGEST_LEN)?;
    m.add("DEFAULT_LIMIT", ka::DEFAULT_LIMIT)?;
    m.add("MAX_LIMIT", ka::MAX_LIMIT)?;
    m.add("MIN_LIMIT", ka::MIN_LIMIT)?;
    m.add("PUT_RECORDS_MAX_ENTRIES", ka::PUT_RECORDS_MAX_ENTRIES)?;
    m.add("PUT_RECORDS_MAX_BYTES", ka::PUT_RECORDS_MAX_BYTES)?;
    m.add("DeaggregationError", py.get_type::<DeaggregationError>())?;
    m.add_class::<Aggregate>()?;
    m.add_class::<Aggregator>()?;
    m.add_class::<AggRecord>()?;
    m.add_class::<CompatAggregator>()?;
    m.add_class::<UserRecord>()?;
    m.add_class::<ShardMap>()?;
    m.add_class::<ShardedAggregator>()?;
    m.add_class::<PutRecordsBatcher>()?;
    m.add_function(wrap_pyfunction!(deaggregate, m)?)?;
    m.add_function(wrap_pyfunction!(deaggregate_many, m)?)?;
    m.add_function(wrap_pyfunction!(_lambda_dicts, m)?)?;
    m.add_function(wrap_pyfunction!(_b64decode, m)?)?;
    m.add_function(wrap_pyfunction!(partition_key_hash, m)?)?;
    m.add_function(wrap_pyfunction!(effective_hash_key, m)?)?;
    Ok(())
}
