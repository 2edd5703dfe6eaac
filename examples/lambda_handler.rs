//! A Lambda function consuming a Kinesis stream written by the KPL or by
//! this crate: every user record, aggregated or not, with its sequence and
//! sub-sequence numbers. Broken records are reported by their position in
//! the batch so that Lambda retries them (partial batch response) rather
//! than the whole batch being dropped or silently half-processed.
//!
//! Build: cargo build --release --example lambda_handler --features lambda
//! (deploy with cargo-lambda or as a custom runtime; it needs no
//! configuration).

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use kinesis_agg::OnInvalid;
use kinesis_agg::lambda::kinesis_event_records;
use lambda_runtime::{Error, LambdaEvent, service_fn};

async fn handler(event: LambdaEvent<KinesisEvent>) -> Result<KinesisEventResponse, Error> {
    let mut response = KinesisEventResponse::default();
    let mut users = 0usize;
    for item in kinesis_event_records(&event.payload, OnInvalid::Error) {
        match item {
            Ok(r) => {
                users += 1;
                // Process the user record here.
                println!(
                    "{} {}:{} {} bytes",
                    r.partition_key.unwrap_or(""),
                    r.outer.sequence_number.unwrap_or(""),
                    r.sub_sequence_number.map_or(-1, |s| s as i64),
                    r.data.len()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier =
                    Some(event.payload.records[e.record].kinesis.sequence_number.clone());
                response.batch_item_failures.push(failure);
            }
        }
    }
    println!(
        "{users} user records from {} Kinesis records",
        event.payload.records.len()
    );
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
