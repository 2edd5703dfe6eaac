//! The Kinesis API as clients speak it to the proxy: the two protocols
//! (JSON, and the CBOR of the AWS SDKs for Java), operations named by
//! `X-Amz-Target`, and errors in Kinesis's own shape, which the SDKs'
//! retry logic understands.
//!
//! Inside the proxy every body is JSON: a CBOR request is turned into the
//! JSON the same call would have sent (byte strings become base64,
//! timestamps seconds), and an answer to a CBOR client is turned back.

use std::borrow::Cow;

use base64::Engine;
use bytes::Bytes;
use ciborium::Value as Cbor;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Number, Value as Json};

use crate::B64;

/// The prefix of every Kinesis operation's `X-Amz-Target`.
pub(crate) const TARGET_PREFIX: &str = "Kinesis_20131202.";

/// The protocol a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `application/x-amz-json-1.1` (and 1.0).
    Json,
    /// `application/x-amz-cbor-1.1`.
    Cbor,
}

impl Protocol {
    /// The protocol of a request's content type; `None` for any other.
    pub(crate) fn of(headers: &HeaderMap) -> Option<Protocol> {
        let ct = headers.get("content-type")?.to_str().ok()?;
        let ct = ct.split(';').next().unwrap_or("").trim();
        if ct.eq_ignore_ascii_case("application/x-amz-json-1.1")
            || ct.eq_ignore_ascii_case("application/x-amz-json-1.0")
        {
            Some(Protocol::Json)
        } else if ct.eq_ignore_ascii_case("application/x-amz-cbor-1.1") {
            Some(Protocol::Cbor)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Protocol::Json => "application/x-amz-json-1.1",
            Protocol::Cbor => "application/x-amz-cbor-1.1",
        }
    }
}

/// An error answered in Kinesis's shape: an HTTP status, the error's type
/// (`__type`) and its message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: Cow<'static, str>,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A request that breaks the API's constraints.
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }

    /// A value the API refuses.
    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidArgumentException", message)
    }

    /// A body that is not the protocol's.
    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "SerializationException", message)
    }

    /// A failure of the proxy or upstream that a retry may cure.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalFailure", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

/// The answer to a client: `json` in its protocol, with `status`.
pub(crate) fn answer(protocol: Protocol, status: StatusCode, json: Bytes) -> Response<Full<Bytes>> {
    let body = match protocol {
        Protocol::Json => json,
        Protocol::Cbor => match serde_json::from_slice::<Json>(&json) {
            Ok(v) => Bytes::from(encode_cbor(&json_to_cbor(&v, ""))),
            // What upstream said is not JSON (a proxy's HTML page): the
            // client gets an error it can read instead.
            Err(_) => {
                return error(
                    protocol,
                    &ApiError::internal("the upstream Kinesis API answered with a body that is not JSON"),
                );
            }
        },
    };
    response(protocol, status, None, body)
}

/// An error in Kinesis's shape, in the client's protocol.
pub(crate) fn error(protocol: Protocol, e: &ApiError) -> Response<Full<Bytes>> {
    let mut m = Map::new();
    m.insert("__type".to_owned(), Json::String(e.code.clone().into_owned()));
    m.insert("message".to_owned(), Json::String(e.message.clone()));
    let json = Json::Object(m);
    let body = match protocol {
        Protocol::Json => Bytes::from(json.to_string()),
        Protocol::Cbor => Bytes::from(encode_cbor(&json_to_cbor(&json, ""))),
    };
    response(protocol, e.status, Some(&e.code), body)
}

fn response(
    protocol: Protocol,
    status: StatusCode,
    error_type: Option<&str>,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", protocol.content_type())
        .header("x-amzn-requestid", request_id());
    if let Some(t) = error_type {
        r = r.header("x-amzn-errortype", t);
    }
    r.body(Full::new(body)).unwrap_or_else(|_| {
        // Only a header value could fail, and every one above is ASCII.
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

/// A request id for the answer's `x-amzn-RequestId`: unique within a
/// process, as SDKs only log it.
fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("kinesis-agg-proxy-{}-{n:012x}", std::process::id())
}

/// A request body as the JSON the same call would send.
pub(crate) fn request_json(protocol: Protocol, body: Bytes) -> Result<Bytes, ApiError> {
    match protocol {
        Protocol::Json => Ok(body),
        Protocol::Cbor => {
            let v: Cbor = ciborium::de::from_reader(&body[..])
                .map_err(|e| ApiError::serialization(format!("the body is not CBOR: {e}")))?;
            let j = cbor_to_json(v, 0)?;
            Ok(Bytes::from(j.to_string()))
        }
    }
}

/// Deepest nesting of a CBOR request (Kinesis's shapes nest 4 deep).
const MAX_DEPTH: usize = 16;

fn cbor_to_json(v: Cbor, depth: usize) -> Result<Json, ApiError> {
    if depth > MAX_DEPTH {
        return Err(ApiError::serialization("the CBOR body nests too deep"));
    }
    Ok(match v {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Text(s) => Json::String(s),
        Cbor::Bytes(b) => Json::String(B64.encode(b)),
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
        Cbor::Tag(1, inner) => cbor_to_json(*inner, depth + 1)?,
        Cbor::Tag(t, _) => return Err(ApiError::serialization(format!("an unexpected CBOR tag {t}"))),
        Cbor::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|i| cbor_to_json(i, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err(ApiError::serialization("a CBOR map key that is not text"));
                };
                m.insert(k, cbor_to_json(v, depth + 1)?);
            }
            Json::Object(m)
        }
        _ => return Err(ApiError::serialization("an unexpected CBOR value")),
    })
}

/// JSON of Kinesis's shapes as CBOR: `Data` members are blobs (base64 in
/// JSON, byte strings in CBOR), members named `...Timestamp` are
/// timestamps (seconds in JSON, tag 1 in CBOR).
fn json_to_cbor(v: &Json, name: &str) -> Cbor {
    match v {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(*b),
        Json::String(s) if name == "Data" => match B64.decode(s) {
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
        Json::Array(items) => Cbor::Array(items.iter().map(|i| json_to_cbor(i, name)).collect()),
        Json::Object(m) => Cbor::Map(
            m.iter()
                .map(|(k, v)| (Cbor::Text(k.clone()), json_to_cbor(v, k)))
                .collect(),
        ),
    }
}

fn encode_cbor(v: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = ciborium::ser::into_writer(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(v: &Cbor) -> Bytes {
        Bytes::from(encode_cbor(v))
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
        let json = request_json(Protocol::Cbor, cbor(&req)).unwrap();
        let v: Json = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["StreamName"], "s");
        assert_eq!(v["Records"][0]["Data"], B64.encode(b"\x00\xffhi"));
        assert_eq!(v["Records"][0]["PartitionKey"], "k");
    }

    #[test]
    fn an_answer_to_a_cbor_client_has_blobs_and_timestamps_in_cbor() {
        let json = serde_json::json!({
            "Records": [{"Data": B64.encode(b"abc"), "PartitionKey": "k", "SequenceNumber": "49",
                         "ApproximateArrivalTimestamp": 1.7e9}],
            "MillisBehindLatest": 0,
        });
        let r = answer(Protocol::Cbor, StatusCode::OK, Bytes::from(json.to_string()));
        assert_eq!(r.headers()["content-type"], "application/x-amz-cbor-1.1");
        let body = futures_body(r);
        let v: Cbor = ciborium::de::from_reader(&body[..]).unwrap();
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
        assert_eq!(
            get("ApproximateArrivalTimestamp"),
            Cbor::Tag(1, Box::new(Cbor::Float(1.7e9)))
        );
    }

    #[test]
    fn malformed_and_deep_cbor_are_serialization_errors() {
        let e = request_json(Protocol::Cbor, Bytes::from_static(b"\xff\x00")).unwrap_err();
        assert_eq!(e.code, "SerializationException");
        let mut deep = Cbor::Null;
        for _ in 0..40 {
            deep = Cbor::Array(vec![deep]);
        }
        let e = request_json(Protocol::Cbor, cbor(&deep)).unwrap_err();
        assert_eq!(
            (e.status, &*e.code),
            (StatusCode::BAD_REQUEST, "SerializationException")
        );
    }

    #[test]
    fn errors_have_kinesis_shape_in_either_protocol() {
        let e = ApiError::validation("no");
        let r = error(Protocol::Json, &e);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["x-amzn-errortype"], "ValidationException");
        let v: Json = serde_json::from_slice(&futures_body(r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"__type": "ValidationException", "message": "no"})
        );
        let r = error(Protocol::Cbor, &e);
        let v: Cbor = ciborium::de::from_reader(&futures_body(r)[..]).unwrap();
        assert_eq!(
            v,
            Cbor::Map(vec![
                (
                    Cbor::Text("__type".into()),
                    Cbor::Text("ValidationException".into())
                ),
                (Cbor::Text("message".into()), Cbor::Text("no".into())),
            ])
        );
    }

    fn futures_body(r: Response<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(r.into_body().collect()).unwrap().to_bytes()
    }
}
