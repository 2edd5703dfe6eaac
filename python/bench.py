"""Side-by-side benchmark: kinesis_agg (both APIs) and aws_kinesis_agg 1.2.3.

    python python/bench.py [--records N] [--repeat R]

Aggregates N records of 100 bytes over 100 partition keys of 36
characters, then deaggregates the resulting aggregates given as a Lambda
Kinesis event (every user record to the dictionaries Lambda code reads,
or to UserRecord objects for the modern API). Each measurement runs R
times in this one process; the table gives the median rate and the ratio
to the reference. Needs ``pip install aws-kinesis-agg==1.2.3 six``.

Beside them, the floors the compatible API is measured against:

- aggregating: the same Python loop over the records making one native
  call a record, the MD5 of its data (what every aggregator computes);
- deaggregating: the Lambda dictionaries of every user record made by
  copying the event record's two dictionaries, and nothing else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import platform
import statistics
import time
import uuid
from typing import Any, Callable

import aws_kinesis_agg.aggregator as ref_agg
import aws_kinesis_agg.deaggregator as ref_deagg

import kinesis_agg
import kinesis_agg.aggregator as compat_agg
import kinesis_agg.deaggregator as compat_deagg


def make_records(n: int) -> list[tuple[str, bytes]]:
    keys = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(100)]
    return [(keys[i % 100], bytes([i % 251]) * 100) for i in range(n)]


def compat_aggregate(module: Any, records: list[tuple[str, bytes]]) -> list[bytes]:
    """The aggregates' blobs, with the reference API (either module)."""
    agg = module.RecordAggregator()
    completed = [agg.add_user_record(pk, data) for pk, data in records]
    completed.append(agg.clear_and_get())
    return [a.get_contents()[2] for a in completed if a is not None]


def modern_aggregate(records: list[tuple[str, bytes]]) -> list[bytes]:
    agg = kinesis_agg.Aggregator()
    out = []
    add = agg.add
    for pk, data in records:
        full = add(pk, data)
        if full is not None:
            out.append(full.data)
    last = agg.flush()
    if last is not None:
        out.append(last.data)
    return out


def lambda_event(blobs: list[bytes]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk-%d" % i,
                    "sequenceNumber": "4959%050d" % i,
                    "data": base64.b64encode(b).decode("ascii"),
                    "approximateArrivalTimestamp": 1545084650.987,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": "shardId-000000000006:4959%050d" % i,
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-2",
                "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
            }
            for i, b in enumerate(blobs)
        ]
    }


def aggregate_floor(records: list[tuple[str, bytes]]) -> int:
    """One native call a record, the MD5 of its data."""
    update = hashlib.md5().update
    for _pk, data in records:
        update(data)
    return len(records)


def deaggregate_floor(event: dict[str, Any], counts: list[int]) -> int:
    """The two dictionaries of each user record, copied from its event
    record's (``counts``: user records a Kinesis record), nothing else."""
    out = []
    for record, count in zip(event["Records"], counts):
        kinesis = record["kinesis"]
        for _ in range(count):
            r = record.copy()
            r["kinesis"] = kinesis.copy()
            out.append(r)
    return len(out)


def measure(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    times = []
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    records = make_records(args.records)
    blobs = modern_aggregate(records)
    event = lambda_event(blobs)
    n = len(records)
    counts = [len(kinesis_agg.deaggregate(b)) for b in blobs]

    rows = [
        ("aggregate", "aws_kinesis_agg 1.2.3", lambda: len(compat_aggregate(ref_agg, records)) and n),
        ("aggregate", "kinesis_agg.aggregator (compatible)", lambda: len(compat_aggregate(compat_agg, records)) and n),
        ("aggregate", "kinesis_agg.Aggregator (modern)", lambda: len(modern_aggregate(records)) and n),
        ("deaggregate", "aws_kinesis_agg 1.2.3", lambda: len(ref_deagg.deaggregate_records(event["Records"]))),
        (
            "deaggregate",
            "kinesis_agg.deaggregator (compatible)",
            lambda: len(compat_deagg.deaggregate_records(event["Records"])),
        ),
        ("deaggregate", "kinesis_agg.lambda_user_records (modern)", lambda: len(kinesis_agg.lambda_user_records(event))),
        ("floor", "aggregate: one native call and the MD5 of each record's data", lambda: aggregate_floor(records)),
        ("floor", "deaggregate: two dictionaries a record copied, nothing else", lambda: deaggregate_floor(event, counts)),
    ]
    print("machine: %s, %s, Python %s" % (platform.machine(), platform.processor() or platform.system(), platform.python_version()))
    print("%d records of 100 bytes over 100 keys of 36 characters; %d aggregates; median of %d runs\n" % (n, len(blobs), args.repeat))
    print("| job | implementation | records/s | ratio |")
    print("|---|---|---|---|")
    base = 0.0
    rates = {}
    for job, name, fn in rows:
        t, count = measure(fn, args.repeat)
        if count != n:
            raise SystemExit("%s %s produced %d records, expected %d" % (job, name, count, n))
        rate = n / t
        rates[(job, name)] = rate
        if name.startswith("aws_kinesis_agg"):
            base = rate
        ratio = "" if job == "floor" else "%.1fx" % (rate / base)
        print("| %s | %s | %s | %s |" % (job, name, format(int(rate), ","), ratio))
    floor_agg = rates[("floor", rows[6][1])]
    floor_deagg = rates[("floor", rows[7][1])]
    print(
        "\nthe compatible API against its floors: aggregating %.2fx the floor's time, deaggregating %.2fx"
        % (floor_agg / rates[("aggregate", rows[1][1])], floor_deagg / rates[("deaggregate", rows[4][1])])
    )


if __name__ == "__main__":
    main()
