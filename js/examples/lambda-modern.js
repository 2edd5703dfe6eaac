// A Lambda function consuming a stream that KPL producers write (Node 20
// or 22 runtime, ReportBatchItemFailures on): every user record with its
// Kinesis record's sequence number, aggregated or not.
const { lambdaUserRecords } = require('kinesis-agg');

/** @param {import('kinesis-agg').KinesisStreamEvent} event */
exports.handler = async (event) => {
  const { records, batchItemFailures } = lambdaUserRecords(event);
  for (const r of records) {
    const text = Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength).toString('base64');
    console.log(JSON.stringify({ sequenceNumber: r.sequenceNumber, subSequenceNumber: r.subSequenceNumber, partitionKey: r.partitionKey, explicitHashKey: r.explicitHashKey, data: text }));
  }
  // Lambda retries from the first broken aggregate, if any: nothing is skipped.
  return { batchItemFailures };
};
