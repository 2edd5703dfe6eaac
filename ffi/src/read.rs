//! Reading: classifying and deaggregating a blob into caller storage.

use crate::kagg_status::*;
#[allow(unused_imports)]
use crate::*;

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

pub(crate) fn reason(r: ka::PlainReason) -> kagg_plain_reason {
    match r {
        ka::PlainReason::NoMagic => kagg_plain_reason::KAGG_NO_MAGIC,
        ka::PlainReason::TooShort => kagg_plain_reason::KAGG_TOO_SHORT,
        ka::PlainReason::ChecksumMismatch => kagg_plain_reason::KAGG_BAD_CHECKSUM,
        _ => kagg_plain_reason::KAGG_UNPARSABLE,
    }
}

/// The reading options the flags ask for: none (verify), one of
/// `KAGG_SKIP_CHECKSUM` and `KAGG_STRICT`; both at once, or a bit this
/// version does not know, mean nothing (as the Rust `Checksum` takes one
/// policy and Python refuses both with `ValueError`).
pub(crate) fn options(flags: u32) -> Result<ka::Options, kagg_status> {
    let checksum = match flags {
        0 => ka::Checksum::Verify,
        KAGG_SKIP_CHECKSUM => ka::Checksum::Skip,
        KAGG_STRICT => ka::Checksum::Strict,
        _ => return Err(KAGG_INVALID_FLAGS),
    };
    Ok(ka::Options::new().checksum(checksum))
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
pub(crate) struct SlotTable<'a, 't> {
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
pub(crate) unsafe fn slot_table<'a, 't>(slots: *mut kagg_key_slot, cap: usize) -> Option<SlotTable<'a, 't>> {
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
    pub(crate) fn of(t: ka::Tags<'_>) -> Self {
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
    boundary(|| {
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
    })
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
    pub(crate) const NONE: kagg_result = kagg_result {
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
    boundary(|| {
        let tables = (pk_slots, pk_cap, ehk_slots, ehk_cap);
        // SAFETY: the caller's promises, forwarded.
        unsafe { read(blob, len, flags, None, tables, callback, ctx, result) }
    })
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
    boundary(|| {
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
    })
}

type Tables = (*mut kagg_key_slot, usize, *mut kagg_key_slot, usize);

/// Both reading functions (inlined into each, so that a program calling
/// only one links only its code).
///
/// # Safety
/// As `kagg_deaggregate`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn read(
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
    let options = match options(flags) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let sink = match callback {
        Some(cb) => Sink::One(cb, ctx),
        None => Sink::Count,
    };
    deliver(options.deaggregate_with(blob, pks, ehks), range, result, sink)
}

/// Where a blob's user records go.
enum Sink {
    /// Nowhere: validate and count only.
    Count,
    /// `kagg_deaggregate`'s callback.
    One(
        unsafe extern "C" fn(*mut c_void, *const kagg_user_record) -> c_int,
        *mut c_void,
    ),
    /// `kagg_deaggregate_many`'s callback, with the blob's index.
    Many(
        unsafe extern "C" fn(*mut c_void, usize, *const kagg_user_record) -> c_int,
        *mut c_void,
        usize,
    ),
}

/// What follows reading one blob: `result` filled, the range checked, and
/// each user record handed to `sink` (whose callback answers non-zero to
/// stop).
#[inline(always)]
fn deliver<'a, T: ka::KeyTable<'a>>(
    read: Result<ka::Deaggregated<'a, T>, ka::Error>,
    range: Option<ka::HashKeyRange>,
    result: &mut kagg_result,
    sink: Sink,
) -> kagg_status {
    let read = match read {
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
    if let Sink::Count = sink {
        return KAGG_OK;
    }
    for u in agg.records() {
        let view = kagg_user_record {
            partition_key: kagg_str::of(u.partition_key),
            explicit_hash_key: kagg_str::of_opt(u.explicit_hash_key),
            data: kagg_bytes::of(u.data),
            sub_sequence_number: u.sub_sequence_number,
            tags: kagg_tags::of(u.tags),
        };
        // SAFETY: the caller's function, called as its type says.
        let stop = unsafe {
            match sink {
                Sink::Count => 0,
                Sink::One(cb, ctx) => cb(ctx, &view),
                Sink::Many(cb, ctx, i) => cb(ctx, i, &view),
            }
        };
        if stop != 0 {
            return KAGG_STOPPED;
        }
    }
    KAGG_OK
}

/// Called with each user record of `kagg_deaggregate_many`, in order, with
/// the index of the blob it came from; return 0 to go on, anything else to
/// stop.
pub type kagg_batch_record_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, blob: usize, record: *const kagg_user_record) -> c_int>;

/// Blobs verified together by `kagg_deaggregate_many`: 4 rounds of the
/// MD5 lanes where there are lanes (32 on x86-64, on the stack), one at a
/// time on bare metal.
const CHUNK: usize = if ka::MD5_LANES > 1 { 4 * ka::MD5_LANES } else { 1 };

/// Reads `n` blobs (a Lambda event's, a GetRecords answer's), their
/// checksums verified together (MD5s side by side in SIMD lanes where the
/// build has them), then each as `kagg_deaggregate` reads it: blob `i`'s
/// status goes to `statuses[i]`, what was found to `results[i]`, its user
/// records to `callback` with `i`, after its whole body was validated. A
/// broken blob does not stop the others. No heap: the key tables are the
/// caller's slots, reused for each blob.
///
/// Returns `KAGG_OK` when every blob was read (each one's own status is in
/// `statuses`), `KAGG_STOPPED` when the callback stopped (that blob and
/// those after it are left `KAGG_STOPPED`), `KAGG_NULL_ARGUMENT` or
/// `KAGG_INVALID_FLAGS` when nothing was read. A blob whose `ptr` is NULL
/// with a `len` is `KAGG_NULL_ARGUMENT` alone.
///
/// # Safety
/// `blobs` points to `n` readable `kagg_bytes`, each to its `len` bytes;
/// `results` and `statuses` to `n` writable items each; the slot arrays as
/// for `kagg_deaggregate`; all valid during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kagg_deaggregate_many(
    blobs: *const kagg_bytes,
    n: usize,
    flags: u32,
    pk_slots: *mut kagg_key_slot,
    pk_cap: usize,
    ehk_slots: *mut kagg_key_slot,
    ehk_cap: usize,
    callback: kagg_batch_record_fn,
    ctx: *mut c_void,
    results: *mut kagg_result,
    statuses: *mut kagg_status,
) -> kagg_status {
    boundary(|| {
        if n == 0 {
            return KAGG_OK;
        }
        if blobs.is_null() || results.is_null() || statuses.is_null() {
            return KAGG_NULL_ARGUMENT;
        }
        let options = match options(flags) {
            Ok(o) => o,
            Err(e) => return e,
        };
        // SAFETY: non-NULL; the caller promises `n` items of each.
        let (blobs, results, statuses) = unsafe {
            (
                core::slice::from_raw_parts(blobs, n),
                core::slice::from_raw_parts_mut(results, n),
                core::slice::from_raw_parts_mut(statuses, n),
            )
        };
        results.fill(kagg_result::NONE);
        statuses.fill(KAGG_STOPPED);
        let mut views: [&[u8]; CHUNK] = [&[]; CHUNK];
        let mut present = [true; CHUNK];
        let mut verified = [ka::Verified::default(); CHUNK];
        for start in (0..n).step_by(CHUNK) {
            let chunk = &blobs[start..n.min(start + CHUNK)];
            for (k, b) in chunk.iter().enumerate() {
                // SAFETY: the caller promises `len` readable bytes.
                let view = unsafe { bytes(b.ptr, b.len) };
                present[k] = view.is_some();
                views[k] = view.unwrap_or(&[]);
            }
            options.verify_into(&views[..chunk.len()], &mut verified[..chunk.len()]);
            for k in 0..chunk.len() {
                let i = start + k;
                if !present[k] {
                    statuses[i] = KAGG_NULL_ARGUMENT;
                    continue;
                }
                // SAFETY: the caller's slot arrays, as for `kagg_deaggregate`.
                let (Some(pks), Some(ehks)) = (unsafe { slot_table(pk_slots, pk_cap) }, unsafe {
                    slot_table(ehk_slots, ehk_cap)
                }) else {
                    statuses[i] = KAGG_NULL_ARGUMENT;
                    continue;
                };
                let sink = match callback {
                    Some(cb) => Sink::Many(cb, ctx, i),
                    None => Sink::Count,
                };
                let st = deliver(
                    verified[k].deaggregate_with(pks, ehks),
                    None,
                    &mut results[i],
                    sink,
                );
                statuses[i] = st;
                if st == KAGG_STOPPED {
                    return KAGG_STOPPED;
                }
            }
        }
        KAGG_OK
    })
}
