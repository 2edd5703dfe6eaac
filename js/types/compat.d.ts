// kinesis-agg/compat: the drop-in for aws-kinesis-agg's API.
import type { KinesisStreamRecordPayload } from './events';

export type { KinesisStreamRecordPayload } from './events';

/** A deaggregated user record (PascalCase fields for an SDK v3 record). */
export interface UserRecord {
  partitionKey: string;
  /** The record's explicit hash key; undefined when it has none. */
  explicitPartitionKey?: string;
  sequenceNumber: string;
  /** Absent for a record that was not aggregated. */
  subSequenceNumber?: number;
  /** Base64. */
  data: string;
}

/** An SDK v3 record (as GetRecords gives it). */
export interface SdkRecord {
  Data: Uint8Array | string;
  PartitionKey: string;
  SequenceNumber: string;
  ExplicitPartitionKey?: string;
  [field: string]: unknown;
}

/** A user record to aggregate. An explicit hash key may be given as a
 * number while it is exact (a safe integer) or as a bigint; it is written
 * as its decimal string. */
export interface InputRecord {
  partitionKey?: string;
  explicitHashKey?: string | number | bigint | null;
  data?: Uint8Array | string;
  PartitionKey?: string;
  ExplicitHashKey?: string | number | bigint | null;
  Data?: Uint8Array | string;
}

/** An aggregated record to put. */
export interface EncodedRecord {
  partitionKey: string;
  data: Uint8Array;
  ExplicitHashKey?: string;
}

export declare function deaggregate(
  kinesisRecord: KinesisStreamRecordPayload | SdkRecord,
  computeChecksums: boolean,
  perRecordCallback: (err: Error | null, userRecord?: UserRecord) => void,
  afterRecordCallback: (err?: Error, errorUserRecord?: UserRecord) => void,
): void;

export declare function deaggregateSync(
  kinesisRecord: KinesisStreamRecordPayload | SdkRecord,
  computeChecksums: boolean,
  afterRecordCallback: (err: Error | null, userRecords?: UserRecord[]) => void,
): void;

export declare function aggregate(
  records: InputRecord[],
  encodedRecordHandler: (encodedRecord: EncodedRecord, callback: (err?: Error | null, data?: unknown) => void) => void,
  afterPutAggregatedRecords: () => void,
  errorCallback: (error: Error, data?: EncodedRecord) => void,
  queueSize?: number,
): void;

export type OnReadyCallback = (err: Error | null, encodedRecord?: EncodedRecord) => void;

export declare class RecordAggregator {
  constructor(onReadyCallback?: OnReadyCallback);
  setOnReadyCallback(onReadyCallback?: OnReadyCallback): OnReadyCallback | undefined;
  addUserRecord(record: InputRecord): void;
  aggregateRecords(records: InputRecord[], forceFlush?: boolean, onReadyCallback?: OnReadyCallback): void;
  flushBufferedRecords(onReadyCallback?: OnReadyCallback): void;
  clearRecords(): void;
  checkIfUserRecordFits(record: InputRecord): boolean;
  calculateUserRecordSize(record: InputRecord): number;
  build(): EncodedRecord | undefined;
  length(): number;
}
