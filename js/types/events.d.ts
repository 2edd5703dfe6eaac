// Lambda's Kinesis event, written here as structural types (compatible
// with @types/aws-lambda's KinesisStreamEvent; nothing else to install).

/** The `kinesis` part of a Lambda Kinesis event record. */
export interface KinesisStreamRecordPayload {
  approximateArrivalTimestamp: number;
  data: string;
  kinesisSchemaVersion: string;
  partitionKey: string;
  sequenceNumber: string;
}

/** One record of a Lambda Kinesis event. */
export interface KinesisStreamRecord {
  awsRegion: string;
  eventID: string;
  eventName: string;
  eventSource: string;
  eventSourceARN: string;
  eventVersion: string;
  invokeIdentityArn: string;
  kinesis: KinesisStreamRecordPayload;
}

/** A Lambda Kinesis event. */
export interface KinesisStreamEvent {
  Records: KinesisStreamRecord[];
}

/** What a function with ReportBatchItemFailures answers. */
export interface KinesisStreamBatchResponse {
  batchItemFailures: { itemIdentifier: string }[];
}
