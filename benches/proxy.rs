//! `kinesis-agg proxy` under load: user records a second through it on one
//! core, the latency it adds, its peak memory; and GetRecords answers
//! deaggregated beside `kinesis-agg deagg` on the same bytes.
//!
//!     cargo bench --features cli --bench proxy -- [SECONDS] [--clients N | --rate R] [--no-aggregation]
//!
//! The proxy (the release binary) runs pinned to CPU 0 (`taskset`); this
//! process, pinned to CPU 1, is both the upstream (an HTTP server that
//! answers ListShards with 200 shards and each PutRecords at once, routing
//! every entry by its hash key as Kinesis would) and the load: N clients
//! (64 by default), each sending PutRecords calls of 500 records of 100
//! bytes over 10,000 partition keys, one after another, for SECONDS (10),
//! the clients' first calls spread over the first 100 ms.
//! With `--rate R`, an open loop instead: a call of 500 records started
//! every 500 / R seconds whatever the answers' latency, each call's latency
//! counted from when it was due to start (the latency at a given load,
//! where N clients that wait for their answers measure it at the load
//! their waiting allows).
//!
//! Prints user records a second, the latency of the calls (median, 99th
//! percentile, and the 99th beyond the producer's buffered time, 100 ms),
//! and the proxy's peak resident memory (VmHWM). Then GetRecords: answers
//! of 10,000 user records in aggregates of 50 KB read through the proxy,
//! beside `kinesis-agg deagg` on the same records as a get-records
//! document (user records a second each).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kinesis_agg::{RecordAggregator, ShardMap};

mod support;

const SHARDS: u32 = 200;
const KEYS: usize = 10_000;
const PER_CALL: usize = 500;

/// The upstream: answers at once.
struct Upstream {
    map: ShardMap,
    seq: AtomicU64,
    get_records: Bytes,
    user_records_in: AtomicUsize,
}

impl Upstream {
    fn answer(&self, target: &str, body: &[u8]) -> String {
        if target.ends_with("ListShards") {
            return support::list_shards_answer(&self.map);
        }
        if target.ends_with("GetRecords") {
            return String::from_utf8(self.get_records.to_vec()).unwrap();
        }
        let (out, n) = support::put_records_answer(&self.map, body, &self.seq);
        self.user_records_in.fetch_add(n, Ordering::Relaxed);
        out
    }
}

async fn serve_upstream(listener: tokio::net::TcpListener, up: Arc<Upstream>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let up = up.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let up = up.clone();
                async move {
                    let target = req
                        .headers()
                        .get("x-amz-target")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let out = up.answer(&target, &body);
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/x-amz-json-1.1")
                            .body(Full::new(Bytes::from(out)))
                            .unwrap(),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A PutRecords body of 500 records of 100 bytes, keys from `first`.
fn put_body(stream: &str, first: usize) -> Bytes {
    let mut records = Vec::with_capacity(PER_CALL);
    for i in first..first + PER_CALL {
        let data = format!("{i:0100}");
        records.push(format!(
            r#"{{"Data":"{}","PartitionKey":"key-{}"}}"#,
            STANDARD.encode(&data.as_bytes()[..100]),
            i % KEYS
        ));
    }
    Bytes::from(format!(
        r#"{{"StreamName":"{stream}","Records":[{}]}}"#,
        records.join(",")
    ))
}

fn peak_rss_mib(pid: u32) -> f64 {
    support::status_mib(&pid.to_string(), "VmHWM:")
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let (user, system) = support::cpu(&pid.to_string());
    user + system
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

/// One call of `target` to the proxy at `url`: its answer's body, which
/// must come with a success status.
async fn call(client: HttpClient, url: String, target: &'static str, body: Bytes) -> Bytes {
    let req = Request::post(&url)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .body(Full::new(body))
        .unwrap();
    let r = client.request(req).await.expect("an answer");
    let status = r.status();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    body
}

/// The open loop: a PutRecords call of 500 records started every
/// 500 / `rate` seconds until `until`, each on a connection of its own
/// while others wait for their answers (the client's pool opens as many as
/// are in use), whatever the answers' latency: the load does not ease
/// when the proxy slows down, as it does with a fixed number of clients
/// that each wait for their answer. A call's latency counts from the
/// moment it was due to start, so that a late start (this process behind)
/// counts against the proxy rather than hiding its delays. Returns the
/// latencies of every call started.
async fn at_a_rate(
    rate: f64,
    until: Instant,
    client: &HttpClient,
    url: &str,
    bodies: &[Bytes],
) -> Vec<Duration> {
    let every = Duration::from_secs_f64(PER_CALL as f64 / rate);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    let mut n = 0usize;
    loop {
        let due = tick.tick().await.into_std();
        if due >= until {
            break;
        }
        let (client, url, body) = (client.clone(), url.to_owned(), bodies[n % bodies.len()].clone());
        n += 1;
        tasks.push(tokio::spawn(async move {
            let answer = call(client, url, "Kinesis_20131202.PutRecords", body).await;
            assert!(
                answer.starts_with(br#"{"FailedRecordCount":0"#),
                "{}",
                String::from_utf8_lossy(&answer[..80])
            );
            due.elapsed()
        }));
    }
    let mut all = Vec::with_capacity(tasks.len());
    for t in tasks {
        all.push(t.await.unwrap());
    }
    all
}

/// The proxy, stopped (by its PID) when this goes out of scope, also when
/// the bench panics (a failed call, or its output's reader gone).
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The proxy on CPU 0, in front of `upstream`.
fn start_proxy(upstream: SocketAddr, extra: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new("taskset")
        .args([
            "-c",
            "0",
            env!("CARGO_BIN_EXE_kinesis-agg"),
            "proxy",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--endpoint",
            &format!("http://{upstream}"),
            "--region",
            "us-east-1",
        ])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", "AKIDBENCH")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::piped())
        .spawn()
        .expect("taskset and the kinesis-agg binary");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("listening on http://")
        .nth(1)
        .expect("the proxy's address")
        .split(',')
        .next()
        .unwrap();
    (child, format!("http://{addr}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let seconds: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10);
    let clients: usize = args
        .iter()
        .position(|a| a == "--clients")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(64);
    let no_aggregation = args.iter().any(|a| a == "--no-aggregation");
    let rate: Option<f64> = args
        .iter()
        .position(|a| a == "--rate")
        .and_then(|i| args.get(i + 1)?.parse().ok());
    // This process on CPU 1, the proxy on CPU 0.
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();

    // GetRecords: 10,000 user records of 100 bytes in aggregates of 50 KB.
    let mut agg = RecordAggregator::with_limit(51_200).unwrap();
    let mut blobs = Vec::new();
    for i in 0..10_000usize {
        let data = format!("{i:0100}");
        let key = format!("key-{}", i % KEYS);
        if let Some(done) = agg.add(kinesis_agg::Record::new(&key, data.as_bytes())).unwrap() {
            blobs.push(done.data().to_vec());
        }
    }
    blobs.extend(agg.finish().map(|a| a.data().to_vec()));
    let records: Vec<String> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                r#"{{"SequenceNumber":"{i:056}","ApproximateArrivalTimestamp":1.7E9,"Data":"{}","PartitionKey":"a"}}"#,
                STANDARD.encode(b)
            )
        })
        .collect();
    let get_records = format!(
        r#"{{"Records":[{}],"NextShardIterator":"next","MillisBehindLatest":0}}"#,
        records.join(",")
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = Arc::new(Upstream {
        map: support::map(SHARDS),
        seq: AtomicU64::new(0),
        get_records: Bytes::from(get_records.clone()),
        user_records_in: AtomicUsize::new(0),
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let up_addr = listener.local_addr().unwrap();
    rt.spawn(serve_upstream(listener, upstream.clone()));

    let mut extra = vec!["--max-connections", "4096"];
    if no_aggregation {
        extra.push("--no-aggregation");
    }
    let (proxy, url) = start_proxy(up_addr, &extra);
    let proxy = Stopped(proxy);
    let bodies: Vec<Bytes> = (0..20).map(|n| put_body("bench", n * PER_CALL)).collect();
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // Warm up: the producer is made, the key cache filled.
    rt.block_on(call(
        client.clone(),
        url.clone(),
        "Kinesis_20131202.PutRecords",
        bodies[0].clone(),
    ));
    let before = upstream.user_records_in.load(Ordering::Relaxed);
    let (proxy_cpu, own_cpu) = (cpu_seconds(proxy.0.id()), cpu_seconds(std::process::id()));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let latencies = rt.block_on(async {
        if let Some(rate) = rate {
            return at_a_rate(rate, until, &client, &url, &bodies).await;
        }
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = c;
                // The clients start spread over the buffered time, not
                // all at once: a burst of every client's first call at
                // the same instant waits for the proxy to read all of
                // them, which is the start of this bench, not a load a
                // proxy meets, and would be about 1% of the calls.
                tokio::time::sleep(Duration::from_millis(100) * c as u32 / clients as u32).await;
                while Instant::now() < until {
                    let t = Instant::now();
                    let answer = call(
                        client.clone(),
                        url.clone(),
                        "Kinesis_20131202.PutRecords",
                        bodies[n % bodies.len()].clone(),
                    )
                    .await;
                    lat.push(t.elapsed());
                    assert!(
                        answer.starts_with(br#"{"FailedRecordCount":0"#),
                        "{}",
                        String::from_utf8_lossy(&answer[..80])
                    );
                    n += 1;
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let proxy_cpu = cpu_seconds(proxy.0.id()) - proxy_cpu;
    let own_cpu = cpu_seconds(std::process::id()) - own_cpu;
    let mut lat = latencies;
    lat.sort();
    let records = lat.len() * PER_CALL;
    let upstream_got = upstream.user_records_in.load(Ordering::Relaxed) - before;
    let p50 = percentile(&lat, 0.5);
    let p99 = percentile(&lat, 0.99);
    let load = match rate {
        Some(r) => format!("calls started at {r:.0} user records/s (open loop)"),
        None => format!("{clients} clients"),
    };
    println!(
        "put{}: {load}, {} calls of {PER_CALL} in {elapsed:.1} s: {:.0} user records/s through the proxy (upstream received them in {upstream_got} {} Kinesis records)",
        if no_aggregation { " (no aggregation)" } else { "" },
        lat.len(),
        records as f64 / elapsed,
        if no_aggregation { "as many" } else { "aggregated" },
    );
    println!(
        "  proxy CPU {:.0}% of its core ({:.2} us a user record); this process (clients and upstream) {:.0}% of its core",
        proxy_cpu / elapsed * 100.0,
        proxy_cpu / records as f64 * 1e6,
        own_cpu / elapsed * 100.0,
    );
    println!(
        "  call latency: median {:.1} ms, p99 {:.1} ms (p99.9 {:.1}, the longest {:.1}), p99 beyond the 100 ms buffered time {:.1} ms; proxy peak RSS {:.1} MiB",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        percentile(&lat, 0.999).as_secs_f64() * 1e3,
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        (p99.as_secs_f64() * 1e3 - 100.0).max(0.0),
        peak_rss_mib(proxy.0.id()),
    );

    // GetRecords through the proxy, and kinesis-agg deagg on the same bytes.
    let get = Bytes::from_static(br#"{"ShardIterator":"it"}"#);
    let rounds = 30;
    rt.block_on(call(
        client.clone(),
        url.clone(),
        "Kinesis_20131202.GetRecords",
        get.clone(),
    ));
    let t = Instant::now();
    for _ in 0..rounds {
        let body = rt.block_on(call(
            client.clone(),
            url.clone(),
            "Kinesis_20131202.GetRecords",
            get.clone(),
        ));
        assert!(body.len() > 1_000_000);
    }
    let through = (rounds * 10_000) as f64 / t.elapsed().as_secs_f64();
    let doc = std::env::temp_dir().join(format!("kagg-bench-get-records-{}.json", std::process::id()));
    std::fs::write(&doc, &get_records).unwrap();
    let t = Instant::now();
    for _ in 0..rounds {
        let out = Command::new("taskset")
            .args([
                "-c",
                "0",
                env!("CARGO_BIN_EXE_kinesis-agg"),
                "deagg",
                "--input",
                "get-records",
            ])
            .arg(&doc)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    }
    let deagg = (rounds * 10_000) as f64 / t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&doc);
    println!(
        "get-records: answers of 10,000 user records in {} aggregates: {through:.0} user records/s through the proxy, {deagg:.0} by kinesis-agg deagg (a process each, as a user runs it): {:.2}x",
        blobs.len(),
        through / deagg
    );
    drop(proxy);
}
