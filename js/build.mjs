// npm run build: the core for wasm32 (cargo), its JavaScript glue
// (wasm-bindgen, installed with `cargo install wasm-bindgen-cli --version`
// the wasm-bindgen crate's), then the package's CommonJS and ESM files
// (esbuild), the WebAssembly optimized (wasm-opt) and built into the
// core's file so that loading is synchronous and needs no file system or
// fetch.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

// `npm run build -- --names` keeps the functions' names in the WebAssembly
// (about 30 KB more), so that a profile (node --cpu-prof) names them.
const names = process.argv.includes('--names');
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const run = (cmd, args, cwd = root) => execFileSync(cmd, args, { cwd, stdio: 'inherit' });

// With WebAssembly's 128-bit vectors (Node 16.4 and later, every current
// browser): many MD5s run side by side (a sharded aggregator's flush, a
// batch of blobs), 1.6x the speed of one after another.
execFileSync('cargo', ['build', '-p', 'kinesis-agg-js', '--target', 'wasm32-unknown-unknown', '--profile', 'wasm'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS: '-C target-feature=+simd128' },
});
const wasm = join(root, 'target', 'wasm32-unknown-unknown', 'wasm', 'kinesis_agg_js.wasm');
rmSync(join(here, 'pkg'), { recursive: true, force: true });
run('wasm-bindgen', [...(names ? ['--keep-debug'] : []), '--target', 'web', '--out-dir', join(here, 'pkg'), '--out-name', 'kinesis_agg_js', wasm]);
// Binaryen's optimizer (npm binaryen, a dev dependency): a quarter smaller.
// The features are those rustc's wasm32 target emits.
const module = join(here, 'pkg', 'kinesis_agg_js_bg.wasm');
const features = ['simd', 'bulk-memory', 'nontrapping-float-to-int', 'sign-ext', 'mutable-globals', 'multivalue', 'reference-types'];
run(join(here, 'node_modules', '.bin', 'wasm-opt'), [...(names ? ['-g'] : []), '-O3', ...features.map((f) => '--enable-' + f), module, '-o', module], here);

rmSync(join(here, 'dist'), { recursive: true, force: true });
mkdirSync(join(here, 'dist'));
for (const [format, ext] of [['cjs', 'cjs'], ['esm', 'mjs']]) {
  // index and compat share one core file per format.
  const core = {
    name: 'core',
    setup(b) {
      b.onResolve({ filter: /^\.\/core\.js$/ }, () => ({ path: './core.' + ext, external: true }));
    },
  };
  await esbuild.build({
    entryPoints: [join(here, 'lib', 'core.js')],
    outfile: join(here, 'dist', 'core.' + ext),
    bundle: true,
    format,
    platform: 'neutral',
    target: 'es2020',
    loader: { '.wasm': 'binary' },
    // The glue's asynchronous loader (never called here) names the file by
    // import.meta.url, which CommonJS has not.
    define: format === 'cjs' ? { 'import.meta.url': 'undefined' } : {},
    // esbuild's CommonJS exports are getters (live bindings), two calls at
    // each use of an import from index.cjs or compat.cjs; the core exports
    // only constants, functions and classes, so plain properties do.
    footer: format === 'cjs' ? { js: 'module.exports = Object.defineProperty(Object.assign({}, module.exports), "__esModule", { value: true });' } : {},
    logLevel: 'warning',
  });
  for (const name of ['index', 'compat']) {
    await esbuild.build({
      entryPoints: [join(here, 'lib', name + '.js')],
      outfile: join(here, 'dist', name + '.' + ext),
      bundle: true,
      format,
      platform: 'neutral',
      target: 'es2020',
      plugins: [core],
      logLevel: 'warning',
    });
  }
}
for (const name of ['index', 'compat', 'events']) {
  copyFileSync(join(here, 'types', name + '.d.ts'), join(here, 'dist', name + '.d.ts'));
}
console.log('wasm: ' + statSync(module).size + ' bytes');
