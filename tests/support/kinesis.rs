//! What the tests against a Kinesis API server share: its address from
//! `KINESIS_ENDPOINT`, a client with test credentials, and waiting for a
//! stream to be active.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::StreamStatus;

pub fn endpoint() -> String {
    std::env::var("KINESIS_ENDPOINT")
        .expect("KINESIS_ENDPOINT names the Kinesis API to test against (./test.sh starts one)")
}

/// The server's socket address, for the fault proxy.
pub fn upstream() -> SocketAddr {
    let e = endpoint();
    e.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("KINESIS_ENDPOINT is http://IP:PORT")
}

pub fn client(endpoint: &str) -> Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDKINESISAGG",
            "test-secret",
            None,
            None,
            "tests",
        ))
        .build();
    Client::from_conf(conf)
}

pub async fn wait_active(client: &Client, stream: &str) {
    for _ in 0..400 {
        let d = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .unwrap();
        if d.stream_description_summary().map(|s| s.stream_status()) == Some(&StreamStatus::Active) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("stream {stream} never became active");
}

/// A new stream of `shards` shards, named for the test and the process
/// (several suites share one server), once it is active.
pub async fn new_stream(client: &Client, name: &str, shards: i32) -> String {
    let stream = format!("kagg-{name}-{}", std::process::id());
    client
        .create_stream()
        .stream_name(&stream)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    wait_active(client, &stream).await;
    stream
}

/// One user record as read back: where it is, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub shard_id: String,
    pub sequence_number: String,
    pub sub_sequence_number: Option<u64>,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

/// Every user record of the stream, read by the library's `StreamReader`
/// (shards parents before children, each from TRIM_HORIZON to its end)
/// under the KCL's rule (an aggregate with a record outside its shard's
/// range is discarded whole). Returns the records, in the order read, and
/// the discarded aggregates.
pub async fn read_stream(client: &Client, stream: &str) -> (Vec<Read>, usize) {
    use kinesis_agg::sdk::{ShardRead, StartingPosition, StreamReader, user_records_in_shard};
    let mut reader = StreamReader::new(client.clone(), stream, StartingPosition::TrimHorizon);
    let (mut got, mut discarded) = (Vec::new(), 0);
    while let Some(page) = reader.next_page().await.unwrap() {
        for (n, r) in page.records.iter().enumerate() {
            match user_records_in_shard(r, n, page.shard.range).unwrap() {
                ShardRead::Records(v) => got.extend(v.into_iter().map(|u| Read {
                    shard_id: page.shard.id.clone(),
                    sequence_number: r.sequence_number().to_owned(),
                    sub_sequence_number: u.sub_sequence_number,
                    partition_key: u.partition_key.unwrap_or_default().to_owned(),
                    explicit_hash_key: u.explicit_hash_key.map(str::to_owned),
                    data: u.data.to_vec(),
                })),
                ShardRead::Discarded { .. } => discarded += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    (got, discarded)
}

/// Splits `parent` at the middle of its range (`+ 1`: the upper child
/// starts there) and waits for the stream to be active again.
pub async fn split_in_half(client: &Client, stream: &str, parent: &kinesis_agg::Shard, plus_one: bool) {
    let r = parent.range;
    let middle = r.start + (r.end - r.start) / 2 + u128::from(plus_one);
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(&parent.id)
        .new_starting_hash_key(middle.to_string())
        .send()
        .await
        .unwrap();
    wait_active(client, stream).await;
}
