//! The producer (feature `producer`) against a Kinesis API server, directly
//! and through a fault-injecting proxy: every user record ends in a
//! receipt or an error saying why, every successful receipt's record is in
//! the stream where the receipt says, duplicates occur only where an
//! answer was lost, nothing is lost.
//!
//! Needs a Kinesis API: ignored unless asked for (`-- --ignored`), and then
//! `KINESIS_ENDPOINT` (e.g. `http://127.0.0.1:4567`) must name one;
//! `./test.sh` starts kinesalite on loopback, sets it and runs these tests.
#![cfg(feature = "producer")]

mod support;

use support::kinesis::{Read, client, endpoint, read_stream, upstream, wait_active};
use support::proxy;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use kinesis_agg::producer::{
    FailureKind, Invalid, Producer, ProducerConfig, Receipt, ReceiptFuture, Rejected,
};
use kinesis_agg::{Error, OwnedRecord};

async fn new_stream(client: &Client, name: &str, shards: i32) -> String {
    support::kinesis::new_stream(client, &format!("producer-{name}"), shards).await
}

/// The default settings, records buffered for at most `time`.
fn buffered_for(time: Duration) -> ProducerConfig {
    ProducerConfig::default().record_max_buffered_time(time)
}

/// A client of the endpoint under test and a new stream of `shards`
/// shards on it.
async fn fresh_stream(name: &str, shards: i32) -> (Client, String) {
    let client = client(&endpoint());
    let stream = new_stream(&client, name, shards).await;
    (client, stream)
}

/// Every user record of the stream, and the aggregates the KCL discards.
async fn read_all(client: &Client, stream: &str) -> (Vec<Read>, usize) {
    read_stream(client, stream).await
}

/// Every user record of the stream as `kinesis-agg tail` prints it (the
/// binary, run to the end of every shard), and the aggregates it reported
/// discarded by the KCL rule.
#[cfg(feature = "cli")]
fn tail_all(stream: &str) -> (Vec<Read>, usize) {
    use base64::Engine;
    let out = support::cli::cli()
        .args(["tail", "--stream", stream, "--endpoint", &endpoint()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "tail: {stderr}");
    let got = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let field = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k} in {l}")).to_owned();
            Read {
                shard_id: field("shard_id"),
                sequence_number: field("sequence_number"),
                sub_sequence_number: if v["aggregated"].as_bool().unwrap() {
                    Some(v["sub_sequence_number"].as_u64().unwrap())
                } else {
                    None
                },
                partition_key: field("partition_key"),
                explicit_hash_key: v["explicit_hash_key"].as_str().map(str::to_owned),
                data: base64::engine::general_purpose::STANDARD
                    .decode(field("data"))
                    .unwrap(),
            }
        })
        .collect();
    let discarded = stderr
        .lines()
        .filter(|l| l.contains("discarded by the KCL rule"))
        .count();
    (got, discarded)
}

/// `n` user records over `keys` partition keys; each record's data names
/// it (`key record`), so that it can be found again.
fn records(n: usize, keys: usize) -> Vec<OwnedRecord> {
    (0..n)
        .map(|i| {
            let k = i % keys;
            let mut data = format!("key-{k:04} {i:07} ").into_bytes();
            data.resize(40 + i % 60, b'.');
            OwnedRecord {
                partition_key: format!("key-{k:04}"),
                explicit_hash_key: None,
                data,
            }
        })
        .collect()
}

fn index_of(data: &[u8]) -> usize {
    let text = std::str::from_utf8(&data[9..16]).unwrap();
    text.parse().unwrap()
}

/// Checks the stream against the receipts: every successful receipt's
/// record is in the stream at the place the receipt names; nothing is
/// lost; every other copy of a record is in a Kinesis record for which
/// `lost(shard, sequence number)` says the answer was lost. Returns how
/// many extra copies the stream holds.
fn check_against_receipts(
    sent: &[OwnedRecord],
    receipts: &[Receipt],
    got: &[Read],
    lost: &dyn Fn(&str, &str) -> bool,
) -> usize {
    let mut seen: HashMap<usize, Vec<&Read>> = HashMap::new();
    for r in got {
        seen.entry(index_of(&r.data)).or_default().push(r);
    }
    let mut duplicates = 0;
    for (i, (rec, receipt)) in sent.iter().zip(receipts).enumerate() {
        let copies = seen
            .get(&i)
            .unwrap_or_else(|| panic!("record {i} is not in the stream"));
        duplicates += copies.len() - 1;
        assert!(
            copies
                .iter()
                .all(|c| c.data == rec.data && c.partition_key == rec.partition_key)
        );
        let named = |c: &&Read| {
            c.shard_id == receipt.shard_id()
                && c.sequence_number == receipt.sequence_number()
                && c.sub_sequence_number == receipt.sub_sequence_number()
        };
        assert!(
            copies.iter().any(named),
            "record {i}: receipt {receipt:?} does not name where it is: {copies:?}"
        );
        for c in copies.iter().filter(|c| !named(c)) {
            assert!(
                lost(&c.shard_id, &c.sequence_number),
                "record {i}: a copy at {c:?} that no lost answer explains (receipt {receipt:?})"
            );
        }
    }
    assert_eq!(
        seen.len(),
        sent.len(),
        "records in the stream that were never sent"
    );
    duplicates
}

fn none_lost(_: &str, _: &str) -> bool {
    false
}

async fn put_all(producer: &Producer, recs: &[OwnedRecord]) -> Vec<ReceiptFuture> {
    let mut futures = Vec::with_capacity(recs.len());
    for r in recs {
        futures.push(producer.put(r.clone()).await.unwrap());
    }
    futures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn every_receipt_names_where_its_record_is() {
    let (client, stream) = fresh_stream("receipts", 4).await;
    let cfg = buffered_for(Duration::from_millis(50));
    let producer = Producer::new(client.clone(), &stream, cfg).await.unwrap();
    let sent = records(20_000, 200);
    // Half put owned, half borrowed (copied into the aggregates).
    let mut futures = put_all(&producer, &sent[..10_000]).await;
    for r in &sent[10_000..] {
        futures.push(producer.put(r.as_record()).await.unwrap());
    }
    producer.flush().await;
    assert_eq!(producer.pending(), 0);
    let mut receipts = Vec::new();
    for f in futures {
        let r = f.await.unwrap();
        assert_eq!(r.attempts().len(), 1);
        assert_eq!(r.attempts()[0].error_code, None);
        receipts.push(r);
    }
    producer.shutdown().await;
    let (got, discarded) = read_all(&client, &stream).await;
    assert_eq!(discarded, 0);
    assert_eq!(check_against_receipts(&sent, &receipts, &got, &none_lost), 0);
    // Aggregated: far fewer Kinesis records than user records.
    let kinesis: std::collections::HashSet<&str> = got.iter().map(|r| r.sequence_number.as_str()).collect();
    assert!(kinesis.len() < 100, "{} Kinesis records", kinesis.len());
    // Unaggregated, every user record is its own Kinesis record.
    let stream2 = new_stream(&client, "plain", 2).await;
    let producer = Producer::new(
        client.clone(),
        &stream2,
        ProducerConfig::default().aggregation(false),
    )
    .await
    .unwrap();
    let sent = records(500, 50);
    let futures = put_all(&producer, &sent).await;
    producer.shutdown().await;
    let mut receipts = Vec::new();
    for f in futures {
        let r = f.await.unwrap();
        assert_eq!(r.sub_sequence_number(), None);
        receipts.push(r);
    }
    let (got, _) = read_all(&client, &stream2).await;
    assert_eq!(check_against_receipts(&sent, &receipts, &got, &none_lost), 0);
    assert!(got.iter().all(|r| r.sub_sequence_number.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn invalid_records_are_refused_at_put_and_handed_back() {
    let (client, stream) = fresh_stream("invalid", 1).await;
    let producer = Producer::new(
        client,
        &stream,
        ProducerConfig::default().max_user_record_size(1000),
    )
    .await
    .unwrap();
    let bad = [
        OwnedRecord {
            partition_key: String::new(),
            explicit_hash_key: None,
            data: b"x".to_vec(),
        },
        OwnedRecord {
            partition_key: "k".repeat(257),
            explicit_hash_key: None,
            data: b"x".to_vec(),
        },
        OwnedRecord {
            partition_key: "k".into(),
            explicit_hash_key: Some("12a".into()),
            data: b"x".to_vec(),
        },
        OwnedRecord {
            partition_key: "k".into(),
            explicit_hash_key: None,
            data: vec![0; 1001],
        },
    ];
    let reasons = [
        Invalid::Key(Error::InvalidPartitionKey { utf16_len: 0 }),
        Invalid::Key(Error::InvalidPartitionKey { utf16_len: 257 }),
        Invalid::Key(Error::InvalidHashKey { position: 2 }),
        Invalid::TooLarge {
            size: 1001,
            max: 1000,
        },
    ];
    for (b, why) in bad.into_iter().zip(reasons) {
        match producer.put(b.clone()).await {
            Err(Rejected::Invalid { record, reason }) => {
                assert_eq!(record, b);
                assert_eq!(reason, why);
            }
            other => panic!("{b:?} was not refused: {other:?}"),
        }
        match producer.put(b.as_record()).await {
            Err(Rejected::Invalid { record, .. }) => assert_eq!(record, b.as_record()),
            other => panic!("{b:?} was not refused: {other:?}"),
        }
        assert!(matches!(producer.try_put(b), Err(Rejected::Invalid { .. })));
    }
    // Tags: the producer writes none, and says so.
    let tags = [kinesis_agg::Tag {
        key: "k",
        value: None,
    }];
    let tagged = kinesis_agg::Record::new("k", b"x").with_tags(&tags);
    match producer.try_put(tagged) {
        Err(Rejected::Invalid { record, reason }) => {
            assert_eq!(record, tagged);
            assert_eq!(reason, Invalid::Tags);
            assert!(reason.to_string().contains("tags"), "{reason}");
        }
        other => panic!("a tagged record was not refused: {other:?}"),
    }
    assert_eq!(producer.pending(), 0);
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn shutdown_sends_what_is_buffered_and_then_refuses() {
    let (client, stream) = fresh_stream("shutdown", 2).await;
    // Records wait up to a minute to be aggregated: only shutdown sends them.
    let cfg = buffered_for(Duration::from_secs(60));
    let producer = Producer::new(client.clone(), &stream, cfg.clone()).await.unwrap();
    let sent = records(300, 30);
    let futures = put_all(&producer, &sent).await;
    // Awaited before they are answered: woken by the answer.
    let waiting = tokio::spawn(async move {
        let mut receipts = Vec::new();
        for f in futures {
            receipts.push(f.await.unwrap());
        }
        receipts
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(producer.pending(), 300, "nothing sent before its time");
    assert!(!waiting.is_finished());
    producer.shutdown().await;
    let receipts = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the receipts' futures were woken")
        .unwrap();
    let late = producer.put(sent[0].clone()).await;
    assert!(matches!(late, Err(Rejected::Shutdown { .. })), "{late:?}");
    let (got, _) = read_all(&client, &stream).await;
    assert_eq!(check_against_receipts(&sent, &receipts, &got, &none_lost), 0);

    // Dropped without shutdown: what was buffered fails as shut down.
    let producer = Producer::new(client, &stream, cfg).await.unwrap();
    let futures = put_all(&producer, &records(10, 5)).await;
    drop(producer);
    for f in futures {
        let e = f.await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Shutdown);
    }
}

/// A Kinesis API that answers everything but never PutRecords: a proxy
/// that holds every PutRecords answer for a minute.
async fn stalled() -> proxy::Proxy {
    let faults = proxy::Faults::with(|f| (f.delay, f.hold) = (1.0, Duration::from_secs(60)));
    proxy::start(upstream(), faults, 7).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn a_stalled_stream_pushes_back_and_records_expire_after_their_ttl() {
    let (_, stream) = fresh_stream("stalled", 1).await;
    let p = stalled().await;
    let cfg = buffered_for(Duration::from_millis(10))
        .request_timeout(Duration::from_millis(300))
        .record_ttl(Duration::from_secs(3))
        .max_buffered_records(50);
    let producer = Producer::new(client(&p.url()), &stream, cfg).await.unwrap();
    let sent = records(60, 10);
    let futures: Vec<_> = sent[..50]
        .iter()
        .map(|r| producer.try_put(r.clone()).unwrap())
        .collect();
    // At the cap: try_put hands the record back, put waits.
    let Err(Rejected::Full { record }) = producer.try_put(sent[50].clone()) else {
        panic!("not refused at the cap");
    };
    assert_eq!(record, sent[50]);
    let waiting = tokio::time::timeout(Duration::from_millis(300), producer.put(sent[51].clone())).await;
    assert!(waiting.is_err(), "put returned while the buffers were full");
    assert_eq!(producer.pending(), 50);
    // Every attempt times out; after the TTL every record fails as expired.
    for f in futures {
        let e = f.await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Expired, "{e}");
        assert!(!e.attempts.is_empty());
        assert!(
            e.attempts
                .iter()
                .all(|a| a.error_code.as_deref() == Some("Timeout")),
            "{:?}",
            e.attempts
        );
    }
    // Room again: put admits at once.
    let again = tokio::time::timeout(Duration::from_millis(300), producer.put(sent[52].clone())).await;
    assert!(again.is_ok(), "put still waiting after the buffers emptied");
    assert!(
        p.counters
            .delayed_calls
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    producer.abandon();
}

/// Runs 3,000 records through the proxy with `faults`; checks the stream.
async fn under_faults(name: &str, faults: proxy::Faults) {
    use std::sync::atomic::Ordering::Relaxed;
    let (direct, stream) = fresh_stream(name, 3).await;
    let p = proxy::start(upstream(), faults, 0xfeed ^ name.len() as u64).await;
    let cfg = buffered_for(Duration::from_millis(20))
        .aggregation_max_size(4_000)
        .request_timeout(Duration::from_millis(700))
        .first_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(100))
        .record_ttl(Duration::from_secs(60));
    let producer = Producer::new(client(&p.url()), &stream, cfg).await.unwrap();
    let sent = records(3_000, 100);
    let futures = put_all(&producer, &sent).await;
    producer.shutdown().await;
    let mut receipts = Vec::new();
    let mut retried = 0;
    for (i, f) in futures.into_iter().enumerate() {
        let r = f.await.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        retried += usize::from(r.attempts().len() > 1);
        receipts.push(r);
    }
    let (got, discarded) = read_all(&direct, &stream).await;
    assert_eq!(discarded, 0);
    let duplicates = check_against_receipts(&sent, &receipts, &got, &|shard, seq| {
        p.counters.was_lost(shard, seq)
    });
    let lost = p.counters.lost_entries.load(Relaxed);
    let c = &p.counters;
    eprintln!(
        "{name}: {} calls, {} entries rejected, {} calls 500, {} calls throttled, {} held, {} closed, {} garbled, {} other calls failed; \
         {retried} user records retried, {duplicates} duplicates, {lost} Kinesis records' answers lost",
        c.put_calls.load(Relaxed),
        c.rejected_entries.load(Relaxed),
        c.calls_500.load(Relaxed),
        c.calls_throttled.load(Relaxed),
        c.delayed_calls.load(Relaxed),
        c.closed_calls.load(Relaxed),
        c.garbled_calls.load(Relaxed),
        c.other_faults.load(Relaxed),
    );
    if lost == 0 {
        assert_eq!(duplicates, 0, "duplicates without a lost answer");
    }
    assert!(retried > 0, "{name}: the faults did not make the producer retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn nothing_is_lost_under_each_fault_and_all_at_once() {
    // Each fault alone at its rate, then all of them at once.
    let hold = Duration::from_millis(1500);
    let each = [
        (
            "throttled-entries",
            proxy::Faults::with(|f| f.throttle_entries = 0.3),
        ),
        ("calls-500", proxy::Faults::with(|f| f.call_500 = 0.3)),
        ("calls-throttled", proxy::Faults::with(|f| f.call_throttled = 0.3)),
        (
            "answers-late",
            proxy::Faults::with(|f| (f.delay, f.hold) = (0.2, hold)),
        ),
        (
            "answers-lost",
            proxy::Faults::with(|f| f.close_after_forward = 0.2),
        ),
        ("answers-garbled", proxy::Faults::with(|f| f.garble = 0.2)),
        (
            "all",
            proxy::Faults::with(|f| {
                (f.throttle_entries, f.call_500, f.call_throttled) = (0.15, 0.1, 0.1);
                (f.delay, f.hold, f.close_after_forward, f.garble) = (0.1, hold, 0.1, 0.05);
                (f.other_500, f.other_throttled) = (0.1, 0.1);
            }),
        ),
    ];
    for (name, faults) in each {
        under_faults(name, faults).await;
    }
}

async fn reshard_run(name: &str, preserve_order: bool) {
    let (direct, stream) = fresh_stream(name, 2).await;
    let cfg = buffered_for(Duration::from_millis(300)).preserve_order(preserve_order);
    let producer = Producer::new(direct.clone(), &stream, cfg).await.unwrap();
    let sent = records(200_000, 1_000);
    let mut futures = put_all(&producer, &sent[..80_000]).await;
    // Split the first shard while records are buffered.
    assert!(producer.pending() > 0);
    let before = producer.shard_map();
    let parent = before.shards()[0].clone();
    let middle = parent.range.start + (parent.range.end - parent.range.start) / 2 + 1;
    support::kinesis::split_in_half(&direct, &stream, &parent, true).await;
    futures.extend(put_all(&producer, &sent[80_000..140_000]).await);
    // Merge the upper child with the second shard, again with records
    // buffered.
    assert!(producer.pending() > 0);
    let listed =
        kinesis_agg::sdk::list_shard_map(&direct, &stream, Duration::ZERO, Duration::from_secs(30), |_| {})
            .await
            .unwrap();
    let upper = listed
        .shards()
        .iter()
        .find(|s| s.range.start == middle)
        .unwrap()
        .clone();
    let second = listed
        .shards()
        .iter()
        .find(|s| s.range.start == upper.range.end + 1)
        .unwrap()
        .clone();
    direct
        .merge_shards()
        .stream_name(&stream)
        .shard_to_merge(&upper.id)
        .adjacent_shard_to_merge(&second.id)
        .send()
        .await
        .unwrap();
    wait_active(&direct, &stream).await;
    futures.extend(put_all(&producer, &sent[140_000..]).await);
    producer.shutdown().await;
    assert_eq!(
        producer.shard_map().shards().len(),
        2,
        "the producer follows both reshards"
    );
    let mut receipts = Vec::new();
    let mut wrong = 0;
    for (i, f) in futures.into_iter().enumerate() {
        let r = f.await.unwrap_or_else(|e| panic!("record {i} failed: {e}"));
        wrong += usize::from(
            r.attempts()
                .iter()
                .any(|a| a.error_code.as_deref() == Some("WrongShard")),
        );
        receipts.push(r);
    }
    // The ordered run is read back by `kinesis-agg tail` (parents before
    // children, the KCL rule); the other, and both without the CLI, by
    // the test's own reader.
    #[cfg(feature = "cli")]
    let ((got, discarded), reader) = if preserve_order {
        (tail_all(&stream), "kinesis-agg tail")
    } else {
        (read_all(&direct, &stream).await, "the test's reader")
    };
    #[cfg(not(feature = "cli"))]
    let ((got, discarded), reader) = (read_all(&direct, &stream).await, "the test's reader");
    // Aggregates that landed on a child holding only part of them are
    // discarded by the KCL rule; their records were sent again.
    assert_eq!(check_against_receipts(&sent, &receipts, &got, &none_lost), 0);
    eprintln!(
        "{name}: {} user records read once each by {reader}, every receipt naming its place; {discarded} aggregates discarded by the KCL rule, {wrong} user records sent again",
        got.len()
    );
    if preserve_order {
        // Per-key order as read: each key's records in the order they were
        // put.
        let mut last: HashMap<&str, (usize, &Read)> = HashMap::new();
        for r in &got {
            let i = index_of(&r.data);
            if let Some((prev, pr)) = last.insert(&r.partition_key, (i, r)) {
                assert!(
                    prev < i,
                    "key {}: record {i} read after {prev}:\n{:?}\n{:?}\n{:?}\n{:?}",
                    r.partition_key,
                    r,
                    pr,
                    receipts[i],
                    receipts[prev]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn a_split_and_a_merge_while_records_are_buffered_lose_nothing() {
    reshard_run("reshard-ordered", true).await;
    reshard_run("reshard", false).await;
}

/// Puts 20 records through a proxy injecting `faults`: each fails as
/// `kind` after one attempt, answered `code`. The proxy, still running.
async fn fail_at_once(
    stream: &str,
    faults: proxy::Faults,
    seed: u64,
    cfg: ProducerConfig,
    kind: FailureKind,
    code: &str,
) -> proxy::Proxy {
    let p = proxy::start(upstream(), faults, seed).await;
    let producer = Producer::new(client(&p.url()), stream, cfg).await.unwrap();
    for f in put_all(&producer, &records(20, 4)).await {
        let e = f.await.unwrap_err();
        assert_eq!(e.kind, kind, "{e}");
        assert_eq!(e.attempts.len(), 1);
        assert_eq!(e.attempts[0].error_code.as_deref(), Some(code));
        assert!(e.message.contains(code), "{e}");
    }
    producer.shutdown().await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn validation_errors_are_final_and_fail_if_throttled_fails_at_once() {
    let (direct, stream) = fresh_stream("final", 1).await;
    let quick = buffered_for(Duration::from_millis(10)).first_backoff(Duration::from_millis(5));
    // A ValidationException is not retried: one attempt, Rejected.
    let invalid = proxy::Faults::with(|f| f.call_invalid = 1.0);
    let code = "ValidationException";
    fail_at_once(&stream, invalid, 3, quick.clone(), FailureKind::Rejected, code).await;
    // Throttled entries with fail_if_throttled: Throttled after one attempt.
    let throttled = proxy::Faults::with(|f| f.throttle_entries = 1.0);
    let code = "ProvisionedThroughputExceededException";
    let with = quick.clone().fail_if_throttled(true);
    let p = fail_at_once(&stream, throttled, 4, with, FailureKind::Throttled, code).await;
    // Without it, the same throttling is retried until the TTL.
    let producer = Producer::new(
        client(&p.url()),
        &stream,
        quick.record_ttl(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let f = producer.put(records(1, 1).remove(0)).await.unwrap();
    let e = f.await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Expired);
    assert!(e.attempts.len() > 1, "{:?}", e.attempts);
    producer.shutdown().await;
    let (got, _) = read_all(&direct, &stream).await;
    assert!(got.is_empty(), "nothing reached the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn a_record_into_an_idle_producer_goes_within_its_buffered_time() {
    let (client, stream) = fresh_stream("idle", 1).await;
    let cfg = buffered_for(Duration::from_millis(300));
    let producer = Producer::new(client, &stream, cfg).await.unwrap();
    // Nothing buffered: the producer has nothing to look at for seconds.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The shard closes its aggregates at its own moments, 300 ms apart: a
    // record put after a pause goes at the next of them (sooner than its
    // buffered time, never later), not when the producer's idle pause
    // (5 s) ends. When exactly is the unit tests' business (paused clock).
    for round in 0..3 {
        let put = std::time::Instant::now();
        let f = producer.put(records(1, 1).remove(0)).await.unwrap();
        let receipt = tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .expect("answered")
            .unwrap();
        let took = put.elapsed();
        // The buffered time plus room for a slow machine's call, well
        // under the idle pause.
        assert!(
            took < Duration::from_millis(2500),
            "round {round}: sent after {took:?}"
        );
        assert_eq!(
            receipt.sub_sequence_number(),
            None,
            "a lone record goes unaggregated"
        );
        tokio::time::sleep(Duration::from_millis(100 * round)).await;
    }
    producer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn large_records_go_alone_and_small_ones_together() {
    let (direct, stream) = fresh_stream("large", 1).await;
    let cfg = buffered_for(Duration::from_millis(20)).aggregation_max_size(1_000);
    let producer = Producer::new(direct.clone(), &stream, cfg).await.unwrap();
    let mut sent = records(6, 2);
    sent[2].data.resize(5_000, b'#'); // larger than an aggregate may be
    let futures = put_all(&producer, &sent).await;
    producer.shutdown().await;
    let mut receipts = Vec::new();
    for f in futures {
        receipts.push(f.await.unwrap());
    }
    assert_eq!(
        receipts[2].sub_sequence_number(),
        None,
        "the large record went alone"
    );
    let aggregated: Vec<_> = receipts
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, r)| r)
        .collect();
    assert!(aggregated.iter().all(|r| r.sub_sequence_number().is_some()));
    assert!(
        aggregated
            .windows(2)
            .any(|w| w[0].sequence_number() == w[1].sequence_number())
    );
    let (got, _) = read_all(&direct, &stream).await;
    assert_eq!(check_against_receipts(&sent, &receipts, &got, &none_lost), 0);
}

/// Counts what the producer reports through the `metrics` facade.
mod recorder {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    #[derive(Default)]
    pub struct Counts(pub Mutex<HashMap<String, Arc<AtomicU64>>>);

    /// `Name@stream`, or `Name[code]@stream` for ErrorsByCode: other
    /// tests of this binary report to the same global recorder.
    pub fn name(key: &Key) -> String {
        let mut n = key.name().to_owned();
        let mut stream = String::new();
        for l in key.labels() {
            match l.key() {
                "code" => n.push_str(&format!("[{}]", l.value())),
                "stream" => stream = l.value().to_owned(),
                _ => {}
            }
        }
        format!("{n}@{stream}")
    }

    impl Counts {
        pub fn get(&self, name: &str) -> u64 {
            self.0
                .lock()
                .unwrap()
                .get(name)
                .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
        }
    }

    pub struct Rec(pub Arc<Counts>);

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let c = self.0.0.lock().unwrap().entry(name(key)).or_default().clone();
            Counter::from_arc(c)
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test producer -- --ignored"]
async fn metrics_are_reported_under_the_kpl_names() {
    let counts = std::sync::Arc::new(recorder::Counts::default());
    metrics::set_global_recorder(recorder::Rec(counts.clone())).expect("the only test that sets a recorder");
    let (_, stream) = fresh_stream("metrics", 2).await;
    let p = proxy::start(upstream(), proxy::Faults::with(|f| f.throttle_entries = 0.3), 9).await;
    let cfg = buffered_for(Duration::from_millis(20))
        .aggregation_max_size(2_000)
        .first_backoff(Duration::from_millis(5));
    let producer = Producer::new(client(&p.url()), &stream, cfg).await.unwrap();
    let sent = records(1_000, 20);
    let futures = put_all(&producer, &sent).await;
    producer.shutdown().await;
    let mut kinesis = std::collections::HashSet::new();
    for f in futures {
        kinesis.insert(f.await.unwrap().sequence_number().to_owned());
    }
    let get = |name: &str| counts.get(&format!("{name}@{stream}"));
    assert_eq!(get("UserRecordsReceived"), 1_000);
    assert_eq!(get("UserRecordsPut"), 1_000);
    assert_eq!(get("KinesisRecordsPut"), kinesis.len() as u64);
    let data: u64 = sent
        .iter()
        .map(|r| (r.data.len() + r.partition_key.len()) as u64)
        .sum();
    assert_eq!(get("UserRecordsDataPut"), data);
    let throttled = get("ErrorsByCode[ProvisionedThroughputExceededException]");
    assert_eq!(
        throttled,
        p.counters
            .rejected_entries
            .load(std::sync::atomic::Ordering::Relaxed) as u64
    );
    assert!(throttled > 0 && get("AllErrors") >= throttled);
}
