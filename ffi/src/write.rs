//! Writing: the no-heap aggregator in caller storage.

use crate::kagg_status::*;
#[allow(unused_imports)]
use crate::*;

type Agg = ka::IndexedAggregator<'static, &'static mut [u8]>;

/// One slot of an aggregator's key index (16 bytes): caller storage,
/// uninitialized until `kagg_aggregator_init` takes it.
#[repr(C)]
pub struct kagg_index_slot {
    _private: [u32; 4],
}

const _: () = assert!(size_of::<kagg_index_slot>() == size_of::<ka::KeySlot>());
const _: () = assert!(align_of::<kagg_index_slot>() >= align_of::<ka::KeySlot>());

/// Index slots per key: an index of `n` slots takes `n /
/// KAGG_INDEX_SLOTS_PER_KEY` distinct partition keys per aggregate (and as
/// many explicit hash keys); the next new key is `KAGG_KEY_CAPACITY`.
pub const KAGG_INDEX_SLOTS_PER_KEY: usize = 8;

const _: () = assert!(KAGG_INDEX_SLOTS_PER_KEY == ka::INDEX_SLOTS_PER_KEY);

/// 64-bit words of `kagg_aggregator`'s storage.
pub const KAGG_AGGREGATOR_WORDS: usize = 24;

pub(crate) const MAGIC_INIT: u64 = 0x6b61_6767_5f61_6767; // "kagg_agg"

/// An aggregator over a caller buffer and a caller key index: declare one
/// (static, on the stack, anywhere), then `kagg_aggregator_init` it. It
/// holds no bytes of the aggregate itself (200 bytes, with room to spare).
#[repr(C)]
pub struct kagg_aggregator {
    magic: u64,
    storage: [u64; KAGG_AGGREGATOR_WORDS],
}

const _: () = assert!(size_of::<Agg>() <= KAGG_AGGREGATOR_WORDS * 8);
const _: () = assert!(align_of::<Agg>() <= align_of::<u64>());

/// A user record to add.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kagg_record {
    /// Partition key: 1 to 256 UTF-16 code units of UTF-8.
    pub partition_key: kagg_str,
    /// Explicit hash key (a decimal number in 0..2^128), `ptr` NULL for none.
    pub explicit_hash_key: kagg_str,
    /// The data (may be empty).
    pub data: kagg_bytes,
}

/// A finished aggregate: views into the aggregator's buffer, valid until
/// the aggregator's next add, finish or init.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kagg_finished {
    /// The Kinesis record's data blob: magic, body, MD5.
    pub data: kagg_bytes,
    /// The partition key to put it with (the first user record's).
    pub partition_key: kagg_str,
    /// The explicit hash key to put it with, `ptr` NULL for none.
    pub explicit_hash_key: kagg_str,
    /// Number of user records.
    pub records: usize,
}

/// # Safety
/// `agg` is NULL or points to a `kagg_aggregator`.
pub(crate) unsafe fn aggregator<'x>(agg: *mut kagg_aggregator) -> Result<&'x mut Agg, kagg_status> {
    if agg.is_null() {
        return Err(KAGG_NULL_ARGUMENT);
    }
    // SAFETY: checked non-NULL.
    let a = unsafe { &mut *agg };
    if a.magic != MAGIC_INIT {
        return Err(KAGG_NOT_INITIALIZED);
    }
    // SAFETY: `kagg_aggregator_init` wrote an `Agg` there (the magic says
    // so); size and alignment are checked at compile time.
    Ok(unsafe { &mut *(&raw mut a.storage).cast::<Agg>() })
}

/// The aggregator and the record of a call that takes both.
///
/// # Safety
/// As [`aggregator`] and [`record`].
unsafe fn aggregator_and_record<'x>(
    agg: *mut kagg_aggregator,
    rec: *const kagg_record,
) -> Result<(&'x mut Agg, ka::Record<'x>), kagg_status> {
    // SAFETY: forwarded.
    match unsafe { (aggregator(agg), record(rec)) } {
        (Ok(a), Ok(r)) => Ok((a, r)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// # Safety
/// The record's pointers are valid for their lengths.
pub(crate) unsafe fn record<'r>(rec: *const kagg_record) -> Result<ka::Record<'r>, kagg_status> {
    if rec.is_null() {
        return Err(KAGG_NULL_ARGUMENT);
    }
    // SAFETY: checked non-NULL.
    let rec = unsafe { &*rec };
    // SAFETY: the caller's promises, forwarded.
    let pk = unsafe { text(rec.partition_key) }?;
    let ehk = if rec.explicit_hash_key.ptr.is_null() {
        None
    } else {
        // SAFETY: as above.
        Some(unsafe { text(rec.explicit_hash_key) }?)
    };
    // SAFETY: as above.
    let data = unsafe { bytes(rec.data.ptr, rec.data.len) }.ok_or(KAGG_NULL_ARGUMENT)?;
    Ok(ka::Record::new(pk, data).with_optional_explicit_hash_key(ehk))
}

/// Prepares `agg` to aggregate into `buf` (`buf_len` bytes) with its key
/// index in `index` (`index_len` slots, `KAGG_INDEX_SLOTS_PER_KEY` per key
/// of capacity), both of which it keeps using until the next init, with
/// aggregates of at most `limit` bytes counted as Kinesis counts them (the
/// blob plus the outer partition key; 30..=10,485,760, and at most
/// `buf_len`). `KAGG_INVALID_INDEX` for an index of fewer than
/// `KAGG_INDEX_SLOTS_PER_KEY` slots.
///
/// # Safety
/// `agg` points to a `kagg_aggregator`, `buf` to `buf_len` writable bytes
/// and `index` to `index_len` writable slots, all valid and not otherwise
/// used while `agg` is in use.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_aggregator_init(
    agg: *mut kagg_aggregator,
    buf: *mut u8,
    buf_len: usize,
    index: *mut kagg_index_slot,
    index_len: usize,
    limit: usize,
) -> kagg_status {
    boundary(|| {
        if agg.is_null() || buf.is_null() || index.is_null() {
            return KAGG_NULL_ARGUMENT;
        }
        // SAFETY: checked non-NULL.
        let a = unsafe { &mut *agg };
        a.magic = 0;
        if limit > buf_len {
            return KAGG_INVALID_LIMIT;
        }
        // SAFETY: non-NULL; the caller promises `buf_len` writable bytes for as
        // long as the aggregator is used.
        let buf: &'static mut [u8] = unsafe { core::slice::from_raw_parts_mut(buf, buf_len) };
        let slots = index.cast::<ka::KeySlot>();
        for i in 0..index_len {
            // SAFETY: the caller promises `index_len` writable slots, each the
            // size and alignment of a `KeySlot` (checked above): every one is
            // written before the slice below reads any.
            unsafe { ptr::write(slots.add(i), ka::KeySlot::FREE) };
        }
        // SAFETY: as above; all `index_len` slots are now initialized.
        let slots: &'static mut [ka::KeySlot] = unsafe { core::slice::from_raw_parts_mut(slots, index_len) };
        match Agg::new(buf, slots, limit) {
            Ok(new) => {
                // SAFETY: the storage is large and aligned enough (checked at
                // compile time); a previous aggregator there owns nothing.
                unsafe { ptr::write((&raw mut a.storage).cast::<Agg>(), new) };
                a.magic = MAGIC_INIT;
                KAGG_OK
            }
            Err(e) => status(e),
        }
    })
}

/// Adds a user record. `KAGG_FULL` or `KAGG_KEY_CAPACITY`: finish and
/// add it again; the invalid-record statuses: the record is refused. On
/// any refusal the aggregate is unchanged.
///
/// # Safety
/// `agg` as for `kagg_aggregator_init`; `rec`'s pointers are valid for
/// their lengths during the call (the bytes are copied).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_aggregator_add(
    agg: *mut kagg_aggregator,
    rec: *const kagg_record,
) -> kagg_status {
    boundary(|| {
        // SAFETY: the caller's promises, forwarded.
        match unsafe { aggregator_and_record(agg, rec) } {
            Ok((a, r)) => a
                .add(r)
                .map_or_else(|refused| status(refused.error), |()| KAGG_OK),
            Err(e) => e,
        }
    })
}

/// The exact size in bytes of the current aggregate's blob (0 when empty)
/// into `*size`, and its number of user records into `*records` (either
/// may be NULL).
///
/// # Safety
/// `agg` as for `kagg_aggregator_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_aggregator_size(
    agg: *mut kagg_aggregator,
    size: *mut usize,
    records: *mut usize,
) -> kagg_status {
    boundary(|| {
        // SAFETY: forwarded.
        let a = match unsafe { aggregator(agg) } {
            Ok(a) => a,
            Err(e) => return e,
        };
        if !size.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *size = a.encoded_len() };
        }
        if !records.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *records = a.record_count() };
        }
        KAGG_OK
    })
}

/// The exact size the current aggregate's blob would have with `rec`
/// added, into `*size`, without adding it.
///
/// # Safety
/// As `kagg_aggregator_add`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_aggregator_size_with(
    agg: *mut kagg_aggregator,
    rec: *const kagg_record,
    size: *mut usize,
) -> kagg_status {
    boundary(|| {
        // SAFETY: the caller's promises, forwarded (`size` writable or NULL).
        match unsafe { aggregator_and_record(agg, rec) } {
            Ok((a, r)) => a
                .encoded_len_with(&r)
                .map_or_else(status, |n| unsafe { write_out(size, n) }),
            Err(e) => e,
        }
    })
}

/// Completes the current aggregate into `*out` (views into the buffer,
/// valid until the next add, finish or init) and starts an empty one.
/// `KAGG_EMPTY` when there is no user record.
///
/// # Safety
/// `agg` as for `kagg_aggregator_init`; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_aggregator_finish(
    agg: *mut kagg_aggregator,
    out: *mut kagg_finished,
) -> kagg_status {
    boundary(|| {
        if out.is_null() {
            return KAGG_NULL_ARGUMENT;
        }
        // SAFETY: forwarded.
        let a = match unsafe { aggregator(agg) } {
            Ok(a) => a,
            Err(e) => return e,
        };
        let Some(done) = a.finish() else {
            return KAGG_EMPTY;
        };
        let finished = kagg_finished {
            data: kagg_bytes::of(done.data),
            partition_key: kagg_str::of(done.partition_key),
            explicit_hash_key: kagg_str::of_opt(done.explicit_hash_key),
            records: done.record_count,
        };
        // SAFETY: checked non-NULL above.
        unsafe { write_out(out, finished) }
    })
}

/// Drops the current aggregate's user records.
///
/// # Safety
/// `agg` as for `kagg_aggregator_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_aggregator_reset(agg: *mut kagg_aggregator) -> kagg_status {
    boundary(|| {
        // SAFETY: forwarded.
        match unsafe { aggregator(agg) } {
            Ok(a) => {
                let _ = a.finish();
                KAGG_OK
            }
            Err(e) => e,
        }
    })
}

/// `key` checked by `rule`.
///
/// # Safety
/// `key`'s pointer is valid for its length.
unsafe fn check(key: kagg_str, rule: fn(&str) -> Result<(), ka::Error>) -> kagg_status {
    // SAFETY: forwarded.
    match unsafe { text(key) } {
        Ok(k) => rule(k).map_or_else(status, |()| KAGG_OK),
        Err(e) => e,
    }
}

/// Checks a partition key as `kagg_aggregator_add` does.
///
/// # Safety
/// `key`'s pointer is valid for its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_check_partition_key(key: kagg_str) -> kagg_status {
    // SAFETY: forwarded.
    boundary(|| unsafe { check(key, ka::check_partition_key) })
}

/// Checks an explicit hash key as `kagg_aggregator_add` does.
///
/// # Safety
/// `key`'s pointer is valid for its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_check_explicit_hash_key(key: kagg_str) -> kagg_status {
    // SAFETY: forwarded.
    boundary(|| unsafe { check(key, ka::check_explicit_hash_key) })
}
