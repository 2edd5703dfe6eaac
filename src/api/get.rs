//! GetRecords answers deaggregated: each aggregated record replaced by its
//! user records, in order, each with its own partition key and data and
//! the carrying record's sequence number, arrival time and encryption
//! type. Plain records pass unchanged, and so does everything else in the
//! answer (`NextShardIterator`, `MillisBehindLatest`, `ChildShards`). The
//! answer is rewritten whole: an aggregate is never split across answers.

use std::borrow::ToOwned;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use serde_json::{Map, Value};

use crate::b64;
use crate::{Deaggregated, HashKeyRange, Options};

/// What rewriting one answer did, for the log and the counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GetRecordsRead {
    /// Kinesis records in the upstream answer.
    pub records: usize,
    /// Aggregated ones among them.
    pub aggregates: usize,
    /// User records in the answer given to the client.
    pub user_records: usize,
    /// Broken aggregates passed through as plain records: each one's
    /// sequence number and what is wrong.
    pub broken: Vec<(String, String)>,
    /// User records outside the shard's hash key range (written by an
    /// aggregator that is not shard-aware): delivered, unless the KCL's
    /// rule is applied.
    pub outside: usize,
    /// Under the KCL's rule: the aggregates discarded whole for holding
    /// a user record outside the range, by sequence number, and the user
    /// records they held.
    pub discarded: Vec<String>,
    /// The user records those aggregates held.
    pub discarded_records: usize,
    /// The answer's `NextShardIterator`.
    pub next_iterator: Option<String>,
}

/// The shard an answer was read from, when the proxy knows it, and what to
/// do with aggregates holding user records outside its range.
#[derive(Clone, Copy, Debug)]
pub struct ShardCheck {
    /// The shard's hash key range.
    pub range: HashKeyRange,
    /// Apply the KCL's rule: discard such an aggregate whole.
    pub kcl_rule: bool,
}

/// A GetRecords answer (JSON) with its aggregated records replaced by their
/// user records, and what was done. With `shard`, aggregates holding user
/// records outside its range are counted, or discarded under the KCL's
/// rule. A broken aggregate (right checksum, bad body) is passed on as it
/// came, and named in [`GetRecordsRead::broken`].
///
/// # Errors
/// An answer that is not a GetRecords answer (not JSON, no `Records`,
/// data that is not base64).
pub fn deaggregate_get_records(
    body: &[u8],
    shard: Option<ShardCheck>,
) -> Result<(Vec<u8>, GetRecordsRead), String> {
    let mut answer: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("the GetRecords answer is not JSON: {e}"))?;
    let Some(Value::Array(upstream)) = answer.remove("Records") else {
        return Err("the GetRecords answer has no Records".to_owned());
    };
    let mut blobs = Vec::with_capacity(upstream.len());
    for (i, r) in upstream.iter().enumerate() {
        let data = r.get("Data").and_then(Value::as_str).unwrap_or("");
        blobs.push(
            b64::decode(data.as_bytes(), b64::Padding::Optional).map_err(|e| {
                format!("record {i} of the GetRecords answer has data that is not base64: {e}")
            })?,
        );
    }
    let views: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
    let verified = Options::new().verify_all(&views);
    let mut done = GetRecordsRead {
        records: upstream.len(),
        next_iterator: answer
            .get("NextShardIterator")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..GetRecordsRead::default()
    };
    // The answer is written as it is made, not built as a `Value` first:
    // a user record is one write of fields its aggregate shares, its data's
    // base64 (which never needs escaping) and its key.
    let room: usize = body.len() + blobs.iter().map(|b| b.len() / 2).sum::<usize>();
    let mut out = Vec::with_capacity(room);
    out.extend_from_slice(b"{\"Records\":[");
    let mut first = true;
    let mut shared = Vec::new();
    for (carrier, v) in upstream.iter().zip(&verified) {
        let sequence = || {
            carrier
                .get("SequenceNumber")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_owned()
        };
        let agg = match v.deaggregate() {
            Ok(Deaggregated::Aggregated(agg)) => agg,
            Ok(Deaggregated::Plain { .. }) => {
                pass_on(&mut out, &mut first, carrier, &mut done)?;
                continue;
            }
            Err(e) => {
                done.broken.push((sequence(), e.to_string()));
                pass_on(&mut out, &mut first, carrier, &mut done)?;
                continue;
            }
        };
        done.aggregates += 1;
        if let Some(shard) = shard
            && agg.check_range(shard.range).is_err()
        {
            if shard.kcl_rule {
                done.discarded.push(sequence());
                done.discarded_records += agg.records().count();
                continue;
            }
            let mut inside = agg.records_in_range(shard.range);
            inside.by_ref().for_each(drop);
            done.outside += inside.outside();
        }
        // `{"SequenceNumber":...,"ApproximateArrivalTimestamp":...,
        // "EncryptionType":...,` as the carrier has them.
        shared.clear();
        shared.push(b'{');
        for field in ["SequenceNumber", "ApproximateArrivalTimestamp", "EncryptionType"] {
            if let Some(v) = carrier.get(field) {
                write_json(&mut shared, field)?;
                shared.push(b':');
                write_json(&mut shared, v)?;
                shared.push(b',');
            }
        }
        for user in agg.records() {
            if !core::mem::take(&mut first) {
                out.push(b',');
            }
            out.extend_from_slice(&shared);
            out.extend_from_slice(b"\"Data\":\"");
            b64::encode_append_vec(user.data, &mut out);
            out.extend_from_slice(b"\",\"PartitionKey\":");
            write_json(&mut out, user.partition_key)?;
            out.push(b'}');
            done.user_records += 1;
        }
    }
    out.push(b']');
    for (key, value) in &answer {
        out.push(b',');
        write_json(&mut out, key)?;
        out.push(b':');
        write_json(&mut out, value)?;
    }
    out.push(b'}');
    Ok((out, done))
}

/// Writes a record of the upstream answer as it came.
fn pass_on(
    out: &mut Vec<u8>,
    first: &mut bool,
    record: &Value,
    done: &mut GetRecordsRead,
) -> Result<(), String> {
    if !core::mem::take(first) {
        out.push(b',');
    }
    done.user_records += 1;
    write_json(out, record)
}

/// Appends `value` as JSON.
fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) -> Result<(), String> {
    serde_json::to_writer(out, value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordAggregator;

    fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut agg = RecordAggregator::new();
        for (k, d) in records {
            agg.add(crate::Record::new(k, d)).unwrap();
        }
        agg.finish().unwrap().data().to_vec()
    }

    #[test]
    fn aggregates_become_their_user_records_and_the_rest_passes() {
        let agg = aggregate(&[("k1", b"one"), ("k2", b"two")]);
        let mut broken = aggregate(&[("k", b"x")]);
        // A key index outside the table, with the checksum made right.
        let body_len = broken.len() - 16;
        let pos = broken[..body_len].iter().rposition(|&b| b == 0x08).unwrap();
        broken[pos + 1] = 7;
        let digest = <md5::Md5 as md5::Digest>::digest(&broken[4..body_len]);
        broken[body_len..].copy_from_slice(&digest);
        let answer = serde_json::json!({
            "Records": [
                {"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1.5, "Data": b64::encode(&agg),
                 "PartitionKey": "outer", "EncryptionType": "KMS"},
                {"SequenceNumber": "2", "ApproximateArrivalTimestamp": 2.5, "Data": b64::encode(b"plain"),
                 "PartitionKey": "p"},
                {"SequenceNumber": "3", "ApproximateArrivalTimestamp": 3.5, "Data": b64::encode(&broken),
                 "PartitionKey": "b"},
            ],
            "NextShardIterator": "it",
            "MillisBehindLatest": 7,
            "ChildShards": [],
        });
        let (body, done) = deaggregate_get_records(answer.to_string().as_bytes(), None).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["NextShardIterator"], "it");
        assert_eq!(v["MillisBehindLatest"], 7);
        assert_eq!(v["ChildShards"], serde_json::json!([]));
        let r = v["Records"].as_array().unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            serde_json::json!({"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1.5,
                "Data": b64::encode(b"one"), "PartitionKey": "k1", "EncryptionType": "KMS"})
        );
        assert_eq!(r[1]["PartitionKey"], "k2");
        assert_eq!(r[1]["Data"], b64::encode(b"two"));
        assert_eq!(r[1]["SequenceNumber"], "1");
        assert_eq!(r[2], answer["Records"][1]);
        assert_eq!(r[3], answer["Records"][2]);
        assert_eq!((done.records, done.aggregates, done.user_records), (3, 1, 4));
        assert_eq!(done.broken.len(), 1);
        assert_eq!(done.broken[0].0, "3");
    }

    /// Keys JSON must escape, and fields of the answer this code does not
    /// know, come back as they were.
    #[test]
    fn keys_that_need_escaping_and_unknown_fields_come_back_as_they_were() {
        let keys = [
            "quote\"back\\slash",
            "tab\tnew\nline",
            "é✓ and \u{1F600}",
            "\u{1}",
        ];
        let agg = aggregate(&keys.map(|k| (k, k.as_bytes())));
        let answer = serde_json::json!({
            "Records": [{"SequenceNumber": "9", "Data": b64::encode(&agg), "PartitionKey": "o"}],
            "NextShardIterator": "it\"x",
            "SomethingNew": {"a": [1, 2.5, null, true]},
        });
        let (body, done) = deaggregate_get_records(answer.to_string().as_bytes(), None).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let r = v["Records"].as_array().unwrap();
        assert_eq!(r.len(), keys.len());
        for (got, k) in r.iter().zip(keys) {
            assert_eq!(
                got,
                &serde_json::json!({"SequenceNumber": "9", "Data": b64::encode(k.as_bytes()), "PartitionKey": k})
            );
        }
        assert_eq!(v["SomethingNew"], answer["SomethingNew"]);
        assert_eq!(v["NextShardIterator"], "it\"x");
        assert_eq!(v.as_object().unwrap().len(), 3);
        assert_eq!(done.user_records, keys.len());
    }

    #[test]
    fn an_answer_that_is_not_get_records_is_refused() {
        assert!(deaggregate_get_records(b"<html>", None).is_err());
        assert!(deaggregate_get_records(b"{}", None).is_err());
        assert!(deaggregate_get_records(br#"{"Records":[{"Data":"!!"}]}"#, None).is_err());
    }
}

#[cfg(test)]
mod range_tests {
    use super::*;
    use crate::RecordAggregator;
    use std::vec;

    /// An answer holding one aggregate of keys `k0`..`k9` and one plain
    /// record.
    fn answer() -> String {
        let mut agg = RecordAggregator::new();
        let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
        for k in &keys {
            agg.add(crate::Record::new(k, k.as_bytes())).unwrap();
        }
        let blob = agg.finish().unwrap().data().to_vec();
        serde_json::json!({"Records": [
            {"SequenceNumber": "1", "Data": b64::encode(&blob), "PartitionKey": "k0"},
            {"SequenceNumber": "2", "Data": b64::encode(b"plain"), "PartitionKey": "p"},
        ]})
        .to_string()
    }

    /// The range that holds the keys' hash keys from the 5th smallest on.
    fn upper_range() -> (HashKeyRange, usize) {
        let mut hashes: Vec<u128> = (0..10)
            .map(|i| crate::partition_key_hash(&format!("k{i}")))
            .collect();
        hashes.sort_unstable();
        (HashKeyRange::new(hashes[4], u128::MAX).unwrap(), 4)
    }

    /// `answer()` read from a shard of `range`, under the KCL's rule or not.
    fn read_in(range: HashKeyRange, kcl_rule: bool) -> (Value, GetRecordsRead) {
        let shard = ShardCheck { range, kcl_rule };
        let (body, done) = deaggregate_get_records(answer().as_bytes(), Some(shard)).unwrap();
        (serde_json::from_slice(&body).unwrap(), done)
    }

    #[test]
    fn user_records_outside_the_shard_are_delivered_and_counted() {
        let (range, below) = upper_range();
        let (v, done) = read_in(range, false);
        assert_eq!(v["Records"].as_array().unwrap().len(), 11);
        assert_eq!((done.outside, done.discarded.len()), (below, 0));
        let (_, done) = read_in(HashKeyRange::new(0, u128::MAX).unwrap(), true);
        assert_eq!(
            (done.outside, done.discarded.len(), done.user_records),
            (0, 0, 11)
        );
    }

    #[test]
    fn the_kcl_rule_discards_such_an_aggregate_whole() {
        let (range, _) = upper_range();
        let (v, done) = read_in(range, true);
        let r = v["Records"].as_array().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0]["SequenceNumber"], "2");
        assert_eq!(
            (done.discarded, done.discarded_records),
            (vec!["1".to_owned()], 10)
        );
    }
}
