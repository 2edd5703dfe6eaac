//! `kinesis-agg put` and `tail` against a Kinesis API server (kinesalite),
//! directly and through the fault proxy; credentials from a profile;
//! Ctrl-C. Needs `KINESIS_ENDPOINT` and `-- --ignored`, as `tests/e2e.rs`.
#![cfg(feature = "cli")]

mod support;

use support::kinesis::{self, endpoint, new_stream, upstream};
use support::proxy;

fn client() -> aws_sdk_kinesis::Client {
    kinesis::client(&endpoint())
}

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use support::cli::{cli, cli_at_home, run, spawn_piped};

fn lines(b: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(b)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn create(name: &str, shards: i32) -> String {
    new_stream(&client(), &format!("cli-{name}"), shards).await
}

/// `n` JSON user lines over `keys` keys, numbered from `from`; the data
/// names the record.
fn input(from: usize, n: usize, keys: usize) -> String {
    let mut s = String::new();
    for i in from..from + n {
        let data = format!("record {i:07} of key-{:03} {}", i % keys, ".".repeat(i % 50));
        s.push_str(&format!(
            "{{\"partition_key\":\"key-{:03}\",\"data\":\"{}\"}}\n",
            i % keys,
            STANDARD.encode(data)
        ));
    }
    s
}

fn number(line: &Value) -> usize {
    let data = STANDARD.decode(line["data"].as_str().unwrap()).unwrap();
    std::str::from_utf8(&data[7..14]).unwrap().parse().unwrap()
}

/// Runs `put` (through `endpoint`) and returns its receipts, by record
/// number.
fn put(
    stream: &str,
    endpoint: &str,
    body: &str,
    first: usize,
    extra: &[&str],
) -> (Output, HashMap<usize, Value>) {
    let mut c = cli();
    c.args(["put", "--stream", stream, "--endpoint", endpoint, "--receipts"])
        .args(extra);
    let out = run(c, body.as_bytes());
    let receipts = lines(&out.stdout)
        .into_iter()
        .map(|r| (first + r["line"].as_u64().unwrap() as usize - 1, r))
        .collect();
    (out, receipts)
}

fn tail(stream: &str) -> Vec<Value> {
    let out = tail_via(stream, &endpoint(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    lines(&out.stdout)
}

/// Producer settings for many small aggregates sent soon.
const QUICK: [&str; 4] = ["--max-buffered-time", "20", "--aggregation-max-size", "8000"];

fn tail_via(stream: &str, endpoint: &str, extra: &[&str]) -> Output {
    let mut c = cli();
    c.args(["tail", "--stream", stream, "--endpoint", endpoint])
        .args(extra);
    run(c, b"")
}

/// Every receipt names a line tail printed: same shard, sequence number
/// and sub-sequence number, same record.
fn receipts_match(receipts: &HashMap<usize, Value>, read: &[Value]) {
    let mut at: HashMap<(String, String, Option<u64>), usize> = HashMap::new();
    for l in read {
        let key = (
            l["shard_id"].as_str().unwrap().to_owned(),
            l["sequence_number"].as_str().unwrap().to_owned(),
            l["sub_sequence_number"].as_u64(),
        );
        at.insert(key, number(l));
    }
    for (n, r) in receipts {
        assert!(r["error"].is_null(), "record {n} failed: {r}");
        let key = (
            r["shard_id"].as_str().unwrap().to_owned(),
            r["sequence_number"].as_str().unwrap().to_owned(),
            r["sub_sequence_number"].as_u64(),
        );
        assert_eq!(
            at.get(&key),
            Some(n),
            "record {n}: tail has {:?} where its receipt {r} points",
            at.get(&key)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test cli_stream -- --ignored"]
async fn put_then_tail_every_record_once_in_key_order_under_faults_and_a_split() {
    let stream = create("faults", 3).await;
    // Faults that lose no answer: every record must be in the stream once.
    // ListShards, which put calls first, fails too.
    let faults = proxy::Faults::with(|f| {
        (f.throttle_entries, f.call_500, f.call_throttled) = (0.2, 0.1, 0.1);
        (f.other_500, f.other_throttled) = (0.2, 0.2);
    });
    let p = proxy::start(upstream(), faults, 11).await;
    let fast = [&QUICK[..], &["--preserve-order"]].concat();
    let (out, mut receipts) = put(&stream, &p.url(), &input(0, 20_000, 300), 0, &fast);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("put 20000 of 20000 user records"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(receipts.len(), 20_000);
    let retried = receipts
        .values()
        .filter(|r| r["attempts"].as_array().unwrap().len() > 1)
        .count();
    assert!(retried > 0, "the faults made no retry");
    // A split between two runs: tail reads the parent before its children.
    let c = client();
    let shards =
        kinesis_agg::sdk::list_shard_map(&c, &stream, Duration::ZERO, Duration::from_secs(30), |_| {})
            .await
            .unwrap();
    let parent = shards.shards()[1].clone();
    kinesis::split_in_half(&c, &stream, &parent, false).await;
    let (out, more) = put(&stream, &p.url(), &input(20_000, 10_000, 300), 20_000, &fast);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    receipts.extend(more);

    assert!(p.counters.other_faults.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let read = tail(&stream);
    assert_eq!(read.len(), 30_000, "every record once");
    receipts_match(&receipts, &read);
    // The same read through faults on every call tail makes (ListShards,
    // GetShardIterator, GetRecords): answers refused, held past the
    // request timeout, lost with the connection. The same lines, each
    // once, and the retries counted on stderr.
    let faulty = proxy::Faults::with(|f| {
        (f.other_500, f.other_throttled, f.other_delay) = (0.15, 0.15, 0.05);
        (f.other_close, f.other_garble) = (0.1, 0.05);
        f.hold = Duration::from_millis(1500);
    });
    let fp = proxy::start(upstream(), faulty, 13).await;
    let out = tail_via(&stream, &fp.url(), &["--request-timeout", "500"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        lines(&out.stdout),
        read,
        "tail through faults read something else"
    );
    assert!(
        text(&out.stderr).contains("calls tried again"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        fp.counters
            .other_faults
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
    let mut last: HashMap<String, usize> = HashMap::new();
    for l in &read {
        let n = number(l);
        if let Some(prev) = last.insert(l["partition_key"].as_str().unwrap().to_owned(), n) {
            assert!(prev < n, "{}: record {n} after {prev}", l["partition_key"]);
        }
    }
    // Shards come out parents first.
    let order: Vec<&str> = read.iter().map(|l| l["shard_id"].as_str().unwrap()).collect();
    let first_child = order.iter().position(|s| *s > "shardId-000000000002").unwrap();
    assert!(
        !order[first_child..].contains(&parent.id.as_str()),
        "a child's records came before its parent's end"
    );

    // Faults that lose answers: duplicates, and only where an answer was
    // lost.
    let stream = create("lossy", 2).await;
    let faults = proxy::Faults::with(|f| {
        (f.delay, f.hold, f.close_after_forward) = (0.1, Duration::from_millis(2000), 0.1)
    });
    let p = proxy::start(upstream(), faults, 12).await;
    let lossy = [&QUICK[..], &["--request-timeout", "800"]].concat();
    let (out, receipts) = put(&stream, &p.url(), &input(0, 5_000, 50), 0, &lossy);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let read = tail(&stream);
    receipts_match(&receipts, &read);
    let mut copies: HashMap<usize, usize> = HashMap::new();
    for l in &read {
        *copies.entry(number(l)).or_default() += 1;
    }
    assert_eq!(copies.len(), 5_000, "a record is missing");
    for l in &read {
        let n = number(l);
        let named = receipts[&n]["sequence_number"] == l["sequence_number"];
        if !named {
            assert!(
                p.counters.was_lost(
                    l["shard_id"].as_str().unwrap(),
                    l["sequence_number"].as_str().unwrap()
                ),
                "record {n}: a copy no lost answer explains: {l}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test cli_stream -- --ignored"]
async fn credentials_and_region_come_from_a_profile_as_for_the_aws_cli() {
    let stream = create("profile", 1).await;
    let home = std::env::temp_dir().join(format!("kagg-home-{}", std::process::id()));
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(home.join(".aws/config"), "[profile tester]\nregion = us-east-1\n").unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        "[tester]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = from-the-profile\n",
    )
    .unwrap();
    let mut c = cli_at_home(&home);
    c.args([
        "put",
        "--stream",
        &stream,
        "--endpoint",
        &endpoint(),
        "--profile",
        "tester",
    ]);
    let out = run(c, input(0, 10, 2).as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // No region anywhere: refused, saying where to give one.
    let mut c = cli_at_home(&home);
    c.args(["put", "--stream", &stream, "--endpoint", &endpoint()]);
    let out = run(c, input(0, 1, 1).as_bytes());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--region"), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&home);
    assert_eq!(tail(&stream).len(), 10);
}

/// `put --receipts` started on `n` records, its input left open (a
/// producer still reading) until the returned writer is dropped.
fn spawn_put(stream: &str, endpoint: &str, n: usize) -> (Child, std::process::ChildStdin) {
    let mut c = cli();
    c.args(["put", "--stream", stream, "--endpoint", endpoint, "--receipts"]);
    let mut child = spawn_piped(c);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input(0, n, 10).as_bytes()).unwrap();
    stdin.flush().unwrap();
    (child, stdin)
}

fn interrupt(child: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test cli_stream -- --ignored"]
async fn ctrl_c_sends_what_was_read_and_a_second_one_abandons_the_rest() {
    let stream = create("interrupt", 1).await;
    // First Ctrl-C: input still open; what was read is sent, receipts printed.
    let (child, stdin) = spawn_put(&stream, &endpoint(), 500);
    std::thread::sleep(Duration::from_millis(1500));
    interrupt(&child);
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("put 500 of 500"),
        "{err}"
    );
    let receipts = lines(&out.stdout);
    assert_eq!(receipts.len(), 500);
    assert!(receipts.iter().all(|r| r["error"].is_null()));

    // A stalled stream: the first Ctrl-C waits for the answers, the second
    // abandons them and says how many.
    let stalled = proxy::start(
        upstream(),
        proxy::Faults::with(|f| (f.delay, f.hold) = (1.0, Duration::from_secs(120))),
        5,
    )
    .await;
    let (child, _stdin) = spawn_put(&stream, &stalled.url(), 200);
    std::thread::sleep(Duration::from_millis(1500));
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the second Ctrl-C did not stop it at once"
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("200 user records abandoned"), "{err}");
    let receipts = lines(&out.stdout);
    assert_eq!(receipts.len(), 200);
    assert!(receipts.iter().all(|r| !r["error"].is_null()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test cli_stream -- --ignored"]
async fn tail_follow_prints_records_as_they_come_and_stops_cleanly() {
    let stream = create("follow", 2).await;
    // From the start of the (empty) stream: no race with tail's start.
    // (kinesalite never answers GetRecords on an AT_TIMESTAMP iterator of
    // an empty shard, so the time form is tried below, on records.)
    let mut child = cli()
        .args(["tail", "--stream", &stream, "--endpoint", &endpoint(), "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let (out, _) = put(&stream, &endpoint(), &input(0, 100, 5), 0, &[]);
    assert_eq!(out.status.code(), Some(0));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 100 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            got.push(serde_json::from_str::<Value>(&l).unwrap());
        }
    }
    assert_eq!(got.len(), 100, "tail --follow printed {} of 100", got.len());
    interrupt(&child);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut numbers: Vec<usize> = got.iter().map(number).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..100).collect::<Vec<_>>());
    // --from a time before the records: all of them.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 120;
    let out = tail_via(&stream, &endpoint(), &["--from", &since.to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lines(&out.stdout).len(), 100);
    // --from latest: nothing already there.
    let out = tail_via(&stream, &endpoint(), &["--from", "latest"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    // --from a sequence number: that record and the rest of its shard.
    let first = &got[0];
    let seq = first["sequence_number"].as_str().unwrap();
    let mut c = cli();
    c.args([
        "tail",
        "--stream",
        &stream,
        "--endpoint",
        &endpoint(),
        "--from",
        seq,
    ]);
    let out = run(c, b"");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let from_seq = lines(&out.stdout);
    let same_shard: Vec<&Value> = got
        .iter()
        .filter(|l| l["shard_id"] == first["shard_id"])
        .collect();
    assert_eq!(from_seq.len(), same_shard.len());
    assert!(from_seq.iter().all(|l| l["shard_id"] == first["shard_id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test cli_stream -- --ignored"]
async fn a_record_that_fails_is_named_and_the_exit_status_is_1() {
    let stream = create("failing", 1).await;
    let big = STANDARD.encode([b'x'; 40]);
    let body = format!(
        "{}{{\"partition_key\":\"k\",\"data\":\"{big}\"}}\n{}",
        input(0, 1, 1),
        input(2, 1, 1)
    );
    let (out, receipts) = put(&stream, &endpoint(), &body, 0, &["--max-user-record-size", "30"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("put 2 of 3 user records") && err.contains("1 failed"),
        "{err}"
    );
    assert!(err.contains("line 2: invalid"), "{err}");
    assert!(receipts[&0]["error"].is_null() && receipts[&2]["error"].is_null());
    assert!(
        receipts[&1]["error"]
            .as_str()
            .unwrap()
            .contains("more than the 30"),
        "{}",
        receipts[&1]
    );
    assert!(receipts[&1]["shard_id"].is_null());
    // Input order, whatever the order of the answers.
    let order: Vec<u64> = lines(&out.stdout)
        .iter()
        .map(|r| r["line"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [1, 2, 3]);
    // A bad line stops the run: the lines before it are put first.
    let body = format!("{}not json\n{}", input(0, 2, 1), input(5, 1, 1));
    let (out, receipts) = put(&stream, &endpoint(), &body, 0, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("line 3: not a JSON user record"), "{err}");
    assert_eq!(receipts.len(), 2);
}
