// Type-checked with tsc --strict (npm run types) against the package's own
// declarations, with nothing else installed: both APIs as users call them.
import { Aggregate, Aggregator, DeaggregationError, deaggregate, lambdaUserRecords, MAX_LIMIT, ShardMap, ShardedAggregator } from 'kinesis-agg';
import type { KinesisStreamBatchResponse, KinesisStreamEvent, UserRecord } from 'kinesis-agg';
import { RecordAggregator, aggregate, deaggregateSync } from 'kinesis-agg/compat';
import type { EncodedRecord, UserRecord as CompatUserRecord } from 'kinesis-agg/compat';

const agg = new Aggregator({ limit: MAX_LIMIT });
const full: Aggregate | undefined = agg.add('key', new Uint8Array([1, 2]), '42');
const last = agg.flush();
if (full !== undefined && last !== undefined) {
  const entry = last.putRecordsEntry();
  const bytes: Uint8Array = entry.Data;
  const records: UserRecord[] = deaggregate(bytes, { checksum: 'strict' });
  const ehk: string | undefined = records[0].explicitHashKey;
  void ehk;
  // @ts-expect-error the data are bytes, not text: the declarations are not `any`.
  const text: string = records[0].data;
  void text;
}

export function handler(event: KinesisStreamEvent): KinesisStreamBatchResponse {
  const { records, batchItemFailures } = lambdaUserRecords(event, { onInvalid: 'fail' });
  for (const r of records) {
    const seq: string = r.sequenceNumber;
    void seq;
  }
  return { batchItemFailures };
}

try {
  deaggregate(new Uint8Array(0));
} catch (e) {
  if (e instanceof DeaggregationError) {
    const offset: number | undefined = e.offset;
    void offset;
  }
}

const compat = new RecordAggregator((err: Error | null, encoded?: EncodedRecord) => {
  if (err === null && encoded !== undefined) {
    deaggregateSync(
      { data: 'base64 text', partitionKey: encoded.partitionKey, sequenceNumber: '1', kinesisSchemaVersion: '1.0', approximateArrivalTimestamp: 0 },
      true,
      (e: Error | null, users?: CompatUserRecord[]) => void [e, users],
    );
  }
});
compat.aggregateRecords([{ partitionKey: 'k', data: 'text' }], true);
compat.aggregateRecords([{ partitionKey: 'k', explicitHashKey: 7, data: 'n' }, { partitionKey: 'k', explicitHashKey: 12n, data: 'b' }], true);
const n: number = compat.length();
void n;
aggregate([{ partitionKey: 'k', data: 'x' }], (encoded, done) => done(null, encoded), () => undefined, (err) => void err);

// @ts-expect-error the modern aggregator takes a key first.
new Aggregator().add(new Uint8Array(1));

const shards = ShardMap.fromListShards({ Shards: [{ ShardId: 's', HashKeyRange: { StartingHashKey: '0', EndingHashKey: '9' } }] });
const sharded = new ShardedAggregator(shards, { limit: 1 << 20 });
const completed: Aggregate[] = sharded.add('k', 'v', '5');
const owner: string | undefined = shards.route(5n) ?? shards.shardFor('k');
void [completed, owner, sharded.flushOldest()?.shardId];
