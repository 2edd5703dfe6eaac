// The AWS SDK for JavaScript v3 through `kinesis-agg proxy`: its default
// request handler (HTTP/2, which the proxy serves as h2c) and its
// HTTP/1.1 NodeHttpHandler. Puts 1,000 records with each, reads the stream
// back through the proxy, and prints what it saw as one JSON document for
// test_proxy_clients.py to check.
// Usage: node sdk_v3.cjs PROXY_URL STREAM  (NODE_PATH: js/node_modules)
'use strict';
const { KinesisClient, PutRecordsCommand, ListShardsCommand, GetShardIteratorCommand, GetRecordsCommand } =
  require('@aws-sdk/client-kinesis');
const { NodeHttpHandler } = require('@smithy/node-http-handler');

const [url, stream] = process.argv.slice(2);
const base = {
  endpoint: url,
  region: 'us-east-1',
  credentials: { accessKeyId: 'AKIDACLIENT', secretAccessKey: 'client-secret' },
};

async function main() {
  const clients = { h2: new KinesisClient(base), http1: new KinesisClient({ ...base, requestHandler: new NodeHttpHandler() }) };
  const receipts = [];
  for (const [name, client] of Object.entries(clients)) {
    for (let call = 0; call < 2; call++) {
      const keys = Array.from({ length: 500 }, (_, i) => `${name}-${call}-${i % 50}`);
      const out = await client.send(new PutRecordsCommand({
        StreamName: stream,
        Records: keys.map((k, i) => ({ PartitionKey: k, Data: Buffer.from(`${name} ${call} ${i}`) })),
      }));
      if (out.FailedRecordCount !== 0) throw new Error(`failed entries: ${JSON.stringify(out.Records)}`);
      out.Records.forEach((r, i) => receipts.push([`${name} ${call} ${i}`, keys[i], r.ShardId, r.SequenceNumber]));
    }
  }
  const read = [];
  const client = clients.h2;
  const { Shards } = await client.send(new ListShardsCommand({ StreamName: stream }));
  for (const s of Shards) {
    let { ShardIterator } = await client.send(new GetShardIteratorCommand({
      StreamName: stream, ShardId: s.ShardId, ShardIteratorType: 'TRIM_HORIZON',
    }));
    for (;;) {
      const page = await client.send(new GetRecordsCommand({ ShardIterator }));
      for (const r of page.Records) {
        read.push([Buffer.from(r.Data).toString(), r.PartitionKey, s.ShardId, r.SequenceNumber]);
      }
      if (page.Records.length === 0 || !page.NextShardIterator) break;
      ShardIterator = page.NextShardIterator;
    }
  }
  for (const c of Object.values(clients)) c.destroy();
  process.stdout.write(JSON.stringify({ receipts, read }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
