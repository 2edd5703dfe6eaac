// The WebAssembly core, loaded synchronously from bytes built into this
// file, and the helpers both APIs share: reading a blob into user records
// whose data are views of the input, keys decoded once per aggregate, and
// the library's errors as DeaggregationError.
import wasmBytes from '../pkg/kinesis_agg_js_bg.wasm';
import {
  initSync,
  read,
  readMany,
  paddedSpan,
  limits,
  Aggregator as WasmAggregator,
  ShardMap as WasmShardMap,
  ShardedAggregator as WasmShardedAggregator,
} from '../pkg/kinesis_agg_js.js';

const wasm = initSync({ module: wasmBytes });

export { WasmAggregator, WasmShardMap, WasmShardedAggregator };

const [DEFAULT_LIMIT, MIN_LIMIT, MAX_LIMIT] = limits();
export { DEFAULT_LIMIT, MIN_LIMIT, MAX_LIMIT };

/** Marks a user record without an explicit hash key in the read table. */
export const NO_KEY = 0xffffffff;

/** Why a blob is a plain record, by the core's reason number. */
export const PLAIN_REASONS = ['noMagic', 'tooShort', 'checksumMismatch', 'unparsable'];

/**
 * An aggregated record whose checksum is right (or not verified) but
 * whose body is broken. Thrown before any user record is returned.
 */
export class DeaggregationError extends Error {
  constructor(message, offset, code) {
    super(message);
    this.name = 'DeaggregationError';
    /** The byte offset in the blob where the body breaks, when known. */
    this.offset = offset;
    /** Why, as the message says it. */
    this.reason = message;
    /** The library's error by name (such as 'MissingField'). */
    this.code = code;
  }
}

const POLICIES = { verify: 0, skip: 1, strict: 2 };

/** The checksum policy's number: 'verify' (the default), 'skip', 'strict'. */
export function policyOf(checksum) {
  if (checksum === undefined) return 0;
  const p = POLICIES[checksum];
  if (p === undefined || typeof checksum !== 'string') {
    throw new TypeError("checksum must be 'verify', 'skip' or 'strict', not " + String(checksum));
  }
  return p;
}

const utf8 = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

/** Whether a string is well-formed UTF-16 (no lone surrogate), so that
 * its UTF-8 bytes say exactly what it says. */
function wellFormed(s) {
  if (typeof s.isWellFormed === 'function') return s.isWellFormed();
  return !/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''));
}

/** A key argument: a well-formed string, else a TypeError naming it. */
export function keyArg(s, what) {
  if (typeof s !== 'string') throw new TypeError(what + ' must be a string');
  if (!wellFormed(s)) throw new TypeError(what + ' holds a lone surrogate, which UTF-8 cannot carry');
  return s;
}

/** A string's UTF-8 bytes. */
export function encodeUtf8(s) {
  return utf8Encoder.encode(s);
}

/** Bytes as the core takes them: a Uint8Array (a Buffer is one), an
 * ArrayBuffer or another typed array's view of its bytes. */
export function asBytes(data, what) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(what + ' must be a Uint8Array, Buffer or ArrayBuffer');
}

/** Short ASCII keys are decoded without a TextDecoder call. */
function key(blob, at, len) {
  if (len <= 64) {
    let s = '';
    for (let i = at; i < at + len; i++) {
      const c = blob[i];
      if (c >= 0x80) return utf8.decode(blob.subarray(at, at + len));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return utf8.decode(blob.subarray(at, at + len));
}

/**
 * Reads a blob with the core: `{ plain }` (why it is a plain record) for a
 * plain record, else the aggregate's key tables and its records' table:
 * `{ pks, ehks, t, first, count }`, record r's partition key index at
 * `t[first + 4r]`, its explicit hash key index (NO_KEY for none) at
 * `+ 1`, its data's offset and length in the blob at `+ 2` and `+ 3`.
 * The whole body is validated first: a broken one throws
 * DeaggregationError and nothing is read. Each API builds its own records
 * from this in its own loop (one shape per loop keeps them fast).
 */
export function readBlob(blob, policy, pad = false) {
  let t;
  try {
    t = read(blob, policy, pad);
  } catch (e) {
    if (e instanceof Error && 'reason' in e) throw new DeaggregationError(e.message, e.offset, e.code);
    throw e;
  }
  return described(blob, t, 0);
}

/**
 * The base64 of each user record's data of the aggregate last read with
 * `pad` (`{ t, first, count }` as readBlob returns it), or undefined where
 * there is no Buffer (browsers). One base64 encoding of all the data laid
 * out by the core at 3-byte boundaries, then a slice of it a record: a
 * fraction of what a Buffer.toString call a record costs. A slice keeps
 * the whole string alive while it lives (about 1.4 times the aggregate).
 */
export function base64Records({ t, first, count }) {
  if (typeof Buffer !== 'function') return undefined;
  const [at, length] = paddedSpan();
  // A view of the WebAssembly memory, read before any other call into it.
  const all = Buffer.from(wasm.memory.buffer, at, length).toString('base64');
  const out = new Array(count);
  for (let r = 0, i = first + 3, c = 0; r < count; r++, i += 4) {
    const len = t[i];
    const chars = Math.ceil(len / 3) * 4;
    const rem = len % 3;
    // The padding's zero bytes encode as 'A': the last group's one or two
    // such characters become '='.
    out[r] = rem === 0 ? all.substring(c, c + chars) : all.substring(c, c + chars - 3 + rem) + (rem === 1 ? '==' : '=');
    c += chars;
  }
  return out;
}

/** A blob's description at `t[i]` (read's or readMany's), its positions
 * in `base`: as readBlob returns it. */
function described(base, t, i) {
  if (t[i] === 0) return { plain: PLAIN_REASONS[t[i + 1]], pks: undefined, ehks: undefined, t, first: 0, count: 0 };
  const nPk = t[i + 1];
  const nEhk = t[i + 2];
  const pks = new Array(nPk);
  const ehks = new Array(nEhk);
  i += 3;
  for (let k = 0; k < nPk; k++, i += 2) pks[k] = key(base, t[i], t[i + 1]);
  for (let k = 0; k < nEhk; k++, i += 2) ehks[k] = key(base, t[i], t[i + 1]);
  return { plain: undefined, pks, ehks, t, first: i + 1, count: t[i] };
}

/**
 * Reads many blobs, a broken one not stopping the others. For each, in
 * order: `{ blob, base, read }` (read as readBlob returns it, its positions
 * in `base`) or `{ blob, base, broken }` (the DeaggregationError of a blob
 * whose body is broken). The blobs are copied into one buffer and read
 * together in the core, their MD5s side by side.
 */
export function readBlobs(blobs, policy) {
  let total = 0;
  for (const b of blobs) total += b.length;
  const all = new Uint8Array(total);
  const ends = new Uint32Array(blobs.length);
  let at = 0;
  blobs.forEach((b, i) => {
    all.set(b, at);
    at += b.length;
    ends[i] = at;
  });
  return readAll(all, ends, policy);
}

/**
 * Reads many blobs given in base64 (as a Lambda event holds them), as
 * readBlobs does: with Node's Buffer, decoded straight into one buffer.
 */
export function readBase64Blobs(texts, policy) {
  if (typeof Buffer !== 'function' || !texts.every((s) => typeof s === 'string')) {
    // Bytes given in place of text are taken as they are.
    return readBlobs(
      texts.map((s) => (typeof s === 'string' ? fromBase64(s) : asBytes(s, 'data'))),
      policy,
    );
  }
  let total = 0;
  for (const s of texts) total += Buffer.byteLength(s, 'base64');
  const all = Buffer.allocUnsafe(total);
  const ends = new Uint32Array(texts.length);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    at += all.write(texts[i], at, 'base64');
    ends[i] = at;
  }
  // The length counted from the text can exceed the bytes (characters
  // base64 skips): the rest of the buffer, which records' views share,
  // holds zeros rather than whatever the memory held.
  all.fill(0, at);
  return readAll(all.subarray(0, at), ends, policy);
}

/** readBlobs on blobs laid one after another in `all`, blob i ending at `ends[i]`. */
function readAll(all, ends, policy) {
  const t = readMany(all, ends, policy);
  const out = new Array(ends.length);
  for (let i = 0, j = 0, start = 0; i < ends.length; start = ends[i], j += t[j] + 1, i++) {
    const blob = all.subarray(start, ends[i]);
    if (t[j + 1] !== 2) {
      out[i] = { blob, base: all, read: described(all, t, j + 1), broken: undefined };
      continue;
    }
    // The error, with its offset, from the blob read alone.
    try {
      readBlob(blob, policy);
      throw new Error('internal: a broken blob read alone');
    } catch (e) {
      if (!(e instanceof DeaggregationError)) throw e;
      out[i] = { blob, base: all, read: undefined, broken: e };
    }
  }
  return out;
}

/** Records a pack holds before it crosses into the core. */
const PACK_RECORDS = 256;

/** Interned keys past which a pack, once fed, forgets them all. */
const KEYS_KEPT = 4096;

/**
 * The keys a WasmAggregator has interned for its packs (key to number),
 * and how many of its packs are in use: they are forgotten only when one
 * pack alone is, so that no pack holds numbers that are no longer known.
 */
export function packKeys() {
  return { ids: new Map(), active: 0 };
}

/**
 * User records packed for one crossing into the core
 * (`Aggregator.addPacked`): each distinct key passed (and checked) once
 * and then named by number, data copied, three numbers a record. `feed`
 * hands the pack to the aggregator and answers what it stops at in order.
 */
export class Packer {
  constructor(core, keys) {
    this.core = core;
    this.keys = keys;
    this.bytes = new Uint8Array(1 << 16);
    this.layout = new Uint32Array(3 * PACK_RECORDS);
    this.starts = new Uint32Array(PACK_RECORDS + 1);
    this.records = 0;
    this.used = 0;
    /** Whether an aggregateRecords call is using it. */
    this.busy = false;
  }

  /** A key's number, the key checked as keyArg checks it the first time. */
  keyId(s, what) {
    let id = this.keys.ids.get(s);
    if (id === undefined) {
      id = this.core.internKey(keyArg(s, what));
      this.keys.ids.set(s, id);
    }
    return id;
  }

  /** Whether the pack is full (feed it before pushing more). */
  get full() {
    return this.records === PACK_RECORDS;
  }

  /** Appends a record: its keys' numbers (`ehk` NO_KEY for none) and its
   * data, bytes or a string to write as UTF-8. */
  push(pk, ehk, data) {
    const need = this.used + (typeof data === 'string' ? 3 * data.length : data.length);
    if (need > this.bytes.length) {
      const bigger = new Uint8Array(Math.max(2 * this.bytes.length, need));
      bigger.set(this.bytes.subarray(0, this.used));
      this.bytes = bigger;
    }
    const l = 3 * this.records;
    this.layout[l] = pk;
    this.layout[l + 1] = ehk;
    let n;
    if (typeof data === 'string') {
      n = utf8Encoder.encodeInto(data, this.bytes.subarray(this.used)).written;
    } else {
      this.bytes.set(data, this.used);
      n = data.length;
    }
    this.layout[l + 2] = n;
    this.used += n;
    this.records += 1;
    this.starts[this.records] = this.used;
  }

  /**
   * Adds the packed records to the aggregator in order and empties the
   * pack: `onDone(aggregate)` for each aggregate a record completes,
   * `onRefused(err)` for each record the core refuses, each when add()
   * would have given it.
   */
  feed(onDone, onRefused) {
    const core = this.core;
    let r = 0;
    while (r < this.records) {
      const n = core.addPacked(this.bytes.subarray(this.starts[r], this.used), this.layout.subarray(3 * r, 3 * this.records));
      r += n;
      const done = core.takeDone();
      if (done !== undefined) {
        onDone(done);
        continue;
      }
      const refused = core.takeRefused();
      if (refused !== undefined) {
        r += 1;
        onRefused(refused);
      } else if (r < this.records) {
        throw new Error('internal: the core stopped without a reason');
      }
    }
    this.clear();
    if (this.keys.active === 1 && this.keys.ids.size > KEYS_KEPT) {
      this.keys.ids.clear();
      core.forgetKeys();
    }
  }

  /** Empties the pack. */
  clear() {
    this.records = 0;
    this.used = 0;
  }
}

/** An explicit hash key by its index in the read table. */
export function ehkAt(ehks, e) {
  return e === NO_KEY ? undefined : ehks[e];
}

/** Base64 to bytes, with Node's Buffer where there is one. */
export function fromBase64(s) {
  if (typeof Buffer === 'function') return Buffer.from(s, 'base64');
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Bytes to base64, with Node's Buffer where there is one. */
export function toBase64(bytes) {
  if (typeof Buffer === 'function') {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  }
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}
