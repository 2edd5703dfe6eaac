//! Aggregate, put, get, deaggregate against any Kinesis endpoint: a real
//! stream or a local server.
//!
//!     cargo run --example kinesis_roundtrip --features aws-sdk -- \
//!         --endpoint http://127.0.0.1:4567 --stream demo --region us-east-1 [--records 20000]
//!
//! Without --endpoint it talks to AWS in the region, with credentials from
//! AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN. The
//! stream is created with two shards if it does not exist. Records are
//! aggregated per shard, put with PutRecords, read back from iterators
//! taken before the put, and deaggregated with each shard's range under
//! the KCL's rule; the run checks that every record it wrote came back.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use kinesis_agg::Record;
use kinesis_agg::ShardedAggregator;
use kinesis_agg::sdk::{self, Retry, ShardRead};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let stream = arg("--stream").ok_or("--stream NAME is required")?;
    let region = arg("--region").unwrap_or_else(|| "us-east-1".into());
    let count: usize = arg("--records").map_or(Ok(20_000), |n| n.parse())?;
    let env = |k: &str| std::env::var(k).ok();
    let creds = Credentials::new(
        env("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "local".into()),
        env("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "local".into()),
        env("AWS_SESSION_TOKEN"),
        None,
        "environment",
    );
    let mut conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(creds);
    if let Some(endpoint) = arg("--endpoint") {
        conf = conf.endpoint_url(endpoint);
    }
    let client = Client::from_conf(conf.build());

    if client
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .is_err()
    {
        client
            .create_stream()
            .stream_name(&stream)
            .shard_count(2)
            .send()
            .await?;
        println!("created stream {stream} with 2 shards");
    }
    loop {
        let d = client
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await?;
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shards = client
        .list_shards()
        .stream_name(&stream)
        .send()
        .await?
        .shards()
        .to_vec();
    let map = sdk::shard_map(&shards)?;
    // Iterators taken now see exactly what this run writes (and whatever
    // else is written meanwhile, which the check below ignores).
    let mut iterators = Vec::new();
    for s in map.shards() {
        let it = client
            .get_shard_iterator()
            .stream_name(&stream)
            .shard_id(&s.id)
            .shard_iterator_type(ShardIteratorType::Latest)
            .send()
            .await?;
        iterators.push((s.range, it.shard_iterator().map(str::to_owned)));
    }

    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let mut agg = ShardedAggregator::new(map);
    let mut entries = Vec::new();
    for i in 0..count {
        let data = format!("run {run} reading {i:08}: {:.3}", (i as f64).sin() * 40.0);
        for done in agg.add(Record::new(&format!("sensor-{}", i % 200), data.as_bytes()))? {
            entries.push(sdk::shard_put_entry(&done)?);
        }
    }
    for done in agg.finish_all() {
        entries.push(sdk::shard_put_entry(&done)?);
    }
    let stats = sdk::put_all(&client, &stream, entries, Retry::default()).await?;
    println!(
        "put {count} user records as {} Kinesis records in {} PutRecords calls ({} bytes, {} retried)",
        stats.entries, stats.calls, stats.bytes, stats.retried
    );

    let mut seen = HashSet::new();
    let mut discarded = 0;
    for (range, mut it) in iterators {
        let mut idle = 0;
        while let Some(i) = it {
            let out = client.get_records().shard_iterator(i).send().await?;
            for (n, r) in out.records().iter().enumerate() {
                match sdk::user_records_in_shard(r, n, range).map_err(|e| e.to_string())? {
                    ShardRead::Records(users) => {
                        for u in users {
                            let text = String::from_utf8_lossy(u.data);
                            if text.starts_with(&format!("run {run} ")) {
                                seen.insert(text.into_owned());
                            }
                        }
                    }
                    ShardRead::Discarded { .. } => discarded += 1,
                    other => return Err(format!("{other:?}").into()),
                }
            }
            idle = if out.records().is_empty() { idle + 1 } else { 0 };
            it = if idle >= 3 && out.millis_behind_latest() == Some(0) {
                None
            } else {
                out.next_shard_iterator().map(str::to_owned)
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    println!(
        "read back {} of {count} user records; {discarded} aggregates the KCL would discard",
        seen.len()
    );
    if seen.len() != count || discarded != 0 {
        return Err("records lost or discarded".into());
    }
    println!("every record came back");
    Ok(())
}
