//! The public API's smaller surfaces: messages, defaults, conversions,
//! accessors. Each assertion checks what a caller relies on.

mod support;

use kinesis_agg::{
    Aggregator, Deaggregated, Error, ErrorKind, HashKeyRange, KeyTable, Options, OutOfRange, OwnedRecord,
    PlainReason, Record, RecordAggregator, Required, ShardMap, Table,
};

/// Every variant's sample, distinct message and offset are checked in
/// `src/error.rs` (a match without a catch-all there makes a new variant
/// need a sample); here, what a caller relies on of particular ones.
#[test]
fn every_error_says_what_and_where() {
    for e in [
        Error::Full,
        Error::Truncated { offset: 9 },
        Error::InvalidLimit { limit: 3 },
    ] {
        // Copy, and an std::error::Error.
        let copy = e;
        let _: &dyn std::error::Error = &copy;
    }
    assert!(
        Error::MissingField {
            offset: 1,
            field: Required::TagKey
        }
        .to_string()
        .contains("Tag.key")
    );
    assert!(
        Error::IndexOutOfRange {
            offset: 1,
            table: Table::ExplicitHashKey,
            index: 9,
            len: 2
        }
        .to_string()
        .contains("explicit hash key index 9")
    );
    assert!(
        Error::RecordTooLarge {
            size: 2000,
            limit: 1000
        }
        .to_string()
        .contains("2000")
    );
    assert!(Error::InvalidLimit { limit: 3 }.to_string().contains("10485760"));
    let index = Error::InvalidIndex { slots: 5 }.to_string();
    assert!(
        index.contains("5 slots") && index.contains("8 slots per key"),
        "{index}"
    );
    assert_eq!(
        Error::InvalidHashKey { position: 2 }.kind(),
        ErrorKind::InvalidRecord
    );
    assert!(
        Error::KeyCapacity {
            table: Table::PartitionKey,
            capacity: 6
        }
        .to_string()
        .contains("6 partition key keys")
    );
}

/// The owning aggregators, their outputs and the shard map can move into a
/// spawned task or thread (callbacks must be `Send`).
#[test]
fn owning_types_are_send_and_sync_where_they_should_be() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<RecordAggregator>();
    send::<kinesis_agg::ShardedAggregator>();
    send::<kinesis_agg::Aggregate>();
    send::<kinesis_agg::ShardAggregate>();
    send::<Aggregator<Vec<u8>, 8>>();
    sync::<kinesis_agg::Aggregate>();
    sync::<kinesis_agg::ShardAggregate>();
    sync::<ShardMap>();
    sync::<Error>();
    // And for real: an aggregator with a callback, on another thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut agg = RecordAggregator::with_limit(100).unwrap();
    agg.on_complete(move |a| tx.send(a.record_count()).unwrap());
    let handle = std::thread::spawn(move || {
        for i in 0..10u8 {
            agg.add(Record::new("k", &[i; 30])).unwrap();
        }
        agg.finish().map(|a| a.record_count())
    });
    let last = handle.join().unwrap().unwrap();
    let counts: Vec<usize> = rx.iter().collect();
    assert_eq!(counts.iter().sum::<usize>(), 10);
    assert_eq!(*counts.last().unwrap(), last);
}

#[test]
fn aggregates_compare_hash_and_clone_by_what_they_hold() {
    use std::hash::{BuildHasher, RandomState};
    let make = |limit: usize, ehk: Option<&str>| {
        let mut agg = RecordAggregator::with_limit(limit).unwrap();
        agg.add(Record::new("k", b"same").with_optional_explicit_hash_key(ehk))
            .unwrap();
        agg.finish().unwrap()
    };
    // Same records, buffers of different lengths (the limit): equal.
    let (a, b) = (make(1000, None), make(100_000, None));
    assert_eq!(a, b);
    let h = RandomState::new();
    assert_eq!(h.hash_one(&a), h.hash_one(&b));
    // A clone holds the blob only, not the limit-sized buffer.
    let c = b.clone();
    assert_eq!(c, b);
    assert_eq!(c.data(), b.data());
    assert_eq!(c.partition_key(), "k");
    assert_eq!(c.record_count(), 1);
    assert_eq!(c.clone().into_data().capacity(), b.data().len());
    // Different records, or an outer explicit hash key: not equal.
    assert_ne!(make(1000, Some("5")), a);
    let mut other = RecordAggregator::new();
    other.add(Record::new("k", b"diff")).unwrap();
    let other = other.finish().unwrap();
    assert_ne!(other, a);
    // The hash looks at the contents: these two differ (with a fixed
    // hasher, so the test is the same every run).
    let fixed = std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    assert_ne!(fixed.hash_one(&other), fixed.hash_one(&a));
}

#[test]
fn owned_aggregator_counts_empties_and_callbacks() {
    let mut agg = RecordAggregator::with_limit(1000).unwrap();
    assert!(agg.is_empty());
    agg.add(Record::new("a-key", b"v")).unwrap();
    assert!(!agg.is_empty());
    let done = agg.finish().unwrap();
    assert!(agg.is_empty());
    // What Kinesis counts: the blob and the outer partition key.
    assert_eq!(done.counted_len(), done.data().len() + "a-key".len());
    // Callbacks run on finish until cleared.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s = seen.clone();
    agg.on_complete(move |_| {
        s.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    agg.add(Record::new("k", b"1")).unwrap();
    agg.finish().unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1);
    agg.clear_callbacks();
    agg.add(Record::new("k", b"2")).unwrap();
    agg.finish().unwrap();
    assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn a_recycled_buffer_of_another_limit_is_not_used() {
    // A small aggregator's buffer handed to a large one: the large one
    // still fills to its own limit.
    let mut small = RecordAggregator::with_limit(100).unwrap();
    small.add(Record::new("k", b"x")).unwrap();
    let tiny = small.finish().unwrap();
    let mut big = RecordAggregator::with_limit(10_000).unwrap();
    big.recycle(tiny);
    let mut done = None;
    let mut n = 0;
    while done.is_none() {
        done = big.add(Record::new("k", &[1u8; 50])).unwrap();
        n += 1;
    }
    let done = done.unwrap();
    assert!(done.counted_len() > 9_900, "{}", done.counted_len());
    assert_eq!(done.record_count(), n - 1);
}

#[test]
fn tags_compare_by_their_contents() {
    use kinesis_agg::Tag;
    let tags_of = |tags: &[Tag<'_>]| {
        let mut agg = RecordAggregator::new();
        agg.add(Record::new("k", b"d").with_tags(tags)).unwrap();
        agg.finish().unwrap().into_data()
    };
    let one = tags_of(&[Tag {
        key: "a",
        value: Some("1"),
    }]);
    let two = tags_of(&[Tag {
        key: "a",
        value: Some("2"),
    }]);
    let none = tags_of(&[]);
    fn first(blob: &[u8]) -> kinesis_agg::Tags<'_> {
        let Deaggregated::Aggregated(a) = kinesis_agg::deaggregate(blob).unwrap() else {
            panic!()
        };
        // Tags borrow the blob, not the tables.
        a.records().next().unwrap().tags
    }
    let rec = first;
    assert_eq!(
        first(&one).collect::<Vec<_>>(),
        [Tag {
            key: "a",
            value: Some("1")
        }]
    );
    assert_eq!(rec(&one), rec(&one));
    assert_ne!(rec(&one), rec(&two));
    assert_ne!(rec(&one), rec(&none));
    assert_ne!(rec(&none), rec(&one));
    assert_eq!(rec(&none), kinesis_agg::Tags::default());
}

#[test]
fn plain_reasons_and_out_of_range_read_well() {
    let reasons = [
        PlainReason::NoMagic,
        PlainReason::TooShort,
        PlainReason::ChecksumMismatch,
        PlainReason::Unparsable(Error::Truncated { offset: 5 }),
    ];
    let texts: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert!(texts[0].contains("magic") && texts[1].contains("20 bytes") && texts[2].contains("MD5"));
    assert!(texts[3].contains("byte 5"));
    let o = OutOfRange {
        sub_sequence_number: 3,
        hash_key: None,
    };
    assert!(o.to_string().contains("user record 3") && o.to_string().contains("not a hash key"));
    let o = OutOfRange {
        sub_sequence_number: 4,
        hash_key: Some(99),
    };
    assert!(o.to_string().contains("99"));
}

#[test]
fn aggregated_record_accessors() {
    assert_eq!(Options::default(), Options::new());
    let mut agg = RecordAggregator::default();
    assert_eq!(agg.limit(), kinesis_agg::DEFAULT_LIMIT);
    agg.add(Record::new("k1", b"one")).unwrap();
    agg.add(Record::new("k2", b"two").with_explicit_hash_key("5"))
        .unwrap();
    assert!(format!("{agg:?}").contains("record_count: 2"));
    let done = agg.finish().unwrap();
    assert!(format!("{done:?}").contains("k1"));
    let blob = done.into_data();
    let Deaggregated::Aggregated(a) = kinesis_agg::deaggregate(&blob).unwrap() else {
        panic!()
    };
    assert!(!a.is_empty());
    assert_eq!(a.body(), &blob[4..blob.len() - 16]);
    assert_eq!(a.partition_keys(), ["k1", "k2"]);
    assert_eq!(a.explicit_hash_keys(), ["5"]);
    let via_into_iter: Vec<_> = (&a).into_iter().map(|r| r.data).collect();
    assert_eq!(via_into_iter, [&b"one"[..], b"two"]);
    let (pks, ehks) = a.into_tables();
    assert_eq!((pks.len(), ehks.len()), (2, 1));
    assert_eq!(KeyTable::capacity(&pks), usize::MAX);
    // A body with tables and no records is valid and empty.
    let body = vec![0x0A, 1, b'k'];
    let blob = [
        &kinesis_agg::MAGIC[..],
        &body,
        &md5::Digest::finalize(<md5::Md5 as md5::Digest>::new_with_prefix(&body)),
    ]
    .concat();
    let Deaggregated::Aggregated(a) = kinesis_agg::deaggregate(&blob).unwrap() else {
        panic!()
    };
    assert!(a.is_empty() && a.records().next().is_none());
}

#[test]
fn no_heap_aggregator_accessors() {
    let mut buf = [0u8; 256];
    let mut agg = Aggregator::<_, 8>::with_limit(&mut buf[..], 200).unwrap();
    assert_eq!(agg.limit(), 200);
    assert!(agg.is_empty());
    agg.add(Record::new("k", b"v")).unwrap();
    assert!(!agg.is_empty());
    assert!(format!("{agg:?}").contains("record_count: 1"));
    assert_eq!(agg.finish().unwrap().record_count, 1);
    let buf = agg.into_inner();
    assert_eq!(buf.len(), 256);
    // Owned storage works as well.
    let mut owned = Aggregator::<[u8; 64], 4>::new([0u8; 64]);
    owned.add(Record::new("k", b"v")).unwrap();
    // magic 4 + key entry 3 + record 7 + MD5 16
    assert_eq!(owned.finish().unwrap().data.len(), 30);
    assert_eq!(owned.into_inner().len(), 64);
}

#[test]
fn owned_records_convert_both_ways() {
    let r = Record::new("key", b"data").with_explicit_hash_key("12");
    let owned = OwnedRecord::from(r);
    assert_eq!(owned.as_record(), r);
    let mut agg = RecordAggregator::new();
    agg.try_add(owned.as_record()).unwrap();
    let blob = agg.finish().unwrap().into_data();
    let Deaggregated::Aggregated(a) = kinesis_agg::deaggregate(&blob).unwrap() else {
        panic!()
    };
    let back: Vec<OwnedRecord> = a.records().map(OwnedRecord::from).collect();
    assert_eq!(back, [owned]);
}

#[cfg(feature = "arbitrary")]
#[test]
fn arbitrary_records_are_always_accepted() {
    use arbitrary::{Arbitrary, Unstructured};
    let mut rng = support::rng::Rng::new(0x9E37_79B9_7F4A_7C15);
    let mut accepted = 0;
    for _ in 0..500 {
        let bytes = rng.bytes(600);
        let mut u = Unstructured::new(&bytes);
        let Ok(records) = Vec::<OwnedRecord>::arbitrary(&mut u) else {
            continue;
        };
        let mut agg = RecordAggregator::new();
        for r in &records {
            agg.try_add(r.as_record()).unwrap();
            accepted += 1;
        }
    }
    assert!(accepted > 100, "{accepted}");
    // Even from no input at all.
    let r = OwnedRecord::arbitrary(&mut Unstructured::new(&[])).unwrap();
    assert_eq!(r.partition_key, "k");
}

#[test]
fn shard_helpers() {
    let map = ShardMap::single("only");
    assert_eq!(map.route(0).unwrap().id, "only");
    assert_eq!(map.route(u128::MAX).unwrap().id, "only");
    assert_eq!(HashKeyRange::FULL.to_string(), format!("0:{}", u128::MAX));
    let agg = kinesis_agg::ShardedAggregator::new(map);
    assert!(format!("{agg:?}").contains("shards: 1"));
    assert_eq!(
        kinesis_agg::ShardedAggregator::with_limit(ShardMap::single("x"), 5).unwrap_err(),
        Error::InvalidLimit { limit: 5 }
    );
}

/// Tables handed back by `into_tables` are cleared when reused, heap and
/// fixed alike: a second blob sees only its own keys.
#[test]
fn reused_key_tables_start_empty() {
    let blob = |keys: &[&str]| {
        let mut agg = RecordAggregator::new();
        for k in keys {
            agg.add(Record::new(k, b"v").with_explicit_hash_key("1")).unwrap();
        }
        agg.finish().unwrap().into_data()
    };
    let (first, second) = (blob(&["a", "b"]), blob(&["c"]));
    /// Reads `second` into the tables `first` was read into.
    fn reuse<'a, T: KeyTable<'a>>(first: Deaggregated<'a, T>, second: &'a [u8]) {
        let Deaggregated::Aggregated(a) = first else {
            panic!()
        };
        let (pks, ehks) = a.into_tables();
        let Deaggregated::Aggregated(b) = Options::new().deaggregate_with(second, pks, ehks).unwrap() else {
            panic!()
        };
        assert_eq!(
            (b.partition_keys(), b.explicit_hash_keys()),
            (&["c"][..], &["1"][..])
        );
    }
    reuse(kinesis_agg::deaggregate(&first).unwrap(), &second);
    reuse(kinesis_agg::deaggregate_fixed::<2>(&first).unwrap(), &second);
}

/// A record's keys name their table entries: the index of each is the one
/// Google's parse gives (prost, with field presence), and a string that
/// only equals an entry, or is a part of one, is no entry.
#[test]
fn key_indexes_are_the_entries_the_records_name() {
    use prost::Message;
    let blob = std::fs::read("tests/fixtures/deagg/py_mixed_keys.bin").unwrap();
    let body = &blob[4..blob.len() - 16];
    let pb = support::pb::PbAggregatedRecord::decode(body).unwrap();
    let Ok(Deaggregated::Aggregated(read)) = kinesis_agg::deaggregate(&blob) else {
        panic!("not aggregated")
    };
    let mut with_ehk = 0;
    assert_eq!(read.records().with_key_indices().len(), pb.records.len());
    for ((r, keys), want) in read.records().with_key_indices().zip(&pb.records) {
        assert_eq!(keys.partition_key, want.partition_key_index as usize);
        assert_eq!(
            keys.explicit_hash_key,
            want.explicit_hash_key_index.map(|i| i as usize)
        );
        assert_eq!(read.partition_keys()[keys.partition_key], r.partition_key);
        assert_eq!(
            read.partition_key_index(r.partition_key),
            Some(want.partition_key_index as usize)
        );
        let ehk = r.explicit_hash_key.and_then(|e| read.explicit_hash_key_index(e));
        assert_eq!(ehk, want.explicit_hash_key_index.map(|i| i as usize));
        with_ehk += usize::from(ehk.is_some());
    }
    assert!(
        with_ehk > 0 && pb.partition_key_table.len() > 2,
        "the fixture mixes keys"
    );
    for (i, key) in read.partition_keys().iter().enumerate() {
        assert_eq!(read.partition_key_index(key), Some(i));
        let copy: String = key.chars().collect();
        assert_eq!(read.partition_key_index(&copy), None, "an equal copy");
        assert_eq!(read.partition_key_index(&key[..key.len() - 1]), None, "a prefix");
        assert_eq!(read.explicit_hash_key_index(key), None, "the other table");
    }
}

/// An aggregate's debug form says its keys, records and size, and not its
/// bytes.
#[test]
fn an_aggregate_debugs_as_its_summary() {
    let mut agg = RecordAggregator::new();
    agg.add(Record::new("key", b"0123456789")).unwrap();
    let done = agg.finish().unwrap();
    let text = format!("{done:?}");
    let len = done.data().len();
    assert_eq!(
        text,
        format!(
            "Aggregate {{ partition_key: \"key\", explicit_hash_key: None, record_count: 1, len: {len} }}"
        )
    );
}

/// One Kinesis record read alone hands out what the reader finds in it:
/// its user records in order, or the whole blob when it is plain.
#[test]
fn a_kinesis_record_alone_gives_its_user_records() {
    use kinesis_agg::{KinesisRecord, OnInvalid};
    let blob = std::fs::read("tests/fixtures/deagg/py_mixed_keys.bin").unwrap();
    let Ok(Deaggregated::Aggregated(read)) = kinesis_agg::deaggregate(&blob) else {
        panic!("not aggregated")
    };
    let got = KinesisRecord::new(&blob).user_records(7, OnInvalid::Error);
    assert_eq!(got.len(), read.len());
    for (g, want) in got.iter().zip(read.records()) {
        let g = g.as_ref().unwrap();
        assert!(g.aggregated && g.record == 7);
        assert_eq!((g.partition_key, g.data), (Some(want.partition_key), want.data));
        assert_eq!(g.sub_sequence_number, Some(want.sub_sequence_number));
    }
    let plain = KinesisRecord::new(b"plain").user_records(0, OnInvalid::Error);
    assert_eq!(plain.len(), 1);
    let p = plain[0].as_ref().unwrap();
    assert!(!p.aggregated && p.data == b"plain");
}
