//! The WebAssembly face of kinesis-agg, bound by the npm package in `js/`.
//!
//! This crate only maps JavaScript's shapes onto the library: every rule
//! (the envelope, the wire format, the limits, key checks) lives in
//! `kinesis-agg`. Reading returns positions, not objects: a table of
//! offsets into the caller's bytes from which the package's JavaScript
//! builds user records whose `data` is a view of the input (no copy, and
//! no object built across the boundary one field at a time). Writing keeps
//! a `RecordAggregator` on the WebAssembly side.
//!
//! It forbids `unsafe` like the library: the glue WebAssembly needs lives
//! inside `wasm-bindgen` and the code its macros generate.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use kinesis_agg as ka;
use wasm_bindgen::prelude::*;

/// Marks a user record without an explicit hash key in [`read`]'s table.
pub const NO_KEY: u32 = u32::MAX;

/// The checksum policy by its number: 0 verify, 1 skip, 2 strict.
fn policy(checksum: u8) -> Result<ka::Options, JsValue> {
    let policy = match checksum {
        0 => ka::Checksum::Verify,
        1 => ka::Checksum::Skip,
        2 => ka::Checksum::Strict,
        _ => return Err(type_error("checksum must be 'verify', 'skip' or 'strict'")),
    };
    Ok(ka::Options::new().checksum(policy))
}

/// A limit in bytes: a whole, non-negative number.
fn whole(limit: f64) -> Result<usize, JsValue> {
    if limit.is_finite() && limit >= 0.0 && limit.fract() == 0.0 {
        Ok(limit as usize)
    } else {
        Err(type_error("limit must be a whole number of bytes"))
    }
}

fn type_error(message: &str) -> JsValue {
    js_sys::TypeError::new(message).into()
}

/// A library error as a JavaScript `Error` with the error's `offset` in
/// the blob (undefined when it has none), its `reason` (the message) and
/// `code`, the library's error variant by name (`MissingField`).
fn error(e: &ka::Error) -> JsValue {
    let message = e.to_string();
    let err = js_sys::Error::new(&message);
    let offset = match e.offset() {
        Some(o) => JsValue::from_f64(o as f64),
        None => JsValue::UNDEFINED,
    };
    // Setting a property on a fresh plain Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"offset".into(), &offset);
    let _ = js_sys::Reflect::set(&err, &"reason".into(), &message.into());
    // The variant's name (`MissingField`), what Node calls an error's code.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.name().into());
    err.into()
}

/// Where `part` lies in `whole`: its offset and length, `part` being a
/// slice of `whole` (keys and data the reader borrows from the blob).
fn span(whole: &[u8], part: &[u8]) -> [u32; 2] {
    let at = part.as_ptr() as usize - whole.as_ptr() as usize;
    [at as u32, part.len() as u32]
}

/// Reads one Kinesis data blob and describes it by positions in `blob`:
///
/// - a plain record: `[0, reason]`, the reason 0 no magic, 1 too short,
///   2 checksum mismatch, 3 unparsable (not verified and not a valid body);
/// - an aggregate: `[1, partition keys, explicit hash keys, (offset,
///   length) of each key of both tables, records, then (partition key
///   index, explicit hash key index or NO_KEY, data offset, data length)
///   of each user record in order]`.
///
/// A broken body throws an `Error` with `offset`, `reason` and `code`
/// before anything is described: nothing is half-read.
///
/// With `pad`, the user records' data is also laid out for one base64
/// encoding of all of it ([`padded_span`]).
#[wasm_bindgen]
pub fn read(blob: &[u8], checksum: u8, pad: bool) -> Result<Vec<u32>, JsValue> {
    let read = policy(checksum)?.deaggregate(blob);
    let read = read.map_err(|e| error(&e))?;
    let mut out = Vec::new();
    if pad {
        PADDED.with_borrow_mut(|p| describe(blob, read, &mut out, Some(p)));
    } else {
        describe(blob, read, &mut out, None);
    }
    Ok(out)
}

std::thread_local! {
    /// Kept between reads (it grows to the largest aggregate read with
    /// `pad`, and no further): the JavaScript reads it in place.
    static PADDED: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
}

/// Where the data of the user records of the last aggregate [`read`]
/// with `pad` lies in the WebAssembly memory: `[address, length]`. The
/// records' data one after another, each followed by zeros to a multiple
/// of 3 bytes, so that the base64 of the whole is each record's base64
/// one after another (`4 * ceil(len / 3)` characters each) but for the
/// padding characters (`=`), which encode as `A` here. Valid until the
/// next call into the module.
#[wasm_bindgen(js_name = paddedSpan)]
pub fn padded_span() -> Vec<u32> {
    PADDED.with_borrow(|p| vec![p.as_ptr() as usize as u32, p.len() as u32])
}

/// Appends `read`'s description (see [`read`]) to `out`, positions taken
/// in `base`, the bytes the blob lies in.
///
/// With `padded`, the user records' data are laid out there as
/// [`padded_span`] says (cleared first; left empty for a plain record).
fn describe(
    base: &[u8],
    read: ka::Deaggregated<'_, ka::VecTable<'_>>,
    out: &mut Vec<u32>,
    mut padded: Option<&mut Vec<u8>>,
) {
    if let Some(p) = padded.as_deref_mut() {
        p.clear();
    }
    let agg = match read {
        ka::Deaggregated::Plain { reason, .. } => {
            let code = match reason {
                ka::PlainReason::NoMagic => 0,
                ka::PlainReason::TooShort => 1,
                ka::PlainReason::ChecksumMismatch => 2,
                _ => 3,
            };
            out.extend([0, code]);
            return;
        }
        ka::Deaggregated::Aggregated(agg) => agg,
    };
    let (pks, ehks) = (agg.partition_keys(), agg.explicit_hash_keys());
    let count = agg.records().len();
    out.reserve(4 + 2 * (pks.len() + ehks.len()) + 4 * count);
    out.extend([1, pks.len() as u32, ehks.len() as u32]);
    for k in pks.iter().chain(ehks) {
        out.extend(span(base, k.as_bytes()));
    }
    out.push(count as u32);
    if let Some(p) = padded.as_deref_mut() {
        // The records' data lie within the blob: at most its length, plus
        // two bytes of padding a record.
        p.reserve(base.len() + 2 * count);
    }
    for (u, keys) in agg.records().with_key_indices() {
        if let Some(p) = padded.as_deref_mut() {
            p.extend_from_slice(u.data);
            p.resize(p.len().div_ceil(3) * 3, 0);
        }
        out.push(keys.partition_key as u32);
        out.push(keys.explicit_hash_key.map_or(NO_KEY, |i| i as u32));
        out.extend(span(base, u.data));
    }
}

/// Reads many blobs at once, their MD5s computed side by side
/// (`Options::verify_all`): `all` holds them one after another, blob `i`
/// ending at `ends[i]`. For each blob in order: the length of its part,
/// then its description as [`read`] gives it (positions in `all`), or
/// `[2]` for a broken body (read that blob alone for its error). A broken
/// blob does not stop the others.
#[wasm_bindgen(js_name = readMany)]
pub fn read_many(all: &[u8], ends: &[u32], checksum: u8) -> Result<Vec<u32>, JsValue> {
    let opts = policy(checksum)?;
    let mut blobs = Vec::with_capacity(ends.len());
    let mut start = 0;
    for &end in ends {
        let end = end as usize;
        if end < start || end > all.len() {
            return Err(type_error("blob ends must ascend within the bytes"));
        }
        blobs.push(&all[start..end]);
        start = end;
    }
    let mut out = Vec::new();
    for v in opts.verify_all(&blobs) {
        let at = out.len();
        out.push(0);
        match v.deaggregate() {
            Ok(read) => describe(all, read, &mut out, None),
            Err(_) => out.push(2),
        }
        out[at] = (out.len() - at - 1) as u32;
    }
    Ok(out)
}

/// A refused record's error, naming the explicit hash key when it is the
/// one at fault (the library's message speaks of any hash key).
fn refused(e: &ka::Error, explicit_hash_key: Option<&str>) -> JsValue {
    let err = error(e);
    if let (ka::Error::InvalidHashKey { .. }, Some(k)) = (e, explicit_hash_key) {
        // Quoted as written (Debug's escaping would bring Unicode tables
        // into the WebAssembly for a message), and put together without
        // `format!` (a string argument brings the formatter's padding).
        let mut message = String::from("explicit hash key \"");
        message.push_str(k);
        message.push_str("\" refused: ");
        message.push_str(&e.to_string());
        let _ = js_sys::Reflect::set(&err, &"message".into(), &message.clone().into());
        let _ = js_sys::Reflect::set(&err, &"reason".into(), &message.into());
    }
    err
}

/// An add or check's answer as a boolean: taken (or would be), or refused
/// for room (false); any other refusal throws.
fn room(answer: Result<(), ka::Error>, explicit_hash_key: Option<&str>) -> Result<bool, JsValue> {
    match answer {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ka::ErrorKind::Full => Ok(false),
        Err(e) => Err(refused(&e, explicit_hash_key)),
    }
}

/// A record for the library, its keys checked by the library on add.
fn record<'a>(partition_key: &'a str, data: &'a [u8], explicit_hash_key: Option<&'a str>) -> ka::Record<'a> {
    ka::Record::new(partition_key, data).with_optional_explicit_hash_key(explicit_hash_key)
}

/// An aggregator owning its buffers: user records in, aggregates out.
#[wasm_bindgen]
pub struct Aggregator {
    inner: ka::RecordAggregator,
    /// What `addPacked` stopped at: a completed aggregate, or a refused
    /// record's error.
    done: Option<Aggregate>,
    refused: Option<JsValue>,
    /// Keys `addPacked`'s layout names by number.
    keys: Vec<String>,
}

#[wasm_bindgen]
impl Aggregator {
    /// An aggregator whose aggregates stay within `limit` bytes as Kinesis
    /// counts them (data plus the outer partition key's UTF-8 bytes).
    #[wasm_bindgen(constructor)]
    pub fn new(limit: f64) -> Result<Aggregator, JsValue> {
        let inner = ka::RecordAggregator::with_limit(whole(limit)?).map_err(|e| error(&e))?;
        Ok(Aggregator {
            inner,
            done: None,
            refused: None,
            keys: Vec::new(),
        })
    }

    /// Adds a user record. When the current aggregate cannot take it, that
    /// aggregate is completed and returned and the record starts the next
    /// one. A record the library refuses (its keys, or too large alone)
    /// throws and changes nothing.
    pub fn add(&mut self, pk: &str, data: &[u8], ehk: Option<String>) -> Result<Option<Aggregate>, JsValue> {
        let r = record(pk, data, ehk.as_deref());
        match self.inner.add(r) {
            Ok(done) => Ok(done.map(Aggregate::from)),
            Err(e) => Err(refused(&e, ehk.as_deref())),
        }
    }

    /// Adds records packed by the caller, in order: their data, one after
    /// another in `packed`, and three numbers a record in `layout` (its
    /// partition key's number from `internKey`, its explicit hash key's or
    /// `NO_KEY` for none, its data's length): one crossing for many records.
    ///
    /// It stops at the first record that completes an aggregate (the
    /// record then starts the next one; the completed aggregate waits in
    /// `takeDone`) or that the library refuses (nothing changes; its error
    /// waits in `takeRefused`), so that the caller answers each in order
    /// as `add` would have. Returns how many records it consumed, a
    /// refused one not counted.
    #[wasm_bindgen(js_name = addPacked)]
    pub fn add_packed(&mut self, packed: &[u8], layout: &[u32]) -> Result<u32, JsValue> {
        let unknown = || type_error("a packed record names a key not interned");
        let mut at = 0usize;
        let mut consumed = 0u32;
        for lens in layout.chunks_exact(3) {
            let end = at + lens[2] as usize;
            let Some(data) = packed.get(at..end) else {
                return Err(type_error("packed records run past their bytes"));
            };
            let pk = self.keys.get(lens[0] as usize).ok_or_else(unknown)?;
            let ehk = match lens[1] {
                NO_KEY => None,
                i => Some(self.keys.get(i as usize).ok_or_else(unknown)?.as_str()),
            };
            match self.inner.add(record(pk, data, ehk)) {
                Ok(None) => {}
                Ok(Some(done)) => {
                    self.done = Some(Aggregate::from(done));
                    return Ok(consumed + 1);
                }
                Err(e) => {
                    self.refused = Some(refused(&e, ehk));
                    return Ok(consumed);
                }
            }
            at = end;
            consumed += 1;
        }
        Ok(consumed)
    }

    /// Remembers a key for `addPacked`'s layout; returns its number.
    #[wasm_bindgen(js_name = internKey)]
    pub fn intern_key(&mut self, key: String) -> u32 {
        self.keys.push(key);
        (self.keys.len() - 1) as u32
    }

    /// Forgets every interned key (their numbers become unknown).
    #[wasm_bindgen(js_name = forgetKeys)]
    pub fn forget_keys(&mut self) {
        self.keys.clear();
    }

    /// The aggregate the last `addPacked` completed, once.
    #[wasm_bindgen(js_name = takeDone)]
    pub fn take_done(&mut self) -> Option<Aggregate> {
        self.done.take()
    }

    /// The error of the record the last `addPacked` refused, once.
    #[wasm_bindgen(js_name = takeRefused)]
    pub fn take_refused(&mut self) -> Option<JsValue> {
        self.refused.take()
    }

    /// Adds a user record to the current aggregate only: false, and nothing
    /// changes, when it does not fit there. Throws as `add` does for a
    /// record the library refuses for any other reason.
    #[wasm_bindgen(js_name = addIfFits)]
    pub fn add_if_fits(&mut self, pk: &str, data: &[u8], ehk: Option<String>) -> Result<bool, JsValue> {
        let r = record(pk, data, ehk.as_deref());
        let taken = self.inner.try_add(r).map_err(|r| r.error);
        room(taken, ehk.as_deref())
    }

    /// Whether `addIfFits` would take the record now: false when it fits
    /// only a later aggregate or none (too large alone). Throws for a
    /// record the library refuses for its keys.
    pub fn fits(&self, pk: &str, data: &[u8], ehk: Option<String>) -> Result<bool, JsValue> {
        let r = record(pk, data, ehk.as_deref());
        let checked = match self.inner.check(&r) {
            Err(ka::Error::RecordTooLarge { .. }) => Err(ka::Error::Full),
            other => other,
        };
        room(checked, ehk.as_deref())
    }

    /// Completes the current aggregate; undefined when it holds no record.
    pub fn flush(&mut self) -> Option<Aggregate> {
        self.inner.finish().map(Aggregate::from)
    }

    /// Bytes of the current aggregate's blob (0 when empty); Kinesis counts
    /// them plus the outer partition key's.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> usize {
        self.inner.encoded_len()
    }

    /// What `size` would be with one more record (throws for a record the
    /// library refuses).
    #[wasm_bindgen(js_name = sizeWith)]
    pub fn size_with(&self, pk: &str, data: &[u8], ehk: Option<String>) -> Result<usize, JsValue> {
        let r = record(pk, data, ehk.as_deref());
        self.inner
            .encoded_len_with(&r)
            .map_err(|e| refused(&e, ehk.as_deref()))
    }

    /// User records in the current aggregate.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.inner.record_count()
    }

    /// The size limit.
    #[wasm_bindgen(getter)]
    pub fn limit(&self) -> usize {
        self.inner.limit()
    }
}

/// A completed aggregate: one Kinesis record holding many user records.
#[wasm_bindgen]
pub struct Aggregate {
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: Vec<u8>,
    user_records: usize,
    shard_id: Option<String>,
}

impl From<ka::Aggregate> for Aggregate {
    fn from(a: ka::Aggregate) -> Self {
        Aggregate {
            partition_key: a.partition_key().into(),
            explicit_hash_key: a.explicit_hash_key().map(Into::into),
            user_records: a.record_count(),
            data: a.into_data(),
            shard_id: None,
        }
    }
}

impl From<ka::ShardAggregate> for Aggregate {
    fn from(a: ka::ShardAggregate) -> Self {
        let shard_id = Some(a.shard_id().into());
        Aggregate {
            shard_id,
            ..Aggregate::from(a.into_aggregate())
        }
    }
}

#[wasm_bindgen]
impl Aggregate {
    /// The partition key to put it with.
    #[wasm_bindgen(getter, js_name = partitionKey)]
    pub fn partition_key(&self) -> String {
        self.partition_key.clone()
    }

    /// The explicit hash key to put it with, when it has one.
    #[wasm_bindgen(getter, js_name = explicitHashKey)]
    pub fn explicit_hash_key(&self) -> Option<String> {
        self.explicit_hash_key.clone()
    }

    /// The record's data blob, taken out: it is given once (the
    /// JavaScript then owns it, and the aggregate holds none).
    #[wasm_bindgen(js_name = takeData)]
    pub fn take_data(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.data)
    }

    /// How many user records it holds.
    #[wasm_bindgen(getter, js_name = userRecords)]
    pub fn user_records(&self) -> usize {
        self.user_records
    }

    /// The shard it was aggregated for (shard-aware aggregation only).
    #[wasm_bindgen(getter, js_name = shardId)]
    pub fn shard_id(&self) -> Option<String> {
        self.shard_id.clone()
    }
}

/// The open shards of a stream and the hash keys each owns.
#[wasm_bindgen]
pub struct ShardMap {
    inner: ka::ShardMap,
}

/// A hash key as decimal text.
fn decimal(key: u128) -> String {
    let mut buf = [0u8; ka::HASH_KEY_MAX_DIGITS];
    ka::write_hash_key(key, &mut buf).into()
}

#[wasm_bindgen]
impl ShardMap {
    /// The map of the shards ListShards lists, given field by field (the
    /// JavaScript maps an answer's shapes onto these): closed shards are
    /// left out, open ones must not overlap.
    #[wasm_bindgen(js_name = fromListed)]
    pub fn from_listed(
        ids: Vec<String>,
        starts: Vec<String>,
        ends: Vec<String>,
        closed: Vec<u8>,
    ) -> Result<ShardMap, JsValue> {
        if starts.len() != ids.len() || ends.len() != ids.len() || closed.len() != ids.len() {
            return Err(type_error(
                "every shard needs an id, a range and whether it is closed",
            ));
        }
        let listed = (0..ids.len()).map(|i| ka::ListedShard {
            shard_id: &ids[i],
            starting_hash_key: &starts[i],
            ending_hash_key: &ends[i],
            closed: closed[i] != 0,
        });
        let inner = ka::ShardMap::from_listed(listed).map_err(|e| error(&e))?;
        Ok(ShardMap { inner })
    }

    /// The shard that owns a hash key (decimal), if any.
    pub fn route(&self, hash_key: &str) -> Result<Option<String>, JsValue> {
        let key = ka::parse_hash_key(hash_key).map_err(|e| error(&e))?;
        Ok(self.inner.route(key).map(|s| s.id.clone()))
    }

    /// The shard a record goes to: by its explicit hash key, else its
    /// partition key's MD5.
    #[wasm_bindgen(js_name = shardFor)]
    pub fn shard_for(&self, pk: &str, ehk: Option<String>) -> Result<Option<String>, JsValue> {
        let key = ka::effective_hash_key(pk, ehk.as_deref()).map_err(|e| refused(&e, ehk.as_deref()))?;
        Ok(self.inner.route(key).map(|s| s.id.clone()))
    }

    /// The shards as `[id, starting hash key, ending hash key, ...]`, in
    /// hash key order.
    pub fn shards(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(3 * self.inner.shards().len());
        for s in self.inner.shards() {
            out.push(s.id.clone());
            out.push(decimal(s.range.start));
            out.push(decimal(s.range.end));
        }
        out
    }
}

/// Aggregation per shard: each aggregate holds records of one shard only,
/// so that the KCL (which drops an aggregate holding a record outside its
/// shard) keeps them all.
#[wasm_bindgen]
pub struct ShardedAggregator {
    inner: ka::ShardedAggregator,
}

#[wasm_bindgen]
impl ShardedAggregator {
    /// An aggregator for these shards, each aggregate within `limit`.
    #[wasm_bindgen(constructor)]
    pub fn new(map: &ShardMap, limit: f64) -> Result<ShardedAggregator, JsValue> {
        let inner =
            ka::ShardedAggregator::with_limit(map.inner.clone(), whole(limit)?).map_err(|e| error(&e))?;
        Ok(ShardedAggregator { inner })
    }

    /// Adds a user record to its shard's aggregate: the aggregates it
    /// completed (its shard's previous one when it did not fit). Throws,
    /// changing nothing, for an invalid record, one too large alone, or a
    /// hash key no shard owns.
    pub fn add(&mut self, pk: &str, data: &[u8], ehk: Option<String>) -> Result<Vec<Aggregate>, JsValue> {
        let r = record(pk, data, ehk.as_deref());
        match self.inner.add(r) {
            Ok(done) => Ok(done.into_iter().map(Aggregate::from).collect()),
            Err(e) => Err(refused(&e, ehk.as_deref())),
        }
    }

    /// Completes every shard's aggregate.
    pub fn flush(&mut self) -> Vec<Aggregate> {
        self.inner.finish_all().into_iter().map(Aggregate::from).collect()
    }

    /// Completes the aggregate buffered longest, if any.
    #[wasm_bindgen(js_name = flushOldest)]
    pub fn flush_oldest(&mut self) -> Option<Aggregate> {
        self.inner.finish_oldest().map(Aggregate::from)
    }

    /// Bytes buffered in every shard's aggregate.
    #[wasm_bindgen(getter, js_name = bufferedBytes)]
    pub fn buffered_bytes(&self) -> usize {
        self.inner.buffered_bytes()
    }

    /// User records buffered.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.inner.record_count()
    }
}

/// The library's limits, by name: `[DEFAULT_LIMIT, MIN_LIMIT, MAX_LIMIT]`.
#[wasm_bindgen]
pub fn limits() -> Vec<u32> {
    vec![
        ka::DEFAULT_LIMIT as u32,
        ka::MIN_LIMIT as u32,
        ka::MAX_LIMIT as u32,
    ]
}
