"""The compatibility API has the reference module's names, signatures,
defaults, return types and dictionary shapes."""

from __future__ import annotations

import base64
import copy
import inspect
import threading
import time
from typing import Any

import pytest

import kinesis_agg
import kinesis_agg.aggregator as agg
import kinesis_agg.deaggregator as deagg

from conftest import add_from_threads, lambda_record


def test_top_level_constants(reference: Any) -> None:
    for name in ("MAGIC", "DIGEST_SIZE", "MAX_BYTES_PER_RECORD"):
        assert getattr(kinesis_agg, name) == getattr(reference, name)
    assert kinesis_agg.MAGIC == b"\xf3\x89\x9a\xc2"
    assert kinesis_agg.DIGEST_SIZE == 16
    assert kinesis_agg.MAX_BYTES_PER_RECORD == 1024 * 1024


def params(f: Any) -> list[tuple[str, Any]]:
    return [(p.name, p.default) for p in inspect.signature(f).parameters.values() if p.kind != p.VAR_KEYWORD and p.kind != p.VAR_POSITIONAL]


@pytest.mark.parametrize(
    "name",
    ["add_user_record", "on_record_complete", "clear_callbacks", "clear_record", "clear_and_get", "get_num_user_records", "get_size_bytes"],
)
def test_record_aggregator_methods_match(reference: Any, name: str) -> None:
    import aws_kinesis_agg.aggregator as ref_agg

    ours = params(getattr(agg.RecordAggregator, name))
    theirs = params(getattr(ref_agg.RecordAggregator, name))
    assert ours == theirs


def test_constructor_and_module_functions_match(reference: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg
    import aws_kinesis_agg.deaggregator as ref_deagg

    assert params(agg.RecordAggregator.__init__) == params(ref_agg.RecordAggregator.__init__)
    # The reference's deaggregate_records has no data_format; ours adds it.
    assert params(deagg.iter_deaggregate_records)[:2] == params(ref_deagg.iter_deaggregate_records)
    assert params(deagg.deaggregate_records)[:1] == params(ref_deagg.deaggregate_records)
    for name in ("get_contents", "get_num_user_records", "get_size_bytes", "get_partition_key", "get_explicit_hash_key"):
        assert hasattr(agg.AggRecord, name)
    assert inspect.isgeneratorfunction(deagg.iter_deaggregate_records)


def test_max_size_bounds() -> None:
    with pytest.raises(ValueError, match="exceeds maximum value 1048576"):
        agg.RecordAggregator(1048577)
    a = agg.RecordAggregator(max_size=0)  # accepted, as there
    with pytest.raises(ValueError):
        a.add_user_record("k", b"")
    assert agg.RecordAggregator().max_size == 1048576


def test_empty_aggregator_and_clearing() -> None:
    a = agg.RecordAggregator()
    assert a.get_num_user_records() == 0
    assert a.get_size_bytes() == 20
    assert a.clear_and_get() is None
    a.add_user_record("k", "data")
    assert a.get_size_bytes() > 20
    a.clear_record()
    assert a.get_num_user_records() == 0 and a.get_size_bytes() == 20
    assert a.clear_and_get() is None


def test_agg_record_contents_keep_the_callers_types() -> None:
    a = agg.RecordAggregator()
    a.add_user_record(b"bytes-key", "text data", b"12345")
    a.add_user_record("second", b"raw")
    rec = a.clear_and_get()
    assert rec is not None
    pk, ehk, data = rec.get_contents()
    assert (pk, ehk) == (b"bytes-key", b"12345")
    assert rec.get_partition_key() == b"bytes-key"
    assert rec.get_explicit_hash_key() == b"12345"
    assert isinstance(data, bytes) and rec.get_size_bytes() == len(data)
    assert rec.get_num_user_records() == 2
    assert bool(rec) is True
    assert copy.deepcopy(rec) is rec and copy.copy(rec) is rec
    got = kinesis_agg.deaggregate(data)
    assert [(r.partition_key, r.explicit_hash_key, r.data) for r in got] == [
        ("bytes-key", "12345", b"text data"),
        ("second", None, b"raw"),
    ]


def test_full_record_is_returned_and_the_record_starts_the_next() -> None:
    a = agg.RecordAggregator(max_size=300)
    fulls = [a.add_user_record("k%d" % i, bytes(100)) for i in range(5)]
    done = [f for f in fulls if f is not None]
    assert [f is None for f in fulls] == [True, True, False, True, False]
    assert a.get_num_user_records() == 1
    last = a.clear_and_get()
    assert last is not None
    counts = [f.get_num_user_records() for f in done] + [last.get_num_user_records()]
    assert counts == [2, 2, 1]
    assert done[1].get_partition_key() == "k2"
    for f in done:
        pk, _, data = f.get_contents()
        assert len(data) + len(pk) <= 300


def test_inline_callbacks_see_every_full_record_before_add_returns() -> None:
    seen: list[Any] = []
    a = agg.RecordAggregator(max_size=300)
    a.on_record_complete(seen.append, execute_on_new_thread=False)
    returned = [r for r in (a.add_user_record("k", bytes(100)) for _ in range(7)) if r is not None]
    assert seen == returned and len(seen) == 3
    a.clear_callbacks()
    assert [r for r in (a.add_user_record("k", bytes(100)) for _ in range(4)) if r is not None]
    assert len(seen) == 3


def test_an_inline_callback_that_raises_loses_nothing() -> None:
    def boom(r: Any) -> None:
        raise RuntimeError("callback failed")

    a = agg.RecordAggregator(max_size=300)
    a.on_record_complete(boom, execute_on_new_thread=False)
    a.add_user_record("k", bytes(100))
    a.add_user_record("k", bytes(100))
    with pytest.raises(RuntimeError) as e:
        a.add_user_record("k", bytes(100))
    full = e.value.agg_record  # type: ignore[attr-defined]
    assert full.get_num_user_records() == 2
    assert a.get_num_user_records() == 1  # the third record, kept


def test_callbacks_on_new_threads_under_concurrent_adds() -> None:
    lock = threading.Lock()
    delivered: list[Any] = []
    threads: set[int] = set()

    def callback(r: Any) -> None:
        with lock:
            delivered.append(r)
            threads.add(threading.get_ident())

    a = agg.RecordAggregator(max_size=2000)
    a.on_record_complete(callback)
    returned = add_from_threads(a.add_user_record, 500)
    deadline = time.time() + 10
    while len(delivered) < len(returned) and time.time() < deadline:
        time.sleep(0.01)
    assert sorted(map(id, delivered)) == sorted(map(id, returned))
    assert threading.get_ident() not in threads
    last = a.clear_and_get()
    assert last is not None
    seen = [u.data for r in returned + [last] for u in kinesis_agg.deaggregate(r.get_contents()[2])]
    assert sorted(seen) == sorted(b"%d:%d" % (w, i) for w in range(4) for i in range(500))
    # Within each aggregate, each writer's records keep their order.
    for r in returned + [last]:
        datas = [u.data for u in kinesis_agg.deaggregate(r.get_contents()[2])]
        for w in range(4):
            mine = [int(d.split(b":")[1]) for d in datas if d.startswith(b"%d:" % w)]
            assert mine == sorted(mine)


def test_deaggregate_shapes_of_every_input_kind() -> None:
    a = agg.RecordAggregator()
    a.add_user_record("p1", b"one", "7")
    a.add_user_record("p2", b"two")
    data = a.clear_and_get().get_contents()[2]  # type: ignore[union-attr]
    lam = lambda_record(data)
    out = deagg.deaggregate_records(lam)  # one mapping, not a list
    assert [list(r) for r in out] == [["kinesis"] + [k for k in lam if k != "kinesis"]] * 2
    assert list(out[0]["kinesis"]) == [
        "kinesisSchemaVersion",
        "sequenceNumber",
        "approximateArrivalTimestamp",
        "explicitHashKey",
        "partitionKey",
        "subSequenceNumber",
        "aggregated",
        "data",
    ]
    firehose = {
        "recordId": "rid-1",
        "approximateArrivalTimestamp": 1545084650987,
        "data": base64.b64encode(data).decode(),
        "kinesisRecordMetadata": {
            "sequenceNumber": "495",
            "subsequenceNumber": 0,
            "partitionKey": "outer",
            "shardId": "shardId-000000000000",
            "approximateArrivalTimestamp": 1545084650987,
        },
    }
    out = deagg.deaggregate_records([firehose])
    assert [r["kinesis"]["recordId"] for r in out] == ["rid-1", "rid-1"]
    assert [r["kinesis"]["partitionKey"] for r in out] == ["p1", "p2"]
    assert out[0]["kinesis"]["sequenceNumber"] == "495"
    analytics = dict(firehose)
    analytics["kinesisStreamRecordMetadata"] = analytics.pop("kinesisRecordMetadata")
    assert [r["kinesis"]["explicitHashKey"] for r in deagg.deaggregate_records(analytics)] == ["7", None]
    boto = {
        "SequenceNumber": "495",
        "ApproximateArrivalTimestamp": 1.0,
        "Data": data,
        "PartitionKey": "outer",
    }
    out = list(deagg.iter_deaggregate_records([boto], data_format="Boto3"))
    assert [base64.b64decode(r["kinesis"]["data"]) for r in out] == [b"one", b"two"]
    # Without a kinesis key and without a known shape: KeyError, as there.
    with pytest.raises(KeyError):
        deagg.deaggregate_records([{"nothing": 1}])


def test_deaggregation_is_lazy_and_a_plain_record_passes_through() -> None:
    plain = lambda_record(b"just json")
    it = deagg.iter_deaggregate_records([plain, {"broken": True}])
    assert next(it) is plain
    with pytest.raises(KeyError):
        next(it)
