//! A prost-derive model of the KPL schema (no protoc), and
//! helpers that wrap a body into a Kinesis data blob.

use md5::{Digest, Md5};

/// `aws.kinesis.protobuf.AggregatedRecord`, as prost derives it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbAggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<PbRecord>,
}

/// `Record`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbRecord {
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub tags: Vec<PbTag>,
}

/// `Tag`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PbTag {
    #[prost(string, required, tag = "1")]
    pub key: String,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// magic + body + MD5(body).
pub fn wrap(body: &[u8]) -> Vec<u8> {
    let mut out = kinesis_agg::MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out
}

/// MD5 of `bytes` in lowercase hex, as the fixture manifests write it.
pub fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// An owned user record, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    pub tags: Vec<(String, Option<String>)>,
}

/// The user records prost reads from a model, resolving indices (panics
/// on an index outside its table: callers check first).
pub fn resolve(m: &PbAggregatedRecord) -> Vec<Owned> {
    m.records
        .iter()
        .map(|r| Owned {
            partition_key: m.partition_key_table[r.partition_key_index as usize].clone(),
            explicit_hash_key: r
                .explicit_hash_key_index
                .map(|i| m.explicit_hash_key_table[i as usize].clone()),
            data: r.data.clone(),
            tags: r.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect(),
        })
        .collect()
}

/// The user records of an aggregated blob as prost reads them (the magic
/// and the MD5 trailer checked with the `md-5` crate): the tests' oracle,
/// independent of the library's reader.
pub fn prost_read(blob: &[u8]) -> Vec<Owned> {
    use prost::Message;
    assert_eq!(blob[..4], kinesis_agg::MAGIC, "no magic");
    let body = &blob[4..blob.len() - 16];
    assert_eq!(
        Md5::digest(body).as_slice(),
        &blob[blob.len() - 16..],
        "MD5 trailer"
    );
    resolve(&PbAggregatedRecord::decode(body).expect("prost reads the body"))
}

/// The size of the canonical aggregate of `records` (magic, prost's
/// encoding, MD5): what an aggregator holding them must report.
pub fn oracle_len(records: &[(String, Option<String>, Vec<u8>)]) -> usize {
    use prost::Message;
    4 + canonical(records).encoded_len() + 16
}

/// Our reader's user records, owned.
pub fn ours(blob: &[u8]) -> Result<Option<Vec<Owned>>, kinesis_agg::Error> {
    match kinesis_agg::deaggregate(blob)? {
        kinesis_agg::Deaggregated::Plain { .. } => Ok(None),
        kinesis_agg::Deaggregated::Aggregated(a) => {
            let mut out = Vec::new();
            let mut it = a.records();
            // Exact-size at every step, canonical records or not.
            assert_eq!(it.size_hint(), (a.len(), Some(a.len())));
            let mut i = 0;
            while let Some(r) = it.next() {
                assert_eq!(it.len(), a.len() - i - 1, "size_hint after record {i}");
                assert_eq!(r.sub_sequence_number, i as u64);
                i += 1;
                out.push(Owned {
                    partition_key: r.partition_key.to_owned(),
                    explicit_hash_key: r.explicit_hash_key.map(str::to_owned),
                    data: r.data.to_vec(),
                    tags: r
                        .tags
                        .map(|t| (t.key.to_owned(), t.value.map(str::to_owned)))
                        .collect(),
                });
            }
            assert_eq!(out.len(), a.len());
            Ok(Some(out))
        }
    }
}

/// The canonical message for a list of user records: tables of distinct
/// keys in order of first use, field 2 only where a record has an EHK.
pub fn canonical(records: &[(String, Option<String>, Vec<u8>)]) -> PbAggregatedRecord {
    let mut m = PbAggregatedRecord::default();
    for (pk, ehk, data) in records {
        let pi = match m.partition_key_table.iter().position(|k| k == pk) {
            Some(i) => i,
            None => {
                m.partition_key_table.push(pk.clone());
                m.partition_key_table.len() - 1
            }
        };
        let ei = ehk
            .as_ref()
            .map(|e| match m.explicit_hash_key_table.iter().position(|k| k == e) {
                Some(i) => i,
                None => {
                    m.explicit_hash_key_table.push(e.clone());
                    m.explicit_hash_key_table.len() - 1
                }
            });
        m.records.push(PbRecord {
            partition_key_index: pi as u64,
            explicit_hash_key_index: ei.map(|i| i as u64),
            data: data.clone(),
            tags: vec![],
        });
    }
    m
}

/// Where each record field of a prost-encoded message starts in the blob
/// (magic included): prost writes the tables, then the records, in order.
pub fn record_offsets(m: &PbAggregatedRecord) -> Vec<usize> {
    use prost::Message;
    let tables = PbAggregatedRecord {
        records: vec![],
        ..m.clone()
    };
    let mut at = kinesis_agg::MAGIC.len() + tables.encoded_len();
    m.records
        .iter()
        .map(|r| {
            let here = at;
            let len = r.encoded_len();
            at += 1 + prost::encoding::encoded_len_varint(len as u64) + len;
            here
        })
        .collect()
}

/// A user record with tags: partition key, explicit hash key, data, tags.
pub type Tagged = (String, Option<String>, Vec<u8>, Vec<PbTag>);

/// `canonical`, with each record's tags.
pub fn canonical_tagged(records: &[Tagged]) -> PbAggregatedRecord {
    let plain: Vec<(String, Option<String>, Vec<u8>)> = records
        .iter()
        .map(|(p, e, d, _)| (p.clone(), e.clone(), d.clone()))
        .collect();
    let mut m = canonical(&plain);
    for (r, (_, _, _, tags)) in m.records.iter_mut().zip(records) {
        r.tags = tags.clone();
    }
    m
}
