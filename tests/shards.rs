//! Shard-aware aggregation and the KCL's range rule.

use std::collections::HashMap;

use kinesis_agg::{
    Deaggregated, Error, HashKeyRange, OutOfRange, Record, RecordAggregator, Shard, ShardAggregate, ShardMap,
    ShardedAggregator, effective_hash_key, partition_key_hash,
};
use proptest::prelude::*;

/// MD5 hash keys computed independently, with Python's hashlib:
/// `int.from_bytes(hashlib.md5(k.encode()).digest(), 'big')`.
#[test]
fn partition_key_hashes_match_known_answers() {
    let known: [(&str, u128); 7] = [
        ("a", 16955237001963240173058271559858726497),
        ("partitionKey-03", 183955990062578521952773094788915351226),
        ("sensor-1", 313621148937180024981089005635817150934),
        ("ключ", 259726384039714788407059515981389908711),
        ("鍵", 289052073510671952680873521826872923932),
        ("🔑 key", 80651218071277500794549202927478073747),
        (&"é".repeat(256), 247574911642467793763755732668660720934),
    ];
    for (key, want) in known {
        assert_eq!(partition_key_hash(key), want, "{key}");
        assert_eq!(effective_hash_key(key, None), Ok(want));
        assert_eq!(effective_hash_key(key, Some("12")), Ok(12));
    }
    assert_eq!(
        effective_hash_key("a", Some("x")),
        Err(Error::InvalidHashKey { position: 0 })
    );
}

fn blob(records: &[(&str, Option<&str>)]) -> Vec<u8> {
    let mut agg = RecordAggregator::new();
    for (pk, ehk) in records {
        agg.add(Record::new(pk, pk.as_bytes()).with_optional_explicit_hash_key(*ehk))
            .unwrap();
    }
    agg.finish().unwrap().into_data()
}

fn check(b: &[u8], range: HashKeyRange) -> Result<(), OutOfRange> {
    let Deaggregated::Aggregated(a) = kinesis_agg::deaggregate(b).unwrap() else {
        panic!()
    };
    a.check_range(range)
}

#[test]
fn kcl_rule_cases() {
    let ha = partition_key_hash("a");
    let r = |s, e| HashKeyRange::new(s, e).unwrap();
    // All in range, bounds inclusive (EHK-routed records at both ends).
    let b = blob(&[("x", Some("100")), ("y", Some("200")), ("z", Some("150"))]);
    assert_eq!(check(&b, r(100, 200)), Ok(()));
    // One out of range: the first offender is named with its hash key.
    assert_eq!(
        check(&b, r(100, 199)),
        Err(OutOfRange {
            sub_sequence_number: 1,
            hash_key: Some(200)
        })
    );
    assert_eq!(
        check(&b, r(101, 200)),
        Err(OutOfRange {
            sub_sequence_number: 0,
            hash_key: Some(100)
        })
    );
    // Partition-key-routed records use the MD5 of the key.
    let b = blob(&[("a", None), ("a", None)]);
    assert_eq!(check(&b, r(ha, ha)), Ok(()));
    assert_eq!(
        check(&b, r(ha + 1, u128::MAX)),
        Err(OutOfRange {
            sub_sequence_number: 0,
            hash_key: Some(ha)
        })
    );
    // An EHK overrides the key's hash.
    let b = blob(&[("a", Some("5")), ("a", None)]);
    assert_eq!(
        check(&b, r(0, 10)),
        Err(OutOfRange {
            sub_sequence_number: 1,
            hash_key: Some(ha)
        })
    );
    assert_eq!(check(&b, HashKeyRange::FULL), Ok(()));
    // Lenient: only in-range records, with the count of the others.
    let b = blob(&[
        ("p", Some("1")),
        ("q", Some("50")),
        ("r", Some("2")),
        ("s", Some("99")),
    ]);
    let Deaggregated::Aggregated(a) = kinesis_agg::deaggregate(&b).unwrap() else {
        panic!()
    };
    let mut kept = a.records_in_range(r(0, 10));
    let keys: Vec<_> = kept
        .by_ref()
        .map(|u| (u.partition_key, u.sub_sequence_number))
        .collect();
    assert_eq!(keys, [("p", 0), ("r", 2)]);
    assert_eq!(kept.outside(), 2);
}

#[test]
fn an_explicit_hash_key_that_is_not_a_hash_key_is_out_of_every_range() {
    // Another producer may write any string as an EHK.
    let body = [
        &[0x0A, 1, b'k'][..],
        &[0x12, 3, b'a', b'b', b'c'],
        &[0x1A, 7, 0x08, 0, 0x10, 0, 0x1A, 1, b'd'],
    ]
    .concat();
    let mut b = kinesis_agg::MAGIC.to_vec();
    b.extend_from_slice(&body);
    b.extend_from_slice(&md5::Digest::finalize(md5::Digest::chain_update(
        <md5::Md5 as md5::Digest>::new(),
        &body,
    )));
    assert_eq!(
        check(&b, HashKeyRange::FULL),
        Err(OutOfRange {
            sub_sequence_number: 0,
            hash_key: None
        })
    );
}

#[cfg(feature = "json")]
const LIST_SHARDS: &str = r#"{
    "Shards": [
        {
            "ShardId": "shardId-000000000000",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "340282366920938463463374607431768211455"},
            "SequenceNumberRange": {
                "StartingSequenceNumber": "49600000000000000000000000000000000000000000000000000000",
                "EndingSequenceNumber": "49600000000000000000000000000000000000000000000000000001"
            }
        },
        {
            "ShardId": "shardId-000000000001",
            "ParentShardId": "shardId-000000000000",
            "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "170141183460469231731687303715884105727"},
            "SequenceNumberRange": {"StartingSequenceNumber": "49600000000000000000000000000000000000000000000000000002"}
        },
        {
            "ShardId": "shardId-000000000002",
            "ParentShardId": "shardId-000000000000",
            "HashKeyRange": {"StartingHashKey": "170141183460469231731687303715884105728", "EndingHashKey": "340282366920938463463374607431768211455"},
            "SequenceNumberRange": {"StartingSequenceNumber": "49600000000000000000000000000000000000000000000000000003"}
        }
    ]
}"#;

#[cfg(feature = "json")]
#[test]
fn list_shards_json_loads_open_shards_only() {
    let map = ShardMap::from_list_shards_json(LIST_SHARDS).unwrap();
    let ids: Vec<_> = map.shards().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["shardId-000000000001", "shardId-000000000002"]);
    assert_eq!(map.route(1 << 127).unwrap().id, "shardId-000000000002");
    assert_eq!(map.route((1 << 127) - 1).unwrap().id, "shardId-000000000001");
    // Overlapping open shards, bad keys, other JSON.
    let overlap = LIST_SHARDS.replace(
        r#""EndingSequenceNumber": "49600000000000000000000000000000000000000000000000000001""#,
        r#""X": "1""#,
    );
    assert_eq!(
        ShardMap::from_list_shards_json(&overlap),
        Err(Error::ShardsOverlap { shard: 1 })
    );
    let bad = LIST_SHARDS.replace(
        r#""EndingHashKey": "170141183460469231731687303715884105727""#,
        r#""EndingHashKey": "-1""#,
    );
    assert_eq!(
        ShardMap::from_list_shards_json(&bad),
        Err(Error::InvalidHashKeyRange)
    );
    assert!(matches!(
        ShardMap::from_list_shards_json("{\"Streams\": []}"),
        Err(Error::InvalidShardList { .. })
    ));
    assert!(matches!(
        ShardMap::from_list_shards_json("{"),
        Err(Error::InvalidShardList { line: 1, .. })
    ));
}

/// Checks every emitted aggregate against the map it was built for, and
/// collects its records.
fn verify(out: &[ShardAggregate], map: &ShardMap, seen: &mut Vec<(String, Option<String>, Vec<u8>)>) {
    for a in out {
        let shard = map
            .shards()
            .iter()
            .find(|s| s.id == a.shard_id())
            .expect("a shard of the map");
        let outer: u128 = a.explicit_hash_key().parse().unwrap();
        assert!(shard.range.contains(outer), "outer EHK outside its shard");
        assert!(a.aggregate().data().len() + a.aggregate().partition_key().len() <= 2000);
        let Deaggregated::Aggregated(recs) = kinesis_agg::deaggregate(a.aggregate().data()).unwrap() else {
            panic!()
        };
        assert_eq!(recs.check_range(shard.range), Ok(()), "the KCL would discard it");
        let first = recs.records().next().unwrap();
        assert_eq!(first.hash_key(), Some(outer));
        seen.extend(recs.records().map(|r| {
            (
                r.partition_key.to_owned(),
                r.explicit_hash_key.map(str::to_owned),
                r.data.to_vec(),
            )
        }));
    }
}

fn map_from_cuts(mut cuts: Vec<u128>) -> ShardMap {
    cuts.sort();
    cuts.dedup();
    cuts.retain(|&c| c > 0);
    let mut starts = vec![0u128];
    starts.extend(cuts);
    let shards = starts.iter().enumerate().map(|(i, &s)| {
        let end = starts.get(i + 1).map_or(u128::MAX, |n| n - 1);
        Shard {
            id: format!("shardId-{i:012}"),
            range: HashKeyRange::new(s, end).unwrap(),
        }
    });
    ShardMap::new(shards).unwrap()
}

fn per_key(records: &[(String, Option<String>, Vec<u8>)]) -> HashMap<(String, Option<String>), Vec<Vec<u8>>> {
    let mut m: HashMap<_, Vec<_>> = HashMap::new();
    for (p, e, d) in records {
        m.entry((p.clone(), e.clone())).or_default().push(d.clone());
    }
    m
}

fn cuts() -> impl Strategy<Value = Vec<u128>> {
    proptest::collection::vec(
        prop_oneof![
            any::<u128>(),
            // Narrow shards: cuts close together.
            (any::<u64>(), 0u128..16).prop_map(|(b, d)| (u128::from(b) << 64) + d),
        ],
        0..63,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)))]

    #[test]
    fn every_aggregate_lies_in_its_shard_and_nothing_is_lost(
        cuts in cuts(),
        keys in proptest::collection::vec((0u32..40, proptest::option::weighted(0.2, any::<u128>()), 0usize..120), 1..if cfg!(miri) { 30 } else { 300 }),
        cap in proptest::option::of(500usize..5000),
    ) {
        let map = map_from_cuts(cuts);
        let mut agg = ShardedAggregator::with_limit(map.clone(), 2000).unwrap();
        if let Some(c) = cap { agg = agg.with_buffer_cap(c); }
        let input: Vec<(String, Option<String>, Vec<u8>)> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, e, n))| (format!("key-{k}"), e.map(|e| e.to_string()), vec![i as u8; *n]))
            .collect();
        let mut seen = Vec::new();
        for (p, e, d) in &input {
            let out = agg.add(Record::new(p, d).with_optional_explicit_hash_key(e.as_deref())).unwrap();
            verify(&out, &map, &mut seen);
            if let Some(c) = cap { prop_assert!(agg.buffered_bytes() <= c); }
        }
        let out = agg.finish_all();
        verify(&out, &map, &mut seen);
        prop_assert_eq!(agg.record_count(), 0);
        prop_assert_eq!(seen.len(), input.len());
        // Per-key order kept (and so the same records, as multisets).
        prop_assert_eq!(per_key(&seen), per_key(&input));
    }

    #[test]
    fn resharding_re_routes_buffered_records_without_loss(
        keys in proptest::collection::vec((0u32..60, 0usize..80), 1..if cfg!(miri) { 30 } else { 200 }),
        split_at in 0usize..200,
        cut in any::<u128>(),
    ) {
        let before = map_from_cuts(vec![1 << 127]);
        // Split one shard at `cut`; the parent closes, two children open.
        let after = map_from_cuts(vec![1 << 127, cut]);
        let mut agg = ShardedAggregator::with_limit(before.clone(), 2000).unwrap();
        let input: Vec<(String, Option<String>, Vec<u8>)> =
            keys.iter().enumerate().map(|(i, (k, n))| (format!("k{k}"), None, vec![i as u8; *n])).collect();
        let mut seen = Vec::new();
        for (i, (p, _, d)) in input.iter().enumerate() {
            if i == split_at.min(input.len() - 1) {
                let out = agg.reshard(after.clone()).unwrap();
                verify(&out, &after, &mut seen);
            }
            let out = agg.add(Record::new(p, d)).unwrap();
            let map = agg.shard_map().clone();
            verify(&out, &map, &mut seen);
        }
        verify(&agg.finish_all(), &after, &mut seen);
        prop_assert_eq!(per_key(&seen), per_key(&input));
    }
}

#[test]
fn flush_oldest_goes_by_age_and_the_cap_flushes_the_largest() {
    let map = map_from_cuts(vec![1 << 126, 1 << 127, 3 << 126]);
    let mut agg = ShardedAggregator::new(map.clone()).with_buffer_cap(3000);
    // Explicit hash keys pick the shards: 0, then 2, then 1.
    assert!(
        agg.add(Record::new("a", &[0; 100]).with_explicit_hash_key("5"))
            .unwrap()
            .is_empty()
    );
    assert!(
        agg.add(Record::new("b", &[0; 500]).with_explicit_hash_key(&(1u128 << 127).to_string()))
            .unwrap()
            .is_empty()
    );
    assert!(
        agg.add(Record::new("c", &[0; 100]).with_explicit_hash_key(&(1u128 << 126).to_string()))
            .unwrap()
            .is_empty()
    );
    let oldest = agg.finish_oldest().unwrap();
    assert_eq!(oldest.shard_id(), map.shards()[0].id);
    assert_eq!(oldest.explicit_hash_key(), "5");
    // Past the cap: the largest buffered aggregate (shard 2) comes out.
    let out = agg
        .add(Record::new("c", &[0; 2500]).with_explicit_hash_key(&(1u128 << 126).to_string()))
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].aggregate().record_count(), 2);
    assert_eq!(out[0].shard_id(), map.shards()[1].id);
    let rest = agg.finish_all();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].shard_id(), map.shards()[2].id);
    assert!(agg.finish_oldest().is_none());
}

#[test]
fn a_map_with_gaps_refuses_unroutable_records_and_reshard_keeps_them() {
    let half = 1u128 << 127;
    let low = ShardMap::new([Shard {
        id: "low".into(),
        range: HashKeyRange::new(0, half - 1).unwrap(),
    }])
    .unwrap();
    let mut agg = ShardedAggregator::new(ShardMap::single("all"));
    agg.add(Record::new("x", b"1").with_explicit_hash_key("7"))
        .unwrap();
    agg.add(Record::new("y", b"2").with_explicit_hash_key(&half.to_string()))
        .unwrap();
    // The new map cannot take the second record: nothing changes.
    assert_eq!(
        agg.reshard(low.clone()),
        Err(Error::NoShardForHashKey { hash_key: half })
    );
    assert_eq!(agg.record_count(), 2);
    assert_eq!(agg.shard_map().shards()[0].id, "all");
    let mut fresh = ShardedAggregator::new(low);
    assert_eq!(
        fresh.add(Record::new("y", b"2").with_explicit_hash_key(&half.to_string())),
        Err(Error::NoShardForHashKey { hash_key: half })
    );
    let out = agg.finish_all();
    assert_eq!(out[0].aggregate().record_count(), 2);
}
