//! Aggregation under hostile inputs keeps every invariant: exact sizes,
//! limits respected, records handed back unchanged, nothing lost.

mod support;

use kinesis_agg::{Aggregator, Error, MIN_LIMIT, Record, RecordAggregator};

#[test]
fn keys_of_the_longest_legal_shapes() {
    let astral_256 = "😀".repeat(256); // 512 UTF-16 code units: refused
    let astral_128 = "😀".repeat(128); // 256 code units, 512 bytes: the most astral
    let bmp_256 = "鍵".repeat(256); // 256 code units, 768 bytes: the most bytes
    let mut agg = RecordAggregator::with_limit(5000).unwrap();
    assert_eq!(
        agg.add(Record::new(&astral_256, b"x")),
        Err(Error::InvalidPartitionKey { utf16_len: 512 })
    );
    let mut n = 0;
    for i in 0..200 {
        let pk = if i % 2 == 0 { &astral_128 } else { &bmp_256 };
        let data = vec![i as u8; i * 7 % 300];
        let predicted = agg.encoded_len_with(&Record::new(pk, &data)).unwrap();
        match agg.add(Record::new(pk, &data)).unwrap() {
            None => assert_eq!(agg.encoded_len(), predicted),
            Some(done) => {
                assert!(done.data().len() + done.partition_key().len() <= 5000);
                n += support::pb::ours(done.data()).unwrap().unwrap().len();
            }
        }
    }
    n += agg
        .finish()
        .map_or(0, |d| support::pb::ours(d.data()).unwrap().unwrap().len());
    assert_eq!(n, 200);
}

#[test]
fn data_of_exactly_the_remaining_room() {
    let limits: &[usize] = if cfg!(miri) {
        &[MIN_LIMIT, 100, 128, 129, 300]
    } else {
        &[MIN_LIMIT, 31, 100, 127, 128, 129, 130, 300, 16_400, 70_000]
    };
    for &limit in limits {
        let mut agg = RecordAggregator::with_limit(limit).unwrap();
        let pk = "k";
        let mut added = 0;
        let mut emitted = 0;
        for round in 0..6u8 {
            let fits = |agg: &RecordAggregator, n: usize| {
                agg.encoded_len_with(&Record::new(pk, &vec![1u8; n])).unwrap() + pk.len() <= limit
            };
            if !fits(&agg, 0) {
                // Not even empty data fits: only then is the aggregate closed.
                let done = agg.finish().unwrap();
                assert!(done.data().len() + pk.len() <= limit);
                emitted += support::pb::ours(done.data()).unwrap().unwrap().len();
                continue;
            }
            // The largest data that fits now (sizes grow with the data).
            let (mut lo, mut hi) = (0, limit);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if fits(&agg, mid) { lo = mid } else { hi = mid - 1 }
            }
            let data = vec![round; lo];
            assert_eq!(
                agg.add(Record::new(pk, &data)).unwrap(),
                None,
                "limit {limit}: exact fit refused"
            );
            added += 1;
            let used = agg.encoded_len() + pk.len();
            assert!(used <= limit, "limit {limit}: {used}");
            // Filled to the byte, but for the one or two bytes a longer
            // length varint would have needed.
            assert!(
                limit - used <= 2,
                "limit {limit}: {} bytes left unused",
                limit - used
            );
        }
        emitted += agg
            .finish()
            .map_or(0, |d| support::pb::ours(d.data()).unwrap().unwrap().len());
        assert_eq!(emitted, added, "limit {limit}");
        assert!(added >= 3, "limit {limit}");
    }
}

#[test]
fn the_smallest_legal_limit() {
    let mut buf = [0u8; MIN_LIMIT];
    let mut agg = Aggregator::<_, 4>::with_limit(&mut buf[..], MIN_LIMIT).unwrap();
    // Only a one-byte key with empty data fits, one record per aggregate.
    for _ in 0..3 {
        agg.add(Record::new("a", b"")).unwrap();
        let r = agg.add(Record::new("a", b"")).unwrap_err();
        assert_eq!(r.error, Error::Full);
        let done = agg.finish().unwrap();
        assert_eq!(done.data.len() + done.partition_key.len(), MIN_LIMIT);
        assert_eq!(support::pb::ours(done.data).unwrap().unwrap().len(), 1);
    }
    for rec in [
        Record::new("ab", b""),
        Record::new("a", b"x"),
        Record::new("a", b"").with_explicit_hash_key("0"),
    ] {
        let r = agg.add(rec).unwrap_err();
        assert!(
            matches!(r.error, Error::RecordTooLarge { limit: MIN_LIMIT, .. }),
            "{:?}",
            r.error
        );
        assert_eq!(r.record, rec);
        assert!(agg.is_empty());
    }
}
