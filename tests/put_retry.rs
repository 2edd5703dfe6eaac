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
use kinesis_agg::{OnInvalid, Record};
use serde_json::{Value, json};

/// Every call's entries (their data, decoded), in order.
type Calls = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

/// Serves PutRecords: rejects an entry whose data starts with `reject`
/// while it has been seen fewer than `times` times.
fn fake_kinesis(reject: &'static [u8], times: usize) -> (String, Calls) {
    fake_kinesis_with(reject, times, false)
}

/// As `fake_kinesis`; with `short`, every answer leaves out its last result.
fn fake_kinesis_with(reject: &'static [u8], times: usize, short: bool) -> (String, Calls) {
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
                if short {
                    results.pop();
                }
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

const FAST: Retry = Retry::new()
    .with_attempts(4)
    .with_backoff(Duration::from_millis(1), Duration::from_millis(4));

/// `put_all` of `n` entries of 10 bytes, which must fail.
async fn put_fails(endpoint: &str, n: usize) -> PutError {
    put_all(&client(endpoint), "s", entries(n, 10), FAST)
        .await
        .unwrap_err()
}

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
    let err = put_fails(&endpoint, 10).await;
    let PutError::GaveUp {
        failed,
        error_code,
        stats,
        pending,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*failed, 1);
    // The one entry rejected every time (entry 3), handed back to resume with.
    assert_eq!(pending.len(), 1);
    assert!(pending[0].data().as_ref().starts_with(b"reject 00003"));
    assert_eq!(err.pending().len(), 1);
    assert_eq!(err.stats(), *stats);
    assert_eq!(
        error_code.as_deref(),
        Some("ProvisionedThroughputExceededException")
    );
    assert_eq!(stats.entries, 9);
    assert_eq!(calls.lock().unwrap().len(), 4);
    assert!(err.to_string().contains("ProvisionedThroughputExceededException"));
}

#[test]
fn conversions_between_sdk_types_and_ours() {
    use aws_sdk_kinesis::types::{HashKeyRange as SdkRange, Record as SdkRecord, SequenceNumberRange, Shard};
    use kinesis_agg::sdk::{self, ShardRead};
    let mut agg = kinesis_agg::RecordAggregator::new();
    agg.add(Record::new("a", b"one")).unwrap();
    agg.add(Record::new("b", b"two").with_explicit_hash_key("7"))
        .unwrap();
    let done = agg.finish().unwrap();
    let entry = sdk::put_entry(&done).unwrap();
    assert_eq!(entry.data().as_ref(), done.data());
    assert_eq!((entry.partition_key(), entry.explicit_hash_key()), ("a", None));
    let rec = |seq: &str, data: &[u8], pk: &str| {
        SdkRecord::builder()
            .sequence_number(seq)
            .data(Blob::new(data))
            .partition_key(pk)
            .build()
            .unwrap()
    };
    let batch = [rec("1", done.data(), "a"), rec("2", b"plain", "outer")];
    let users = sdk::batch_user_records(&batch, OnInvalid::Error).unwrap();
    let seen: Vec<_> = users
        .iter()
        .map(|u| {
            (
                u.record,
                u.partition_key,
                u.explicit_hash_key,
                u.outer.sequence_number,
                u.sub_sequence_number,
                u.aggregated,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (0, Some("a"), None, Some("1"), Some(0), true),
            (0, Some("b"), Some("7"), Some("1"), Some(1), true),
            (1, Some("outer"), None, Some("2"), None, false)
        ]
    );
    assert_eq!(users[0].outer.partition_key, Some("a"));
    assert_eq!(users[2].data, b"plain");
    // The KCL rule: "b" is routed by EHK 7, "a" by its MD5.
    let narrow = kinesis_agg::HashKeyRange::new(0, 10).unwrap();
    match sdk::user_records_in_shard(&batch[0], 0, narrow).unwrap() {
        ShardRead::Discarded {
            sequence_number,
            out_of_range,
        } => {
            assert_eq!(sequence_number, "1");
            assert_eq!(out_of_range.hash_key, Some(kinesis_agg::partition_key_hash("a")));
        }
        other => panic!("{other:?}"),
    }
    // A broken body names the record's position in the batch.
    let mut broken = done.data().to_vec();
    broken.truncate(4);
    broken.extend_from_slice(&[0x1A, 0x00]);
    let md5 = md5::Digest::finalize(<md5::Md5 as md5::Digest>::new_with_prefix(&broken[4..]));
    broken.extend_from_slice(&md5);
    let bad = [rec("1", b"ok", "k"), rec("2", &broken, "k")];
    let err = sdk::batch_user_records(&bad, OnInvalid::Error).unwrap_err();
    assert_eq!(err.record, 1);
    assert_eq!(err.sequence_number, Some("2"));
    assert_eq!(
        err.error,
        kinesis_agg::Error::MissingField {
            // The empty record's body: after the magic, its tag and length.
            offset: 6,
            field: kinesis_agg::Required::PartitionKeyIndex
        }
    );
    assert!(err.to_string().contains("sequence number 2"), "{err}");
    // Passed through instead: the broken record as it is, in its place.
    let through = sdk::batch_user_records(&bad, OnInvalid::Passthrough).unwrap();
    assert_eq!(through.len(), 2);
    assert!(!through[1].aggregated && through[1].data == &broken[..]);
    // ListShards: closed shards are left out.
    let shard = |id: &str, s: &str, e: &str, closed: bool| {
        let mut range = SequenceNumberRange::builder().starting_sequence_number("0");
        if closed {
            range = range.ending_sequence_number("9");
        }
        Shard::builder()
            .shard_id(id)
            .hash_key_range(
                SdkRange::builder()
                    .starting_hash_key(s)
                    .ending_hash_key(e)
                    .build()
                    .unwrap(),
            )
            .sequence_number_range(range.build().unwrap())
            .build()
            .unwrap()
    };
    let max = u128::MAX.to_string();
    let shards = [shard("parent", "0", &max, true), shard("child", "0", &max, false)];
    let map = sdk::shard_map(&shards).unwrap();
    assert_eq!(map.shards().len(), 1);
    assert_eq!(map.shards()[0].id, "child");
    assert_eq!(
        sdk::shard_range(&shards[0]).unwrap(),
        kinesis_agg::HashKeyRange::FULL
    );
    let bad = [shard("x", "5", "1", false)];
    assert_eq!(sdk::shard_map(&bad), Err(kinesis_agg::Error::InvalidHashKeyRange));
}

#[tokio::test]
async fn a_call_failing_as_a_whole_is_reported() {
    // Nothing listens on this port once the listener is dropped.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .build(),
    );
    let err = put_all(&client, "s", entries(3, 10), FAST).await.unwrap_err();
    let PutError::Sdk { stats, pending, .. } = &err else {
        panic!("{err:?}")
    };
    // Nothing was accepted, and the whole call is pending, in order.
    assert_eq!(stats.entries, 0);
    assert_eq!(stats.calls, 1);
    let pending: Vec<&[u8]> = pending.iter().map(|e| e.data().as_ref()).collect();
    let sent = entries(3, 10);
    let sent: Vec<&[u8]> = sent.iter().map(|e| e.data().as_ref()).collect();
    assert_eq!(pending, sent);
    assert!(err.to_string().starts_with("PutRecords failed"), "{err}");
}

#[tokio::test]
async fn a_response_with_fewer_results_than_entries_is_an_error_not_a_silent_drop() {
    let (endpoint, calls) = fake_kinesis_with(b"none", 0, true);
    let err = put_fails(&endpoint, 700).await;
    let PutError::ShortResponse { sent, received, .. } = &err else {
        panic!("{err:?}")
    };
    let (stats, pending) = (err.stats(), err.pending());
    // The first call (500 entries) came back one result short: nothing is
    // counted as accepted, all 500 are pending, then the other 200, never
    // sent, in order.
    assert_eq!((*sent, *received), (500, 499));
    assert_eq!(stats.entries, 0);
    assert_eq!(pending.len(), 700);
    let want: Vec<Vec<u8>> = entries(700, 10)
        .iter()
        .map(|e| e.data().as_ref().to_vec())
        .collect();
    let got: Vec<Vec<u8>> = pending.iter().map(|e| e.data().as_ref().to_vec()).collect();
    assert_eq!(got, want);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert!(err.to_string().contains("499 results for 500 entries"), "{err}");
}
