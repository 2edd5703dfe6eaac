//! Aggregation: byte-identical to the reference encoders, real KPL output
//! rebuilt byte for byte, key validation, limits and refusals.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kinesis_agg::{Aggregator, Deaggregated, Error, Record, RecordAggregator};
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
            assert_eq!(common::md5_hex(got), want["md5"].as_str().unwrap(), "{name}");
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
                let rec = Record {
                    partition_key: &r.pk,
                    explicit_hash_key: r.ehk.as_deref(),
                    data: &r.data,
                };
                fixed.add(rec).unwrap();
                owned.try_add(rec).unwrap();
            }
            let size = fixed.encoded_len();
            assert_eq!(owned.encoded_len(), size);
            let done = fixed.finish().unwrap();
            assert_eq!(done.data.len(), size);
            matches_expected(&name, done.data, want);
            assert_eq!(
                done.partition_key,
                want["partition_key"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                done.explicit_hash_key,
                want["explicit_hash_key"].as_str(),
                "{name}"
            );
            assert_eq!(done.records, n);
            let agg = owned.flush().unwrap();
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

#[test]
fn real_kpl_output_is_rebuilt_byte_for_byte() {
    let manifest: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/deagg/manifest.json").unwrap())
            .unwrap();
    let mut rebuilt = 0;
    for case in manifest.iter().filter(|c| c["expect"] == "aggregated") {
        let name = case["name"].as_str().unwrap();
        // Hand-built bodies are deliberately not canonical.
        if !(name.starts_with("real_") || name.starts_with("py_")) {
            continue;
        }
        if cfg!(miri) && case["len"].as_u64().unwrap() > 65_536 {
            continue;
        }
        let blob = std::fs::read(format!("tests/fixtures/deagg/{name}.bin")).unwrap();
        let Deaggregated::Aggregated(agg) = kinesis_agg::deaggregate(&blob).unwrap() else {
            panic!("{name}")
        };
        let mut out = RecordAggregator::with_limit(blob.len() + 1024).unwrap();
        for r in agg.records() {
            out.try_add(Record {
                partition_key: r.partition_key,
                explicit_hash_key: r.explicit_hash_key,
                data: r.data,
            })
            .unwrap();
        }
        let again = out.flush().unwrap();
        assert!(again.data() == &blob[..], "{name}: rebuilt bytes differ");
        rebuilt += 1;
    }
    assert!(rebuilt >= if cfg!(miri) { 8 } else { 9 }, "{rebuilt}");
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
            Error::InvalidExplicitHashKey { offset: 0 },
        ),
        (
            Record::new("ok", b"x").with_explicit_hash_key("01"),
            Error::InvalidExplicitHashKey { offset: 0 },
        ),
        (
            Record::new("ok", b"x").with_explicit_hash_key("1x"),
            Error::InvalidExplicitHashKey { offset: 1 },
        ),
        (
            Record::new("ok", b"x").with_explicit_hash_key("340282366920938463463374607431768211456"),
            Error::InvalidExplicitHashKey { offset: 38 },
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
    assert_eq!(done.records, 5);
    assert_eq!(common::ours(done.data).unwrap().unwrap().len(), 5);
}

#[test]
fn a_record_too_large_alone_is_refused_with_its_own_error_and_nothing_is_emitted() {
    // 30 bytes: a one-byte key and empty data fit exactly.
    let mut agg = RecordAggregator::with_limit(kinesis_agg::MIN_LIMIT).unwrap();
    assert_eq!(agg.encoded_len_with(&Record::new("a", b"")), Ok(29));
    assert_eq!(agg.add("a", b"", None).unwrap(), None);
    // The next identical record needs 6 more bytes: the first aggregate is
    // returned and the record starts the next.
    let first = agg.add("a", b"", None).unwrap().unwrap();
    assert_eq!(first.data().len() + first.partition_key().len(), 30);
    // One more byte of data can never fit: refused, and the pending
    // aggregate stays (no empty or lost aggregate).
    assert_eq!(
        agg.add("a", b"x", None),
        Err(Error::RecordTooLarge { size: 31, limit: 30 })
    );
    assert_eq!(
        agg.add("ab", b"", None),
        Err(Error::RecordTooLarge { size: 32, limit: 30 })
    );
    assert_eq!(agg.record_count(), 1);
    let second = agg.flush().unwrap();
    assert_eq!(second.record_count(), 1);
    assert!(agg.flush().is_none());
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
    agg.add(&key, &data, None).unwrap();
    let too_big = vec![7u8; n + 1];
    assert!(matches!(
        agg.add(&key, &too_big, None),
        Err(Error::RecordTooLarge { .. })
    ));
    let done = agg.flush().unwrap();
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
fn the_key_index_capacity_refuses_new_keys_with_full() {
    let mut buf = [0u8; 4096];
    // KEYS = 8: eight distinct keys, partition and explicit hash keys
    // together.
    let mut agg = Aggregator::<_, 8>::new(&mut buf[..]);
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    for k in &keys[..5] {
        agg.add(Record::new(k, b"v")).unwrap();
    }
    agg.add(Record::new(&keys[5], b"v").with_explicit_hash_key("7"))
        .unwrap();
    // Seven keys so far; both keys known: still fits.
    agg.add(Record::new(&keys[5], b"v").with_explicit_hash_key("7"))
        .unwrap();
    // Two new keys (the eighth and ninth) do not fit; nothing changes.
    let before = agg.encoded_len();
    assert_eq!(
        agg.add(Record::new(&keys[6], b"v").with_explicit_hash_key("8"))
            .unwrap_err()
            .error,
        Error::Full
    );
    assert_eq!(agg.encoded_len(), before);
    // One new key (the eighth) fits; then no more new keys.
    agg.add(Record::new(&keys[6], b"v")).unwrap();
    agg.add(Record::new(&keys[3], b"v").with_explicit_hash_key("7"))
        .unwrap();
    assert_eq!(
        agg.add(Record::new(&keys[7], b"v")).unwrap_err().error,
        Error::Full
    );
    assert_eq!(
        agg.add(Record::new(&keys[0], b"v").with_explicit_hash_key("9"))
            .unwrap_err()
            .error,
        Error::Full
    );
    let done = agg.finish().unwrap();
    assert_eq!(done.records, 9);
    agg.add(Record::new(&keys[7], b"v")).unwrap();
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
        if let Some(a) = agg.add("key", &[i; 20], None).unwrap() {
            returned.push(a.record_count());
        }
    }
    returned.extend(agg.flush().map(|a| a.record_count()));
    assert_eq!(*seen.lock().unwrap(), returned);
    assert_eq!(returned.iter().sum::<usize>(), 30);
}

#[test]
fn into_data_gives_exactly_the_blob() {
    let mut agg = RecordAggregator::new();
    agg.add("k", b"hello", Some("42")).unwrap();
    let a = agg.flush().unwrap();
    let bytes = a.data().to_vec();
    assert_eq!(a.explicit_hash_key(), Some("42"));
    assert_eq!(a.into_data(), bytes);
    assert_eq!(&bytes[..4], &kinesis_agg::MAGIC);
}
