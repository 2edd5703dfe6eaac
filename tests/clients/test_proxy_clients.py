"""Real clients through `kinesis-agg proxy`, with no code of ours in them:
boto3 from several threads, the AWS CLI v1, a CBOR client (cbor2 with
botocore's SigV4 signer) and the JavaScript SDK v3, against a Kinesis API
server on loopback; and boto3, the AWS CLI and the JavaScript SDK over HTTPS
(the proxy with --tls-cert, the clients trusting the test authority).

Needs KINESIS_ENDPOINT (the server) and KAGG_BIN (the kinesis-agg binary);
./test.sh sets both.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3  # type: ignore[import-untyped]
import cbor2
import pytest
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

UPSTREAM = os.environ.get("KINESIS_ENDPOINT", "")
BIN = os.environ.get("KAGG_BIN", "")
pytestmark = pytest.mark.skipif(not (UPSTREAM and BIN), reason="needs KINESIS_ENDPOINT and KAGG_BIN")

PROXY_ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "AKIDTHEPROXY",
    "AWS_SECRET_ACCESS_KEY": "proxy-secret",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
CLIENT_KEYS = {"aws_access_key_id": "AKIDACLIENT", "aws_secret_access_key": "client-secret"}


TLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tls")
# The test authority that signed the proxy's certificate (fixtures/tls/).
CA = os.path.join(TLS, "ca.pem")


def running_proxy(*extra: str) -> Iterator[str]:
    """A proxy in front of UPSTREAM; yields its URL, then stops it with
    SIGTERM and checks that it exits 0."""
    p = subprocess.Popen(
        [BIN, "proxy", "--listen", "127.0.0.1:0", "--endpoint", UPSTREAM, "--region", "us-east-1", *extra],
        env=PROXY_ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stderr is not None
    line = p.stderr.readline()
    assert "listening on http" in line, line
    url = line.split("listening on ")[1].split(",")[0]
    # Keep reading its stderr so that it never blocks on a full pipe.
    threading.Thread(target=p.stderr.read, daemon=True).start()
    try:
        yield url
    finally:
        p.terminate()
        assert p.wait(timeout=20) == 0


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    yield from running_proxy()


@pytest.fixture(scope="module")
def tls_proxy() -> Iterator[str]:
    yield from running_proxy("--tls-cert", os.path.join(TLS, "cert.pem"), "--tls-key", os.path.join(TLS, "key.pem"))


def client(url: str) -> Any:
    # Over HTTPS, trusting the test authority only.
    verify = CA if url.startswith("https://") else None
    return boto3.client("kinesis", endpoint_url=url, region_name="us-east-1", verify=verify, **CLIENT_KEYS)


def new_stream(shards: int) -> str:
    direct = client(UPSTREAM)
    name = f"clients-{uuid.uuid4().hex[:12]}"
    direct.create_stream(StreamName=name, ShardCount=shards)
    for _ in range(400):
        s = direct.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if s["StreamStatus"] == "ACTIVE":
            return name
        time.sleep(0.025)
    raise AssertionError("stream not active")


def read_all(c: Any, stream: str) -> list[tuple[str, str, str, bytes]]:
    """(shard, sequence number, partition key, data) of every record
    GetRecords gives, per shard from TRIM_HORIZON until a read is empty."""
    out = []
    for shard in c.list_shards(StreamName=stream)["Shards"]:
        sid = shard["ShardId"]
        it = c.get_shard_iterator(StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while True:
            page = c.get_records(ShardIterator=it, Limit=10000)
            out += [(sid, r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in page["Records"]]
            if not page["Records"] or not page.get("NextShardIterator"):
                break
            it = page["NextShardIterator"]
    return out


def tail(stream: str) -> list[dict[str, Any]]:
    """The stream read directly (not through the proxy) by kinesis-agg tail."""
    out = subprocess.run(
        [BIN, "tail", "--stream", stream, "--endpoint", UPSTREAM, "--region", "us-east-1"],
        env=PROXY_ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def data_of(i: int) -> bytes:
    return f"record {i:06} ".encode() + b"y" * (i % 37)


def test_boto3_from_threads_puts_and_reads_each_record_once(proxy: str) -> None:
    stream = new_stream(4)
    c = client(proxy)

    def call(n: int) -> list[tuple[int, str, str]]:
        first = n * 500
        entries = [{"Data": data_of(i), "PartitionKey": f"k{i % 211}"} for i in range(first, first + 500)]
        answer = c.put_records(StreamName=stream, Records=entries)
        assert answer["FailedRecordCount"] == 0
        return [(first + k, r["ShardId"], r["SequenceNumber"]) for k, r in enumerate(answer["Records"])]

    with ThreadPoolExecutor(8) as pool:
        receipts = {i: (shard, seq) for got in pool.map(call, range(40)) for (i, shard, seq) in got}
    assert len(receipts) == 20_000

    seen: set[int] = set()
    for shard, seq, key, data in read_all(c, stream):
        i = int(data[7:13])
        assert data == data_of(i) and key == f"k{i % 211}"
        assert i not in seen
        seen.add(i)
        assert receipts[i] == (shard, seq)
    assert len(seen) == 20_000

    # Where tail finds each record is where its receipt said; the stream
    # holds aggregates (fewer Kinesis records than user records).
    lines = tail(stream)
    assert len(lines) == 20_000
    for line in lines:
        i = int(base64.b64decode(line["data"])[7:13])
        assert receipts[i] == (line["shard_id"], line["sequence_number"])
    assert len({line["sequence_number"] for line in lines}) < 2_000


def aws(url: str, *args: str) -> Any:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDACLIENT", "AWS_SECRET_ACCESS_KEY": "client-secret"}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    tls = ["--ca-bundle", CA] if url.startswith("https://") else []
    out = subprocess.run(
        ["aws", "--endpoint-url", url, *tls, "--output", "json", "kinesis", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_aws_cli_puts_and_reads_through_the_proxy(proxy: str) -> None:
    stream = new_stream(2)
    put = []
    for i in range(5):
        # The AWS CLI v1 sends --data's text as the blob.
        data = f"from the cli {i}"
        put.append(aws(proxy, "put-record", "--stream-name", stream, "--partition-key", f"cli-{i}", "--data", data))
    got: list[tuple[str, str, bytes]] = []
    for shard in aws(proxy, "list-shards", "--stream-name", stream)["Shards"]:
        it = aws(
            proxy,
            "get-shard-iterator",
            "--stream-name",
            stream,
            "--shard-id",
            shard["ShardId"],
            "--shard-iterator-type",
            "TRIM_HORIZON",
        )["ShardIterator"]
        page = aws(proxy, "get-records", "--shard-iterator", it)
        got += [(r["SequenceNumber"], r["PartitionKey"], base64.b64decode(r["Data"])) for r in page["Records"]]
    assert sorted((k, d) for _, k, d in got) == [(f"cli-{i}", f"from the cli {i}".encode()) for i in range(5)]
    by_key = {k: seq for seq, k, _ in got}
    for i, answer in enumerate(put):
        assert by_key[f"cli-{i}"] == answer["SequenceNumber"]


def cbor_call(url: str, operation: str, body: dict[str, Any]) -> tuple[int, str, Any]:
    """A call in the CBOR protocol, signed by botocore's SigV4 signer."""
    payload = cbor2.dumps(body)
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=payload,
        headers={
            "Content-Type": "application/x-amz-cbor-1.1",
            "X-Amz-Target": f"Kinesis_20131202.{operation}",
        },
    )
    SigV4Auth(Credentials("AKIDACLIENT", "client-secret"), "kinesis", "us-east-1").add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, data=payload, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(http, timeout=30) as r:
            return r.status, r.headers["Content-Type"], cbor2.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], cbor2.loads(e.read())


def test_a_cbor_client_is_answered_in_cbor(proxy: str) -> None:
    stream = new_stream(1)
    records = [{"Data": bytes([i, 0, 255]) + b"cbor", "PartitionKey": f"c{i}"} for i in range(50)]
    status, ctype, answer = cbor_call(proxy, "PutRecords", {"StreamName": stream, "Records": records})
    assert (status, ctype) == (200, "application/x-amz-cbor-1.1")
    assert answer["FailedRecordCount"] == 0
    seqs = [r["SequenceNumber"] for r in answer["Records"]]

    status, _, it = cbor_call(
        proxy,
        "GetShardIterator",
        {"StreamName": stream, "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"},
    )
    assert status == 200
    status, ctype, page = cbor_call(proxy, "GetRecords", {"ShardIterator": it["ShardIterator"]})
    assert (status, ctype) == (200, "application/x-amz-cbor-1.1")
    got = page["Records"]
    assert [(r["PartitionKey"], r["Data"]) for r in got] == [(r["PartitionKey"], r["Data"]) for r in records]
    assert [r["SequenceNumber"] for r in got] == seqs
    # Arrival times are CBOR timestamps (tag 1), which cbor2 reads as datetimes.
    assert all(hasattr(r["ApproximateArrivalTimestamp"], "timestamp") for r in got)

    status, ctype, error = cbor_call(proxy, "PutRecords", {"StreamName": stream, "Records": []})
    assert (status, ctype) == (400, "application/x-amz-cbor-1.1")
    assert error["__type"] == "ValidationException"


def test_the_javascript_sdk_v3_over_http2_and_http1(proxy: str) -> None:
    """@aws-sdk/client-kinesis (js/'s dev dependency), its default HTTP/2
    handler and NodeHttpHandler."""
    javascript_sdk_v3(proxy)


def javascript_sdk_v3(proxy: str) -> None:
    stream = new_stream(2)
    here = os.path.dirname(os.path.abspath(__file__))
    modules = os.path.join(here, "..", "..", "js", "node_modules")
    if not os.path.isdir(os.path.join(modules, "@aws-sdk", "client-kinesis")):
        pytest.skip("js/node_modules has no @aws-sdk/client-kinesis (npm ci in js/)")
    out = subprocess.run(
        ["node", os.path.join(here, "sdk_v3.cjs"), proxy, stream],
        env={**os.environ, "NODE_PATH": modules, "NODE_EXTRA_CA_CERTS": CA},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    receipts = {data: (key, shard, seq) for data, key, shard, seq in seen["receipts"]}
    assert len(receipts) == 2_000
    read = {data: (key, shard, seq) for data, key, shard, seq in seen["read"]}
    assert len(seen["read"]) == 2_000
    assert read == receipts


def test_over_https_boto3_the_aws_cli_and_the_javascript_sdk_put_and_read(tls_proxy: str) -> None:
    """--tls-cert: the same clients over TLS, trusting the test authority
    (HTTP/2 by ALPN for the JavaScript SDK's default handler)."""
    assert tls_proxy.startswith("https://")
    stream = new_stream(2)
    c = client(tls_proxy)
    entries = [{"Data": data_of(i), "PartitionKey": f"tls{i % 17}"} for i in range(500)]
    answer = c.put_records(StreamName=stream, Records=entries)
    assert answer["FailedRecordCount"] == 0
    receipts = {data_of(i): (r["ShardId"], r["SequenceNumber"]) for i, r in enumerate(answer["Records"])}
    read = read_all(c, stream)
    assert sorted(d for _, _, _, d in read) == sorted(receipts)
    for shard, seq, key, data in read:
        assert receipts[data] == (shard, seq)
    put = aws(tls_proxy, "put-record", "--stream-name", stream, "--partition-key", "cli", "--data", "over tls")
    assert put["SequenceNumber"]
    assert (put["ShardId"], put["SequenceNumber"], "cli", b"over tls") in read_all(c, stream)
    javascript_sdk_v3(tls_proxy)
    # A client that does not trust the proxy's certificate gets no answer.
    untrusting = boto3.client("kinesis", endpoint_url=tls_proxy, region_name="us-east-1", **CLIENT_KEYS)
    with pytest.raises(Exception, match="(?i)certificate|ssl"):
        untrusting.list_shards(StreamName=stream)
