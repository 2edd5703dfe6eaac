"""Putting aggregates with boto3: PutRecords calls within the API's limits,
re-sending only the entries Kinesis rejected."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from ._native import Aggregate, PutRecordsBatcher

Entry = Mapping[str, Any]


@dataclass
class PutResult:
    """What :func:`put_all` did.

    ``results`` has one ``{"ShardId", "SequenceNumber"}`` per entry, in the
    order the entries were given.
    """

    calls: int = 0
    entries: int = 0
    retried: int = 0
    results: list[dict[str, str]] = field(default_factory=list)


class PutAllError(Exception):
    """:func:`put_all` stopped: a call failed or entries were still rejected
    after the last attempt.

    ``pending`` holds every entry not yet accepted (the rejected ones of the
    failing batch first, then the batches not sent), so the caller can
    resume without sending an accepted entry twice; ``result`` is what was
    done before, ``errors`` the last error code of each rejected entry.
    """

    def __init__(
        self,
        message: str,
        pending: list[dict[str, Any]],
        result: PutResult,
        errors: Optional[list[str]] = None,
    ) -> None:
        super().__init__(message)
        self.pending = pending
        self.result = result
        self.errors = errors or []


def _entry(a: Union[Aggregate, Entry]) -> dict[str, Any]:
    if isinstance(a, Aggregate):
        return a.put_records_entry()
    return dict(a)


def _size(e: Entry) -> int:
    pk = e["PartitionKey"]
    return len(e["Data"]) + len(pk.encode("utf-8") if isinstance(pk, str) else pk)


def _batches(entries: list[dict[str, Any]]) -> list[list[int]]:
    """The entries' indices, packed into calls by the library's batcher."""
    out: list[list[int]] = []
    batcher = PutRecordsBatcher()
    for i, e in enumerate(entries):
        if batcher.push(_size(e)):
            out.append([])
        if not out:
            out.append([])
        out[-1].append(i)
    return out


def put_all(
    client: Any,
    stream_name: str,
    aggregates: Iterable[Union[Aggregate, Entry]],
    *,
    attempts: int = 8,
    first_backoff: float = 0.1,
    max_backoff: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PutResult:
    """Puts every aggregate (or ``put_records`` entry) with boto3's
    ``client.put_records``, in calls of at most 500 entries and 5 MiB
    (packed by the library's batcher, as the Rust ``sdk::put_all`` packs
    them).

    Entries that Kinesis rejects (``ErrorCode`` in their result, such as
    ``ProvisionedThroughputExceededException``) are re-sent alone, after a
    pause drawn from zero to a cap that doubles from ``first_backoff`` up to
    ``max_backoff`` seconds (full jitter), up to ``attempts`` calls per
    batch; accepted entries are never sent again. Raises
    :class:`PutAllError` when a call fails or entries are still rejected at
    the end; its ``pending`` holds every entry not known to be accepted,
    the failed call's then those never sent, as the Rust ``PutError``'s.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    entries = [_entry(a) for a in aggregates]
    result = PutResult(entries=len(entries), results=[{} for _ in entries])
    batches = _batches(entries)
    for b, batch in enumerate(batches):
        pending = list(batch)
        errors: list[str] = []
        for attempt in range(attempts):
            if attempt:
                sleep(random.uniform(0, min(max_backoff, first_backoff * 2 ** (attempt - 1))))
                result.retried += len(pending)
            later = [entries[i] for bb in batches[b + 1 :] for i in bb]
            try:
                resp = client.put_records(StreamName=stream_name, Records=[entries[i] for i in pending])
            except Exception as e:
                raise PutAllError(
                    "put_records failed: %s" % (e,), [entries[i] for i in pending] + later, result
                ) from e
            result.calls += 1
            answers = resp.get("Records", [])
            if len(answers) != len(pending):
                raise PutAllError(
                    "put_records answered %d results for %d entries" % (len(answers), len(pending)),
                    [entries[i] for i in pending] + later,
                    result,
                )
            rejected = []
            errors = []
            for i, answer in zip(pending, answers):
                if answer.get("ErrorCode"):
                    rejected.append(i)
                    errors.append(str(answer["ErrorCode"]))
                else:
                    result.results[i] = {
                        "ShardId": answer.get("ShardId", ""),
                        "SequenceNumber": answer.get("SequenceNumber", ""),
                    }
            pending = rejected
            if not pending:
                break
        if pending:
            later = [entries[i] for bb in batches[b + 1 :] for i in bb]
            raise PutAllError(
                "%d entries still rejected after %d attempts (%s)"
                % (len(pending), attempts, ", ".join(sorted(set(errors)))),
                [entries[i] for i in pending] + later,
                result,
                errors,
            )
    return result
