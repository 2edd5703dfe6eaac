//! `sdk::put_all` packs entries within PutRecords' limits and re-sends only
//! the entries a call rejected. A small fake Kinesis endpoint on loopback
//! rejects chosen entries on their first attempt and records every call.
#![cfg(feature = "aws-sdk")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use base64::Engine;
use kinesis_agg::sdk::{PutError, Retry, put_all};
use serde_json::{Value, json};

/// Every call's entries (their data, decoded), in order.
type Calls = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

/// Serves PutRecords: rejects an entry whose data starts with `reject`
/// while it has been seen fewer than `times` times.
fn fake_kinesis(reject: &'static [u8], times: usize) -> (String, Calls) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let calls: Calls = Arc::default();
    let log = Arc::clone(&calls);
    std::thread::spawn(move || {
        let mut seen = std::collections::HashMap::<Vec<u8>, usize>::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut len = 0usize;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let req: Value = serde_json::from_slice(&body).unwrap();
                let mut this_call = Vec::new();
                let mut results = Vec::new();
                let mut failed = 0;
                for r in req["Records"].as_array().unwrap() {
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(r["Data"].as_str().unwrap())
                        .unwrap();
                    let n = seen.entry(data.clone()).or_default();
                    *n += 1;
                    if data.starts_with(reject) && *n <= times {
                        failed += 1;
                        results.push(json!({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}));
                    } else {
                        results.push(json!({"SequenceNumber": "1", "ShardId": "shardId-000000000000"}));
                    }
                    this_call.push(data);
                }
                log.lock().unwrap().push(this_call);
                let resp = json!({"FailedRecordCount": failed, "Records": results}).to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n",
                    resp.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(resp.as_bytes()).unwrap();
            }
        }
    });
    (format!("http://{addr}"), calls)
}

fn client(endpoint: &str) -> Client {
    Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .build(),
    )
}

fn entries(n: usize, size: usize) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|i| {
            let mut data = if i % 7 == 3 {
                format!("reject {i:05}")
            } else {
                format!("accept {i:05}")
            }
            .into_bytes();
            data.resize(size.max(data.len()), b'.');
            PutRecordsRequestEntry::builder()
                .data(Blob::new(data))
                .partition_key("k")
                .build()
                .unwrap()
        })
        .collect()
}

const FAST: Retry = Retry {
    attempts: 4,
    first_backoff: Duration::from_millis(1),
    max_backoff: Duration::from_millis(4),
};

#[tokio::test]
async fn only_rejected_entries_are_sent_again() {
    let (endpoint, calls) = fake_kinesis(b"reject", 1);
    let stats = put_all(&client(&endpoint), "s", entries(1200, 20), FAST)
        .await
        .unwrap();
    let calls = calls.lock().unwrap();
    // 1,200 entries: calls of 500, 500 and 200, each followed by one retry
    // holding exactly its rejected entries.
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    let rejected = |lo: usize, hi: usize| (lo..hi).filter(|i| i % 7 == 3).count();
    assert_eq!(
        sizes,
        [
            500,
            rejected(0, 500),
            500,
            rejected(500, 1000),
            200,
            rejected(1000, 1200)
        ]
    );
    for retry in [&calls[1], &calls[3], &calls[5]] {
        assert!(retry.iter().all(|d| d.starts_with(b"reject")));
    }
    assert_eq!(stats.entries, 1200);
    assert_eq!(stats.calls, 6);
    assert_eq!(stats.retried, rejected(0, 1200));
}

#[tokio::test]
async fn calls_stay_within_five_mebibytes() {
    let (endpoint, calls) = fake_kinesis(b"none", 0);
    // 1 MiB entries (data plus the one-byte key): five fit only if under 5 MiB.
    let stats = put_all(&client(&endpoint), "s", entries(12, 1024 * 1024 - 1), FAST)
        .await
        .unwrap();
    let sizes: Vec<usize> = calls.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [5, 5, 2]);
    assert_eq!(stats.bytes, 12 * 1024 * 1024);
}

#[tokio::test]
async fn gives_up_after_the_attempts_and_says_so() {
    let (endpoint, calls) = fake_kinesis(b"reject", usize::MAX);
    let err = put_all(&client(&endpoint), "s", entries(10, 10), FAST)
        .await
        .unwrap_err();
    let PutError::GaveUp {
        failed,
        error_code,
        stats,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*failed, 1);
    assert_eq!(
        error_code.as_deref(),
        Some("ProvisionedThroughputExceededException")
    );
    assert_eq!(stats.entries, 9);
    assert_eq!(calls.lock().unwrap().len(), 4);
    assert!(err.to_string().contains("ProvisionedThroughputExceededException"));
}
