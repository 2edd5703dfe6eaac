//! Deaggregation: user records, the compatibility module's dictionaries,
//! base64.

use crate::RELEASE_GIL_AT;
use crate::convert::{data, deaggregation_error, repr_optional, same, text, value_error};
use std::borrow::Cow;

use kinesis_agg as ka;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

/// Aggregates of at least this many user records are made into Python
/// objects with the cyclic garbage collector paused ([`GcPause`]).
const PAUSE_GC_AT: usize = 256;

/// Python's cyclic garbage collector paused while a call makes many
/// objects, resumed when it is dropped (on every path out, errors
/// included), and only when it was running before.
///
/// Each dictionary made counts toward the collector's next pass, and each
/// pass walks the young objects and, every so often, every object alive:
/// a Lambda event's 100,000 user records would be walked again and again
/// while they are being made, though none of them can be garbage yet (the
/// records made here hold no cycle). Paused, they are counted all the
/// same and the first collection after the call walks them once.
/// `python/bench.py` (100,000 records in 11 aggregates), the builds with
/// and without this in turn: the compatible reader 1.40-1.45 M records a
/// second against 1.15-1.17 M, `lambda_user_records` 3.38-3.45 M against
/// 2.55-2.77 M (docs/performance.md).
///
/// Nothing that runs while it is paused is the caller's code, and the
/// interpreter is not released meanwhile, so no other thread sees it.
#[derive(Default)]
struct GcPause<'py>(Option<Bound<'py, PyModule>>);

impl<'py> GcPause<'py> {
    /// Pauses the collector before `records` user records are made, if
    /// they are [`PAUSE_GC_AT`] or more, it runs, and this has not paused
    /// it yet.
    fn start(&mut self, py: Python<'py>, records: usize) -> PyResult<()> {
        if records < PAUSE_GC_AT || self.0.is_some() {
            return Ok(());
        }
        let gc = py.import(intern!(py, "gc"))?;
        if gc.call_method0(intern!(py, "isenabled"))?.is_truthy()? {
            gc.call_method0(intern!(py, "disable"))?;
            self.0 = Some(gc);
        }
        Ok(())
    }
}

impl Drop for GcPause<'_> {
    fn drop(&mut self) {
        if let Some(gc) = self.0.take() {
            // gc.enable() cannot fail; were it to, the collector would stay
            // paused, which loses nothing but memory held longer.
            let _ = gc.call_method0(intern!(gc.py(), "enable"));
        }
    }
}

/// One user record read from a Kinesis record.
///
/// `aggregated` is False for a plain (not aggregated) record, whose `data`
/// is the whole blob, whose keys are the outer record's and whose
/// `sub_sequence_number` is None. `sequence_number` and `record` (the
/// outer record as delivered, such as a Lambda event record) are set by
/// the event helpers, else None.
#[pyclass(frozen, get_all, module = "kinesis_agg")]
pub(crate) struct UserRecord {
    pub(crate) partition_key: Py<PyAny>,
    pub(crate) explicit_hash_key: Option<Py<PyString>>,
    pub(crate) data: Py<PyBytes>,
    pub(crate) sub_sequence_number: Option<u64>,
    pub(crate) aggregated: bool,
    pub(crate) sequence_number: Option<Py<PyAny>>,
    pub(crate) record: Option<Py<PyAny>>,
}

#[pymethods]
impl UserRecord {
    /// The effective hash key: the explicit hash key if set, else the MD5
    /// of the partition key, as a 128-bit integer. `ValueError` when the
    /// explicit hash key is not a valid hash key.
    #[getter]
    pub(crate) fn hash_key(&self, py: Python<'_>) -> PyResult<u128> {
        let pk_obj = self.partition_key.bind(py);
        let pk = text(pk_obj, "partition_key")?;
        match &self.explicit_hash_key {
            Some(e) => ka::parse_hash_key(&e.bind(py).to_cow()?).map_err(value_error),
            None => Ok(ka::partition_key_hash(&pk)),
        }
    }

    pub(crate) fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "UserRecord(partition_key={}, explicit_hash_key={}, sub_sequence_number={}, aggregated={}, data={})",
            self.partition_key.bind(py).repr()?,
            repr_optional(py, &self.explicit_hash_key)?,
            self.sub_sequence_number.map_or("None".into(), |n| n.to_string()),
            if self.aggregated { "True" } else { "False" },
            self.data.bind(py).repr()?
        ))
    }

    pub(crate) fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
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

pub(crate) fn options(skip_checksum: bool, strict: bool) -> PyResult<ka::Options> {
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
pub(crate) fn blob_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, [u8]>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("the data blob must be bytes-like, not str"));
    }
    data(obj)
}

pub(crate) fn read<'a>(
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

/// Many blobs' envelopes, their checksums computed side by side (the
/// library's `Options::verify_all`), with the interpreter released when
/// they are large.
pub(crate) fn verify_all<'a>(py: Python<'_>, opts: ka::Options, blobs: &[&'a [u8]]) -> Vec<ka::Verified<'a>> {
    let total: usize = blobs.iter().map(|b| b.len()).sum();
    if total >= RELEASE_GIL_AT {
        py.detach(|| opts.verify_all(blobs))
    } else {
        opts.verify_all(blobs)
    }
}

/// Python strings for an aggregate's key tables, one per entry, handed to
/// each record by the indices its fields give
/// (`Records::with_key_indices`).
pub(crate) struct Keys<'py> {
    pks: Vec<Bound<'py, PyString>>,
    ehks: Vec<Bound<'py, PyString>>,
}

impl<'py> Keys<'py> {
    pub(crate) fn new(py: Python<'py>, agg: &ka::AggregatedRecord<'_, ka::VecTable<'_>>) -> Self {
        let strings = |table: &[&str]| table.iter().map(|k| PyString::new(py, k)).collect();
        Keys {
            pks: strings(agg.partition_keys()),
            ehks: strings(agg.explicit_hash_keys()),
        }
    }

    /// The string of a partition key, by its index in the table.
    pub(crate) fn pk(&self, index: usize) -> PyResult<&Bound<'py, PyString>> {
        found(self.pks.get(index))
    }

    /// The string of an explicit hash key, by its index in the table.
    pub(crate) fn ehk(&self, index: usize) -> PyResult<&Bound<'py, PyString>> {
        found(self.ehks.get(index))
    }
}

fn found<'a, 'py>(s: Option<&'a Bound<'py, PyString>>) -> PyResult<&'a Bound<'py, PyString>> {
    // The library gives every record's key an index in its table.
    s.ok_or_else(|| PyValueError::new_err("internal: a record's key is not in its table"))
}

/// Reads one Kinesis data blob: a list of `UserRecord` (one, not
/// aggregated, for a plain record). Raises `DeaggregationError` for an
/// aggregated record whose body is broken; nothing is returned then.
#[pyfunction]
#[pyo3(signature = (blob, *, skip_checksum = false, strict = false, partition_key = None, sequence_number = None, record = None))]
pub(crate) fn deaggregate<'py>(
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
    let read = read(py, &bytes, opts)?;
    let outer = Outer {
        partition_key,
        sequence_number,
        record,
    };
    user_records(py, read, blob, &bytes, outer, &mut GcPause::default())
}

/// What the caller knows of a blob's Kinesis record, given to each of its
/// user records.
struct Outer<'a, 'py> {
    partition_key: Option<&'a Bound<'py, PyAny>>,
    sequence_number: Option<&'a Bound<'py, PyAny>>,
    record: Option<&'a Bound<'py, PyAny>>,
}

/// The user records of one blob read, as `deaggregate` returns them.
fn user_records<'py>(
    py: Python<'py>,
    read: ka::Deaggregated<'_, ka::VecTable<'_>>,
    blob: &Bound<'py, PyAny>,
    bytes: &[u8],
    given: Outer<'_, 'py>,
    pause: &mut GcPause<'py>,
) -> PyResult<Bound<'py, PyList>> {
    let seq = given.sequence_number.map(|s| s.clone().unbind());
    let outer = given.record.map(|s| s.clone().unbind());
    let clone = |o: &Option<Py<PyAny>>| o.as_ref().map(|o| o.clone_ref(py));
    match read {
        ka::Deaggregated::Plain { .. } => {
            let data = match blob.cast::<PyBytes>() {
                Ok(b) => b.clone().unbind(),
                Err(_) => PyBytes::new(py, bytes).unbind(),
            };
            let pk = match given.partition_key {
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
            pause.start(py, agg.len())?;
            let keys = Keys::new(py, &agg);
            let list = PyList::empty(py);
            for (u, at) in agg.records().with_key_indices() {
                let r = UserRecord {
                    partition_key: keys.pk(at.partition_key)?.clone().into_any().unbind(),
                    explicit_hash_key: match at.explicit_hash_key {
                        Some(i) => Some(keys.ehk(i)?.clone().unbind()),
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

/// Many blobs read together: their checksums verified side by side (the
/// library's `Options::verify_all`, with the interpreter released when
/// they are large), then each read as `deaggregate` reads it alone. Each
/// item of the answer is that blob's list of user records, or the
/// `DeaggregationError` (not raised) of a blob whose body is broken. The
/// optional lists give each blob's outer partition key, sequence number
/// and record, as `deaggregate`'s arguments do.
#[pyfunction]
#[pyo3(signature = (blobs, *, skip_checksum = false, strict = false, partition_keys = None, sequence_numbers = None, records = None))]
pub(crate) fn deaggregate_many<'py>(
    py: Python<'py>,
    blobs: Vec<Bound<'py, PyAny>>,
    skip_checksum: bool,
    strict: bool,
    partition_keys: Option<Vec<Bound<'py, PyAny>>>,
    sequence_numbers: Option<Vec<Bound<'py, PyAny>>>,
    records: Option<Vec<Bound<'py, PyAny>>>,
) -> PyResult<Bound<'py, PyList>> {
    let opts = options(skip_checksum, strict)?;
    for (name, list) in [
        ("partition_keys", &partition_keys),
        ("sequence_numbers", &sequence_numbers),
        ("records", &records),
    ] {
        if list.as_ref().is_some_and(|l| l.len() != blobs.len()) {
            return Err(PyValueError::new_err(format!("{name} must have one item a blob")));
        }
    }
    let bytes: Vec<Cow<'_, [u8]>> = blobs.iter().map(blob_of).collect::<PyResult<_>>()?;
    let slices: Vec<&[u8]> = bytes.iter().map(|b| &b[..]).collect();
    let verified = verify_all(py, opts, &slices);
    // After verify_all, which may release the interpreter.
    let mut pause = GcPause::default();
    let out = PyList::empty(py);
    let nth = |l: &Option<Vec<Bound<'py, PyAny>>>, i: usize| l.as_ref().map(|l| l[i].clone());
    for (i, v) in verified.iter().enumerate() {
        match v.deaggregate() {
            Ok(read) => {
                let (pk, seq, rec) = (
                    nth(&partition_keys, i),
                    nth(&sequence_numbers, i),
                    nth(&records, i),
                );
                let given = Outer {
                    partition_key: pk.as_ref(),
                    sequence_number: seq.as_ref(),
                    record: rec.as_ref(),
                };
                out.append(user_records(py, read, &blobs[i], slices[i], given, &mut pause)?)?;
            }
            Err(e) => out.append(deaggregation_error(py, e).into_value(py))?,
        }
    }
    Ok(out)
}

/// One blob for `_lambda_dicts`: the blob, the base of its records'
/// `kinesis` dictionaries, the base of the records themselves, and the
/// record id to copy into each (Firehose and Analytics records).
type LambdaItem<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyDict>,
    Bound<'py, PyDict>,
    Option<Bound<'py, PyAny>>,
);

/// The compatibility deaggregator's core: many blobs read together (their
/// checksums verified side by side, the library's `Options::verify_all`),
/// then, for each blob in order, the list of its user records as
/// dictionaries of the reference module's shape, None for a plain record
/// (passed through by the caller), or the `DeaggregationError` (not
/// raised) of a blob whose body is broken.
///
/// Each user record is `{'kinesis': {**kinesis_base, 'explicitHashKey',
/// 'partitionKey', 'subSequenceNumber', 'aggregated': True, 'data': base64
/// bytes [, 'recordId']}, **outer_base}`.
#[pyfunction]
#[pyo3(signature = (items, skip_checksum = false, strict = false))]
pub(crate) fn _lambda_dicts<'py>(
    py: Python<'py>,
    items: Vec<LambdaItem<'py>>,
    skip_checksum: bool,
    strict: bool,
) -> PyResult<Bound<'py, PyList>> {
    let opts = options(skip_checksum, strict)?;
    let bytes: Vec<Cow<'_, [u8]>> = items.iter().map(|i| blob_of(&i.0)).collect::<PyResult<_>>()?;
    let slices: Vec<&[u8]> = bytes.iter().map(|b| &b[..]).collect();
    let verified = verify_all(py, opts, &slices);
    // After verify_all, which may release the interpreter.
    let mut pause = GcPause::default();
    let out = PyList::empty(py);
    for (v, (_, kinesis_base, outer_base, record_id)) in verified.iter().zip(&items) {
        match v.deaggregate() {
            Ok(ka::Deaggregated::Plain { .. }) => out.append(py.None())?,
            Ok(ka::Deaggregated::Aggregated(agg)) => {
                pause.start(py, agg.len())?;
                out.append(lambda_dicts_of(
                    py,
                    &agg,
                    kinesis_base,
                    outer_base,
                    record_id.as_ref(),
                )?)?
            }
            Err(e) => out.append(deaggregation_error(py, e).into_value(py))?,
        }
    }
    Ok(out)
}

/// The user records of one aggregate as `_lambda_dicts` gives them.
fn lambda_dicts_of<'py>(
    py: Python<'py>,
    agg: &ka::AggregatedRecord<'_, ka::VecTable<'_>>,
    kinesis_base: &Bound<'py, PyDict>,
    outer_base: &Bound<'py, PyDict>,
    record_id: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let keys = Keys::new(py, agg);
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
    for (u, at) in agg.records().with_key_indices() {
        let k = k_template.copy()?;
        if let Some(i) = at.explicit_hash_key {
            k.set_item(k_ehk, keys.ehk(i)?)?;
        }
        k.set_item(k_pk, keys.pk(at.partition_key)?)?;
        k.set_item(k_sub, u.sub_sequence_number)?;
        // Encoded in place: a record's data is at most 10 MiB, so its
        // padded base64 length always exists and fills the bytes exactly.
        let len = ka::b64::encoded_len(u.data.len())
            .ok_or_else(|| PyValueError::new_err("internal: data too long for base64"))?;
        let text = PyBytes::new_with(py, len, |buf| {
            if ka::b64::encode_into(u.data, buf) {
                Ok(())
            } else {
                Err(PyValueError::new_err("internal: base64 length"))
            }
        })?;
        k.set_item(k_data, text)?;
        let d = d_template.copy()?;
        d.set_item(k_kinesis, k)?;
        list.append(d)?;
    }
    Ok(list)
}

/// Decodes standard base64 (`str` or bytes-like; padding required, no
/// whitespace), as Lambda delivers record data. `ValueError` names the
/// first bad byte. Large inputs are decoded with the interpreter released.
#[pyfunction]
pub(crate) fn _b64decode<'py>(py: Python<'py>, text: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let input = data(text)?;
    let mut out = Vec::new();
    let decoded = if input.len() >= RELEASE_GIL_AT {
        py.detach(|| ka::b64::decode_append(&input, ka::b64::Padding::Required, &mut out))
    } else {
        ka::b64::decode_append(&input, ka::b64::Padding::Required, &mut out)
    };
    decoded.map_err(|e| PyValueError::new_err(format!("record data is not base64: {e}")))?;
    Ok(PyBytes::new(py, &out))
}
