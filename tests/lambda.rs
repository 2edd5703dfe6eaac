//! The `lambda` feature: Kinesis and Firehose events deaggregated with the
//! outer record's metadata, from real and sample-shaped events.
#![cfg(feature = "lambda")]

use aws_lambda_events::event::firehose::KinesisFirehoseEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_agg::lambda::{OnInvalid, firehose_event_records, kinesis_event_records};
use kinesis_agg::{Deaggregated, Error};

fn load<T: serde::de::DeserializeOwned>(name: &str) -> T {
    serde_json::from_slice(&std::fs::read(format!("tests/fixtures/events/{name}.json")).unwrap()).unwrap()
}

#[test]
fn a_real_event_with_a_kpl_record_and_a_plain_one() {
    // The published sample has no arrival timestamp; the type requires one.
    let mut doc: serde_json::Value = load("lambda_fanout_mixed");
    for r in doc["Records"].as_array_mut().unwrap() {
        r["kinesis"]["approximateArrivalTimestamp"] = 1.5e9.into();
    }
    let event: KinesisEvent = serde_json::from_value(doc).unwrap();
    let got: Vec<_> = kinesis_event_records(&event, OnInvalid::Error)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.len(), 2);
    assert!(got[0].aggregated);
    assert_eq!(got[0].partition_key, "key-0");
    assert_eq!(got[0].data, b"Testing KPL Aggregated Record 1-0");
    assert_eq!(
        (got[0].sequence_number, got[0].sub_sequence_number),
        ("1", Some(0))
    );
    assert!(!got[1].aggregated);
    assert_eq!(got[1].partition_key, "shardId-00000000005");
    assert_eq!(got[1].data, b"This is test data");
    assert_eq!((got[1].sequence_number, got[1].sub_sequence_number), ("2", None));
    assert_eq!(got[1].record, 1);
    assert_eq!(got[1].approximate_arrival_millis, 1_500_000_000_000);
}

/// A user record: partition key, explicit hash key, data, sub-sequence number.
type Flat = (String, Option<String>, Vec<u8>, Option<u64>);

/// Each record of an event, deaggregated on its own with the core API.
fn expected(blob: &[u8]) -> Result<Vec<Flat>, Error> {
    Ok(match kinesis_agg::deaggregate(blob)? {
        Deaggregated::Aggregated(a) => a
            .records()
            .map(|r| {
                (
                    r.partition_key.into(),
                    r.explicit_hash_key.map(Into::into),
                    r.data.to_vec(),
                    Some(r.sub_sequence_number),
                )
            })
            .collect(),
        Deaggregated::Plain { .. } => vec![],
    })
}

#[test]
fn kinesis_event_metadata_and_errors() {
    let event: KinesisEvent = load("lambda_kinesis");
    let got = kinesis_event_records(&event, OnInvalid::Error);
    let mut i = 0;
    for (n, outer) in event.records.iter().enumerate() {
        match expected(&outer.kinesis.data.0) {
            Ok(users) if users.is_empty() => {
                let r = got[i].unwrap();
                assert!(!r.aggregated && r.data == &outer.kinesis.data.0[..]);
                assert_eq!(r.partition_key, outer.kinesis.partition_key);
                i += 1;
            }
            Ok(users) => {
                for (pk, ehk, data, sub) in users {
                    let r = got[i].unwrap();
                    assert_eq!(
                        (
                            r.partition_key,
                            r.explicit_hash_key,
                            r.data,
                            r.sub_sequence_number
                        ),
                        (pk.as_str(), ehk.as_deref(), &data[..], sub)
                    );
                    assert_eq!(r.sequence_number, outer.kinesis.sequence_number);
                    assert_eq!(r.shard_id, Some("shardId-000000000006"));
                    assert_eq!(r.event_source, Some("aws:kinesis"));
                    assert_eq!(r.record_id, outer.event_id.as_deref());
                    assert_eq!(r.record, n);
                    assert_eq!(r.approximate_arrival_millis, 1_545_084_650_987 + 1000 * n as i64);
                    i += 1;
                }
            }
            Err(e) => {
                let err = got[i].unwrap_err();
                assert_eq!((err.record, err.error), (n, e));
                assert!(err.to_string().contains(outer.event_id.as_deref().unwrap()));
                i += 1;
            }
        }
    }
    assert_eq!(i, got.len());
    // Passing broken records through instead.
    let through = kinesis_event_records(&event, OnInvalid::Passthrough);
    assert!(through.iter().all(Result::is_ok));
    assert_eq!(through.len(), got.len());
}

#[test]
fn firehose_event_metadata() {
    let event: KinesisFirehoseEvent = load("firehose_kinesis");
    let got = firehose_event_records(&event, OnInvalid::Passthrough);
    let first = got[0].unwrap();
    assert_eq!(first.record_id, Some("record1"));
    assert_eq!(first.shard_id, Some("shardId-000000000001"));
    assert_eq!(first.partition_key, "key-0");
    assert_eq!(first.approximate_arrival_millis, 1_507_217_624_302);
    let plain = got.iter().map(|r| r.unwrap()).find(|r| !r.aggregated).unwrap();
    assert_eq!(plain.partition_key, "outer-b");
    assert_eq!(plain.sub_sequence_number, None);
    let n: usize = event
        .records
        .iter()
        .map(|r| expected(&r.data.0).map_or(1, |u| u.len().max(1)))
        .sum();
    assert_eq!(got.len(), n);
    let errors = firehose_event_records(&event, OnInvalid::Error)
        .into_iter()
        .filter(Result::is_err)
        .count();
    assert_eq!(errors, 1);
}
