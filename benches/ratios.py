#!/usr/bin/env python3
"""Prints the README's ratio table from criterion's last run of
`cargo bench --bench codec` (medians from target/criterion/)."""

import json
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
median = {}
for bench in root.glob("**/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    est = json.loads((bench.parent / "estimates.json").read_text())
    median[meta["full_id"]] = est["median"]["point_estimate"]


def ratio(a, b):
    if a not in median or b not in median:
        return "n/a"
    return "%.3f" % (median[a] / median[b])


def us(a):
    return "%.1f" % (median[a] / 1000) if a in median else "n/a"


rows = []
for w in ["small", "ehk", "tiny", "large"]:
    d, a = "deaggregate/" + w, "aggregate/" + w
    rows.append(
        "| %s | %s us | %sx | %sx | %sx | %s us | %sx | %sx | %sx |"
        % (
            w,
            us(d + "/kinesis-agg"),
            ratio(d + "/kinesis-agg", d + "/md5-only"),
            ratio(d + "/prost", d + "/kinesis-agg"),
            ratio(d + "/prost-unverified", d + "/kinesis-agg-unverified"),
            us(a + "/kinesis-agg"),
            ratio(a + "/kinesis-agg", a + "/md5-only"),
            ratio(a + "/kinesis-agg-alloc", a + "/md5-only"),
            ratio(a + "/prost", a + "/kinesis-agg"),
        )
    )
print("| workload | deagg time | deagg / md5-only | prost / ours (verified) | prost / ours (unverified) "
      "| agg time | agg / md5-only | agg-alloc / md5-only | prost / ours |")
print("|---|---|---|---|---|---|---|---|---|")
print("\n".join(rows))
