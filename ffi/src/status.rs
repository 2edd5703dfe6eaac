//! What every function returns: the status codes, their messages, and
//! the library's errors mapped onto them.

#[allow(unused_imports)]
use crate::*;

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
    /// Reading flags that mean nothing: `KAGG_SKIP_CHECKSUM` with
    /// `KAGG_STRICT`, or a bit this version does not name.
    KAGG_INVALID_FLAGS = 33,
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
    /// A panic inside the library, caught at the boundary so that it never
    /// unwinds into C (none is known to happen: every input is checked).
    /// The objects the call was given are in an unknown state: initialize
    /// them again before using them.
    KAGG_PANIC = 98,
    /// An error this version of the header does not name.
    KAGG_OTHER = 99,
}

use kagg_status::*;

pub(crate) fn status(e: ka::Error) -> kagg_status {
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

/// Runs the body of an exported function so that no panic unwinds into
/// C: on hosted targets a panic (none is known: every input is checked)
/// becomes `KAGG_PANIC`; bare-metal builds abort on panic, so nothing can
/// unwind there.
#[inline(always)]
pub(crate) fn boundary(body: impl FnOnce() -> kagg_status) -> kagg_status {
    #[cfg(not(target_os = "none"))]
    {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(KAGG_PANIC)
    }
    #[cfg(target_os = "none")]
    {
        body()
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
pub(crate) const CODES: [u8; 31] = [
    0, 1, 2, 3, 4, 5, 10, 11, 20, 21, 22, 30, 31, 32, 33, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 60, 61,
    62, 98, 99,
];

/// One NUL-terminated message per value of [`CODES`], then the one for an
/// unknown value: short, as firmware flash is counted (the header's
/// comment on each value says more).
pub(crate) const TEXTS: &[u8] = b"success\0\
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
invalid reading flags\0\
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
panic caught\0\
unnamed error\0\
not a kagg_status value\0";

pub(crate) fn describe(status: c_int) -> &'static core::ffi::CStr {
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
    pub(crate) fn every_status_has_its_own_message() {
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
        assert_eq!(describe(33), c"invalid reading flags");
        assert_eq!(describe(98), c"panic caught");
        for other in [-1, 6, 34, 63, 97, 100, c_int::MAX, c_int::MIN] {
            assert_eq!(describe(other), c"not a kagg_status value");
        }
    }
}
