// The package as users get it: the example Lambda handlers bundled by
// esbuild into one file each and run on the event fixtures, the tarball of
// npm pack installed offline into an empty folder, the producer example
// against a Kinesis API (kinesalite, when ./test.sh provides one).
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const esbuild = require('esbuild');
const { deaggFixtures, event } = require('./support');

const here = path.join(__dirname, '..');

/** What the example handlers print for an event, from the manifest. */
function expectedLines(ev) {
  const byBlob = new Map(deaggFixtures().map((m) => [m.blob.toString('base64'), m]));
  const lines = [];
  for (const r of ev.Records) {
    const m = byBlob.get(r.kinesis.data);
    if (m.expect === 'error') break;
    if (m.expect === 'plain') {
      lines.push({ sequenceNumber: r.kinesis.sequenceNumber, partitionKey: r.kinesis.partitionKey, data: r.kinesis.data });
      continue;
    }
    m.records.forEach((u, i) => {
      const line = { sequenceNumber: r.kinesis.sequenceNumber, subSequenceNumber: i, partitionKey: u.partition_key, data: u.data };
      if (u.explicit_hash_key !== null) line.explicitHashKey = u.explicit_hash_key;
      lines.push(line);
    });
  }
  return lines;
}

/** Runs a handler on an event, collecting what it prints. */
async function run(handler, ev) {
  const lines = [];
  const log = console.log;
  console.log = (s) => lines.push(JSON.parse(s));
  try {
    const answer = await handler(ev);
    return { lines, answer };
  } finally {
    console.log = log;
  }
}

function tmp(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

describe('the package as users get it', () => {
  it('each example handler, bundled by esbuild into one file, gives the event fixture user records', async () => {
    const ev = event('lambda_kinesis.json');
    const want = expectedLines(ev);
    assert.ok(want.length > 5);
    const dir = tmp('kagg-bundle-');
    for (const name of ['lambda-modern', 'lambda-compat']) {
      const outfile = path.join(dir, name + '.js');
      await esbuild.build({
        entryPoints: [path.join(here, 'examples', name + '.js')],
        outfile,
        bundle: true,
        platform: 'node',
        target: 'node18',
        format: 'cjs',
        logLevel: 'warning',
      });
      // One file, nothing else to load: no import of the package remains.
      assert.doesNotMatch(fs.readFileSync(outfile, 'utf8'), /require\("kinesis-agg/);
      const { lines, answer } = await run(require(outfile).handler, ev);
      assert.deepEqual(lines, want, name);
      const broken = ev.Records.find((r) => deaggFixtures().find((m) => m.blob.toString('base64') === r.kinesis.data).expect === 'error');
      assert.deepEqual(answer.batchItemFailures, broken ? [{ itemIdentifier: broken.kinesis.sequenceNumber }] : [], name);
    }
    fs.rmSync(dir, { recursive: true });
  });

  it('npm pack makes a tarball that installs offline into an empty folder and runs there', () => {
    const dir = tmp('kagg-pack-');
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: here, encoding: 'utf8' });
    const [info] = JSON.parse(out);
    const files = info.files.map((f) => f.path).sort();
    assert.deepEqual(files, [
      'README.md',
      'dist/compat.cjs',
      'dist/compat.d.ts',
      'dist/compat.mjs',
      'dist/core.cjs',
      'dist/core.mjs',
      'dist/events.d.ts',
      'dist/index.cjs',
      'dist/index.d.ts',
      'dist/index.mjs',
      'package.json',
    ]);
    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), '{"name": "app", "version": "1.0.0", "private": true}');
    execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', path.join(dir, info.filename)], { cwd: app, stdio: 'pipe' });
    // No dependency came with it.
    assert.deepEqual(fs.readdirSync(path.join(app, 'node_modules')).filter((f) => !f.startsWith('.')), ['kinesis-agg']);
    fs.copyFileSync(path.join(here, 'examples', 'lambda-modern.js'), path.join(app, 'handler.js'));
    fs.writeFileSync(path.join(app, 'event.json'), JSON.stringify(event('lambda_kinesis.json')));
    const script = [
      "const ev = require('./event.json');",
      "require('./handler.js').handler(ev).then((a) => process.stderr.write(JSON.stringify(a)));",
      "import('kinesis-agg').then((m) => process.stderr.write(' esm:' + typeof m.deaggregate));",
    ].join('\n');
    const res = require('node:child_process').spawnSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    const lines = res.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines, expectedLines(event('lambda_kinesis.json')));
    assert.match(res.stderr, /esm:function/);
    fs.rmSync(dir, { recursive: true });
  });

  it('the producer example puts and reads back through a Kinesis API', function () {
    if (!process.env.KINESIS_ENDPOINT) {
      // ./test.sh starts kinesalite and sets it; alone, there is no API to call.
      this.skip();
    }
    const out = execFileSync(process.execPath, [path.join(here, 'examples', 'producer.js')], { cwd: here, encoding: 'utf8' });
    assert.match(out, /put 5000 user records as \d+ Kinesis records/);
    assert.match(out, /holding 5000 user records/);
  });
});
