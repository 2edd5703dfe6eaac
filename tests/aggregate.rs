//! Aggregation: byte-identical to the reference encoders, real KPL output
//! rebuilt byte for byte, key validation, limits and refusals.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kinesis_agg::{Aggregator, Deaggregated, Error, ErrorKind, Record, RecordAggregator, Table, Tag};
use serde_json::Value;

struct Input {
    pk: String,
    ehk: Option<String>,
    data: Vec<u8>,
}

fn load(path: &std::path::Path) -> (Vec<Input>, Vec<Value>) {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let records = doc["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| Input {
            pk: r["partition_key"].as_str().unwrap().to_owned(),
            ehk: r["explicit_hash_key"].as_str().map(str::to_owned),
            data: match r["data"].as_str() {
                Some(d) => STANDARD.decode(d).unwrap(),
                None => (0..r["pattern_len"].as_u64().unwrap())
                    .map(|i| (i % 251) as u8)
                    .collect(),
            },
        })
        .collect();
    (records, doc["aggregates"].as_array().unwrap().clone())
}

fn matches_expected(name: &str, got: &[u8], want: &Value) {
    match want["data"].as_str() {
        Some(d) => assert!(got == STANDARD.decode(d).unwrap(), "{name}: bytes differ"),
        None => {
            assert_eq!(got.len() as u64, want["len"].as_u64().unwrap(), "{name}");
            assert_eq!(support::pb::md5_hex(got), want["md5"].as_str().unwrap(), "{name}");
        }
    }
}

#[test]
fn output_is_identical_to_the_python_and_node_encoders() {
    let mut cases = 0;
    let mut aggregates = 0;
    for entry in std::fs::read_dir("tests/fixtures/agg").unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let (records, expected) = load(&path);
        // Under Miri, which interprets every instruction, the megabyte
        // cases are left to the native run.
        if cfg!(miri) && records.iter().map(|r| r.data.len()).sum::<usize>() > 65_536 {
            continue;
        }
        let limit = if cfg!(miri) {
            1 << 18
        } else {
            kinesis_agg::MAX_LIMIT
        };
        let mut buf = vec![0u8; limit];
        let mut fixed = Aggregator::<_, 1024>::with_limit(&mut buf[..], limit).unwrap();
        let mut owned = RecordAggregator::with_limit(limit).unwrap();
        for want in &expected {
            let first = want["first"].as_u64().unwrap() as usize;
            let n = want["records"].as_u64().unwrap() as usize;
            for r in &records[first..first + n] {
                let rec = Record::new(&r.pk, &r.data).with_optional_explicit_hash_key(r.ehk.as_deref());
                fixed.add(rec).unwrap();
                owned.try_add(rec).unwrap();
            }
            let size = fixed.encoded_len();
            assert_eq!(owned.encoded_len(), size);
            let done = fixed.finish().unwrap();
            assert_eq!(done.data.len(), size);
            matches_expected(&name, done.data, want);
            support::assert_keys(done.partition_key, done.explicit_hash_key, want, &name);
            assert_eq!(done.record_count, n);
            let agg = owned.finish().unwrap();
            matches_expected(&name, agg.data(), want);
            assert_eq!(agg.partition_key(), done.partition_key);
            assert_eq!(agg.explicit_hash_key(), done.explicit_hash_key);
            owned.recycle(agg);
            aggregates += 1;
        }
        cases += 1;
    }
    assert!(
        cases >= 9 && aggregates >= 15,
        "{cases} cases, {aggregates} aggregates"
    );
}

/// Every aggregated fixture, deaggregated and aggregated again (tags
/// included): the same user records come back, and the canonically written
/// ones (real KPL output, the Python encoder's, the tagged record) come back
/// byte for byte.
#[test]
fn every_aggregated_fixture_is_rebuilt_tags_included() {
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/deagg/manifest.json").unwrap())
            .unwrap();
    let mut rebuilt = 0;
    let mut identical = 0;
    let mut tagged = 0;
    for case in manifest.iter().filter(|c| c["expect"] == "aggregated") {
        let name = case["name"].as_str().unwrap();
        if cfg!(miri) && case["len"].as_u64().unwrap() > 65_536 {
            continue;
        }
        let blob = std::fs::read(format!("tests/fixtures/deagg/{name}.bin")).unwrap();
        let Deaggregated::Aggregated(agg) = kinesis_agg::deaggregate(&blob).unwrap() else {
            panic!("{name}")
        };
        let mut out = RecordAggregator::with_limit(blob.len() + 1024).unwrap();
        if agg.is_empty() {
            // Nothing to rebuild, and no empty aggregate is ever produced.
            assert_eq!(out.finish(), None, "{name}");
            continue;
        }
        for r in agg.records() {
            let tags: Vec<Tag<'_>> = r.tags.collect();
            tagged += usize::from(!tags.is_empty());
            out.try_add(
                Record::new(r.partition_key, r.data)
                    .with_optional_explicit_hash_key(r.explicit_hash_key)
                    .with_tags(&tags),
            )
            .unwrap();
        }
        let size = out.encoded_len();
        let again = out.finish().unwrap();
        assert_eq!(again.data().len(), size, "{name}: predicted size");
        let Deaggregated::Aggregated(back) = kinesis_agg::deaggregate(again.data()).unwrap() else {
            panic!("{name}")
        };
        assert!(back.records().eq(agg.records()), "{name}: user records differ");
        // The tags' own fields, record by record (Tags compares them too).
        for (x, y) in back.records().zip(agg.records()) {
            assert_eq!(x.tags.collect::<Vec<_>>(), y.tags.collect::<Vec<_>>(), "{name}");
        }
        let canonical =
            name.starts_with("real_") || name.starts_with("py_") || name == "tags_with_and_without_values";
        if canonical {
            assert!(again.data() == &blob[..], "{name}: rebuilt bytes differ");
            identical += 1;
        }
        rebuilt += 1;
    }
    assert!(identical >= if cfg!(miri) { 9 } else { 10 }, "{identical}");
    assert!(rebuilt >= identical + 4, "{rebuilt}");
    // The tagged fixture and the one with unknown fields inside a tag.
    assert!(tagged >= 2, "{tagged}");
}

#[test]
fn tags_are_written_canonically_and_sized_exactly() {
    // Google protobuf's encoding of Record {partition_key_index: 0, data:
    // "d", tags: [{key: "k", value: "v"}, {key: "only"}]}.
    let tags = [
        Tag {
            key: "k",
            value: Some("v"),
        },
        Tag {
            key: "only",
            value: None,
        },
    ];
    let mut buf = [0u8; 256];
    let mut agg = Aggregator::<_, 2>::new(&mut buf[..]);
    let rec = Record::new("p", b"d").with_tags(&tags);
    let predicted = agg.encoded_len_with(&rec).unwrap();
    agg.add(rec).unwrap();
    // Known keys with tags take the full path; sizes still agree.
    let again = Record::new("p", b"e").with_tags(&tags[..1]);
    let predicted2 = agg.encoded_len_with(&again).unwrap();
    agg.add(again).unwrap();
    assert_eq!(agg.encoded_len(), predicted2);
    let done = agg.finish().unwrap();
    let body = &done.data[4..done.data.len() - 16];
    let first: &[u8] = &[
        0x1A, 0x15, 0x08, 0x00, 0x1A, 0x01, b'd', 0x22, 0x06, 0x0A, 0x01, b'k', 0x12, 0x01, b'v', 0x22, 0x06,
        0x0A, 0x04, b'o', b'n', b'l', b'y',
    ];
    let second: &[u8] = &[
        0x1A, 0x0D, 0x08, 0x00, 0x1A, 0x01, b'e', 0x22, 0x06, 0x0A, 0x01, b'k', 0x12, 0x01, b'v',
    ];
    assert_eq!(body, [&[0x0A, 0x01, b'p'][..], first, second].concat());
    assert_eq!(predicted, 4 + 3 + first.len() + 16);
}

#[test]
fn keys_are_validated_on_add_and_the_aggregator_is_unchanged() {
    let mut buf = [0u8; 4096];
    let mut agg = Aggregator::<_, 16>::new(&mut buf[..]);
    agg.add(Record::new("ok", b"x")).unwrap();
    let before = agg.encoded_len();
    let long = "k".repeat(257);
    let astral = "😀".repeat(129); // 258 UTF-16 code units, 516 bytes
    let cases: Vec<(Record<'_>, Error)> = vec![
        (Record::new("", b"x"), Error::InvalidPartitionKey { utf16_len: 0 }),
        (
            Record::new(&long, b"x"),
            Error::InvalidPartitionKey { utf16_len: 257 },
        ),
        (
            Record::new(&astral, b"x"),
            Error::InvalidPartitionKey { utf16_len: 258 },
        ),
        (
            Record::new("ok", b"x").with_explicit_hash_key(""),
            Error::InvalidHashKey { position: 0 },
        ),
        (
            Record::new("ok", b"x").with_explicit_hash_key("01"),
            Error::InvalidHashKey { position: 0 },
        ),
        (
            Record::new("ok", b"x").with_explicit_hash_key("1x"),
            Error::InvalidHashKey { position: 1 },
        ),
        (
            Record::new("ok", b"x").with_explicit_hash_key("340282366920938463463374607431768211456"),
            Error::InvalidHashKey { position: 38 },
        ),
    ];
    for (rec, want) in cases {
        let refused = agg.add(rec).unwrap_err();
        assert_eq!(refused.error, want);
        assert_eq!(refused.record, rec, "handed back unchanged");
        assert_eq!(agg.encoded_len_with(&rec), Err(want));
        assert!(!refused.to_string().is_empty());
    }
    assert_eq!(agg.encoded_len(), before);
    assert_eq!(agg.record_count(), 1);
    // The limits themselves are accepted.
    agg.add(Record::new(&"k".repeat(256), b"")).unwrap();
    agg.add(Record::new(&"😀".repeat(128), b"")).unwrap();
    agg.add(Record::new("ok", b"").with_explicit_hash_key("340282366920938463463374607431768211455"))
        .unwrap();
    agg.add(Record::new("ok", b"").with_explicit_hash_key("0"))
        .unwrap();
    let done = agg.finish().unwrap();
    assert_eq!(done.record_count, 5);
    assert_eq!(support::pb::ours(done.data).unwrap().unwrap().len(), 5);
}

#[test]
fn a_record_too_large_alone_is_refused_with_its_own_error_and_nothing_is_emitted() {
    // 30 bytes: a one-byte key and empty data fit exactly.
    let mut agg = RecordAggregator::with_limit(kinesis_agg::MIN_LIMIT).unwrap();
    assert_eq!(agg.encoded_len_with(&Record::new("a", b"")), Ok(29));
    assert_eq!(agg.add(Record::new("a", b"")).unwrap(), None);
    // The next identical record needs 6 more bytes: the first aggregate is
    // returned and the record starts the next.
    let first = agg.add(Record::new("a", b"")).unwrap().unwrap();
    assert_eq!(first.data().len() + first.partition_key().len(), 30);
    // One more byte of data can never fit: refused, and the pending
    // aggregate stays (no empty or lost aggregate).
    assert_eq!(
        agg.add(Record::new("a", b"x")),
        Err(Error::RecordTooLarge { size: 31, limit: 30 })
    );
    assert_eq!(
        agg.add(Record::new("ab", b"")),
        Err(Error::RecordTooLarge { size: 32, limit: 30 })
    );
    assert_eq!(agg.record_count(), 1);
    let second = agg.finish().unwrap();
    assert_eq!(second.record_count(), 1);
    assert!(agg.finish().is_none());
    // Limits outside the supported range.
    assert_eq!(
        RecordAggregator::with_limit(29).unwrap_err(),
        Error::InvalidLimit { limit: 29 }
    );
    assert!(RecordAggregator::with_limit(kinesis_agg::MAX_LIMIT + 1).is_err());
    let mut b = [0u8; 8];
    assert!(Aggregator::<_, 4>::with_limit(&mut b[..], 10_485_761).is_err());
}

#[test]
fn the_limit_counts_the_outer_partition_key_exactly() {
    // Data sized so that the blob plus the key is exactly the limit.
    let key = "😀".repeat(64); // 256 bytes, 128 UTF-16 code units
    let limit = 4000;
    let mut agg = RecordAggregator::with_limit(limit).unwrap();
    let probe = agg.encoded_len_with(&Record::new(&key, b"")).unwrap();
    // Find the largest data that fits.
    let mut n = limit - probe - key.len();
    while agg.encoded_len_with(&Record::new(&key, &vec![0; n])).unwrap() + key.len() > limit {
        n -= 1;
    }
    let data = vec![7u8; n];
    assert_eq!(
        agg.encoded_len_with(&Record::new(&key, &data)).unwrap() + key.len(),
        limit
    );
    agg.add(Record::new(&key, &data)).unwrap();
    let too_big = vec![7u8; n + 1];
    assert!(matches!(
        agg.add(Record::new(&key, &too_big)),
        Err(Error::RecordTooLarge { .. })
    ));
    let done = agg.finish().unwrap();
    assert_eq!(done.data().len() + done.partition_key().len(), limit);
}

#[test]
fn a_small_caller_buffer_caps_the_aggregate() {
    let mut buf = [0u8; 64];
    let mut agg = Aggregator::<_, 8>::new(&mut buf[..]);
    let mut sizes = Vec::new();
    let mut count = 0;
    for i in 0..20u8 {
        let data = [i; 5];
        let rec = Record::new("p", &data);
        match agg.add(rec) {
            Ok(()) => count += 1,
            Err(r) => {
                assert_eq!(r.error, Error::Full);
                let done = agg.finish().unwrap();
                assert!(done.data.len() <= 64);
                sizes.push(done.data.len());
                agg.add(rec).unwrap();
                count += 1;
            }
        }
    }
    let last = agg.finish().unwrap();
    assert!(last.data.len() <= 64);
    assert_eq!(count, 20);
    assert!(sizes.len() >= 4, "{sizes:?}");
    // Data too large for the buffer even alone.
    let mut agg = Aggregator::<_, 8>::new(&mut buf[..]);
    assert!(matches!(
        agg.add(Record::new("p", &[0; 60])).unwrap_err().error,
        Error::RecordTooLarge { .. }
    ));
}

#[test]
fn the_key_index_takes_keys_per_table_and_refuses_the_next_with_key_capacity() {
    let mut buf = [0u8; 4096];
    // KEYS = 4: four partition keys and four explicit hash keys.
    let mut agg = Aggregator::<_, 4>::new(&mut buf[..]);
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    let ehks: Vec<String> = (0..20).map(|i| (i * 1000).to_string()).collect();
    for (k, e) in keys[..3].iter().zip(&ehks) {
        agg.add(Record::new(k, b"v").with_explicit_hash_key(e)).unwrap();
    }
    // Three of each so far; a fourth of each fits.
    agg.add(Record::new(&keys[3], b"v").with_explicit_hash_key(&ehks[3]))
        .unwrap();
    // Both tables full: known keys still fit, in any combination.
    agg.add(Record::new(&keys[0], b"v").with_explicit_hash_key(&ehks[3]))
        .unwrap();
    agg.add(Record::new(&keys[2], b"v")).unwrap();
    let before = agg.encoded_len();
    let pk_full = Error::KeyCapacity {
        table: Table::PartitionKey,
        capacity: 4,
    };
    let ehk_full = Error::KeyCapacity {
        table: Table::ExplicitHashKey,
        capacity: 4,
    };
    // A fifth partition key, with or without a known explicit hash key.
    assert_eq!(agg.add(Record::new(&keys[4], b"v")).unwrap_err().error, pk_full);
    assert_eq!(
        agg.add(Record::new(&keys[4], b"v").with_explicit_hash_key(&ehks[0]))
            .unwrap_err()
            .error,
        pk_full
    );
    // A fifth explicit hash key with a known partition key.
    assert_eq!(
        agg.add(Record::new(&keys[1], b"v").with_explicit_hash_key(&ehks[4]))
            .unwrap_err()
            .error,
        ehk_full
    );
    assert_eq!(pk_full.kind(), ErrorKind::Full);
    assert_eq!(ehk_full.kind(), ErrorKind::Full);
    assert_eq!(agg.encoded_len(), before, "refusals change nothing");
    assert_eq!(agg.record_count(), 6);
    {
        let done = agg.finish().unwrap();
        assert_eq!(done.record_count, 6);
        let Deaggregated::Aggregated(back) = kinesis_agg::deaggregate_fixed::<4>(done.data).unwrap() else {
            panic!()
        };
        assert_eq!(
            (back.partition_keys().len(), back.explicit_hash_keys().len()),
            (4, 4)
        );
    }
    // A new aggregate takes new keys again.
    agg.add(Record::new(&keys[7], b"v").with_explicit_hash_key(&ehks[7]))
        .unwrap();
    // A RecordAggregator never refuses a key: it grows its index.
    let mut owned = RecordAggregator::new();
    for k in &keys {
        assert_eq!(owned.add(Record::new(k, b"v")), Ok(None));
    }
    assert_eq!(owned.finish().unwrap().record_count(), 20);
}

#[test]
fn callbacks_see_every_completed_aggregate() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut agg = RecordAggregator::with_limit(100).unwrap();
    let s = Arc::clone(&seen);
    agg.on_complete(move |a| s.lock().unwrap().push(a.record_count()));
    let mut returned = Vec::new();
    for i in 0..30u8 {
        if let Some(a) = agg.add(Record::new("key", &[i; 20])).unwrap() {
            returned.push(a.record_count());
        }
    }
    returned.extend(agg.finish().map(|a| a.record_count()));
    assert_eq!(*seen.lock().unwrap(), returned);
    assert_eq!(returned.iter().sum::<usize>(), 30);
}

#[test]
fn into_data_gives_exactly_the_blob() {
    let mut agg = RecordAggregator::new();
    agg.add(Record::new("k", b"hello").with_explicit_hash_key("42"))
        .unwrap();
    let a = agg.finish().unwrap();
    let bytes = a.data().to_vec();
    assert_eq!(a.explicit_hash_key(), Some("42"));
    assert_eq!(a.into_data(), bytes);
    assert_eq!(&bytes[..4], &kinesis_agg::MAGIC);
}

/// The boundary between "full, finish and add again" and "too large even
/// alone" for records with an explicit hash key and tags: a record whose
/// lone aggregate is exactly the limit is taken after a finish; one byte
/// more is refused with its exact size.
#[test]
fn the_never_fits_boundary_counts_explicit_hash_keys_and_tags() {
    let tags = [
        Tag {
            key: "unit",
            value: Some("C"),
        },
        Tag {
            key: "raw",
            value: None,
        },
    ];
    let limit = 600;
    for with_tags in [false, true] {
        for ehk in [None, Some("340282366920938463463374607431768211455")] {
            let record = |n: usize, data: &'static [u8]| {
                let r = Record::new("pk", &data[..n]).with_optional_explicit_hash_key(ehk);
                if with_tags { r.with_tags(&tags) } else { r }
            };
            static DATA: [u8; 600] = [9; 600];
            // What an aggregate of only this record counts (blob + outer key).
            let alone = |n: usize| {
                RecordAggregator::new()
                    .encoded_len_with(&record(n, &DATA))
                    .unwrap()
                    + 2
            };
            let n = (0..600).rev().find(|&n| alone(n) <= limit).unwrap();
            assert_eq!(alone(n), limit, "{with_tags} {ehk:?}: lengths step by one here");
            let mut agg = RecordAggregator::with_limit(limit).unwrap();
            agg.add(Record::new("pk", b"first")).unwrap();
            // Fits alone: the pending aggregate is returned, the record kept.
            let done = agg.add(record(n, &DATA)).unwrap().unwrap();
            assert_eq!(done.record_count(), 1);
            assert_eq!(agg.encoded_len() + 2, limit);
            // One byte more never fits: refused with its size, nothing changes.
            let before = agg.encoded_len();
            assert_eq!(
                agg.add(record(n + 1, &DATA)),
                Err(Error::RecordTooLarge {
                    size: limit + 1,
                    limit
                })
            );
            assert_eq!(agg.encoded_len(), before);
            let mut buf = [0u8; 600];
            let mut fixed = Aggregator::<_, 2>::with_limit(&mut buf[..], limit).unwrap();
            fixed.add(Record::new("pk", b"first")).unwrap();
            assert_eq!(fixed.add(record(n, &DATA)).unwrap_err().error, Error::Full);
            assert_eq!(
                fixed.add(record(n + 1, &DATA)).unwrap_err().error,
                Error::RecordTooLarge {
                    size: limit + 1,
                    limit
                }
            );
        }
    }
}

#[test]
fn an_invalid_partition_key_reports_its_exact_length() {
    for (key, units) in [
        ("".to_owned(), 0),
        ("k".repeat(257), 257),
        ("😀".repeat(129), 258),
        ("k".repeat(5000), 5000),
        ("é".repeat(3000), 3000),
    ] {
        assert_eq!(
            kinesis_agg::check_partition_key(&key),
            Err(Error::InvalidPartitionKey { utf16_len: units })
        );
    }
}

/// The caller's buffer as the bound: an aggregate may fill it to the last
/// byte; a record that would fill it alone is `Full` while another record
/// is pending; one byte more can never fit and says so with the buffer's
/// bound as the limit.
#[test]
fn a_caller_buffer_may_be_filled_exactly() {
    let data = [5u8; 100];
    let rec = Record::new("key", &data).with_explicit_hash_key("77");
    let alone = RecordAggregator::new().encoded_len_with(&rec).unwrap();
    // Exactly the lone aggregate's size.
    let mut buf = vec![0u8; alone];
    let mut agg = Aggregator::<_, 2>::new(&mut buf[..]);
    agg.add(rec).unwrap();
    assert_eq!(agg.finish().unwrap().data.len(), alone);
    // While another record is pending, it does not fit now: Full.
    agg.add(Record::new("k", b"")).unwrap();
    assert_eq!(agg.add(rec).unwrap_err().error, Error::Full);
    agg.finish().unwrap();
    agg.add(rec).unwrap();
    agg.finish().unwrap();
    // One byte short: never fits, the bound named is the buffer's (plus the
    // outer partition key, as the limit counts it).
    let mut small = vec![0u8; alone - 1];
    let mut agg = Aggregator::<_, 2>::new(&mut small[..]);
    assert_eq!(
        agg.add(rec).unwrap_err().error,
        Error::RecordTooLarge {
            size: alone + 3,
            limit: alone - 1 + 3
        }
    );
    agg.add(Record::new("k", b"")).unwrap();
    assert_eq!(
        agg.add(rec).unwrap_err().error,
        Error::RecordTooLarge {
            size: alone + 3,
            limit: alone - 1 + 3
        }
    );
}

/// Aggregates completed without their MD5, then digested one or two at a
/// time, are byte for byte what `finish` makes, and report the same keys
/// and sizes before the MD5 as after.
#[test]
fn undigested_aggregates_digested_later_are_the_same_bytes() {
    use kinesis_agg::Aggregate;
    let fill = |agg: &mut RecordAggregator, seed: usize, n: usize| {
        for i in 0..n {
            let key = format!("key-{}", (i * 7 + seed) % 13);
            let data = vec![(i + seed) as u8; 10 + (i * 31 + seed) % 90];
            let r = Record::new(&key, &data);
            let ehk = format!("{}", i * 1_000_003);
            let r = if i % 5 == 1 {
                r.with_explicit_hash_key(&ehk)
            } else {
                r
            };
            agg.add(r).unwrap();
        }
    };
    for (n, m) in [(1, 1), (5, 40), (40, 5), (300, 301), (2, 3000)] {
        let (mut a1, mut a2) = (RecordAggregator::new(), RecordAggregator::new());
        let (mut b1, mut b2) = (RecordAggregator::new(), RecordAggregator::new());
        fill(&mut a1, 1, n);
        fill(&mut a2, 1, n);
        fill(&mut b1, 2, m);
        fill(&mut b2, 2, m);
        let (want_a, want_b) = (a1.finish().unwrap(), b1.finish().unwrap());
        let (got_a, got_b) = (a2.finish_undigested().unwrap(), b2.finish_undigested().unwrap());
        for (got, want) in [(&got_a, &want_a), (&got_b, &want_b)] {
            assert_eq!(got.partition_key(), want.partition_key());
            assert_eq!(got.explicit_hash_key(), want.explicit_hash_key());
            assert_eq!(got.record_count(), want.record_count());
            assert_eq!(got.counted_len(), want.counted_len());
        }
        let got = Aggregate::digest_all([got_a, got_b]);
        assert_eq!(got, [want_a.clone(), want_b.clone()], "{n} and {m} records");
        // Alone, and the pair the other way round.
        fill(&mut a2, 1, n);
        assert_eq!(a2.finish_undigested().unwrap().digest(), want_a);
        fill(&mut a2, 1, n);
        fill(&mut b2, 2, m);
        let got = Aggregate::digest_all([b2.finish_undigested().unwrap(), a2.finish_undigested().unwrap()]);
        assert_eq!(got, [want_b, want_a]);
    }
    // Many at once, of many sizes (more than the lanes, so lanes are
    // refilled), in order; and none.
    let mut want = Vec::new();
    let mut later = Vec::new();
    for i in 0..3 * kinesis_agg::MD5_LANES + 1 {
        let (mut x, mut y) = (RecordAggregator::new(), RecordAggregator::new());
        let n = (i * 37) % 500 + 1;
        fill(&mut x, i, n);
        fill(&mut y, i, n);
        want.push(x.finish().unwrap());
        later.push(y.finish_undigested().unwrap());
    }
    assert_eq!(Aggregate::digest_all(later), want);
    assert!(Aggregate::digest_all([]).is_empty());
    // Nothing to finish: nothing, and no callback for undigested ones.
    let mut agg = RecordAggregator::new();
    assert!(agg.finish_undigested().is_none());
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = seen.clone();
    agg.on_complete(move |_| {
        s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    agg.add(Record::new("k", b"x")).unwrap();
    let _ = agg.finish_undigested().unwrap();
    agg.add(Record::new("k", b"x")).unwrap();
    let _ = agg.finish().unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// `check` answers what `add` then does, for every kind of answer: taken,
/// full (bytes or key capacity), too large alone, invalid keys; and it
/// changes nothing.
#[test]
fn check_answers_what_add_does_and_changes_nothing() {
    let mut rng = support::rng::Rng::new(0xC4EC_0001);
    let mut fixed = Aggregator::<_, 3>::with_limit(vec![0u8; 600], 600).unwrap();
    let mut owned = RecordAggregator::with_limit(700).unwrap();
    let mut seen = std::collections::HashSet::new();
    for i in 0..3000 {
        let pk = match rng.below(20) {
            0 => String::new(),
            n => format!("key-{}", n % 6),
        };
        let ehk = match rng.below(6) {
            0 => Some("not a number".to_owned()),
            1 | 2 => Some(rng.below(4).to_string()),
            _ => None,
        };
        let len = match rng.below(30) {
            0 => 800,
            _ => rng.below(120) as usize,
        };
        let data = rng.bytes(len);
        let r = Record::new(&pk, &data).with_optional_explicit_hash_key(ehk.as_deref());

        // Each aggregator: (size before, check, size after check, add).
        let answers = [
            {
                let before = (fixed.record_count(), fixed.encoded_len());
                let checked = fixed.check(&r);
                let after = (fixed.record_count(), fixed.encoded_len());
                (before, checked, after, fixed.add(r).map_err(|r| r.error))
            },
            {
                let before = (owned.record_count(), owned.encoded_len());
                let checked = owned.check(&r);
                let after = (owned.record_count(), owned.encoded_len());
                (before, checked, after, owned.try_add(r).map_err(|r| r.error))
            },
        ];
        for (before, checked, after, added) in answers {
            assert_eq!(before, after, "record {i}: check changed the aggregator");
            assert_eq!(checked, added, "record {i}");
            if let Err(e) = added {
                seen.insert(core::mem::discriminant(&e));
            }
        }
        if fixed.check(&r).is_err_and(|e| e.kind() == ErrorKind::Full) {
            fixed.finish();
        }
        if owned.check(&r) == Err(Error::Full) {
            assert!(owned.finish().is_some());
            assert_eq!(owned.check(&r), Ok(()), "record {i}: fits a fresh aggregate");
        }
    }
    // Full, KeyCapacity, RecordTooLarge and both invalid keys were seen.
    assert!(seen.len() >= 5, "{} kinds of refusal", seen.len());
}
