// Shared by the tests: the repository's fixtures, and the package as
// built (dist/), loaded the way a user loads it.
const fs = require('node:fs');
const path = require('node:path');

const fixtures = path.join(__dirname, '..', '..', 'tests', 'fixtures');

/** The deaggregation fixtures with their blobs. */
function deaggFixtures() {
  const dir = path.join(fixtures, 'deagg');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
  return manifest.map((m) => ({ ...m, blob: fs.readFileSync(path.join(dir, m.name + '.bin')) }));
}

/** The aggregation fixtures: records in, aggregates expected. */
function aggFixtures() {
  const dir = path.join(fixtures, 'agg');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => {
      const doc = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
      doc.records = doc.records.map((r) => ({
        partitionKey: r.partition_key,
        explicitHashKey: r.explicit_hash_key === null ? undefined : r.explicit_hash_key,
        data: r.data !== undefined ? Buffer.from(r.data, 'base64') : pattern(r.pattern_len),
      }));
      return doc;
    });
}

/** The fixtures' long data: byte i is i % 251. */
function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

/** A Lambda event file of the fixtures. */
function event(name) {
  return JSON.parse(fs.readFileSync(path.join(fixtures, 'events', name), 'utf8'));
}

module.exports = { deaggFixtures, aggFixtures, event, fixtures };
