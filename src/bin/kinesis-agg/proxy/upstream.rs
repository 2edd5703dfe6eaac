//! The proxy's calls to the real Kinesis API: the JSON protocol over
//! HTTP/1.1 (TLS for `https` endpoints), each call signed with SigV4 by the
//! proxy's own credentials. Nothing of the client's request but its
//! operation and body goes upstream: no header of its (`Authorization`,
//! `X-Amz-Security-Token`, ...) is copied.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

/// The JSON protocol's content type, which every upstream call uses.
pub(crate) const JSON: &str = "application/x-amz-json-1.1";

/// The most an upstream answer may hold: a GetRecords answer is at most
/// 10 MiB of data, which base64 makes 14 MiB; with the JSON around it.
const MAX_ANSWER: usize = 32 << 20;

/// Credentials are fetched again this long before they expire.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The upstream Kinesis API.
pub(crate) struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    uri_text: String,
    region: String,
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
    timeout: Duration,
}

/// An upstream answer: its status and body, as they came.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

/// Why an upstream call has no answer.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No credentials could be found, or signing failed.
    Credentials(String),
    /// The connection failed, or the answer was cut short or too large.
    Transport(String),
    /// No answer within the time allowed.
    Timeout,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Credentials(m) => write!(f, "the proxy's credentials: {m}"),
            Failure::Transport(m) => write!(f, "the upstream Kinesis API: {m}"),
            Failure::Timeout => f.write_str("the upstream Kinesis API did not answer in time"),
        }
    }
}

impl Upstream {
    /// An upstream at `endpoint` in `region`, its calls signed with what
    /// `provider` gives and each allowed `timeout`.
    pub(crate) fn new(
        endpoint: &str,
        region: String,
        provider: SharedCredentialsProvider,
        timeout: Duration,
    ) -> Result<Self, String> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e| format!("the endpoint {endpoint:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(format!("the endpoint {endpoint:?} is not an http or https URL")),
        }
        if uri.host().is_none() {
            return Err(format!("the endpoint {endpoint:?} has no host"));
        }
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("cannot load the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(50))
            .build(https);
        let uri_text = uri.to_string();
        Ok(Upstream {
            client,
            uri,
            uri_text,
            region,
            provider,
            cached: Mutex::new(None),
            timeout,
        })
    }

    /// The endpoint's URL.
    pub(crate) fn url(&self) -> &str {
        &self.uri_text
    }

    async fn credentials(&self) -> Result<Credentials, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = match c.expiry() {
                None => true,
                Some(at) => at
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE),
            };
            if fresh {
                return Ok(c.clone());
            }
        }
        let c =
            self.provider.provide_credentials().await.map_err(|e| {
                Failure::Credentials(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())
            })?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// Calls `operation` (`GetRecords`, `ListShards`, ...) with a JSON
    /// body, signed.
    pub(crate) async fn call(&self, operation: &str, body: Bytes) -> Result<Answer, Failure> {
        let credentials = self.credentials().await?;
        let target = format!("Kinesis_20131202.{operation}");
        let mut request = Request::builder()
            .method("POST")
            .uri(self.uri.clone())
            .header("content-type", JSON)
            .header("x-amz-target", &target)
            .body(Full::new(body.clone()))
            .map_err(|e| Failure::Transport(e.to_string()))?;
        sign_request(&mut request, &body, &self.uri_text, &self.region, credentials)?;
        let call = async {
            let answer = self
                .client
                .request(request)
                .await
                .map_err(|e| Failure::Transport(describe(&e)))?;
            let (parts, body) = answer.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Failure::Transport(format!("the answer was cut short or too large: {e}")))?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                body,
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Failure::Timeout)?
    }
}

/// A client error and its causes, in one line.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Signs `request` (whose headers are the ones to sign) for Kinesis in
/// `region`.
fn sign_request(
    request: &mut Request<Full<Bytes>>,
    body: &[u8],
    uri: &str,
    region: &str,
    credentials: Credentials,
) -> Result<(), Failure> {
    let identity: Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kinesis")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| Failure::Credentials(e.to_string()))?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let signable = SignableRequest::new("POST", uri, headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| Failure::Credentials(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| Failure::Credentials(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}
