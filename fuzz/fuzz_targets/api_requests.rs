//! What a Kinesis API endpoint reads from clients and servers: any bytes as
//! a PutRecords or PutRecord request (JSON, and CBOR through the CBOR
//! protocol's conversion), and as a GetRecords answer to deaggregate. No
//! panic, and what is accepted holds what Kinesis allows: 1 to 500
//! records, keys Kinesis takes, data within the limit, 5 MiB in all; a
//! CBOR body becomes JSON; a deaggregated answer is JSON with as many
//! records as it says. The first byte chooses the entry point.
#![no_main]

use kinesis_agg::api::{
    ApiError, PutRequest, ShardCheck, cbor_to_json, deaggregate_get_records, json_to_cbor, parse_put_record,
    parse_put_records,
};
use kinesis_agg::{HashKeyRange, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES};
use libfuzzer_sys::fuzz_target;

const MAX_DATA: usize = 1 << 20;

fn check(r: &Result<PutRequest<'_>, ApiError>, many: bool) {
    match r {
        Ok(p) => {
            let n = p.keys.len();
            assert_eq!(n, p.spans.len());
            assert!(if many {
                (1..=PUT_RECORDS_MAX_ENTRIES).contains(&n)
            } else {
                n == 1
            });
            let mut total = 0;
            for (i, (key, hash)) in p.keys.iter().enumerate() {
                assert!(kinesis_agg::check_partition_key(key).is_ok());
                if let Some(h) = hash {
                    assert!(kinesis_agg::parse_hash_key(h).is_ok());
                }
                let span = &p.spans[i];
                assert!(span.start <= span.end && span.end <= p.data.len());
                assert!(span.len() <= MAX_DATA);
                assert_eq!(p.data_of(i).len(), span.len());
                total += span.len() + key.len();
            }
            assert!(!many || total <= PUT_RECORDS_MAX_BYTES);
        }
        Err(e) => assert!(e.status == 400 && !e.message.is_empty(), "{e}"),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&which, body)) = input.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            check(&parse_put_records(body, MAX_DATA), true);
            check(&parse_put_record(body, MAX_DATA), false);
        }
        1 => match cbor_to_json(body) {
            Ok(json) => {
                assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
                check(&parse_put_records(&json, MAX_DATA), true);
                // And back: JSON of any shape converts to CBOR.
                assert!(json_to_cbor(&json).is_ok());
            }
            Err(e) => assert_eq!((e.status, &*e.code), (400, "SerializationException")),
        },
        _ => {
            let half = HashKeyRange::new(0, u128::MAX / 2);
            let shard = half.filter(|_| which % 4 == 3).map(|range| ShardCheck {
                range,
                kcl_rule: which & 4 == 4,
            });
            if let Ok((out, read)) = deaggregate_get_records(body, shard) {
                let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON out");
                let records = v["Records"].as_array().map_or(0, Vec::len);
                assert_eq!(records, read.user_records);
                assert!(read.aggregates <= read.records);
                assert!(read.broken.len() <= read.records);
            }
        }
    }
});
