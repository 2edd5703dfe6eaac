//! The function's work, apart from the runtime so that it can be tested
//! on its own: every user record of a Kinesis event, aggregated or not,
//! and a partial batch response naming each broken Kinesis record, so
//! that Lambda retries from it instead of dropping it or the whole batch.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use kinesis_agg::OnInvalid;
use kinesis_agg::lambda::kinesis_event_records;

/// What one invocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Kinesis records in the event.
    pub kinesis_records: usize,
    /// User records handed to `process`.
    pub user_records: usize,
    /// Kinesis records reported as batch item failures.
    pub failures: usize,
}

/// Hands every user record of `event` to `process`, in order, and returns
/// the partial batch response: one item failure per broken Kinesis record,
/// named by its sequence number.
pub fn handle(
    event: &KinesisEvent,
    mut process: impl FnMut(&kinesis_agg::DeliveredRecord<'_>),
) -> (KinesisEventResponse, Summary) {
    let mut response = KinesisEventResponse::default();
    let mut summary = Summary {
        kinesis_records: event.records.len(),
        ..Summary::default()
    };
    for item in kinesis_event_records(event, OnInvalid::Error) {
        match item {
            Ok(r) => {
                summary.user_records += 1;
                process(&r);
            }
            Err(broken) => {
                eprintln!("{broken}");
                let mut failure = KinesisBatchItemFailure::default();
                failure.item_identifier = broken.sequence_number.map(str::to_owned);
                response.batch_item_failures.push(failure);
                summary.failures += 1;
            }
        }
    }
    (response, summary)
}
