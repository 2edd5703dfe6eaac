"""Kinesis Producer Library (KPL) aggregated records, on a Rust core.

Two APIs over one native core:

* the modern one, here: :class:`Aggregator`, :func:`deaggregate`, the Lambda
  and Firehose event helpers, shard-aware aggregation and :func:`put_all`;
* the compatibility one, :mod:`kinesis_agg.aggregator` and
  :mod:`kinesis_agg.deaggregator`, a drop-in for the ``aws_kinesis_agg``
  module (1.2.3) with its bugs fixed: replace ``aws_kinesis_agg`` with
  ``kinesis_agg`` in the imports.
"""

from __future__ import annotations

from ._native import (
    DEFAULT_LIMIT,
    DIGEST_SIZE,
    MAGIC,
    MAX_LIMIT,
    MIN_LIMIT,
    PUT_RECORDS_MAX_BYTES,
    PUT_RECORDS_MAX_ENTRIES,
    Aggregate,
    Aggregator,
    DeaggregationError,
    ShardedAggregator,
    ShardMap,
    UserRecord,
    deaggregate,
    deaggregate_many,
    effective_hash_key,
    partition_key_hash,
)
from ._events import firehose_user_records, lambda_user_records
from ._put import PutAllError, PutResult, put_all

#: The compatibility module's size limit (``aws_kinesis_agg.MAX_BYTES_PER_RECORD``):
#: the library's default limit, what a Kinesis record holds by default.
MAX_BYTES_PER_RECORD = DEFAULT_LIMIT

__all__ = [
    "DEFAULT_LIMIT",
    "DIGEST_SIZE",
    "MAGIC",
    "MAX_BYTES_PER_RECORD",
    "MAX_LIMIT",
    "MIN_LIMIT",
    "PUT_RECORDS_MAX_BYTES",
    "PUT_RECORDS_MAX_ENTRIES",
    "Aggregate",
    "Aggregator",
    "DeaggregationError",
    "PutAllError",
    "PutResult",
    "ShardMap",
    "ShardedAggregator",
    "UserRecord",
    "deaggregate",
    "deaggregate_many",
    "effective_hash_key",
    "firehose_user_records",
    "lambda_user_records",
    "partition_key_hash",
    "put_all",
]
