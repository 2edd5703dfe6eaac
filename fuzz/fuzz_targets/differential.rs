//! The same body decoded by our reader and by a prost-derive model of the
//! schema. They must agree on every field of every accepted body, and may
//! disagree on accept/reject only where we deliberately differ from prost
//! (also listed in the crate docs, "Differences from prost"):
//!
//! * required fields: prost does not enforce proto2 `required`; we reject a
//!   record without `partition_key_index` or `data`, or a tag without `key`
//!   (Google's parser does too);
//! * table indices: prost does not check them; we reject an index outside
//!   its table;
//! * a known field with the wrong wire type: prost rejects the message;
//!   Google's parser and ours skip it as an unknown field;
//! * a 10-byte varint whose last byte carries bits above 64: prost rejects
//!   it; Google's parser and ours drop the extra bits;
//! * nesting: prost's recursion limit counts differently; both stop near
//!   100 levels.
#![no_main]

use kinesis_agg::{Deaggregated, Error};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct PbAggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<PbRecord>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbRecord {
    #[prost(uint64, required, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<PbTag>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbTag {
    #[prost(string, required, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

type Flat = (String, Option<String>, Vec<u8>, Vec<(String, Option<String>)>);

fn resolve(m: &PbAggregatedRecord) -> Option<Vec<Flat>> {
    m.records
        .iter()
        .map(|r| {
            Some((
                m.partition_key_table
                    .get(usize::try_from(r.partition_key_index).ok()?)?
                    .clone(),
                match r.explicit_hash_key_index {
                    Some(i) => Some(m.explicit_hash_key_table.get(usize::try_from(i).ok()?)?.clone()),
                    None => None,
                },
                r.data.clone(),
                r.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect(),
            ))
        })
        .collect()
}

fuzz_target!(|body: &[u8]| {
    if body.is_empty() {
        return;
    }
    let mut blob = kinesis_agg::MAGIC.to_vec();
    blob.extend_from_slice(body);
    blob.extend_from_slice(&Md5::digest(body));
    let ours = kinesis_agg::deaggregate(&blob);
    let theirs = PbAggregatedRecord::decode(body);
    match (ours, theirs) {
        (Ok(Deaggregated::Aggregated(a)), Ok(m)) => {
            let got: Vec<Flat> = a
                .records()
                .map(|r| {
                    (
                        r.partition_key.to_owned(),
                        r.explicit_hash_key.map(str::to_owned),
                        r.data.to_vec(),
                        r.tags
                            .map(|t| (t.key.to_owned(), t.value.map(str::to_owned)))
                            .collect(),
                    )
                })
                .collect();
            assert_eq!(Some(got), resolve(&m), "accepted by both, decoded differently");
            assert_eq!(
                a.partition_keys(),
                m.partition_key_table
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            );
        }
        (Ok(Deaggregated::Aggregated(_)), Err(e)) => {
            let why = e.to_string();
            assert!(
                why.contains("invalid wire type")
                    || why.contains("invalid varint")
                    || why.contains("recursion limit"),
                "we accept what prost rejects for an undocumented reason: {why}"
            );
        }
        (Err(e), Ok(m)) => match e {
            Error::MissingField { .. } => {}
            Error::IndexOutOfRange { .. } => {
                assert!(resolve(&m).is_none(), "index error but prost's indices fit")
            }
            Error::NestingTooDeep { .. } => {}
            other => panic!("we reject what prost accepts: {other:?}"),
        },
        (Err(_), Err(_)) => {}
        (Ok(Deaggregated::Plain { .. }), _) => unreachable!("a non-empty body with its MD5 is aggregated"),
    }
});
