//! The classes of the compatibility module (`kinesis_agg.aggregator`).

use crate::COMPAT_MAX_SIZE;
use crate::aggregate::{add_record, finish};
use crate::convert::{RecordArgs, lock, value_error};
use std::sync::Mutex;

use kinesis_agg as ka;
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

/// A completed aggregated record (`aws_kinesis_agg.aggregator.AggRecord`):
/// `get_contents()` gives `(partition_key, explicit_hash_key, data)`, the
/// keys as the first user record had them (str or bytes, the hash key None
/// when it had none). It is immutable, so a copy is itself.
#[pyclass(frozen, module = "kinesis_agg.aggregator", name = "AggRecord")]
pub(crate) struct AggRecord {
    pub(crate) partition_key: Py<PyAny>,
    pub(crate) explicit_hash_key: Option<Py<PyAny>>,
    pub(crate) data: Py<PyBytes>,
    pub(crate) count: usize,
}

#[pymethods]
impl AggRecord {
    /// `(partition_key, explicit_hash_key, data)`.
    pub(crate) fn get_contents<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                self.partition_key.bind(py).clone(),
                self.explicit_hash_key
                    .as_ref()
                    .map_or_else(|| py.None().into_bound(py), |e| e.bind(py).clone()),
                self.data.bind(py).clone().into_any(),
            ],
        )
    }

    /// Number of user records.
    pub(crate) fn get_num_user_records(&self) -> usize {
        self.count
    }

    /// Size of the data blob in bytes.
    pub(crate) fn get_size_bytes(&self, py: Python<'_>) -> usize {
        self.data.bind(py).as_bytes().len()
    }

    /// The outer partition key (the first user record's, as given).
    pub(crate) fn get_partition_key(&self, py: Python<'_>) -> Py<PyAny> {
        self.partition_key.clone_ref(py)
    }

    /// The outer explicit hash key (the first user record's), or None.
    pub(crate) fn get_explicit_hash_key(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.explicit_hash_key.as_ref().map(|e| e.clone_ref(py))
    }

    pub(crate) fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    pub(crate) fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    pub(crate) fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "AggRecord(partition_key={}, user_records={}, size={})",
            self.partition_key.bind(py).repr()?,
            self.count,
            self.data.bind(py).as_bytes().len()
        ))
    }
}

pub(crate) struct CompatState {
    pub(crate) agg: ka::RecordAggregator,
    /// The first user record's keys as the caller gave them.
    pub(crate) first: Option<(Py<PyAny>, Option<Py<PyAny>>)>,
}

/// The native half of `kinesis_agg.aggregator.RecordAggregator` (the
/// Python class adds the callbacks).
#[pyclass(
    frozen,
    subclass,
    module = "kinesis_agg.aggregator",
    name = "_RecordAggregatorBase"
)]
pub(crate) struct CompatAggregator {
    pub(crate) inner: Mutex<CompatState>,
    /// A limit below the smallest possible aggregate: every add is refused.
    pub(crate) max_size: i64,
    pub(crate) callbacks: std::sync::atomic::AtomicBool,
}

#[pymethods]
impl CompatAggregator {
    #[new]
    #[pyo3(signature = (max_size = COMPAT_MAX_SIZE, *_args, **_kwargs))]
    pub(crate) fn new(
        max_size: i64,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if max_size > COMPAT_MAX_SIZE {
            return Err(PyValueError::new_err(format!(
                "Invalid max_size {max_size} exceeds maximum value {COMPAT_MAX_SIZE}"
            )));
        }
        let limit = usize::try_from(max_size).unwrap_or(0).max(ka::MIN_LIMIT);
        Ok(CompatAggregator {
            inner: Mutex::new(CompatState {
                agg: ka::RecordAggregator::with_limit(limit).map_err(value_error)?,
                first: None,
            }),
            max_size,
            callbacks: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The size limit given (`max_size`).
    #[getter]
    pub(crate) fn max_size(&self) -> i64 {
        self.max_size
    }

    pub(crate) fn _set_has_callbacks(&self, on: bool) {
        self.callbacks.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Adds a user record; returns the completed `AggRecord` when this
    /// record did not fit (it then starts the next), else None.
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    pub(crate) fn add_user_record(
        slf: &Bound<'_, Self>,
        partition_key: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        explicit_hash_key: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<AggRecord>>> {
        let py = slf.py();
        let this = slf.get();
        let ehk_obj = explicit_hash_key.filter(|e| !e.is_none());
        let args = RecordArgs::extract(partition_key, data, ehk_obj)?;
        if this.max_size < ka::MIN_LIMIT as i64 {
            return Err(PyValueError::new_err(format!(
                "record (partition key {:?}) cannot fit in an aggregated record of max_size {}",
                &*args.partition_key, this.max_size
            )));
        }
        let record = args.record();
        let keys = || {
            (
                partition_key.clone().unbind(),
                ehk_obj.map(|e| e.clone().unbind()),
            )
        };
        let (done, first) = {
            let mut st = lock(py, &this.inner);
            let st = &mut *st;
            match add_record(py, &mut st.agg, record).map_err(value_error)? {
                None => {
                    if st.first.is_none() {
                        st.first = Some(keys());
                    }
                    return Ok(None);
                }
                Some(done) => (done, st.first.replace(keys())),
            }
        };
        let out = Py::new(py, this.agg_record(py, done, first))?;
        if this.callbacks.load(std::sync::atomic::Ordering::Relaxed) {
            slf.call_method1(intern!(py, "_complete"), (out.clone_ref(py),))?;
        }
        Ok(Some(out))
    }

    /// Number of user records in the current aggregated record.
    pub(crate) fn get_num_user_records(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).agg.record_count()
    }

    /// Size in bytes of the current aggregated record (20, magic and
    /// checksum, when empty).
    pub(crate) fn get_size_bytes(&self, py: Python<'_>) -> usize {
        let n = lock(py, &self.inner).agg.encoded_len();
        if n == 0 {
            ka::MAGIC.len() + ka::DIGEST_LEN
        } else {
            n
        }
    }

    /// Drops the current aggregated record's user records.
    pub(crate) fn clear_record(&self, py: Python<'_>) {
        let mut st = lock(py, &self.inner);
        st.first = None;
        if let Some(a) = st.agg.finish() {
            st.agg.recycle(a);
        }
    }

    /// Completes the current aggregated record and returns it (None when
    /// empty); the aggregator starts empty.
    pub(crate) fn clear_and_get(&self, py: Python<'_>) -> PyResult<Option<Py<AggRecord>>> {
        let (done, first) = {
            let mut st = lock(py, &self.inner);
            let st = &mut *st;
            match finish(py, &mut st.agg) {
                None => return Ok(None),
                Some(done) => (done, st.first.take()),
            }
        };
        Py::new(py, self.agg_record(py, done, first)).map(Some)
    }
}

impl CompatAggregator {
    pub(crate) fn agg_record(
        &self,
        py: Python<'_>,
        done: ka::Aggregate,
        first: Option<(Py<PyAny>, Option<Py<PyAny>>)>,
    ) -> AggRecord {
        let (pk, ehk) =
            first.unwrap_or_else(|| (PyString::new(py, done.partition_key()).into_any().unbind(), None));
        let out = AggRecord {
            partition_key: pk,
            explicit_hash_key: ehk,
            data: PyBytes::new(py, done.data()).unbind(),
            count: done.record_count(),
        };
        lock(py, &self.inner).agg.recycle(done);
        out
    }
}
