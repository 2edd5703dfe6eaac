"""Aggregation with the ``aws_kinesis_agg.aggregator`` API (1.2.3).

``RecordAggregator`` and ``AggRecord`` keep the reference module's names,
signatures, defaults and return values; the work is done by the native
core. Where the reference is wrong this module is right (see the migration
table in the package README): the size limit counts the outer partition
key as Kinesis does, a record that cannot fit even alone raises
``ValueError`` instead of being dropped, invalid keys raise ``ValueError``
before anything changes, and ``'k'`` and ``b'k'`` are one key.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from . import MAX_BYTES_PER_RECORD
from ._native import AggRecord, _RecordAggregatorBase

__all__ = ["AggRecord", "RecordAggregator"]

Callback = Callable[[AggRecord], Any]


class RecordAggregator(_RecordAggregatorBase):
    """Packs user records into aggregated Kinesis records of at most
    ``max_size`` bytes (``ValueError`` above 1 MiB, as in the reference;
    the modern :class:`kinesis_agg.Aggregator` goes to 10 MiB).

    ``add_user_record`` returns None while the record fits, else the full
    :class:`AggRecord` (the record then starts the next one), which it also
    hands to every callback registered with ``on_record_complete``. Records
    can be added from several threads; each add is atomic.
    """

    def __init__(self, max_size: int = MAX_BYTES_PER_RECORD) -> None:
        # The native base has checked max_size already.
        self.callbacks: list[tuple[Callback, bool]] = []

    def on_record_complete(self, callback: Callback, execute_on_new_thread: bool = True) -> None:
        """Registers ``callback`` to receive every full :class:`AggRecord`,
        on a new thread (the default) or on the thread that added the
        record. Registering the same callback again does nothing."""
        if any(cb == callback for cb, _ in self.callbacks):
            return
        self.callbacks.append((callback, execute_on_new_thread))
        self._set_has_callbacks(True)

    def clear_callbacks(self) -> None:
        """Removes every callback."""
        del self.callbacks[:]
        self._set_has_callbacks(False)

    def _complete(self, record: AggRecord) -> None:
        # Called by the native add with each full record, before the add
        # returns it. An inline callback that raises stops the others and
        # the exception propagates from add_user_record; the record that
        # was being added is already in the next aggregate, and the full
        # one rides on the exception as `agg_record`, so nothing is lost.
        for callback, on_new_thread in list(self.callbacks):
            if on_new_thread:
                threading.Thread(target=callback, args=(record,)).start()
            else:
                try:
                    callback(record)
                except BaseException as e:
                    try:
                        e.agg_record = record  # type: ignore[attr-defined]
                    except AttributeError:
                        pass
                    raise

    # The rest (add_user_record, get_num_user_records, get_size_bytes,
    # clear_record, clear_and_get) is native.

