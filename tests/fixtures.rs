//! Every committed fixture decodes to its expected records (Google
//! protobuf's parse), and every broken one gives its documented error.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kinesis_agg::{Checksum, Deaggregated, Options, PlainReason};
use serde_json::Value;

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string("tests/fixtures/deagg/manifest.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn blob(name: &str) -> Vec<u8> {
    std::fs::read(format!("tests/fixtures/deagg/{name}.bin")).unwrap()
}

/// Under Miri, which interprets every instruction, the megabyte fixtures
/// are left to the native run.
fn too_big_for_miri(case: &Value) -> bool {
    cfg!(miri) && case["len"].as_u64().unwrap() > 8_192
}

fn variant<T: std::fmt::Debug>(v: &T) -> String {
    let s = format!("{v:?}");
    s.split([' ', '{', '(']).next().unwrap().to_owned()
}

fn check_records(name: &str, got: &Deaggregated<'_, Vec<&str>>, want: &[Value]) {
    let Deaggregated::Aggregated(agg) = got else {
        panic!("{name}: expected aggregated, got {got:?}");
    };
    assert_eq!(agg.len(), want.len(), "{name}: record count");
    assert_eq!(agg.records().len(), want.len(), "{name}: exact size");
    // Every record is yielded, not only counted (a zip alone would stop at
    // the shorter side).
    let records: Vec<_> = agg.records().collect();
    assert_eq!(records.len(), want.len(), "{name}: records yielded");
    for (i, (r, w)) in records.into_iter().zip(want).enumerate() {
        assert_eq!(r.sub_sequence_number, i as u64, "{name}");
        support::assert_keys(r.partition_key, r.explicit_hash_key, w, &format!("{name} #{i}"));
        if let Some(d) = w["data"].as_str() {
            assert_eq!(r.data, STANDARD.decode(d).unwrap(), "{name} #{i}");
        } else {
            assert_eq!(
                r.data.len() as u64,
                w["data_len"].as_u64().unwrap(),
                "{name} #{i}"
            );
            assert_eq!(
                support::pb::md5_hex(r.data),
                w["data_md5"].as_str().unwrap(),
                "{name} #{i}"
            );
        }
        let tags: Vec<(String, Option<String>)> = r
            .tags
            .map(|t| (t.key.to_owned(), t.value.map(str::to_owned)))
            .collect();
        let want_tags: Vec<(String, Option<String>)> = w["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t[0].as_str().unwrap().to_owned(),
                    t[1].as_str().map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(tags, want_tags, "{name} #{i}");
    }
}

#[test]
fn every_fixture_decodes_as_documented() {
    let cases = manifest();
    assert!(cases.len() >= 50, "manifest has {} cases", cases.len());
    for case in cases.iter().filter(|c| !too_big_for_miri(c)) {
        let name = case["name"].as_str().unwrap();
        let blob = blob(name);
        assert_eq!(blob.len() as u64, case["len"].as_u64().unwrap(), "{name}");
        let got = kinesis_agg::deaggregate(&blob);
        match case["expect"].as_str().unwrap() {
            "aggregated" => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                check_records(name, &got, case["records"].as_array().unwrap());
                // The no-heap reader gives the same records when the tables fit.
                if let Deaggregated::Aggregated(heap) = &got {
                    let fixed = Options::new().deaggregate_fixed::<512>(&blob).unwrap();
                    let Deaggregated::Aggregated(fixed) = fixed else {
                        panic!("{name}")
                    };
                    assert!(heap.records().eq(fixed.records()), "{name}: fixed tables differ");
                }
            }
            "plain" => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let Deaggregated::Plain { data, reason } = got else {
                    panic!("{name}: expected plain, got {got:?}");
                };
                assert_eq!(data, &blob[..], "{name}: passed through unchanged");
                assert_eq!(variant(&reason), case["reason"].as_str().unwrap(), "{name}");
            }
            "error" => {
                let err = got.expect_err(name);
                assert_eq!(variant(&err), case["error"].as_str().unwrap(), "{name}: {err}");
                assert_eq!(
                    err.offset(),
                    case["offset"].as_u64().map(|o| o as usize),
                    "{name}: {err}"
                );
                // Display names the offset.
                let text = err.to_string();
                assert!(
                    text.contains(&err.offset().unwrap().to_string()),
                    "{name}: {text}"
                );
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
    }
}

#[test]
fn options_change_only_what_they_say() {
    for case in manifest().into_iter().filter(|c| !too_big_for_miri(c)) {
        let name = case["name"].as_str().unwrap();
        let blob = blob(name);
        let strict = Options::new().checksum(Checksum::Strict).deaggregate(&blob);
        let unverified = Options::new().checksum(Checksum::Skip).deaggregate(&blob);
        let verify = Options::new().checksum(Checksum::Verify).deaggregate(&blob);
        assert_eq!(
            format!("{verify:?}"),
            format!("{:?}", kinesis_agg::deaggregate(&blob)),
            "{name}: Verify is the default"
        );
        match (case["expect"].as_str().unwrap(), case["reason"].as_str()) {
            ("plain", Some("ChecksumMismatch")) => {
                assert_eq!(
                    strict.unwrap_err(),
                    kinesis_agg::Error::ChecksumMismatch,
                    "{name}"
                );
                assert!(
                    matches!(
                        verify,
                        Ok(Deaggregated::Plain {
                            reason: PlainReason::ChecksumMismatch,
                            ..
                        })
                    ),
                    "{name}"
                );
                // Unverified: aggregated if the body parses, else plain with
                // the reason the parser gives.
                let parsed = kinesis_agg::Options::new()
                    .checksum(Checksum::Skip)
                    .envelope(&blob)
                    .unwrap();
                let kinesis_agg::Envelope::Aggregated { .. } = parsed else {
                    panic!("{name}: {parsed:?}")
                };
                match unverified.unwrap() {
                    Deaggregated::Aggregated(a) => assert_eq!(a.records().count(), a.len(), "{name}"),
                    Deaggregated::Plain { reason, .. } => {
                        assert!(matches!(reason, PlainReason::Unparsable(_)), "{name}: {reason:?}");
                    }
                }
            }
            ("plain", _) => {
                assert!(matches!(strict, Ok(Deaggregated::Plain { .. })), "{name}");
                assert!(matches!(unverified, Ok(Deaggregated::Plain { .. })), "{name}");
            }
            ("aggregated", _) => {
                let n = |d: Result<Deaggregated<'_, Vec<&str>>, _>| match d {
                    Ok(Deaggregated::Aggregated(a)) => a.len(),
                    other => panic!("{name}: {other:?}"),
                };
                let want = case["records"].as_array().unwrap().len();
                assert_eq!(n(strict), want);
                assert_eq!(n(unverified), want);
                assert_eq!(n(verify), want);
            }
            ("error", _) => {
                let e = kinesis_agg::deaggregate(&blob).unwrap_err();
                assert_eq!(strict.unwrap_err(), e);
                assert_eq!(verify.unwrap_err(), e);
                // Unverified, a body that does not parse is passed through.
                assert!(
                    matches!(unverified, Ok(Deaggregated::Plain { reason: PlainReason::Unparsable(u), .. }) if u == e),
                    "{name}"
                );
            }
            _ => unreachable!(),
        }
    }
}

#[test]
fn fixed_tables_refuse_more_keys_than_their_capacity() {
    let blob = blob("py_300_keys_two_byte_indices");
    let err = Options::new().deaggregate_fixed::<299>(&blob).unwrap_err();
    assert!(
        matches!(
            err,
            kinesis_agg::Error::TableFull {
                capacity: 299,
                table: kinesis_agg::Table::PartitionKey,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("299"));
    assert!(matches!(
        Options::new().deaggregate_fixed::<300>(&blob),
        Ok(Deaggregated::Aggregated(_))
    ));
}

#[test]
fn records_borrow_the_input_without_copying() {
    let blob = blob("py_mixed_keys");
    let Deaggregated::Aggregated(agg) = kinesis_agg::deaggregate(&blob).unwrap() else {
        panic!()
    };
    let range = blob.as_ptr_range();
    for r in agg.records() {
        assert!(range.contains(&r.data.as_ptr()));
        assert!(range.contains(&r.partition_key.as_ptr()));
        if let Some(e) = r.explicit_hash_key {
            assert!(range.contains(&e.as_ptr()));
        }
    }
    // Items outlive the iterator and the aggregate's tables.
    let first = {
        let mut it = agg.records();
        it.next().unwrap()
    };
    drop(agg);
    assert_eq!(first.partition_key, "alpha");
    let mut it = kinesis_agg::deaggregate_fixed::<8>(&blob).unwrap();
    if let Deaggregated::Aggregated(a) = &mut it {
        let mut recs = a.records();
        assert_eq!(recs.len(), 6);
        recs.by_ref().for_each(drop);
        assert_eq!(recs.next(), None);
        assert_eq!(recs.next(), None);
        assert_eq!(recs.size_hint(), (0, Some(0)));
    }
}

/// Regression (found by the `deaggregate` fuzz target): with fixed tables
/// a table may fill up before the reader meets a structural error further
/// on, so the two readers report different, equally correct errors. Both
/// refuse the body; neither yields a record.
#[test]
fn fixed_tables_may_fill_before_a_later_structural_error() {
    let mut body = Vec::new();
    for k in [b"a", b"b", b"c", b"d", b"e"] {
        body.extend_from_slice(&[0x0A, 1, k[0]]);
    }
    // A record whose length runs past the end.
    body.extend_from_slice(&[0x1A, 0x40, 0x08, 0x00]);
    let blob = support::pb::wrap(&body);
    assert_eq!(
        Options::new().deaggregate_fixed::<4>(&blob).unwrap_err(),
        kinesis_agg::Error::TableFull {
            offset: 16,
            table: kinesis_agg::Table::PartitionKey,
            capacity: 4
        }
    );
    assert_eq!(
        kinesis_agg::deaggregate(&blob).unwrap_err(),
        kinesis_agg::Error::LengthPastEnd { offset: 20 }
    );
}

/// Every fixture, verified together with the others (checksums side by
/// side), reads as it reads alone, under each policy: the same outcome,
/// records, errors and offsets; and a batch larger than its room reads
/// what fits.
#[test]
fn a_batch_reads_as_each_blob_alone() {
    // Under Miri, which interprets every step of every lane, a sample: a
    // third of the fixtures of up to 1 KiB (the native run reads them all).
    let cases: Vec<Value> = manifest()
        .into_iter()
        .enumerate()
        .filter(|(i, c)| !cfg!(miri) || (i % 3 == 0 && c["len"].as_u64().unwrap() <= 1024))
        .map(|(_, c)| c)
        .collect();
    let blobs: Vec<Vec<u8>> = cases
        .iter()
        .map(|c| blob(c["name"].as_str().unwrap()))
        .chain([Vec::new(), b"plain".to_vec()])
        .collect();
    let views: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let mut aggregated = 0;
    for policy in [Checksum::Verify, Checksum::Strict, Checksum::Skip] {
        let opts = Options::new().checksum(policy);
        let batch = opts.verify_all(&views);
        assert_eq!(batch.len(), views.len());
        for (v, &b) in batch.iter().zip(&views) {
            assert_eq!(v.blob(), b);
            assert_eq!(v.envelope(), opts.envelope(b), "{policy:?}");
            let (got, want) = (v.deaggregate(), opts.deaggregate(b));
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{policy:?}");
            aggregated += usize::from(matches!(want, Ok(Deaggregated::Aggregated(_))));
            assert_eq!(
                format!("{:?}", v.deaggregate_fixed::<4>()),
                format!("{:?}", opts.deaggregate_fixed::<4>(b))
            );
        }
        // Room for three: three read, the rest untouched.
        let mut out = [kinesis_agg::Verified::default(); 4];
        assert_eq!(opts.verify_into(&views[..3], &mut out), 3);
        assert_eq!(&out[..3], &batch[..3]);
        assert_eq!(out[3], kinesis_agg::Verified::default());
        let mut room = [kinesis_agg::Verified::default(); 2];
        assert_eq!(opts.verify_into(&views, &mut room), 2);
        assert_eq!(room, batch[..2]);
    }
    assert!(
        aggregated > if cfg!(miri) { 3 } else { 10 },
        "the fixtures hold aggregated records"
    );
    // An empty blob by default: plain, read as plain.
    let d = kinesis_agg::Verified::default();
    assert_eq!(
        d.envelope(),
        Ok(kinesis_agg::Envelope::Plain(PlainReason::NoMagic))
    );
    assert!(matches!(
        d.deaggregate(),
        Ok(Deaggregated::Plain { data: b"", .. })
    ));
}

/// Every fixture read with its body's MD5 given (a platform's own MD5)
/// reads as it reads alone, under each policy; given a wrong MD5 it reads
/// as the blob with a wrong trailer reads.
#[test]
fn a_blob_read_with_its_md5_given_reads_as_alone() {
    use md5::{Digest, Md5};
    let mut checked = 0;
    for case in manifest() {
        if cfg!(miri) && case["len"].as_u64().unwrap() > 1024 {
            continue;
        }
        let b = blob(case["name"].as_str().unwrap());
        let md5: [u8; 16] = if b.len() > 20 {
            Md5::digest(&b[4..b.len() - 16]).into()
        } else {
            [0; 16]
        };
        // The same blob with its trailer changed: what a wrong MD5 means.
        let mut broken = b.clone();
        if b.len() > 20 {
            let last = broken.len() - 1;
            broken[last] ^= 1;
        }
        let mut wrong = md5;
        wrong[15] ^= 1;
        for policy in [Checksum::Verify, Checksum::Strict, Checksum::Skip] {
            let opts = Options::new().checksum(policy);
            let v = opts.verify_with_md5(&b, &md5);
            assert_eq!(v.envelope(), opts.envelope(&b), "{policy:?}");
            assert_eq!(
                format!("{:?}", v.deaggregate()),
                format!("{:?}", opts.deaggregate(&b)),
                "{policy:?}"
            );
            // Envelopes compare bodies by content: the two blobs differ in
            // their trailers only.
            let w = opts.verify_with_md5(&b, &wrong);
            assert_eq!(w.envelope(), opts.envelope(&broken), "{policy:?}");
            checked += 1;
        }
    }
    assert!(checked > 100);
}
