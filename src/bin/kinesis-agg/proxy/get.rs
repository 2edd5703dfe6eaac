//! GetRecords answers deaggregated: each aggregated record replaced by its
//! user records, in order, each with its own partition key and data and
//! the carrying record's sequence number, arrival time and encryption
//! type. Plain records pass unchanged, and so does everything else in the
//! answer (`NextShardIterator`, `MillisBehindLatest`, `ChildShards`). The
//! answer is rewritten whole: an aggregate is never split across answers.

use base64::Engine;
use bytes::Bytes;
use kinesis_agg::{KinesisRecord, OnInvalid, Options, try_for_each_user_record_of};
use serde_json::{Map, Value};

use crate::B64;

/// What rewriting one answer did, for the log and the counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rewritten {
    /// Kinesis records in the upstream answer.
    pub(crate) records: usize,
    /// Aggregated ones among them.
    pub(crate) aggregates: usize,
    /// User records in the answer given to the client.
    pub(crate) user_records: usize,
    /// Broken aggregates passed through as plain records: each one's
    /// sequence number and what is wrong.
    pub(crate) broken: Vec<(String, String)>,
}

/// The client's answer made from upstream's GetRecords answer `body`.
///
/// # Errors
/// An answer that is not a GetRecords answer (not JSON, records without
/// base64 data): the caller passes it on unchanged.
pub(crate) fn deaggregate(body: &[u8]) -> Result<(Bytes, Rewritten), String> {
    let mut answer: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("the GetRecords answer is not JSON: {e}"))?;
    let Some(Value::Array(upstream)) = answer.remove("Records") else {
        return Err("the GetRecords answer has no Records".to_owned());
    };
    let mut blobs = Vec::with_capacity(upstream.len());
    for (i, r) in upstream.iter().enumerate() {
        let data = r.get("Data").and_then(Value::as_str).unwrap_or("");
        blobs.push(
            B64.decode(data).map_err(|e| {
                format!("record {i} of the GetRecords answer has data that is not base64: {e}")
            })?,
        );
    }
    let outer: Vec<KinesisRecord<'_>> = upstream
        .iter()
        .zip(&blobs)
        .map(|(r, data)| {
            KinesisRecord::new(data)
                .with_partition_key(r.get("PartitionKey").and_then(Value::as_str))
                .with_sequence_number(r.get("SequenceNumber").and_then(Value::as_str))
        })
        .collect();
    let mut done = Rewritten {
        records: upstream.len(),
        ..Rewritten::default()
    };
    let mut records = Vec::with_capacity(upstream.len());
    let mut last = usize::MAX;
    let _ = try_for_each_user_record_of(&outer, Options::new(), OnInvalid::Error, None, |r| {
        match r {
            Ok(user) if user.aggregated => {
                if user.record != last {
                    done.aggregates += 1;
                    last = user.record;
                }
                let carrier = &upstream[user.record];
                let mut m = Map::new();
                for field in ["SequenceNumber", "ApproximateArrivalTimestamp", "EncryptionType"] {
                    if let Some(v) = carrier.get(field) {
                        m.insert(field.to_owned(), v.clone());
                    }
                }
                m.insert("Data".to_owned(), Value::String(B64.encode(user.data)));
                m.insert(
                    "PartitionKey".to_owned(),
                    Value::String(user.partition_key.unwrap_or_default().to_owned()),
                );
                records.push(Value::Object(m));
            }
            Ok(plain) => records.push(upstream[plain.record].clone()),
            Err(broken) => {
                done.broken.push((
                    broken.sequence_number.unwrap_or("(none)").to_owned(),
                    broken.error.to_string(),
                ));
                records.push(upstream[broken.record].clone());
            }
        }
        Ok::<(), std::convert::Infallible>(())
    });
    done.user_records = records.len();
    answer.insert("Records".to_owned(), Value::Array(records));
    let body = serde_json::to_vec(&answer).map_err(|e| e.to_string())?;
    Ok((Bytes::from(body), done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_agg::RecordAggregator;

    fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut agg = RecordAggregator::new();
        for (k, d) in records {
            agg.add(kinesis_agg::Record::new(k, d)).unwrap();
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
                {"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1.5, "Data": B64.encode(&agg),
                 "PartitionKey": "outer", "EncryptionType": "KMS"},
                {"SequenceNumber": "2", "ApproximateArrivalTimestamp": 2.5, "Data": B64.encode(b"plain"),
                 "PartitionKey": "p"},
                {"SequenceNumber": "3", "ApproximateArrivalTimestamp": 3.5, "Data": B64.encode(&broken),
                 "PartitionKey": "b"},
            ],
            "NextShardIterator": "it",
            "MillisBehindLatest": 7,
            "ChildShards": [],
        });
        let (body, done) = deaggregate(answer.to_string().as_bytes()).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["NextShardIterator"], "it");
        assert_eq!(v["MillisBehindLatest"], 7);
        assert_eq!(v["ChildShards"], serde_json::json!([]));
        let r = v["Records"].as_array().unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            serde_json::json!({"SequenceNumber": "1", "ApproximateArrivalTimestamp": 1.5,
                "Data": B64.encode(b"one"), "PartitionKey": "k1", "EncryptionType": "KMS"})
        );
        assert_eq!(r[1]["PartitionKey"], "k2");
        assert_eq!(r[1]["Data"], B64.encode(b"two"));
        assert_eq!(r[1]["SequenceNumber"], "1");
        assert_eq!(r[2], answer["Records"][1]);
        assert_eq!(r[3], answer["Records"][2]);
        assert_eq!((done.records, done.aggregates, done.user_records), (3, 1, 4));
        assert_eq!(done.broken.len(), 1);
        assert_eq!(done.broken[0].0, "3");
    }

    #[test]
    fn an_answer_that_is_not_get_records_is_refused() {
        assert!(deaggregate(b"<html>").is_err());
        assert!(deaggregate(b"{}").is_err());
        assert!(deaggregate(br#"{"Records":[{"Data":"!!"}]}"#).is_err());
    }
}
