//! Deaggregating AWS Lambda events (feature `lambda`): a Kinesis event and
//! a Firehose transformation event, each user record as a
//! [`DeliveredRecord`] with the outer record's metadata, the records'
//! checksums verified side by side. Uses the
//! `aws_lambda_events` crate's types and borrows from them.
//!
//! ```
//! use aws_lambda_events::event::kinesis::KinesisEvent;
//! use kinesis_agg::OnInvalid;
//! use kinesis_agg::lambda::kinesis_event_records;
//!
//! let event: KinesisEvent = serde_json::from_str(r#"{"Records": [{
//!     "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
//!     "eventSource": "aws:kinesis",
//!     "kinesis": {"partitionKey": "outer", "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
//!                 "data": "84mawgoFa2V5LTAaJQgAGiFUZXN0aW5nIEtQTCBBZ2dyZWdhdGVkIFJlY29yZCAxLTBlW2Hfd6iL1WkMbznr8jc2",
//!                 "approximateArrivalTimestamp": 1545084650.987}}]}"#).unwrap();
//! for r in kinesis_event_records(&event, OnInvalid::Error) {
//!     let r = r.unwrap();
//!     assert_eq!(r.partition_key, Some("key-0"));
//!     assert_eq!(r.sub_sequence_number, Some(0));
//!     assert_eq!(r.outer.shard_id, Some("shardId-000000000006"));
//!     assert_eq!(r.outer.approximate_arrival_millis, Some(1_545_084_650_987));
//!     assert_eq!(r.data, b"Testing KPL Aggregated Record 1-0");
//! }
//! ```

use alloc::vec::Vec;

use aws_lambda_events::event::firehose::KinesisFirehoseEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;

use crate::decode::Options;
use crate::delivered::{BrokenRecord, DeliveredRecord, KinesisRecord, OnInvalid, user_records_of};

/// User records or broken records, in order.
pub type EventRecords<'a> = Vec<Result<DeliveredRecord<'a>, BrokenRecord<'a>>>;

fn expand<'a>(outers: impl Iterator<Item = KinesisRecord<'a>>, on_invalid: OnInvalid) -> EventRecords<'a> {
    let outers: Vec<KinesisRecord<'a>> = outers.collect();
    user_records_of(&outers, Options::new(), on_invalid)
}

/// The user records of a Lambda Kinesis event, in order. The shard id is
/// read from each record's `eventID` (`shardId-...:sequenceNumber`).
pub fn kinesis_event_records(event: &KinesisEvent, on_invalid: OnInvalid) -> EventRecords<'_> {
    let outers = event.records.iter().map(|r| {
        let event_id = r.event_id.as_deref();
        KinesisRecord {
            data: &r.kinesis.data.0,
            partition_key: Some(&r.kinesis.partition_key),
            sequence_number: Some(&r.kinesis.sequence_number),
            shard_id: event_id.and_then(|id| id.split_once(':')).map(|(shard, _)| shard),
            approximate_arrival_millis: Some(r.kinesis.approximate_arrival_timestamp.0.timestamp_millis()),
            event_source: r.event_source.as_deref(),
            record_id: event_id,
        }
    });
    expand(outers, on_invalid)
}

/// The user records of a Firehose transformation event whose source is a
/// Kinesis stream (records with `kinesisRecordMetadata`), in order.
pub fn firehose_event_records(event: &KinesisFirehoseEvent, on_invalid: OnInvalid) -> EventRecords<'_> {
    let outers = event.records.iter().map(|r| {
        let meta = r.kinesis_firehose_record_metadata.as_ref();
        KinesisRecord {
            data: &r.data.0,
            partition_key: meta.and_then(|m| m.partition_key.as_deref()),
            sequence_number: meta.and_then(|m| m.sequence_number.as_deref()),
            shard_id: meta.and_then(|m| m.shard_id.as_deref()),
            approximate_arrival_millis: Some(r.approximate_arrival_timestamp.0.timestamp_millis()),
            event_source: None,
            record_id: r.record_id.as_deref(),
        }
    });
    expand(outers, on_invalid)
}
