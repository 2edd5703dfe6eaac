// kinesis-agg: KPL aggregated records on a Rust core compiled to WebAssembly.
import type { KinesisStreamEvent, KinesisStreamRecord } from './events';

export type {
  KinesisStreamBatchResponse,
  KinesisStreamEvent,
  KinesisStreamRecord,
  KinesisStreamRecordPayload,
} from './events';

/** 1 MiB: the default size limit of an aggregate, as Kinesis counts a record. */
export declare const DEFAULT_LIMIT: number;
/** The smallest limit an aggregator takes. */
export declare const MIN_LIMIT: number;
/** 10 MiB: the largest record a stream can take. */
export declare const MAX_LIMIT: number;

/** How a blob's MD5 trailer is treated: checked (a wrong one makes the
 * blob a plain record, as the KCL reads it), not checked, or checked with
 * a wrong one an error. */
export type Checksum = 'verify' | 'skip' | 'strict';

export interface DeaggregateOptions {
  /** Default 'verify'. */
  checksum?: Checksum;
  /** The partition key given to a plain record (the Kinesis record's own). */
  partitionKey?: string;
}

/** One user record. */
export interface UserRecord {
  partitionKey: string;
  /** Undefined when the record has none. */
  explicitHashKey: string | undefined;
  /** A view of the input bytes, not a copy. */
  data: Uint8Array;
  /** Its position in the aggregate; undefined for a plain record. */
  subSequenceNumber: number | undefined;
  /** False for a Kinesis record that is not an aggregate (given whole). */
  aggregated: boolean;
}

/** A broken aggregate, thrown before any of its records is returned. */
export declare class DeaggregationError extends Error {
  /** The byte offset in the blob where the body breaks, when known. */
  readonly offset: number | undefined;
  /** Why. */
  readonly reason: string;
  /** The error by name, such as 'MissingField'. */
  readonly code: string;
}

/** The user records of one Kinesis record's data, in order. */
export declare function deaggregate(
  bytes: Uint8Array | ArrayBuffer | ArrayBufferView,
  options?: DeaggregateOptions,
): UserRecord[];

/** A user record of a Lambda event, with its outer record. */
export interface LambdaUserRecord extends UserRecord {
  sequenceNumber: string;
  record: KinesisStreamRecord;
}

export interface LambdaOptions {
  checksum?: Checksum;
  /** 'fail' (default): a broken aggregate ends the batch there and is
   * reported in batchItemFailures; 'pass': it is given as a plain record. */
  onInvalid?: 'fail' | 'pass';
}

/** The user records of a Lambda Kinesis event, and the batch item failures
 * to answer with. */
export declare function lambdaUserRecords(
  event: KinesisStreamEvent | KinesisStreamRecord[],
  options?: LambdaOptions,
): { records: LambdaUserRecord[]; batchItemFailures: { itemIdentifier: string }[] };

/** The entry PutRecords takes (@aws-sdk/client-kinesis). */
export interface PutRecordsEntry {
  Data: Uint8Array;
  PartitionKey: string;
  ExplicitHashKey?: string;
}

/** A completed aggregate: one Kinesis record holding many user records. */
export declare class Aggregate {
  readonly partitionKey: string;
  readonly explicitHashKey: string | undefined;
  readonly data: Uint8Array;
  readonly userRecords: number;
  /** The shard it was aggregated for (ShardedAggregator), else undefined. */
  readonly shardId: string | undefined;
  /** The data plus the partition key's UTF-8 bytes. */
  readonly countedSize: number;
  putRecordsEntry(): PutRecordsEntry;
}

export interface AggregatorOptions {
  /** Bytes, as Kinesis counts a record; 1 MiB by default, up to 10 MiB. */
  limit?: number;
}

/** User records in, aggregates out. */
export declare class Aggregator {
  constructor(options?: AggregatorOptions);
  /** The completed aggregate when the current one could not take the
   * record (which then starts the next); throws for an invalid record or
   * one too large to fit alone, changing nothing. */
  add(partitionKey: string, data: Uint8Array | string, explicitHashKey?: string): Aggregate | undefined;
  /** Completes the current aggregate; undefined when empty. */
  flush(): Aggregate | undefined;
  /** What `size` would be with one more record. */
  sizeWith(partitionKey: string, data: Uint8Array | string, explicitHashKey?: string): number;
  /** Bytes of the current aggregate's blob (0 when empty). */
  readonly size: number;
  /** User records in the current aggregate. */
  readonly length: number;
  readonly limit: number;
}

/** One shard as ListShards lists it (the fields read here). */
export interface ListedShard {
  ShardId: string;
  HashKeyRange: { StartingHashKey: string; EndingHashKey: string };
  SequenceNumberRange?: { StartingSequenceNumber?: string; EndingSequenceNumber?: string };
}

/** The open shards of a stream and the hash keys each owns. */
export declare class ShardMap {
  private constructor();
  /** From a ListShards answer (or its Shards array): closed shards left out. */
  static fromListShards(answer: { Shards?: ListedShard[] } | ListedShard[]): ShardMap;
  /** The shard that owns a hash key, if any. */
  route(hashKey: string | bigint | number): string | undefined;
  /** The shard a record goes to. */
  shardFor(partitionKey: string, explicitHashKey?: string): string | undefined;
  readonly shards: { shardId: string; startingHashKey: string; endingHashKey: string }[];
}

/** Aggregation per shard: each aggregate holds one shard's records. */
export declare class ShardedAggregator {
  constructor(shardMap: ShardMap, options?: AggregatorOptions);
  /** The aggregates this add completed (usually none). */
  add(partitionKey: string, data: Uint8Array | string, explicitHashKey?: string): Aggregate[];
  flush(): Aggregate[];
  flushOldest(): Aggregate | undefined;
  readonly bufferedBytes: number;
  readonly length: number;
}
