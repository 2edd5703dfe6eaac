// Both APIs' behaviour: callbacks, refusals that change nothing, limits,
// the CommonJS and ESM entry points.
const assert = require('node:assert/strict');
const kagg = require('../dist/index.cjs');
const compat = require('../dist/compat.cjs');

const text = (u) => Buffer.from(u.data).toString();

describe('modern Aggregator', () => {
  it('returns the completed aggregate when a record does not fit, and starts the next with it', () => {
    const agg = new kagg.Aggregator({ limit: 200 });
    const done = [];
    for (let i = 0; i < 20; i++) {
      const a = agg.add('k' + (i % 3), 'x'.repeat(30));
      if (a) done.push(a);
    }
    done.push(agg.flush());
    assert.equal(agg.flush(), undefined);
    assert.ok(done.length > 1);
    const back = done.flatMap((a) => {
      assert.ok(a.countedSize <= 200);
      assert.equal(a.countedSize, a.data.length + Buffer.byteLength(a.partitionKey));
      const users = kagg.deaggregate(a.data);
      assert.equal(users.length, a.userRecords);
      // The aggregate goes where its first record goes.
      assert.equal(a.partitionKey, users[0].partitionKey);
      return users;
    });
    assert.deepEqual(
      back.map((u) => u.partitionKey),
      Array.from({ length: 20 }, (_, i) => 'k' + (i % 3)),
    );
  });

  it('refuses invalid records and changes nothing', () => {
    const agg = new kagg.Aggregator();
    agg.add('kept', 'data');
    const before = [agg.size, agg.length];
    assert.throws(() => agg.add('', 'data'), /partition key/);
    assert.throws(() => agg.add('k'.repeat(257), 'data'), /partition key/);
    assert.throws(() => agg.add('k', 'data', '340282366920938463463374607431768211456'), /explicit hash key/);
    assert.throws(() => agg.add('k', 'data', '-1'), /explicit hash key/);
    assert.throws(() => agg.add('k', new Uint8Array(1 << 20)), /more than the limit/);
    assert.throws(() => agg.add(42, 'data'), TypeError);
    assert.throws(() => agg.add('k', 42), TypeError);
    assert.deepEqual([agg.size, agg.length], before);
    assert.deepEqual(kagg.deaggregate(agg.flush().data).map(text), ['data']);
  });

  it('takes limits from the minimum to 10 MiB, and no others', () => {
    assert.equal(new kagg.Aggregator().limit, 1024 * 1024);
    assert.equal(new kagg.Aggregator({ limit: kagg.MAX_LIMIT }).limit, 10 * 1024 * 1024);
    assert.equal(new kagg.Aggregator({ limit: kagg.MIN_LIMIT }).limit, kagg.MIN_LIMIT);
    for (const limit of [kagg.MAX_LIMIT + 1, kagg.MIN_LIMIT - 1, -1, 1.5, NaN]) {
      assert.throws(() => new kagg.Aggregator({ limit }), String(limit));
    }
    assert.throws(() => new kagg.Aggregator({ limit: '1000' }), TypeError);
  });

  it('sizes exactly: sizeWith is the size after the add', () => {
    const agg = new kagg.Aggregator();
    for (const [pk, data, ehk] of [['a', 'one', undefined], ['b', 'two', '5'], ['a', 'x'.repeat(300), '5']]) {
      const want = agg.sizeWith(pk, data, ehk);
      agg.add(pk, data, ehk);
      assert.equal(agg.size, want);
    }
    const size = agg.size;
    assert.equal(agg.flush().data.length, size);
    assert.equal(agg.size, 0);
  });

  it('gives a PutRecords entry', () => {
    const agg = new kagg.Aggregator();
    agg.add('k', 'v', '7');
    const e = agg.flush().putRecordsEntry();
    assert.deepEqual(Object.keys(e).sort(), ['Data', 'ExplicitHashKey', 'PartitionKey']);
    assert.equal(e.ExplicitHashKey, '7');
    const plain = new kagg.Aggregator();
    plain.add('k', 'v');
    assert.equal('ExplicitHashKey' in plain.flush().putRecordsEntry(), false);
  });
});

describe('compat RecordAggregator', () => {
  it("addUserRecord throws \"record won't fit\" and keeps what it has", () => {
    const agg = new compat.RecordAggregator();
    const big = { partitionKey: 'k', data: Buffer.alloc(600 * 1024) };
    agg.addUserRecord({ ...big });
    assert.equal(agg.checkIfUserRecordFits(big), false);
    assert.throws(() => agg.addUserRecord({ ...big }), /record won't fit/);
    assert.equal(agg.length(), 1);
    assert.equal(kagg.deaggregate(agg.build().data).length, 1);
    assert.equal(agg.length(), 0);
    assert.equal(agg.build(), undefined);
  });

  it('refuses a record too large for any aggregate, and invalid records', () => {
    const agg = new compat.RecordAggregator();
    assert.throws(() => agg.addUserRecord({ partitionKey: 'k', data: Buffer.alloc(1024 * 1024) }), /more than the limit/);
    assert.equal(agg.checkIfUserRecordFits({ partitionKey: 'k', data: Buffer.alloc(1024 * 1024) }), false);
    assert.throws(() => agg.addUserRecord({ partitionKey: 'k' }), /Data field is mandatory/);
    assert.throws(() => agg.addUserRecord({ data: 'x' }), /partitionKey field is mandatory/);
    assert.equal(agg.length(), 0);
  });

  it('aggregateRecords calls back with each aggregate, an error for each bad record, and the rest with forceFlush', () => {
    const seen = [];
    const agg = new compat.RecordAggregator((err, e) => seen.push(err ? 'error: ' + err.message : e));
    const records = [];
    for (let i = 0; i < 30; i++) records.push({ partitionKey: 'p' + i, data: Buffer.alloc(100 * 1024, i) });
    records.splice(5, 0, { partitionKey: '', data: 'x' });
    agg.aggregateRecords(records, false);
    const errors = seen.filter((s) => typeof s === 'string');
    assert.equal(errors.length, 1);
    const before = seen.length;
    agg.aggregateRecords([], true, (err, e) => seen.push(e));
    assert.equal(seen.length, before + 1);
    const encoded = seen.filter((s) => typeof s !== 'string');
    const back = encoded.flatMap((e) => kagg.deaggregate(e.data));
    assert.equal(back.length, 30);
    for (const e of encoded) assert.ok(e.data.length + Buffer.byteLength(e.partitionKey) <= 1024 * 1024);
  });

  it('flushBufferedRecords hands over what is buffered, clearRecords drops it, setOnReadyCallback swaps the callback', () => {
    const first = [];
    const second = [];
    const agg = new compat.RecordAggregator((err, e) => first.push(e));
    agg.addUserRecord({ partitionKey: 'a', data: 'one' });
    agg.flushBufferedRecords();
    assert.deepEqual(kagg.deaggregate(first[0].data).map(text), ['one']);
    assert.equal(agg.setOnReadyCallback((err, e) => second.push(e)) !== undefined, true);
    agg.addUserRecord({ partitionKey: 'a', data: 'dropped' });
    agg.clearRecords();
    assert.equal(agg.length(), 0);
    agg.addUserRecord({ PartitionKey: 'b', Data: Buffer.from('two'), ExplicitHashKey: '9' });
    agg.flushBufferedRecords();
    assert.equal(first.length, 1);
    assert.equal(second[0].ExplicitHashKey, '9');
    assert.deepEqual(kagg.deaggregate(second[0].data).map(text), ['two']);
  });
});

describe('compat explicit hash keys given as numbers, zero or empty', () => {
  it('keeps 0 and other safe integers as their decimal strings, refuses an empty or inexact one, never drops one', () => {
    const errors = [];
    const encoded = [];
    new compat.RecordAggregator((err, e) => (err ? errors.push(err) : encoded.push(e))).aggregateRecords(
      [
        { partitionKey: 'a', explicitHashKey: 0, data: 'zero' },
        { partitionKey: 'b', explicitHashKey: 99, data: 'ninety-nine' },
        { partitionKey: 'c', explicitHashKey: 12n, data: 'bigint' },
        { partitionKey: 'd', explicitHashKey: '', data: 'empty' },
        { partitionKey: 'e', explicitHashKey: 2 ** 60, data: 'inexact' },
        { partitionKey: 'f', explicitHashKey: 1.5, data: 'fraction' },
        { partitionKey: 'g', explicitHashKey: null, data: 'none' },
      ],
      true,
    );
    assert.equal(encoded.length, 1);
    assert.equal(encoded[0].ExplicitHashKey, '0');
    const back = kagg.deaggregate(encoded[0].data);
    assert.deepEqual(
      back.map((r) => [r.partitionKey, r.explicitHashKey, text(r)]),
      [
        ['a', '0', 'zero'],
        ['b', '99', 'ninety-nine'],
        ['c', '12', 'bigint'],
        ['g', undefined, 'none'],
      ],
    );
    assert.equal(errors.length, 3);
    for (const e of errors) assert.match(e.message, /explicit hash key/);
    assert.match(errors[1].message, /2\^53-1/);
  });
});

describe('compat aggregate()', () => {
  it('hands each encoded record to the handler, one at a time by default, then calls back once', (done) => {
    const records = [];
    for (let i = 0; i < 12; i++) records.push({ partitionKey: 'k' + i, data: Buffer.alloc(200 * 1024, i) });
    const handled = [];
    let running = 0;
    compat.aggregate(
      records,
      (encoded, cb) => {
        running += 1;
        assert.equal(running, 1);
        handled.push(encoded);
        setImmediate(() => {
          running -= 1;
          cb(null, {});
        });
      },
      () => {
        const back = handled.flatMap((e) => kagg.deaggregate(e.data));
        assert.deepEqual(
          back.map((u) => u.partitionKey),
          records.map((r) => r.partitionKey),
        );
        done();
      },
      (err) => done(err),
    );
  });

  it("says 'No records' when there is nothing to send", () => {
    const calls = [];
    compat.aggregate([], () => calls.push('handler'), () => calls.push('after'), (err) => calls.push(err.message));
    assert.deepEqual(calls, ['No records', 'after']);
  });
});

describe('entry points', () => {
  it('the ESM build gives the same answers', async () => {
    const esm = await import('../dist/index.mjs');
    const esmCompat = await import('../dist/compat.mjs');
    const agg = new esm.Aggregator();
    agg.add('k', 'v');
    const a = agg.flush();
    assert.deepEqual(kagg.deaggregate(a.data).map(text), ['v']);
    assert.equal(typeof esmCompat.RecordAggregator, 'function');
    assert.equal(esm.DEFAULT_LIMIT, kagg.DEFAULT_LIMIT);
  });
});
