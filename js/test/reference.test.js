// Each of the reference module's bugs, shown beside aws-kinesis-agg 4.2.8
// (installed as a dev dependency) and right here. Expected values are the
// records as put, never the reference's answer.
const assert = require('node:assert/strict');
const ref = require('aws-kinesis-agg');
const compat = require('../dist/compat.cjs');
const kagg = require('../dist/index.cjs');
const { deaggFixtures } = require('./support');

/** Aggregates with a compat-shaped module into one encoded record. */
function build(mod, records) {
  const agg = new mod.RecordAggregator();
  for (const r of records) agg.addUserRecord({ ...r });
  return agg.build();
}

/** Reads a blob with this package's modern reader: [partitionKey, ehk, data]. */
function read(blob) {
  return kagg.deaggregate(blob).map((u) => [u.partitionKey, u.explicitHashKey, Buffer.from(u.data).toString()]);
}

/** Reads an encoded record with a module's compat deaggregateSync. */
function deaggSync(mod, encoded) {
  let out;
  mod.deaggregateSync(
    { data: Buffer.from(encoded.data).toString('base64'), partitionKey: encoded.partitionKey, sequenceNumber: '1' },
    true,
    (err, users) => {
      out = { err, users };
    },
  );
  return out;
}

describe('the reference module beside this one', () => {
  it('integer-like partition keys: the reference swaps them, this keeps them', () => {
    const put = [
      { partitionKey: '10', data: 'for key 10' },
      { partitionKey: '2', data: 'for key 2' },
    ];
    const want = [
      ['10', undefined, 'for key 10'],
      ['2', undefined, 'for key 2'],
    ];
    // Read with this package's reader, which the fixtures check against
    // Google protobuf's parse: the reference wrote the keys swapped.
    assert.deepEqual(read(build(ref, put).data), [
      ['2', undefined, 'for key 10'],
      ['10', undefined, 'for key 2'],
    ]);
    assert.deepEqual(read(build(compat, put).data), want);
    const modern = new kagg.Aggregator();
    for (const r of put) modern.add(r.partitionKey, r.data);
    assert.deepEqual(read(modern.flush().data), want);
  });

  it('integer-like explicit hash keys: swapped by the reference too, kept here', () => {
    const put = [
      { partitionKey: 'a', explicitHashKey: '10', data: 'x' },
      { partitionKey: 'b', explicitHashKey: '2', data: 'y' },
    ];
    assert.deepEqual(read(build(ref, put).data), [
      ['a', '2', 'x'],
      ['b', '10', 'y'],
    ]);
    assert.deepEqual(read(build(compat, put).data), [
      ['a', '10', 'x'],
      ['b', '2', 'y'],
    ]);
  });

  it('an explicit hash key 0 or past 2^53: the reference drops or rounds it, this keeps or refuses it', () => {
    const put = [
      { partitionKey: 'a', explicitHashKey: 0, data: 'zero' },
      { partitionKey: 'b', explicitHashKey: 7, data: 'seven' },
    ];
    const theirs = build(ref, put);
    assert.equal(theirs.ExplicitHashKey, 0);
    assert.deepEqual(read(theirs.data), [
      ['a', undefined, 'zero'],
      ['b', '7', 'seven'],
    ]);
    const ours = build(compat, put);
    assert.equal(ours.ExplicitHashKey, '0');
    assert.deepEqual(read(ours.data), [
      ['a', '0', 'zero'],
      ['b', '7', 'seven'],
    ]);
    const big = [{ partitionKey: 'a', explicitHashKey: 2 ** 60 + 1, data: 'x' }];
    // 2 ** 60 + 1 is not a double: the reference writes the rounded number's digits.
    assert.deepEqual(read(build(ref, big).data), [['a', String(2 ** 60), 'x']]);
    assert.throws(() => build(compat, big), /explicit hash key .*2\^53-1/);
  });

  it('a user record without an explicit hash key: the reference reports the first one', () => {
    const put = [
      { partitionKey: 'a', explicitHashKey: '7', data: 'with' },
      { partitionKey: 'b', data: 'without' },
    ];
    const encoded = build(compat, put);
    const theirs = deaggSync(ref, encoded);
    assert.equal(theirs.users[1].explicitPartitionKey, '7');
    const ours = deaggSync(compat, encoded);
    assert.equal(ours.err, null);
    assert.equal(ours.users[0].explicitPartitionKey, '7');
    assert.equal(ours.users[1].explicitPartitionKey, undefined);
  });

  it('sizes: the reference counts UTF-16 units and not the outer key; here an aggregate fits PutRecord', () => {
    // 300 keys of 256 CJK characters (768 UTF-8 bytes each), 3 KiB of data each.
    const records = [];
    for (let i = 0; i < 600; i++) {
      const key = String.fromCharCode(0x4e00 + (i % 300)).repeat(256);
      records.push({ partitionKey: key, data: Buffer.alloc(3072, i) });
    }
    const counted = (e) => e.data.length + Buffer.byteLength(e.partitionKey);
    const theirs = [];
    const refAgg = new ref.RecordAggregator((err, e) => theirs.push(e));
    refAgg.aggregateRecords(records.map((r) => ({ ...r })), true);
    assert.ok(Math.max(...theirs.map(counted)) > 1024 * 1024, 'the reference exceeds 1 MiB');
    const ours = [];
    new compat.RecordAggregator((err, e) => {
      assert.equal(err, null);
      ours.push(e);
    }).aggregateRecords(records, true);
    assert.ok(Math.max(...ours.map(counted)) <= 1024 * 1024);
    // Nothing lost: every record comes back, in order.
    const back = ours.flatMap((e) => kagg.deaggregate(e.data));
    assert.equal(back.length, records.length);
    back.forEach((u, i) => assert.equal(u.partitionKey, records[i].partitionKey));
  });

  it('the size of a record whose key is at index 0: the reference sizes its index as a new one', () => {
    // With 200 keys in the table a new key's index takes two bytes; index 0
    // takes one, which the reference does not see (it reads index 0 as
    // "not found").
    const records = [{ partitionKey: 'key-zero', data: 'one' }];
    for (let i = 1; i < 200; i++) records.push({ partitionKey: 'key-' + i, data: 'x' });
    const again = { partitionKey: 'key-zero', data: 'two' };
    const theirs = new ref.RecordAggregator();
    const ours = new compat.RecordAggregator();
    for (const r of records) {
      theirs.addUserRecord({ ...r });
      ours.addUserRecord({ ...r });
    }
    const size = ours.calculateUserRecordSize(again);
    assert.equal(ours.build().data.length + size, build(compat, [...records, again]).data.length);
    assert.equal(theirs.calculateUserRecordSize({ ...again }), size + 1);
  });

  it('a key index outside the table: the reference gives partitionKey undefined, this an error', () => {
    const m = deaggFixtures().find((f) => f.name === 'partition_key_index_outside_table');
    const record = { data: m.blob.toString('base64'), partitionKey: 'p', sequenceNumber: '1' };
    let theirs;
    ref.deaggregateSync(record, true, (err, users) => {
      theirs = { err, users };
    });
    assert.ok(theirs.users.some((u) => u.partitionKey === undefined));
    let ours;
    compat.deaggregateSync(record, true, (err, users) => {
      ours = { err, users };
    });
    assert.ok(ours.err instanceof Error);
    assert.equal(ours.err.offset, m.offset);
    assert.equal(ours.users, undefined);
  });

  it('the magic bytes with a wrong checksum: an error there, a plain record here (as the KCL reads it)', () => {
    const m = deaggFixtures().find((f) => f.name === 'wrong_checksum');
    const record = { data: m.blob.toString('base64'), partitionKey: 'p', sequenceNumber: '1' };
    let theirs;
    ref.deaggregateSync(record, true, (err) => {
      theirs = err;
    });
    assert.match(String(theirs), /checksum/i);
    let ours;
    compat.deaggregateSync(record, true, (err, users) => {
      ours = { err, users };
    });
    assert.equal(ours.err, null);
    assert.deepEqual(ours.users, [{ partitionKey: 'p', explicitPartitionKey: undefined, sequenceNumber: '1', data: record.data }]);
  });

  it('an explicit hash key Kinesis refuses (a uuid): refused through the error callback', () => {
    const errors = [];
    const encoded = [];
    new compat.RecordAggregator((err, e) => (err ? errors.push(err) : encoded.push(e))).aggregateRecords(
      [
        { partitionKey: 'a', explicitHashKey: 'd7c5f5d6-2b6a-4b5c-9a3e-6c1f2e0b9a11', data: 'refused' },
        { partitionKey: 'b', data: 'kept' },
      ],
      true,
    );
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /explicit hash key/);
    assert.deepEqual(read(encoded[0].data), [['b', undefined, 'kept']]);
  });
});
