// Shard-aware aggregation: every aggregate holds one shard's records, so
// the KCL's rule (a record outside its shard drops the whole aggregate)
// never applies. Shards and routes are checked against hash keys computed
// here with node:crypto (the MD5 of the partition key, big-endian).
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fc = require('fast-check');
const kagg = require('../dist/index.cjs');

const MAX = (1n << 128n) - 1n;
const hashOf = (pk, ehk) => (ehk !== undefined ? BigInt(ehk) : BigInt('0x' + crypto.createHash('md5').update(pk, 'utf8').digest('hex')));

/** A ListShards answer: `n` open shards splitting the range evenly, plus a closed parent. */
function listShards(n) {
  const shards = [
    { ShardId: 'shardId-parent', HashKeyRange: { StartingHashKey: '0', EndingHashKey: MAX.toString() }, SequenceNumberRange: { StartingSequenceNumber: '1', EndingSequenceNumber: '2' } },
  ];
  const step = (MAX + 1n) / BigInt(n);
  for (let i = 0; i < n; i++) {
    const start = step * BigInt(i);
    const end = i === n - 1 ? MAX : start + step - 1n;
    shards.push({ ShardId: 'shardId-' + i, HashKeyRange: { StartingHashKey: start.toString(), EndingHashKey: end.toString() }, SequenceNumberRange: { StartingSequenceNumber: '3' } });
  }
  return { Shards: shards };
}

function owner(answer, key) {
  return answer.Shards.find((s) => !s.SequenceNumberRange.EndingSequenceNumber && BigInt(s.HashKeyRange.StartingHashKey) <= key && key <= BigInt(s.HashKeyRange.EndingHashKey)).ShardId;
}

describe('ShardMap', () => {
  it('keeps the open shards of a ListShards answer, in hash key order, and routes as their ranges say', () => {
    const answer = listShards(4);
    const map = kagg.ShardMap.fromListShards(answer);
    assert.deepEqual(
      map.shards.map((s) => s.shardId),
      ['shardId-0', 'shardId-1', 'shardId-2', 'shardId-3'],
    );
    for (const key of [0n, 1n, MAX / 4n, MAX / 4n + 1n, MAX / 2n, MAX]) {
      assert.equal(map.route(key), owner(answer, key), String(key));
      assert.equal(map.route(key.toString()), owner(answer, key));
    }
    for (const pk of ['a', 'b', 'sensor-7', '鍵']) assert.equal(map.shardFor(pk), owner(answer, hashOf(pk)), pk);
    assert.equal(map.shardFor('a', '5'), 'shardId-0');
    assert.deepEqual(kagg.ShardMap.fromListShards(answer.Shards).shards, map.shards);
  });

  it('refuses overlapping open shards, bad ranges and other shapes', () => {
    const answer = listShards(2);
    answer.Shards[0].SequenceNumberRange = { StartingSequenceNumber: '1' };
    assert.throws(() => kagg.ShardMap.fromListShards(answer), /overlap/);
    assert.throws(() => kagg.ShardMap.fromListShards({ Shards: [{ ShardId: 's', HashKeyRange: { StartingHashKey: '9', EndingHashKey: '1' } }] }));
    assert.throws(() => kagg.ShardMap.fromListShards({ Shards: [{ ShardId: 's', HashKeyRange: { StartingHashKey: 'x', EndingHashKey: '1' } }] }));
    assert.throws(() => kagg.ShardMap.fromListShards({}), TypeError);
  });
});

describe('ShardedAggregator', () => {
  it('puts each record in its own shard, and every record comes back', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.record({ pk: fc.string({ minLength: 1, maxLength: 8 }), ehk: fc.option(fc.bigInt({ min: 0n, max: MAX }), { nil: undefined }), len: fc.nat(3000) }), { maxLength: 200 }),
        (n, recs) => {
          const answer = listShards(n);
          const agg = new kagg.ShardedAggregator(kagg.ShardMap.fromListShards(answer), { limit: 20000 });
          const done = [];
          recs.forEach((r, i) => done.push(...agg.add(r.pk, new Uint8Array(r.len).fill(i % 251), r.ehk === undefined ? undefined : r.ehk.toString())));
          assert.equal(agg.length + done.reduce((s, a) => s + a.userRecords, 0), recs.length);
          done.push(...agg.flush());
          assert.equal(agg.length, 0);
          const back = new Map();
          for (const a of done) {
            assert.ok(a.countedSize <= 20000);
            // The aggregate itself routes to its shard, and so does each of its records.
            assert.equal(owner(answer, hashOf(a.partitionKey, a.explicitHashKey)), a.shardId);
            for (const u of kagg.deaggregate(a.data)) {
              assert.equal(owner(answer, hashOf(u.partitionKey, u.explicitHashKey)), a.shardId);
              const key = u.partitionKey + '/' + u.explicitHashKey;
              back.set(key, (back.get(key) || 0) + 1);
            }
          }
          const want = new Map();
          for (const r of recs) {
            const key = r.pk + '/' + (r.ehk === undefined ? undefined : r.ehk.toString());
            want.set(key, (want.get(key) || 0) + 1);
          }
          assert.deepEqual(back, want);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('refuses a record no open shard owns, and changes nothing', () => {
    const answer = { Shards: [{ ShardId: 'low', HashKeyRange: { StartingHashKey: '0', EndingHashKey: '100' } }] };
    const agg = new kagg.ShardedAggregator(kagg.ShardMap.fromListShards(answer));
    agg.add('a', 'kept', '7');
    assert.throws(() => agg.add('a', 'lost', '101'));
    assert.throws(() => agg.add('a', 'x', 'not a key'), /explicit hash key/);
    assert.equal(agg.length, 1);
    const [a] = agg.flush();
    assert.equal(a.shardId, 'low');
    assert.deepEqual(kagg.deaggregate(a.data).map((u) => Buffer.from(u.data).toString()), ['kept']);
  });

  it('flushOldest completes the aggregate buffered longest', () => {
    const agg = new kagg.ShardedAggregator(kagg.ShardMap.fromListShards(listShards(4)));
    const map = kagg.ShardMap.fromListShards(listShards(4));
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'].filter((k, i, all) => all.findIndex((o) => map.shardFor(o) === map.shardFor(k)) === i);
    for (const k of keys) agg.add(k, 'x');
    const first = agg.flushOldest();
    assert.equal(first.shardId, map.shardFor(keys[0]));
    assert.equal(agg.length, keys.length - 1);
    assert.ok(agg.bufferedBytes > 0);
  });
});
