//! Packing PutRecords calls within the API's limits, for the Python
//! `put_all`: the library's batcher.

use kinesis_agg as ka;
use pyo3::prelude::*;

/// Packs entries, in order, into PutRecords calls of at most
/// `max_entries` entries and `max_bytes` bytes (data plus partition keys;
/// the API's limits by default): `push(size)` answers whether the entry
/// starts a new call, whose entries must be sent first.
#[pyclass(module = "kinesis_agg")]
pub(crate) struct PutRecordsBatcher {
    inner: ka::PutRecordsBatcher,
}

#[pymethods]
impl PutRecordsBatcher {
    #[new]
    #[pyo3(signature = (max_entries = ka::PUT_RECORDS_MAX_ENTRIES, max_bytes = ka::PUT_RECORDS_MAX_BYTES))]
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        PutRecordsBatcher {
            inner: ka::PutRecordsBatcher::with_limits(max_entries, max_bytes),
        }
    }

    /// Counts an entry of `size` bytes; `True` when the call packed so far
    /// must be sent before it (it starts the next one).
    fn push(&mut self, size: usize) -> bool {
        self.inner.push(size) == ka::Batch::SendFirst
    }

    /// Entries in the call being packed.
    #[getter]
    fn entries(&self) -> usize {
        self.inner.entries()
    }

    /// Bytes in the call being packed.
    #[getter]
    fn bytes(&self) -> usize {
        self.inner.bytes()
    }

    /// Starts over with an empty call.
    fn clear(&mut self) {
        self.inner.clear();
    }
}
