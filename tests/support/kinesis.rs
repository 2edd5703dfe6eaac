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
