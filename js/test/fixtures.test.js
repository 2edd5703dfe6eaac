// The shared fixtures through both APIs. Expected values come from the
// fixtures' manifest (Google protobuf's parse with field presence, real
// producers' bytes), never from another implementation's output.
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { deaggFixtures, aggFixtures, event } = require('./support');
const kagg = require('../dist/index.cjs');
const compat = require('../dist/compat.cjs');

const fixtures = deaggFixtures();

/** Data as compared: base64, or length and MD5 past 64 KiB (as the
 * manifest gives the large ones). */
function repr(bytes) {
  const b = Buffer.from(bytes);
  if (b.length <= 65536) return b.toString('base64');
  return b.length + ':' + crypto.createHash('md5').update(b).digest('hex');
}

/** A manifest record's data, as compared. */
function wantData(r) {
  return r.data !== undefined ? repr(Buffer.from(r.data, 'base64')) : r.data_len + ':' + r.data_md5;
}

/** The manifest's records as the modern API gives them. */
function expected(m) {
  return m.records.map((r, i) => ({
    partitionKey: r.partition_key,
    explicitHashKey: r.explicit_hash_key === null ? undefined : r.explicit_hash_key,
    data: wantData(r),
    subSequenceNumber: i,
    aggregated: true,
  }));
}

function modern(records) {
  return records.map((r) => ({ ...r, data: repr(r.data) }));
}

describe('fixtures, modern API', () => {
  it('covers every kind of fixture', () => {
    const kinds = new Set(fixtures.map((m) => m.expect));
    assert.deepEqual([...kinds].sort(), ['aggregated', 'error', 'plain']);
    assert.ok(fixtures.length >= 50);
  });

  for (const m of fixtures) {
    it(`${m.name}: ${m.expect}`, () => {
      if (m.expect === 'aggregated') {
        const got = kagg.deaggregate(m.blob);
        assert.deepEqual(modern(got), expected(m));
        // The data are views of the input, not copies.
        for (const u of got) assert.equal(u.data.buffer, m.blob.buffer);
        // Strict reads a right checksum as verify does.
        assert.deepEqual(modern(kagg.deaggregate(m.blob, { checksum: 'strict' })), expected(m));
      } else if (m.expect === 'plain') {
        const got = kagg.deaggregate(m.blob, { partitionKey: 'outer' });
        assert.equal(got.length, 1);
        assert.equal(got[0].aggregated, false);
        assert.equal(got[0].partitionKey, 'outer');
        assert.equal(got[0].subSequenceNumber, undefined);
        assert.ok(Buffer.from(got[0].data).equals(m.blob));
        if (m.reason === 'ChecksumMismatch') {
          assert.throws(() => kagg.deaggregate(m.blob, { checksum: 'strict' }), (e) => {
            assert.ok(e instanceof kagg.DeaggregationError);
            assert.equal(e.code, 'ChecksumMismatch');
            return true;
          });
        }
      } else {
        assert.throws(
          () => kagg.deaggregate(m.blob),
          (e) => {
            assert.ok(e instanceof kagg.DeaggregationError, String(e));
            assert.ok(e instanceof Error);
            assert.equal(e.name, 'DeaggregationError');
            assert.equal(e.code, m.error);
            assert.equal(e.offset, m.offset);
            assert.equal(e.reason, e.message);
            return true;
          },
        );
      }
    });
  }

  it('refuses an unknown checksum policy', () => {
    assert.throws(() => kagg.deaggregate(fixtures[0].blob, { checksum: 'sometimes' }), TypeError);
    assert.throws(() => kagg.deaggregate('not bytes'), TypeError);
  });
});

describe('fixtures, compat API', () => {
  for (const m of fixtures) {
    it(`${m.name}: ${m.expect}`, () => {
      const record = { data: m.blob.toString('base64'), partitionKey: 'outer', sequenceNumber: '42' };
      let result;
      compat.deaggregateSync(record, true, (err, users) => {
        result = { err, users };
      });
      if (m.expect === 'aggregated') {
        assert.equal(result.err, null);
        assert.deepEqual(
          result.users.map((u) => ({ ...u, data: repr(Buffer.from(u.data, 'base64')) })),
          m.records.map((r, i) => ({
            partitionKey: r.partition_key,
            explicitPartitionKey: r.explicit_hash_key === null ? undefined : r.explicit_hash_key,
            sequenceNumber: '42',
            subSequenceNumber: i,
            data: wantData(r),
          })),
        );
      } else if (m.expect === 'plain') {
        assert.equal(result.err, null);
        assert.deepEqual(result.users, [
          { partitionKey: 'outer', explicitPartitionKey: undefined, sequenceNumber: '42', data: record.data },
        ]);
      } else {
        assert.ok(result.err instanceof kagg.DeaggregationError || result.err instanceof Error);
        assert.equal(result.err.offset, m.offset);
        assert.equal(result.users, undefined);
      }
    });
  }

  it('answers an SDK v3 record in PascalCase, data as bytes or base64', () => {
    const m = fixtures.find((f) => f.name === 'py_mixed_keys');
    for (const Data of [m.blob, new Uint8Array(m.blob), m.blob.toString('base64')]) {
      let users;
      compat.deaggregateSync({ Data, PartitionKey: 'outer', SequenceNumber: '7' }, true, (err, u) => {
        assert.equal(err, null);
        users = u;
      });
      assert.deepEqual(
        users,
        m.records.map((r, i) => ({
          PartitionKey: r.partition_key,
          ExplicitPartitionKey: r.explicit_hash_key === null ? undefined : r.explicit_hash_key,
          SequenceNumber: '7',
          SubSequenceNumber: i,
          Data: r.data,
        })),
      );
    }
  });
});

describe('aggregation fixtures', () => {
  const cases = aggFixtures();

  it('has the cases', () => {
    assert.ok(cases.length >= 9);
  });

  for (const c of cases) {
    it(`${c.name}: the same bytes as the reference encoders`, () => {
      const agg = new kagg.Aggregator({ limit: kagg.MAX_LIMIT });
      for (const want of c.aggregates) {
        for (const r of c.records.slice(want.first, want.first + want.records)) {
          assert.equal(agg.add(r.partitionKey, r.data, r.explicitHashKey), undefined);
        }
        const size = agg.size;
        const got = agg.flush();
        assert.equal(got.data.length, size);
        assert.equal(got.userRecords, want.records);
        assert.equal(got.partitionKey, want.partition_key);
        assert.equal(got.explicitHashKey, want.explicit_hash_key === null ? undefined : want.explicit_hash_key);
        if (want.data !== undefined) {
          assert.equal(Buffer.from(got.data).toString('base64'), want.data);
        } else {
          assert.equal(got.data.length, want.len);
          assert.equal(crypto.createHash('md5').update(got.data).digest('hex'), want.md5);
        }
      }
    });
  }
});

describe('Lambda events', () => {
  const byBlob = new Map(fixtures.map((m) => [m.blob.toString('base64'), m]));

  it('gives every record of the event, with its outer record', () => {
    const ev = event('lambda_kinesis.json');
    const { records, batchItemFailures } = kagg.lambdaUserRecords(ev);
    const want = [];
    for (const r of ev.Records) {
      const m = byBlob.get(r.kinesis.data);
      assert.ok(m, 'the event carries fixtures');
      if (m.expect === 'aggregated') {
        for (const u of expected(m)) want.push({ ...u, sequenceNumber: r.kinesis.sequenceNumber, record: r });
      } else if (m.expect === 'plain') {
        want.push({
          partitionKey: r.kinesis.partitionKey,
          explicitHashKey: undefined,
          data: repr(Buffer.from(r.kinesis.data, 'base64')),
          subSequenceNumber: undefined,
          aggregated: false,
          sequenceNumber: r.kinesis.sequenceNumber,
          record: r,
        });
      } else {
        break;
      }
    }
    assert.deepEqual(modern(records), want);
    const broken = ev.Records.find((r) => byBlob.get(r.kinesis.data).expect === 'error');
    assert.deepEqual(batchItemFailures, broken ? [{ itemIdentifier: broken.kinesis.sequenceNumber }] : []);
  });

  it('reads a batch of every fixture (MD5s side by side) as each alone, under each policy', () => {
    const all = fixtures.filter((m) => m.blob.length < 65536);
    const ev = { Records: all.map((m, i) => ({ kinesis: { data: m.blob.toString('base64'), partitionKey: 'outer-' + i, sequenceNumber: String(i) } })) };
    for (const checksum of ['verify', 'strict', 'skip']) {
      const want = [];
      let firstBroken;
      all.forEach((m, i) => {
        try {
          for (const u of kagg.deaggregate(m.blob, { checksum, partitionKey: 'outer-' + i })) want.push({ ...u, sequenceNumber: String(i) });
        } catch (e) {
          assert.ok(e instanceof kagg.DeaggregationError);
          if (firstBroken === undefined) firstBroken = want.length;
          want.push({ partitionKey: 'outer-' + i, explicitHashKey: undefined, data: m.blob, subSequenceNumber: undefined, aggregated: false, sequenceNumber: String(i) });
        }
      });
      // Unverified, a body that does not parse is a plain record: nothing is broken.
      assert.equal(firstBroken === undefined, checksum === 'skip', checksum);
      const passed = kagg.lambdaUserRecords(ev, { checksum, onInvalid: 'pass' });
      const shape = (u) => [u.partitionKey, u.explicitHashKey, repr(u.data), u.subSequenceNumber, u.aggregated, u.sequenceNumber];
      assert.deepEqual(passed.records.map(shape), want.map(shape), checksum);
      assert.deepEqual(passed.batchItemFailures, []);
      const failed = kagg.lambdaUserRecords(ev, { checksum });
      assert.deepEqual(failed.records.map(shape), want.slice(0, firstBroken).map(shape), checksum);
      assert.deepEqual(failed.batchItemFailures, firstBroken === undefined ? [] : [{ itemIdentifier: want[firstBroken].sequenceNumber }]);
    }
  });

  it('decodes base64 with line breaks or without padding as Buffer.from does', () => {
    // The event's texts are decoded into one buffer, each where the last
    // ended: a text that decodes to fewer bytes than its length suggests
    // must not shift the blobs after it.
    const all = fixtures.filter((m) => m.blob.length < 65536 && m.expect !== 'error');
    const clean = { Records: all.map((m, i) => ({ kinesis: { data: m.blob.toString('base64'), partitionKey: 'p' + i, sequenceNumber: String(i) } })) };
    const wrap = (s, i) => (i % 2 === 0 ? s.replace(/.{1,76}/g, '$&\n') : s.replace(/=+$/, ''));
    const messy = { Records: clean.Records.map((r, i) => ({ kinesis: { ...r.kinesis, data: wrap(r.kinesis.data, i) } })) };
    assert.ok(messy.Records.some((r, i) => r.kinesis.data.length !== clean.Records[i].kinesis.data.length));
    const shape = (u) => [u.partitionKey, u.explicitHashKey, repr(u.data), u.subSequenceNumber, u.aggregated, u.sequenceNumber];
    const want = kagg.lambdaUserRecords(clean, { onInvalid: 'pass' });
    const got = kagg.lambdaUserRecords(messy, { onInvalid: 'pass' });
    assert.deepEqual(got.records.map(shape), want.records.map(shape));
    assert.ok(want.records.length > all.length);
    // Data given as bytes rather than base64 text (not Lambda's shape, but
    // what a record from an SDK holds) is read as those bytes.
    const bytes = { Records: all.map((m, i) => ({ kinesis: { ...clean.Records[i].kinesis, data: Buffer.from(m.blob) } })) };
    assert.deepEqual(kagg.lambdaUserRecords(bytes, { onInvalid: 'pass' }).records.map(shape), want.records.map(shape));
  });

  it('names the event record without data', () => {
    const good = { kinesis: { data: fixtures[0].blob.toString('base64'), partitionKey: 'p', sequenceNumber: '1' } };
    for (const bad of [{ kinesis: { partitionKey: 'p' } }, { kinesis: null }, {}, null, { kinesis: { data: 7 } }]) {
      assert.throws(() => kagg.lambdaUserRecords({ Records: [good, bad] }), (e) => e instanceof TypeError && /event record 1 has no kinesis\.data/.test(e.message));
    }
  });

  it('ends the batch at a broken aggregate, or passes it whole', () => {
    const good = fixtures.find((m) => m.expect === 'aggregated');
    const bad = fixtures.find((m) => m.expect === 'error');
    const rec = (m, seq) => ({ kinesis: { data: m.blob.toString('base64'), partitionKey: 'p', sequenceNumber: seq } });
    const ev = { Records: [rec(good, '1'), rec(bad, '2'), rec(good, '3')] };
    const failed = kagg.lambdaUserRecords(ev);
    assert.deepEqual(failed.batchItemFailures, [{ itemIdentifier: '2' }]);
    assert.deepEqual(
      failed.records.map((u) => u.sequenceNumber),
      good.records.map(() => '1'),
    );
    const passed = kagg.lambdaUserRecords(ev, { onInvalid: 'pass' });
    assert.deepEqual(passed.batchItemFailures, []);
    assert.equal(passed.records.length, 2 * good.records.length + 1);
    const whole = passed.records.find((u) => u.sequenceNumber === '2');
    assert.equal(whole.aggregated, false);
    assert.ok(Buffer.from(whole.data).equals(bad.blob));
  });
});

