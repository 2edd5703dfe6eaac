//! End to end against a Kinesis API server (feature `aws-sdk`): aggregate
//! per shard, put with the batching helper, split a shard mid-stream, read
//! every shard back from TRIM_HORIZON, deaggregate with each shard's range
//! under the KCL's rule. Every user record must arrive exactly once, in
//! order per key, and nothing may be discarded.
//!
//! Needs a Kinesis API: ignored unless asked for (`-- --ignored`), and then
//! `KINESIS_ENDPOINT` (e.g. `http://127.0.0.1:4567`) must name one; `.ci/run`
//! starts kinesalite on loopback, sets it and runs this test.

mod support;

use std::collections::{HashMap, HashSet};

use aws_sdk_kinesis::Client;
use kinesis_agg::Record;
use kinesis_agg::ShardedAggregator;
use kinesis_agg::sdk::{self, PutStats, Retry};
use support::kinesis::{client, endpoint, new_stream, read_stream, split_in_half};

type Key = (String, Option<String>);

async fn shard_map(client: &Client, stream: &str) -> kinesis_agg::ShardMap {
    sdk::shard_map(&sdk::list_shards(client, stream).await.unwrap()).unwrap()
}

/// 100,000 user records over 1,000 partition keys; one key in ten also
/// carries an explicit hash key. Each record's data names it.
fn workload() -> Vec<(Key, Vec<u8>)> {
    (0..100_000u32)
        .map(|i| {
            let k = i % 1000;
            let ehk = (k % 10 == 0)
                .then(|| (u128::from(k) * 340_282_366_920_938_463_463_374_607_431_768_211).to_string());
            let mut data = format!("key-{k:04} record {i:06} ").into_bytes();
            data.resize(60 + (i as usize % 80), b'.');
            ((format!("key-{k:04}"), ehk), data)
        })
        .collect()
}

async fn put(client: &Client, stream: &str, done: Vec<kinesis_agg::ShardAggregate>, stats: &mut PutStats) {
    let entries = done.iter().map(|a| sdk::shard_put_entry(a).unwrap()).collect();
    let s = sdk::put_all(client, stream, entries, Retry::default())
        .await
        .unwrap();
    stats.calls += s.calls;
    stats.entries += s.entries;
    stats.bytes += s.bytes;
    stats.retried += s.retried;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kinesis API: KINESIS_ENDPOINT=... cargo test --all-features --test e2e -- --ignored"]
async fn aggregate_put_reshard_get_deaggregate_nothing_lost() {
    let client = client(&endpoint());
    let stream = new_stream(&client, "e2e", 4).await;
    let map = shard_map(&client, &stream).await;
    assert_eq!(map.shards().len(), 4);

    let records = workload();
    let mut agg = ShardedAggregator::new(map);
    let mut stats = PutStats::default();
    let half = records.len() / 2;
    for ((pk, ehk), data) in &records[..half] {
        let done = agg
            .add(Record::new(pk, data).with_optional_explicit_hash_key(ehk.as_deref()))
            .unwrap();
        put(&client, &stream, done, &mut stats).await;
    }

    // Split the first shard in the middle of its range while records are
    // still buffered, then keep producing with the refreshed map.
    let parent = agg.shard_map().shards()[0].clone();
    split_in_half(&client, &stream, &parent, true).await;
    let after = shard_map(&client, &stream).await;
    assert_eq!(after.shards().len(), 5, "two children replace the parent");
    let buffered = agg.record_count();
    let done = agg.reshard(after).unwrap();
    put(&client, &stream, done, &mut stats).await;
    assert!(buffered > 0, "the split happens with records buffered");

    for ((pk, ehk), data) in &records[half..] {
        let done = agg
            .add(Record::new(pk, data).with_optional_explicit_hash_key(ehk.as_deref()))
            .unwrap();
        put(&client, &stream, done, &mut stats).await;
    }
    let done = agg.finish_all();
    put(&client, &stream, done, &mut stats).await;

    // Read every shard, parents before children, from TRIM_HORIZON until
    // caught up, each with its own range.
    let (read, discarded) = read_stream(&client, &stream).await;
    let users = read.len();
    let kinesis_records = read
        .iter()
        .map(|r| (r.shard_id.as_str(), r.sequence_number.as_str()))
        .collect::<HashSet<_>>()
        .len()
        + discarded;
    let mut got: HashMap<Key, Vec<Vec<u8>>> = HashMap::new();
    for r in read {
        got.entry((r.partition_key, r.explicit_hash_key))
            .or_default()
            .push(r.data);
    }
    client.delete_stream().stream_name(&stream).send().await.unwrap();

    assert_eq!(discarded, 0, "the KCL would have discarded aggregates");
    assert_eq!(users, records.len(), "every user record exactly once");
    let mut want: HashMap<Key, Vec<Vec<u8>>> = HashMap::new();
    for (k, d) in records {
        want.entry(k).or_default().push(d);
    }
    assert!(got == want, "records lost, duplicated or out of order per key");

    let raw_bytes: usize = want
        .iter()
        .map(|((pk, _), v)| v.iter().map(|d| d.len() + pk.len()).sum::<usize>())
        .sum();
    println!(
        "e2e: {users} user records in {} Kinesis records ({kinesis_records} read back), {} PutRecords calls, {} bytes sent; \
         one record per entry would take {} Kinesis records, {} calls, {raw_bytes} bytes",
        stats.entries,
        stats.calls,
        stats.bytes,
        users,
        users.div_ceil(500),
    );
    assert_eq!(stats.entries, kinesis_records);
}
