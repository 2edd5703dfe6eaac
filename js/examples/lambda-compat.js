// The same function written for aws-kinesis-agg: only the require changed.
const agg = require('kinesis-agg/compat');

/** @param {import('kinesis-agg').KinesisStreamEvent} event */
exports.handler = async (event) => {
  /** @type {{ itemIdentifier: string }[]} */
  const batchItemFailures = [];
  for (const record of event.Records) {
    if (batchItemFailures.length > 0) break;
    agg.deaggregateSync(record.kinesis, true, (err, userRecords) => {
      if (err || userRecords === undefined) {
        batchItemFailures.push({ itemIdentifier: record.kinesis.sequenceNumber });
        return;
      }
      for (const r of userRecords) {
        console.log(JSON.stringify({ sequenceNumber: r.sequenceNumber, subSequenceNumber: r.subSequenceNumber, partitionKey: r.partitionKey, explicitHashKey: r.explicitPartitionKey, data: r.data }));
      }
    });
  }
  return { batchItemFailures };
};
