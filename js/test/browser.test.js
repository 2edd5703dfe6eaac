// The ESM build in a browser (headless Chromium, Debian's, driven by
// puppeteer-core): loaded as a module from a loopback server, it reads the
// fixtures with the core's own MD5 (a browser has no synchronous one) and
// writes aggregates that read back.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { deaggFixtures } = require('./support');

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const dist = path.join(__dirname, '..', 'dist');

describe('in a browser', function () {
  let server;
  let browser;

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      // ./test.sh installs Debian's chromium; without one there is no browser to drive.
      this.skip();
    }
    server = http.createServer((req, res) => {
      const file = path.join(dist, path.basename(req.url));
      if (req.url === '/') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<!doctype html><title>kinesis-agg</title>');
      } else if (fs.existsSync(file)) {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        res.end(fs.readFileSync(file));
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const puppeteer = require('puppeteer-core');
    browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  });

  after(async () => {
    if (browser) await browser.close();
    if (server) server.close();
  });

  it('reads every aggregated and plain fixture as the manifest says, and round trips an aggregate', async () => {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const cases = deaggFixtures()
      .filter((m) => m.expect !== 'error' && m.blob.length < 65536)
      .map((m) => ({ name: m.name, b64: m.blob.toString('base64') }));
    const got = await page.evaluate(async (cases) => {
      const k = await import('/index.mjs');
      const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const b64 = (u8) => btoa(Array.from(u8, (c) => String.fromCharCode(c)).join(''));
      const out = {};
      for (const c of cases) {
        out[c.name] = k.deaggregate(bytes(c.b64)).map((u) => [u.partitionKey ?? null, u.explicitHashKey ?? null, b64(u.data), u.aggregated]);
      }
      const agg = new k.Aggregator();
      agg.add('10', 'for key 10');
      agg.add('2', 'for key 2', '42');
      out.roundTrip = k.deaggregate(agg.flush().data).map((u) => [u.partitionKey, u.explicitHashKey ?? null, new TextDecoder().decode(u.data)]);
      // A Lambda event of them, read together (no Buffer: each text decoded with atob).
      const ev = { Records: cases.map((c, i) => ({ kinesis: { data: c.b64, partitionKey: 'p' + i, sequenceNumber: String(i) } })) };
      const shape = (u) => [u.partitionKey, u.explicitHashKey ?? null, b64(u.data), u.aggregated, u.sequenceNumber];
      out.lambda = k.lambdaUserRecords(ev).records.map(shape);
      // The same records given as bytes rather than base64 text.
      const evBytes = { Records: ev.Records.map((r) => ({ kinesis: { ...r.kinesis, data: bytes(r.kinesis.data) } })) };
      out.lambdaBytes = k.lambdaUserRecords(evBytes).records.map(shape);
      out.hasProcess = typeof process !== 'undefined';
      return out;
    }, cases);
    assert.equal(got.hasProcess, false, 'a browser, not Node');
    let aggregated = 0;
    for (const m of deaggFixtures().filter((f) => cases.some((c) => c.name === f.name))) {
      if (m.expect === 'aggregated') {
        aggregated += 1;
        assert.deepEqual(got[m.name], m.records.map((r) => [r.partition_key, r.explicit_hash_key, r.data, true]), m.name);
      } else {
        assert.deepEqual(got[m.name], [[null, null, m.blob.toString('base64'), false]], m.name);
      }
    }
    assert.ok(aggregated > 10);
    const byName = new Map(deaggFixtures().map((m) => [m.name, m]));
    const wantLambda = cases.flatMap((c, i) => {
      const m = byName.get(c.name);
      return m.expect === 'aggregated'
        ? m.records.map((r) => [r.partition_key, r.explicit_hash_key, r.data, true, String(i)])
        : [['p' + i, null, c.b64, false, String(i)]];
    });
    assert.deepEqual(got.lambda, wantLambda);
    assert.deepEqual(got.lambdaBytes, wantLambda);
    assert.deepEqual(got.roundTrip, [
      ['10', null, 'for key 10'],
      ['2', '42', 'for key 2'],
    ]);
    await page.close();
  });
});
