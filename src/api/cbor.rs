//! The CBOR protocol (`application/x-amz-cbor-1.1`) as the JSON one: a
//! CBOR body turned into the JSON the same call would send (byte strings
//! become base64, tag-1 timestamps seconds), and JSON of Kinesis's shapes
//! turned back (`Data` members are blobs, members named `...Timestamp`
//! timestamps).

use std::boxed::Box;
use std::format;
use std::string::ToString;
use std::vec::Vec;

use ciborium::Value as Cbor;
use serde_json::{Map, Number, Value as Json};

use super::ApiError;
use crate::b64;

/// A CBOR request body as the JSON the same call would send.
///
/// # Errors
/// `SerializationException`: not CBOR, nested deeper than 16, map keys that
/// are not text, integers out of JSON's range, tags other than 1.
pub fn cbor_to_json(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let v: Cbor = ciborium::de::from_reader(body)
        .map_err(|e| ApiError::serialization(format!("the body is not CBOR: {e}")))?;
    Ok(to_json(v, 0)?.to_string().into_bytes())
}

/// A JSON answer (or error) body of Kinesis's shapes as CBOR.
///
/// # Errors
/// A body that is not JSON (`InternalFailure`: it came from upstream).
pub fn json_to_cbor(json: &[u8]) -> Result<Vec<u8>, ApiError> {
    let v: Json = serde_json::from_slice(json)
        .map_err(|_| ApiError::internal("the upstream Kinesis API answered with a body that is not JSON"))?;
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(&to_cbor(&v, ""), &mut out);
    Ok(out)
}

/// Deepest nesting of a CBOR request (Kinesis's shapes nest 4 deep).
const MAX_DEPTH: usize = 16;

fn to_json(v: Cbor, depth: usize) -> Result<Json, ApiError> {
    if depth > MAX_DEPTH {
        return Err(ApiError::serialization("the CBOR body nests too deep"));
    }
    Ok(match v {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Text(s) => Json::String(s),
        Cbor::Bytes(b) => Json::String(b64::encode(&b)),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(n) = i64::try_from(i) {
                Json::Number(n.into())
            } else if let Ok(n) = u64::try_from(i) {
                Json::Number(n.into())
            } else {
                return Err(ApiError::serialization("a CBOR integer out of range"));
            }
        }
        Cbor::Float(f) => Json::Number(
            Number::from_f64(f).ok_or_else(|| ApiError::serialization("a CBOR float that is not finite"))?,
        ),
        // Epoch-based date/time (RFC 8949 tag 1): seconds, as JSON sends.
        Cbor::Tag(1, inner) => to_json(*inner, depth + 1)?,
        Cbor::Tag(t, _) => return Err(ApiError::serialization(format!("an unexpected CBOR tag {t}"))),
        Cbor::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|i| to_json(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err(ApiError::serialization("a CBOR map key that is not text"));
                };
                m.insert(k, to_json(v, depth + 1)?);
            }
            Json::Object(m)
        }
        _ => return Err(ApiError::serialization("an unexpected CBOR value")),
    })
}

/// JSON of Kinesis's shapes as CBOR: `Data` members are blobs (base64 in
/// JSON, byte strings in CBOR), members named `...Timestamp` are
/// timestamps (seconds in JSON, tag 1 in CBOR).
fn to_cbor(v: &Json, name: &str) -> Cbor {
    match v {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(*b),
        Json::String(s) if name == "Data" => match b64::decode(s.as_bytes(), b64::Padding::Optional) {
            Ok(b) => Cbor::Bytes(b),
            Err(_) => Cbor::Text(s.clone()),
        },
        Json::String(s) => Cbor::Text(s.clone()),
        Json::Number(n) => {
            let plain = if let Some(i) = n.as_i64() {
                Cbor::Integer(i.into())
            } else if let Some(u) = n.as_u64() {
                Cbor::Integer(u.into())
            } else {
                Cbor::Float(n.as_f64().unwrap_or(0.0))
            };
            if name.ends_with("Timestamp") {
                Cbor::Tag(1, Box::new(plain))
            } else {
                plain
            }
        }
        Json::Array(items) => Cbor::Array(items.iter().map(|i| to_cbor(i, name)).collect()),
        Json::Object(m) => Cbor::Map(
            m.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), to_cbor(v, k)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn cbor(v: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn a_cbor_put_records_reads_as_its_json() {
        let req = Cbor::Map(vec![
            (Cbor::Text("StreamName".into()), Cbor::Text("s".into())),
            (
                Cbor::Text("Records".into()),
                Cbor::Array(vec![Cbor::Map(vec![
                    (Cbor::Text("Data".into()), Cbor::Bytes(b"\x00\xffhi".to_vec())),
                    (Cbor::Text("PartitionKey".into()), Cbor::Text("k".into())),
                ])]),
            ),
        ]);
        let v: Json = serde_json::from_slice(&cbor_to_json(&cbor(&req)).unwrap()).unwrap();
        assert_eq!(v["StreamName"], "s");
        assert_eq!(v["Records"][0]["Data"], b64::encode(b"\x00\xffhi"));
        assert_eq!(v["Records"][0]["PartitionKey"], "k");
    }

    #[test]
    fn an_answer_in_cbor_has_blobs_and_timestamps() {
        let json = serde_json::json!({
            "Records": [{"Data": b64::encode(b"abc"), "PartitionKey": "k", "SequenceNumber": "49",
                         "ApproximateArrivalTimestamp": 1.7e9}],
            "MillisBehindLatest": 0,
        });
        let out = json_to_cbor(json.to_string().as_bytes()).unwrap();
        let v: Cbor = ciborium::de::from_reader(&out[..]).unwrap();
        let rec = &v
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some("Records"))
            .unwrap()
            .1;
        let rec = rec.as_array().unwrap()[0].as_map().unwrap();
        let get = |n: &str| {
            rec.iter()
                .find(|(k, _)| k.as_text() == Some(n))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(get("Data"), Cbor::Bytes(b"abc".to_vec()));
        assert_eq!(get("PartitionKey"), Cbor::Text("k".into()));
        assert_eq!(get("SequenceNumber"), Cbor::Text("49".into()));
        assert_eq!(
            get("ApproximateArrivalTimestamp"),
            Cbor::Tag(1, Box::new(Cbor::Float(1.7e9)))
        );
        assert!(json_to_cbor(b"<html>").is_err());
    }

    #[test]
    fn malformed_and_deep_cbor_are_serialization_errors() {
        let e = cbor_to_json(b"\xff\x00").unwrap_err();
        assert_eq!((e.status, &*e.code), (400, "SerializationException"));
        let mut deep = Cbor::Null;
        for _ in 0..40 {
            deep = Cbor::Array(vec![deep]);
        }
        let e = cbor_to_json(&cbor(&deep)).unwrap_err();
        assert_eq!((e.status, &*e.code), (400, "SerializationException"));
        let e = cbor_to_json(&cbor(&Cbor::Map(vec![(Cbor::Integer(1.into()), Cbor::Null)]))).unwrap_err();
        assert_eq!(&*e.code, "SerializationException");
        let e = cbor_to_json(&cbor(&Cbor::Tag(55, Box::new(Cbor::Null)))).unwrap_err();
        assert_eq!(&*e.code, "SerializationException");
    }
}
