//! The `lambda` feature: Kinesis and Firehose events deaggregated with the
//! outer record's metadata, from real and sample-shaped events.
#![cfg(feature = "lambda")]

use aws_lambda_events::event::firehose::KinesisFirehoseEvent;
use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_agg::Error;
use kinesis_agg::lambda::{firehose_event_records, kinesis_event_records};
use kinesis_agg::{DeliveredRecord, OnInvalid};

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
    assert_eq!(got[0].partition_key, Some("key-0"));
    assert_eq!(got[0].data, b"Testing KPL Aggregated Record 1-0");
    assert_eq!(
        (got[0].outer.sequence_number, got[0].sub_sequence_number),
        (Some("1"), Some(0))
    );
    assert!(!got[1].aggregated);
    assert_eq!(got[1].partition_key, Some("shardId-00000000005"));
    assert_eq!(got[1].data, b"This is test data");
    assert_eq!(
        (got[1].outer.sequence_number, got[1].sub_sequence_number),
        (Some("2"), None)
    );
    assert_eq!(got[1].record, 1);
    assert_eq!(got[1].outer.approximate_arrival_millis, Some(1_500_000_000_000));
}

/// A user record: partition key, explicit hash key, data, sub-sequence number.
type Flat = (String, Option<String>, Vec<u8>, Option<u64>);

/// What Google protobuf's parser (with field presence) made of each
/// fixture blob, from the manifest `generate.py` wrote: the records of an
/// aggregated blob, nothing for a plain one (`Ok(vec![])`), or the name of
/// the error for a broken one. The events carry only fixture blobs.
/// `r` is the user record Google's parser gives as `want`.
fn assert_user(r: &DeliveredRecord<'_>, want: &Flat) {
    let (pk, ehk, data, sub) = want;
    assert_eq!(
        (
            r.partition_key,
            r.explicit_hash_key,
            r.data,
            r.sub_sequence_number
        ),
        (Some(pk.as_str()), ehk.as_deref(), &data[..], *sub)
    );
}

fn expected(blob: &[u8]) -> Result<Vec<Flat>, (String, usize)> {
    let manifest: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read("tests/fixtures/deagg/manifest.json").unwrap()).unwrap();
    let case = manifest
        .iter()
        .find(|c| {
            std::fs::read(format!(
                "tests/fixtures/deagg/{}.bin",
                c["name"].as_str().unwrap()
            ))
            .unwrap()
                == blob
        })
        .expect("every event blob is a fixture");
    let b64 = |v: &serde_json::Value| {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.as_str().unwrap()).unwrap()
    };
    match case["expect"].as_str().unwrap() {
        "plain" => Ok(vec![]),
        "error" => Err((
            case["error"].as_str().unwrap().to_owned(),
            case["offset"].as_u64().unwrap() as usize,
        )),
        _ => Ok(case["records"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r["partition_key"].as_str().unwrap().to_owned(),
                    r["explicit_hash_key"].as_str().map(str::to_owned),
                    b64(&r["data"]),
                    Some(i as u64),
                )
            })
            .collect()),
    }
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
                assert_eq!(r.partition_key, Some(outer.kinesis.partition_key.as_str()));
                i += 1;
            }
            Ok(users) => {
                for want in users {
                    let r = got[i].unwrap();
                    assert_user(&r, &want);
                    assert_eq!(
                        r.outer.sequence_number,
                        Some(outer.kinesis.sequence_number.as_str())
                    );
                    assert_eq!(r.outer.partition_key, Some(outer.kinesis.partition_key.as_str()));
                    assert_eq!(r.outer.shard_id, Some("shardId-000000000006"));
                    assert_eq!(r.outer.event_source, Some("aws:kinesis"));
                    assert_eq!(r.outer.record_id, outer.event_id.as_deref());
                    assert_eq!(r.record, n);
                    assert_eq!(
                        r.outer.approximate_arrival_millis,
                        Some(1_545_084_650_987 + 1000 * n as i64)
                    );
                    i += 1;
                }
            }
            Err((name, offset)) => {
                let err = got[i].unwrap_err();
                assert_eq!(err.record, n);
                // The error the manifest names, at its offset.
                assert!(
                    format!("{:?}", err.error).starts_with(&name),
                    "{:?} vs {name}",
                    err.error
                );
                assert_eq!(err.error.offset(), Some(offset));
                assert_eq!(err.record_id, outer.event_id.as_deref());
                assert!(err.to_string().contains(outer.event_id.as_deref().unwrap()));
                i += 1;
            }
        }
    }
    assert_eq!(i, got.len());
    // Passing broken records through instead: each as its outer record,
    // unchanged, in the error's place.
    let through = kinesis_event_records(&event, OnInvalid::Passthrough);
    assert_eq!(through.len(), got.len());
    for (a, b) in through.iter().zip(&got) {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Ok(a), Err(e)) => {
                let outer = &event.records[e.record];
                assert!(!a.aggregated && a.sub_sequence_number.is_none());
                assert_eq!(a.data, &outer.kinesis.data.0[..]);
                assert_eq!(a.partition_key, Some(outer.kinesis.partition_key.as_str()));
            }
            (Err(e), _) => panic!("passthrough gave an error: {e}"),
        }
    }
}

#[test]
fn firehose_event_metadata() {
    let event: KinesisFirehoseEvent = load("firehose_kinesis");
    let got = firehose_event_records(&event, OnInvalid::Passthrough);
    let first = got[0].unwrap();
    assert_eq!(first.outer.record_id, Some("record1"));
    assert_eq!(first.outer.shard_id, Some("shardId-000000000001"));
    assert_eq!(first.partition_key, Some("key-0"));
    assert_eq!(first.outer.approximate_arrival_millis, Some(1_507_217_624_302));
    let plain = got.iter().map(|r| r.unwrap()).find(|r| !r.aggregated).unwrap();
    assert_eq!(plain.partition_key, Some("outer-b"));
    assert_eq!(plain.sub_sequence_number, None);
    // Passthrough: one line per user record, and one per plain or broken
    // outer record, with the values Google's parser gives.
    let mut i = 0;
    for (n, outer) in event.records.iter().enumerate() {
        match expected(&outer.data.0) {
            Ok(users) if !users.is_empty() => {
                for want in users {
                    let r = got[i].unwrap();
                    assert_user(&r, &want);
                    assert_eq!(r.record, n);
                    assert_eq!(r.outer.record_id, outer.record_id.as_deref());
                    i += 1;
                }
            }
            _ => {
                let r = got[i].unwrap();
                assert!(!r.aggregated);
                assert_eq!(r.data, &outer.data.0[..]);
                i += 1;
            }
        }
    }
    assert_eq!(i, got.len());
    let errors: Vec<_> = firehose_event_records(&event, OnInvalid::Error)
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].record_id, Some("record4"));
    assert!(
        matches!(errors[0].error, Error::MissingField { .. }),
        "{:?}",
        errors[0]
    );
}
