// The modern API: the same shape as the Python package's.
import {
  DEFAULT_LIMIT,
  DeaggregationError,
  MAX_LIMIT,
  MIN_LIMIT,
  WasmAggregator,
  WasmShardMap,
  WasmShardedAggregator,
  asBytes,
  ehkAt,
  encodeUtf8,
  keyArg,
  policyOf,
  readBlob,
  readBase64Blobs,
} from './core.js';

export { DEFAULT_LIMIT, MAX_LIMIT, MIN_LIMIT, DeaggregationError };

/**
 * The user records of one Kinesis record's data: an aggregate's, in order,
 * or the blob itself as one record with `aggregated: false`. `data` is a
 * view of `bytes`, not a copy.
 */
export function deaggregate(bytes, options = {}) {
  const blob = asBytes(bytes, 'bytes');
  const read = readBlob(blob, policyOf(options.checksum));
  if (read.plain !== undefined) {
    return [{ partitionKey: options.partitionKey, explicitHashKey: undefined, data: blob, subSequenceNumber: undefined, aggregated: false }];
  }
  return userRecords(blob, read);
}

/** The user records of an aggregate read by readBlob. */
function userRecords(blob, { pks, ehks, t, first, count }) {
  const out = new Array(count);
  // Plain Uint8Array views: a Buffer's subarray makes a Buffer, through
  // its species constructor, at about twice the cost.
  const { buffer, byteOffset } = blob;
  for (let r = 0, i = first; r < count; r++, i += 4) {
    out[r] = {
      partitionKey: pks[t[i]],
      explicitHashKey: ehkAt(ehks, t[i + 1]),
      data: new Uint8Array(buffer, byteOffset + t[i + 2], t[i + 3]),
      subSequenceNumber: r,
      aggregated: true,
    };
  }
  return out;
}

/** Data as bytes: a string is encoded as UTF-8. */
function dataBytes(data) {
  return typeof data === 'string' ? encodeUtf8(data) : asBytes(data, 'data');
}

function optionalKey(explicitHashKey) {
  if (explicitHashKey === undefined || explicitHashKey === null) return undefined;
  return keyArg(explicitHashKey, 'explicitHashKey');
}

function partitionKeyOf(partitionKey) {
  return keyArg(partitionKey, 'partitionKey');
}

/** A completed aggregate: one Kinesis record holding many user records. */
export class Aggregate {
  constructor(partitionKey, explicitHashKey, data, userRecords, shardId) {
    /** The partition key to put it with. */
    this.partitionKey = partitionKey;
    /** The explicit hash key to put it with, or undefined. */
    this.explicitHashKey = explicitHashKey;
    /** The record's data blob. */
    this.data = data;
    /** How many user records it holds. */
    this.userRecords = userRecords;
    /** The shard it was aggregated for (ShardedAggregator), else undefined. */
    this.shardId = shardId;
  }

  /** What Kinesis counts against its record size limit: the data plus
   * the partition key's UTF-8 bytes. */
  get countedSize() {
    return this.data.length + encodeUtf8(this.partitionKey).length;
  }

  /** The entry PutRecords takes (`@aws-sdk/client-kinesis`). */
  putRecordsEntry() {
    const e = { Data: this.data, PartitionKey: this.partitionKey };
    if (this.explicitHashKey !== undefined) e.ExplicitHashKey = this.explicitHashKey;
    return e;
  }
}

/** Takes the core's aggregate into a plain object and frees it. */
export function fromCore(a) {
  if (a === undefined) return undefined;
  try {
    return new Aggregate(a.partitionKey, a.explicitHashKey, a.takeData(), a.userRecords, a.shardId);
  } finally {
    a.free();
  }
}

/** User records in, aggregates out, each within `limit` bytes as Kinesis
 * counts a record (1 MiB by default, up to 10 MiB). */
export class Aggregator {
  constructor(options = {}) {
    const limit = options.limit === undefined ? DEFAULT_LIMIT : options.limit;
    if (typeof limit !== 'number') throw new TypeError('limit must be a number');
    this._core = new WasmAggregator(limit);
  }

  /** Adds a user record; returns the completed aggregate when the current
   * one could not take it (the record then starts the next), else
   * undefined. Throws, changing nothing, for a record that is invalid or
   * too large to fit even alone. */
  add(partitionKey, data, explicitHashKey) {
    return fromCore(this._core.add(partitionKeyOf(partitionKey), dataBytes(data), optionalKey(explicitHashKey)));
  }

  /** Completes the current aggregate; undefined when it is empty. */
  flush() {
    return fromCore(this._core.flush());
  }

  /** Bytes the current aggregate counts against the limit. */
  get size() {
    return this._core.size;
  }

  /** What `size` would be with one more record. */
  sizeWith(partitionKey, data, explicitHashKey) {
    return this._core.sizeWith(partitionKeyOf(partitionKey), dataBytes(data), optionalKey(explicitHashKey));
  }

  /** User records in the current aggregate. */
  get length() {
    return this._core.length;
  }

  /** The size limit. */
  get limit() {
    return this._core.limit;
  }
}

/** A hash key as the core takes it: decimal text (a bigint or a safe
 * integer is written so). */
function hashKeyText(key) {
  if (typeof key === 'bigint' || (typeof key === 'number' && Number.isSafeInteger(key))) return key.toString();
  if (typeof key !== 'string') throw new TypeError('a hash key is decimal text or a bigint');
  return key;
}

/** The open shards of a stream and the hash keys each owns. */
export class ShardMap {
  constructor(core) {
    this._core = core;
  }

  /**
   * The map of a ListShards answer (`@aws-sdk/client-kinesis`'s
   * `ListShardsCommand` output, or what `aws kinesis list-shards` prints),
   * or of its `Shards` array. Closed shards (with an
   * `EndingSequenceNumber`) are left out; the open ones must not overlap.
   * Give every page of a paginated answer.
   */
  static fromListShards(answer) {
    const shards = Array.isArray(answer) ? answer : answer && answer.Shards;
    if (!Array.isArray(shards)) throw new TypeError('a ListShards answer has a Shards array');
    const ids = [];
    const starts = [];
    const ends = [];
    const closed = new Uint8Array(shards.length);
    shards.forEach((s, i) => {
      ids.push(String(s.ShardId));
      starts.push(String(s.HashKeyRange && s.HashKeyRange.StartingHashKey));
      ends.push(String(s.HashKeyRange && s.HashKeyRange.EndingHashKey));
      closed[i] = s.SequenceNumberRange && s.SequenceNumberRange.EndingSequenceNumber !== undefined ? 1 : 0;
    });
    return new ShardMap(WasmShardMap.fromListed(ids, starts, ends, closed));
  }

  /** The shard that owns a hash key (decimal text or a bigint), if any. */
  route(hashKey) {
    return this._core.route(hashKeyText(hashKey));
  }

  /** The shard a record goes to: by its explicit hash key, else by its
   * partition key's MD5. */
  shardFor(partitionKey, explicitHashKey) {
    return this._core.shardFor(partitionKeyOf(partitionKey), optionalKey(explicitHashKey));
  }

  /** The open shards in hash key order: `{ shardId, startingHashKey,
   * endingHashKey }`, the keys as decimal text. */
  get shards() {
    const flat = this._core.shards();
    const out = [];
    for (let i = 0; i < flat.length; i += 3) {
      out.push({ shardId: flat[i], startingHashKey: flat[i + 1], endingHashKey: flat[i + 2] });
    }
    return out;
  }
}

/**
 * Aggregation per shard: every aggregate holds records of one shard only,
 * so that the KCL, which drops a whole aggregate holding a record outside
 * its shard, keeps them all. Each aggregate names its shard (`shardId`).
 */
export class ShardedAggregator {
  constructor(shardMap, options = {}) {
    if (!(shardMap instanceof ShardMap)) throw new TypeError('a ShardMap is needed');
    const limit = options.limit === undefined ? DEFAULT_LIMIT : options.limit;
    if (typeof limit !== 'number') throw new TypeError('limit must be a number');
    this._core = new WasmShardedAggregator(shardMap._core, limit);
  }

  /** Adds a user record to its shard's aggregate; returns the aggregates
   * this completed (usually none). Throws, changing nothing, for an
   * invalid record, one too large alone, or a hash key no shard owns. */
  add(partitionKey, data, explicitHashKey) {
    return this._core.add(partitionKeyOf(partitionKey), dataBytes(data), optionalKey(explicitHashKey)).map(fromCore);
  }

  /** Completes every shard's aggregate. */
  flush() {
    return this._core.flush().map(fromCore);
  }

  /** Completes the aggregate buffered longest; undefined when none is. */
  flushOldest() {
    return fromCore(this._core.flushOldest());
  }

  /** Bytes buffered across the shards' aggregates. */
  get bufferedBytes() {
    return this._core.bufferedBytes;
  }

  /** User records buffered. */
  get length() {
    return this._core.length;
  }
}

/**
 * The user records of a Lambda Kinesis event (or of its `Records` array),
 * in order, each with its outer record's `sequenceNumber` and the event
 * record as `record`.
 *
 * An aggregate whose body is broken ends the batch there: the records
 * before it are returned and its sequence number is the one entry of
 * `batchItemFailures`, the answer a function with ReportBatchItemFailures
 * gives so that Lambda retries from that record and skips none. With
 * `onInvalid: 'pass'` it is returned as one plain record instead.
 */
export function lambdaUserRecords(event, options = {}) {
  const records = Array.isArray(event) ? event : event.Records;
  const policy = policyOf(options.checksum);
  const onInvalid = options.onInvalid === undefined ? 'fail' : options.onInvalid;
  if (onInvalid !== 'fail' && onInvalid !== 'pass') throw new TypeError("onInvalid must be 'fail' or 'pass'");
  const texts = records.map((r, n) => {
    const data = r?.kinesis?.data;
    if (typeof data !== 'string' && !ArrayBuffer.isView(data) && !(data instanceof ArrayBuffer)) {
      throw new TypeError(`event record ${n} has no kinesis.data (base64 text)`);
    }
    return data;
  });
  const reads = readBase64Blobs(texts, policy);
  const out = [];
  for (let n = 0; n < records.length; n++) {
    const record = records[n];
    const k = record.kinesis;
    const sequenceNumber = k.sequenceNumber;
    const { blob, base, read, broken } = reads[n];
    if (broken !== undefined && onInvalid !== 'pass') {
      return { records: out, batchItemFailures: [{ itemIdentifier: sequenceNumber }] };
    }
    if (broken !== undefined || read.plain !== undefined) {
      out.push({
        partitionKey: k.partitionKey,
        explicitHashKey: undefined,
        data: blob,
        subSequenceNumber: undefined,
        aggregated: false,
        sequenceNumber,
        record,
      });
      continue;
    }
    const { pks, ehks, t, first, count } = read;
    const { buffer, byteOffset } = base;
    for (let r = 0, i = first; r < count; r++, i += 4) {
      out.push({
        partitionKey: pks[t[i]],
        explicitHashKey: ehkAt(ehks, t[i + 1]),
        data: new Uint8Array(buffer, byteOffset + t[i + 2], t[i + 3]),
        subSequenceNumber: r,
        aggregated: true,
        sequenceNumber,
        record,
      });
    }
  }
  return { records: out, batchItemFailures: [] };
}
