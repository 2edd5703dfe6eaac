#!/usr/bin/env bash
# Seeds each fuzz target's corpus from tests/fixtures/ (run from anywhere).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fixtures="$here/../tests/fixtures/deagg"
for t in deaggregate deaggregate_body differential roundtrip batch api_requests; do mkdir -p "$here/corpus/$t"; done
for f in "$fixtures"/*.bin; do
    name="$(basename "$f" .bin)"
    cp "$f" "$here/corpus/deaggregate/$name"
    size=$(stat -c %s "$f")
    # Bodies: the bytes between the magic and the MD5 trailer, for blobs
    # that have them; small ones only, to keep the fuzzer fast.
    if [ "$size" -gt 20 ] && [ "$size" -lt 65536 ]; then
        tail -c +5 "$f" | head -c $((size - 20)) > "$here/corpus/deaggregate_body/$name"
        cp "$here/corpus/deaggregate_body/$name" "$here/corpus/differential/$name"
    fi
    # A batch of one (flag byte, then the blob with its length), small ones.
    if [ "$size" -lt 65536 ]; then
        { printf '\000'; python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<H', $size))"; cat "$f"; } > "$here/corpus/batch/$name"
    fi
    # Arbitrary-driven input for the round trip: any bytes will do.
    if [ "$size" -lt 4096 ]; then cp "$f" "$here/corpus/roundtrip/$name"; fi
done
# Requests and answers of the Kinesis API for api_requests (first byte:
# 0 PutRecords JSON, 2 GetRecords answer).
printf '\000{"StreamName":"s","Records":[{"Data":"aGk=","PartitionKey":"k"},{"Data":"","PartitionKey":"\\u00e9","ExplicitHashKey":"42"}]}' > "$here/corpus/api_requests/put-records"
printf '\002{"Records":[{"SequenceNumber":"1","Data":"aGk=","PartitionKey":"k"}],"NextShardIterator":"x"}' > "$here/corpus/api_requests/get-records"
echo "seeded $(ls "$here"/corpus/* | wc -l) corpus entries"
