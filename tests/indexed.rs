//! The aggregator over a caller's key index: the same bytes and the same
//! refusals as the fixed-index aggregator of as many keys, whatever the
//! index held before.

use kinesis_agg::{
    Aggregator, Error, INDEX_SLOTS_PER_KEY, IndexedAggregator, KeySlot, Record, Table, deaggregate,
};

mod support;

use support::rng::Rng;

const PKS: [&str; 12] = [
    "a", "bb", "sensor-1", "sensor-2", "k", "é", "x", "y", "z", "w", "v", "u",
];
const EHKS: [&str; 5] = ["0", "1", "170141183460469231731687303715884105728", "99", "12345"];

/// Feeds the same records to a fixed aggregator of `KEYS` keys and an
/// indexed one of `KEYS` keys (plus `extra` slots that make no whole key),
/// comparing every answer and every finished aggregate.
fn same_as_fixed<const KEYS: usize>(seed: u64, extra: usize, limit: usize) -> usize {
    let mut rng = Rng(seed);
    let mut fixed_buf = vec![0u8; limit];
    let mut fixed = Aggregator::<_, KEYS>::with_limit(&mut fixed_buf[..], limit).unwrap();
    let mut ibuf = vec![0u8; limit];
    // A dirty index: whatever was in it must not matter.
    let mut index = vec![KeySlot::FREE; KEYS * INDEX_SLOTS_PER_KEY + extra];
    {
        let mut junk = [0u8; 256];
        let mut other = IndexedAggregator::new(&mut junk[..], &mut index, 256).unwrap();
        for (i, pk) in PKS.iter().enumerate().take(KEYS) {
            other.add(Record::new(pk, &[i as u8; 3])).unwrap();
        }
    }
    let mut ind = IndexedAggregator::new(&mut ibuf[..], &mut index, limit).unwrap();
    assert_eq!(ind.key_capacity(), Some(KEYS));
    assert_eq!(ind.limit(), limit);
    assert!(ind.is_empty());
    let mut datas = Vec::new();
    for _ in 0..400 {
        let n = rng.below(60) as usize;
        datas.push((0..n).map(|_| rng.next() as u8).collect::<Vec<u8>>());
    }
    let mut finished = 0;
    for data in &datas {
        let pk = PKS[rng.below(PKS.len() as u64) as usize];
        let ehk = (rng.below(3) == 0).then(|| EHKS[rng.below(EHKS.len() as u64) as usize]);
        let rec = Record::new(pk, data).with_optional_explicit_hash_key(ehk);
        assert_eq!(ind.encoded_len_with(&rec), fixed.encoded_len_with(&rec));
        let (a, b) = (fixed.add(rec), ind.add(rec));
        assert_eq!(
            a.as_ref().err().map(|r| r.error),
            b.as_ref().err().map(|r| r.error)
        );
        assert_eq!(ind.encoded_len(), fixed.encoded_len());
        assert_eq!(ind.record_count(), fixed.record_count());
        assert_eq!(ind.is_empty(), fixed.is_empty());
        if a.is_err() || rng.below(50) == 0 {
            let (x, y) = (fixed.finish(), ind.finish());
            assert_eq!(x.is_some(), y.is_some());
            if let (Some(x), Some(y)) = (x, y) {
                assert_eq!(x.data, y.data);
                assert_eq!(x.partition_key, y.partition_key);
                assert_eq!(x.explicit_hash_key, y.explicit_hash_key);
                assert_eq!(x.record_count, y.record_count);
                assert!(deaggregate(y.data).is_ok());
                finished += 1;
            }
            assert!(ind.is_empty() && fixed.is_empty());
            if a.is_err() {
                assert_eq!(fixed.add(rec).is_ok(), ind.add(rec).is_ok());
            }
        }
    }
    let (x, y) = (fixed.finish(), ind.finish());
    assert_eq!(x.map(|f| f.data.to_vec()), y.map(|f| f.data.to_vec()));
    finished
}

#[test]
fn writes_what_the_fixed_index_writes() {
    let mut aggregates = 0;
    for seed in 1..=12u64 {
        aggregates += same_as_fixed::<1>(seed, 0, 300);
        aggregates += same_as_fixed::<2>(seed, 7, 500);
        aggregates += same_as_fixed::<3>(seed, 1, 2_000);
        aggregates += same_as_fixed::<8>(seed, 0, 4_000);
        aggregates += same_as_fixed::<32>(seed, 5, 51_200);
    }
    // The runs did finish aggregates (on refusals and at random).
    assert!(aggregates > 200, "{aggregates}");
}

#[test]
fn an_index_too_small_or_too_large_is_refused() {
    let mut buf = [0u8; 256];
    for slots in [0, 1, INDEX_SLOTS_PER_KEY - 1] {
        let mut index = vec![KeySlot::FREE; slots];
        let err = IndexedAggregator::new(&mut buf[..], &mut index, 256).unwrap_err();
        assert_eq!(err, Error::InvalidIndex { slots });
    }
    let mut index = vec![KeySlot::FREE; INDEX_SLOTS_PER_KEY];
    assert_eq!(
        IndexedAggregator::new(&mut buf[..], &mut index, 3).unwrap_err(),
        Error::InvalidLimit { limit: 3 }
    );
    let mut agg = IndexedAggregator::new(&mut buf[..], &mut index, 256).unwrap();
    assert_eq!(agg.key_capacity(), Some(1));
    agg.add(Record::new("one", b"1")).unwrap();
    let refused = agg.add(Record::new("two", b"2")).unwrap_err();
    assert_eq!(
        refused.error,
        Error::KeyCapacity {
            table: Table::PartitionKey,
            capacity: 1
        }
    );
    agg.add(Record::new("one", b"2").with_explicit_hash_key("7"))
        .unwrap();
    let refused = agg
        .add(Record::new("one", b"3").with_explicit_hash_key("8"))
        .unwrap_err();
    assert_eq!(
        refused.error,
        Error::KeyCapacity {
            table: Table::ExplicitHashKey,
            capacity: 1
        }
    );
    assert!(format!("{agg:?}").contains("key_capacity: Some(1)"));
    assert_eq!(agg.finish().unwrap().record_count, 2);
    let (buf, index) = agg.into_parts();
    assert_eq!((buf.len(), index.len()), (256, INDEX_SLOTS_PER_KEY));
}
