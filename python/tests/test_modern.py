"""The modern API: Aggregator, deaggregate, event helpers, shards, and
properties that hold for any records (hypothesis)."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kinesis_agg
from kinesis_agg import Aggregate, Aggregator, ShardedAggregator, ShardMap, UserRecord

from conftest import FIXTURES, add_from_threads, blob

keys = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
ehks = st.one_of(st.none(), st.integers(0, 2**128 - 1).map(str))
records = st.lists(st.tuples(keys, st.binary(max_size=300), ehks), max_size=60)


def drain(agg: Aggregator, recs: list[tuple[str, bytes, str | None]]) -> list[Aggregate]:
    out = []
    for pk, data, ehk in recs:
        before_size, before_len = agg.size, len(agg)
        predicted = agg.size_with(pk, data, ehk)
        full = agg.add(pk, data, ehk)
        if full is None:
            assert agg.size == predicted  # the size reported is the size produced
            assert len(agg) == before_len + 1
        else:
            assert len(full.data) == before_size
            assert full.user_records == before_len
            assert len(agg) == 1
            out.append(full)
    last = agg.flush()
    if last is not None:
        out.append(last)
    return out


@settings(max_examples=150, deadline=None)
@given(records, st.integers(400, 4000))
def test_round_trip_within_the_limit(recs: list[tuple[str, bytes, str | None]], limit: int) -> None:
    agg = Aggregator(limit)
    out = drain(agg, recs)
    got = []
    for a in out:
        assert a.counted_size == len(a.data) + len(a.partition_key.encode()) <= limit
        users = kinesis_agg.deaggregate(a.data)
        assert all(u.aggregated for u in users)
        assert len(users) == a.user_records
        assert (a.partition_key, a.explicit_hash_key) == (users[0].partition_key, users[0].explicit_hash_key)
        got += [(u.partition_key, u.data, u.explicit_hash_key) for u in users]
    assert got == recs
    assert agg.size == 0 and len(agg) == 0


@settings(max_examples=100, deadline=None)
@given(records, st.integers(1, 5000))
def test_a_refused_record_changes_nothing(recs: list[tuple[str, bytes, str | None]], extra: int) -> None:
    agg = Aggregator(400)
    for pk, data, ehk in recs[:3]:
        agg.add(pk, data, ehk)
    size, n = agg.size, len(agg)
    too_big = bytes(400 + extra)
    with pytest.raises(ValueError):
        agg.add("k", too_big)
    with pytest.raises(ValueError):
        agg.add("", b"x")
    assert (agg.size, len(agg)) == (size, n)


@settings(max_examples=100, deadline=None)
@given(records)
def test_both_apis_write_the_same_bytes(recs: list[tuple[str, bytes, str | None]]) -> None:
    import kinesis_agg.aggregator as compat

    modern = Aggregator()
    old = compat.RecordAggregator()
    for pk, data, ehk in recs:
        assert modern.add(pk, data, ehk) is None
        assert old.add_user_record(pk.encode(), data, ehk) is None
    a, b = modern.flush(), old.clear_and_get()
    if not recs:
        assert a is None and b is None
        return
    assert a is not None and b is not None
    assert a.data == b.get_contents()[2]


def test_aggregate_entry_and_equality() -> None:
    agg = Aggregator()
    agg.add("p", b"1", "99")
    a = agg.flush()
    assert a is not None
    assert a.put_records_entry() == {"Data": a.data, "PartitionKey": "p", "ExplicitHashKey": "99"}
    agg.add("p", b"1", "99")
    b = agg.flush()
    assert a == b and hash(a) == hash(b) and a is not b
    agg.add("q", b"1")
    c = agg.flush()
    assert c is not None and c != a
    assert "ExplicitHashKey" not in c.put_records_entry()
    with pytest.raises(ValueError):
        Aggregator(kinesis_agg.MAX_LIMIT + 1)
    with pytest.raises(ValueError):
        Aggregator(kinesis_agg.MIN_LIMIT - 1)
    assert Aggregator(kinesis_agg.MAX_LIMIT).limit == 10_485_760
    assert Aggregator().limit == 1_048_576


def test_deaggregate_options() -> None:
    good = blob("py_mixed_keys")
    assert kinesis_agg.deaggregate(good, skip_checksum=True) == kinesis_agg.deaggregate(good)
    wrong = blob("wrong_checksum")
    assert kinesis_agg.deaggregate(wrong)[0].aggregated is False
    with pytest.raises(kinesis_agg.DeaggregationError):
        kinesis_agg.deaggregate(wrong, strict=True)
    with pytest.raises(ValueError):
        kinesis_agg.deaggregate(good, strict=True, skip_checksum=True)
    with pytest.raises(TypeError):
        kinesis_agg.deaggregate("text")  # type: ignore[arg-type]
    # bytearray and memoryview input give the same records.
    assert kinesis_agg.deaggregate(bytearray(good)) == kinesis_agg.deaggregate(memoryview(good))
    users = kinesis_agg.deaggregate(good)
    assert isinstance(users[0], UserRecord)
    assert users[0].hash_key == kinesis_agg.partition_key_hash(users[0].partition_key)
    assert users[1].hash_key == int(users[1].explicit_hash_key or "x")


def test_partition_key_hash_is_the_md5() -> None:
    for key in ["a", "sensor-0001", "ключ", "x" * 256]:
        want = int.from_bytes(hashlib.md5(key.encode()).digest(), "big")
        assert kinesis_agg.partition_key_hash(key) == want
        assert kinesis_agg.effective_hash_key(key) == want
    assert kinesis_agg.effective_hash_key("a", "12") == 12
    with pytest.raises(ValueError):
        kinesis_agg.effective_hash_key("a", "1x")


def expected_users(data: bytes, pk: str) -> tuple[list[UserRecord], bool]:
    try:
        return kinesis_agg.deaggregate(data, partition_key=pk), False
    except kinesis_agg.DeaggregationError:
        return kinesis_agg.deaggregate(data, partition_key=pk, skip_checksum=True), True


def test_event_helpers_carry_the_outer_metadata() -> None:
    event = json.loads((FIXTURES / "events" / "lambda_kinesis.json").read_text())
    users = kinesis_agg.lambda_user_records(event, on_invalid="pass")
    n = 0
    broken = []
    for r in event["Records"]:
        data = base64.b64decode(r["kinesis"]["data"])
        mine = [u for u in users if u.record is r]
        want, bad = expected_users(data, r["kinesis"]["partitionKey"])
        if bad:
            broken.append(r["kinesis"]["sequenceNumber"])
        assert mine == want
        assert all(u.sequence_number == r["kinesis"]["sequenceNumber"] for u in mine)
        n += len(mine)
    assert n == len(users) > len(event["Records"])
    assert len(broken) == 1  # the sample carries one broken aggregate
    with pytest.raises(kinesis_agg.DeaggregationError) as e:
        kinesis_agg.lambda_user_records(event)
    assert e.value.sequence_number == broken[0]
    fh = json.loads((FIXTURES / "events" / "firehose_kinesis.json").read_text())
    users = kinesis_agg.firehose_user_records(fh, on_invalid="pass")
    for r in fh["records"]:
        mine = [u for u in users if u.record is r]
        want, _ = expected_users(base64.b64decode(r["data"]), r["kinesisRecordMetadata"]["partitionKey"])
        assert mine == want
        assert all(u.sequence_number == r["kinesisRecordMetadata"]["sequenceNumber"] for u in mine)
    assert len(users) > len(fh["records"])


def test_event_helpers_on_a_broken_record() -> None:
    broken = base64.b64encode(blob("missing_data")).decode()
    event = {"Records": [{"kinesis": {"data": broken, "partitionKey": "p", "sequenceNumber": "77"}}]}
    with pytest.raises(kinesis_agg.DeaggregationError) as e:
        kinesis_agg.lambda_user_records(event)
    assert e.value.sequence_number == "77"
    passed = kinesis_agg.lambda_user_records(event, on_invalid="pass")
    assert [(u.aggregated, u.data, u.partition_key) for u in passed] == [(False, blob("missing_data"), "p")]


LIST_SHARDS = {
    "Shards": [
        {
            "ShardId": "shardId-000000000000",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**127 - 1)},
            "SequenceNumberRange": {"StartingSequenceNumber": "1"},
        },
        {
            "ShardId": "shardId-000000000001",
            "HashKeyRange": {"StartingHashKey": str(2**127), "EndingHashKey": str(2**128 - 1)},
            "SequenceNumberRange": {"StartingSequenceNumber": "1"},
        },
        {
            "ShardId": "shardId-closed",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)},
            "SequenceNumberRange": {"StartingSequenceNumber": "0", "EndingSequenceNumber": "1"},
        },
    ]
}


def test_shard_map_and_sharded_aggregation() -> None:
    m = ShardMap.from_list_shards(LIST_SHARDS)
    assert len(m) == 2
    assert m.route(0) == "shardId-000000000000"
    assert m.route(str(2**127)) == "shardId-000000000001"
    assert m.shards[1] == ("shardId-000000000001", 2**127, 2**128 - 1)
    ranges = {sid: (lo, hi) for sid, lo, hi in m.shards}
    agg = ShardedAggregator(m, limit=3000)
    done: list[Aggregate] = []
    for i in range(500):
        done += agg.add("key-%d" % i, b"v%d" % i)
    assert len(agg) > 0 and agg.buffered_bytes > 0
    done += agg.flush()
    assert len(agg) == 0
    seen = []
    for a in done:
        assert a.shard_id in ranges
        lo, hi = ranges[a.shard_id]
        assert a.explicit_hash_key is not None and lo <= int(a.explicit_hash_key) <= hi
        assert m.route(int(a.explicit_hash_key)) == a.shard_id
        for u in kinesis_agg.deaggregate(a.data):
            assert lo <= u.hash_key <= hi
            assert m.shard_for(u.partition_key) == a.shard_id
            seen.append(u.data)
    assert sorted(seen) == sorted(b"v%d" % i for i in range(500))
    with pytest.raises(ValueError):
        ShardMap([("a", 0, 10), ("b", 5, 20)])


def test_an_aggregator_shared_by_threads_loses_nothing() -> None:
    agg = Aggregator(5000)
    out = add_from_threads(agg.add, 2000)
    last = agg.flush()
    assert last is not None
    got = [u.data for a in out + [last] for u in kinesis_agg.deaggregate(a.data)]
    assert sorted(got) == sorted(b"%d:%d" % (w, i) for w in range(4) for i in range(2000))


def test_large_blobs_release_the_interpreter() -> None:
    # Hashing and reading a 10 MiB aggregate happens with the interpreter
    # released: a Python thread counts while the main thread is inside one
    # native call. Were the interpreter held, it could not count at all
    # until the call returned.
    agg = Aggregator(kinesis_agg.MAX_LIMIT)
    for i in range(10):
        agg.add("k", bytes(1_000_000))
    big = agg.flush()
    assert big is not None
    data = big.data
    inside = threading.Event()
    done = threading.Event()
    counted = 0

    def counter() -> None:
        nonlocal counted
        while not done.is_set():
            if inside.is_set():
                counted += 1

    t = threading.Thread(target=counter)
    t.start()
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.05)  # longer than one call: it changes hands when released
    try:
        most = 0
        for _ in range(3):
            counted = 0
            inside.set()
            users = kinesis_agg.deaggregate(data)
            inside.clear()
            most = max(most, counted)
            assert len(users) == 10
    finally:
        sys.setswitchinterval(old)
        done.set()
        t.join()
    assert most > 100, most


def _outcome(got: list[UserRecord] | kinesis_agg.DeaggregationError) -> object:
    if isinstance(got, kinesis_agg.DeaggregationError):
        return ("error", got.offset, got.reason)
    return [(u.partition_key, u.explicit_hash_key, u.data, u.sub_sequence_number, u.aggregated) for u in got]


def test_deaggregate_many_reads_each_blob_as_deaggregate_does() -> None:
    """Every fixture three times over, read together (checksums side by
    side): each outcome is what deaggregate gives the blob alone, its error
    (offset and reason) included, under each checksum option."""
    blobs = [blob(p.stem) for p in sorted((FIXTURES / "deagg").glob("*.bin"))] * 3
    for skip, strict in ((False, False), (False, True), (True, False)):
        many = kinesis_agg.deaggregate_many(blobs, skip_checksum=skip, strict=strict)
        assert len(many) == len(blobs)
        for b, got in zip(blobs, many):
            try:
                alone: object = _outcome(kinesis_agg.deaggregate(b, skip_checksum=skip, strict=strict))
            except kinesis_agg.DeaggregationError as e:
                alone = _outcome(e)
            assert _outcome(got) == alone
    seqs = [str(i) for i in range(len(blobs))]
    with_meta = kinesis_agg.deaggregate_many(blobs, partition_keys=["p"] * len(blobs), sequence_numbers=seqs)
    for i, got in enumerate(with_meta):
        if not isinstance(got, kinesis_agg.DeaggregationError):
            assert all(u.sequence_number == seqs[i] for u in got)
    with pytest.raises(ValueError):
        kinesis_agg.deaggregate_many(blobs, sequence_numbers=seqs[:1])


def test_an_event_with_a_broken_record_among_good_ones() -> None:
    """The event helpers read an event's blobs together: a broken one raises
    with its own sequence number, after nothing; with on_invalid="pass" it
    is one plain record among the others' user records, in order."""
    good = base64.b64encode(blob("py_empty_data")).decode()
    broken = base64.b64encode(blob("missing_data")).decode()
    event = {
        "Records": [
            {"kinesis": {"data": d, "partitionKey": "p", "sequenceNumber": s}}
            for d, s in [(good, "1"), (broken, "2"), (good, "3")]
        ]
    }
    with pytest.raises(kinesis_agg.DeaggregationError) as e:
        kinesis_agg.lambda_user_records(event)
    assert e.value.sequence_number == "2"
    passed = kinesis_agg.lambda_user_records(event, on_invalid="pass")
    alone = [kinesis_agg.lambda_user_records({"Records": [r]}, on_invalid="pass") for r in event["Records"]]
    assert [(u.data, u.sequence_number, u.aggregated) for u in passed] == [
        (u.data, u.sequence_number, u.aggregated) for one in alone for u in one
    ]
