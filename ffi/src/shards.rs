//! Hash keys and shard ranges.

use crate::kagg_status::*;
#[allow(unused_imports)]
use crate::*;

/// A 128-bit hash key as two 64-bit halves.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct kagg_u128 {
    /// The upper 64 bits.
    pub hi: u64,
    /// The lower 64 bits.
    pub lo: u64,
}

impl kagg_u128 {
    pub(crate) fn of(v: u128) -> Self {
        kagg_u128 {
            hi: (v >> 64) as u64,
            lo: v as u64,
        }
    }
    pub(crate) fn get(self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }
}

/// Digits of the longest hash key (2^128-1).
pub const KAGG_HASH_KEY_MAX_DIGITS: usize = 39;

/// The hash key Kinesis routes a record by when it has no explicit hash
/// key: the MD5 of the partition key's bytes, big-endian.
///
/// # Safety
/// `key`'s pointer is valid for its length; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_partition_key_hash(key: kagg_str, out: *mut kagg_u128) -> kagg_status {
    boundary(|| {
        if out.is_null() {
            return KAGG_NULL_ARGUMENT;
        }
        // SAFETY: forwarded.
        match unsafe { text(key) } {
            Ok(k) => {
                // SAFETY: checked non-NULL.
                unsafe { *out = kagg_u128::of(ka::partition_key_hash(k)) };
                KAGG_OK
            }
            Err(e) => e,
        }
    })
}

/// Parses a decimal hash key (`0` or up to 39 digits without a leading
/// zero, at most 2^128-1).
///
/// # Safety
/// `text`'s pointer is valid for its length; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_parse_hash_key(key: kagg_str, out: *mut kagg_u128) -> kagg_status {
    boundary(|| {
        if out.is_null() {
            return KAGG_NULL_ARGUMENT;
        }
        // SAFETY: forwarded.
        match unsafe { text(key) }.and_then(|k| ka::parse_hash_key(k).map_err(status)) {
            Ok(v) => {
                // SAFETY: checked non-NULL.
                unsafe { *out = kagg_u128::of(v) };
                KAGG_OK
            }
            Err(e) => e,
        }
    })
}

/// Writes `key` in decimal into `buf` (at least `KAGG_HASH_KEY_MAX_DIGITS`
/// bytes; no NUL is written) and its length into `*len`.
///
/// # Safety
/// `buf` points to `buf_len` writable bytes; `len` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_write_hash_key(
    key: kagg_u128,
    buf: *mut c_char,
    buf_len: usize,
    len: *mut usize,
) -> kagg_status {
    boundary(|| {
        if buf.is_null() || len.is_null() {
            return KAGG_NULL_ARGUMENT;
        }
        if buf_len < KAGG_HASH_KEY_MAX_DIGITS {
            return KAGG_INVALID_LIMIT;
        }
        let mut digits = [0u8; ka::HASH_KEY_MAX_DIGITS];
        let s = ka::write_hash_key(key.get(), &mut digits);
        // SAFETY: checked non-NULL, and `buf_len` is at least the 39 bytes the
        // longest key needs.
        unsafe {
            ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
            *len = s.len();
        }
        KAGG_OK
    })
}

/// A shard's hash key range, inclusive.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kagg_range {
    /// First hash key.
    pub start: kagg_u128,
    /// Last hash key.
    pub end: kagg_u128,
}

/// Finds the range holding `key` among `n` ranges sorted by start and not
/// overlapping: its index into `*index`; `KAGG_NO_RANGE` when none holds
/// it, `KAGG_INVALID_RANGE` when a range ends before it starts or the
/// table is not sorted without overlaps (the table is checked first, in
/// O(n); the search is O(log n)).
///
/// # Safety
/// `ranges` points to `n` readable ranges; `index` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_route(
    ranges: *const kagg_range,
    n: usize,
    key: kagg_u128,
    index: *mut usize,
) -> kagg_status {
    boundary(|| {
        if index.is_null() || (ranges.is_null() && n > 0) {
            return KAGG_NULL_ARGUMENT;
        }
        let table: &[kagg_range] = if n == 0 {
            &[]
        } else {
            // SAFETY: non-NULL, and the caller promises `n` readable ranges.
            unsafe { core::slice::from_raw_parts(ranges, n) }
        };
        let mut prev_end: Option<u128> = None;
        for r in table {
            let (s, e) = (r.start.get(), r.end.get());
            if e < s || prev_end.is_some_and(|p| s <= p) {
                return KAGG_INVALID_RANGE;
            }
            prev_end = Some(e);
        }
        let k = key.get();
        let (mut lo, mut hi) = (0usize, table.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (s, e) = (table[mid].start.get(), table[mid].end.get());
            if k < s {
                hi = mid;
            } else if k > e {
                lo = mid + 1;
            } else {
                // SAFETY: checked non-NULL.
                unsafe { *index = mid };
                return KAGG_OK;
            }
        }
        KAGG_NO_RANGE
    })
}

/// A user record's effective hash key, the one Kinesis and the KCL route
/// it by: its explicit hash key when it has one, else the MD5 of its
/// partition key. `KAGG_INVALID_HASH_KEY` when its explicit hash key is not
/// a hash key (another producer wrote it).
///
/// # Safety
/// `record` comes from `kagg_deaggregate` (its blob still valid); `out`
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_record_hash_key(
    record: *const kagg_user_record,
    out: *mut kagg_u128,
) -> kagg_status {
    boundary(|| {
        if record.is_null() || out.is_null() {
            return KAGG_NULL_ARGUMENT;
        }
        // SAFETY: checked non-NULL.
        let r = unsafe { &*record };
        let key = if r.explicit_hash_key.ptr.is_null() {
            // SAFETY: the view points into the caller's blob, still valid.
            unsafe { text(r.partition_key) }.map(ka::partition_key_hash)
        } else {
            // SAFETY: as above.
            unsafe { text(r.explicit_hash_key) }.and_then(|e| ka::parse_hash_key(e).map_err(status))
        };
        match key {
            Ok(k) => {
                // SAFETY: checked non-NULL.
                unsafe { *out = kagg_u128::of(k) };
                KAGG_OK
            }
            Err(e) => e,
        }
    })
}
