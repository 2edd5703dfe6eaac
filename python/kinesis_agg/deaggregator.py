"""Deaggregation with the ``aws_kinesis_agg.deaggregator`` API (1.2.3).

The input shapes, the output dictionaries and the pass-through of records
that are not aggregated are the reference module's. Where the reference is
wrong this module is right (see the migration table in the package
README): ``explicitHashKey`` is a user record's own (None when it has
none; the reference reports the table's first key), and an aggregated
record whose checksum is right but whose body is broken raises
:class:`kinesis_agg.DeaggregationError` (the reference prints to stderr and
loses the rest of the record), or is passed through unchanged with
``on_invalid="pass"``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Optional, Union

from ._native import DeaggregationError, _b64decode, _lambda_dicts

__all__ = ["deaggregate_records", "iter_deaggregate_records"]

Record = Mapping[str, Any]


def _convert_from_metadata(record: Record, key: str) -> dict[str, Any]:
    """A Kinesis Analytics preprocessor record (``key`` is
    ``kinesisStreamRecordMetadata``) or a Firehose transformation record
    (``kinesisRecordMetadata``) in the Lambda Kinesis shape."""
    meta = record[key]
    return {
        "kinesis": {
            # Neither passes the schema version along.
            "kinesisSchemaVersion": "1.0",
            "sequenceNumber": meta["sequenceNumber"],
            "partitionKey": meta["partitionKey"],
            "approximateArrivalTimestamp": meta["approximateArrivalTimestamp"],
            "shardId": meta["shardId"],
            "data": record["data"],
            "recordId": record["recordId"],
        }
    }


def _convert_from_boto3_format(record: Record) -> dict[str, Any]:
    """A boto3 ``get_records`` record in the Lambda Kinesis shape."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "sequenceNumber": record["SequenceNumber"],
            "partitionKey": record["PartitionKey"],
            "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"],
            "data": record["Data"],
        }
    }


def _decode(raw: Any) -> bytes:
    try:
        return _b64decode(raw)
    except (ValueError, TypeError):
        # What the native decoder refuses (line breaks, unpadded text),
        # Python's lenient decoder takes, as the reference module does.
        return base64.b64decode(raw)


def deaggregate_records(
    records: Union[Record, Iterable[Record]],
    data_format: Optional[str] = None,
    *,
    on_invalid: str = "raise",
) -> list[Any]:
    """Every user record of ``records`` (one record or several), as a list.

    See :func:`iter_deaggregate_records`.
    """
    out: list[Any] = []
    for piece in _pieces(records, data_format, on_invalid):
        out += piece
    return out


def iter_deaggregate_records(
    records: Union[Record, Iterable[Record]],
    data_format: Optional[str] = None,
    *,
    on_invalid: str = "raise",
) -> Iterator[Any]:
    """Yields the user records of ``records`` one at a time.

    ``records`` is a Lambda Kinesis event record, a Kinesis Analytics or
    Firehose record, or (with ``data_format='Boto3'``) a boto3
    ``get_records`` record, or a list of them. An aggregated record yields
    one dictionary per user record, shaped as Lambda delivers records
    (``kinesis.partitionKey``, ``explicitHashKey``, ``subSequenceNumber``,
    ``aggregated``, base64 ``data``, the outer metadata copied); any other
    record is yielded unchanged.

    An aggregated record whose body is broken raises
    :class:`kinesis_agg.DeaggregationError` (its ``sequence_number`` says
    which record) before any of its user records is yielded; with
    ``on_invalid="pass"`` it is yielded unchanged instead.

    Records are read ahead up to 64 at a time, so that their checksums are
    computed side by side; what a record yields, or the error it raises,
    still comes after everything the records before it yield.
    """
    for piece in _pieces(records, data_format, on_invalid):
        yield from piece


#: Records read ahead and verified together (their MD5s side by side).
_BATCH = 64


def _pieces(
    records: Union[Record, Iterable[Record]],
    data_format: Optional[str],
    on_invalid: str,
) -> Iterator[list[Any]]:
    """What each record gives, in order: its user records, or itself."""
    if on_invalid not in ("raise", "pass"):
        raise ValueError("on_invalid must be 'raise' or 'pass', not %r" % (on_invalid,))
    if isinstance(records, Mapping):
        records = [records]
    boto3 = data_format == "Boto3"
    batch: list[tuple[Record, Any]] = []
    items: list[tuple[Any, dict[str, Any], dict[str, Any], Any]] = []
    it = iter(records)
    while True:
        try:
            r = next(it)
        except StopIteration:
            break
        except Exception:
            # Raised in its turn: after what the records before it give.
            yield from _deliver(batch, items, on_invalid)
            raise
        try:
            if "kinesis" not in r and "data" in r or "Data" in r:
                if "kinesisStreamRecordMetadata" in r:
                    r = _convert_from_metadata(r, "kinesisStreamRecordMetadata")
                elif "kinesisRecordMetadata" in r:
                    r = _convert_from_metadata(r, "kinesisRecordMetadata")
                elif boto3:
                    r = _convert_from_boto3_format(r)
            k = r["kinesis"]
            raw = k["data"]
            blob = raw if boto3 else _decode(raw)
        except Exception:
            # Raised in its turn: after what the records before it give.
            yield from _deliver(batch, items, on_invalid)
            raise
        # The reference raises KeyError when one of these is missing (some
        # published samples lack the timestamp); None stands in instead.
        kinesis_base = {
            "kinesisSchemaVersion": k.get("kinesisSchemaVersion"),
            "sequenceNumber": k.get("sequenceNumber"),
            "approximateArrivalTimestamp": k.get("approximateArrivalTimestamp"),
        }
        outer_base = {key: v for key, v in r.items() if key != "kinesis" and key != "data"}
        batch.append((r, k.get("sequenceNumber")))
        items.append((blob, kinesis_base, outer_base, k.get("recordId")))
        if len(items) == _BATCH:
            yield from _deliver(batch, items, on_invalid)
            batch, items = [], []
    yield from _deliver(batch, items, on_invalid)


def _deliver(
    batch: list[tuple[Record, Any]],
    items: list[tuple[Any, dict[str, Any], dict[str, Any], Any]],
    on_invalid: str,
) -> Iterator[list[Any]]:
    """Reads a batch's blobs together and gives each record's piece."""
    if not items:
        return
    results: Iterable[Union[list[dict[str, Any]], None, DeaggregationError]]
    try:
        results = _lambda_dicts(items)
    except Exception:
        # An argument the native reader refuses (a blob of the wrong
        # type): one at a time, so that it raises in its turn.
        results = _one_at_a_time(items)
    for (r, sequence_number), users in zip(batch, results):
        if users is None:
            yield [r]
        elif isinstance(users, DeaggregationError):
            if on_invalid == "pass":
                yield [r]
                continue
            users.sequence_number = sequence_number
            raise users
        else:
            yield users


def _one_at_a_time(
    items: list[tuple[Any, dict[str, Any], dict[str, Any], Any]],
) -> Iterator[Union[list[dict[str, Any]], None, DeaggregationError]]:
    for item in items:
        yield _lambda_dicts([item])[0]
