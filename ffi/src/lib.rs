//! The C interface of kinesis-agg: `include/kinesis_agg.h` and a static or
//! shared library, with no heap.
//!
//! Every function returns a [`kagg_status`] and writes its results through
//! pointers the caller owns; every buffer and table is caller storage whose
//! size the caller chooses. Nothing allocates and no input can make a
//! function panic (every argument is checked, and the library it binds
//! never panics).
//!
//! `unsafe` is what a C ABI requires and nothing else: turning the caller's
//! pointers into slices and references (each checked for NULL first, the
//! lengths being the caller's promise, as in any C API), and keeping the
//! library's aggregator and tag iterator in caller storage of a size and
//! alignment checked at compile time.
#![no_std]
#![deny(missing_docs)]
#![allow(non_camel_case_types)]

// On hosted targets the standard library links in (it brings the panic
// handler a static library needs); the code itself uses `core` only.
#[cfg(not(target_os = "none"))]
extern crate std;

use core::ffi::{c_char, c_int, c_void};
use core::mem::{MaybeUninit, align_of, size_of};
use core::ptr;

use kinesis_agg as ka;

/// What a function did. `KAGG_OK` is 0; every other value is a reason it
/// did nothing (or, for `KAGG_STOPPED`, stopped where the caller asked).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kagg_status {
    /// Success.
    KAGG_OK = 0,
    /// A required pointer argument was NULL.
    KAGG_NULL_ARGUMENT = 1,
    /// An aggregator used before `kagg_aggregator_init` (or after a failed one).
    KAGG_NOT_INITIALIZED = 2,
    /// The aggregator has no user record to finish.
    KAGG_EMPTY = 3,
    /// A record callback returned nonzero: iteration stopped there.
    KAGG_STOPPED = 4,
    /// A text argument (key, hash key) is not UTF-8.
    KAGG_NOT_UTF8 = 5,
    /// No room for the record in the current aggregate: finish, then add again.
    KAGG_FULL = 10,
    /// No room for another distinct key in the aggregator's key index:
    /// finish, then add again.
    KAGG_KEY_CAPACITY = 11,
    /// A partition key that is empty or longer than 256 UTF-16 code units.
    KAGG_INVALID_PARTITION_KEY = 20,
    /// An explicit hash key that is not a decimal number in 0..2^128.
    KAGG_INVALID_HASH_KEY = 21,
    /// A record too large to fit in an aggregate of this limit even alone.
    KAGG_RECORD_TOO_LARGE = 22,
    /// A limit outside 30..=10,485,760, or larger than the buffer.
    KAGG_INVALID_LIMIT = 30,
    /// A key index of fewer than `KAGG_INDEX_SLOTS_PER_KEY` slots (or of
    /// 2^28 keys or more).
    KAGG_INVALID_INDEX = 32,
    /// More keys in a table of the body than the caller's table holds.
    KAGG_TABLE_FULL = 31,
    /// The body ends inside a value.
    KAGG_TRUNCATED = 40,
    /// A length prefix points past the end of its message.
    KAGG_LENGTH_PAST_END = 41,
    /// A varint longer than 10 bytes.
    KAGG_VARINT_TOO_LONG = 42,
    /// A field tag with field number 0 or above 2^29-1.
    KAGG_INVALID_FIELD_TAG = 43,
    /// Wire type 6 or 7.
    KAGG_INVALID_WIRE_TYPE = 44,
    /// An end-group tag without its start, or closing another group.
    KAGG_UNEXPECTED_END_GROUP = 45,
    /// Groups nested more than 100 deep.
    KAGG_NESTING_TOO_DEEP = 46,
    /// A required field (partition key index, data, tag key) is missing.
    KAGG_MISSING_FIELD = 47,
    /// A record's key index points outside its table.
    KAGG_INDEX_OUT_OF_RANGE = 48,
    /// A key table entry or tag that is not UTF-8.
    KAGG_INVALID_UTF8 = 49,
    /// The MD5 trailer does not match (strict reading only).
    KAGG_CHECKSUM_MISMATCH = 50,
    /// A hash key range that ends before it starts, or ranges that overlap
    /// or are not sorted.
    KAGG_INVALID_RANGE = 60,
    /// No range holds the hash key.
    KAGG_NO_RANGE = 61,
    /// A user record's effective hash key lies outside the shard's range
    /// given to `kagg_deaggregate_shard` (the KCL discards such an
    /// aggregate).
    KAGG_OUT_OF_RANGE = 62,
    /// An error this version of the header does not name.
    KAGG_OTHER = 99,
}

use kagg_status::*;

fn status(e: ka::Error) -> kagg_status {
    match e {
        ka::Error::Truncated { .. } => KAGG_TRUNCATED,
        ka::Error::LengthPastEnd { .. } => KAGG_LENGTH_PAST_END,
        ka::Error::VarintTooLong { .. } => KAGG_VARINT_TOO_LONG,
        ka::Error::InvalidTag { .. } => KAGG_INVALID_FIELD_TAG,
        ka::Error::InvalidWireType { .. } => KAGG_INVALID_WIRE_TYPE,
        ka::Error::UnexpectedEndGroup { .. } => KAGG_UNEXPECTED_END_GROUP,
        ka::Error::NestingTooDeep { .. } => KAGG_NESTING_TOO_DEEP,
        ka::Error::MissingField { .. } => KAGG_MISSING_FIELD,
        ka::Error::IndexOutOfRange { .. } => KAGG_INDEX_OUT_OF_RANGE,
        ka::Error::InvalidUtf8 { .. } => KAGG_INVALID_UTF8,
        ka::Error::TableFull { .. } => KAGG_TABLE_FULL,
        ka::Error::ChecksumMismatch => KAGG_CHECKSUM_MISMATCH,
        ka::Error::InvalidPartitionKey { .. } => KAGG_INVALID_PARTITION_KEY,
        ka::Error::InvalidHashKey { .. } => KAGG_INVALID_HASH_KEY,
        ka::Error::Full => KAGG_FULL,
        ka::Error::KeyCapacity { .. } => KAGG_KEY_CAPACITY,
        ka::Error::RecordTooLarge { .. } => KAGG_RECORD_TOO_LARGE,
        ka::Error::InvalidLimit { .. } => KAGG_INVALID_LIMIT,
        ka::Error::InvalidIndex { .. } => KAGG_INVALID_INDEX,
        ka::Error::InvalidHashKeyRange | ka::Error::ShardsOverlap { .. } => KAGG_INVALID_RANGE,
        ka::Error::NoShardForHashKey { .. } => KAGG_NO_RANGE,
        _ => KAGG_OTHER,
    }
}

/// A static, NUL-terminated description of a `kagg_status` value (never
/// NULL; an unknown value gets a description that says so).
#[unsafe(no_mangle)]
pub extern "C" fn kagg_strerror(status: c_int) -> *const c_char {
    // Taken as an int: a C caller may pass any value.
    describe(status).as_ptr()
}

/// The status values, in the order of their messages in [`TEXTS`].
const CODES: [u8; 29] = [
    0, 1, 2, 3, 4, 5, 10, 11, 20, 21, 22, 30, 31, 32, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 60, 61, 62,
    99,
];

/// One NUL-terminated message per value of [`CODES`], then the one for an
/// unknown value: short, as firmware flash is counted (the header's
/// comment on each value says more).
const TEXTS: &[u8] = b"success\0\
NULL argument\0\
aggregator not initialized\0\
aggregator empty\0\
stopped by the callback\0\
text not UTF-8\0\
aggregate full: finish, add again\0\
key index full: finish, add again\0\
invalid partition key\0\
invalid explicit hash key\0\
record too large for the limit\0\
invalid limit\0\
key table too small\0\
key index too small\0\
body truncated\0\
length past end\0\
varint too long\0\
invalid field tag\0\
invalid wire type\0\
unexpected end-group\0\
groups nested too deep\0\
required field missing\0\
key index out of range\0\
key or tag not UTF-8\0\
checksum mismatch\0\
invalid hash key range\0\
no range holds the key\0\
record outside the shard's range\0\
unnamed error\0\
not a kagg_status value\0";

fn describe(status: c_int) -> &'static core::ffi::CStr {
    let n = CODES
        .iter()
        .position(|&c| c_int::from(c) == status)
        .unwrap_or(CODES.len());
    // The n-th message: after n NULs.
    let mut rest = TEXTS;
    for _ in 0..n {
        let next = rest.iter().position(|&b| b == 0).map_or(rest.len(), |i| i + 1);
        rest = rest.get(next..).unwrap_or_default();
    }
    core::ffi::CStr::from_bytes_until_nul(rest).unwrap_or(c"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_message() {
        assert_eq!(TEXTS.iter().filter(|&&b| b == 0).count(), CODES.len() + 1);
        let mut seen = std::vec::Vec::new();
        for &c in &CODES {
            let m = describe(c_int::from(c));
            assert!(
                !m.is_empty() && m != c"not a kagg_status value" && !seen.contains(&m),
                "{c}"
            );
            seen.push(m);
        }
        assert_eq!(describe(0), c"success");
        assert_eq!(describe(62), c"record outside the shard's range");
        assert_eq!(describe(99), c"unnamed error");
        for other in [-1, 6, 33, 63, 98, 100, c_int::MAX, c_int::MIN] {
            assert_eq!(describe(other), c"not a kagg_status value");
        }
    }
}

// ------------------------------------------------------------------- views

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
    fn of(b: &[u8]) -> Self {
        kagg_bytes {
            ptr: b.as_ptr(),
            len: b.len(),
        }
    }
}

impl kagg_str {
    const NONE: kagg_str = kagg_str {
        ptr: ptr::null(),
        len: 0,
    };
    fn of(s: &str) -> Self {
        kagg_str {
            ptr: s.as_ptr().cast(),
            len: s.len(),
        }
    }
    fn of_opt(s: Option<&str>) -> Self {
        s.map_or(kagg_str::NONE, kagg_str::of)
    }
}

/// The caller's bytes: `len` bytes at `ptr` (an empty slice for length 0,
/// whatever `ptr` is).
///
/// # Safety
/// `ptr` points to `len` readable bytes that outlive `'a` when `len > 0`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
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
unsafe fn text<'a>(s: kagg_str) -> Result<&'a str, kagg_status> {
    // SAFETY: forwarded from the caller's promise.
    let b = unsafe { bytes(s.ptr.cast(), s.len) }.ok_or(KAGG_NULL_ARGUMENT)?;
    core::str::from_utf8(b).map_err(|_| KAGG_NOT_UTF8)
}

// ----------------------------------------------------------------- reading

/// Read the checksum but do not check it: a body that does not parse is
/// then a plain record.
pub const KAGG_SKIP_CHECKSUM: u32 = 1;
/// A magic-prefixed blob whose checksum is wrong is `KAGG_CHECKSUM_MISMATCH`
/// instead of a plain record.
pub const KAGG_STRICT: u32 = 2;

/// What a blob is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kagg_kind {
    /// An aggregated record (its body validated by `kagg_deaggregate`).
    KAGG_AGGREGATED = 0,
    /// Not aggregated: the whole blob is one user record.
    KAGG_PLAIN = 1,
}

/// Why a blob is a plain record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum kagg_plain_reason {
    /// Not plain (the blob is aggregated).
    KAGG_NOT_PLAIN = 0,
    /// It does not start with the magic bytes F3 89 9A C2.
    KAGG_NO_MAGIC = 1,
    /// Magic, but 20 bytes or shorter.
    KAGG_TOO_SHORT = 2,
    /// Magic, but the MD5 trailer does not match.
    KAGG_BAD_CHECKSUM = 3,
    /// Checksum skipped and the body does not parse.
    KAGG_UNPARSABLE = 4,
}

fn reason(r: ka::PlainReason) -> kagg_plain_reason {
    match r {
        ka::PlainReason::NoMagic => kagg_plain_reason::KAGG_NO_MAGIC,
        ka::PlainReason::TooShort => kagg_plain_reason::KAGG_TOO_SHORT,
        ka::PlainReason::ChecksumMismatch => kagg_plain_reason::KAGG_BAD_CHECKSUM,
        _ => kagg_plain_reason::KAGG_UNPARSABLE,
    }
}

fn options(flags: u32) -> ka::Options {
    ka::Options::new().checksum(if flags & KAGG_STRICT != 0 {
        ka::Checksum::Strict
    } else if flags & KAGG_SKIP_CHECKSUM != 0 {
        ka::Checksum::Skip
    } else {
        ka::Checksum::Verify
    })
}

/// Room for one key of a table being read: caller storage, uninitialized.
/// `kagg_deaggregate` takes two arrays of them, one per key table.
#[repr(C)]
pub struct kagg_key_slot {
    _private: [usize; 2],
}

// A key slot holds a `&str`.
const _: () = assert!(size_of::<kagg_key_slot>() == size_of::<&str>());
const _: () = assert!(align_of::<kagg_key_slot>() >= align_of::<&str>());

/// A key table over the caller's slots.
struct SlotTable<'a, 't> {
    slots: &'t mut [MaybeUninit<&'a str>],
    len: usize,
}

impl<'a> ka::KeyTable<'a> for SlotTable<'a, '_> {
    fn clear(&mut self) {
        self.len = 0;
    }
    fn try_push(&mut self, key: &'a str) -> bool {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                slot.write(key);
                self.len += 1;
                true
            }
            None => false,
        }
    }
    fn as_slice(&self) -> &[&'a str] {
        let init = &self.slots[..self.len];
        // SAFETY: the first `len` slots were written by `try_push`.
        unsafe { core::slice::from_raw_parts(init.as_ptr().cast::<&'a str>(), init.len()) }
    }
    fn capacity(&self) -> usize {
        self.slots.len()
    }
}

/// # Safety
/// `slots` points to `cap` writable slots that outlive `'t` when `cap > 0`.
unsafe fn slot_table<'a, 't>(slots: *mut kagg_key_slot, cap: usize) -> Option<SlotTable<'a, 't>> {
    let slots: &'t mut [MaybeUninit<&'a str>] = if cap == 0 {
        &mut []
    } else if slots.is_null() {
        return None;
    } else {
        // SAFETY: non-NULL; the caller promises `cap` writable slots, each
        // the size and alignment of a `&str` (checked above); they are
        // treated as uninitialized.
        unsafe { core::slice::from_raw_parts_mut(slots.cast(), cap) }
    };
    Some(SlotTable { slots, len: 0 })
}

/// A user record's tags, to read with `kagg_next_tag` (opaque).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kagg_tags {
    _private: [usize; 3],
}

const _: () = assert!(size_of::<kagg_tags>() >= size_of::<ka::Tags<'static>>());
const _: () = assert!(align_of::<kagg_tags>() >= align_of::<ka::Tags<'static>>());

impl kagg_tags {
    fn of(t: ka::Tags<'_>) -> Self {
        let mut out = kagg_tags { _private: [0; 3] };
        // SAFETY: the storage is large and aligned enough (checked above);
        // `Tags` is `Copy` (nothing to drop) and borrows the caller's blob.
        unsafe { ptr::write((&raw mut out).cast::<ka::Tags<'_>>(), t) };
        out
    }
}

/// One user record: views into the blob, valid while the blob is.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kagg_user_record {
    /// Its partition key.
    pub partition_key: kagg_str,
    /// Its explicit hash key; `ptr` is NULL when the record has none.
    pub explicit_hash_key: kagg_str,
    /// Its data.
    pub data: kagg_bytes,
    /// Its position in the aggregate, from 0.
    pub sub_sequence_number: u64,
    /// Its tags, for `kagg_next_tag`.
    pub tags: kagg_tags,
}

/// One tag: a key and, when set, a value (`value.ptr` NULL when not).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kagg_tag {
    /// The tag's key.
    pub key: kagg_str,
    /// The tag's value; `ptr` is NULL when the tag has none.
    pub value: kagg_str,
}

/// Reads the next tag of a user record into `*tag`: `KAGG_OK` with
/// `*found` 1, or `*found` 0 when there are no more.
///
/// # Safety
/// `tags` comes from a `kagg_user_record` whose blob is still valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_next_tag(
    tags: *mut kagg_tags,
    tag: *mut kagg_tag,
    found: *mut c_int,
) -> kagg_status {
    if tags.is_null() || tag.is_null() || found.is_null() {
        return KAGG_NULL_ARGUMENT;
    }
    // SAFETY: checked non-NULL; the storage holds a `Tags` written by
    // `kagg_tags::of` (the caller passes what it was given).
    let t = unsafe { &mut *tags.cast::<ka::Tags<'_>>() };
    // SAFETY: checked non-NULL.
    unsafe {
        match t.next() {
            Some(next) => {
                *tag = kagg_tag {
                    key: kagg_str::of(next.key),
                    value: kagg_str::of_opt(next.value),
                };
                *found = 1;
            }
            None => *found = 0,
        }
    }
    KAGG_OK
}

/// What `kagg_deaggregate` found.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct kagg_result {
    /// Aggregated or plain.
    pub kind: kagg_kind,
    /// Why it is plain (`KAGG_NOT_PLAIN` when aggregated).
    pub reason: kagg_plain_reason,
    /// Number of user records of an aggregated blob (0 when plain).
    pub records: usize,
    /// On a body error, the byte offset in the body where it was found;
    /// `SIZE_MAX` when the status has no offset.
    pub error_offset: usize,
    /// On `KAGG_OUT_OF_RANGE`, the sub-sequence number of the first user
    /// record outside the shard's range; `UINT64_MAX` otherwise.
    pub outside: u64,
}

impl kagg_result {
    const NONE: kagg_result = kagg_result {
        kind: kagg_kind::KAGG_PLAIN,
        reason: kagg_plain_reason::KAGG_NOT_PLAIN,
        records: 0,
        error_offset: usize::MAX,
        outside: u64::MAX,
    };
}

/// Called with each user record in order; return 0 to go on, anything
/// else to stop (`kagg_deaggregate` then returns `KAGG_STOPPED`).
pub type kagg_record_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, record: *const kagg_user_record) -> c_int>;

/// Reads one Kinesis data blob. The whole body is validated before the
/// first record is handed out: on an error no callback has run,
/// `result->error_offset` says where it is, and the status says what.
///
/// An aggregated blob's user records go to `callback` (which may be NULL
/// to only validate and count); a plain blob calls nothing and sets
/// `result->kind` to `KAGG_PLAIN` with the reason. `pk_slots` and
/// `ehk_slots` are caller storage for the two key tables (`pk_cap` and
/// `ehk_cap` slots; a body with more keys is `KAGG_TABLE_FULL`). `flags`:
/// 0, `KAGG_SKIP_CHECKSUM` or `KAGG_STRICT`.
///
/// # Safety
/// `blob` points to `len` readable bytes; each slot array to its capacity
/// in writable slots; all stay valid during the call (the record views
/// point into `blob`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_deaggregate(
    blob: *const u8,
    len: usize,
    flags: u32,
    pk_slots: *mut kagg_key_slot,
    pk_cap: usize,
    ehk_slots: *mut kagg_key_slot,
    ehk_cap: usize,
    callback: kagg_record_fn,
    ctx: *mut c_void,
    result: *mut kagg_result,
) -> kagg_status {
    let tables = (pk_slots, pk_cap, ehk_slots, ehk_cap);
    // SAFETY: the caller's promises, forwarded.
    unsafe { read(blob, len, flags, None, tables, callback, ctx, result) }
}

/// `kagg_deaggregate` for a blob read from a shard whose hash key range is
/// `*shard`, under the KCL's rule: every user record's effective hash key
/// (`kagg_record_hash_key`) must lie in the range, or the KCL discards the
/// whole aggregate. Here that is `KAGG_OUT_OF_RANGE`, found before any
/// callback runs, with `result->outside` naming the first such record. A
/// plain blob is not checked; `KAGG_INVALID_RANGE` when the range ends
/// before it starts.
///
/// # Safety
/// As `kagg_deaggregate`; `shard` readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_deaggregate_shard(
    blob: *const u8,
    len: usize,
    flags: u32,
    shard: *const kagg_range,
    pk_slots: *mut kagg_key_slot,
    pk_cap: usize,
    ehk_slots: *mut kagg_key_slot,
    ehk_cap: usize,
    callback: kagg_record_fn,
    ctx: *mut c_void,
    result: *mut kagg_result,
) -> kagg_status {
    if shard.is_null() {
        if !result.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *result = kagg_result::NONE };
        }
        return KAGG_NULL_ARGUMENT;
    }
    let tables = (pk_slots, pk_cap, ehk_slots, ehk_cap);
    // SAFETY: checked non-NULL; the caller promises it is readable, and
    // the rest is forwarded.
    unsafe { read(blob, len, flags, Some(*shard), tables, callback, ctx, result) }
}

type Tables = (*mut kagg_key_slot, usize, *mut kagg_key_slot, usize);

/// Both reading functions (inlined into each, so that a program calling
/// only one links only its code).
///
/// # Safety
/// As `kagg_deaggregate`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn read(
    blob: *const u8,
    len: usize,
    flags: u32,
    shard: Option<kagg_range>,
    (pk_slots, pk_cap, ehk_slots, ehk_cap): Tables,
    callback: kagg_record_fn,
    ctx: *mut c_void,
    result: *mut kagg_result,
) -> kagg_status {
    if result.is_null() {
        return KAGG_NULL_ARGUMENT;
    }
    // SAFETY: checked non-NULL.
    let result = unsafe { &mut *result };
    *result = kagg_result::NONE;
    let range = match shard {
        None => None,
        Some(r) => match ka::HashKeyRange::new(r.start.get(), r.end.get()) {
            Some(range) => Some(range),
            None => return KAGG_INVALID_RANGE,
        },
    };
    // SAFETY: the caller's promises, forwarded.
    let (Some(blob), Some(pks), Some(ehks)) = (
        unsafe { bytes(blob, len) },
        unsafe { slot_table(pk_slots, pk_cap) },
        unsafe { slot_table(ehk_slots, ehk_cap) },
    ) else {
        return KAGG_NULL_ARGUMENT;
    };
    let read = match options(flags).deaggregate_with(blob, pks, ehks) {
        Ok(r) => r,
        Err(e) => {
            result.error_offset = e.offset().unwrap_or(usize::MAX);
            return status(e);
        }
    };
    let agg = match read {
        ka::Deaggregated::Plain { reason: r, .. } => {
            result.reason = reason(r);
            return KAGG_OK;
        }
        ka::Deaggregated::Aggregated(agg) => agg,
    };
    result.kind = kagg_kind::KAGG_AGGREGATED;
    result.records = agg.len();
    if let Some(range) = range
        && let Err(out) = agg.check_range(range)
    {
        result.outside = out.sub_sequence_number;
        return KAGG_OUT_OF_RANGE;
    }
    let Some(cb) = callback else { return KAGG_OK };
    for u in agg.records() {
        let view = kagg_user_record {
            partition_key: kagg_str::of(u.partition_key),
            explicit_hash_key: kagg_str::of_opt(u.explicit_hash_key),
            data: kagg_bytes::of(u.data),
            sub_sequence_number: u.sub_sequence_number,
            tags: kagg_tags::of(u.tags),
        };
        // SAFETY: the caller's function, called as its type says.
        if unsafe { cb(ctx, &view) } != 0 {
            return KAGG_STOPPED;
        }
    }
    KAGG_OK
}

// ----------------------------------------------------------------- writing

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

const MAGIC_INIT: u64 = 0x6b61_6767_5f61_6767; // "kagg_agg"

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
unsafe fn aggregator<'x>(agg: *mut kagg_aggregator) -> Result<&'x mut Agg, kagg_status> {
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

/// # Safety
/// The record's pointers are valid for their lengths.
unsafe fn record<'r>(rec: *const kagg_record) -> Result<ka::Record<'r>, kagg_status> {
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
    // SAFETY: the caller's promises, forwarded.
    let (a, r) = match unsafe { (aggregator(agg), record(rec)) } {
        (Ok(a), Ok(r)) => (a, r),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match a.add(r) {
        Ok(()) => KAGG_OK,
        Err(refused) => status(refused.error),
    }
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
    if size.is_null() {
        return KAGG_NULL_ARGUMENT;
    }
    // SAFETY: forwarded.
    let (a, r) = match unsafe { (aggregator(agg), record(rec)) } {
        (Ok(a), Ok(r)) => (a, r),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match a.encoded_len_with(&r) {
        Ok(n) => {
            // SAFETY: checked non-NULL.
            unsafe { *size = n };
            KAGG_OK
        }
        Err(e) => status(e),
    }
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
    if out.is_null() {
        return KAGG_NULL_ARGUMENT;
    }
    // SAFETY: forwarded.
    let a = match unsafe { aggregator(agg) } {
        Ok(a) => a,
        Err(e) => return e,
    };
    match a.finish() {
        None => KAGG_EMPTY,
        Some(done) => {
            // SAFETY: checked non-NULL.
            unsafe {
                *out = kagg_finished {
                    data: kagg_bytes::of(done.data),
                    partition_key: kagg_str::of(done.partition_key),
                    explicit_hash_key: kagg_str::of_opt(done.explicit_hash_key),
                    records: done.record_count,
                }
            };
            KAGG_OK
        }
    }
}

/// Drops the current aggregate's user records.
///
/// # Safety
/// `agg` as for `kagg_aggregator_init`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_aggregator_reset(agg: *mut kagg_aggregator) -> kagg_status {
    // SAFETY: forwarded.
    match unsafe { aggregator(agg) } {
        Ok(a) => {
            let _ = a.finish();
            KAGG_OK
        }
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
    match unsafe { text(key) } {
        Ok(k) => ka::check_partition_key(k).map_or_else(status, |()| KAGG_OK),
        Err(e) => e,
    }
}

/// Checks an explicit hash key as `kagg_aggregator_add` does.
///
/// # Safety
/// `key`'s pointer is valid for its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_check_explicit_hash_key(key: kagg_str) -> kagg_status {
    // SAFETY: forwarded.
    match unsafe { text(key) } {
        Ok(k) => ka::check_explicit_hash_key(k).map_or_else(status, |()| KAGG_OK),
        Err(e) => e,
    }
}

// ------------------------------------------------------------------ shards

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
    fn of(v: u128) -> Self {
        kagg_u128 {
            hi: (v >> 64) as u64,
            lo: v as u64,
        }
    }
    fn get(self) -> u128 {
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
}

/// Parses a decimal hash key (`0` or up to 39 digits without a leading
/// zero, at most 2^128-1).
///
/// # Safety
/// `text`'s pointer is valid for its length; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_parse_hash_key(key: kagg_str, out: *mut kagg_u128) -> kagg_status {
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
}

/// The library's panic handler for bare-metal links (feature
/// `panic-handler`): nothing in this crate panics, so it only loops.
#[cfg(all(feature = "panic-handler", target_os = "none"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
