//! What the producer and proxy benchmarks share: an evenly split shard
//! map, an endpoint's answers to ListShards and PutRecords (every record
//! put, on the shard its hash key routes to), and a process's CPU time and
//! memory from `/proc` (0 where there is none).
#![allow(dead_code)] // each benchmark uses its part

use std::sync::atomic::{AtomicU64, Ordering};

use kinesis_agg::{HashKeyRange, Shard, ShardMap};
use serde::Deserialize;

/// `shards` shards splitting the hash key space evenly, the last one
/// taking the remainder.
pub fn map(shards: u32) -> ShardMap {
    let width = u128::MAX / u128::from(shards);
    ShardMap::new((0..shards).map(|i| {
        let end = if i + 1 == shards {
            u128::MAX
        } else {
            u128::from(i + 1) * width - 1
        };
        Shard {
            id: format!("shardId-{i:012}"),
            range: HashKeyRange::new(u128::from(i) * width, end).unwrap(),
        }
    }))
    .unwrap()
}

/// A PutRecords entry's keys.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "PartitionKey")]
    partition_key: String,
    #[serde(rename = "ExplicitHashKey")]
    explicit_hash_key: Option<String>,
}

/// A PutRecords request's entries.
#[derive(Deserialize)]
struct Put {
    #[serde(rename = "Records")]
    records: Vec<Entry>,
}

/// ListShards' answer: the map's shards.
pub fn list_shards_answer(map: &ShardMap) -> String {
    let shards: Vec<String> = map
        .shards()
        .iter()
        .map(|s| {
            format!(
                r#"{{"ShardId":"{}","HashKeyRange":{{"StartingHashKey":"{}","EndingHashKey":"{}"}},"SequenceNumberRange":{{"StartingSequenceNumber":"1"}}}}"#,
                s.id, s.range.start, s.range.end
            )
        })
        .collect();
    format!(r#"{{"Shards":[{}]}}"#, shards.join(","))
}

/// PutRecords' answer to `body`: every entry put on its shard, with the
/// next numbers of `seq`; and how many entries the call had.
pub fn put_records_answer(map: &ShardMap, body: &[u8], seq: &AtomicU64) -> (String, usize) {
    let put: Put = serde_json::from_slice(body).expect("a PutRecords request");
    let mut out = String::with_capacity(put.records.len() * 100 + 64);
    out.push_str(r#"{"FailedRecordCount":0,"Records":["#);
    for (i, e) in put.records.iter().enumerate() {
        let key = kinesis_agg::effective_hash_key(&e.partition_key, e.explicit_hash_key.as_deref()).unwrap();
        let shard = &map.route(key).unwrap().id;
        let seq = seq.fetch_add(1, Ordering::Relaxed);
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"SequenceNumber":"{seq:056}","ShardId":"{shard}"}}"#
        ));
    }
    out.push_str("]}");
    (out, put.records.len())
}

/// (user, system) CPU seconds of process `pid` ("self" for this one).
pub fn cpu(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let v = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (v(11), v(12))
}

/// A size line of `/proc/PID/status` (`VmRSS:`, `VmHWM:`) in MiB.
pub fn status_mib(pid: &str, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
