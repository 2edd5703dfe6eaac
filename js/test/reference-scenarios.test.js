// The scenarios of aws-kinesis-agg's own test suite (the node/test folder
// of its repository: aggregate, deaggregate, aggregate then deaggregate,
// the optional explicit hash key), written here for the compat API. That
// suite is not on npm (no published version of the module ships its
// tests) and this project holds only what it writes, so its cases are
// restated, not copied. Where the suite gives an explicit hash key that
// Kinesis refuses (a uuid, 'ccccccccc'), the case is run twice: with the
// refused key, which must come back through the error callback saying
// "explicit hash key", and with a valid decimal key, which must then
// behave as the suite expects. Its tests of the module's private parts
// (lib/common: the protobuf builder, the KPL version string) have no
// counterpart: the compat API does not expose them.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const compat = require('../dist/compat.cjs');

const MIB = 1024 * 1024;

/** A record as the suite makes them: a random key, base64 text data of
 * `size` random bytes; the explicit hash key `ehk(key)` when given. */
function randomRecord(size, ehk) {
  const partitionKey = crypto.randomUUID();
  const record = { partitionKey, data: crypto.randomBytes(size).toString('base64') };
  if (ehk !== undefined) record.explicitHashKey = ehk(partitionKey);
  return record;
}

/** A valid explicit hash key, in place of the suite's uuid. */
const decimalKey = () => BigInt('0x' + crypto.randomBytes(16).toString('hex')).toString();

/** Runs compat.aggregate: resolves with what each callback saw. The
 * handler answers at once, or after `delayMs` when given. */
function aggregateAll(records, delayMs) {
  return new Promise((resolve) => {
    const seen = { encoded: [], errors: [], handled: 0 };
    compat.aggregate(
      records,
      (encoded, callback) => {
        seen.encoded.push(encoded);
        const answer = () => {
          seen.handled += 1;
          callback(null, true);
        };
        if (delayMs === undefined) answer();
        else setTimeout(answer, delayMs);
      },
      () => resolve(seen),
      (err) => seen.errors.push(err),
    );
  });
}

describe("aws-kinesis-agg's own test scenarios, on the compat API", () => {
  it('aggregate and deaggregate are functions', () => {
    assert.equal(typeof compat.aggregate, 'function');
    assert.equal(typeof compat.deaggregate, 'function');
  });

  it('aggregating nothing calls the error callback once and then the final one, and no handler', async () => {
    const seen = await aggregateAll([]);
    assert.equal(seen.encoded.length, 0);
    assert.equal(seen.errors.length, 1);
  });

  it('a record over 1 MiB is an error while the other record is still sent', async () => {
    const seen = await aggregateAll([randomRecord(MIB + 42), randomRecord(1024)]);
    assert.equal(seen.encoded.length, 1);
    assert.equal(seen.errors.length, 1);
    // With the suite's uuid as explicit hash key, both are refused, and
    // with nothing to send, 'No records' follows as for an empty list.
    const uuids = await aggregateAll([randomRecord(MIB + 42, (k) => k), randomRecord(1024, (k) => k)]);
    assert.equal(uuids.encoded.length, 0);
    assert.deepEqual(
      uuids.errors.map((e) => /explicit hash key/.test(e.message) || e.message),
      [true, true, 'No records'],
    );
  });

  for (const [name, ehk] of [
    ['no explicit hash key', undefined],
    ['decimal explicit hash keys', decimalKey],
  ]) {
    it(`1,600 records of 1 KiB go in ceil(1,600 KiB / 1 MiB) + 1 encoded records of at most 1 MiB (${name})`, async () => {
      const records = Array.from({ length: 1600 }, () => randomRecord(1024, ehk));
      const seen = await aggregateAll(records);
      assert.equal(seen.errors.length, 0);
      assert.equal(seen.encoded.length, Math.ceil((1600 * 1024) / MIB) + 1);
      for (const e of seen.encoded) assert.ok(Buffer.byteLength(e.data, 'binary') <= MIB);
    });
  }

  it("1,600 records with the suite's uuid explicit hash keys are each refused, saying why", async () => {
    const seen = await aggregateAll(Array.from({ length: 1600 }, () => randomRecord(1024, (k) => k)));
    assert.equal(seen.encoded.length, 0);
    assert.equal(seen.errors.length, 1601);
    for (const e of seen.errors.slice(0, 1600)) assert.match(e.message, /explicit hash key/);
    assert.equal(seen.errors[1600].message, 'No records');
  });

  it('the final callback waits for every handler to answer', async () => {
    // 1,028 records of 1 KiB (1,368 bytes as base64 text): two encoded
    // records, each answered 30 ms later.
    const seen = await aggregateAll(
      Array.from({ length: 1028 }, () => randomRecord(1024)),
      30,
    );
    assert.equal(seen.errors.length, 0);
    assert.equal(seen.encoded.length, 2);
    assert.equal(seen.handled, 2);
  });

  it('aggregated then deaggregated, two records keep their keys, explicit hash key and data', async () => {
    const data1 = 'Testing KPL Aggregated Record 1 我愛你';
    const data2 = 'Testing KPL Aggregated Record 2';
    const ehk = '123456789';
    const seen = await aggregateAll([
      { partitionKey: 'aaaaaaaaa', explicitHashKey: ehk, data: data1 },
      { partitionKey: 'bbbbbbbb', explicitHashKey: ehk, data: Buffer.from(data2) },
    ]);
    assert.equal(seen.errors.length, 0);
    const users = [];
    for (const e of seen.encoded) {
      compat.deaggregate(
        { partitionKey: e.partitionKey, data: Buffer.from(e.data).toString('base64'), sequenceNumber: '1' },
        true,
        (err, user) => {
          assert.ifError(err);
          users.push(user);
        },
        (err) => assert.ifError(err),
      );
    }
    assert.deepEqual(
      users.map((u) => [u.partitionKey, u.explicitPartitionKey, Buffer.from(u.data, 'base64').toString('utf-8')]),
      [
        ['aaaaaaaaa', ehk, data1],
        ['bbbbbbbb', ehk, data2],
      ],
    );
    // The suite's 'ccccccccc' is no hash key Kinesis takes: refused.
    const refused = await aggregateAll([{ partitionKey: 'aaaaaaaaa', explicitHashKey: 'ccccccccc', data: data1 }]);
    assert.equal(refused.encoded.length, 0);
    assert.match(refused.errors[0].message, /explicit hash key/);
  });

  it('an encoded record has an ExplicitHashKey only when its user records have one', async () => {
    const records = () => Array.from({ length: 100 }, () => ({ partitionKey: crypto.randomUUID(), data: Buffer.from(crypto.randomBytes(100).toString('base64')) }));
    const without = await aggregateAll(records());
    assert.equal(without.errors.length, 0);
    assert.equal(without.encoded.length, 1);
    assert.equal('ExplicitHashKey' in without.encoded[0], false);
    // The suite numbers the records' explicit hash keys 0 to 99.
    const numbered = records().map((r, i) => ({ ...r, explicitHashKey: i }));
    const withKeys = await aggregateAll(numbered);
    assert.equal(withKeys.errors.length, 0);
    assert.equal(withKeys.encoded.length, 1);
    assert.equal(String(withKeys.encoded[0].ExplicitHashKey), '0');
  });
});
