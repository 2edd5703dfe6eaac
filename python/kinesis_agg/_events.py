"""User records of Lambda Kinesis and Firehose events, with their outer
record's metadata."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Union

from ._native import DeaggregationError, UserRecord, _b64decode, deaggregate, deaggregate_many

Event = Union[Mapping[str, Any], Iterable[Mapping[str, Any]]]


def _records(event: Event, key: str) -> Iterable[Mapping[str, Any]]:
    if isinstance(event, Mapping):
        return event[key]  # type: ignore[no-any-return]
    return event


def _read_all(
    blobs: list[bytes],
    partition_keys: list[Any],
    sequence_numbers: list[Any],
    records: list[Mapping[str, Any]],
    on_invalid: str,
    skip_checksum: bool,
    strict: bool,
) -> list[UserRecord]:
    """The user records of an event's blobs, their checksums verified
    together (:func:`deaggregate_many`), in order."""
    read = deaggregate_many(
        blobs,
        skip_checksum=skip_checksum,
        strict=strict,
        partition_keys=partition_keys,
        sequence_numbers=sequence_numbers,
        records=records,
    )
    out: list[UserRecord] = []
    for i, got in enumerate(read):
        if not isinstance(got, DeaggregationError):
            out.extend(got)
        elif on_invalid == "pass":
            # The whole blob as one plain record: without the checksum a
            # broken body is not taken for an aggregate.
            out.extend(
                deaggregate(
                    blobs[i],
                    skip_checksum=True,
                    partition_key=partition_keys[i],
                    sequence_number=sequence_numbers[i],
                    record=records[i],
                )
            )
        else:
            got.sequence_number = sequence_numbers[i]
            raise got
    return out


def _check(on_invalid: str) -> None:
    if on_invalid not in ("raise", "pass"):
        raise ValueError("on_invalid must be 'raise' or 'pass', not %r" % (on_invalid,))


def lambda_user_records(
    event: Event,
    *,
    on_invalid: str = "raise",
    skip_checksum: bool = False,
    strict: bool = False,
) -> list[UserRecord]:
    """The user records of a Lambda Kinesis event (or of its ``Records``
    list), in order.

    Each :class:`UserRecord` carries its outer record's ``sequence_number``
    and the outer event record itself as ``record``. A plain record gives
    one user record with ``aggregated`` False. An aggregated record whose
    body is broken raises :class:`DeaggregationError` with the record's
    ``sequence_number`` (report it as a batch item failure); with
    ``on_invalid="pass"`` it is given as one plain record instead.
    """
    _check(on_invalid)
    records = list(_records(event, "Records"))
    kinesis = [r["kinesis"] for r in records]
    return _read_all(
        [_b64decode(k["data"]) for k in kinesis],
        [k["partitionKey"] for k in kinesis],
        [k.get("sequenceNumber") for k in kinesis],
        records,
        on_invalid,
        skip_checksum,
        strict,
    )


def firehose_user_records(
    event: Event,
    *,
    on_invalid: str = "raise",
    skip_checksum: bool = False,
    strict: bool = False,
) -> list[UserRecord]:
    """The user records of a Firehose transformation event whose source is
    a Kinesis stream (or of its ``records`` list), in order.

    As :func:`lambda_user_records`; the sequence number and partition key
    come from each record's ``kinesisRecordMetadata``, and ``record`` is
    the Firehose record (its ``recordId`` is what the transformation
    answers with).
    """
    _check(on_invalid)
    records = list(_records(event, "records"))
    meta = [r.get("kinesisRecordMetadata") or {} for r in records]
    return _read_all(
        [_b64decode(r["data"]) for r in records],
        [m.get("partitionKey", "") for m in meta],
        [m.get("sequenceNumber") for m in meta],
        records,
        on_invalid,
        skip_checksum,
        strict,
    )
