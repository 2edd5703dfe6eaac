//! Arbitrary bytes through classification and, when aggregated, full
//! iteration, with heap and fixed tables and every option.
#![no_main]

use kinesis_agg::{Checksum, Deaggregated, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|blob: &[u8]| {
    for opts in [
        Options::new(),
        Options::new().checksum(Checksum::Strict),
        Options::new().checksum(Checksum::Skip),
    ] {
        let heap = opts.deaggregate(blob);
        if let Ok(Deaggregated::Aggregated(a)) = &heap {
            let mut n = 0;
            for r in a.records() {
                assert_eq!(r.sub_sequence_number, n as u64);
                n += 1;
                let _ = r.tags.count();
            }
            assert_eq!(n, a.len());
        }
        // Fixed tables agree with heap tables unless they fill up.
        match (opts.deaggregate_fixed::<4>(blob), &heap) {
            (Ok(Deaggregated::Aggregated(f)), Ok(Deaggregated::Aggregated(h))) => {
                assert!(f.records().eq(h.records()))
            }
            // A fixed table may fill up before the heap reader meets
            // another error further on.
            (Err(kinesis_agg::Error::TableFull { .. }), _) => {}
            (
                Ok(Deaggregated::Plain {
                    reason: kinesis_agg::PlainReason::Unparsable(kinesis_agg::Error::TableFull { .. }),
                    ..
                }),
                _,
            ) => {}
            (Ok(Deaggregated::Plain { data, reason }), Ok(Deaggregated::Plain { data: d2, reason: r2 })) => {
                assert_eq!(data, *d2);
                assert_eq!(reason, *r2);
            }
            (Err(e), Err(e2)) => assert_eq!(e, *e2),
            (f, h) => panic!("fixed {f:?} vs heap {h:?}"),
        }
    }
});
