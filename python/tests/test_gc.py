"""The cyclic garbage collector is paused while a call makes the records
of a large aggregate, and left as it was found on every way out."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any, Callable

import pytest

import kinesis_agg
import kinesis_agg.deaggregator as compat_deagg
from kinesis_agg._native import _lambda_dicts

from conftest import blob, lambda_record


def aggregate_of(n: int) -> bytes:
    agg = kinesis_agg.Aggregator()
    for i in range(n):
        assert agg.add("key-%d" % (i % 7), b"record %d" % i) is None
    last = agg.flush()
    assert last is not None
    return last.data


LARGE = aggregate_of(3000)
SMALL = aggregate_of(3)
BROKEN = blob("missing_data")

def each_alone(blobs: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for b in blobs:
        try:
            out.append(kinesis_agg.deaggregate(b))
        except kinesis_agg.DeaggregationError as e:
            out.append(e)
    return out


CALLS: dict[str, Callable[[list[bytes]], Any]] = {
    "deaggregate": each_alone,
    "deaggregate_many": lambda blobs: kinesis_agg.deaggregate_many(blobs),
    "lambda_user_records": lambda blobs: kinesis_agg.lambda_user_records(
        {"Records": [lambda_record(b) for b in blobs]}, on_invalid="pass"
    ),
    "compat deaggregate_records": lambda blobs: compat_deagg.deaggregate_records(
        [lambda_record(b) for b in blobs], on_invalid="pass"
    ),
}


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of each collection that starts while the test runs."""
    started: list[int] = []

    def on(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.collect()
    gc.callbacks.append(on)
    try:
        yield started
    finally:
        gc.callbacks.remove(on)
        gc.enable()


@pytest.mark.parametrize("call", sorted(CALLS))
def test_left_running_or_paused_as_found(call: str, collections: list[int]) -> None:
    for blobs in ([LARGE], [SMALL, LARGE, BROKEN], [BROKEN, LARGE], [SMALL]):
        gc.enable()
        CALLS[call](blobs)
        assert gc.isenabled(), (call, len(blobs))
        gc.disable()
        CALLS[call](blobs)
        assert not gc.isenabled(), (call, len(blobs))
    # A broken record raised after a large one: the collector runs again.
    gc.enable()
    with pytest.raises(kinesis_agg.DeaggregationError):
        kinesis_agg.lambda_user_records({"Records": [lambda_record(LARGE), lambda_record(BROKEN)]})
    assert gc.isenabled()
    with pytest.raises(kinesis_agg.DeaggregationError):
        compat_deagg.deaggregate_records([lambda_record(LARGE), lambda_record(BROKEN)])
    assert gc.isenabled()


def test_no_collection_while_the_dictionaries_are_made(collections: list[int]) -> None:
    # 3,000 user records are 6,000 dictionaries, several collections' worth
    # of allocations (700 each by default); made with the collector paused,
    # none starts until the call has returned.
    kinesis_base: dict[str, Any] = {"sequenceNumber": "1"}
    outer_base: dict[str, Any] = {"eventSource": "aws:kinesis"}
    made = _lambda_dicts([(LARGE, kinesis_base, outer_base, None)])
    # Counted before anything else is allocated: the first container made
    # after the call starts the collection that was put off.
    during = len(collections)
    assert during == 0
    first = made[0]
    assert isinstance(first, list) and len(first) == 3000
    # The same allocations made by Python code do start collections.
    copies = [{"n": i} for i in range(6000)]
    assert len(collections) > 0
    assert len(copies) == 6000
