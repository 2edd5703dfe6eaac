"""The example Lambda handlers on the event samples of tests/fixtures/events."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import kinesis_agg

from conftest import FIXTURES, ROOT

sys.path.insert(0, str(ROOT / "python" / "examples"))

import lambda_function  # noqa: E402


def events() -> list[dict[str, Any]]:
    return [json.loads((FIXTURES / "events" / n).read_text()) for n in ("lambda_kinesis.json", "lambda_fanout_mixed.json")]


def oracle(event: dict[str, Any]) -> tuple[int, int, str | None, int]:
    """User records and bytes before the first broken record, that record's
    sequence number, and the totals with broken records passed through."""
    n = size = 0
    broken = None
    all_n = all_size = 0
    for r in event["Records"]:
        data = base64.b64decode(r["kinesis"]["data"])
        try:
            users = kinesis_agg.deaggregate(data)
        except kinesis_agg.DeaggregationError:
            users = kinesis_agg.deaggregate(data, skip_checksum=True)
            broken = broken or r["kinesis"]["sequenceNumber"]
        all_n += len(users)
        all_size += sum(len(u.data) for u in users)
        if broken is None:
            n += len(users)
            size += sum(len(u.data) for u in users)
    return n, size, broken, all_n * 10**9 + all_size


def test_every_handler_reads_every_sample() -> None:
    for event in events():
        n, size, broken, totals = oracle(event)
        for handler in (lambda_function.lambda_bulk_handler, lambda_function.lambda_generator_handler):
            got = handler(event)
            assert got["user_records"] * 10**9 + got["bytes"] == totals
            assert got["aggregated"] > 0
        got = lambda_function.lambda_handler(event)
        assert (got["user_records"], got["bytes"]) == (n, size)
        assert got["batchItemFailures"] == ([{"itemIdentifier": broken}] if broken else [])
