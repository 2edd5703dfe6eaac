// The drop-in for the aws-kinesis-agg module: its functions, callbacks,
// record shapes and field names, on the core. The deliberate differences
// (each a bug of the reference's or a record Kinesis would refuse) are
// listed in README.md.
import { DEFAULT_LIMIT, NO_KEY, Packer, WasmAggregator, base64Records, ehkAt, encodeUtf8, fromBase64, keyArg, packKeys, readBlob, toBase64 } from './core.js';

const HAS_BUFFER = typeof Buffer === 'function';

/** A record's fields in camelCase, whichever case it came in (Lambda's
 * records are camelCase, the AWS SDK v3's PascalCase). */
function camel(record) {
  const out = {};
  for (const k of Object.keys(record)) out[k.charAt(0).toLowerCase() + k.slice(1)] = record[k];
  return out;
}

/** A record's fields in PascalCase, for a caller that gave PascalCase. */
function pascal(record) {
  const out = {};
  for (const k of Object.keys(record)) out[k.charAt(0).toUpperCase() + k.slice(1)] = record[k];
  return out;
}

/** A record's data as bytes: base64 text (as Lambda gives it) or bytes. */
function blobOf(data) {
  if (typeof data === 'string') return fromBase64(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('the record has no data');
}

/** Base64 of a range of `blob`, where there is no Buffer (see
 * base64Records). */
function base64Of(blob) {
  return (start, end) => toBase64(blob.subarray(start, end));
}

/**
 * Deaggregates one Kinesis record (Lambda's camelCase shape, or the SDK
 * v3's PascalCase one, answered in kind): `perRecordCallback(null,
 * userRecord)` for each user record, then `afterRecordCallback()`. A
 * broken aggregate calls `afterRecordCallback(err)` before any user
 * record. A record that is not an aggregate (including one with the magic
 * bytes and a wrong checksum, as the KCL reads it) is given whole.
 */
export function deaggregate(kinesisRecord, computeChecksums, perRecordCallback, afterRecordCallback) {
  const v3 = typeof kinesisRecord.Data !== 'undefined';
  const r = v3 ? camel(kinesisRecord) : kinesisRecord;
  let blob;
  let read;
  try {
    blob = blobOf(r.data);
    read = readBlob(blob, computeChecksums === true ? 0 : 1, HAS_BUFFER);
  } catch (e) {
    afterRecordCallback(e);
    return;
  }
  if (read.plain !== undefined) {
    const whole = { partitionKey: r.partitionKey, explicitPartitionKey: r.explicitPartitionKey, sequenceNumber: r.sequenceNumber, data: r.data };
    perRecordCallback(null, v3 ? pascal(whole) : whole);
  } else {
    const { pks, ehks, t, first, count } = read;
    const datas = base64Records(read);
    const b64 = datas === undefined ? base64Of(blob) : undefined;
    const sequenceNumber = r.sequenceNumber;
    // All built before the first callback: a callback that throws cannot
    // leave the others half-delivered by this function.
    const users = new Array(count);
    for (let k = 0, i = first; k < count; k++, i += 4) {
      const at = t[i + 2];
      const u = {
        partitionKey: pks[t[i]],
        explicitPartitionKey: ehkAt(ehks, t[i + 1]),
        sequenceNumber,
        subSequenceNumber: k,
        data: datas !== undefined ? datas[k] : b64(at, at + t[i + 3]),
      };
      users[k] = v3 ? pascal(u) : u;
    }
    for (let k = 0; k < count; k++) perRecordCallback(null, users[k]);
  }
  afterRecordCallback();
}

/**
 * Deaggregates one Kinesis record: `afterRecordCallback(null,
 * userRecords)`, or `afterRecordCallback(err)` for a broken aggregate
 * (no user record is given then).
 */
export function deaggregateSync(kinesisRecord, computeChecksums, afterRecordCallback) {
  const userRecords = [];
  deaggregate(
    kinesisRecord,
    computeChecksums,
    (err, userRecord) => {
      userRecords.push(userRecord);
    },
    (err) => {
      if (err) afterRecordCallback(err);
      else afterRecordCallback(null, userRecords);
    },
  );
}

/** A user record's key and hash key as strings (the hash key undefined
 * when it has none) and its data as given (a string is written as UTF-8),
 * whichever case they came in; throws for a record without data or key. */
function rawFieldsOf(record) {
  const partitionKey = record.partitionKey !== undefined ? record.partitionKey : record.PartitionKey;
  const explicitHashKey = record.explicitHashKey !== undefined ? record.explicitHashKey : record.ExplicitHashKey;
  const data = record.data !== undefined ? record.data : record.Data;
  if (!data) throw new Error('Record.Data field is mandatory');
  if (!partitionKey) throw new Error('record.partitionKey field is mandatory');
  return [String(partitionKey), hashKeyString(explicitHashKey), typeof data === 'string' ? data : blobOf(data)];
}

/** A user record's key, hash key and data as the core takes them. */
function fieldsOf(record) {
  const [pk, ehk, data] = rawFieldsOf(record);
  const bytes = typeof data === 'string' ? encodeUtf8(data) : data;
  return [keyArg(pk, 'partitionKey'), bytes, ehk === undefined ? undefined : keyArg(ehk, 'explicitHashKey')];
}

/** An explicit hash key as a string: absent only when undefined
 * or null (so `0` and `''` are keys, the first kept and the second
 * refused, never dropped); a number or bigint as its decimal string, a
 * number only while it is exact (a safe integer). */
function hashKeyString(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new Error(
      `explicit hash key ${value} refused: a number is exact only as an integer up to 2^53-1; give the key as a decimal string`,
    );
  }
  return String(value);
}

/** Node's Buffer over the bytes where there is one, else the bytes. */
function buffer(bytes) {
  return typeof Buffer === 'function' ? Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) : bytes;
}

/** The reference's encoded record: `{partitionKey, data}` and, when the
 * aggregate has one, `ExplicitHashKey`. */
function encoded(a) {
  if (a === undefined) return undefined;
  try {
    const out = { partitionKey: a.partitionKey, data: buffer(a.takeData()) };
    const ehk = a.explicitHashKey;
    if (ehk !== undefined) out.ExplicitHashKey = ehk;
    return out;
  } finally {
    a.free();
  }
}

/**
 * Builds aggregated records of at most 1 MiB as Kinesis counts them.
 * `onReadyCallback(err, encodedRecord)` receives each completed one.
 */
export function RecordAggregator(onReadyCallback) {
  this.onReadyCallback = onReadyCallback;
  this._core = new WasmAggregator(DEFAULT_LIMIT);
  this._keys = packKeys();
}

/** Sets the callback when one is given; returns the current one. */
RecordAggregator.prototype.setOnReadyCallback = function (onReadyCallback) {
  if (onReadyCallback) this.onReadyCallback = onReadyCallback;
  return this.onReadyCallback;
};

/** Drops the records buffered so far. */
RecordAggregator.prototype.clearRecords = function () {
  const dropped = this._core.flush();
  if (dropped !== undefined) dropped.free();
};

/** Gives the buffered records to the callback as one encoded record
 * (undefined when there is none) and empties the aggregator. */
RecordAggregator.prototype.flushBufferedRecords = function (onReadyCallback) {
  const cb = onReadyCallback || this.onReadyCallback;
  const done = encoded(this._core.flush());
  if (cb) cb(null, done);
};

/** The buffered records as one encoded record (undefined when there is
 * none); empties the aggregator. */
RecordAggregator.prototype.build = function () {
  return encoded(this._core.flush());
};

/** How many records are buffered. */
RecordAggregator.prototype.length = function () {
  return this._core.length;
};

/** The bytes a record adds to the buffered aggregate, as Kinesis counts
 * them (the first record's include the envelope and the outer key). */
RecordAggregator.prototype.calculateUserRecordSize = function (record) {
  const [pk, data, ehk] = fieldsOf(record);
  return this._core.sizeWith(pk, data, ehk) - this._core.size;
};

/** Whether a record fits in the buffered aggregate. */
RecordAggregator.prototype.checkIfUserRecordFits = function (record) {
  const [pk, data, ehk] = fieldsOf(record);
  return this._core.fits(pk, data, ehk);
};

/** Adds a record; throws "record won't fit" when the buffered aggregate
 * cannot take it (a later one can), and the library's error when no
 * aggregate can or the record is invalid. */
RecordAggregator.prototype.addUserRecord = function (record) {
  const [pk, data, ehk] = fieldsOf(record);
  if (!this._core.addIfFits(pk, data, ehk)) throw new Error("record won't fit");
};

/**
 * Adds each record, giving each completed aggregate to the callback; an
 * invalid record's error goes to the callback and the others go on. With
 * `forceFlush`, the last aggregate is given too.
 */
RecordAggregator.prototype.aggregateRecords = function (records, forceFlush, onReadyCallback) {
  const cb = onReadyCallback || this.onReadyCallback;
  const onDone = (done) => {
    if (cb) cb(null, encoded(done));
    else done.free();
  };
  const onRefused = (err) => {
    if (cb) cb(err);
  };
  // Records cross into the core a pack at a time; a record refused here
  // (its fields) is answered after the records before it. A callback that
  // aggregates more with this aggregator gets a pack of its own; one that
  // throws leaves what was not yet added out, as add() one by one would.
  const pack = this._pack !== undefined && !this._pack.busy ? this._pack : (this._pack = new Packer(this._core, this._keys));
  pack.busy = true;
  this._keys.active += 1;
  const noKey = NO_KEY; // a local: one load a call, not one a record
  try {
    for (const record of records) {
      try {
        const [pk, ehk, data] = rawFieldsOf(record);
        pack.push(pack.keyId(pk, 'partitionKey'), ehk === undefined ? noKey : pack.keyId(ehk, 'explicitHashKey'), data);
      } catch (e) {
        pack.feed(onDone, onRefused);
        onRefused(e);
        continue;
      }
      if (pack.full) pack.feed(onDone, onRefused);
    }
    pack.feed(onDone, onRefused);
  } finally {
    pack.clear();
    pack.busy = false;
    this._keys.active -= 1;
  }
  if (forceFlush === true && this._core.length > 0) {
    const last = encoded(this._core.flush());
    if (cb) cb(null, last);
  }
};

/**
 * Aggregates `records` and hands each encoded record to
 * `encodedRecordHandler(encodedRecord, done)`, at most `queueSize` at a
 * time; `afterPutAggregatedRecords()` once every handler is done.
 * Errors (an invalid record, a handler's) go to `errorCallback(err,
 * data)`; with no record to send, `errorCallback(new Error('No records'))`.
 */
export function aggregate(records, encodedRecordHandler, afterPutAggregatedRecords, errorCallback, queueSize = 1) {
  const queue = [];
  let running = 0;
  let started = false;
  let finished = false;
  const next = () => {
    while (running < queueSize && queue.length > 0) {
      const item = queue.shift();
      running += 1;
      encodedRecordHandler(item, (err, result) => {
        if (err) errorCallback(err, result);
        running -= 1;
        next();
      });
    }
    if (running === 0 && queue.length === 0 && finished && started) {
      started = false;
      afterPutAggregatedRecords();
    }
  };
  const aggregator = new RecordAggregator((err, encodedRecord) => {
    if (err) {
      errorCallback(err, encodedRecord);
      return;
    }
    started = true;
    queue.push(encodedRecord);
  });
  aggregator.aggregateRecords(records, true);
  finished = true;
  if (!started) {
    errorCallback(new Error('No records'));
    afterPutAggregatedRecords();
    return;
  }
  next();
}
