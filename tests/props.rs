//! Property tests: our reader against the prost model, and the aggregators'
//! exact size accounting, limits and canonical bytes.

mod support;

use kinesis_agg::{Aggregator, Deaggregated, Error, Record, RecordAggregator, Table, Tag};
use proptest::prelude::*;
use prost::Message;
use support::pb::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,12}",
        "\\PC{1,40}",
        // Up to 256 UTF-16 code units of four-byte characters.
        (1usize..=128).prop_map(|n| "😀".repeat(n)),
        (200usize..=256).prop_map(|n| "k".repeat(n)),
    ]
}

fn ehk() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        "[1-9][0-9]{0,37}",
        Just(u128::MAX.to_string()),
        any::<u128>().prop_map(|v| v.to_string()),
    ]
}

fn tag() -> impl Strategy<Value = PbTag> {
    ("\\PC{0,8}", proptest::option::of("\\PC{0,8}")).prop_map(|(key, value)| PbTag { key, value })
}

/// An arbitrary message, indices mostly inside the tables.
fn message() -> impl Strategy<Value = PbAggregatedRecord> {
    (
        proptest::collection::vec("\\PC{0,20}", 0..6),
        proptest::collection::vec("[0-9]{0,5}", 0..4),
        proptest::collection::vec(
            (
                0u64..7,
                proptest::option::of(0u64..5),
                proptest::collection::vec(any::<u8>(), 0..300),
                proptest::collection::vec(tag(), 0..3),
            ),
            0..12,
        ),
        prop_oneof![9 => Just(0u64), 1 => any::<u64>()],
    )
        .prop_map(|(pks, ehks, recs, wild)| PbAggregatedRecord {
            partition_key_table: pks,
            explicit_hash_key_table: ehks,
            records: recs
                .into_iter()
                .map(|(p, e, data, tags)| PbRecord {
                    partition_key_index: p.wrapping_add(wild),
                    explicit_hash_key_index: e,
                    data,
                    tags,
                })
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Whatever prost encodes, we read exactly what prost reads back, or,
    /// when an index lies outside its table, refuse with that error.
    #[test]
    fn reader_agrees_with_prost(m in message()) {
        let body = m.encode_to_vec();
        let blob = wrap(&body);
        let back = PbAggregatedRecord::decode(&body[..]).unwrap();
        prop_assert_eq!(&back, &m);
        let bad = m.records.iter().position(|r| {
            r.partition_key_index >= m.partition_key_table.len() as u64
                || r.explicit_hash_key_index.is_some_and(|e| e >= m.explicit_hash_key_table.len() as u64)
        });
        let got = ours(&blob);
        if blob.len() <= 20 {
            prop_assert_eq!(got, Ok(None));
        } else if let Some(i) = bad {
            // The first bad record, by its offset, table and index.
            let r = &m.records[i];
            let offset = record_offsets(&m)[i];
            let want = if r.partition_key_index >= m.partition_key_table.len() as u64 {
                Error::IndexOutOfRange {
                    offset,
                    table: Table::PartitionKey,
                    index: r.partition_key_index,
                    len: m.partition_key_table.len(),
                }
            } else {
                Error::IndexOutOfRange {
                    offset,
                    table: Table::ExplicitHashKey,
                    index: r.explicit_hash_key_index.unwrap(),
                    len: m.explicit_hash_key_table.len(),
                }
            };
            prop_assert_eq!(got, Err(want));
        } else {
            prop_assert_eq!(got, Ok(Some(resolve(&m))));
            // Each record's key indices are the ones prost's message holds.
            if let Ok(Deaggregated::Aggregated(a)) = kinesis_agg::deaggregate(&blob) {
                let got: Vec<_> = a
                    .records()
                    .with_key_indices()
                    .map(|(_, k)| (k.partition_key as u64, k.explicit_hash_key.map(|i| i as u64)))
                    .collect();
                let want: Vec<_> =
                    m.records.iter().map(|r| (r.partition_key_index, r.explicit_hash_key_index)).collect();
                prop_assert_eq!(got, want);
            }
        }
        // Fixed tables of two keys each: the same answer while the tables
        // fit, TableFull naming the first key past two otherwise.
        let fixed = kinesis_agg::deaggregate_fixed::<2>(&blob);
        let heap = kinesis_agg::deaggregate(&blob);
        let too_many = m.partition_key_table.len() > 2 || m.explicit_hash_key_table.len() > 2;
        match (&fixed, &heap) {
            (Ok(Deaggregated::Aggregated(f)), Ok(Deaggregated::Aggregated(h))) => {
                prop_assert!(!too_many);
                prop_assert!(f.records().eq(h.records()));
            }
            (Ok(Deaggregated::Plain { .. }), Ok(Deaggregated::Plain { .. })) => {}
            (Err(Error::TableFull { capacity: 2, table, .. }), _) => {
                prop_assert!(too_many);
                let which = if m.partition_key_table.len() > 2 { Table::PartitionKey } else { Table::ExplicitHashKey };
                prop_assert_eq!(*table, which);
            }
            (Err(e), Err(h)) => prop_assert_eq!(e, h),
            (f, h) => prop_assert!(false, "fixed {:?} heap {:?}", f, h),
        }
    }

    /// Arbitrary bytes, wrapped with a valid checksum or not, never panic,
    /// and every accepted body yields exactly its count of records.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        for blob in [wrap(&body), body.clone()] {
            if let Ok(Deaggregated::Aggregated(a)) = kinesis_agg::deaggregate(&blob) {
                prop_assert_eq!(a.records().count(), a.len());
                for r in a.records() {
                    let _ = r.tags.count();
                }
            }
            // Fixed tables agree with heap tables unless a table fills.
            match (kinesis_agg::deaggregate_fixed::<2>(&blob), kinesis_agg::deaggregate(&blob)) {
                (Ok(Deaggregated::Aggregated(f)), Ok(Deaggregated::Aggregated(h))) => {
                    prop_assert!(f.records().eq(h.records()));
                }
                (Ok(Deaggregated::Plain { data, reason }), Ok(Deaggregated::Plain { data: d, reason: r })) => {
                    prop_assert_eq!((data, reason), (d, r));
                }
                (Err(Error::TableFull { capacity: 2, .. }), _) => {}
                (Err(e), Err(h)) => prop_assert_eq!(e, h),
                (f, h) => prop_assert!(false, "fixed {:?} heap {:?}", f, h),
            }
        }
    }

    /// Every add keeps the reported size exact; every aggregate decodes to
    /// exactly its records and equals prost's canonical encoding byte for
    /// byte; no aggregate exceeds its limit; each closed aggregate really
    /// could not take the next record; nothing is lost.
    #[test]
    fn aggregation_is_exact_and_canonical(
        pool in proptest::collection::vec(key(), 1..8),
        ehks in proptest::collection::vec(ehk(), 1..7),
        recs in proptest::collection::vec(
            (any::<prop::sample::Index>(), proptest::option::of(any::<prop::sample::Index>()), 0usize..700),
            1..40,
        ),
        // Miri interprets every instruction: no megabyte buffers there.
        limit in prop_oneof![Just(kinesis_agg::MIN_LIMIT), 30usize..3000, Just(if cfg!(miri) { 8192 } else { kinesis_agg::DEFAULT_LIMIT })],
        buf_len in prop_oneof![Just(usize::MAX), 60usize..4000],
    ) {
        let input: Vec<(String, Option<String>, Vec<u8>)> = recs
            .iter()
            .enumerate()
            .map(|(n, (p, e, len))| {
                (pool[p.index(pool.len())].clone(), e.map(|e| ehks[e.index(ehks.len())].clone()), vec![n as u8; *len])
            })
            .collect();
        let mut buf = vec![0u8; buf_len.min(limit)];
        let mut agg = Aggregator::<_, 4>::with_limit(&mut buf[..], limit).unwrap();
        let mut out: Vec<(Vec<u8>, String, Option<String>, usize)> = Vec::new();
        let mut current: Vec<(String, Option<String>, Vec<u8>)> = Vec::new();
        let mut accepted = Vec::new();
        for (pk, e, data) in &input {
            let rec = Record::new(pk, data).with_optional_explicit_hash_key(e.as_deref());
            // What the aggregate would be with this record: prost's size.
            let mut with = current.clone();
            with.push((pk.clone(), e.clone(), data.clone()));
            let predicted = oracle_len(&with);
            prop_assert_eq!(agg.encoded_len_with(&rec).unwrap(), predicted);
            match agg.add(rec) {
                Ok(()) => {
                    prop_assert_eq!(agg.encoded_len(), predicted);
                    current = with;
                    accepted.push(current.last().unwrap().clone());
                }
                Err(refused) => {
                    prop_assert_eq!(refused.record, rec);
                    // Distinct keys of each table with this record.
                    let mut pks: Vec<&str> = current.iter().map(|c| c.0.as_str()).collect();
                    pks.push(pk);
                    pks.sort_unstable();
                    pks.dedup();
                    let mut es: Vec<&str> = current.iter().filter_map(|c| c.1.as_deref()).collect();
                    es.extend(e.as_deref());
                    es.sort_unstable();
                    es.dedup();
                    match refused.error {
                        Error::Full | Error::KeyCapacity { .. } => {
                            let outer = current[0].0.len();
                            let bytes = predicted + outer > limit || predicted > buf_len.min(limit);
                            // Aggregator<_, 4> takes 4 keys of each table;
                            // room for bytes is checked first.
                            match refused.error {
                                Error::Full => prop_assert!(bytes),
                                Error::KeyCapacity { table: Table::PartitionKey, capacity: 4 } => {
                                    prop_assert!(!bytes && pks.len() > 4);
                                }
                                Error::KeyCapacity { table: Table::ExplicitHashKey, capacity: 4 } => {
                                    prop_assert!(!bytes && pks.len() <= 4 && es.len() > 4);
                                }
                                other => prop_assert!(false, "{:?}", other),
                            }
                            let size = agg.encoded_len();
                            let done = agg.finish().unwrap();
                            prop_assert_eq!(done.data.len(), size);
                            out.push((done.data.to_vec(), done.partition_key.to_owned(), done.explicit_hash_key.map(str::to_owned), done.record_count));
                            check(&out.last().unwrap().0, &current, limit)?;
                            // Alone in the next aggregate.
                            current = vec![(pk.clone(), e.clone(), data.clone())];
                            let again = oracle_len(&current);
                            prop_assert_eq!(agg.encoded_len_with(&rec).unwrap(), again);
                            let added = agg.add(rec).map_err(|r| r.error);
                            prop_assert_eq!(added, Ok(()), "refused after finish");
                            prop_assert_eq!(agg.encoded_len(), again);
                            accepted.push(current[0].clone());
                        }
                        Error::RecordTooLarge { size, .. } => {
                            prop_assert!(size > limit || size - pk.len() > buf_len.min(limit));
                        }
                        other => prop_assert!(false, "unexpected {:?}", other),
                    }
                }
            }
        }
        if let Some(done) = agg.finish() {
            out.push((done.data.to_vec(), done.partition_key.to_owned(), done.explicit_hash_key.map(str::to_owned), done.record_count));
            check(&out.last().unwrap().0, &current, limit)?;
        }
        prop_assert!(agg.finish().is_none());
        // Nothing lost, order kept.
        let mut all = Vec::new();
        for (blob, pk, e, n) in &out {
            let recs = prost_read(blob);
            prop_assert_eq!(recs.len(), *n);
            prop_assert_eq!(pk, &recs[0].partition_key);
            prop_assert_eq!(e, &recs[0].explicit_hash_key);
            prop_assert!(blob.len() + pk.len() <= limit);
            all.extend(recs.into_iter().map(|r| (r.partition_key, r.explicit_hash_key, r.data)));
        }
        prop_assert_eq!(all, accepted);
    }

    /// Records with tags: the aggregate is prost's canonical encoding of
    /// the same records and tags, byte for byte, and its size was
    /// predicted exactly before each add.
    #[test]
    #[cfg_attr(miri, ignore = "minutes under Miri; the tag writer's bounds are checked natively and by the fuzz targets")]
    fn tagged_records_are_canonical_and_sized_exactly(
        recs in proptest::collection::vec(
            (key(), proptest::option::of(ehk()), proptest::collection::vec(any::<u8>(), 0..200), proptest::collection::vec(tag(), 0..4)),
            1..20,
        ),
    ) {
        let mut agg = RecordAggregator::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut fixed = Aggregator::<_, 20>::with_limit(&mut buf[..], 1 << 16).unwrap();
        for (n, (pk, e, data, tags)) in recs.iter().enumerate() {
            let tags: Vec<Tag<'_>> = tags.iter().map(|t| Tag { key: &t.key, value: t.value.as_deref() }).collect();
            let rec = Record::new(pk, data).with_optional_explicit_hash_key(e.as_deref()).with_tags(&tags);
            // prost's size of the records so far and this one.
            let predicted = 4 + canonical_tagged(&recs[..=n]).encoded_len() + 16;
            prop_assert_eq!(agg.encoded_len_with(&rec).unwrap(), predicted);
            prop_assert_eq!(fixed.encoded_len_with(&rec).unwrap(), predicted);
            prop_assert_eq!(agg.add(rec).unwrap(), None);
            prop_assert_eq!(agg.encoded_len(), predicted);
            fixed.add(rec).unwrap();
            prop_assert_eq!(fixed.encoded_len(), predicted);
        }
        let want = wrap(&canonical_tagged(&recs).encode_to_vec());
        prop_assert_eq!(fixed.finish().unwrap().data, &want[..]);
        let done = agg.finish().unwrap();
        prop_assert_eq!(done.data(), &want[..]);
        let back = prost_read(done.data());
        let tags: Vec<Vec<(String, Option<String>)>> = back.into_iter().map(|r| r.tags).collect();
        let sent: Vec<Vec<(String, Option<String>)>> =
            recs.iter().map(|r| r.3.iter().map(|t| (t.key.clone(), t.value.clone())).collect()).collect();
        prop_assert_eq!(tags, sent);
    }

    /// The alloc aggregator splits greedily and loses nothing.
    #[test]
    fn record_aggregator_is_greedy_and_lossless(
        lens in proptest::collection::vec(0usize..400, 1..60),
        limit in 60usize..2000,
    ) {
        let mut agg = RecordAggregator::with_limit(limit).unwrap();
        let mut out = Vec::new();
        let mut accepted = Vec::new();
        let mut current: Vec<(String, Option<String>, Vec<u8>)> = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            let pk = format!("pk{}", i % 3);
            let data = vec![i as u8; *len];
            // prost's size of the current aggregate with this record.
            let mut with = current.clone();
            with.push((pk.clone(), None, data.clone()));
            let before = oracle_len(&with);
            let outer = pk.len();
            match agg.add(Record::new(&pk, &data)) {
                Ok(Some(done)) => {
                    // Greedy: closed only because this record did not fit.
                    prop_assert!(before + done.partition_key().len() > limit);
                    out.push(done);
                    accepted.push((pk.clone(), data.clone()));
                    current = vec![(pk, None, data)];
                }
                Ok(None) => {
                    accepted.push((pk.clone(), data.clone()));
                    current = with;
                }
                Err(Error::RecordTooLarge { size, .. }) => prop_assert!(size > limit && size >= outer),
                Err(e) => prop_assert!(false, "{:?}", e),
            }
        }
        out.extend(agg.finish());
        let mut all = Vec::new();
        for a in &out {
            prop_assert!(a.data().len() + a.partition_key().len() <= limit);
            let recs = prost_read(a.data());
            prop_assert_eq!(recs.len(), a.record_count());
            all.extend(recs.into_iter().map(|r| (r.partition_key, r.data)));
        }
        prop_assert_eq!(all, accepted);
    }
}

/// One aggregate: decodes to exactly `records`, and equals the canonical
/// encoding prost produces for them, byte for byte.
fn check(
    blob: &[u8],
    records: &[(String, Option<String>, Vec<u8>)],
    limit: usize,
) -> Result<(), TestCaseError> {
    let model = canonical(records);
    let expected = wrap(&model.encode_to_vec());
    prop_assert_eq!(blob, &expected[..]);
    prop_assert!(blob.len() + records[0].0.len() <= limit);
    let got = prost_read(blob);
    let want: Vec<Owned> = records
        .iter()
        .map(|(p, e, d)| Owned {
            partition_key: p.clone(),
            explicit_hash_key: e.clone(),
            data: d.clone(),
            tags: vec![],
        })
        .collect();
    prop_assert_eq!(got, want);
    Ok(())
}
