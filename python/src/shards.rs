//! Hash keys, shard maps and shard-aware aggregation.

use crate::aggregate::Aggregate;
use crate::convert::{RecordArgs, lock, optional_text, text, value_error};
use std::sync::Mutex;

use kinesis_agg as ka;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// The MD5 of the partition key's UTF-8 bytes as a 128-bit integer: the
/// hash key Kinesis routes a record by when it has no explicit hash key.
#[pyfunction]
pub(crate) fn partition_key_hash(partition_key: &Bound<'_, PyAny>) -> PyResult<u128> {
    Ok(ka::partition_key_hash(&text(partition_key, "partition_key")?))
}

/// A record's effective hash key: its explicit hash key (a decimal string)
/// if given, else `partition_key_hash(partition_key)`.
#[pyfunction]
#[pyo3(signature = (partition_key, explicit_hash_key = None))]
pub(crate) fn effective_hash_key(
    partition_key: &Bound<'_, PyAny>,
    explicit_hash_key: Option<&Bound<'_, PyAny>>,
) -> PyResult<u128> {
    let pk = text(partition_key, "partition_key")?;
    let ehk = optional_text(explicit_hash_key, "explicit_hash_key")?;
    ka::effective_hash_key(&pk, ehk.as_deref()).map_err(value_error)
}

/// The open shards of a stream, each owning a range of hash keys.
///
/// Build it from `(shard_id, starting_hash_key, ending_hash_key)` triples
/// (ints or decimal strings), or from a boto3 `list_shards` response with
/// `ShardMap.from_list_shards`.
#[pyclass(frozen, module = "kinesis_agg")]
pub(crate) struct ShardMap {
    pub(crate) map: ka::ShardMap,
}

pub(crate) fn hash_key_of(obj: &Bound<'_, PyAny>) -> PyResult<u128> {
    if let Ok(s) = obj.cast::<PyString>() {
        return ka::parse_hash_key(&s.to_cow()?).map_err(value_error);
    }
    obj.extract::<u128>()
        .map_err(|_| PyValueError::new_err("a hash key must be an int or a decimal string in 0..2**128"))
}

#[pymethods]
impl ShardMap {
    #[new]
    pub(crate) fn new(shards: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut list = Vec::new();
        for item in shards.try_iter()? {
            let (id, start, end): (String, Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
            let range = ka::HashKeyRange::new(hash_key_of(&start)?, hash_key_of(&end)?).ok_or_else(|| {
                PyValueError::new_err(format!("shard {id}: its range ends before it starts"))
            })?;
            list.push(ka::Shard { id, range });
        }
        Ok(ShardMap {
            map: ka::ShardMap::new(list).map_err(value_error)?,
        })
    }

    /// The open shards of a boto3 `list_shards` (or `describe_stream`)
    /// response: shards whose `SequenceNumberRange` has an
    /// `EndingSequenceNumber` are closed and left out.
    #[staticmethod]
    pub(crate) fn from_list_shards(response: &Bound<'_, PyAny>) -> PyResult<Self> {
        let py = response.py();
        let shards = response.get_item(intern!(py, "Shards"))?;
        // The dictionaries' fields, read into owned strings; the library
        // decides which shards are open and how they route.
        let mut listed: Vec<(String, String, String, bool)> = Vec::new();
        for s in shards.try_iter()? {
            let s = s?;
            let closed = s
                .get_item(intern!(py, "SequenceNumberRange"))
                .and_then(|seq| seq.get_item(intern!(py, "EndingSequenceNumber")))
                .is_ok_and(|e| !e.is_none());
            let id: String = s.get_item(intern!(py, "ShardId"))?.extract()?;
            let r = s.get_item(intern!(py, "HashKeyRange"))?;
            let start: String = r.get_item(intern!(py, "StartingHashKey"))?.extract()?;
            let end: String = r.get_item(intern!(py, "EndingHashKey"))?.extract()?;
            listed.push((id, start, end, closed));
        }
        let map = ka::ShardMap::from_listed(listed.iter().map(|(id, start, end, closed)| ka::ListedShard {
            shard_id: id,
            starting_hash_key: start,
            ending_hash_key: end,
            closed: *closed,
        }))
        .map_err(value_error)?;
        Ok(ShardMap { map })
    }

    /// The id of the shard owning `hash_key`, or None when no open shard
    /// does.
    pub(crate) fn route(&self, hash_key: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        Ok(self.map.route(hash_key_of(hash_key)?).map(|s| s.id.clone()))
    }

    /// The id of the shard a record with these keys goes to.
    #[pyo3(signature = (partition_key, explicit_hash_key = None))]
    pub(crate) fn shard_for(
        &self,
        partition_key: &Bound<'_, PyAny>,
        explicit_hash_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<String>> {
        let h = effective_hash_key(partition_key, explicit_hash_key)?;
        Ok(self.map.route(h).map(|s| s.id.clone()))
    }

    /// `(shard_id, starting_hash_key, ending_hash_key)` of every shard, in
    /// hash key order.
    #[getter]
    pub(crate) fn shards(&self) -> Vec<(String, u128, u128)> {
        self.map
            .shards()
            .iter()
            .map(|s| (s.id.clone(), s.range.start, s.range.end))
            .collect()
    }

    pub(crate) fn __len__(&self) -> usize {
        self.map.shards().len()
    }
}

/// Aggregates per shard, so that every user record of an aggregate
/// belongs to the shard the aggregate is routed to (the KCL drops a whole
/// aggregate when one of its records does not). Each aggregate is put
/// with its `explicit_hash_key`, which routes it to its shard.
#[pyclass(frozen, module = "kinesis_agg")]
pub(crate) struct ShardedAggregator {
    pub(crate) inner: Mutex<ka::ShardedAggregator>,
}

#[pymethods]
impl ShardedAggregator {
    #[new]
    #[pyo3(signature = (shard_map, limit = ka::DEFAULT_LIMIT))]
    pub(crate) fn new(shard_map: &Bound<'_, ShardMap>, limit: usize) -> PyResult<Self> {
        let agg =
            ka::ShardedAggregator::with_limit(shard_map.get().map.clone(), limit).map_err(value_error)?;
        Ok(ShardedAggregator {
            inner: Mutex::new(agg),
        })
    }

    /// Adds a user record; returns the aggregates it completed (usually
    /// none, or the one of its shard that it did not fit in).
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    pub(crate) fn add(
        &self,
        py: Python<'_>,
        partition_key: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        explicit_hash_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Aggregate>> {
        let args = RecordArgs::extract(partition_key, data, explicit_hash_key)?;
        let record = args.record();
        let done = lock(py, &self.inner).add(record).map_err(value_error)?;
        Ok(self.wrap(py, done))
    }

    /// Completes every shard's aggregate and returns them (oldest first).
    pub(crate) fn flush(&self, py: Python<'_>) -> Vec<Aggregate> {
        let done = lock(py, &self.inner).finish_all();
        self.wrap(py, done)
    }

    /// Completes the aggregate that has waited longest, or None.
    pub(crate) fn flush_oldest(&self, py: Python<'_>) -> Option<Aggregate> {
        let done = lock(py, &self.inner).finish_oldest();
        self.wrap(py, done.into_iter().collect()).pop()
    }

    /// Bytes buffered in unfinished aggregates.
    #[getter]
    pub(crate) fn buffered_bytes(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).buffered_bytes()
    }

    /// Number of user records in unfinished aggregates.
    pub(crate) fn __len__(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).record_count()
    }
}

impl ShardedAggregator {
    pub(crate) fn wrap(&self, py: Python<'_>, done: Vec<ka::ShardAggregate>) -> Vec<Aggregate> {
        let out = done
            .iter()
            .map(|a| Aggregate {
                partition_key: PyString::new(py, a.partition_key()).unbind(),
                explicit_hash_key: Some(PyString::new(py, a.explicit_hash_key()).unbind()),
                data: PyBytes::new(py, a.data()).unbind(),
                user_records: a.record_count(),
                shard_id: Some(PyString::new(py, a.shard_id()).unbind()),
            })
            .collect();
        let mut agg = lock(py, &self.inner);
        for a in done {
            agg.recycle(a);
        }
        out
    }
}
