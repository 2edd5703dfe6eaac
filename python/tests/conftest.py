"""Shared paths and helpers of the Python test suite."""

from __future__ import annotations

import base64
import json
from pathlib import Path
import threading
from typing import Any, Callable, Optional, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def manifest() -> list[dict[str, Any]]:
    """The deaggregation fixtures with Google protobuf's parse of each."""
    return json.loads((FIXTURES / "deagg" / "manifest.json").read_text())  # type: ignore[no-any-return]


T = TypeVar("T")


def add_from_threads(add: Callable[[str, bytes], Optional[T]], per_writer: int, writers: int = 4) -> list[T]:
    """Calls ``add("w<w>", b"<w>:<i>")`` for ``i`` below ``per_writer`` from
    ``writers`` threads at once; returns what the calls returned, Nones left
    out."""
    lock = threading.Lock()
    out: list[T] = []

    def writer(w: int) -> None:
        for i in range(per_writer):
            r = add("w%d" % w, b"%d:%d" % (w, i))
            if r is not None:
                with lock:
                    out.append(r)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def blob(name: str) -> bytes:
    return (FIXTURES / "deagg" / (name + ".bin")).read_bytes()


def lambda_record(data: bytes, seq: str = "49590338271490256608559692538361571095921575989136588898") -> dict[str, Any]:
    """A Lambda Kinesis event record carrying ``data``."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "outer",
            "sequenceNumber": seq,
            "data": base64.b64encode(data).decode("ascii"),
            "approximateArrivalTimestamp": 1545084650.987,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": "shardId-000000000006:" + seq,
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
        "awsRegion": "us-east-2",
        "eventSourceARN": "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
    }


@pytest.fixture
def reference() -> Any:
    """The reference module, aws_kinesis_agg 1.2.3 (a test dependency)."""
    import aws_kinesis_agg

    return aws_kinesis_agg
