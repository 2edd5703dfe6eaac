//! The Kinesis API as clients speak it to the proxy: the two protocols
//! (JSON, and the CBOR of the AWS SDKs for Java), operations named by
//! `X-Amz-Target`, and errors in Kinesis's own shape (the library's
//! `api::ApiError`), which the SDKs' retry logic understands.
//!
//! Inside the proxy every body is JSON: a CBOR request is turned into the
//! JSON the same call would have sent, and an answer to a CBOR client is
//! turned back (the library's `api::cbor_to_json` and `api::json_to_cbor`).

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
pub(crate) use kinesis_agg::api::ApiError;
use kinesis_agg::api::{cbor_to_json, json_to_cbor};
use serde_json::{Map, Value as Json};

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

/// The answer to a client: `json` in its protocol, with `status`.
pub(crate) fn answer(protocol: Protocol, status: StatusCode, json: Bytes) -> Response<Full<Bytes>> {
    let body = match protocol {
        Protocol::Json => json,
        Protocol::Cbor => match json_to_cbor(&json) {
            Ok(b) => Bytes::from(b),
            // What upstream said is not JSON: the client gets an error it
            // can read instead.
            Err(e) => return error(protocol, &e),
        },
    };
    response(protocol, status, None, body)
}

/// An error in Kinesis's shape, in the client's protocol.
pub(crate) fn error(protocol: Protocol, e: &ApiError) -> Response<Full<Bytes>> {
    let mut m = Map::new();
    m.insert("__type".to_owned(), Json::String(e.code.clone().into_owned()));
    m.insert("message".to_owned(), Json::String(e.message.clone()));
    let json = Json::Object(m).to_string().into_bytes();
    let body = match protocol {
        Protocol::Json => Bytes::from(json),
        // JSON made just above: it converts.
        Protocol::Cbor => Bytes::from(json_to_cbor(&json).unwrap_or_default()),
    };
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response(protocol, status, Some(&e.code), body)
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
        Protocol::Cbor => cbor_to_json(&body).map(Bytes::from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value as Cbor;

    fn body(r: Response<Full<Bytes>>) -> Bytes {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(r.into_body().collect()).unwrap().to_bytes()
    }

    #[test]
    fn errors_have_kinesis_shape_in_either_protocol() {
        let e = ApiError::validation("no");
        let r = error(Protocol::Json, &e);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["x-amzn-errortype"], "ValidationException");
        let v: Json = serde_json::from_slice(&body(r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"__type": "ValidationException", "message": "no"})
        );
        let r = error(Protocol::Cbor, &e);
        assert_eq!(r.headers()["content-type"], "application/x-amz-cbor-1.1");
        let v: Cbor = ciborium::de::from_reader(&body(r)[..]).unwrap();
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

    #[test]
    fn an_answer_that_is_not_json_reaches_a_cbor_client_as_an_error() {
        let r = answer(Protocol::Cbor, StatusCode::OK, Bytes::from_static(b"<html>"));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = answer(Protocol::Json, StatusCode::OK, Bytes::from_static(b"<html>"));
        assert_eq!((r.status(), &body(r)[..]), (StatusCode::OK, &b"<html>"[..]));
    }
}
