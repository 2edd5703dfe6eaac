#!/bin/sh
# kagg-deagg against `kinesis-agg deagg --input raw` on every fixture of
# tests/fixtures/deagg: the same standard output, byte for byte, and the
# same exit status (a broken body: 1, with nothing on standard output).
#   sh tests/check_deagg.sh build/kagg-deagg
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
kagg=$1
cargo build -q --features cli --bin kinesis-agg --manifest-path "$here/Cargo.toml"
cli="$here/target/debug/kinesis-agg"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
n=0
for f in "$here"/tests/fixtures/deagg/*.bin; do
    set +e
    "$cli" deagg --input raw < "$f" > "$out/want" 2> /dev/null; want=$?
    "$kagg" < "$f" > "$out/got" 2> "$out/err"; got=$?
    set -e
    if [ "$want" != "$got" ] || ! cmp -s "$out/want" "$out/got"; then
        echo "$(basename "$f"): kagg-deagg exit $got, CLI exit $want"; diff "$out/want" "$out/got" | head -5; exit 1
    fi
    if [ "$got" = 1 ] && ! grep -q "byte" "$out/err"; then
        echo "$(basename "$f"): the error does not name the offset: $(cat "$out/err")"; exit 1
    fi
    n=$((n + 1))
done
echo "kagg-deagg matches the CLI on $n fixtures"
