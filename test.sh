#!/usr/bin/env bash
# Every test suite of the project: Rust (the workspace, and the end-to-end
# test against a Kinesis API), Python (pytest, mypy --strict, the wheels
# and the Lambda layer the layer test runs) and C (ffi/: the C tests under
# AddressSanitizer and UBSan, the examples, kagg-deagg against the CLI).
#
# It installs, under .tools/ only: a Python virtual environment .tools/py
# with maturin, pytest, hypothesis, mypy, boto3, ziglang, auditwheel, awscli
# and cbor2 (clients of the proxy's tests), and the
# reference module aws-kinesis-agg 1.2.3 (with six, which it imports), the
# package itself built from python/ by pip, and kinesalite (npm) for a
# Kinesis API on loopback, which it starts on a free port and stops by PID.
# It also adds the rustup targets the wheels need (python/build.sh), and for
# the JavaScript package (js/) the wasm32 target, wasm-bindgen-cli (cargo
# install into .tools/bin, the version of the wasm-bindgen crate in
# Cargo.lock) and js/'s npm dev dependencies (npm ci, into js/node_modules).
# The JavaScript browser test drives Debian's chromium when it is installed
# (.ci/run installs it) and is skipped without it.
# Needs: cargo (rustup), python3 (3.10+) with venv, node (18+) and npm, make
# and a C compiler with the sanitizers (gcc or clang).
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$PWD"
TOOLS="$ROOT/.tools"
PY="$TOOLS/py/bin/python"
KINESALITE_VERSION=3.3.3
mkdir -p "$TOOLS"

step() { printf '\n--- %s\n' "$*"; }

step "Python environment (.tools/py)"
[ -x "$PY" ] || python3 -m venv "$TOOLS/py"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q "maturin>=1.9.4,<2" pytest hypothesis mypy boto3 ziglang auditwheel "aws-kinesis-agg==1.2.3" six awscli cbor2

step "kinesalite (a Kinesis API) on loopback"
if [ ! -d "$TOOLS/node_modules/kinesalite" ]; then
    npm install --prefix "$TOOLS" --no-audit --no-fund "kinesalite@$KINESALITE_VERSION" > /dev/null
fi
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
NODE_PATH="$TOOLS/node_modules" node .ci/kinesalite.js "$PORT" > "$TOOLS/kinesalite.log" 2>&1 &
KPID=$!
trap 'kill "$KPID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then break; fi
    kill -0 "$KPID" || { cat "$TOOLS/kinesalite.log"; exit 1; }
    sleep 0.1
done
export KINESIS_ENDPOINT="http://127.0.0.1:$PORT"

step "Rust: the workspace"
cargo test --workspace --all-features

step "Rust: end to end against kinesalite"
cargo test --all-features --test e2e -- --ignored --nocapture

step "Rust: the producer against kinesalite, directly and through a fault proxy"
# One test at a time: their timings (TTLs, timeouts) assume the machine's cores.
cargo test --all-features --test producer -- --ignored --nocapture --test-threads 1

step "Rust: kinesis-agg put and tail against kinesalite, directly and through a fault proxy"
cargo test --all-features --test cli_stream -- --ignored --test-threads 1

step "Rust: kinesis-agg proxy with the Rust SDK against kinesalite"
cargo test --all-features --test proxy -- --ignored --test-threads 1

step "Python: the package built from source (pip install ./python)"
"$PY" -m pip install -q --force-reinstall --no-deps ./python

step "Python: wheels (x86_64, aarch64) and Lambda layers (python/build.sh)"
PYTHON="$PY" python/build.sh

step "Python: pytest"
# The pytest script, not "python -m pytest": the latter puts python/ on
# sys.path, where the source package (without its native module) would
# shadow the installed one.
(cd python && "$TOOLS/py/bin/pytest" -q -rs)

step "Python: mypy --strict"
(cd python && "$PY" -m mypy)

step "C: the interface's tests (ASan, UBSan), the example, kagg-deagg against the CLI"
make -C ffi test

step "JavaScript: the npm package (js/): build, mocha (fixtures, both APIs, the reference beside it, properties, the bundled and packed examples, the browser), tsc --strict"
rustup target add wasm32-unknown-unknown
WB_VERSION=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)
if [ "$("$TOOLS/bin/wasm-bindgen" --version 2>/dev/null)" != "wasm-bindgen $WB_VERSION" ]; then
    # Not --locked: a dependency its lock file pins may be yanked.
    cargo install --root "$TOOLS" wasm-bindgen-cli --version "$WB_VERSION"
fi
(
    cd js
    npm ci --no-audit --no-fund
    PATH="$TOOLS/bin:$PATH" npm run build
    npm test
    npm run types
)

step "kinesis-agg proxy with real clients: boto3 from threads, the AWS CLI, a CBOR client, the JavaScript SDK v3; the same over HTTPS"
# The binary cargo test built (target/debug); the JavaScript SDK from js/node_modules.
(cd tests/clients && KAGG_BIN="$ROOT/target/debug/kinesis-agg" PATH="$TOOLS/py/bin:$PATH" "$TOOLS/py/bin/pytest" -q -rs -p no:cacheprovider .)
(cd tests/clients && "$PY" -m mypy --strict test_proxy_clients.py)

kill "$KPID"
trap - EXIT
echo "all suites passed"
