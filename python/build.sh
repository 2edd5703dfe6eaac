#!/usr/bin/env bash
# Builds the Python package's wheels and Lambda layers into python/dist:
#   kinesis_agg-<v>-cp310-abi3-manylinux_2_17_x86_64...whl   (Lambda x86_64)
#   kinesis_agg-<v>-cp310-abi3-manylinux_2_17_aarch64...whl  (Lambda arm64)
#   kinesis-agg-layer-x86_64.zip, kinesis-agg-layer-arm64.zip
# both wheels manylinux2014, cross-linked with zig, and checked with
# auditwheel. It installs the rustup target aarch64-unknown-linux-gnu and
# needs maturin, ziglang and auditwheel (PyPI) in $PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
# maturin finds zig through the python on PATH (the ziglang package).
export PATH="$(dirname "$(command -v "$PY")"):$PATH"
rustup target add x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
rm -rf dist
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
    "$PY" -m maturin build --release --zig --compatibility manylinux2014 --target "$target" --out dist
done
for whl in dist/*.whl; do
    "$PY" -m auditwheel show "$whl"
done
# A layer is the wheel's contents under python/, where Lambda's runtimes
# look (/opt/python).
"$PY" - <<'PY'
import glob, zipfile
for arch, tag in (("x86_64", "x86_64"), ("arm64", "aarch64")):
    (whl,) = glob.glob("dist/*%s*.whl" % tag)
    with zipfile.ZipFile(whl) as src, zipfile.ZipFile("dist/kinesis-agg-layer-%s.zip" % arch, "w", zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            out.writestr("python/" + name, src.read(name))
    print("dist/kinesis-agg-layer-%s.zip from %s" % (arch, whl))
PY
