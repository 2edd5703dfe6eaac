//! Shard-aware aggregation and the KCL's range rule.
//!
//! What an aggregate holds and where its records route is checked against
//! an oracle of the test's own: prost's parse of the body, and hash keys
//! from the `md-5` crate and `str::parse`, never the library's reader.

mod support;

use std::collections::HashMap;

use md5::{Digest, Md5};
use prost::Message;
use support::pb::PbAggregatedRecord;

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

/// A user record: partition key, explicit hash key, data.
type Owned = (String, Option<String>, Vec<u8>);

/// A user record's hash key, as Kinesis computes it: the explicit hash key
/// read as a decimal, else the MD5 of the partition key, big-endian.
fn oracle_hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> u128 {
    match explicit_hash_key {
        Some(e) => e.parse().unwrap(),
        None => u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into()),
    }
}

/// The user records of an aggregated blob, read by prost: checksum checked
/// by the `md-5` crate, keys looked up with the record's field presence.
fn oracle_records(blob: &[u8]) -> Vec<(String, Option<String>, Vec<u8>)> {
    assert_eq!(blob[..4], kinesis_agg::MAGIC);
    let (body, digest) = blob[4..].split_at(blob.len() - 20);
    assert_eq!(Md5::digest(body).as_slice(), digest, "MD5 trailer");
    let m = PbAggregatedRecord::decode(body).unwrap();
    m.records
        .iter()
        .map(|r| {
            (
                m.partition_key_table[r.partition_key_index as usize].clone(),
                r.explicit_hash_key_index
                    .map(|i| m.explicit_hash_key_table[i as usize].clone()),
                r.data.clone(),
            )
        })
        .collect()
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
        let (start, end) = (shard.range.start, shard.range.end);
        let outer: u128 = a.explicit_hash_key().parse().unwrap();
        assert!(start <= outer && outer <= end, "outer EHK outside its shard");
        assert!(a.aggregate().data().len() + a.aggregate().partition_key().len() <= 2000);
        let records = oracle_records(a.aggregate().data());
        for (p, e, _) in &records {
            let h = oracle_hash_key(p, e.as_deref());
            assert!(start <= h && h <= end, "the KCL would discard it: {p} {e:?}");
        }
        assert_eq!(oracle_hash_key(&records[0].0, records[0].1.as_deref()), outer);
        assert_eq!(a.record_count(), records.len());
        seen.extend(records);
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
    let low = lower_half();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)))]

    /// The steps `add` is made of: `insert` says which shard took a record
    /// and its position there, and a completed aggregate holds exactly the
    /// records inserted into its shard since the one before, in order;
    /// `set_map` hands back what is left. No aggregate holds more than the
    /// count cap.
    #[test]
    fn insert_says_where_each_record_went(
        cuts in cuts(),
        keys in proptest::collection::vec((0u32..40, proptest::option::weighted(0.2, any::<u128>()), 0usize..120), 1..if cfg!(miri) { 30 } else { 300 }),
        max_count in 1usize..40,
        known_hash in any::<bool>(),
    ) {
        let map = map_from_cuts(cuts);
        let mut agg = ShardedAggregator::with_limit(map.clone(), 2000).unwrap().with_max_count(max_count);
        // The records each shard has taken since its last aggregate.
        let mut open: Vec<Vec<Owned>> = vec![Vec::new(); map.shards().len()];
        let mut seen = Vec::new();
        let check = |done: ShardAggregate, open: &mut Vec<Vec<_>>, seen: &mut Vec<_>| {
            let want = std::mem::take(&mut open[done.shard_index()]);
            let mut got = Vec::new();
            verify(std::slice::from_ref(&done), &map, &mut got);
            assert!(got.len() <= max_count);
            assert_eq!(got, want);
            seen.extend(got);
        };
        for (i, (k, e, n)) in keys.iter().enumerate() {
            let (p, e, d) = (format!("key-{k}"), e.map(|e| e.to_string()), vec![i as u8; *n]);
            let h = oracle_hash_key(&p, e.as_deref());
            let record = Record::new(&p, &d).with_optional_explicit_hash_key(e.as_deref());
            let ins = agg.insert(record, known_hash.then_some(h)).unwrap();
            let shard = &map.shards()[ins.shard];
            prop_assert!(shard.range.start <= h && h <= shard.range.end);
            if let Some(done) = ins.completed {
                prop_assert_eq!(done.shard_index(), ins.shard);
                check(done.digest(), &mut open, &mut seen);
            }
            prop_assert_eq!(ins.sub_sequence_number, open[ins.shard].len());
            open[ins.shard].push((p, e, d));
            prop_assert_eq!(agg.shard_record_count(ins.shard), open[ins.shard].len());
        }
        // What is left, handed back by a change of map, digested together.
        let left = agg.set_map(map.clone());
        prop_assert!(agg.is_empty());
        for a in ShardAggregate::digest_all(left) {
            check(a, &mut open, &mut seen);
        }
        prop_assert!(open.iter().all(Vec::is_empty));
        prop_assert_eq!(seen.len(), keys.len());
    }
}

/// A map of one shard owning the lower half of the hash keys: the upper
/// half is a gap.
fn lower_half() -> ShardMap {
    ShardMap::new([Shard {
        id: "low".into(),
        range: HashKeyRange::new(0, (1u128 << 127) - 1).unwrap(),
    }])
    .unwrap()
}

/// A record whose hash key no shard owns is refused by `insert`, and
/// nothing changes.
#[test]
fn insert_refuses_a_hash_key_in_a_gap() {
    let half = 1u128 << 127;
    let mut agg = ShardedAggregator::new(lower_half());
    let r = Record::new("k", b"x");
    assert_eq!(
        agg.insert(r, Some(half)).unwrap_err(),
        Error::NoShardForHashKey { hash_key: half }
    );
    assert!(agg.is_empty());
    assert_eq!(agg.insert(r, Some(5)).unwrap().shard, 0);
    assert_eq!(agg.hash_key("k", None), Ok(oracle_hash_key("k", None)));
}
