//! `kinesis-agg proxy` with real clients: the Rust `aws-sdk-kinesis`
//! through it against a Kinesis API server (kinesalite), hostile input
//! sent raw, clients' signatures, what goes upstream, and shutdown with
//! calls in flight. The tests that need the server want `KINESIS_ENDPOINT`
//! and `-- --ignored`, as `tests/e2e.rs`; the others run everywhere.
#![cfg(feature = "cli")]

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use support::cli::cli;
use support::kinesis::{self, endpoint, new_stream, read_stream, upstream};
use support::proxy::{self as faults, Faults};
use support::proxy_cli::{Running, start};

fn proxy_to(upstream: &str, extra: &[&str]) -> Running {
    let mut c = cli();
    c.args([
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--endpoint",
        upstream,
        "--region",
        "us-east-1",
    ]);
    c.args(extra);
    start(c)
}

/// A client of the proxy with credentials of its own (not the proxy's).
fn client_of(url: &str, key: &str, secret: &str) -> aws_sdk_kinesis::Client {
    use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(key, secret, None, None, "tests"))
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// A new stream of `shards` shards on the server, a proxy in front of it
/// (no extra flag) and a client of the proxy: (the server's client, the
/// stream, the proxy, the proxy's client).
async fn proxied_stream(
    name: &str,
    shards: i32,
) -> (aws_sdk_kinesis::Client, String, Running, aws_sdk_kinesis::Client) {
    let direct = kinesis::client(&endpoint());
    let stream = new_stream(&direct, name, shards).await;
    let proxy = proxy_to(&endpoint(), &[]);
    let client = client_of(&proxy.url, "AKIDSOMECLIENT", "client-secret");
    (direct, stream, proxy, client)
}

/// A PutRecords entry.
fn entry(
    partition_key: impl Into<String>,
    data: Vec<u8>,
    explicit_hash_key: Option<String>,
) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(partition_key)
        .data(Blob::new(data))
        .set_explicit_hash_key(explicit_hash_key)
        .build()
        .unwrap()
}

/// Sends one PutRecords call of `entries` to `stream`.
async fn put_entries(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    entries: Vec<PutRecordsRequestEntry>,
) -> Result<
    aws_sdk_kinesis::operation::put_records::PutRecordsOutput,
    aws_sdk_kinesis::error::SdkError<aws_sdk_kinesis::operation::put_records::PutRecordsError>,
> {
    client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
}

fn data_of(i: usize) -> Vec<u8> {
    format!("record {i:06} {}", "x".repeat(i % 40)).into_bytes()
}

/// A TRIM_HORIZON iterator of a shard.
async fn trim_horizon(client: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap()
}

/// Every user record readable through `client` (the proxy): per shard
/// from TRIM_HORIZON until a read comes back empty.
async fn read_through(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<(String, String, String, Vec<u8>)> {
    let shards = client.list_shards().stream_name(stream).send().await.unwrap();
    let mut out = Vec::new();
    for s in shards.shards() {
        let mut it = trim_horizon(client, stream, s.shard_id()).await;
        loop {
            let page = client.get_records().shard_iterator(&it).send().await.unwrap();
            for r in page.records() {
                out.push((
                    s.shard_id().to_owned(),
                    r.sequence_number().to_owned(),
                    r.partition_key().to_owned(),
                    r.data().as_ref().to_vec(),
                ));
            }
            match page.next_shard_iterator() {
                Some(next) if !page.records().is_empty() => it = next.to_owned(),
                _ => break,
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn the_rust_sdk_puts_and_reads_every_record_once_through_the_proxy() {
    let (direct, stream, _proxy, client) = proxied_stream("proxy-sdk", 4).await;

    // 20 calls of 500 from 4 tasks at once; every 10th record with an
    // explicit hash key, which routes it.
    let mut tasks = Vec::new();
    for t in 0..4usize {
        let (client, stream) = (client.clone(), stream.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for call in 0..5usize {
                let first = (t * 5 + call) * 500;
                let entries: Vec<_> = (first..first + 500)
                    .map(|i| {
                        let ehk = i
                            .is_multiple_of(10)
                            .then(|| (u128::MAX / 10_000 * i as u128).to_string());
                        entry(format!("key-{}", i % 97), data_of(i), ehk)
                    })
                    .collect();
                let out = put_entries(&client, &stream, entries).await.unwrap();
                assert_eq!(out.failed_record_count(), Some(0));
                for (k, r) in out.records().iter().enumerate() {
                    answers.push((
                        first + k,
                        r.shard_id().unwrap().to_owned(),
                        r.sequence_number().unwrap().to_owned(),
                    ));
                }
            }
            answers
        }));
    }
    let mut receipts = HashMap::new();
    for t in tasks {
        for (i, shard, seq) in t.await.unwrap() {
            receipts.insert(i, (shard, seq));
        }
    }
    assert_eq!(receipts.len(), 10_000);

    // Through the proxy: each record once, with its own key, where its
    // receipt said.
    let read = read_through(&client, &stream).await;
    assert_eq!(read.len(), 10_000, "user records read through the proxy");
    let mut seen = HashSet::new();
    for (shard, seq, key, data) in &read {
        let i: usize = std::str::from_utf8(&data[7..13]).unwrap().parse().unwrap();
        assert_eq!(data, &data_of(i));
        assert_eq!(key, &format!("key-{}", i % 97));
        assert!(seen.insert(i), "record {i} read twice");
        assert_eq!(receipts[&i], (shard.clone(), seq.clone()), "record {i}");
    }

    // The stream itself: aggregates, each inside its shard (the KCL's rule
    // discards none), and every record in the Kinesis record its receipt
    // names.
    let (direct_read, discarded) = read_stream(&direct, &stream).await;
    assert_eq!(discarded, 0);
    assert_eq!(direct_read.len(), 10_000);
    let kinesis_records: HashSet<_> = direct_read.iter().map(|r| r.sequence_number.clone()).collect();
    assert!(
        kinesis_records.len() < 1_000,
        "{} Kinesis records for 10,000 user records: not aggregated",
        kinesis_records.len()
    );
    for r in &direct_read {
        let i: usize = std::str::from_utf8(&r.data[7..13]).unwrap().parse().unwrap();
        assert_eq!(receipts[&i], (r.shard_id.clone(), r.sequence_number.clone()));
        if i.is_multiple_of(10) {
            assert_eq!(
                r.explicit_hash_key.as_deref(),
                Some(&*(u128::MAX / 10_000 * i as u128).to_string())
            );
        }
    }

    // PutRecord, by ARN, answered with where it went.
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}");
    let one = client
        .put_record()
        .stream_arn(&arn)
        .partition_key("single")
        .data(Blob::new(b"one record".to_vec()))
        .send()
        .await
        .unwrap();
    let read = read_through(&client, &stream).await;
    let found: Vec<_> = read.iter().filter(|r| r.2 == "single").collect();
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        (one.shard_id(), one.sequence_number())
    );
    assert_eq!(found[0].3, b"one record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn errors_come_back_in_kinesis_shape() {
    let (_direct, stream, _proxy, client) = proxied_stream("proxy-errors", 1).await;

    let missing = client
        .put_records()
        .stream_name("no-such-stream")
        .records(entry("k", b"x".to_vec(), None))
        .send()
        .await
        .unwrap_err();
    assert!(
        missing
            .as_service_error()
            .unwrap()
            .is_resource_not_found_exception(),
        "{missing:?}"
    );

    let bad_hash = client
        .put_records()
        .stream_name(&stream)
        .records(entry(
            "k",
            b"x".to_vec(),
            Some("340282366920938463463374607431768211456".into()),
        ))
        .send()
        .await
        .unwrap_err();
    assert!(
        bad_hash
            .as_service_error()
            .unwrap()
            .is_invalid_argument_exception(),
        "{bad_hash:?}"
    );

    let too_big = client
        .put_record()
        .stream_name(&stream)
        .partition_key("k")
        .data(Blob::new(vec![0u8; (1 << 20) + 1]))
        .send()
        .await
        .unwrap_err();
    let e = too_big.into_service_error();
    assert_eq!(
        aws_sdk_kinesis::error::ProvideErrorMetadata::code(&e),
        Some("ValidationException")
    );

    // Forwarded errors pass as upstream gave them.
    let it = client
        .get_shard_iterator()
        .stream_name("no-such-stream")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_err();
    assert!(it.as_service_error().unwrap().is_resource_not_found_exception());
}

/// Sends `request` raw and reads the answer until the server closes or
/// `limit` passes.
fn raw(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if complete(&out) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `bytes` hold a whole HTTP answer with a Content-Length body.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().parse::<usize>().unwrap())
    });
    len.is_some_and(|n| body.len() >= n)
}

fn post(target: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nX-Amz-Target: {target}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An upstream that records each request's head and answers `{}`.
fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if complete(&buf) {
                        kept.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&buf).into_owned());
                        buf.clear();
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{}",
                        );
                    }
                }
            });
        }
    });
    (url, seen)
}

#[test]
fn hostile_input_gets_kinesis_errors_while_others_are_served() {
    let (upstream, seen) = recording_upstream();
    let proxy = proxy_to(&upstream, &["--read-timeout", "500"]);
    let json = "application/x-amz-json-1.1";
    let a = proxy.addr;
    let t = Duration::from_secs(5);

    let r = raw(a, &post("Kinesis_20131202.PutRecords", json, "{not json"), t);
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("SerializationException"),
        "{r}"
    );
    let r = raw(
        a,
        &post(
            "Kinesis_20131202.PutRecords",
            "application/x-amz-cbor-1.1",
            "\u{1f}",
        ),
        t,
    );
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("SerializationException"),
        "{r}"
    );
    let r = raw(a, &post("DynamoDB_20120810.GetItem", json, "{}"), t);
    assert!(
        r.starts_with("HTTP/1.1 400") && r.contains("UnknownOperationException"),
        "{r}"
    );
    let r = raw(a, &post("Kinesis_20131202.Put/../x", json, "{}"), t);
    assert!(r.contains("UnknownOperationException"), "{r}");
    let r = raw(a, &post("Kinesis_20131202.ListShards", "text/plain", "{}"), t);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(a, &post("Kinesis_20131202.SubscribeToShard", json, "{}"), t);
    assert!(
        r.contains("SubscribeToShard") && r.contains("enhanced fan-out"),
        "{r}"
    );
    let r = raw(a, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", t);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = raw(
        a,
        &post(
            "Kinesis_20131202.PutRecords",
            json,
            r#"{"StreamName":"s","Records":[]}"#,
        ),
        t,
    );
    assert!(r.contains("ValidationException"), "{r}");

    // A body over the API's size is refused from its Content-Length,
    // before it is sent.
    let started = Instant::now();
    let r = raw(
        a,
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {json}\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Length: 100000000\r\n\r\n").as_bytes(),
        t,
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // ... and a client still sending it can read the refusal.
    let mut s = TcpStream::connect(a).unwrap();
    s.write_all(format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {json}\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\nContent-Length: 100000000\r\n\r\n").as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..200 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    s.set_read_timeout(Some(t)).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    // A request that never finishes: its headers, then its body.
    let r = raw(a, b"POST / HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10));
    assert!(!r.contains("200 OK"), "{r}");
    let r = raw(
        a,
        format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {json}\r\nX-Amz-Target: Kinesis_20131202.ListShards\r\nContent-Length: 10\r\n\r\n{{").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(r.starts_with("HTTP/1.1 408"), "{r}");

    // 2,000 idle connections, and a well-behaved client is still served;
    // the idle ones are closed after the read timeout.
    let mut idle: Vec<TcpStream> = (0..2000).map(|_| TcpStream::connect(a).unwrap()).collect();
    let r = raw(
        a,
        &post("Kinesis_20131202.ListShards", json, r#"{"StreamName":"s"}"#),
        t,
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    std::thread::sleep(Duration::from_millis(1500));
    for s in idle.iter_mut().step_by(100) {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        assert_eq!(
            s.read(&mut [0u8; 1]).unwrap_or(usize::MAX),
            0,
            "an idle connection is still open"
        );
    }
    drop(idle);

    // Only the well-formed calls went upstream.
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].contains("Kinesis_20131202.ListShards"));
}

#[test]
fn upstream_calls_carry_only_the_proxys_credentials() {
    let (upstream, seen) = recording_upstream();
    let proxy = proxy_to(&upstream, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client_of(&proxy.url, "AKIDTHECLIENT", "client-secret");
    rt.block_on(client.list_shards().stream_name("s").send()).unwrap();
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    assert!(head.contains("credential=akidkinesisagg/"), "{head}");
    assert!(!head.contains("akidtheclient"), "{head}");
    assert!(!head.contains("x-amz-security-token"), "{head}");
}

/// The test certificates' folder (`tests/fixtures/tls/README.md`).
fn tls_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A TLS client that trusts the test authority and offers `alpn`.
fn tls_client(alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(tls_fixture("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// `raw` over TLS: the answer, and the protocol ALPN agreed on.
fn raw_tls(addr: SocketAddr, request: &[u8], limit: Duration) -> (String, Option<Vec<u8>>) {
    let conn =
        rustls::ClientConnection::new(tls_client(&[b"http/1.1"]), "127.0.0.1".try_into().unwrap()).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(limit)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !complete(&out) {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let alpn = tls.conn.alpn_protocol().map(<[u8]>::to_vec);
    (String::from_utf8_lossy(&out).into_owned(), alpn)
}

#[test]
fn with_tls_it_serves_https_on_http1_and_h2_and_tells_plain_http_to_use_https() {
    let (upstream, seen) = recording_upstream();
    let (cert, key) = (tls_fixture("cert.pem"), tls_fixture("key.pem"));
    let proxy = proxy_to(&upstream, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(proxy.url.starts_with("https://127.0.0.1:"), "{}", proxy.url);
    let t = Duration::from_secs(5);
    let list = post("Kinesis_20131202.ListShards", "application/x-amz-json-1.1", "{}");

    // HTTP/1.1 over TLS: forwarded, answered.
    let (r, alpn) = raw_tls(proxy.addr, &list, t);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(seen.lock().unwrap().len(), 1);

    // HTTP/2 over TLS, chosen by ALPN.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        use http_body_util::{BodyExt, Full};
        let connector = tokio_rustls::TlsConnector::from(tls_client(&[b"h2"]));
        let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let tls = connector
            .connect("127.0.0.1".try_into().unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!("{}/", proxy.url))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.ListShards")
            .body(Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap();
        let answer = send.send_request(req).await.unwrap();
        let status = answer.status();
        answer.into_body().collect().await.unwrap();
        status
    });
    assert_eq!(status, 200);
    assert_eq!(seen.lock().unwrap().len(), 2);

    // Plain HTTP to the HTTPS port: an error that says what to do, and
    // nothing forwarded.
    let r = raw(proxy.addr, &list, t);
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("use https://"), "{r}");
    // A handshake that never comes (bytes that are not TLS after the
    // first), and a client that trusts another authority: refused, and
    // the proxy goes on serving.
    let r = raw(proxy.addr, b"\x16\x03\x01\x00\x05garbage", t);
    assert!(!r.contains("HTTP/1.1 200"), "{r}");
    let untrusting =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(untrusting), "127.0.0.1".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, TcpStream::connect(proxy.addr).unwrap());
    assert!(tls.write_all(&list).and_then(|()| tls.flush()).is_err() || tls.read(&mut [0u8; 64]).is_err());
    assert_eq!(seen.lock().unwrap().len(), 2);
    let (r, _) = raw_tls(proxy.addr, &list, t);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn tls_files_that_do_not_serve_exit_2_naming_the_file() {
    let (cert, key, ca) = (
        tls_fixture("cert.pem"),
        tls_fixture("key.pem"),
        tls_fixture("ca.pem"),
    );
    for (args, says) in [
        (vec!["--tls-cert", &cert], "--tls-key"),
        (vec!["--tls-key", &key], "--tls-cert"),
        (
            vec!["--tls-cert", "/nonexistent/cert.pem", "--tls-key", &key],
            "/nonexistent/cert.pem",
        ),
        (vec!["--tls-cert", &key, "--tls-key", &key], "no certificate"),
        (vec!["--tls-cert", &cert, "--tls-key", &cert], "no private key"),
        (
            vec!["--tls-cert", &ca, "--tls-key", &key],
            "is not the private key",
        ),
    ] {
        let out = cli()
            .args(["proxy", "--listen", "127.0.0.1:0", "--region", "us-east-1"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("listening on"), "{err}");
    }
}

#[test]
fn listening_beyond_loopback_needs_allow_remote_and_clients() {
    for extra in [&[][..], &["--allow-remote"][..]] {
        let out = cli()
            .args(["proxy", "--listen", "0.0.0.0:0", "--region", "us-east-1"])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("listening on"), "{err}");
        assert!(err.contains("--clients"), "{err}");
    }
}

#[test]
fn with_clients_listed_only_their_signatures_pass_and_nothing_else_goes_upstream() {
    let (upstream, seen) = recording_upstream();
    let dir = std::env::temp_dir().join(format!("kagg-proxy-clients-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("clients.txt");
    std::fs::write(&file, "# who may call\nAKIDALLOWED allowed-secret\n").unwrap();
    let proxy = proxy_to(
        &upstream,
        &["--allow-remote", "--clients", file.to_str().unwrap()],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let code = |key: &str, secret: &str| {
        let c = client_of(&proxy.url, key, secret);
        match rt.block_on(c.list_shards().stream_name("s").send()) {
            Ok(_) => "ok".to_owned(),
            Err(e) => aws_sdk_kinesis::error::ProvideErrorMetadata::code(&e)
                .unwrap_or("?")
                .to_owned(),
        }
    };
    assert_eq!(
        code("AKIDNOTLISTED", "allowed-secret"),
        "UnrecognizedClientException"
    );
    assert_eq!(code("AKIDALLOWED", "wrong-secret"), "InvalidSignatureException");
    assert!(seen.lock().unwrap().is_empty(), "a refused call went upstream");
    assert_eq!(code("AKIDALLOWED", "allowed-secret"), "ok");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let r = raw(
        proxy.addr,
        &post("Kinesis_20131202.ListShards", "application/x-amz-json-1.1", "{}"),
        Duration::from_secs(5),
    );
    assert!(r.contains("UnrecognizedClientException"), "{r}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn sigterm_answers_the_calls_in_flight_and_exits_0() {
    let direct = kinesis::client(&endpoint());
    let stream = new_stream(&direct, "proxy-stop", 2).await;
    // Records wait 5 s to be aggregated: the calls are in flight when the
    // signal comes.
    let mut proxy = proxy_to(&endpoint(), &["--max-buffered-time", "5000"]);
    let client = client_of(&proxy.url, "AKIDSOMECLIENT", "client-secret");
    let mut calls = Vec::new();
    for c in 0..3usize {
        let (client, stream) = (client.clone(), stream.clone());
        calls.push(tokio::spawn(async move {
            let entries: Vec<_> = (0..100usize)
                .map(|i| entry(format!("k{i}"), data_of(c * 100 + i), None))
                .collect();
            put_entries(&client, &stream, entries).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    proxy.terminate();
    for c in calls {
        let out = c.await.unwrap().unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the calls waited for the buffered time"
    );
    let status = proxy.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", proxy.stderr());
    let (read, _) = read_stream(&direct, &stream).await;
    assert_eq!(read.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn through_upstream_faults_every_entry_is_answered_and_nothing_is_lost() {
    // The producer retries within its TTL: the client sees no failure.
    through_faults("proxy-faults", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn throttled_entries_come_back_as_throttled_and_a_resend_loses_nothing() {
    let failed = through_faults("proxy-throttled", &["--fail-if-throttled"]).await;
    assert!(failed > 0, "no entry came back throttled");
}

/// 5,000 records put through the proxy with the faults between it and the
/// server by a client that re-sends what failed; returns how many entries
/// came back failed.
async fn through_faults(name: &str, extra: &[&str]) -> usize {
    let direct = kinesis::client(&endpoint());
    let stream = new_stream(&direct, name, 3).await;
    // Between the proxy and the server: throttled entries, 500s, throttled
    // calls, answers held past the proxy's request timeout, connections
    // closed and answers cut short after forwarding (those answers lost).
    let fault = Faults::with(|f| {
        (f.throttle_entries, f.call_500, f.call_throttled) = (0.2, 0.1, 0.1);
        (f.delay, f.hold, f.close_after_forward, f.garble) = (0.05, Duration::from_millis(1500), 0.05, 0.05);
        (f.other_500, f.other_throttled) = (0.2, 0.2);
    });
    let fp = faults::start(upstream(), fault, 23).await;
    let flags = [
        "--request-timeout",
        "800",
        "--max-buffered-time",
        "50",
        "--record-ttl",
        "15000",
    ];
    let proxy = proxy_to(&fp.url(), &[&flags[..], extra].concat());
    let client = client_of(&proxy.url, "AKIDSOMECLIENT", "client-secret");

    // A client that re-sends what failed, as the SDKs' users do.
    let mut receipts: HashMap<usize, (String, String)> = HashMap::new();
    let (mut failed_answers, mut calls) = (0usize, 0usize);
    for call in 0..10usize {
        let mut todo: Vec<usize> = (call * 500..call * 500 + 500).collect();
        while !todo.is_empty() {
            let entries: Vec<_> = todo
                .iter()
                .map(|&i| entry(format!("key-{}", i % 61), data_of(i), None))
                .collect();
            calls += 1;
            let out = put_entries(&client, &stream, entries).await.unwrap();
            assert_eq!(out.records().len(), todo.len(), "every entry answered");
            let mut again = Vec::new();
            for (&i, r) in todo.iter().zip(out.records()) {
                match (r.shard_id(), r.sequence_number(), r.error_code()) {
                    (Some(shard), Some(seq), None) => {
                        receipts.insert(i, (shard.to_owned(), seq.to_owned()));
                    }
                    (None, None, Some(code)) => {
                        assert!(
                            ["InternalFailure", "ProvisionedThroughputExceededException"].contains(&code),
                            "{code}"
                        );
                        failed_answers += 1;
                        again.push(i);
                    }
                    other => panic!("entry {i}: {other:?}"),
                }
            }
            todo = again;
        }
    }
    assert_eq!(receipts.len(), 5_000);
    let (read, discarded) = read_stream(&direct, &stream).await;
    assert_eq!(discarded, 0);
    let mut copies: HashMap<usize, usize> = HashMap::new();
    for r in &read {
        let i: usize = std::str::from_utf8(&r.data[7..13]).unwrap().parse().unwrap();
        *copies.entry(i).or_default() += 1;
        if receipts[&i] != (r.shard_id.clone(), r.sequence_number.clone()) {
            assert!(
                fp.counters.was_lost(&r.shard_id, &r.sequence_number),
                "record {i}: a copy that no lost answer explains"
            );
        }
    }
    assert_eq!(copies.len(), 5_000, "a record is missing");
    let c = &fp.counters;
    let injected = c.rejected_entries.load(std::sync::atomic::Ordering::Relaxed)
        + c.calls_500.load(std::sync::atomic::Ordering::Relaxed)
        + c.delayed_calls.load(std::sync::atomic::Ordering::Relaxed);
    assert!(injected > 0, "no fault was injected");
    eprintln!(
        "{calls} client calls, {failed_answers} entries answered as failed and re-sent, {} copies beyond one (lost answers: {})",
        read.len() - 5_000,
        c.lost_entries.load(std::sync::atomic::Ordering::Relaxed)
    );
    failed_answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn an_aggregate_put_through_the_proxy_is_stored_as_it_is_and_read_as_its_user_records() {
    let (direct, stream, _proxy, client) = proxied_stream("proxy-whole", 1).await;
    // What a client that aggregates itself puts (a KPL, a library): one
    // aggregate of three user records, beside a plain record.
    let mut agg = kinesis_agg::RecordAggregator::new();
    for i in 0..3 {
        agg.add(kinesis_agg::Record::new(
            &format!("inner-{i}"),
            format!("inner {i}").as_bytes(),
        ))
        .unwrap();
    }
    let blob = agg.finish().unwrap().data().to_vec();
    let out = put_entries(
        &client,
        &stream,
        vec![
            entry("outer", blob.clone(), None),
            entry("plain", b"plain".to_vec(), None),
        ],
    )
    .await
    .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    let seq = out.records()[0].sequence_number().unwrap().to_owned();
    // The stream holds it byte for byte, as its own Kinesis record: not a
    // user record of another aggregate, which no consumer reads twice.
    let shard = direct
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id()
        .to_owned();
    let it = trim_horizon(&direct, &stream, &shard).await;
    let page = direct.get_records().shard_iterator(it).send().await.unwrap();
    let stored = page
        .records()
        .iter()
        .find(|r| r.sequence_number() == seq)
        .unwrap();
    assert_eq!(stored.data().as_ref(), &blob[..]);
    assert_eq!(stored.partition_key(), "outer");
    // Read through the proxy: its user records, and the plain record.
    let mut read: Vec<(String, Vec<u8>)> = read_through(&client, &stream)
        .await
        .into_iter()
        .map(|(_, _, key, data)| (key, data))
        .collect();
    read.sort();
    let mut want: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("inner-{i}"), format!("inner {i}").into_bytes()))
        .collect();
    want.push(("plain".to_owned(), b"plain".to_vec()));
    assert_eq!(read, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn aggregates_that_mix_shards_are_delivered_and_counted_or_discarded_under_the_kcl_rule() {
    let direct = kinesis::client(&endpoint());
    let stream = new_stream(&direct, "proxy-mixed", 2).await;
    // An aggregate of 40 keys, about half of them of the other shard, as
    // an aggregator that is not shard-aware writes it; put on shard 0.
    let mut agg = kinesis_agg::RecordAggregator::new();
    let keys: Vec<String> = (0..40).map(|i| format!("mixed-{i}")).collect();
    for k in &keys {
        agg.add(kinesis_agg::Record::new(k, k.as_bytes())).unwrap();
    }
    let blob = agg.finish().unwrap().data().to_vec();
    direct
        .put_record()
        .stream_name(&stream)
        .partition_key("outer")
        .explicit_hash_key("0")
        .data(Blob::new(blob))
        .send()
        .await
        .unwrap();
    let half = u128::MAX / 2;
    let outside = keys
        .iter()
        .filter(|k| kinesis_agg::partition_key_hash(k) > half)
        .count();
    assert!(outside > 0 && outside < 40);

    let proxy = proxy_to(&endpoint(), &[]);
    let client = client_of(&proxy.url, "AKIDSOMECLIENT", "client-secret");
    let read = read_through(&client, &stream).await;
    assert_eq!(read.len(), 40, "every user record delivered");
    let needle = format!("{outside} user records outside the shard's hash key range");
    assert!(proxy.said(&needle), "{}", proxy.stderr());

    let strict = proxy_to(&endpoint(), &["--kcl-rule"]);
    let client = client_of(&strict.url, "AKIDSOMECLIENT", "client-secret");
    let read = read_through(&client, &stream).await;
    assert!(read.is_empty(), "the aggregate was delivered under the KCL rule");
    assert!(
        strict.stderr().contains("discarded whole (--kcl-rule)"),
        "{}",
        strict.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API server: KINESIS_ENDPOINT"]
async fn a_call_is_answered_by_its_deadline_and_a_second_signal_abandons() {
    let direct = kinesis::client(&endpoint());
    let stream = new_stream(&direct, "proxy-deadline", 1).await;
    // Upstream holds every PutRecords answer for a minute.
    let stall = Faults::with(|f| (f.delay, f.hold) = (1.0, Duration::from_secs(60)));
    let fp = faults::start(upstream(), stall, 31).await;
    let mut proxy = proxy_to(
        &fp.url(),
        &[
            "--answer-within",
            "1500",
            "--max-buffered-time",
            "20",
            "--request-timeout",
            "60000",
        ],
    );
    let client = client_of(&proxy.url, "AKIDSOMECLIENT", "client-secret");
    let entries: Vec<_> = (0..20usize)
        .map(|i| entry(format!("k{i}"), data_of(i), None))
        .collect();
    let started = Instant::now();
    let out = put_entries(&client, &stream, entries).await.unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(out.failed_record_count(), Some(20));
    for r in out.records() {
        assert_eq!(r.error_code(), Some("InternalFailure"));
        assert!(
            r.error_message().unwrap().contains("may duplicate"),
            "{:?}",
            r.error_message()
        );
    }
    // The records are still held (their call upstream has not ended): the
    // first signal waits for them, the second stops at once.
    proxy.terminate();
    assert!(proxy.said("stopping"), "{}", proxy.stderr());
    proxy.terminate();
    let status = proxy.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", proxy.stderr());
    assert!(proxy.said("20 user records abandoned"), "{}", proxy.stderr());
}
