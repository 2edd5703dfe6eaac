"""Each bug of aws_kinesis_agg 1.2.3 that kinesis_agg fixes: the
reference's wrong answer beside ours, both measured here (the reference is
a test dependency). Expected values come from the format (Google protobuf
parses with field presence), not from the reference's output."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import kinesis_agg
import kinesis_agg.aggregator as agg
import kinesis_agg.deaggregator as deagg

from conftest import blob, lambda_record


def test_a_record_without_explicit_hash_key_reports_none(reference: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg
    import aws_kinesis_agg.deaggregator as ref_deagg

    a = ref_agg.RecordAggregator()
    a.add_user_record("with", b"1", "12345")
    a.add_user_record("without", b"2")
    data = a.clear_and_get().get_contents()[2]
    event = lambda_record(data)
    theirs = ref_deagg.deaggregate_records([event])
    ours = deagg.deaggregate_records([event])
    # The reference gives the second record the table's first key.
    assert theirs[1]["kinesis"]["explicitHashKey"] == "12345"
    assert ours[1]["kinesis"]["explicitHashKey"] is None
    assert ours[0]["kinesis"]["explicitHashKey"] == "12345"
    assert kinesis_agg.deaggregate(data)[1].explicit_hash_key is None


def test_the_limit_counts_the_outer_partition_key(reference: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg

    # A bytes key: the reference then counts it once, as it should.
    pk = b"p" * 200
    limit = 2000

    def counted(module: Any) -> list[int]:
        a = module.RecordAggregator(max_size=limit)
        sizes = []
        for i in range(200):
            full = a.add_user_record(pk, bytes(50))
            if full is not None:
                outer, _, data = full.get_contents()
                sizes.append(len(data) + len(outer))
        return sizes

    theirs, ours = counted(ref_agg), counted(agg)
    # What Kinesis counts: the blob plus the partition key.
    assert max(theirs) > limit
    assert ours and max(ours) <= limit
    assert max(ours) > limit - 60  # and still fills to the limit


def test_a_record_that_cannot_fit_raises_instead_of_vanishing(reference: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg

    # Fits the reference's size check alone, but not with magic + digest.
    data = bytes(975)
    a = ref_agg.RecordAggregator(max_size=1000)
    empty = a.add_user_record("k", data)
    assert empty is not None and empty.get_num_user_records() == 0
    assert a.get_num_user_records() == 0  # the record is gone

    ours = agg.RecordAggregator(max_size=1000)
    with pytest.raises(ValueError):
        ours.add_user_record("k", data)
    assert ours.get_num_user_records() == 0
    assert ours.clear_and_get() is None  # never an empty aggregate
    # A record that fits is taken by the same aggregator afterwards.
    assert ours.add_user_record("k", bytes(900)) is None
    assert ours.get_num_user_records() == 1


@pytest.mark.parametrize(
    "pk, ehk",
    [("", None), ("k" * 257, None), ("k", "abc"), ("k", "-1"), ("k", str(2**128)), ("k", "01"), ("k", "")],
)
def test_invalid_keys_raise_before_anything_changes(reference: Any, pk: str, ehk: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg

    a = ref_agg.RecordAggregator()
    a.add_user_record(pk, b"x", ehk)  # accepted without a word
    ours = agg.RecordAggregator()
    ours.add_user_record("good", b"first")
    size = ours.get_size_bytes()
    with pytest.raises(ValueError):
        ours.add_user_record(pk, b"x", ehk)
    assert ours.get_num_user_records() == 1
    assert ours.get_size_bytes() == size
    modern = kinesis_agg.Aggregator()
    with pytest.raises(ValueError):
        modern.add(pk, b"x", ehk)
    assert len(modern) == 0 and modern.size == 0


def test_str_and_bytes_keys_are_one_key(reference: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg

    def tables(module: Any) -> tuple[list[str], int]:
        a = module.RecordAggregator()
        a.add_user_record("same", b"1")
        a.add_user_record(b"same", b"2")
        data = a.clear_and_get().get_contents()[2]
        recs = kinesis_agg.deaggregate(data)
        return [r.partition_key for r in recs], len(data)

    (their_keys, their_len), (our_keys, our_len) = tables(ref_agg), tables(agg)
    assert their_keys == our_keys == ["same", "same"]
    # The reference stores the key twice; one table entry is 6 bytes.
    assert their_len == our_len + 6


def test_str_keys_fill_the_aggregate(reference: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg

    keys = [str(uuid.UUID(int=j)) for j in range(10)]

    def first_full(module: Any) -> int:
        a = module.RecordAggregator()
        i = 0
        while True:
            full = a.add_user_record(keys[i % 10], bytes(100))
            i += 1
            if full is not None:
                return len(full.get_contents()[2])

    theirs, ours = first_full(ref_agg), first_full(agg)
    # The reference re-counts a known str key with every record.
    assert theirs < 800_000
    assert ours > 1_048_576 - 200


def test_a_non_utf8_key_changes_nothing(reference: Any) -> None:
    ours = agg.RecordAggregator()
    ours.add_user_record("k", b"1")
    with pytest.raises(ValueError):
        ours.add_user_record(b"\xff\xfe", b"2")
    rec = ours.clear_and_get()
    assert rec is not None and rec.get_num_user_records() == 1
    assert [r.data for r in kinesis_agg.deaggregate(rec.get_contents()[2])] == [b"1"]


def test_a_broken_aggregate_raises_instead_of_losing_records(reference: Any, capsys: Any) -> None:
    import aws_kinesis_agg.deaggregator as ref_deagg

    # Checksum right, one record's partition key index outside the table.
    event = lambda_record(blob("partition_key_index_outside_table"))
    theirs = ref_deagg.deaggregate_records([event])
    assert "ERROR" in capsys.readouterr().err
    assert all(r is not event for r in theirs)  # not passed through either
    with pytest.raises(kinesis_agg.DeaggregationError) as e:
        deagg.deaggregate_records([event])
    assert isinstance(e.value, ValueError)
    assert e.value.offset == 15
    assert "index" in e.value.reason
    assert deagg.deaggregate_records([event], on_invalid="pass") == [event]


def test_a_callback_registered_twice_runs_once(reference: Any) -> None:
    import aws_kinesis_agg.aggregator as ref_agg

    def runs(module: Any) -> int:
        seen: list[Any] = []

        def callback(r: Any) -> None:
            seen.append(r)

        a = module.RecordAggregator(max_size=200)
        a.on_record_complete(callback, execute_on_new_thread=False)
        a.on_record_complete(callback, execute_on_new_thread=False)
        for _ in range(3):
            a.add_user_record("k", bytes(100))
        return len(seen)

    assert runs(ref_agg) == 4  # two full records, each delivered twice
    assert runs(agg) == 2
