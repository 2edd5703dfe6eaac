//! The modern aggregator and its aggregates.

use crate::RELEASE_GIL_AT;
use crate::convert::{RecordArgs, lock, repr_optional, same, value_error};
use std::sync::Mutex;

use kinesis_agg as ka;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

/// Adds `record`, completing the current aggregate when it cannot take it.
/// Hashing a large aggregate happens with the interpreter released; the
/// aggregator is locked throughout (other threads wait with the
/// interpreter released, see [`lock`]).
pub(crate) fn add_record(
    py: Python<'_>,
    agg: &mut ka::RecordAggregator,
    record: ka::Record<'_>,
) -> Result<Option<ka::Aggregate>, ka::Error> {
    match agg.try_add(record) {
        Ok(()) => Ok(None),
        Err(r) if r.error.kind() == ka::ErrorKind::Full => {
            let done = finish(py, agg);
            agg.try_add(record).map_err(|r| r.error)?;
            Ok(done)
        }
        Err(r) => Err(r.error),
    }
}

pub(crate) fn finish(py: Python<'_>, agg: &mut ka::RecordAggregator) -> Option<ka::Aggregate> {
    if agg.encoded_len() >= RELEASE_GIL_AT {
        py.detach(|| agg.finish())
    } else {
        agg.finish()
    }
}

/// A completed aggregate: one Kinesis record holding many user records.
///
/// `data` is the record's data blob; `partition_key` and
/// `explicit_hash_key` (None when unset) are the keys to put it with;
/// `shard_id` is the shard it was aggregated for (shard-aware aggregation
/// only, else None).
#[pyclass(frozen, get_all, module = "kinesis_agg")]
pub(crate) struct Aggregate {
    pub(crate) partition_key: Py<PyString>,
    pub(crate) explicit_hash_key: Option<Py<PyString>>,
    pub(crate) data: Py<PyBytes>,
    pub(crate) user_records: usize,
    pub(crate) shard_id: Option<Py<PyString>>,
}

impl Aggregate {
    pub(crate) fn new(py: Python<'_>, a: &ka::Aggregate, shard_id: Option<&str>) -> Self {
        Aggregate {
            partition_key: PyString::new(py, a.partition_key()).unbind(),
            explicit_hash_key: a.explicit_hash_key().map(|e| PyString::new(py, e).unbind()),
            data: PyBytes::new(py, a.data()).unbind(),
            user_records: a.record_count(),
            shard_id: shard_id.map(|s| PyString::new(py, s).unbind()),
        }
    }
}

#[pymethods]
impl Aggregate {
    /// The entry `put_records` takes: `Data`, `PartitionKey` and, when
    /// set, `ExplicitHashKey`.
    pub(crate) fn put_records_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item(intern!(py, "Data"), self.data.bind(py))?;
        d.set_item(intern!(py, "PartitionKey"), self.partition_key.bind(py))?;
        if let Some(e) = &self.explicit_hash_key {
            d.set_item(intern!(py, "ExplicitHashKey"), e.bind(py))?;
        }
        Ok(d)
    }

    /// What Kinesis counts against its record size limit: the data blob
    /// plus the partition key's UTF-8 bytes.
    #[getter]
    pub(crate) fn counted_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.data.bind(py).as_bytes().len() + self.partition_key.bind(py).to_cow()?.len())
    }

    pub(crate) fn __len__(&self, py: Python<'_>) -> usize {
        self.data.bind(py).as_bytes().len()
    }

    pub(crate) fn __bool__(&self) -> bool {
        true
    }

    pub(crate) fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(o) = other.cast::<Aggregate>() else {
            return Ok(false);
        };
        let o = o.get();
        Ok(self.data.bind(py).as_bytes() == o.data.bind(py).as_bytes()
            && same(self.partition_key.bind(py), o.partition_key.bind(py))?
            && match (&self.explicit_hash_key, &o.explicit_hash_key) {
                (None, None) => true,
                (Some(a), Some(b)) => same(a.bind(py), b.bind(py))?,
                _ => false,
            }
            && match (&self.shard_id, &o.shard_id) {
                (None, None) => true,
                (Some(a), Some(b)) => same(a.bind(py), b.bind(py))?,
                _ => false,
            })
    }

    pub(crate) fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.data.bind(py).hash()
    }

    pub(crate) fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Aggregate(partition_key={}, explicit_hash_key={}, user_records={}, size={}{})",
            self.partition_key.bind(py).repr()?,
            repr_optional(py, &self.explicit_hash_key)?,
            self.user_records,
            self.data.bind(py).as_bytes().len(),
            match &self.shard_id {
                Some(s) => format!(", shard_id={}", s.bind(py).repr()?),
                None => String::new(),
            }
        ))
    }
}

/// Aggregates user records into Kinesis records of at most `limit` bytes
/// (the data blob plus the outer partition key, as Kinesis counts them;
/// 30 to 10,485,760, default 1,048,576).
///
/// `add` returns the completed aggregate when the next record does not
/// fit, and that record starts the next one; `flush` completes the
/// current one. A record that cannot fit even alone, or with invalid keys,
/// raises `ValueError` and changes nothing. Safe to share between threads.
#[pyclass(frozen, module = "kinesis_agg")]
pub(crate) struct Aggregator {
    pub(crate) inner: Mutex<ka::RecordAggregator>,
    pub(crate) limit: usize,
}

#[pymethods]
impl Aggregator {
    #[new]
    #[pyo3(signature = (limit = ka::DEFAULT_LIMIT))]
    pub(crate) fn new(limit: usize) -> PyResult<Self> {
        let agg = ka::RecordAggregator::with_limit(limit).map_err(value_error)?;
        Ok(Aggregator {
            inner: Mutex::new(agg),
            limit,
        })
    }

    /// The size limit.
    #[getter]
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Adds a user record; returns the completed aggregate when this record
    /// did not fit in the current one (it then starts the next), else None.
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    pub(crate) fn add(
        &self,
        py: Python<'_>,
        partition_key: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        explicit_hash_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Aggregate>> {
        let args = RecordArgs::extract(partition_key, data, explicit_hash_key)?;
        let record = args.record();
        let done = {
            let mut agg = lock(py, &self.inner);
            add_record(py, &mut agg, record).map_err(value_error)?
        };
        Ok(done.map(|a| self.wrap(py, a)))
    }

    /// Completes the current aggregate and returns it (None when empty).
    pub(crate) fn flush(&self, py: Python<'_>) -> Option<Aggregate> {
        let done = finish(py, &mut lock(py, &self.inner));
        done.map(|a| self.wrap(py, a))
    }

    /// The exact size in bytes of the current aggregate's data blob (0 when
    /// empty).
    #[getter]
    pub(crate) fn size(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).encoded_len()
    }

    /// The exact size the data blob would have with this record added, or
    /// with it starting a new aggregate when it would not fit; raises
    /// `ValueError` for invalid keys.
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    pub(crate) fn size_with(
        &self,
        py: Python<'_>,
        partition_key: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        explicit_hash_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let args = RecordArgs::extract(partition_key, data, explicit_hash_key)?;
        let record = args.record();
        lock(py, &self.inner)
            .encoded_len_with(&record)
            .map_err(value_error)
    }

    /// Number of user records in the current aggregate.
    pub(crate) fn __len__(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).record_count()
    }

    pub(crate) fn __repr__(&self, py: Python<'_>) -> String {
        let agg = lock(py, &self.inner);
        format!(
            "Aggregator(limit={}, user_records={}, size={})",
            self.limit,
            agg.record_count(),
            agg.encoded_len()
        )
    }
}

impl Aggregator {
    pub(crate) fn wrap(&self, py: Python<'_>, a: ka::Aggregate) -> Aggregate {
        let out = Aggregate::new(py, &a, None);
        lock(py, &self.inner).recycle(a);
        out
    }
}
