//! The input as a protobuf body, wrapped in magic and its correct MD5, so
//! that the fuzzer explores the body parser rather than the checksum.
#![no_main]

use kinesis_agg::Deaggregated;
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};

fuzz_target!(|body: &[u8]| {
    let mut blob = kinesis_agg::MAGIC.to_vec();
    blob.extend_from_slice(body);
    blob.extend_from_slice(&Md5::digest(body));
    match kinesis_agg::deaggregate(&blob) {
        Ok(Deaggregated::Aggregated(a)) => {
            assert!(!body.is_empty());
            let n = a
                .records()
                .inspect(|r| assert!(r.tags.count() < body.len()))
                .count();
            assert_eq!(n, a.len());
        }
        Ok(Deaggregated::Plain { .. }) => assert!(body.is_empty()),
        Err(e) => {
            // Every body error points inside the body.
            let off = e.offset().expect("body errors carry an offset");
            assert!(off >= 4 && off <= 4 + body.len(), "{e:?}");
        }
    }
});
