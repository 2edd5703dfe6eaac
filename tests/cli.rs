//! End-to-end tests of the `kinesis-agg` binary (feature `cli`).
#![cfg(feature = "cli")]

use std::collections::HashMap;
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kinesis_agg::Record;
use serde_json::{Value, json};

mod support;

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kinesis-agg"));
    c.args(args);
    support::cli::run(c, stdin)
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/deagg/{name}.bin")).unwrap()
}

fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

/// `text` contains every one of `parts`.
#[track_caller]
fn assert_has(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} is not in:\n{text}");
    }
}

/// The names of a JSON object's fields, in order, separated by spaces.
fn field_names(v: &Value) -> String {
    let names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    names.join(" ")
}

/// One base64 line per blob.
fn b64_lines(blobs: &[&[u8]]) -> String {
    blobs.iter().map(|b| b64(b) + "\n").collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn deagg_prints_exactly_the_contract() {
    let input = format!(
        "{}\n\n{}\r\n   \n{}\n{}\n",
        b64(&fixture("real_aws_lambda_fanout_2_records")),
        b64(b"plain data"),
        b64(&fixture("missing_data")),
        b64(&fixture("py_mixed_keys")),
    );
    let out = run(&["deagg"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let got = lines(&out);
    let expected_first = json!({
        "record": 0, "aggregated": true, "sub_sequence_number": 0, "partition_key": "key-0",
        "explicit_hash_key": null, "data": b64(b"Testing KPL Aggregated Record 2-0"), "sequence_number": null,
        "tags": [],
    });
    assert_eq!(got[0], expected_first);
    assert_eq!(got[1]["partition_key"], "key-1");
    assert_eq!(got[1]["sub_sequence_number"], 1);
    assert_eq!(
        got[2],
        json!({
            "record": 1, "aggregated": false, "sub_sequence_number": null, "partition_key": null,
            "explicit_hash_key": null, "data": b64(b"plain data"), "sequence_number": null, "tags": [],
        })
    );
    // Record 2 is broken: nothing printed for it; record 3 follows.
    assert!(got[3..].iter().all(|l| l["record"] == 3));
    assert_eq!(got.len(), 3 + 6);
    assert_eq!(got[4]["explicit_hash_key"], "12345");
    for l in &got {
        assert_eq!(
            field_names(l),
            "aggregated data explicit_hash_key partition_key record sequence_number sub_sequence_number tags"
        );
    }
    let err = stderr(&out);
    assert_has(&err, &["record 2", "line 5", "byte 10"]);
    assert_has(&err, &["Record.data"]);
}

#[test]
fn deagg_passthrough_of_invalid_records_exits_0() {
    let broken = fixture("partition_key_index_outside_table");
    let out = run(
        &["deagg", "--on-invalid", "passthrough"],
        format!("{}\n", b64(&broken)).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    let got = lines(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["aggregated"], false);
    assert_eq!(got[0]["data"], b64(&broken));
    assert!(out.stderr.is_empty());
}

#[test]
fn deagg_raw_input_is_one_record() {
    let blob = fixture("py_utf8_keys");
    let out = run(&["deagg", "--input", "raw"], &blob);
    assert_eq!(out.status.code(), Some(0));
    let got = lines(&out);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|l| l["record"] == 0));
    assert_eq!(got[2]["partition_key"], "🔑 key");
    // Raw bytes that are not aggregated, newlines included, pass through whole.
    let out = run(&["deagg", "--input", "raw"], b"line one\nline two\n");
    assert_eq!(
        lines(&out),
        vec![
            json!({"record": 0, "aggregated": false, "sub_sequence_number": null,
        "partition_key": null, "explicit_hash_key": null, "data": b64(b"line one\nline two\n"),
        "sequence_number": null, "tags": []})
        ]
    );
    // Empty raw input is one empty plain record.
    let out = run(&["deagg", "--input", "raw"], b"");
    assert_eq!(lines(&out)[0]["data"], "");
}

#[test]
fn deagg_reads_a_file_argument() {
    let path = std::env::temp_dir().join(format!("kinesis-agg-cli-{}.txt", std::process::id()));
    std::fs::write(&path, format!("{}\n", b64(&fixture("py_empty_data")))).unwrap();
    let out = run(&["deagg", path.to_str().unwrap()], b"");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(lines(&out).len(), 2);
}

#[test]
fn deagg_unreadable_input_exits_2() {
    let good = b64(&fixture("py_empty_data"));
    let out = run(&["deagg"], format!("{good}\nnot*base64\n{good}\n").as_bytes());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(lines(&out).len(), 2, "lines before the bad one are printed");
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    let out = run(&["deagg", "/nonexistent/file"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent/file"));
    for args in [
        &["deagg", "--input", "xml"][..],
        &["deagg", "--on-invalid", "ignore"],
        &["frobnicate"],
        &[],
    ] {
        let out = run(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// `agg` input: one user line per record.
fn user_lines(records: &[(String, Option<String>, Vec<u8>)]) -> String {
    records
        .iter()
        .map(|(p, e, d)| user_line(p, e.as_deref(), d) + "\n")
        .collect()
}

fn user_line(pk: &str, ehk: Option<&str>, data: &[u8]) -> String {
    json!({"partition_key": pk, "explicit_hash_key": ehk, "data": b64(data)}).to_string()
}

#[test]
fn agg_output_contract_and_round_trip() {
    let input = [
        user_line("a", None, b"one"),
        user_line("b", Some("42"), b"two"),
        // explicit_hash_key may be absent.
        json!({"partition_key": "a", "data": b64(b"three")}).to_string(),
    ]
    .join("\n");
    let out = run(&["agg"], input.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let got = lines(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(
        field_names(&got[0]),
        "data explicit_hash_key partition_key user_records"
    );
    assert_eq!(got[0]["partition_key"], "a");
    assert_eq!(got[0]["explicit_hash_key"], Value::Null);
    assert_eq!(got[0]["user_records"], 3);
    let back = run(
        &["deagg"],
        format!("{}\n", got[0]["data"].as_str().unwrap()).as_bytes(),
    );
    let recs = lines(&back);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[1]["explicit_hash_key"], "42");
    assert_eq!(recs[2]["data"], b64(b"three"));
    // Outer EHK is the first record's.
    let out = run(&["agg"], user_line("x", Some("7"), b"d").as_bytes());
    assert_eq!(lines(&out)[0]["explicit_hash_key"], "7");
}

/// `deagg | agg` on every aggregated fixture: the same user records, tags
/// included, and byte for byte the same aggregate where the fixture was
/// written canonically (real KPL output, the Python encoder's, the tagged
/// record).
#[test]
fn deagg_then_agg_rebuilds_every_aggregated_fixture() {
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/deagg/manifest.json").unwrap())
            .unwrap();
    let (mut identical, mut same_records, mut tagged) = (0, 0, 0);
    for case in manifest.iter().filter(|c| c["expect"] == "aggregated") {
        let name = case["name"].as_str().unwrap();
        let blob = fixture(name);
        let users = run(&["deagg"], format!("{}\n", b64(&blob)).as_bytes());
        assert_eq!(users.status.code(), Some(0), "{name}");
        let records = lines(&users);
        if records.is_empty() {
            continue;
        }
        tagged += usize::from(records.iter().any(|r| !r["tags"].as_array().unwrap().is_empty()));
        let limit = (blob.len() + 1024).max(kinesis_agg::DEFAULT_LIMIT).to_string();
        let out = run(&["agg", "--max-size", &limit], &users.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let got = lines(&out);
        assert_eq!(got.len(), 1, "{name}");
        let canonical =
            name.starts_with("real_") || name.starts_with("py_") || name == "tags_with_and_without_values";
        if canonical {
            assert_eq!(got[0]["data"], b64(&blob), "{name}");
            identical += 1;
        }
        // Read back: the same lines as the fixture gave.
        let again = run(
            &["deagg"],
            format!("{}\n", got[0]["data"].as_str().unwrap()).as_bytes(),
        );
        assert_eq!(lines(&again), records, "{name}");
        same_records += 1;
    }
    assert!(
        identical >= 10 && same_records >= identical + 4,
        "{identical} {same_records}"
    );
    assert!(tagged >= 2, "{tagged}");
}

#[test]
fn agg_reads_tags_and_rejects_malformed_ones() {
    let line = json!({"partition_key": "k", "data": b64(b"d"),
        "tags": [{"key": "unit", "value": "C"}, {"key": "flag", "value": null}]})
    .to_string();
    let out = run(&["agg"], format!("{line}\n").as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let agg = lines(&out)[0]["data"].as_str().unwrap().to_owned();
    let users = lines(&run(&["deagg"], format!("{agg}\n").as_bytes()));
    assert_eq!(
        users[0]["tags"],
        json!([{"key": "unit", "value": "C"}, {"key": "flag", "value": null}])
    );
    let bad = json!({"partition_key": "k", "data": "", "tags": [{"value": "no key"}]}).to_string();
    let out = run(&["agg"], format!("{bad}\n").as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("line 1") && stderr(&out).contains("key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn agg_splits_greedily_exactly_and_losslessly_at_small_limits() {
    let records: Vec<(String, Option<String>, Vec<u8>)> = (0..300u32)
        .map(|i| {
            let ehk = (i % 7 == 0).then(|| (u128::from(i) * 1_000_003).to_string());
            (
                format!("key-{}", i % 13),
                ehk,
                vec![i as u8; (i as usize * 37) % 120],
            )
        })
        .collect();
    let input = user_lines(&records);
    for limit in [200usize, 257, 1000, 4096] {
        let out = run(&["agg", "--max-size", &limit.to_string()], input.as_bytes());
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let aggs = lines(&out);
        let mut next = 0;
        for (i, a) in aggs.iter().enumerate() {
            let blob = STANDARD.decode(a["data"].as_str().unwrap()).unwrap();
            let pk = a["partition_key"].as_str().unwrap();
            assert!(blob.len() + pk.len() <= limit, "limit {limit}");
            let n = a["user_records"].as_u64().unwrap() as usize;
            // Rebuild the same run with the library: identical bytes.
            let mut agg = kinesis_agg::RecordAggregator::with_limit(limit).unwrap();
            for (p, e, d) in &records[next..next + n] {
                agg.try_add(kinesis_agg::Record::new(p, d).with_optional_explicit_hash_key(e.as_deref()))
                    .unwrap();
            }
            // Greedy: the next record would not have fitted.
            if i + 1 < aggs.len() {
                let (p, e, d) = &records[next + n];
                let with = agg
                    .encoded_len_with(
                        &kinesis_agg::Record::new(p, d).with_optional_explicit_hash_key(e.as_deref()),
                    )
                    .unwrap();
                assert!(
                    with + pk.len() > limit,
                    "limit {limit}: aggregate {i} closed early"
                );
            }
            assert_eq!(agg.finish().unwrap().data(), &blob[..]);
            next += n;
        }
        assert_eq!(next, records.len(), "limit {limit}: records lost");
    }
}

#[test]
fn agg_bad_line_writes_earlier_aggregates_then_exits_1() {
    let big = vec![0u8; 200];
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "not a JSON user record"),
        (json!({"data": "AA=="}).to_string(), "partition_key is missing"),
        (json!({"partition_key": "k"}).to_string(), "data is missing"),
        (json!({"partition_key": "k", "data": "%%%"}).to_string(), "base64"),
        (
            json!({"partition_key": "", "data": ""}).to_string(),
            "partition key",
        ),
        (
            json!({"partition_key": "k".repeat(257), "data": ""}).to_string(),
            "partition key",
        ),
        (
            json!({"partition_key": "k", "explicit_hash_key": "-1", "data": ""}).to_string(),
            "explicit_hash_key: hash key must be",
        ),
        (user_line("k", None, &big), "too large"),
    ];
    for (bad, reason) in cases {
        let input = format!(
            "{}\n{}\n\n{bad}\n{}\n",
            user_line("a", None, b"1"),
            user_line("b", None, b"2"),
            user_line("c", None, b"3")
        );
        let out = run(&["agg", "--max-size", "150"], input.as_bytes());
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let got = lines(&out);
        assert_eq!(
            got.iter()
                .map(|a| a["user_records"].as_u64().unwrap())
                .sum::<u64>(),
            2,
            "{bad}"
        );
        let err = stderr(&out);
        assert!(err.contains("line 4") && err.contains(reason), "{bad}: {err}");
    }
    for limit in ["29", "10485761", "abc"] {
        assert_eq!(run(&["agg", "--max-size", limit], b"").status.code(), Some(2));
    }
}

#[test]
fn every_subcommand_help_has_an_example() {
    for cmd in ["deagg", "agg", "inspect"] {
        let out = run(&[cmd, "--help"], b"");
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        // The usage line names the command too: look only after the
        // examples' heading, at a command line of the example itself.
        let (_, examples) = text.split_once("\nExample").unwrap_or_else(|| panic!("{text}"));
        let call = format!("kinesis-agg {cmd}");
        assert!(
            examples
                .lines()
                .any(|l| l.trim_start().starts_with(&call) || l.contains(&format!("| {call}"))),
            "{text}"
        );
    }
}

fn list_shards(ranges: &[(u128, u128)], closed: bool) -> String {
    let mut shards: Vec<Value> = ranges
        .iter()
        .enumerate()
        .map(|(i, (s, e))| {
            json!({"ShardId": format!("shardId-{i:012}"),
                   "HashKeyRange": {"StartingHashKey": s.to_string(), "EndingHashKey": e.to_string()},
                   "SequenceNumberRange": {"StartingSequenceNumber": "1"}})
        })
        .collect();
    if closed {
        shards.push(json!({"ShardId": "shardId-closed",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": u128::MAX.to_string()},
            "SequenceNumberRange": {"StartingSequenceNumber": "0", "EndingSequenceNumber": "1"}}));
    }
    json!({"Shards": shards}).to_string()
}

#[test]
fn agg_with_shards_then_deagg_with_each_shard_range_loses_nothing() {
    let q = u128::MAX / 4;
    let ranges = [
        (0, q),
        (q + 1, 2 * q),
        (2 * q + 1, 2 * q + 5),
        (2 * q + 6, u128::MAX),
    ];
    let path = std::env::temp_dir().join(format!("kinesis-agg-shards-{}.json", std::process::id()));
    std::fs::write(&path, list_shards(&ranges, true)).unwrap();
    let records: Vec<(String, Option<String>, Vec<u8>)> = (0..400u32)
        .map(|i| {
            let ehk = match i % 9 {
                0 => Some((2 * q + 3).to_string()),
                1 => Some(u128::from(i).to_string()),
                _ => None,
            };
            (
                format!("device-{}", i % 37),
                ehk,
                vec![i as u8; (i as usize * 13) % 90],
            )
        })
        .collect();
    let input = user_lines(&records);
    let out = run(
        &["agg", "--max-size", "1500", "--shards", path.to_str().unwrap()],
        input.as_bytes(),
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let aggs = lines(&out);
    assert!(aggs.len() >= 4);
    let mut got = Vec::new();
    for a in &aggs {
        assert_eq!(
            field_names(a),
            "data explicit_hash_key partition_key shard_id user_records"
        );
        let id = a["shard_id"].as_str().unwrap();
        assert_ne!(id, "shardId-closed");
        let i: usize = id.trim_start_matches("shardId-").parse().unwrap();
        let (s, e) = ranges[i];
        let ehk: u128 = a["explicit_hash_key"].as_str().unwrap().parse().unwrap();
        assert!(s <= ehk && ehk <= e);
        let range = format!("{s}:{e}");
        let back = run(
            &["deagg", "--shard-range", &range],
            format!("{}\n", a["data"].as_str().unwrap()).as_bytes(),
        );
        assert_eq!(back.status.code(), Some(0), "{}", stderr(&back));
        let recs = lines(&back);
        assert_eq!(recs.len() as u64, a["user_records"].as_u64().unwrap());
        got.extend(recs);
    }
    // Every record exactly once; the records of each (partition key,
    // explicit hash key) in order.
    let mut want: HashMap<(String, Option<String>), Vec<String>> = HashMap::new();
    for (p, e, d) in &records {
        want.entry((p.clone(), e.clone())).or_default().push(b64(d));
    }
    let mut have: HashMap<(String, Option<String>), Vec<String>> = HashMap::new();
    for r in &got {
        let key = (
            r["partition_key"].as_str().unwrap().to_owned(),
            r["explicit_hash_key"].as_str().map(str::to_owned),
        );
        have.entry(key)
            .or_default()
            .push(r["data"].as_str().unwrap().to_owned());
    }
    assert_eq!(got.len(), records.len());
    assert!(have == want, "records lost, duplicated or reordered");
}

#[test]
fn deagg_shard_range_applies_the_kcl_rule_or_keeps_in_range_records() {
    let mixed = {
        let mut agg = kinesis_agg::RecordAggregator::new();
        agg.add(Record::new("a", b"in").with_explicit_hash_key("10"))
            .unwrap();
        agg.add(Record::new("b", b"out").with_explicit_hash_key("1000"))
            .unwrap();
        agg.add(Record::new("c", b"in too").with_explicit_hash_key("20"))
            .unwrap();
        agg.finish().unwrap().into_data()
    };
    let input = b64_lines(&[&mixed, b"plain"]);
    let out = run(&["deagg", "--shard-range", "0:100"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let got = lines(&out);
    assert_eq!(got.len(), 1, "only the plain record");
    assert_eq!(got[0]["aggregated"], false);
    let err = stderr(&out);
    assert_has(&err, &["record 0", "discarded", "1000"]);
    let out = run(
        &["deagg", "--shard-range", "0:100", "--lenient"],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    let got = lines(&out);
    assert_eq!(got.iter().filter(|l| l["aggregated"] == true).count(), 2);
    assert_eq!(got[1]["sub_sequence_number"], 2);
    assert!(stderr(&out).contains("1 outside"), "{}", stderr(&out));
    // Bounds are inclusive.
    let out = run(&["deagg", "--shard-range", "10:1000"], input.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    for bad in [
        &["deagg", "--shard-range", "5"][..],
        &["deagg", "--shard-range", "9:1"],
        &["deagg", "--lenient"],
    ] {
        assert_eq!(run(bad, b"").status.code(), Some(2), "{bad:?}");
    }
}

fn event(name: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/events/{name}.json")).unwrap()
}

/// The blobs an event carries, in order, with outer partition keys and
/// sequence numbers.
fn event_blobs(doc: &Value) -> Vec<(String, Option<String>, Option<String>)> {
    let (list, data, pk, seq): (&str, &[&str], &[&str], &[&str]) = if doc.get("records").is_some() {
        (
            "records",
            &["data"],
            &["kinesisRecordMetadata", "partitionKey"],
            &["kinesisRecordMetadata", "sequenceNumber"],
        )
    } else if doc["Records"][0].get("kinesis").is_some() {
        (
            "Records",
            &["kinesis", "data"],
            &["kinesis", "partitionKey"],
            &["kinesis", "sequenceNumber"],
        )
    } else {
        ("Records", &["Data"], &["PartitionKey"], &["SequenceNumber"])
    };
    let get = |v: &Value, path: &[&str]| {
        path.iter()
            .fold(v.clone(), |v, k| v[k].clone())
            .as_str()
            .map(str::to_owned)
    };
    doc[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (get(r, data).unwrap(), get(r, pk), get(r, seq)))
        .collect()
}

#[test]
fn every_input_shape_gives_the_records_of_base64_input_plus_metadata() {
    for (name, shape) in [
        ("lambda_kinesis", "lambda"),
        ("firehose_kinesis", "firehose"),
        ("get_records", "get-records"),
        ("lambda_fanout_mixed", "lambda"),
    ] {
        let doc: Value = serde_json::from_slice(&event(name)).unwrap();
        let blobs = event_blobs(&doc);
        let b64_input: String = blobs.iter().map(|(d, _, _)| format!("{d}\n")).collect();
        let plain = run(&["deagg", "--on-invalid", "passthrough"], b64_input.as_bytes());
        let want = lines(&plain);
        for input in [shape, "json"] {
            let out = run(
                &["deagg", "--on-invalid", "passthrough", "--input", input],
                &event(name),
            );
            assert_eq!(out.status.code(), Some(0), "{name} {input}: {}", stderr(&out));
            let got = lines(&out);
            assert_eq!(got.len(), want.len(), "{name} {input}");
            for (g, w) in got.iter().zip(&want) {
                let i = g["record"].as_u64().unwrap() as usize;
                let (_, outer_pk, seq) = &blobs[i];
                for key in [
                    "record",
                    "aggregated",
                    "sub_sequence_number",
                    "explicit_hash_key",
                    "data",
                ] {
                    assert_eq!(g[key], w[key], "{name} {input}: {key}");
                }
                assert_eq!(g["sequence_number"].as_str(), seq.as_deref(), "{name}");
                assert_eq!(w["sequence_number"], Value::Null);
                if g["aggregated"] == true {
                    assert_eq!(g["partition_key"], w["partition_key"]);
                } else {
                    // A pass-through carries the outer record's own key.
                    assert_eq!(g["partition_key"].as_str(), outer_pk.as_deref(), "{name}");
                }
            }
        }
    }
}

/// A JSON input file (read whole before parsing) gives what the same bytes
/// streamed on standard input give: the same lines, errors and status, for
/// every event shape, several documents one after another, and a document
/// broken part way.
#[test]
fn a_json_file_reads_as_the_same_bytes_on_standard_input() {
    let all: Vec<u8> = [
        "lambda_kinesis",
        "firehose_kinesis",
        "get_records",
        "lambda_fanout_mixed",
    ]
    .iter()
    .flat_map(|name| event(name))
    .collect();
    let mut cut = event("lambda_kinesis");
    cut.truncate(cut.len() * 2 / 3);
    let dir = std::env::temp_dir().join(format!("kinesis-agg-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in [("lambda", event("lambda_kinesis")), ("all", all), ("cut", cut)] {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, &bytes).unwrap();
        let from_file = run(
            &[
                "deagg",
                "--on-invalid",
                "passthrough",
                "--input",
                "json",
                path.to_str().unwrap(),
            ],
            b"",
        );
        let from_stdin = run(
            &["deagg", "--on-invalid", "passthrough", "--input", "json"],
            &bytes,
        );
        assert_eq!(from_file.status.code(), from_stdin.status.code(), "{name}");
        assert_eq!(from_file.stdout, from_stdin.stdout, "{name}");
        assert_eq!(stderr(&from_file), stderr(&from_stdin), "{name}");
        assert!(!from_file.stdout.is_empty(), "{name}");
    }
    assert_ne!(
        run(
            &["deagg", "--input", "json", dir.join("cut.json").to_str().unwrap()],
            b""
        )
        .status
        .code(),
        Some(0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn json_inputs_report_broken_records_by_sequence_number() {
    let out = run(&["deagg", "--input", "lambda"], &event("lambda_kinesis"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_has(
        &err,
        &[
            "record 3",
            "49590338271490256608559692538361571095921575989136588901",
        ],
    );
    assert!(lines(&out).iter().all(|l| l["record"] != 3));
    // Several documents in one input, and the wrong shape.
    let two = [event("get_records"), event("get_records")].concat();
    let out = run(
        &["deagg", "--input", "get-records", "--on-invalid", "passthrough"],
        &two,
    );
    let got = lines(&out);
    assert_eq!(got.last().unwrap()["record"], 9);
    let out = run(&["deagg", "--input", "firehose"], &event("get_records"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("document 1"), "{}", stderr(&out));
    let out = run(
        &["deagg", "--input", "json"],
        br#"{"Records": [{"kinesis": {"data": "!!", "sequenceNumber": "5"}}]}"#,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("base64"));
    let out = run(&["deagg", "--input", "json"], b"{\"Something\": 1}");
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["deagg", "--input", "lambda"], b"{ not json");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn put_records_requests_respect_both_limits_and_pack_greedily() {
    // 1,001 aggregates of one record each: 500, 500, 1 entries.
    let input: String = (0..1001)
        .map(|i| user_line(&format!("k{i}"), None, &[7u8; 10]) + "\n")
        .collect();
    let out = run(
        &[
            "agg",
            "--max-size",
            "60",
            "--output",
            "put-records",
            "--stream-name",
            "s1",
        ],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = lines(&out);
    let counts: Vec<usize> = reqs
        .iter()
        .map(|r| r["Records"].as_array().unwrap().len())
        .collect();
    assert_eq!(counts, [500, 500, 1]);
    assert_eq!(reqs[0]["StreamName"], "s1");
    let first = &reqs[0]["Records"][0];
    assert_eq!(field_names(first), "Data PartitionKey");
    // Near-1 MiB aggregates: at most 5 MiB of data plus keys per request.
    let big = vec![1u8; 1_000_000];
    let input: String = (0..11)
        .map(|i| user_line(&format!("key-{i}"), Some("42"), &big) + "\n")
        .collect();
    let out = run(
        &["agg", "--output", "put-records", "--stream-name", "s2"],
        input.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = lines(&out);
    let mut total = 0;
    for (i, r) in reqs.iter().enumerate() {
        let entries = r["Records"].as_array().unwrap();
        let size = |e: &Value| {
            STANDARD.decode(e["Data"].as_str().unwrap()).unwrap().len()
                + e["PartitionKey"].as_str().unwrap().len()
        };
        let bytes: usize = entries.iter().map(size).sum();
        assert!(bytes <= 5 * 1024 * 1024, "request {i}: {bytes}");
        assert_eq!(entries[0]["ExplicitHashKey"], "42");
        if let Some(next) = reqs.get(i + 1) {
            assert!(
                bytes + size(&next["Records"][0]) > 5 * 1024 * 1024,
                "request {i} closed early"
            );
        }
        total += entries.len();
    }
    assert_eq!(total, 11);
    assert_eq!(reqs.len(), 3);
    // The stream name is required.
    assert_eq!(
        run(&["agg", "--output", "put-records"], b"").status.code(),
        Some(2)
    );
}

#[test]
fn inspect_describes_every_record() {
    let input = b64_lines(&[
        &fixture("py_mixed_keys"),
        b"plain",
        &fixture("wrong_checksum"),
        &fixture("missing_data"),
    ]);
    let out = run(&["inspect"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_has(&text, &["record 0 (line 1): aggregated"]);
    assert_has(&text, &["4 partition keys, 3 explicit hash keys; 6 user records"]);
    assert_has(&text, &["smallest 3, largest 5, total 22 bytes"]);
    assert_has(&text, &["record 1 (line 2): not aggregated, 5 bytes: no magic"]);
    assert_has(&text, &["record 2 (line 3): not aggregated", "checksum mismatch"]);
    assert_has(&text, &["record 3 (line 4): BROKEN", "byte 10"]);
    let out = run(&["inspect", "--json"], input.as_bytes());
    let got = lines(&out);
    assert_eq!(got[0]["user_records"], 6);
    assert_eq!(got[0]["overhead"], got[0]["length"].as_u64().unwrap() - 22);
    assert_eq!(got[1]["reason"], "no magic");
    assert_eq!(got[2]["checksum"], "mismatch");
    assert_eq!(got[3]["error_offset"], 10);
    assert_eq!(got[3]["aggregated"], false);
    let out = run(
        &["inspect", "--input", "lambda", "--json"],
        &event("lambda_kinesis"),
    );
    assert_eq!(
        lines(&out)[0]["sequence_number"],
        "49590338271490256608559692538361571095921575989136588898"
    );
}

#[test]
fn json_documents_are_read_one_record_at_a_time() {
    // A get-records document cut off after two records: both are printed
    // before the error is reported (a reader that parses whole documents
    // prints nothing).
    let rec =
        |seq: &str| json!({"SequenceNumber": seq, "PartitionKey": "k", "Data": b64(b"plain")}).to_string();
    let doc = format!("{{\"Records\": [{}, {}, {{\"Data\": ", rec("1"), rec("2"));
    let out = run(&["deagg", "--input", "get-records"], doc.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    let got = lines(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (
            got[0]["sequence_number"].as_str(),
            got[1]["sequence_number"].as_str()
        ),
        (Some("1"), Some("2"))
    );
    assert!(stderr(&out).contains("document 1"), "{}", stderr(&out));
    // Keys other than the record list are skipped, wherever they are.
    let doc = format!(
        "{{\"NextShardIterator\": \"x\", \"Records\": [{}], \"MillisBehindLatest\": 0}}\n{{\"Records\": []}}",
        rec("3")
    );
    let out = run(&["deagg", "--input", "json"], doc.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(lines(&out).len(), 1);
    // A document of another shape names what it lacks.
    let out = run(&["deagg", "--input", "lambda"], b"{\"records\": []}");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs \"Records\""), "{}", stderr(&out));
}

#[test]
fn inputs_longer_than_the_largest_record_needs_are_refused() {
    // Raw: at most 10 MiB, the largest Kinesis record.
    let big = vec![b'x'; kinesis_agg::MAX_LIMIT + 1];
    let out = run(&["deagg", "--input", "raw"], &big);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("longer than 10485760 bytes"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
    let ok = vec![b'x'; kinesis_agg::MAX_LIMIT];
    let out = run(&["deagg", "--input", "raw"], &ok);
    assert_eq!(out.status.code(), Some(0));
    // Base64: a line longer than a 10 MiB record's base64, after a good line.
    let input = format!("{}\n{}\n", b64(b"first"), "A".repeat(14_000_000));
    let out = run(&["deagg"], input.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(lines(&out).len(), 1);
    assert!(stderr(&out).contains("line 2 is longer than"), "{}", stderr(&out));
    // agg: a bad line like any other (exit 1); the aggregates before it
    // are written.
    let input = format!("{}\n{}\n", user_line("k", None, b"1"), "A".repeat(16_000_000));
    let out = run(&["agg"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(lines(&out).len(), 1);
    assert!(stderr(&out).contains("line 2 is longer than"), "{}", stderr(&out));
}

/// What AWS CLI v1 stores for an `agg --output put-records` entry: the
/// base64 text of the aggregate as the record's data. `deagg` and
/// `inspect` say so and how to recover the user records; the recovery
/// they describe gives every user record back.
#[test]
fn base64_text_of_an_aggregate_is_recognised_and_recoverable() {
    let aggregate = fixture("py_mixed_keys");
    let stored = b64(&aggregate); // the record's data: the text itself
    let input = b64_lines(&[stored.as_bytes(), b"84mawg plain", b"plain"]);
    let out = run(&["deagg"], input.as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert_has(
        &err,
        &[
            "record 0 (line 1): not aggregated: its data is the base64 text of an aggregated record of 6 user records",
        ],
    );
    assert_has(&err, &["AWS CLI v1", "base64 -d"]);
    // Only that record: text that merely starts like one is not named.
    assert_eq!(err.matches("base64 text").count(), 1, "{err}");
    // The record itself is printed unchanged, as any plain record.
    let got = lines(&out);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0]["aggregated"], false);
    assert_eq!(got[0]["data"], b64(stored.as_bytes()));
    // The recovery: decode the data once more, deaggregate that.
    let once_more = STANDARD.decode(got[0]["data"].as_str().unwrap()).unwrap();
    let recovered = run(&["deagg"], &[&once_more[..], b"\n"].concat());
    let direct = run(&["deagg"], format!("{}\n", b64(&aggregate)).as_bytes());
    assert_eq!(lines(&recovered), lines(&direct));
    assert_eq!(lines(&recovered).len(), 6);

    let out = run(&["inspect"], input.as_bytes());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_has(&text, &["record 0 (line 1): not aggregated"]);
    assert_has(&text, &["base64 text of an aggregated record of 6 user records"]);
    assert_eq!(text.matches("base64 text").count(), 1, "{text}");
    let out = run(&["inspect", "--json"], input.as_bytes());
    let got = lines(&out);
    assert_eq!(got[0]["base64_text_of_aggregate"], 6);
    assert_eq!(got[1]["base64_text_of_aggregate"], Value::Null);
    assert_eq!(got[2]["base64_text_of_aggregate"], Value::Null);
}

#[test]
fn agg_help_says_which_aws_cli_the_documents_are_for() {
    let out = run(&["agg", "--help"], b"");
    let help = String::from_utf8(out.stdout).unwrap();
    assert_has(&help, &["AWS CLI v2", "AWS CLI v1"]);
    assert_has(&help, &["base64 text", "kinesis-agg put"]);
}

/// The value `--help` shows as a flag's default.
fn help_default(help: &str, flag: &str) -> String {
    let at = help
        .find(&format!("{flag} "))
        .unwrap_or_else(|| panic!("{flag} in {help}"));
    let rest = &help[at..];
    let start = rest
        .find("[default: ")
        .unwrap_or_else(|| panic!("no default for {flag}"))
        + 10;
    rest[start..start + rest[start..].find(']').unwrap()].to_owned()
}

/// `put` shows, and so uses, the library's defaults: a default changed in
/// `ProducerConfig` reaches the command line.
#[test]
fn put_takes_its_defaults_from_the_library() {
    let out = run(&["put", "--help"], b"");
    let help = String::from_utf8(out.stdout).unwrap();
    let cfg = kinesis_agg::producer::ProducerConfig::default();
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    for (flag, want) in [
        ("--max-buffered-time", ms(cfg.record_max_buffered_time)),
        ("--aggregation-max-size", cfg.aggregation_max_size.to_string()),
        ("--record-ttl", ms(cfg.record_ttl)),
        ("--request-timeout", ms(cfg.request_timeout)),
        ("--rate-limit", cfg.rate_limit.to_string()),
        ("--max-concurrency", cfg.max_concurrency.to_string()),
        ("--max-user-record-size", cfg.max_user_record_size.to_string()),
    ] {
        assert_eq!(help_default(&help, flag), want, "{flag}");
    }
}

/// `--max-user-record-size` counts data alone, from 1 byte to 10 MiB: a
/// value below an aggregate's smallest limit is a record size all the same.
#[test]
fn put_max_user_record_size_has_its_own_range() {
    // Nothing listens at the endpoint: a short TTL makes it give up soon.
    let base = [
        "put",
        "--stream",
        "s",
        "--region",
        "us-east-1",
        "--endpoint",
        "http://127.0.0.1:9",
        "--record-ttl",
        "1",
    ];
    for bad in ["0", "10485761", "x"] {
        let out = run(&[&base[..], &["--max-user-record-size", bad]].concat(), b"");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            stderr(&out).contains("--max-user-record-size"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    for fine in ["1", "10", "10485760"] {
        let out = run(&[&base[..], &["--max-user-record-size", fine]].concat(), b"");
        // Past the flags: it fails at the stream (nothing listens there).
        assert!(
            !stderr(&out).contains("invalid value"),
            "{fine}: {}",
            stderr(&out)
        );
    }
}

/// Every fixture three times over (more records than one batch holds):
/// deaggregated in one run (records read in batches, their checksums
/// verified together) as each record alone, under both policies and the
/// KCL rule.
#[test]
fn deagg_in_batches_prints_what_each_record_alone_prints() {
    let mut blobs: Vec<Vec<u8>> = std::fs::read_dir("tests/fixtures/deagg")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    blobs.sort();
    let blobs: Vec<&[u8]> = blobs
        .iter()
        .chain(&blobs)
        .chain(&blobs)
        .map(Vec::as_slice)
        .collect();
    assert!(blobs.len() > 150);
    let without_index = |mut v: Value| {
        v.as_object_mut().unwrap().remove("record");
        v
    };
    for args in [
        &["deagg"][..],
        &["deagg", "--on-invalid", "passthrough"],
        &[
            "deagg",
            "--shard-range",
            "0:170141183460469231731687303715884105727",
        ],
        &[
            "deagg",
            "--shard-range",
            "0:170141183460469231731687303715884105727",
            "--lenient",
        ],
    ] {
        let all = run(args, b64_lines(&blobs).as_bytes());
        let (mut alone, mut status) = (Vec::new(), 0);
        let mut complaints = 0;
        for b in &blobs {
            let one = run(args, b64_lines(&[b]).as_bytes());
            status = status.max(one.status.code().unwrap());
            complaints += stderr(&one).lines().count();
            alone.extend(lines(&one).into_iter().map(without_index));
        }
        let together: Vec<Value> = lines(&all).into_iter().map(without_index).collect();
        assert_eq!(together, alone, "{args:?}");
        assert_eq!(all.status.code(), Some(status), "{args:?}");
        assert_eq!(stderr(&all).lines().count(), complaints, "{args:?}");
    }
}
