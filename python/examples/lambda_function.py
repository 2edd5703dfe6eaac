"""Lambda handlers for a Kinesis event source, on kinesis_agg.

Three handlers, pick one as the function's handler:

* ``lambda_bulk_handler``: the compatibility API, every user record of the
  batch as a list (``deaggregate_records``);
* ``lambda_generator_handler``: the compatibility API, one user record at a
  time (``iter_deaggregate_records``);
* ``lambda_handler``: the modern API, reporting a broken aggregated record
  as a batch item failure (enable ``ReportBatchItemFailures`` on the event
  source mapping) so Lambda retries from it instead of losing it.

Each returns a summary, so a test (or a log) can see what it read.
"""

from __future__ import annotations

import base64
from typing import Any

import kinesis_agg
from kinesis_agg.deaggregator import deaggregate_records, iter_deaggregate_records


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "user_records": len(records),
        "aggregated": sum(1 for r in records if r["kinesis"].get("aggregated")),
        "bytes": sum(len(base64.b64decode(r["kinesis"]["data"])) for r in records),
    }


def lambda_bulk_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Deaggregates the whole batch at once; a broken aggregated record is
    passed through as it came."""
    records = deaggregate_records(event["Records"], on_invalid="pass")
    for r in records:
        print("partition key %s, sub-sequence %s" % (r["kinesis"]["partitionKey"], r["kinesis"].get("subSequenceNumber")))
    return _summary(records)


def lambda_generator_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Deaggregates one user record at a time (constant memory per user
    record); a broken aggregated record is passed through as it came."""
    seen = []
    for r in iter_deaggregate_records(event["Records"], on_invalid="pass"):
        seen.append(r)
    return _summary(seen)


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """The modern API: user records with their outer record's metadata;
    a broken aggregated record becomes a batch item failure, and Lambda
    retries the batch from it."""
    users: list[kinesis_agg.UserRecord] = []
    failures: list[dict[str, str]] = []
    for record in event["Records"]:
        try:
            users += kinesis_agg.lambda_user_records([record])
        except kinesis_agg.DeaggregationError as e:
            print("record %s: %s at offset %s" % (e.sequence_number, e.reason, e.offset))
            failures.append({"itemIdentifier": str(e.sequence_number)})
            break  # Lambda retries from the first failure; stop there.
    return {
        "batchItemFailures": failures,
        "user_records": len(users),
        "bytes": sum(len(u.data) for u in users),
    }
