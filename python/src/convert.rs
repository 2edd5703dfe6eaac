//! Python arguments as the library's types: keys, data, records.

use crate::DeaggregationError;
use std::borrow::Cow;
use std::sync::{Mutex, MutexGuard, TryLockError};

use kinesis_agg as ka;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeCheck;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString};

/// A key or text argument: `str`, or `bytes` holding UTF-8.
pub(crate) fn text<'a>(obj: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, str>> {
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
pub(crate) fn data<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
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
pub(crate) fn optional_text<'a>(
    obj: Option<&'a Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<Cow<'a, str>>> {
    match obj {
        Some(o) if !o.is_none() => text(o, what).map(Some),
        _ => Ok(None),
    }
}

/// The arguments of an add, converted: a record's key, data and explicit
/// hash key.
pub(crate) struct RecordArgs<'a> {
    pub(crate) partition_key: Cow<'a, str>,
    pub(crate) data: Cow<'a, [u8]>,
    pub(crate) explicit_hash_key: Option<Cow<'a, str>>,
}

impl<'a> RecordArgs<'a> {
    pub(crate) fn extract(
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

    pub(crate) fn record(&self) -> ka::Record<'_> {
        ka::Record::new(&self.partition_key, &self.data)
            .with_optional_explicit_hash_key(self.explicit_hash_key.as_deref())
    }
}

pub(crate) fn lock<'m, T>(py: Python<'_>, m: &'m Mutex<T>) -> MutexGuard<'m, T> {
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
pub(crate) fn same(a: &Bound<'_, impl PyTypeCheck>, b: &Bound<'_, impl PyTypeCheck>) -> PyResult<bool> {
    PyAnyMethods::eq(a.as_any(), b.as_any())
}

/// `repr()` of an optional string, `None` when absent.
pub(crate) fn repr_optional(py: Python<'_>, s: &Option<Py<PyString>>) -> PyResult<String> {
    Ok(match s {
        Some(e) => e.bind(py).repr()?.to_string(),
        None => "None".into(),
    })
}

pub(crate) fn value_error(e: ka::Error) -> PyErr {
    PyValueError::new_err(e.to_string())
}

pub(crate) fn deaggregation_error(py: Python<'_>, e: ka::Error) -> PyErr {
    let err = DeaggregationError::new_err(e.to_string());
    let value = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail short
    // of memory exhaustion; if it did, the error still carries its message.
    let _ = value.setattr(intern!(py, "offset"), e.offset());
    let _ = value.setattr(intern!(py, "reason"), e.to_string());
    let _ = value.setattr(intern!(py, "sequence_number"), py.None());
    err
}
