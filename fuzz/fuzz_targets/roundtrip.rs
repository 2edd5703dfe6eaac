//! Structured user records (tags included) and a limit through both
//! aggregators and back: records equal, every size exact, every limit
//! respected, no record lost.
#![no_main]

use arbitrary::Arbitrary;
use kinesis_agg::{Aggregator, Deaggregated, Error, OwnedRecord, RecordAggregator, Tag};
use libfuzzer_sys::fuzz_target;

/// Tags of one record: (key, value).
type OwnedTags = Vec<(String, Option<String>)>;

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<(OwnedRecord, OwnedTags)>,
    limit: u16,
    buffer: u16,
}

fn decode(blob: &[u8]) -> Vec<(OwnedRecord, OwnedTags)> {
    match kinesis_agg::deaggregate(blob).expect("our output decodes") {
        Deaggregated::Aggregated(a) => a
            .records()
            .map(|r| {
                let tags = r
                    .tags
                    .map(|t| (t.key.to_owned(), t.value.map(str::to_owned)))
                    .collect();
                (OwnedRecord::from(r), tags)
            })
            .collect(),
        Deaggregated::Plain { .. } => panic!("our output is not aggregated"),
    }
}

fuzz_target!(|input: Input| {
    let limit = kinesis_agg::MIN_LIMIT + usize::from(input.limit);
    let mut owned = RecordAggregator::with_limit(limit).unwrap();
    let mut buf = vec![0u8; 32 + usize::from(input.buffer) % 4096];
    let cap = buf.len();
    let mut fixed = Aggregator::<_, 8>::with_limit(&mut buf[..], limit).unwrap();

    type Item = (OwnedRecord, OwnedTags);
    let mut current: Vec<Item> = Vec::new();
    let mut accepted: Vec<Item> = Vec::new();
    let mut out: Vec<Item> = Vec::new();
    let check = |blob: &[u8], pk: &str, recs: &[Item], out: &mut Vec<Item>| {
        assert!(blob.len() + pk.len() <= limit);
        let back = decode(blob);
        assert_eq!(back, recs);
        assert_eq!(pk, recs[0].0.partition_key);
        out.extend(back);
    };
    for rec in &input.records {
        let tags: Vec<Tag<'_>> = rec
            .1
            .iter()
            .map(|(k, v)| Tag {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        let r = rec.0.as_record().with_tags(&tags);
        let predicted = owned.encoded_len_with(&r).unwrap();
        match owned.try_add(r) {
            Ok(()) => {
                assert_eq!(owned.encoded_len(), predicted);
                current.push(rec.clone());
                accepted.push(rec.clone());
            }
            Err(refused) if refused.error == Error::Full => {
                assert!(predicted + current[0].0.partition_key.len() > limit);
                let done = owned.finish().unwrap();
                check(done.data(), done.partition_key(), &current, &mut out);
                current.clear();
                owned.try_add(r).unwrap();
                current.push(rec.clone());
                accepted.push(rec.clone());
            }
            Err(refused) => {
                let Error::RecordTooLarge { size, .. } = refused.error else {
                    panic!("{refused:?}")
                };
                assert!(size > limit);
            }
        }
        // The no-heap aggregator over a small buffer: refusals are Full
        // or RecordTooLarge, and what it emits decodes.
        let before = fixed.encoded_len();
        match fixed.add(r) {
            Ok(()) => assert!(fixed.encoded_len() <= cap),
            Err(refused) => {
                assert_eq!(fixed.encoded_len(), before);
                match refused.error {
                    Error::Full | Error::KeyCapacity { .. } => {
                        let n = fixed.record_count();
                        let done = fixed.finish().unwrap();
                        assert_eq!(done.record_count, n);
                        assert!(
                            done.data.len() <= cap && done.data.len() + done.partition_key.len() <= limit
                        );
                        assert_eq!(decode(done.data).len(), n);
                        let _ = fixed.add(r);
                    }
                    Error::RecordTooLarge { .. } => {}
                    other => panic!("{other:?}"),
                }
            }
        }
    }
    if let Some(done) = owned.finish() {
        check(done.data(), done.partition_key(), &current, &mut out);
    }
    assert_eq!(out, accepted, "records lost or reordered");
    if let Some(done) = fixed.finish() {
        assert!(done.data.len() <= cap);
    }
});
