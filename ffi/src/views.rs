//! Views of the caller's bytes and text.

use crate::kagg_status::*;
#[allow(unused_imports)]
use crate::*;

/// Bytes inside the caller's blob or buffer (not NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kagg_bytes {
    /// First byte (NULL when `len` is 0 and there is nothing to point at).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

/// UTF-8 text inside the caller's blob or buffer (not NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kagg_str {
    /// First byte; NULL means "none" where a field is optional.
    pub ptr: *const c_char,
    /// Number of bytes.
    pub len: usize,
}

impl kagg_bytes {
    pub(crate) fn of(b: &[u8]) -> Self {
        kagg_bytes {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }
}

impl kagg_str {
    pub(crate) const NONE: kagg_str = kagg_str {
        ptr: ptr::null(),
        len: 0,
    };
    pub(crate) fn of(s: &str) -> Self {
        kagg_str {
            ptr: s.as_ptr().cast(),
            len: s.len(),
        }
    }
    pub(crate) fn of_opt(s: Option<&str>) -> Self {
        s.map_or(kagg_str::NONE, kagg_str::of)
    }
}

/// The caller's bytes: `len` bytes at `ptr` (an empty slice for length 0,
/// whatever `ptr` is).
///
/// # Safety
/// `ptr` points to `len` readable bytes that outlive `'a` when `len > 0`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes.
    Some(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// The caller's text, checked to be UTF-8.
///
/// # Safety
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(s: kagg_str) -> Result<&'a str, kagg_status> {
    // SAFETY: forwarded from the caller's promise.
    let b = unsafe { bytes(s.ptr.cast(), s.len) }.ok_or(KAGG_NULL_ARGUMENT)?;
    core::str::from_utf8(b).map_err(|_| KAGG_NOT_UTF8)
}

/// Writes `value` to `*out`; `KAGG_NULL_ARGUMENT` when `out` is NULL.
///
/// # Safety
/// `out` is NULL or writable.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T) -> kagg_status {
    if out.is_null() {
        return KAGG_NULL_ARGUMENT;
    }
    // SAFETY: non-NULL, and the caller promises it writable.
    unsafe { *out = value };
    KAGG_OK
}
