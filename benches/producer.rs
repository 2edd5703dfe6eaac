//! The producer's throughput and CPU per user record into an in-process
//! Kinesis endpoint that answers at once (an SDK HTTP client that parses
//! each PutRecords call and routes its entries by hash key over the
//! stream's shards), on one core (a current-thread runtime), so that what
//! is measured is the producer and the SDK's request building and signing.
//!
//!     cargo bench --features producer --bench producer -- [RECORDS] [--no-aggregation]
//!         [--owned] [--preserve-order] [--latency-ms N] [--shards N] [--stall] [--many N]
//!         (200 shards by default)
//!
//! Records are put borrowed (`put(Record)`: the producer copies their bytes
//! into the aggregate) unless `--owned` (`put(OwnedRecord)`, a partition
//! key and data allocated per record, as a caller that builds them does).
//!
//! `--many N` puts the records N at a time with `try_put_many` (as the
//! proxy puts a PutRecords call's), instead of one `put` each.
//!
//! `--latency-ms` makes every answer take that long (as a real endpoint's
//! round trip does), to show what `preserve_order` costs: one Kinesis
//! record per shard in flight instead of as many as the connections take.
//!
//! `--stall`: the endpoint never answers PutRecords; the producer takes
//! records (`try_put`) until its caps refuse them or RECORDS are held, and
//! the bench prints the memory it holds per record beyond the data and keys
//! its byte cap counts.
//!
//! Prints records per second, CPU time per user record, the part of it the
//! in-process endpoint spent parsing requests and writing answers (time
//! inside the connector: on one thread, CPU time), the same two figures
//! without the endpoint, and the process's peak resident memory beside the
//! configured buffer cap.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::{Response, StatusCode};
use aws_smithy_types::body::SdkBody;
use kinesis_agg::producer::{Producer, ProducerConfig, ReceiptFuture};
use kinesis_agg::{OwnedRecord, Record, ShardMap};

mod support;

/// The in-process endpoint.
#[derive(Clone, Debug)]
struct Instant0 {
    map: Arc<ShardMap>,
    seq: Arc<AtomicU64>,
    latency: std::time::Duration,
    /// Never answer PutRecords.
    stall: bool,
    /// Nanoseconds spent answering.
    spent: Arc<AtomicU64>,
}

impl Instant0 {
    fn answer(&self, req: &HttpRequest) -> String {
        let target = req.headers().get("x-amz-target").unwrap_or_default();
        if target.ends_with("ListShards") {
            return support::list_shards_answer(&self.map);
        }
        support::put_records_answer(&self.map, req.body().bytes().unwrap_or_default(), &self.seq).0
    }
}

impl HttpConnector for Instant0 {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        if self.stall && target.ends_with("PutRecords") {
            return HttpConnectorFuture::new(std::future::pending());
        }
        let t = Instant::now();
        let body = self.answer(&request);
        self.spent
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut resp = Response::new(StatusCode::try_from(200).unwrap(), SdkBody::from(body));
        resp.headers_mut()
            .insert("content-type", "application/x-amz-json-1.1");
        if self.latency.is_zero() {
            return HttpConnectorFuture::ready(Ok(resp));
        }
        let latency = self.latency;
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(latency).await;
            Ok(resp)
        })
    }
}

impl HttpClient for Instant0 {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn rss_mib() -> f64 {
    support::status_mib("self", "VmRSS:")
}

fn peak_rss_mib() -> f64 {
    support::status_mib("self", "VmHWM:")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let n: usize = 2_000_000;
    let aggregation = !args.iter().any(|a| a == "--no-aggregation");
    let preserve_order = args.iter().any(|a| a == "--preserve-order");
    let owned = args.iter().any(|a| a == "--owned");
    let stall = args.iter().any(|a| a == "--stall");
    let option = |name: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1)?.parse().ok()
    };
    let latency_ms = option("--latency-ms").unwrap_or(0);
    let shards = option("--shards").unwrap_or(200) as u32;
    let many = option("--many").unwrap_or(0) as usize;
    let n: usize = args
        .iter()
        .enumerate()
        .find(|(i, a)| a.parse::<usize>().is_ok() && (*i == 0 || !args[i - 1].starts_with("--")))
        .map_or(n, |(_, a)| a.parse().unwrap_or(n));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let endpoint = Instant0 {
            map: Arc::new(support::map(shards)),
            seq: Arc::new(AtomicU64::new(1)),
            latency: std::time::Duration::from_millis(latency_ms),
            stall,
            spent: Arc::new(AtomicU64::new(0)),
        };
        let spent = endpoint.spent.clone();
        let conf = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDBENCH", "bench", None, None, "bench"))
            .http_client(endpoint)
            .build();
        let client = aws_sdk_kinesis::Client::from_conf(conf);
        let cap = 64usize << 20;
        let cfg = ProducerConfig::default()
            .aggregation(aggregation)
            .preserve_order(preserve_order)
            .max_buffered_bytes(cap);
        let cfg = if stall {
            let hour = std::time::Duration::from_secs(3600);
            cfg.request_timeout(hour).record_ttl(hour)
        } else {
            cfg
        };
        let producer = Producer::new(client, "bench", cfg).await.unwrap();
        let keys: Vec<String> = (0..10_000).map(|i| format!("device-{i:05}")).collect();
        let data = vec![b'x'; 100];
        if stall {
            let before = rss_mib();
            let (mut held, mut counted) = (0usize, 0usize);
            let mut futures = Vec::new();
            while held < n {
                let key = &keys[held % keys.len()];
                match producer.try_put(Record::new(key, &data)) {
                    Ok(f) => futures.push(f),
                    Err(_) => break,
                }
                held += 1;
                counted += key.len() + data.len();
                if held % 1000 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            // Let the producer aggregate and send what it holds.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let grown = (rss_mib() - before) * 1_048_576.0;
            let futures_bytes = futures.len() * std::mem::size_of::<ReceiptFuture>();
            println!(
                "stalled endpoint, aggregation {}: {held} user records held ({counted} bytes of data and keys, counted against the 64 MiB cap): \
                 RSS grew {:.1} MiB, {:.0} bytes a record beyond its data and keys ({} of them the benchmark's receipt futures)",
                if aggregation { "on" } else { "off" },
                grown / 1_048_576.0,
                (grown - counted as f64) / held as f64,
                futures_bytes / held.max(1)
            );
            producer.abandon();
            return;
        }
        let (u0, s0) = support::cpu("self");
        let start = Instant::now();
        let mut pending: VecDeque<ReceiptFuture> = VecDeque::new();
        let mut ok = 0usize;
        let mut i = 0;
        while i < n {
            let key = &keys[i % keys.len()];
            if many > 0 {
                // A batch with `try_put_many`, what it hands back for want
                // of room put in turn.
                let batch = (i..n.min(i + many)).map(|j| Record::new(&keys[j % keys.len()], &data));
                for tried in producer.try_put_many(batch) {
                    let f = match tried {
                        Ok(f) => f,
                        Err(e) => producer.put(e.into_record()).await.unwrap(),
                    };
                    pending.push_back(f);
                }
                i = n.min(i + many);
                tokio::task::yield_now().await;
            } else {
                let f = if owned {
                let record = OwnedRecord {
                    partition_key: key.clone(),
                    explicit_hash_key: None,
                    data: data.clone(),
                };
                producer.put(record).await.unwrap()
                } else {
                    producer.put(Record::new(key, &data)).await.unwrap()
                };
                pending.push_back(f);
                i += 1;
            }
            while let Some(f) = pending.front_mut() {
                match f.try_take() {
                    Some(r) => {
                        ok += usize::from(r.is_ok());
                        pending.pop_front();
                    }
                    None => break,
                }
            }
        }
        producer.flush().await;
        for f in pending {
            ok += usize::from(f.await.is_ok());
        }
        let secs = start.elapsed().as_secs_f64();
        let (u1, s1) = support::cpu("self");
        producer.shutdown().await;
        assert_eq!(ok, n, "every record put");
        let cpu_s = (u1 - u0) + (s1 - s0);
        let endpoint_s = spent.load(Ordering::Relaxed) as f64 / 1e9;
        println!(
            "producer, aggregation {}{}, {} records{}, answers after {latency_ms} ms: {n} user records of 100 bytes over 10,000 keys and {shards} shards in {secs:.2} s: \
             {:.0} records/s; CPU {:.2} s ({:.0} ns a record, of which the endpoint {:.0}); without the endpoint {:.0} records/s, {:.0} ns a record; \
             peak RSS {:.1} MiB (buffer cap {} MiB)",
            if aggregation { "on" } else { "off" },
            if preserve_order { ", preserve_order" } else { "" },
            if owned { "owned" } else { "borrowed" },
            if many > 0 { format!(" put {many} at a time (try_put_many)") } else { String::new() },
            n as f64 / secs,
            cpu_s,
            cpu_s * 1e9 / n as f64,
            endpoint_s * 1e9 / n as f64,
            n as f64 / (secs - endpoint_s),
            (cpu_s - endpoint_s) * 1e9 / n as f64,
            peak_rss_mib(),
            cap >> 20
        );
    });
}
