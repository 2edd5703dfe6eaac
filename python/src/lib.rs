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

use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard, TryLockError};

use kinesis_agg as ka;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeCheck;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString, PyTuple};

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
const RELEASE_GIL_AT: usize = 64 * 1024;

/// The compatibility module's limit (`MAX_BYTES_PER_RECORD`): the
/// library's default, what a Kinesis record holds by default.
const COMPAT_MAX_SIZE: i64 = ka::DEFAULT_LIMIT as i64;

// ---------------------------------------------------------------- inputs

/// A key or text argument: `str`, or `bytes` holding UTF-8.
fn text<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, str>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return s.to_cow();
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return std::str::from_utf8(b.as_bytes())
            .map(Cow::Borrowed)
            .map_err(|e| PyValueError::new_err(format!("{what} is not UTF-8: {e}")));
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be str or bytes, not {}",
        obj.get_type().name()?
    )))
}

/// A data argument: `bytes`, `bytearray`, `memoryview` (or another
/// buffer), or `str` (encoded as UTF-8).
fn data<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Cow::Borrowed(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(match s.to_cow()? {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        });
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Cow::Owned(b.to_vec()));
    }
    // Any other object with the buffer protocol (memoryview, array, ...).
    match PyMemoryView::from(obj).and_then(|m| m.call_method0("tobytes")) {
        Ok(b) => Ok(Cow::Owned(b.cast::<PyBytes>()?.as_bytes().to_vec())),
        Err(_) => Err(PyTypeError::new_err(format!(
            "data must be bytes, bytearray, memoryview or str, not {}",
            obj.get_type().name()?
        ))),
    }
}

/// An optional explicit hash key: `None`, `str` or `bytes`.
fn optional_text<'a>(obj: Option<&'a Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Cow<'a, str>>> {
    match obj {
        Some(o) if !o.is_none() => text(o, what).map(Some),
        _ => Ok(None),
    }
}

/// The arguments of an add, converted: a record's key, data and explicit
/// hash key.
struct RecordArgs<'a> {
    partition_key: Cow<'a, str>,
    data: Cow<'a, [u8]>,
    explicit_hash_key: Option<Cow<'a, str>>,
}

impl<'a> RecordArgs<'a> {
    fn extract(
        partition_key: &'a Bound<'_, PyAny>,
        data: &'a Bound<'_, PyAny>,
        explicit_hash_key: Option<&'a Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        Ok(RecordArgs {
            partition_key: text(partition_key, "partition_key")?,
            data: self::data(data)?,
            explicit_hash_key: optional_text(explicit_hash_key, "explicit_hash_key")?,
        })
    }

    fn record(&self) -> ka::Record<'_> {
        ka::Record::new(&self.partition_key, &self.data)
            .with_optional_explicit_hash_key(self.explicit_hash_key.as_deref())
    }
}

fn lock<'m, T>(py: Python<'_>, m: &'m Mutex<T>) -> MutexGuard<'m, T> {
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            // A lock is never held across a panic (the code holding it
            // cannot panic), but if it were, the state is still whole.
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            // Another thread holds it: let the interpreter go while waiting,
            // so that thread can finish.
            Err(TryLockError::WouldBlock) => py.detach(std::thread::yield_now),
        }
    }
}

/// Python equality (`a == b`).
fn same(a: &Bound<'_, impl PyTypeCheck>, b: &Bound<'_, impl PyTypeCheck>) -> PyResult<bool> {
    PyAnyMethods::eq(a.as_any(), b.as_any())
}

fn value_error(e: ka::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn deaggregation_error(py: Python<'_>, e: ka::Error) -> PyErr {
    let err = DeaggregationError::new_err(e.to_string());
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail short
    // of memory exhaustion; if it did, the error still carries its message.
    let _ = value.setattr(intern!(py, "offset"), e.offset());
    let _ = value.setattr(intern!(py, "reason"), e.to_string());
    let _ = value.setattr(intern!(py, "sequence_number"), py.None());
    err
}

// ------------------------------------------------------------ aggregation

/// Adds `record`, completing the current aggregate when it cannot take it.
/// Hashing a large aggregate happens with the interpreter released; the
/// aggregator is locked throughout (other threads wait with the
/// interpreter released, see [`lock`]).
fn add_record(
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

fn finish(py: Python<'_>, agg: &mut ka::RecordAggregator) -> Option<ka::Aggregate> {
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
#[pyclass(frozen, module = "kinesis_agg")]
struct Aggregate {
    #[pyo3(get)]
    partition_key: Py<PyString>,
    #[pyo3(get)]
    explicit_hash_key: Option<Py<PyString>>,
    #[pyo3(get)]
    data: Py<PyBytes>,
    #[pyo3(get)]
    user_records: usize,
    #[pyo3(get)]
    shard_id: Option<Py<PyString>>,
}

impl Aggregate {
    fn new(py: Python<'_>, a: &ka::Aggregate, shard_id: Option<&str>) -> Self {
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
    fn put_records_entry<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
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
    fn counted_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.data.bind(py).as_bytes().len() + self.partition_key.bind(py).to_cow()?.len())
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.data.bind(py).as_bytes().len()
    }

    fn __bool__(&self) -> bool {
        true
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
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

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        self.data.bind(py).hash()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Aggregate(partition_key={}, explicit_hash_key={}, user_records={}, size={}{})",
            self.partition_key.bind(py).repr()?,
            match &self.explicit_hash_key {
                Some(e) => e.bind(py).repr()?.to_string(),
                None => "None".into(),
            },
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
struct Aggregator {
    inner: Mutex<ka::RecordAggregator>,
    limit: usize,
}

#[pymethods]
impl Aggregator {
    #[new]
    #[pyo3(signature = (limit = ka::DEFAULT_LIMIT))]
    fn new(limit: usize) -> PyResult<Self> {
        let agg = ka::RecordAggregator::with_limit(limit).map_err(value_error)?;
        Ok(Aggregator {
            inner: Mutex::new(agg),
            limit,
        })
    }

    /// The size limit.
    #[getter]
    fn limit(&self) -> usize {
        self.limit
    }

    /// Adds a user record; returns the completed aggregate when this record
    /// did not fit in the current one (it then starts the next), else None.
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    fn add(
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
    fn flush(&self, py: Python<'_>) -> Option<Aggregate> {
        let done = finish(py, &mut lock(py, &self.inner));
        done.map(|a| self.wrap(py, a))
    }

    /// The exact size in bytes of the current aggregate's data blob (0 when
    /// empty).
    #[getter]
    fn size(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).encoded_len()
    }

    /// The exact size the data blob would have with this record added, or
    /// with it starting a new aggregate when it would not fit; raises
    /// `ValueError` for invalid keys.
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    fn size_with(
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
    fn __len__(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).record_count()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
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
    fn wrap(&self, py: Python<'_>, a: ka::Aggregate) -> Aggregate {
        let out = Aggregate::new(py, &a, None);
        lock(py, &self.inner).recycle(a);
        out
    }
}

// -------------------------------------------------- compatibility classes

/// A completed aggregated record (`aws_kinesis_agg.aggregator.AggRecord`):
/// `get_contents()` gives `(partition_key, explicit_hash_key, data)`, the
/// keys as the first user record had them (str or bytes, the hash key None
/// when it had none). It is immutable, so a copy is itself.
#[pyclass(frozen, module = "kinesis_agg.aggregator", name = "AggRecord")]
struct AggRecord {
    partition_key: Py<PyAny>,
    explicit_hash_key: Option<Py<PyAny>>,
    data: Py<PyBytes>,
    count: usize,
}

#[pymethods]
impl AggRecord {
    /// `(partition_key, explicit_hash_key, data)`.
    fn get_contents<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
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
    fn get_num_user_records(&self) -> usize {
        self.count
    }

    /// Size of the data blob in bytes.
    fn get_size_bytes(&self, py: Python<'_>) -> usize {
        self.data.bind(py).as_bytes().len()
    }

    /// The outer partition key (the first user record's, as given).
    fn get_partition_key(&self, py: Python<'_>) -> Py<PyAny> {
        self.partition_key.clone_ref(py)
    }

    /// The outer explicit hash key (the first user record's), or None.
    fn get_explicit_hash_key(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.explicit_hash_key.as_ref().map(|e| e.clone_ref(py))
    }

    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "AggRecord(partition_key={}, user_records={}, size={})",
            self.partition_key.bind(py).repr()?,
            self.count,
            self.data.bind(py).as_bytes().len()
        ))
    }
}

struct CompatState {
    agg: ka::RecordAggregator,
    /// The first user record's keys as the caller gave them.
    first: Option<(Py<PyAny>, Option<Py<PyAny>>)>,
}

/// The native half of `kinesis_agg.aggregator.RecordAggregator` (the
/// Python class adds the callbacks).
#[pyclass(
    frozen,
    subclass,
    module = "kinesis_agg.aggregator",
    name = "_RecordAggregatorBase"
)]
struct CompatAggregator {
    inner: Mutex<CompatState>,
    /// A limit below the smallest possible aggregate: every add is refused.
    max_size: i64,
    callbacks: std::sync::atomic::AtomicBool,
}

#[pymethods]
impl CompatAggregator {
    #[new]
    #[pyo3(signature = (max_size = COMPAT_MAX_SIZE, *_args, **_kwargs))]
    fn new(max_size: i64, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
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
    fn max_size(&self) -> i64 {
        self.max_size
    }

    fn _set_has_callbacks(&self, on: bool) {
        self.callbacks.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Adds a user record; returns the completed `AggRecord` when this
    /// record did not fit (it then starts the next), else None.
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    fn add_user_record(
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
    fn get_num_user_records(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).agg.record_count()
    }

    /// Size in bytes of the current aggregated record (20, magic and
    /// checksum, when empty).
    fn get_size_bytes(&self, py: Python<'_>) -> usize {
        let n = lock(py, &self.inner).agg.encoded_len();
        if n == 0 {
            ka::MAGIC.len() + ka::DIGEST_LEN
        } else {
            n
        }
    }

    /// Drops the current aggregated record's user records.
    fn clear_record(&self, py: Python<'_>) {
        let mut st = lock(py, &self.inner);
        st.first = None;
        if let Some(a) = st.agg.finish() {
            st.agg.recycle(a);
        }
    }

    /// Completes the current aggregated record and returns it (None when
    /// empty); the aggregator starts empty.
    fn clear_and_get(&self, py: Python<'_>) -> PyResult<Option<Py<AggRecord>>> {
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
    fn agg_record(
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

// ----------------------------------------------------------- deaggregation

/// One user record read from a Kinesis record.
///
/// `aggregated` is False for a plain (not aggregated) record, whose `data`
/// is the whole blob, whose keys are the outer record's and whose
/// `sub_sequence_number` is None. `sequence_number` and `record` (the
/// outer record as delivered, such as a Lambda event record) are set by
/// the event helpers, else None.
#[pyclass(frozen, module = "kinesis_agg")]
struct UserRecord {
    #[pyo3(get)]
    partition_key: Py<PyAny>,
    #[pyo3(get)]
    explicit_hash_key: Option<Py<PyString>>,
    #[pyo3(get)]
    data: Py<PyBytes>,
    #[pyo3(get)]
    sub_sequence_number: Option<u64>,
    #[pyo3(get)]
    aggregated: bool,
    #[pyo3(get)]
    sequence_number: Option<Py<PyAny>>,
    #[pyo3(get)]
    record: Option<Py<PyAny>>,
}

#[pymethods]
impl UserRecord {
    /// The effective hash key: the explicit hash key if set, else the MD5
    /// of the partition key, as a 128-bit integer. `ValueError` when the
    /// explicit hash key is not a valid hash key.
    #[getter]
    fn hash_key(&self, py: Python<'_>) -> PyResult<u128> {
        let pk_obj = self.partition_key.bind(py);
        let pk = text(pk_obj, "partition_key")?;
        match &self.explicit_hash_key {
            Some(e) => ka::parse_hash_key(&e.bind(py).to_cow()?).map_err(value_error),
            None => Ok(ka::partition_key_hash(&pk)),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "UserRecord(partition_key={}, explicit_hash_key={}, sub_sequence_number={}, aggregated={}, data={})",
            self.partition_key.bind(py).repr()?,
            match &self.explicit_hash_key {
                Some(e) => e.bind(py).repr()?.to_string(),
                None => "None".into(),
            },
            self.sub_sequence_number.map_or("None".into(), |n| n.to_string()),
            if self.aggregated { "True" } else { "False" },
            self.data.bind(py).repr()?
        ))
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(o) = other.cast::<UserRecord>() else {
            return Ok(false);
        };
        let o = o.get();
        let opt_eq = |a: &Option<Py<PyString>>, b: &Option<Py<PyString>>| -> PyResult<bool> {
            Ok(match (a, b) {
                (None, None) => true,
                (Some(a), Some(b)) => same(a.bind(py), b.bind(py))?,
                _ => false,
            })
        };
        Ok(same(self.partition_key.bind(py), o.partition_key.bind(py))?
            && opt_eq(&self.explicit_hash_key, &o.explicit_hash_key)?
            && self.data.bind(py).as_bytes() == o.data.bind(py).as_bytes()
            && self.sub_sequence_number == o.sub_sequence_number
            && self.aggregated == o.aggregated)
    }
}

fn options(skip_checksum: bool, strict: bool) -> PyResult<ka::Options> {
    Ok(ka::Options::new().checksum(match (skip_checksum, strict) {
        (false, false) => ka::Checksum::Verify,
        (false, true) => ka::Checksum::Strict,
        (true, false) => ka::Checksum::Skip,
        (true, true) => {
            return Err(PyValueError::new_err(
                "skip_checksum and strict exclude each other: strict makes a wrong checksum an error",
            ));
        }
    }))
}

/// The blob's bytes: borrowed from `bytes`, copied from other buffers.
fn blob_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("the data blob must be bytes-like, not str"));
    }
    data(obj)
}

fn read<'a>(
    py: Python<'_>,
    blob: &'a [u8],
    opts: ka::Options,
) -> PyResult<ka::Deaggregated<'a, ka::VecTable<'a>>> {
    let out = if blob.len() >= RELEASE_GIL_AT {
        py.detach(|| opts.deaggregate(blob))
    } else {
        opts.deaggregate(blob)
    };
    out.map_err(|e| deaggregation_error(py, e))
}

/// Python strings for a key table, found again from a record's key by
/// address (entries lie in the body in table order, so addresses ascend).
struct Keys<'a, 'py> {
    table: &'a [&'a str],
    objs: Vec<Bound<'py, PyString>>,
}

impl<'a, 'py> Keys<'a, 'py> {
    fn new(py: Python<'py>, table: &'a [&'a str]) -> Self {
        Keys {
            table,
            objs: table.iter().map(|k| PyString::new(py, k)).collect(),
        }
    }

    fn get(&self, key: &str) -> PyResult<&Bound<'py, PyString>> {
        let at = key.as_ptr() as usize;
        self.table
            .binary_search_by(|k| (k.as_ptr() as usize).cmp(&at))
            .ok()
            .and_then(|i| self.objs.get(i))
            .ok_or_else(|| PyValueError::new_err("internal: a record's key is not in its table"))
    }
}

/// Reads one Kinesis data blob: a list of `UserRecord` (one, not
/// aggregated, for a plain record). Raises `DeaggregationError` for an
/// aggregated record whose body is broken; nothing is returned then.
#[pyfunction]
#[pyo3(signature = (blob, *, skip_checksum = false, strict = false, partition_key = None, sequence_number = None, record = None))]
fn deaggregate<'py>(
    py: Python<'py>,
    blob: &Bound<'py, PyAny>,
    skip_checksum: bool,
    strict: bool,
    partition_key: Option<&Bound<'py, PyAny>>,
    sequence_number: Option<&Bound<'py, PyAny>>,
    record: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let opts = options(skip_checksum, strict)?;
    let bytes = blob_of(blob)?;
    let seq = sequence_number.map(|s| s.clone().unbind());
    let outer = record.map(|s| s.clone().unbind());
    let clone = |o: &Option<Py<PyAny>>| o.as_ref().map(|o| o.clone_ref(py));
    match read(py, &bytes, opts)? {
        ka::Deaggregated::Plain { .. } => {
            let data = match blob.cast::<PyBytes>() {
                Ok(b) => b.clone().unbind(),
                Err(_) => PyBytes::new(py, &bytes).unbind(),
            };
            let pk = match partition_key {
                Some(p) => p.clone().unbind(),
                None => PyString::intern(py, "").into_any().unbind(),
            };
            let one = UserRecord {
                partition_key: pk,
                explicit_hash_key: None,
                data,
                sub_sequence_number: None,
                aggregated: false,
                sequence_number: seq,
                record: outer,
            };
            PyList::new(py, [Py::new(py, one)?])
        }
        ka::Deaggregated::Aggregated(agg) => {
            let pks = Keys::new(py, agg.partition_keys());
            let ehks = Keys::new(py, agg.explicit_hash_keys());
            let list = PyList::empty(py);
            for u in agg.records() {
                let r = UserRecord {
                    partition_key: pks.get(u.partition_key)?.clone().into_any().unbind(),
                    explicit_hash_key: match u.explicit_hash_key {
                        Some(e) => Some(ehks.get(e)?.clone().unbind()),
                        None => None,
                    },
                    data: PyBytes::new(py, u.data).unbind(),
                    sub_sequence_number: Some(u.sub_sequence_number),
                    aggregated: true,
                    sequence_number: clone(&seq),
                    record: clone(&outer),
                };
                list.append(Py::new(py, r)?)?;
            }
            Ok(list)
        }
    }
}

/// The compatibility deaggregator's core: the user records of one blob as
/// dictionaries of the reference module's shape, or None for a plain
/// record (passed through by the caller).
///
/// Each is `{'kinesis': {**kinesis_base, 'explicitHashKey', 'partitionKey',
/// 'subSequenceNumber', 'aggregated': True, 'data': base64 bytes
/// [, 'recordId']}, **outer_base}`.
#[pyfunction]
#[pyo3(signature = (blob, kinesis_base, outer_base, record_id = None, skip_checksum = false, strict = false))]
fn _lambda_dicts<'py>(
    py: Python<'py>,
    blob: &Bound<'py, PyAny>,
    kinesis_base: &Bound<'py, PyDict>,
    outer_base: &Bound<'py, PyDict>,
    record_id: Option<&Bound<'py, PyAny>>,
    skip_checksum: bool,
    strict: bool,
) -> PyResult<Option<Bound<'py, PyList>>> {
    use base64::Engine as _;
    let opts = options(skip_checksum, strict)?;
    let bytes = blob_of(blob)?;
    let agg = match read(py, &bytes, opts)? {
        ka::Deaggregated::Plain { .. } => return Ok(None),
        ka::Deaggregated::Aggregated(agg) => agg,
    };
    let pks = Keys::new(py, agg.partition_keys());
    let ehks = Keys::new(py, agg.explicit_hash_keys());
    let (k_kinesis, k_ehk, k_pk, k_sub, k_agg, k_data, k_rid) = (
        intern!(py, "kinesis"),
        intern!(py, "explicitHashKey"),
        intern!(py, "partitionKey"),
        intern!(py, "subSequenceNumber"),
        intern!(py, "aggregated"),
        intern!(py, "data"),
        intern!(py, "recordId"),
    );
    let none = py.None().into_bound(py);
    // Templates with every key already in place and in the reference's
    // order: copying one and replacing values never resizes a dict.
    let k_template = kinesis_base.copy()?;
    k_template.set_item(k_ehk, &none)?;
    k_template.set_item(k_pk, &none)?;
    k_template.set_item(k_sub, &none)?;
    k_template.set_item(k_agg, true)?;
    k_template.set_item(k_data, &none)?;
    if let Some(rid) = record_id {
        k_template.set_item(k_rid, rid)?;
    }
    let d_template = PyDict::new(py);
    d_template.set_item(k_kinesis, &none)?;
    d_template.update(outer_base.as_mapping())?;
    let list = PyList::empty(py);
    let mut b64 = Vec::new();
    for u in agg.records() {
        let k = k_template.copy()?;
        if let Some(e) = u.explicit_hash_key {
            k.set_item(k_ehk, ehks.get(e)?)?;
        }
        k.set_item(k_pk, pks.get(u.partition_key)?)?;
        k.set_item(k_sub, u.sub_sequence_number)?;
        b64.clear();
        b64.resize(base64::encoded_len(u.data.len(), true).unwrap_or(0), 0);
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(u.data, &mut b64)
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        k.set_item(k_data, PyBytes::new(py, &b64[..n]))?;
        let d = d_template.copy()?;
        d.set_item(k_kinesis, k)?;
        list.append(d)?;
    }
    Ok(Some(list))
}

/// Decodes standard base64 (`str` or bytes-like; padding required, no
/// whitespace), as Lambda delivers record data. `ValueError` names the
/// first bad byte. Large inputs are decoded with the interpreter released.
#[pyfunction]
fn _b64decode<'py>(py: Python<'py>, text: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    use base64::Engine as _;
    let input = data(text)?;
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut out = vec![0u8; base64::decoded_len_estimate(input.len())];
    let decoded = if input.len() >= RELEASE_GIL_AT {
        py.detach(|| engine.decode_slice(&input, &mut out))
    } else {
        engine.decode_slice(&input, &mut out)
    };
    let n = decoded.map_err(|e| PyValueError::new_err(format!("record data is not base64: {e}")))?;
    Ok(PyBytes::new(py, &out[..n]))
}

// ------------------------------------------------------- hash keys, shards

/// The MD5 of the partition key's UTF-8 bytes as a 128-bit integer: the
/// hash key Kinesis routes a record by when it has no explicit hash key.
#[pyfunction]
fn partition_key_hash(partition_key: &Bound<'_, PyAny>) -> PyResult<u128> {
    Ok(ka::partition_key_hash(&text(partition_key, "partition_key")?))
}

/// A record's effective hash key: its explicit hash key (a decimal string)
/// if given, else `partition_key_hash(partition_key)`.
#[pyfunction]
#[pyo3(signature = (partition_key, explicit_hash_key = None))]
fn effective_hash_key(
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
struct ShardMap {
    map: ka::ShardMap,
}

fn hash_key_of(obj: &Bound<'_, PyAny>) -> PyResult<u128> {
    if let Ok(s) = obj.cast::<PyString>() {
        return ka::parse_hash_key(&s.to_cow()?).map_err(value_error);
    }
    obj.extract::<u128>()
        .map_err(|_| PyValueError::new_err("a hash key must be an int or a decimal string in 0..2**128"))
}

#[pymethods]
impl ShardMap {
    #[new]
    fn new(shards: &Bound<'_, PyAny>) -> PyResult<Self> {
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
    fn from_list_shards(response: &Bound<'_, PyAny>) -> PyResult<Self> {
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
    fn route(&self, hash_key: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        Ok(self.map.route(hash_key_of(hash_key)?).map(|s| s.id.clone()))
    }

    /// The id of the shard a record with these keys goes to.
    #[pyo3(signature = (partition_key, explicit_hash_key = None))]
    fn shard_for(
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
    fn shards(&self) -> Vec<(String, u128, u128)> {
        self.map
            .shards()
            .iter()
            .map(|s| (s.id.clone(), s.range.start, s.range.end))
            .collect()
    }

    fn __len__(&self) -> usize {
        self.map.shards().len()
    }
}

/// Aggregates per shard, so that every user record of an aggregate
/// belongs to the shard the aggregate is routed to (the KCL drops a whole
/// aggregate when one of its records does not). Each aggregate is put
/// with its `explicit_hash_key`, which routes it to its shard.
#[pyclass(frozen, module = "kinesis_agg")]
struct ShardedAggregator {
    inner: Mutex<ka::ShardedAggregator>,
}

#[pymethods]
impl ShardedAggregator {
    #[new]
    #[pyo3(signature = (shard_map, limit = ka::DEFAULT_LIMIT))]
    fn new(shard_map: &Bound<'_, ShardMap>, limit: usize) -> PyResult<Self> {
        let agg =
            ka::ShardedAggregator::with_limit(shard_map.get().map.clone(), limit).map_err(value_error)?;
        Ok(ShardedAggregator {
            inner: Mutex::new(agg),
        })
    }

    /// Adds a user record; returns the aggregates it completed (usually
    /// none, or the one of its shard that it did not fit in).
    #[pyo3(signature = (partition_key, data, explicit_hash_key = None))]
    fn add(
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
    fn flush(&self, py: Python<'_>) -> Vec<Aggregate> {
        let done = lock(py, &self.inner).finish_all();
        self.wrap(py, done)
    }

    /// Completes the aggregate that has waited longest, or None.
    fn flush_oldest(&self, py: Python<'_>) -> Option<Aggregate> {
        let done = lock(py, &self.inner).finish_oldest();
        self.wrap(py, done.into_iter().collect()).pop()
    }

    /// Bytes buffered in unfinished aggregates.
    #[getter]
    fn buffered_bytes(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).buffered_bytes()
    }

    /// Number of user records in unfinished aggregates.
    fn __len__(&self, py: Python<'_>) -> usize {
        lock(py, &self.inner).record_count()
    }
}

impl ShardedAggregator {
    fn wrap(&self, py: Python<'_>, done: Vec<ka::ShardAggregate>) -> Vec<Aggregate> {
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
    m.add_function(wrap_pyfunction!(deaggregate, m)?)?;
    m.add_function(wrap_pyfunction!(_lambda_dicts, m)?)?;
    m.add_function(wrap_pyfunction!(_b64decode, m)?)?;
    m.add_function(wrap_pyfunction!(partition_key_hash, m)?)?;
    m.add_function(wrap_pyfunction!(effective_hash_key, m)?)?;
    Ok(())
}
