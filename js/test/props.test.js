// Property tests (fast-check): what both APIs promise for any records.
const assert = require('node:assert/strict');
const fc = require('fast-check');
const kagg = require('../dist/index.cjs');
const compat = require('../dist/compat.cjs');

const hashKey = fc.oneof(
  fc.constant(undefined),
  fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map(String),
  fc.constantFrom('0', '1', '10', '2'),
);
const record = fc.record({
  partitionKey: fc.oneof(
    fc.string({ minLength: 1, maxLength: 12, unit: 'grapheme' }),
    fc.constantFrom('0', '2', '10', 'a', 'b', '鍵'),
  ),
  explicitHashKey: hashKey,
  data: fc.uint8Array({ maxLength: 300 }),
});
const invalid = fc.oneof(
  fc.record({ partitionKey: fc.constant(''), explicitHashKey: hashKey, data: fc.uint8Array({ maxLength: 10 }) }),
  fc.record({
    partitionKey: fc.constant('k'),
    explicitHashKey: fc.constantFrom('-1', '01', 'x', '340282366920938463463374607431768211456'),
    data: fc.uint8Array({ maxLength: 10 }),
  }),
  fc.record({ partitionKey: fc.constant('\ud800'), explicitHashKey: fc.constant(undefined), data: fc.uint8Array({ maxLength: 10 }) }),
);

/** Runs records through the modern aggregator: the aggregates. */
function modern(records, limit) {
  const agg = new kagg.Aggregator({ limit });
  const out = [];
  for (const r of records) {
    const size = agg.size;
    const done = agg.add(r.partitionKey, r.data, r.explicitHashKey);
    if (done) {
      assert.equal(done.data.length, size, 'the size reported before is the blob completed');
      out.push(done);
    }
  }
  const last = agg.flush();
  if (last) out.push(last);
  return out;
}

describe('properties', () => {
  it('round trip: every record back, in order, each aggregate within its limit', () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 60 }), fc.integer({ min: 700, max: 4096 }), (records, limit) => {
        const aggs = modern(records, limit);
        const back = [];
        for (const a of aggs) {
          assert.ok(a.countedSize <= limit);
          const users = kagg.deaggregate(a.data);
          assert.equal(users.length, a.userRecords);
          back.push(...users);
        }
        assert.deepEqual(
          back.map((u) => [u.partitionKey, u.explicitHashKey, Buffer.from(u.data).toString('hex')]),
          records.map((r) => [r.partitionKey, r.explicitHashKey, Buffer.from(r.data).toString('hex')]),
        );
      }),
      { numRuns: 200 },
    );
  });

  it("compat deaggregation gives each record's data as its own base64, in both record shapes", () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 60 }), (records) => {
        const aggs = modern(records, 1024 * 1024);
        assert.equal(aggs.length, 1);
        const blob = Buffer.from(aggs[0].data);
        const want = records.map((r) => [r.partitionKey, r.explicitHashKey, Buffer.from(r.data).toString('base64')]);
        const lambda = { data: blob.toString('base64'), partitionKey: 'outer', sequenceNumber: '7' };
        const sdk = { Data: new Uint8Array(blob), PartitionKey: 'outer', SequenceNumber: '7' };
        for (const [shape, kinesisRecord] of [['lambda', lambda], ['sdk', sdk]]) {
          let got;
          compat.deaggregateSync(kinesisRecord, true, (err, users) => {
            assert.ifError(err);
            got = users;
          });
          const fields = got.map((u) =>
            shape === 'lambda' ? [u.partitionKey, u.explicitPartitionKey, u.data] : [u.PartitionKey, u.ExplicitPartitionKey, u.Data],
          );
          assert.deepEqual(fields, want, shape);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('a refused record changes nothing', () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 20 }), fc.array(invalid, { minLength: 1, maxLength: 5 }), (good, bad) => {
        const agg = new kagg.Aggregator();
        const ref = new kagg.Aggregator();
        for (const r of good) {
          agg.add(r.partitionKey, r.data, r.explicitHashKey);
          ref.add(r.partitionKey, r.data, r.explicitHashKey);
        }
        for (const r of bad) {
          assert.throws(() => agg.add(r.partitionKey, r.data, r.explicitHashKey));
          assert.equal(agg.size, ref.size);
          assert.equal(agg.length, ref.length);
        }
        const a = agg.flush();
        const b = ref.flush();
        assert.deepEqual(a && Buffer.from(a.data), b && Buffer.from(b.data));
      }),
      { numRuns: 200 },
    );
  });

  it('compat aggregateRecords (records crossing in packs) answers as adding one by one does, refusals in place', () => {
    // Data sizes that complete aggregates often, and lists past one pack
    // (256 records); invalid records refused by the core (keys) and by the
    // package (no data) among them.
    const item = fc.oneof(
      { weight: 8, arbitrary: record },
      { weight: 1, arbitrary: record.map((r) => ({ ...r, data: new Uint8Array(150 * 1024).fill(r.data.length & 0xff) })) },
      { weight: 1, arbitrary: invalid },
      { weight: 1, arbitrary: fc.constant({ partitionKey: 'k', data: undefined }) },
    );
    fc.assert(
      fc.property(fc.array(item, { maxLength: 700 }), (records) => {
        const got = [];
        new compat.RecordAggregator((err, e) =>
          got.push(err ? ['refused', err instanceof Error] : ['aggregate', e.partitionKey, e.ExplicitHashKey, Buffer.from(e.data).toString('base64')]),
        ).aggregateRecords(records, true);
        // One by one: the modern aggregator with the compat limit.
        const want = [];
        const agg = new kagg.Aggregator({ limit: kagg.DEFAULT_LIMIT });
        const put = (a) => want.push(['aggregate', a.partitionKey, a.explicitHashKey, Buffer.from(a.data).toString('base64')]);
        for (const r of records) {
          let done;
          try {
            if (r.data === undefined) throw new Error('no data');
            done = agg.add(r.partitionKey, r.data, r.explicitHashKey);
          } catch (e) {
            want.push(['refused', true]);
            continue;
          }
          if (done) put(done);
        }
        const last = agg.flush();
        if (last) put(last);
        assert.deepEqual(got, want);
      }),
      { numRuns: 60 },
    );
  });

  it('compat aggregateRecords called again from its own callback keeps both lists whole and in order', () => {
    const seen = [];
    const agg = new compat.RecordAggregator();
    const inner = Array.from({ length: 300 }, (_, i) => ({ partitionKey: 'in' + (i % 7), data: 'inner ' + i }));
    let nested = false;
    const outer = Array.from({ length: 600 }, (_, i) => ({ partitionKey: 'out' + (i % 5), data: i % 100 === 99 ? 'x'.repeat(400 * 1024) : 'outer ' + i }));
    agg.aggregateRecords(outer, true, (err, e) => {
      assert.equal(err, null);
      seen.push(...kagg.deaggregate(e.data).map((u) => Buffer.from(u.data).toString().slice(0, 12)));
      if (!nested) {
        nested = true;
        agg.aggregateRecords(inner, false, (err2, e2) => {
          assert.equal(err2, null);
          seen.push(...kagg.deaggregate(e2.data).map((u) => Buffer.from(u.data).toString().slice(0, 12)));
        });
      }
    });
    // Every record once: the inner ones joined the aggregate being built
    // after the first callback, in their order, then the outer ones went on.
    const want = [...outer.map((r) => r.data.slice(0, 12)), ...inner.map((r) => r.data.slice(0, 12))];
    assert.deepEqual([...seen].sort(), [...want].sort());
    const outerSeen = seen.filter((d) => !d.startsWith('inner'));
    assert.deepEqual(outerSeen, outer.map((r) => r.data.slice(0, 12)));
    const innerSeen = seen.filter((d) => d.startsWith('inner'));
    assert.deepEqual(innerSeen, inner.map((r) => r.data.slice(0, 12)));
  });

  it('compat aggregateRecords keeps every key past the keys it remembers, across calls and from a callback', () => {
    // 3 calls of 3,000 distinct keys (past the 4,096 the packs keep
    // interned), the second made from the first one's callback.
    const call = (c) => Array.from({ length: 3000 }, (_, i) => ({ partitionKey: `c${c}-key-${i}`, explicitHashKey: i % 3 ? undefined : String(i * 7919), data: `c${c} record ${i}` }));
    const got = [];
    const agg = new compat.RecordAggregator();
    const keep = (err, e) => {
      assert.equal(err, null);
      for (const u of kagg.deaggregate(e.data)) got.push([u.partitionKey, u.explicitHashKey, Buffer.from(u.data).toString()]);
    };
    let nested = false;
    const first = call(0).map((r, i) => (i === 1500 ? { ...r, data: 'y'.repeat(1024 * 1024 - 200) } : r));
    agg.aggregateRecords(first, false, (err, e) => {
      keep(err, e);
      if (!nested) {
        nested = true;
        agg.aggregateRecords(call(1), false, keep);
      }
    });
    agg.aggregateRecords(call(2), true, keep);
    const want = [...first, ...call(1), ...call(2)].map((r) => [r.partitionKey, r.explicitHashKey, r.data]);
    const byKey = (rows) => rows.map((r) => r.join('|')).sort();
    assert.deepEqual(byKey(got), byKey(want));
  });

  it('compat and modern write the same bytes', () => {
    fc.assert(
      fc.property(fc.array(record, { maxLength: 60 }), (records) => {
        const big = records.map((r, i) => ({ ...r, data: i % 7 === 0 ? new Uint8Array(200 * 1024).fill(i) : r.data }));
        const fromCompat = [];
        new compat.RecordAggregator((err, e) => {
          assert.equal(err, null);
          fromCompat.push(e);
        }).aggregateRecords(big, true);
        const fromModern = modern(big, kagg.DEFAULT_LIMIT);
        assert.deepEqual(
          fromCompat.map((e) => [e.partitionKey, e.ExplicitHashKey, Buffer.from(e.data).toString('base64')]),
          fromModern.map((a) => [a.partitionKey, a.explicitHashKey, Buffer.from(a.data).toString('base64')]),
        );
      }),
      { numRuns: 50 },
    );
  });
});
