// Aggregates user records and puts them with @aws-sdk/client-kinesis, then
// reads the stream back and deaggregates it.
//
//   KINESIS_ENDPOINT=http://127.0.0.1:4567 node examples/producer.js [stream]
//
// Without KINESIS_ENDPOINT it uses your AWS configuration (region and
// credentials) and the real service; the stream must exist there.
const {
  KinesisClient,
  CreateStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  PutRecordsCommand,
} = require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = require('@smithy/node-http-handler');
const { Aggregator, deaggregate } = require('kinesis-agg');

async function main() {
  const endpoint = process.env.KINESIS_ENDPOINT;
  const stream = process.argv[2] || 'kinesis-agg-js-example-' + process.pid;
  const client = new KinesisClient(
    endpoint
      ? {
          endpoint,
          region: 'us-east-1',
          credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
          // The Kinesis client speaks HTTP/2 by default; a local endpoint
          // such as kinesalite speaks HTTP/1.1.
          requestHandler: new NodeHttpHandler(),
        }
      : {},
  );
  if (endpoint) {
    await client.send(new CreateStreamCommand({ StreamName: stream, ShardCount: 1 }));
    for (;;) {
      const s = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
      if (s.StreamDescriptionSummary?.StreamStatus === 'ACTIVE') break;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  // 5,000 user records become a handful of Kinesis records.
  const agg = new Aggregator();
  const entries = [];
  for (let i = 0; i < 5000; i++) {
    const full = agg.add('sensor-' + (i % 50), JSON.stringify({ reading: i }));
    if (full) entries.push(full.putRecordsEntry());
  }
  const last = agg.flush();
  if (last) entries.push(last.putRecordsEntry());
  const put = await client.send(new PutRecordsCommand({ StreamName: stream, Records: entries }));
  if (put.FailedRecordCount) throw new Error(put.FailedRecordCount + ' aggregates failed');
  console.log(`put 5000 user records as ${entries.length} Kinesis records`);

  const { Shards = [] } = await client.send(new ListShardsCommand({ StreamName: stream }));
  const it = await client.send(
    new GetShardIteratorCommand({ StreamName: stream, ShardId: Shards[0].ShardId, ShardIteratorType: 'TRIM_HORIZON' }),
  );
  const { Records = [] } = await client.send(new GetRecordsCommand({ ShardIterator: it.ShardIterator }));
  let n = 0;
  for (const r of Records) {
    if (r.Data) n += deaggregate(r.Data, { partitionKey: r.PartitionKey }).length;
  }
  console.log(`read ${Records.length} Kinesis records holding ${n} user records`);
  if (n !== 5000) throw new Error('expected 5000 user records, read ' + n);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
