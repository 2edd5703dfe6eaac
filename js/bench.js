// Side-by-side benchmark in one process: this package (both APIs) and
// aws-kinesis-agg 4.2.8, with the floors each figure is bounded by.
//
//   node --expose-gc bench.js [--records N] [--repeat R]   (npm run bench)
//
// Aggregates N records of 100 bytes over 100 partition keys of 36
// characters, then deaggregates the aggregates as Lambda gives them
// (base64 text) and as bytes. Each measurement runs R times after a
// warm-up; the table gives the median rate. The floors:
// - compat deaggregation: a plain loop building the same user-record
//   objects (base64 data included) from offsets already known;
// - modern deaggregation: node:crypto's MD5 over the same bytes (the
//   checksum every reader must compute).
'use strict';
const crypto = require('node:crypto');
const ref = require('aws-kinesis-agg');
const compat = require('./dist/compat.cjs');
const kagg = require('./dist/index.cjs');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const N = opt('--records', 100000);
// --compare-with DIR: another build of this package (its js/ folder, built)
// whose aggregation and reading run in turn with this one's, the reference and the floors.
const compareWith = args.includes('--compare-with') ? args[args.indexOf('--compare-with') + 1] : undefined;
const REPEAT = opt('--repeat', 9);

const keys = Array.from({ length: 100 }, (_, i) => crypto.createHash('md5').update(String(i)).digest('hex').slice(0, 36).padEnd(36, '0'));
const records = Array.from({ length: N }, (_, i) => ({ partitionKey: keys[i % 100], data: Buffer.alloc(100, i % 251) }));

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

/** Median seconds of `fn` over REPEAT runs after one warm-up; checks its count. */
function measure(fn, want) {
  const got = fn();
  if (got !== want) throw new Error(`produced ${got}, expected ${want}`);
  const times = [];
  for (let i = 0; i < REPEAT; i++) {
    // Each run starts from a collected heap (node --expose-gc): a run then
    // pays for its own garbage, not for the previous measurement's.
    if (typeof global.gc === 'function') global.gc();
    const t = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  return median(times);
}

function aggregateWith(mod) {
  const out = [];
  const agg = new mod.RecordAggregator((err, e) => out.push(e));
  agg.aggregateRecords(records.map((r) => ({ partitionKey: r.partitionKey, data: r.data })), true);
  return out;
}

function modernAggregate() {
  const agg = new kagg.Aggregator();
  const out = [];
  for (const r of records) {
    const a = agg.add(r.partitionKey, r.data);
    if (a) out.push(a);
  }
  out.push(agg.flush());
  return out;
}

const blobs = modernAggregate().map((a) => Buffer.from(a.data));
const lambdaRecords = blobs.map((b, i) => ({ data: b.toString('base64'), partitionKey: 'pk-' + i, sequenceNumber: String(i) }));

function deaggWith(mod) {
  let n = 0;
  for (const r of lambdaRecords) {
    mod.deaggregateSync(r, true, (err, users) => {
      if (err) throw err;
      n += users.length;
    });
  }
  return n;
}

// The compat floor: the same objects, from offsets known in advance.
const layout = blobs.map((b) => kagg.deaggregate(b).map((u) => [u.partitionKey, u.data.byteOffset - b.byteOffset, u.data.length]));
function compatFloor() {
  let n = 0;
  for (let i = 0; i < lambdaRecords.length; i++) {
    const r = lambdaRecords[i];
    const blob = Buffer.from(r.data, 'base64');
    const out = [];
    const recs = layout[i];
    for (let j = 0; j < recs.length; j++) {
      const [pk, at, len] = recs[j];
      out.push({ partitionKey: pk, explicitPartitionKey: undefined, sequenceNumber: r.sequenceNumber, subSequenceNumber: j, data: blob.toString('base64', at, at + len) });
    }
    n += out.length;
  }
  return n;
}

function modernDeagg() {
  let n = 0;
  for (const b of blobs) n += kagg.deaggregate(b).length;
  return n;
}

const lambdaEvent = { Records: lambdaRecords.map((r) => ({ kinesis: r })) };
function modernLambda() {
  return kagg.lambdaUserRecords(lambdaEvent).records.length;
}

function md5Floor() {
  for (const b of blobs) crypto.createHash('md5').update(b.subarray(4, b.length - 16)).digest();
  return N;
}

const rows = [];
const row = (job, name, secs) => rows.push([job, name, N / secs]);
const refCount = aggregateWith(ref).length;
row('aggregate', 'aws-kinesis-agg 4.2.8 RecordAggregator', measure(() => aggregateWith(ref).length, refCount));
row('aggregate', 'kinesis-agg/compat RecordAggregator', measure(() => aggregateWith(compat).length, blobs.length));
row('aggregate', 'kinesis-agg Aggregator (modern)', measure(() => modernAggregate().length, blobs.length));
row('deaggregate', 'aws-kinesis-agg 4.2.8 deaggregateSync', measure(() => deaggWith(ref), N));
row('deaggregate', 'kinesis-agg/compat deaggregateSync', measure(() => deaggWith(compat), N));
row('deaggregate', 'floor: the same objects from known offsets', measure(compatFloor, N));
row('deaggregate', 'kinesis-agg deaggregate (modern, bytes)', measure(modernDeagg, N));
row('deaggregate', 'kinesis-agg lambdaUserRecords (modern, a Lambda event in base64)', measure(modernLambda, N));
row('deaggregate', 'floor: node:crypto MD5 of the same bytes', measure(md5Floor, N));

console.log(`node ${process.version}, ${process.arch}; ${N} records of 100 bytes over 100 keys, ${blobs.length} aggregates; median of ${REPEAT} runs\n`);
console.log('| job | implementation | records/s |');
console.log('|---|---|---|');
for (const [job, name, rate] of rows) console.log(`| ${job} | ${name} | ${Math.round(rate).toLocaleString('en-US')} |`);

if (compareWith !== undefined) {
  // Interleaved rounds, each job once a round in a random order (the
  // order of jobs in a process shifts their times); the median of the
  // per-round ratios (a shared machine's drift hits a round's jobs alike).
  const dir = require('node:path').resolve(compareWith);
  const other = { compat: require(dir + '/dist/compat.cjs'), kagg: require(dir + '/dist/index.cjs') };
  const deaggModern = (mod) => () => {
    let n = 0;
    for (const b of blobs) n += mod.deaggregate(b).length;
    return n;
  };
  const jobs = {
    ref: () => aggregateWith(ref),
    'compat aggregation, other': () => aggregateWith(other.compat),
    'compat aggregation, this': () => aggregateWith(compat),
    'compat deaggregation, other': () => deaggWith(other.compat),
    'compat deaggregation, this': () => deaggWith(compat),
    'compat floor': compatFloor,
    'modern deaggregation, other': deaggModern(other.kagg),
    'modern deaggregation, this': deaggModern(kagg),
    'MD5 floor': md5Floor,
  };
  const times = Object.fromEntries(Object.keys(jobs).map((k) => [k, []]));
  for (let i = 0; i < 21; i++) {
    const order = Object.keys(jobs)
      .map((k) => [Math.random(), k])
      .sort((x, y) => x[0] - y[0]);
    for (const [, k] of order) {
      if (typeof global.gc === 'function') global.gc();
      const t = process.hrtime.bigint();
      jobs[k]();
      times[k].push(Number(process.hrtime.bigint() - t) / 1e9);
    }
  }
  const ratio = (a, b) => median(times[a].map((t, i) => t / times[b][i]));
  const x = (v) => v.toFixed(2) + 'x';
  console.log(`\nmedians of 21 rounds in random order, ${compareWith} (other) beside this build:`);
  console.log(`- compat aggregation, the reference's time over each: other ${x(ratio('ref', 'compat aggregation, other'))}, this ${x(ratio('ref', 'compat aggregation, this'))}`);
  console.log(`- compat deaggregation, its time over the floor's: other ${x(ratio('compat deaggregation, other', 'compat floor'))}, this ${x(ratio('compat deaggregation, this', 'compat floor'))}; this build ${x(ratio('compat deaggregation, other', 'compat deaggregation, this'))} as fast`);
  console.log(`- modern deaggregation, its time over MD5's: other ${x(ratio('modern deaggregation, other', 'MD5 floor'))}, this ${x(ratio('modern deaggregation, this', 'MD5 floor'))}; this build ${x(ratio('modern deaggregation, other', 'modern deaggregation, this'))} as fast`);
}
