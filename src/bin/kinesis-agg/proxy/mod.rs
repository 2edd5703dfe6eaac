//! `proxy`: a local Kinesis API endpoint. What is put through it is
//! aggregated per shard by the library's producer; what is read through it
//! (GetRecords) is deaggregated; every other operation is forwarded. Every
//! upstream call is signed with the proxy's own credentials.
//!
//! One module per concern: `api` (the protocols and Kinesis's error
//! shapes), `put` (PutRecord, PutRecords), `get` (GetRecords), `upstream`
//! (the signed client), `auth` (verifying clients' signatures when the
//! proxy listens beyond loopback), `tls` (HTTPS, with `--tls-cert`).

mod api;
mod auth;
mod put;
mod shards;
mod tls;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as AutoBuilder;
use hyper_util::server::graceful::Watcher;
use kinesis_agg::api::{parse_put_record, parse_put_records};
use kinesis_agg::{PUT_RECORDS_MAX_BYTES, producer::ProducerConfig};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use self::api::{ApiError, Protocol, TARGET_PREFIX};
use self::put::Producers;
use self::upstream::Upstream;
use crate::Stop;
use crate::aws::{self, Connection};
use crate::put::ProducerArgs;

#[derive(clap::Args)]
pub(crate) struct ProxyArgs {
    /// The address and port to listen on. Only a loopback address, unless
    /// --allow-remote and --clients are given.
    #[arg(long, default_value = "127.0.0.1:4568", value_name = "ADDR:PORT")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Listen on an address other machines can reach. Needs --clients:
    /// every call must then be signed (SigV4) with one of its keys.
    #[arg(long, requires = "clients")]
    pub(crate) allow_remote: bool,
    /// A file of the client credentials the proxy accepts, one
    /// `ACCESS_KEY_ID SECRET_ACCESS_KEY` pair a line (`#` starts a
    /// comment). Calls not signed by one of them are refused.
    #[arg(long, value_name = "FILE")]
    pub(crate) clients: Option<PathBuf>,
    /// Longest a call waits for its answer, in milliseconds: records not
    /// yet put then are answered as failed with a retryable error code
    /// (below the SDKs' read timeouts).
    #[arg(long, default_value_t = 20_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) answer_within: u64,
    /// Longest a client may take to send a request's headers, and then
    /// its body, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) read_timeout: u64,
    /// Most client connections open at once; more are closed as they
    /// come.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: u64,
    /// Apply the KCL's rule to what GetRecords returns: an aggregate
    /// holding a user record outside its shard's hash key range is
    /// discarded whole, as a KCL application would (by default it is
    /// delivered, and the user records outside counted and logged).
    #[arg(long)]
    pub(crate) kcl_rule: bool,
    /// Serve HTTPS with this certificate chain (a PEM file, the proxy's
    /// own certificate first), for clients that speak only TLS. Needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (a PEM file: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) producer: ProducerArgs,
}

/// What every call shares.
struct State {
    upstream: Upstream,
    producers: Producers,
    clients: Option<auth::Clients>,
    answer_within: Duration,
    read_timeout: Duration,
    max_body: usize,
    book: shards::Book,
    kcl_rule: bool,
}

/// The largest request body taken: a PutRecords of 5 MiB (or a PutRecord
/// of the largest user record) in base64, with room for its keys and
/// JSON.
fn max_body(cfg: &ProducerConfig) -> usize {
    PUT_RECORDS_MAX_BYTES.max(cfg.max_user_record_size + 256) / 3 * 4 + (1 << 20)
}

pub(crate) fn proxy(args: ProxyArgs) -> Result<bool, Stop> {
    let trusted = args.allow_remote && args.clients.is_some();
    if !args.listen.ip().is_loopback() && !trusted {
        return Err(Stop::Input(format!(
            "will not listen on {}: it is not a loopback address, and anyone who can reach it could put and read \
             with the proxy's credentials. Pass --allow-remote with --clients FILE (the access keys whose \
             signatures it accepts), or listen on 127.0.0.1",
            args.listen
        )));
    }
    let clients = match &args.clients {
        Some(path) => Some(auth::Clients::load(path).map_err(Stop::Input)?),
        None => None,
    };
    let cfg = args.producer.config();
    cfg.check()
        .map_err(|e| Stop::Input(format!("producer settings: {e}")))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(Stop::Input)?),
        _ => None,
    };
    crate::runtime()?.block_on(run(args, cfg, clients, tls))
}

async fn run(
    args: ProxyArgs,
    cfg: ProducerConfig,
    clients: Option<auth::Clients>,
    tls: Option<TlsAcceptor>,
) -> Result<bool, Stop> {
    let conf = aws::config(&args.connection).await?;
    let region = conf.region().map(|r| r.to_string()).unwrap_or_default();
    let endpoint = conf
        .endpoint_url()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("https://kinesis.{region}.amazonaws.com"));
    let provider = conf.credentials_provider().ok_or_else(|| {
        Stop::Input("no credentials: set them as for the AWS CLI (environment, --profile, ...)".to_owned())
    })?;
    let answer_within = Duration::from_millis(args.answer_within);
    let upstream = Upstream::new(&endpoint, region, provider, answer_within).map_err(Stop::Input)?;
    let state = Arc::new(State {
        upstream,
        max_body: max_body(&cfg),
        producers: Producers::new(aws_sdk_kinesis::Client::new(&conf), cfg),
        clients,
        answer_within,
        read_timeout: Duration::from_millis(args.read_timeout),
        book: shards::Book::default(),
        kcl_rule: args.kcl_rule,
    });
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Stop::Input(format!("cannot listen on {}: {e}", args.listen)))?;
    let local = listener.local_addr()?;
    eprintln!(
        "kinesis-agg proxy: listening on {}://{local}, for {}",
        if tls.is_some() { "https" } else { "http" },
        state.upstream.url()
    );
    serve(
        listener,
        state,
        usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        tls,
    )
    .await
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    max_connections: usize,
    tls: Option<TlsAcceptor>,
) -> Result<bool, Stop> {
    let mut builder = AutoBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(state.read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(max_connections));
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was taken: keep serving the others.
                eprintln!("kinesis-agg proxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics::counter!("kinesis_agg_proxy_connections_refused").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let st = state.clone();
        let (builder, watcher, tls) = (builder.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            // A connection that says nothing within the read timeout is
            // closed: idle connections cannot hold the places of others.
            let mut first = [0u8; 1];
            let deadline = Instant::now() + st.read_timeout;
            match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return drop(permit),
            }
            match tls {
                None => serve_connection(&builder, TokioIo::new(stream), st, watcher).await,
                Some(_) if first[0] != tls::HANDSHAKE => {
                    // Plain HTTP to the HTTPS port: say so, then close.
                    use tokio::io::AsyncWriteExt;
                    let mut stream = stream;
                    let _ = tokio::time::timeout_at(deadline, stream.write_all(tls::PLAIN_HTTP_ANSWER)).await;
                    let _ = stream.shutdown().await;
                }
                Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                    Ok(Ok(tls_stream)) => {
                        serve_connection(&builder, TokioIo::new(tls_stream), st, watcher).await;
                    }
                    // A failed or unfinished handshake: nothing to answer.
                    _ => metrics::counter!("kinesis_agg_proxy_tls_handshakes_failed").increment(1),
                },
            }
            drop(permit);
        });
    }
    drop(listener);
    eprintln!("kinesis-agg proxy: stopping: answering the calls in flight and sending what is buffered");
    let finish = async {
        // The calls in flight wait for their records' receipts: send what
        // is buffered now, again and again, until every call is answered.
        let flushing = async {
            loop {
                for p in state.producers.all() {
                    p.flush().await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            () = graceful.shutdown() => {}
            () = flushing => {}
        }
        for p in state.producers.all() {
            p.shutdown().await;
        }
    };
    tokio::select! {
        () = finish => {
            eprintln!("kinesis-agg proxy: stopped");
            Ok(false)
        }
        () = stop_signal() => {
            let abandoned: usize = state.producers.all().iter().map(|p| p.abandon()).sum();
            Err(Stop::Data(format!("stopped at once: {abandoned} user records abandoned")))
        }
    }
}

/// Serves one client connection (plain or TLS) until it closes, or until
/// a graceful stop has answered its calls in flight.
async fn serve_connection<I>(builder: &AutoBuilder<TokioExecutor>, io: I, state: Arc<State>, watcher: Watcher)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(state.clone(), req));
    let conn = builder.serve_connection(io, service).into_owned();
    let _ = watcher.watch(conn).await;
}

/// The operation a call names, as a metrics label (a known name, or
/// "other": labels stay few whatever clients send).
fn label(operation: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "PutRecord",
        "PutRecords",
        "GetRecords",
        "GetShardIterator",
        "ListShards",
        "DescribeStream",
        "DescribeStreamSummary",
        "SubscribeToShard",
    ];
    KNOWN
        .iter()
        .find(|k| **k == operation)
        .copied()
        .unwrap_or("other")
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let protocol = Protocol::of(req.headers());
    let operation = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .map(str::to_owned);
    let op = label(operation.as_deref().unwrap_or(""));
    let p = protocol.unwrap_or(Protocol::Json);
    let answer = match respond(&state, req, protocol, operation).await {
        Ok(r) => r,
        Err(e) => api::error(p, &e),
    };
    let status = answer.status().as_u16().to_string();
    metrics::counter!("kinesis_agg_proxy_calls", "operation" => op, "status" => status).increment(1);
    metrics::histogram!("kinesis_agg_proxy_call_seconds", "operation" => op)
        .record(started.elapsed().as_secs_f64());
    Ok(answer)
}

async fn respond(
    state: &State,
    req: Request<Incoming>,
    protocol: Option<Protocol>,
    operation: Option<String>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::new(
            400,
            "UnknownOperationException",
            "the Kinesis API takes POST requests",
        ));
    }
    let Some(protocol) = protocol else {
        return Err(ApiError::serialization(
            "the content type must be application/x-amz-json-1.1 or application/x-amz-cbor-1.1",
        ));
    };
    let Some(operation) = operation.filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_alphanumeric()))
    else {
        return Err(ApiError::new(
            400,
            "UnknownOperationException",
            format!("X-Amz-Target must name a Kinesis operation ({TARGET_PREFIX}<Operation>)"),
        ));
    };
    // Refused from its Content-Length alone, before any of it is read.
    let declared = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return Err(too_large(state.max_body));
    }
    let (parts, body) = req.into_parts();
    let body = match tokio::time::timeout(state.read_timeout, Limited::new(body, state.max_body).collect())
        .await
    {
        Err(_) => {
            return Err(ApiError::new(
                408,
                "RequestTimeoutException",
                "the request's body did not arrive in time",
            ));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large(state.max_body)),
        Ok(Err(e)) => {
            return Err(ApiError::serialization(format!(
                "the request's body could not be read: {e}"
            )));
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    if let Some(clients) = &state.clients {
        clients.verify(&parts, &body)?;
    }
    let json = api::request_json(protocol, body)?;
    let within = state.answer_within;
    match operation.as_str() {
        "PutRecords" => {
            let puts = parse_put_records(&json, state.producers.max_user_record_size())?;
            let out = put::put_records(&state.producers, &puts, within).await?;
            Ok(api::answer(protocol, StatusCode::OK, out))
        }
        "PutRecord" => {
            let puts = parse_put_record(&json, state.producers.max_user_record_size())?;
            let out = put::put_record(&state.producers, &puts, within).await?;
            Ok(api::answer(protocol, StatusCode::OK, out))
        }
        "SubscribeToShard" => Err(ApiError::invalid_argument(
            "kinesis-agg proxy does not serve SubscribeToShard (enhanced fan-out): its event stream is not \
             deaggregated here. Read with GetRecords through the proxy, or subscribe at Kinesis itself",
        )),
        "GetShardIterator" => {
            let answer = forward(state, &operation, json.clone()).await?;
            if answer.status == StatusCode::OK {
                learn_iterator(state, &json, &answer.body);
            }
            Ok(api::answer(protocol, answer.status, answer.body))
        }
        "GetRecords" => get_records(state, protocol, json).await,
        _ => {
            let answer = forward(state, &operation, json).await?;
            Ok(api::answer(protocol, answer.status, answer.body))
        }
    }
}

/// Notes which shard the iterator a GetShardIterator answer gives reads.
fn learn_iterator(state: &State, request: &[u8], answer: &[u8]) {
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(request) else {
        return;
    };
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(answer) else {
        return;
    };
    let (Some(stream), Some(shard), Some(iterator)) = (
        shards::stream_in(&request),
        request.get("ShardId").and_then(|v| v.as_str()),
        answer.get("ShardIterator").and_then(|v| v.as_str()),
    ) else {
        return;
    };
    let shard = shards::ShardOf {
        stream: Arc::new(stream),
        shard: Arc::from(shard),
    };
    state.book.learn(iterator, shard);
}

/// GetRecords: forwarded, its answer deaggregated (with the shard's range
/// checked when the proxy knows the shard).
async fn get_records(
    state: &State,
    protocol: Protocol,
    json: Bytes,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let iterator = serde_json::from_slice::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v.get("ShardIterator").and_then(|i| i.as_str()).map(str::to_owned));
    let shard = iterator.as_deref().and_then(|i| state.book.shard_of(i));
    let answer = forward(state, "GetRecords", json).await?;
    if answer.status != StatusCode::OK {
        return Ok(api::answer(protocol, answer.status, answer.body));
    }
    let range = match &shard {
        Some(s) => state.book.range(&state.upstream, s).await,
        None => None,
    };
    let check = range.map(|range| kinesis_agg::api::ShardCheck {
        range,
        kcl_rule: state.kcl_rule,
    });
    match kinesis_agg::api::deaggregate_get_records(&answer.body, check) {
        Ok((body, done)) => {
            let at = shard
                .as_ref()
                .map_or_else(String::new, |s| format!(" of {} {}", s.stream.1, s.shard));
            for (sequence, why) in &done.broken {
                eprintln!(
                    "kinesis-agg proxy: GetRecords{at}: the record with sequence number {sequence} is a broken \
                     aggregate ({why}): passed on as a plain record"
                );
            }
            if done.outside > 0 {
                eprintln!(
                    "kinesis-agg proxy: GetRecords{at}: {} user records outside the shard's hash key range \
                     delivered (a KCL application would discard their aggregates)",
                    done.outside
                );
                metrics::counter!("kinesis_agg_proxy_user_records_outside_shard")
                    .increment(done.outside as u64);
            }
            for sequence in &done.discarded {
                eprintln!(
                    "kinesis-agg proxy: GetRecords{at}: the aggregate with sequence number {sequence} holds user \
                     records outside the shard: discarded whole (--kcl-rule)"
                );
            }
            metrics::counter!("kinesis_agg_proxy_user_records_read").increment(done.user_records as u64);
            if let (Some(s), Some(next)) = (shard, &done.next_iterator) {
                state.book.learn(next, s);
            }
            Ok(api::answer(protocol, StatusCode::OK, Bytes::from(body)))
        }
        Err(why) => {
            eprintln!("kinesis-agg proxy: GetRecords: {why}; passed on unchanged");
            Ok(api::answer(protocol, answer.status, answer.body))
        }
    }
}

async fn forward(state: &State, operation: &str, json: Bytes) -> Result<upstream::Answer, ApiError> {
    state
        .upstream
        .call(operation, json)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        413,
        "ValidationException",
        format!("the request body is larger than the {max} bytes the Kinesis API takes"),
    )
}
