"""The shared fixtures of tests/fixtures (the bytes the Rust tests use)
through both APIs. Expected values come from Google protobuf's parse with
field presence (the manifest) and from real producers' bytes."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

import kinesis_agg
import kinesis_agg.aggregator as compat_agg
import kinesis_agg.deaggregator as compat_deagg

from conftest import FIXTURES, blob, lambda_record, manifest

CASES = manifest()


def same_data(got: bytes, want: dict[str, Any]) -> bool:
    """The manifest gives small data in base64, large data as length and MD5."""
    if "data" in want:
        return got == base64.b64decode(want["data"])
    return bool(len(got) == want["data_len"] and hashlib.md5(got).hexdigest() == want["data_md5"])


def test_the_manifest_covers_every_kind() -> None:
    kinds = {c["expect"] for c in CASES}
    assert kinds == {"aggregated", "plain", "error"}
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_modern_deaggregate_matches_google(case: dict[str, Any]) -> None:
    data = blob(case["name"])
    assert len(data) == case["len"]
    if case["expect"] == "error":
        with pytest.raises(kinesis_agg.DeaggregationError) as e:
            kinesis_agg.deaggregate(data)
        assert e.value.offset == case["offset"]
        assert isinstance(e.value, ValueError)
        assert e.value.reason
        return
    out = kinesis_agg.deaggregate(data, partition_key="outer")
    if case["expect"] == "plain":
        assert len(out) == 1
        assert out[0].aggregated is False
        assert out[0].data == data
        assert out[0].partition_key == "outer"
        assert out[0].sub_sequence_number is None
        return
    want = case["records"]
    assert len(out) == len(want)
    for i, (got, w) in enumerate(zip(out, want)):
        assert got.aggregated is True
        assert got.partition_key == w["partition_key"]
        assert got.explicit_hash_key == w["explicit_hash_key"]
        assert same_data(got.data, w)
        assert got.sub_sequence_number == i


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_compat_deaggregate_matches_google(case: dict[str, Any]) -> None:
    data = blob(case["name"])
    record = lambda_record(data)
    if case["expect"] == "error":
        with pytest.raises(kinesis_agg.DeaggregationError) as e:
            compat_deagg.deaggregate_records(record)
        assert e.value.offset == case["offset"]
        assert e.value.sequence_number == record["kinesis"]["sequenceNumber"]
        # Passed through unchanged on request.
        assert compat_deagg.deaggregate_records(record, on_invalid="pass") == [record]
        return
    out = compat_deagg.deaggregate_records([record])
    if case["expect"] == "plain":
        assert out == [record]
        assert out[0] is record
        return
    want = case["records"]
    assert len(out) == len(want)
    for i, (got, w) in enumerate(zip(out, want)):
        k = got["kinesis"]
        assert k["partitionKey"] == w["partition_key"]
        assert k["explicitHashKey"] == w["explicit_hash_key"]
        assert same_data(base64.b64decode(k["data"]), w)
        assert isinstance(k["data"], bytes)
        assert k["subSequenceNumber"] == i
        assert k["aggregated"] is True
        assert k["sequenceNumber"] == record["kinesis"]["sequenceNumber"]
        assert k["kinesisSchemaVersion"] == "1.0"
        assert k["approximateArrivalTimestamp"] == record["kinesis"]["approximateArrivalTimestamp"]
        for key in ("eventSource", "eventID", "eventName", "awsRegion", "eventSourceARN", "invokeIdentityArn"):
            assert got[key] == record[key]
        assert "recordId" not in k


def load_agg(path: Any) -> tuple[list[tuple[str, Any, bytes]], list[dict[str, Any]]]:
    doc = json.loads(path.read_text())
    records = []
    for r in doc["records"]:
        if r.get("data") is not None:
            data = base64.b64decode(r["data"])
        else:
            data = bytes(i % 251 for i in range(r["pattern_len"]))
        records.append((r["partition_key"], r["explicit_hash_key"], data))
    return records, doc["aggregates"]


def check(name: str, got: bytes, want: dict[str, Any]) -> None:
    if want.get("data") is not None:
        assert got == base64.b64decode(want["data"]), name
    else:
        assert len(got) == want["len"], name
        assert hashlib.md5(got).hexdigest() == want["md5"], name


AGG = sorted((FIXTURES / "agg").glob("*.json"))


def test_every_aggregation_fixture_is_here() -> None:
    assert len(AGG) >= 9


@pytest.mark.parametrize("path", AGG, ids=[p.stem for p in AGG])
def test_aggregates_byte_for_byte(path: Any) -> None:
    records, expected = load_agg(path)
    modern = kinesis_agg.Aggregator(kinesis_agg.MAX_LIMIT)
    for want in expected:
        chunk = records[want["first"] : want["first"] + want["records"]]
        for pk, ehk, data in chunk:
            before = modern.size_with(pk, data, ehk)
            assert modern.add(pk, data, ehk) is None
            assert modern.size == before
        size = modern.size
        agg = modern.flush()
        assert agg is not None
        assert len(agg.data) == size
        check(path.stem, agg.data, want)
        assert agg.partition_key == want["partition_key"]
        assert agg.explicit_hash_key == want["explicit_hash_key"]
        assert agg.user_records == want["records"]
        # The compatibility API, where the aggregate fits its 1 MiB limit.
        if len(agg.data) + len(agg.partition_key.encode()) <= kinesis_agg.MAX_BYTES_PER_RECORD:
            old = compat_agg.RecordAggregator()
            for pk, ehk, data in chunk:
                assert old.add_user_record(pk, data, ehk) is None
            assert old.get_size_bytes() == size
            rec = old.clear_and_get()
            assert rec is not None
            pk0, ehk0, data0 = rec.get_contents()
            check(path.stem, data0, want)
            assert (pk0, ehk0) == (chunk[0][0], chunk[0][1])
            assert rec.get_num_user_records() == want["records"]


def _event_of_every_case(times: int) -> list[dict[str, Any]]:
    """Every fixture as a Lambda record, ``times`` over: more records than
    the compatible reader verifies together, broken ones among them."""
    return [lambda_record(blob(c["name"]), seq=str(1000 * t + i)) for t in range(times) for i, c in enumerate(CASES)]


def test_compat_reader_gives_each_record_of_a_long_event_what_it_gives_alone() -> None:
    records = _event_of_every_case(3)
    assert len(records) > 2 * 64
    alone = [compat_deagg.deaggregate_records(r, on_invalid="pass") for r in records]
    together = compat_deagg.deaggregate_records(records, on_invalid="pass")
    assert together == [u for piece in alone for u in piece]
    assert list(compat_deagg.iter_deaggregate_records(records, on_invalid="pass")) == together


def test_compat_reader_raises_for_a_broken_record_after_everything_before_it() -> None:
    records = _event_of_every_case(3)
    sound = [r for r, c in zip(records, CASES * 3) if c["expect"] != "error"]
    broken = next(r for r, c in zip(records, CASES) if c["expect"] == "error")
    # The broken record in the second batch of 64, sound ones around it.
    records = sound[:100] + [broken] + sound[100:]
    before = [u for r in sound[:100] for u in compat_deagg.deaggregate_records(r)]
    got: list[Any] = []
    with pytest.raises(kinesis_agg.DeaggregationError) as e:
        for u in compat_deagg.iter_deaggregate_records(records):
            got.append(u)
    assert e.value.sequence_number == broken["kinesis"]["sequenceNumber"]
    assert got == before


def test_compat_reader_gives_what_came_before_an_input_that_fails() -> None:
    good = [lambda_record(blob(c["name"]), seq=str(i)) for i, c in enumerate(CASES) if c["expect"] != "error"]

    def source() -> Any:
        yield from good[:10]
        raise OSError("the source failed")

    got: list[Any] = []
    with pytest.raises(OSError):
        for u in compat_deagg.iter_deaggregate_records(source()):
            got.append(u)
    assert got == [u for r in good[:10] for u in compat_deagg.deaggregate_records(r)]
    # A record that cannot be decoded raises in its turn too.
    bad = dict(good[3], kinesis=dict(good[3]["kinesis"], data="not base64!"))
    got = []
    with pytest.raises(Exception):
        for u in compat_deagg.iter_deaggregate_records(good[:3] + [bad] + good[4:]):
            got.append(u)
    assert got == [u for r in good[:3] for u in compat_deagg.deaggregate_records(r)]
    # So does a blob the native reader refuses (boto3 data given as text).
    boto3 = [{"SequenceNumber": str(i), "PartitionKey": "p", "ApproximateArrivalTimestamp": 1.0, "Data": blob(c["name"])} for i, c in enumerate(CASES) if c["expect"] != "error"]
    wrong = dict(boto3[5], Data="text, not bytes")
    got = []
    with pytest.raises(TypeError):
        for u in compat_deagg.iter_deaggregate_records(boto3[:5] + [wrong] + boto3[6:], "Boto3"):
            got.append(u)
    assert got == [u for r in boto3[:5] for u in compat_deagg.deaggregate_records(r, "Boto3")]
