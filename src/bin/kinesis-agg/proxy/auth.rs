//! Clients' SigV4 signatures, verified when the proxy listens beyond
//! loopback: every call must be signed by an access key of the clients
//! file, with its secret, within 15 minutes of the proxy's clock. What is
//! refused never reaches upstream.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use http::request::Parts;
use sha2::{Digest, Sha256};

use super::api::ApiError;

/// The access keys and secrets the proxy accepts.
pub(crate) struct Clients {
    secrets: HashMap<String, String>,
}

/// How far a request's time may be from the proxy's clock (as AWS allows).
const SKEW: Duration = Duration::from_secs(15 * 60);

fn unrecognized(message: &str) -> ApiError {
    ApiError::new(400, "UnrecognizedClientException", message.to_owned())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "InvalidSignatureException", message)
}

impl Clients {
    /// Reads a clients file: `ACCESS_KEY_ID SECRET_ACCESS_KEY` a line,
    /// blank lines and `#` comments skipped.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the clients file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut secrets = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some(key), Some(secret), None) => {
                    secrets.insert(key.to_owned(), secret.to_owned());
                }
                _ => {
                    return Err(format!(
                        "line {}: expected ACCESS_KEY_ID SECRET_ACCESS_KEY",
                        n + 1
                    ));
                }
            }
        }
        if secrets.is_empty() {
            return Err("no client credentials in the file".to_owned());
        }
        Ok(Clients { secrets })
    }

    /// Checks the request's `Authorization` against the body.
    pub(crate) fn verify(&self, parts: &Parts, body: &[u8]) -> Result<(), ApiError> {
        self.verify_at(parts, body, SystemTime::now())
    }

    fn verify_at(&self, parts: &Parts, body: &[u8], now: SystemTime) -> Result<(), ApiError> {
        let Some(auth) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return Err(unrecognized("the request is not signed: no Authorization header"));
        };
        let auth =
            Authorization::parse(auth).ok_or_else(|| invalid("the Authorization header is not SigV4"))?;
        let Some(secret) = self.secrets.get(auth.access_key) else {
            return Err(unrecognized(
                "The security token included in the request is invalid.",
            ));
        };
        let date = parts
            .headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| invalid("the request has no X-Amz-Date"))?;
        let when =
            parse_amz_date(date).ok_or_else(|| invalid("X-Amz-Date is not a date (YYYYMMDDTHHMMSSZ)"))?;
        let skew = now
            .duration_since(when)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .unwrap_or(Duration::MAX);
        if skew > SKEW || !date.starts_with(auth.date) {
            return Err(invalid(
                "Signature expired or not yet valid: the request's time is more than 15 minutes from the proxy's",
            ));
        }
        if !auth.signed_headers.contains(&"host") {
            return Err(invalid("the signature does not cover the Host header"));
        }
        let canonical = canonical_request(parts, &auth.signed_headers, body)
            .ok_or_else(|| invalid("a signed header is missing or not text"))?;
        let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), auth.date.as_bytes());
        for part in [auth.region, auth.service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex(&hmac(&key, to_sign.as_bytes()));
        if !equal(expected.as_bytes(), auth.signature.as_bytes()) {
            return Err(invalid(
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
            ));
        }
        Ok(())
    }
}

/// The parts of `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=HEX`.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

impl<'a> Authorization<'a> {
    fn parse(h: &'a str) -> Option<Self> {
        let rest = h.strip_prefix("AWS4-HMAC-SHA256 ")?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part.trim().split_once('=')?;
            match k {
                "Credential" => credential = Some(v),
                "SignedHeaders" => signed = Some(v),
                "Signature" => signature = Some(v),
                _ => {}
            }
        }
        let mut c = credential?.split('/');
        let (access_key, date, region, service, end) =
            (c.next()?, c.next()?, c.next()?, c.next()?, c.next()?);
        if end != "aws4_request" || c.next().is_some() || date.len() != 8 {
            return None;
        }
        let signed_headers: Vec<&str> = signed?.split(';').collect();
        Some(Authorization {
            access_key,
            date,
            region,
            service,
            signed_headers,
            signature: signature?,
        })
    }
}

/// The canonical request of SigV4 for `parts` and `body`, over the signed
/// headers named.
fn canonical_request(parts: &Parts, signed: &[&str], body: &[u8]) -> Option<String> {
    let mut s = String::new();
    s.push_str(parts.method.as_str());
    s.push('\n');
    s.push_str(parts.uri.path());
    s.push('\n');
    s.push_str(&canonical_query(parts.uri.query().unwrap_or("")));
    s.push('\n');
    for name in signed {
        let mut values = Vec::new();
        for v in parts.headers.get_all(*name) {
            values.push(v.to_str().ok()?.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        if values.is_empty() {
            return None;
        }
        let _ = writeln!(s, "{name}:{}", values.join(","));
    }
    s.push('\n');
    s.push_str(&signed.join(";"));
    s.push('\n');
    s.push_str(&hex(&Sha256::digest(body)));
    Some(s)
}

/// Query parameters sorted (the Kinesis API's calls have none).
fn canonical_query(q: &str) -> String {
    let mut pairs: Vec<&str> = q.split('&').filter(|p| !p.is_empty()).collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|p| {
            if p.contains('=') {
                (*p).to_owned()
            } else {
                format!("{p}=")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Compares in time that does not depend on where the inputs differ.
fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), years >= 1970.
    let (y, mo) = if mo <= 2 {
        (y.checked_sub(1)?, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + sec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    const WHEN: u64 = 1_765_000_000;

    /// A request signed by the AWS SDK's own signer with this secret.
    fn signed(key: &str, secret: &str, body: &'static [u8], at: SystemTime) -> Parts {
        let mut req = http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:4568/")
            .header("host", "127.0.0.1:4568")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.ListShards")
            .body(())
            .unwrap();
        let identity: Identity = Credentials::new(key, secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("kinesis")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:4568/",
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut req);
        req.into_parts().0
    }

    fn clients() -> Clients {
        Clients::parse("# clients\nAKIDGOOD secret-good\n\nAKIDOTHER other\n").unwrap()
    }

    #[test]
    fn a_request_signed_by_the_sdk_signer_with_a_listed_key_passes() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(WHEN);
        let parts = signed("AKIDGOOD", "secret-good", b"{}", at);
        clients()
            .verify_at(&parts, b"{}", at + Duration::from_secs(60))
            .unwrap();
    }

    #[test]
    fn unknown_keys_wrong_secrets_changed_bodies_and_old_signatures_are_refused() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(WHEN);
        let c = clients();
        let code = |r: Result<(), ApiError>| r.unwrap_err().code.into_owned();
        let p = signed("AKIDNOBODY", "secret-good", b"{}", at);
        assert_eq!(code(c.verify_at(&p, b"{}", at)), "UnrecognizedClientException");
        let p = signed("AKIDGOOD", "wrong", b"{}", at);
        assert_eq!(code(c.verify_at(&p, b"{}", at)), "InvalidSignatureException");
        let p = signed("AKIDGOOD", "secret-good", b"{}", at);
        assert_eq!(code(c.verify_at(&p, b"{ }", at)), "InvalidSignatureException");
        assert_eq!(
            code(c.verify_at(&p, b"{}", at + Duration::from_secs(16 * 60))),
            "InvalidSignatureException"
        );
        let mut unsigned = p.clone();
        unsigned.headers.remove("authorization");
        assert_eq!(
            code(c.verify_at(&unsigned, b"{}", at)),
            "UnrecognizedClientException"
        );
        let mut moved = p;
        moved.headers.insert(
            "x-amz-target",
            http::HeaderValue::from_static("Kinesis_20131202.DeleteStream"),
        );
        assert_eq!(code(c.verify_at(&moved, b"{}", at)), "InvalidSignatureException");
    }

    #[test]
    fn amz_dates_read_as_the_epoch_seconds_they_name() {
        let t = |s| parse_amz_date(s).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(t("19700101T000000Z"), Some(0));
        assert_eq!(t("20000229T235959Z"), Some(951_868_799));
        assert_eq!(t("20251206T054640Z"), Some(1_765_000_000));
        assert_eq!(t("20251306T054640Z"), None);
        assert_eq!(t("2025-12-06T05:46:40Z"), None);
    }

    #[test]
    fn a_clients_file_needs_pairs() {
        assert!(Clients::parse("").is_err());
        assert!(Clients::parse("AKID\n").is_err());
        assert!(Clients::parse("AKID secret extra\n").is_err());
        assert_eq!(clients().secrets.len(), 2);
    }
}
