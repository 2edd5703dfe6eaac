//! A Lambda function consuming a Kinesis stream written by the KPL or by
//! kinesis-agg: every user record, aggregated or not, with its sequence and
//! sub-sequence numbers, one line each on standard output (CloudWatch
//! Logs). Broken Kinesis records come back as batch item failures (enable
//! `ReportBatchItemFailures` on the event source mapping).
//!
//! ```sh
//! cargo lambda build --release --output-format zip   # target/lambda/kinesis-agg-lambda-function/bootstrap.zip
//! cargo lambda watch                                  # a local runtime; then: cargo lambda invoke --data-file event.json
//! ```

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use kinesis_agg_lambda_function::handle;
use lambda_runtime::{Error, LambdaEvent, service_fn};

async fn handler(event: LambdaEvent<KinesisEvent>) -> Result<KinesisEventResponse, Error> {
    let (response, summary) = handle(&event.payload, |r| {
        // Process the user record here.
        println!(
            "{} {}:{} {} bytes",
            r.partition_key.unwrap_or(""),
            r.outer.sequence_number.unwrap_or(""),
            r.sub_sequence_number.map_or(-1, |s| s as i64),
            r.data.len()
        );
    });
    println!(
        "{} user records from {} Kinesis records, {} broken",
        summary.user_records, summary.kinesis_records, summary.failures
    );
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
