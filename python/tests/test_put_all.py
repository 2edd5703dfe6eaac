"""put_all against a Kinesis API on loopback (kinesalite, started here
from .tools/node_modules, or the one KINESIS_ENDPOINT names) with boto3:
every user record arrives exactly once, rejected entries are re-sent and
accepted ones are not."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import kinesis_agg
from kinesis_agg import PutAllError, ShardedAggregator, ShardMap, put_all

from conftest import ROOT


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    given = os.environ.get("KINESIS_ENDPOINT")
    if given:
        yield given
        return
    node = shutil.which("node")
    modules = ROOT / ".tools" / "node_modules"
    if node is None or not (modules / "kinesalite").is_dir():
        pytest.skip("no Kinesis API: set KINESIS_ENDPOINT or npm install kinesalite into .tools")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = subprocess.Popen(
        [node, str(ROOT / ".ci" / "kinesalite.js"), str(port)],
        env={**os.environ, "NODE_PATH": str(modules)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = "http://127.0.0.1:%d" % port
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if proc.poll() is not None:
                    pytest.fail("kinesalite exited")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDKINESISAGG",
        aws_secret_access_key="test-secret",
    )


def new_stream(c: Any, shards: int) -> str:
    name = "py-" + uuid.uuid4().hex[:12]
    c.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(200):
        if c.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            return name
        time.sleep(0.05)
    raise AssertionError("stream never became active")


def read_all(c: Any, name: str, shard_map: ShardMap) -> list[kinesis_agg.UserRecord]:
    out = []
    ranges = {sid: (lo, hi) for sid, lo, hi in shard_map.shards}
    for shard in c.list_shards(StreamName=name)["Shards"]:
        sid = shard["ShardId"]
        it = c.get_shard_iterator(StreamName=name, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            resp = c.get_records(ShardIterator=it, Limit=1000)
            for r in resp["Records"]:
                users = kinesis_agg.deaggregate(r["Data"], partition_key=r["PartitionKey"])
                lo, hi = ranges[sid]
                assert all(lo <= u.hash_key <= hi for u in users)  # the KCL's rule
                out += users
            if not resp["Records"]:
                break
            it = resp.get("NextShardIterator")
    return out


class Flaky:
    """A client whose first put_records call rejects every other entry
    (answering as Kinesis does under throttling) and sends only the rest."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls: list[int] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(len(Records))
        if len(self.calls) > 1:
            return self.real.put_records(StreamName=StreamName, Records=Records)  # type: ignore[no-any-return]
        keep = Records[::2]
        sent = iter(self.real.put_records(StreamName=StreamName, Records=keep)["Records"])
        answers = []
        for i in range(len(Records)):
            if i % 2 == 0:
                answers.append(next(sent))
            else:
                answers.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"})
        return {"FailedRecordCount": len(Records) // 2, "Records": answers}


def test_put_all_sends_everything_once_and_retries_rejections(endpoint: str) -> None:
    c = client(endpoint)
    name = new_stream(c, 3)
    shard_map = ShardMap.from_list_shards(c.list_shards(StreamName=name))
    assert len(shard_map) == 3
    agg = ShardedAggregator(shard_map, limit=4096)
    sent = []
    aggregates = []
    for i in range(3000):
        pk = "key-%d" % (i % 97)
        data = b"record %d" % i
        sent.append((pk, data))
        aggregates += agg.add(pk, data)
    aggregates += agg.flush()
    assert len(aggregates) >= 10
    flaky = Flaky(c)
    delays: list[float] = []
    result = put_all(flaky, name, aggregates, sleep=delays.append)
    assert flaky.calls == [len(aggregates), len(aggregates) // 2]
    assert result.calls == 2 and result.retried == len(aggregates) // 2
    assert len(delays) == 1
    assert all(r["SequenceNumber"] and r["ShardId"] for r in result.results)
    assert [r["ShardId"] for r in result.results] == [a.shard_id for a in aggregates]
    got = read_all(c, name, shard_map)
    assert sorted((u.partition_key, u.data) for u in got) == sorted(sent)


def test_put_all_gives_up_with_what_is_pending() -> None:
    class Refusing:
        def __init__(self) -> None:
            self.calls = 0

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            self.calls += 1
            return {"Records": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"} for _ in Records]}

    agg = kinesis_agg.Aggregator(1000)
    aggs = [a for a in (agg.add("k", bytes(300)) for _ in range(10)) if a]
    r = Refusing()
    with pytest.raises(PutAllError) as e:
        put_all(r, "s", aggs, attempts=3, sleep=lambda s: None)
    assert r.calls == 3
    assert len(e.value.pending) == len(aggs)
    assert set(e.value.errors) == {"InternalFailure"}

    class Short:
        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            return {"Records": [{"SequenceNumber": "1", "ShardId": "s"}]}

    with pytest.raises(PutAllError, match="answered 1 results"):
        put_all(Short(), "s", aggs)


def test_put_all_splits_calls_at_the_api_limits() -> None:
    class Counting:
        def __init__(self) -> None:
            self.batches: list[list[dict[str, Any]]] = []

        def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
            self.batches.append(Records)
            return {"Records": [{"SequenceNumber": "1", "ShardId": "s"} for _ in Records]}

    entries = [{"Data": b"x", "PartitionKey": "k"} for _ in range(1201)]
    c = Counting()
    put_all(c, "s", entries)
    assert [len(b) for b in c.batches] == [500, 500, 201]
    big = [{"Data": bytes(1_000_000), "PartitionKey": "k"} for _ in range(12)]
    c = Counting()
    put_all(c, "s", big)
    assert [len(b) for b in c.batches] == [5, 5, 2]
    assert all(sum(len(e["Data"]) + 1 for e in b) <= kinesis_agg.PUT_RECORDS_MAX_BYTES for b in c.batches)


def test_the_batcher_is_the_librarys_and_cuts_at_both_limits() -> None:
    from kinesis_agg._native import PutRecordsBatcher

    b = PutRecordsBatcher(max_entries=3, max_bytes=100)
    assert [b.push(60), b.push(40)] == [False, False]
    assert (b.entries, b.bytes) == (2, 100)
    assert b.push(1) is True  # one byte over: the call so far goes first
    assert (b.entries, b.bytes) == (1, 1)
    assert [b.push(1), b.push(1), b.push(1)] == [False, False, True]  # the fourth entry
    b.clear()
    assert b.push(500) is False  # an entry too large alone gets a call of its own
    assert b.push(1) is True
    d = PutRecordsBatcher()
    assert [d.push(0) for _ in range(501)].count(True) == 1
