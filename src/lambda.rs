//! Deaggregating AWS Lambda events (feature `lambda`): a Kinesis event and
//! a Firehose transformation event, with the outer record's metadata
//! beside each user record. Uses the `aws_lambda_events` crate's types and
//! borrows from them.
//!
//! ```
//! use aws_lambda_events::event::kinesis::KinesisEvent;
//! use kinesis_agg::lambda::{kinesis_event_records, OnInvalid};
//!
//! let event: KinesisEvent = serde_json::from_str(r#"{"Records": [{
//!     "eventID": "shardId-000000000006:49590338271490256608559692538361571095921575989136588898",
//!     "eventSource": "aws:kinesis",
//!     "kinesis": {"partitionKey": "outer", "sequenceNumber": "49590338271490256608559692538361571095921575989136588898",
//!                 "data": "84mawgoFa2V5LTAaJQgAGiFUZXN0aW5nIEtQTCBBZ2dyZWdhdGVkIFJlY29yZCAxLTBlW2Hfd6iL1WkMbznr8jc2",
//!                 "approximateArrivalTimestamp": 1545084650.987}}]}"#).unwrap();
//! for r in kinesis_event_records(&event, OnInvalid::Error) {
//!     let r = r.unwrap();
//!     assert_eq!(r.partition_key, "key-0");
//!     assert_eq!(r.sub_sequence_number, Some(0));
//!     assert_eq!(r.shard_id, Some("shardId-000000000006"));
//!     assert_eq!(r.data, b"Testing KPL Aggregated Record 1-0");
//! }
//! ```

use alloc::vec::Vec;
use core::fmt;

use aws_lambda_events::event::firehose::KinesisFirehoseEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;

use crate::decode::{Deaggregated, deaggregate};
use crate::error::Error;

/// What to do with a record whose checksum is right but whose body is
/// broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnInvalid {
    /// Yield a [`RecordError`] naming the outer record.
    Error,
    /// Yield the record unchanged, as a non-aggregated one.
    Passthrough,
}

/// One user record of an event, with its outer record's metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventRecord<'a> {
    /// Position of the outer record in the event, from 0.
    pub record: usize,
    /// Whether it came out of an aggregated record.
    pub aggregated: bool,
    /// The user record's partition key (a non-aggregated record's own).
    pub partition_key: &'a str,
    /// The user record's explicit hash key, when it has one.
    pub explicit_hash_key: Option<&'a str>,
    /// The user record's data.
    pub data: &'a [u8],
    /// The outer record's sequence number.
    pub sequence_number: &'a str,
    /// Position among the aggregate's user records; `None` for a
    /// non-aggregated record.
    pub sub_sequence_number: Option<u64>,
    /// The shard the outer record was read from, where the event says.
    pub shard_id: Option<&'a str>,
    /// When the outer record reached Kinesis, in milliseconds since the epoch.
    pub approximate_arrival_millis: i64,
    /// The event source (`aws:kinesis`), where the event says.
    pub event_source: Option<&'a str>,
    /// The outer record's id: the Kinesis event's `eventID`, or the Firehose
    /// event's `recordId`.
    pub record_id: Option<&'a str>,
}

/// An outer record whose body is broken, named by its position and id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordError<'a> {
    /// Position of the outer record in the event, from 0.
    pub record: usize,
    /// Its id, where the event gives one.
    pub record_id: Option<&'a str>,
    /// What is wrong, with the byte offset.
    pub error: Error,
}

impl fmt::Display for RecordError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        if let Some(id) = self.record_id {
            write!(f, " ({id})")?;
        }
        write!(f, ": {}", self.error)
    }
}

impl core::error::Error for RecordError<'_> {}

/// The outer record's fields that every user record carries.
struct Outer<'a> {
    record: usize,
    blob: &'a [u8],
    partition_key: &'a str,
    sequence_number: &'a str,
    shard_id: Option<&'a str>,
    arrival: i64,
    event_source: Option<&'a str>,
    record_id: Option<&'a str>,
}

fn expand<'a>(o: Outer<'a>, on_invalid: OnInvalid, out: &mut Vec<Result<EventRecord<'a>, RecordError<'a>>>) {
    let base = EventRecord {
        record: o.record,
        aggregated: false,
        partition_key: o.partition_key,
        explicit_hash_key: None,
        data: o.blob,
        sequence_number: o.sequence_number,
        sub_sequence_number: None,
        shard_id: o.shard_id,
        approximate_arrival_millis: o.arrival,
        event_source: o.event_source,
        record_id: o.record_id,
    };
    match deaggregate(o.blob) {
        Ok(Deaggregated::Aggregated(agg)) => out.extend(agg.records().map(|r| {
            Ok(EventRecord {
                aggregated: true,
                partition_key: r.partition_key,
                explicit_hash_key: r.explicit_hash_key,
                data: r.data,
                sub_sequence_number: Some(r.sub_sequence_number),
                ..base
            })
        })),
        Ok(Deaggregated::Plain { .. }) => out.push(Ok(base)),
        Err(error) => out.push(match on_invalid {
            OnInvalid::Passthrough => Ok(base),
            OnInvalid::Error => Err(RecordError {
                record: o.record,
                record_id: o.record_id,
                error,
            }),
        }),
    }
}

/// The user records of a Lambda Kinesis event, in order.
pub fn kinesis_event_records(
    event: &KinesisEvent,
    on_invalid: OnInvalid,
) -> Vec<Result<EventRecord<'_>, RecordError<'_>>> {
    let mut out = Vec::with_capacity(event.records.len());
    for (i, r) in event.records.iter().enumerate() {
        let event_id = r.event_id.as_deref();
        expand(
            Outer {
                record: i,
                blob: &r.kinesis.data.0,
                partition_key: &r.kinesis.partition_key,
                sequence_number: &r.kinesis.sequence_number,
                // eventID is "shardId-...:sequenceNumber".
                shard_id: event_id.and_then(|id| id.split_once(':')).map(|(shard, _)| shard),
                arrival: r.kinesis.approximate_arrival_timestamp.0.timestamp_millis(),
                event_source: r.event_source.as_deref(),
                record_id: event_id,
            },
            on_invalid,
            &mut out,
        );
    }
    out
}

/// The user records of a Firehose transformation event whose source is a
/// Kinesis stream (records with `kinesisRecordMetadata`), in order.
pub fn firehose_event_records(
    event: &KinesisFirehoseEvent,
    on_invalid: OnInvalid,
) -> Vec<Result<EventRecord<'_>, RecordError<'_>>> {
    let mut out = Vec::with_capacity(event.records.len());
    for (i, r) in event.records.iter().enumerate() {
        let meta = r.kinesis_firehose_record_metadata.as_ref();
        expand(
            Outer {
                record: i,
                blob: &r.data.0,
                partition_key: meta.and_then(|m| m.partition_key.as_deref()).unwrap_or(""),
                sequence_number: meta.and_then(|m| m.sequence_number.as_deref()).unwrap_or(""),
                shard_id: meta.and_then(|m| m.shard_id.as_deref()),
                arrival: r.approximate_arrival_timestamp.0.timestamp_millis(),
                event_source: None,
                record_id: r.record_id.as_deref(),
            },
            on_invalid,
            &mut out,
        );
    }
    out
}
