//! A fault-injecting HTTP proxy for the Kinesis API, on tokio, bound to
//! loopback on a free port: between a client and a Kinesis API server it
//! forwards every request, and for PutRecords it can reject a fraction of
//! the entries as throttled (those are not forwarded), answer whole calls
//! with 500 or ProvisionedThroughputExceededException (not forwarded),
//! hold answers past the client's timeout (forwarded: the answer is lost)
//! and close the connection after forwarding (the answer is lost). Every
//! other call (ListShards, GetShardIterator, GetRecords, ...) can be
//! answered 500 or throttled, or forwarded and then its answer held or
//! lost. It counts what it did, so that a test can tell which duplicates
//! an answer's loss explains.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What to inject, as fractions from 0 to 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// PutRecords entries answered ProvisionedThroughputExceededException.
    pub throttle_entries: f64,
    /// PutRecords calls answered 500 InternalFailure.
    pub call_500: f64,
    /// PutRecords calls answered 400 ProvisionedThroughputExceededException.
    pub call_throttled: f64,
    /// PutRecords calls forwarded whose answer is held for `hold`.
    pub delay: f64,
    /// How long a held answer waits (longer than the client's timeout).
    pub hold: Duration,
    /// PutRecords calls forwarded, then the connection closed unanswered.
    pub close_after_forward: f64,
    /// PutRecords calls answered 400 ValidationException (not forwarded).
    pub call_invalid: f64,
    /// PutRecords calls forwarded, then answered 200 with a body cut short
    /// (the answer is lost).
    pub garble: f64,
    /// Other calls answered 500 InternalFailure (not forwarded).
    pub other_500: f64,
    /// Other calls answered 400 throttled (LimitExceededException, or
    /// ProvisionedThroughputExceededException for GetRecords).
    pub other_throttled: f64,
    /// Other calls forwarded whose answer is held for `hold`.
    pub other_delay: f64,
    /// Other calls forwarded, then the connection closed unanswered.
    pub other_close: f64,
    /// Other calls forwarded, then answered with the body cut short.
    pub other_garble: f64,
}

impl Faults {
    /// No fault but what `set` sets.
    pub fn with(set: impl FnOnce(&mut Faults)) -> Faults {
        let mut f = Faults::default();
        set(&mut f);
        f
    }
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Counters {
    pub put_calls: AtomicUsize,
    pub rejected_entries: AtomicUsize,
    pub calls_500: AtomicUsize,
    pub calls_throttled: AtomicUsize,
    pub delayed_calls: AtomicUsize,
    pub closed_calls: AtomicUsize,
    pub garbled_calls: AtomicUsize,
    /// Calls other than PutRecords, and the faults injected into them.
    pub other_calls: AtomicUsize,
    pub other_faults: AtomicUsize,
    /// Entries that reached the server but whose answer the client never
    /// got: the only entries a correct producer may duplicate.
    pub lost_entries: AtomicUsize,
    /// Where those entries are: (shard id, sequence number).
    pub lost: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

impl Counters {
    /// Whether the Kinesis record at (shard, sequence number) is one whose
    /// answer was lost.
    pub fn was_lost(&self, shard: &str, seq: &str) -> bool {
        self.lost
            .lock()
            .unwrap()
            .contains(&(shard.to_owned(), seq.to_owned()))
    }
}

fn note_lost(c: &Counters, body: &[u8]) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut lost = c.lost.lock().unwrap();
    for r in v["Records"].as_array().into_iter().flatten() {
        if let (Some(shard), Some(seq)) = (r["ShardId"].as_str(), r["SequenceNumber"].as_str()) {
            lost.insert((shard.to_owned(), seq.to_owned()));
        }
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The fault draws, shared by the proxy's connections.
struct Draws(std::sync::Mutex<super::rng::Rng>);

impl Draws {
    /// Draws for one call's faults: the first fault asked for is taken
    /// when `forced` (so that a short run injects at least one), the rest
    /// by chance.
    fn draws(&self, forced: bool) -> impl FnMut(f64) -> bool + '_ {
        let mut forced = forced;
        move |p| {
            if forced && p > 0.0 {
                forced = false;
                return true;
            }
            self.0.lock().unwrap_or_else(|p| p.into_inner()).chance(p)
        }
    }
}

/// Starts a proxy to `upstream` with `faults`.
pub async fn start(upstream: SocketAddr, faults: Faults, seed: u64) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let rng = Arc::new(Draws(std::sync::Mutex::new(super::rng::Rng::new(seed))));
    let c = counters.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let (c, rng) = (c.clone(), rng.clone());
            tokio::spawn(async move {
                let _ = serve(client, upstream, faults, &c, &rng).await;
            });
        }
    });
    Proxy { addr, counters, task }
}

/// One HTTP/1.1 message: head (start line and headers) and body.
struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    /// The message with another body (Content-Length rewritten).
    fn with_body(&self, body: Vec<u8>) -> Message {
        let mut head = String::new();
        for (i, l) in self.head.split("\r\n").enumerate() {
            if l.is_empty() {
                continue;
            }
            if i > 0
                && l.split_once(':')
                    .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            {
                continue;
            }
            head.push_str(l);
            head.push_str("\r\n");
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        Message { head, body }
    }
    fn bytes(&self) -> Vec<u8> {
        let mut v = self.head.as_bytes().to_vec();
        v.extend_from_slice(&self.body);
        v
    }
}

async fn read_message(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Message>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let m = Message {
                head,
                body: Vec::new(),
            };
            assert!(
                m.header("transfer-encoding").is_none(),
                "the proxy reads Content-Length bodies only"
            );
            let len: usize = m.header("content-length").map_or(0, |v| v.parse().unwrap());
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 65536];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Ok(Some(Message { body, ..m }));
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn error_answer(status: &str, kind: &str, message: &str) -> Message {
    let body = json!({"__type": kind, "message": message})
        .to_string()
        .into_bytes();
    Message {
        head: format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: injected\r\ncontent-length: {}\r\n\r\n",
            body.len()
        ),
        body,
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: Faults,
    c: &Counters,
    rng: &Draws,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(upstream).await?;
    let (mut cbuf, mut ubuf) = (Vec::new(), Vec::new());
    while let Some(req) = read_message(&mut client, &mut cbuf).await? {
        let put = req
            .header("x-amz-target")
            .is_some_and(|t| t.ends_with(".PutRecords"));
        if !put {
            let target = req.header("x-amz-target").unwrap_or("").to_owned();
            // The first such call takes a fault if any is asked for.
            let mut chance = rng.draws(c.other_calls.fetch_add(1, Ordering::Relaxed) == 0);
            if chance(faults.other_500) {
                c.other_faults.fetch_add(1, Ordering::Relaxed);
                let e = error_answer("500 Internal Server Error", "InternalFailure", "injected");
                client.write_all(&e.bytes()).await?;
                continue;
            }
            if chance(faults.other_throttled) {
                c.other_faults.fetch_add(1, Ordering::Relaxed);
                let kind = if target.ends_with(".GetRecords") {
                    "ProvisionedThroughputExceededException"
                } else {
                    "LimitExceededException"
                };
                let e = error_answer("400 Bad Request", kind, "Rate exceeded (injected)");
                client.write_all(&e.bytes()).await?;
                continue;
            }
            up.write_all(&req.bytes()).await?;
            let Some(resp) = read_message(&mut up, &mut ubuf).await? else {
                return Ok(());
            };
            if chance(faults.other_close) {
                c.other_faults.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            if chance(faults.other_garble) {
                c.other_faults.fetch_add(1, Ordering::Relaxed);
                let cut = resp.body[..resp.body.len() / 2].to_vec();
                client.write_all(&resp.with_body(cut).bytes()).await?;
                continue;
            }
            if chance(faults.other_delay) {
                c.other_faults.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(faults.hold).await;
            }
            client.write_all(&resp.bytes()).await?;
            continue;
        }
        assert!(
            req.header("content-type").is_some_and(|t| t.contains("json")),
            "the proxy reads JSON requests"
        );
        // The first call always takes the first fault asked for, so that a
        // short run injects at least one; later calls, by chance.
        let mut chance = rng.draws(c.put_calls.fetch_add(1, Ordering::Relaxed) == 0);
        // Whole calls answered with an error, each fault drawn in turn.
        let call_faults = [
            (
                faults.call_500,
                Some(&c.calls_500),
                "500 Internal Server Error",
                "InternalFailure",
                "injected",
            ),
            (
                faults.call_invalid,
                None,
                "400 Bad Request",
                "ValidationException",
                "1 validation error detected (injected)",
            ),
            (
                faults.call_throttled,
                Some(&c.calls_throttled),
                "400 Bad Request",
                "ProvisionedThroughputExceededException",
                "Rate exceeded (injected)",
            ),
        ];
        if let Some(&(_, counter, status, kind, message)) = call_faults.iter().find(|f| chance(f.0)) {
            if let Some(counter) = counter {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            client
                .write_all(&error_answer(status, kind, message).bytes())
                .await?;
            continue;
        }
        // Entries to reject: removed from the request, answered throttled.
        let mut doc: Value = serde_json::from_slice(&req.body).unwrap();
        let entries = doc["Records"].as_array().cloned().unwrap_or_default();
        let rejected: Vec<bool> = entries.iter().map(|_| chance(faults.throttle_entries)).collect();
        let forwarded: Vec<Value> = entries
            .iter()
            .zip(&rejected)
            .filter(|(_, r)| !**r)
            .map(|(e, _)| e.clone())
            .collect();
        let n_rejected = rejected.iter().filter(|r| **r).count();
        c.rejected_entries.fetch_add(n_rejected, Ordering::Relaxed);
        let mut results: Vec<Value> = Vec::new();
        let mut failed = 0u64;
        let mut resp_head: Option<Message> = None;
        if !forwarded.is_empty() {
            doc["Records"] = Value::Array(forwarded.clone());
            let sent = req.with_body(serde_json::to_vec(&doc).unwrap());
            up.write_all(&sent.bytes()).await?;
            let Some(resp) = read_message(&mut up, &mut ubuf).await? else {
                return Ok(());
            };
            if !resp.head.starts_with("HTTP/1.1 200") {
                client.write_all(&resp.bytes()).await?;
                continue;
            }
            if chance(faults.close_after_forward) {
                c.closed_calls.fetch_add(1, Ordering::Relaxed);
                c.lost_entries.fetch_add(forwarded.len(), Ordering::Relaxed);
                note_lost(c, &resp.body);
                return Ok(()); // the answer is lost with the connection
            }
            if chance(faults.garble) {
                c.garbled_calls.fetch_add(1, Ordering::Relaxed);
                c.lost_entries.fetch_add(forwarded.len(), Ordering::Relaxed);
                note_lost(c, &resp.body);
                let cut = resp.body[..resp.body.len() / 2].to_vec();
                client.write_all(&resp.with_body(cut).bytes()).await?;
                continue;
            }
            if chance(faults.delay) {
                c.delayed_calls.fetch_add(1, Ordering::Relaxed);
                c.lost_entries.fetch_add(forwarded.len(), Ordering::Relaxed);
                note_lost(c, &resp.body);
                tokio::time::sleep(faults.hold).await;
            }
            let v: Value = serde_json::from_slice(&resp.body).unwrap();
            failed = v["FailedRecordCount"].as_u64().unwrap_or(0);
            results = v["Records"].as_array().cloned().unwrap_or_default();
            resp_head = Some(resp);
        }
        let mut merged = Vec::new();
        let mut it = results.into_iter();
        for r in &rejected {
            if *r {
                merged.push(json!({
                    "ErrorCode": "ProvisionedThroughputExceededException",
                    "ErrorMessage": "Rate exceeded for shard (injected)"
                }));
            } else {
                merged.push(it.next().unwrap_or(Value::Null));
            }
        }
        let body = json!({"FailedRecordCount": failed + n_rejected as u64, "Records": merged})
            .to_string()
            .into_bytes();
        let answer = match resp_head {
            Some(h) => h.with_body(body),
            None => Message {
                head: "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: injected\r\n\r\n".into(),
                body: Vec::new(),
            }
            .with_body(body),
        };
        client.write_all(&answer.bytes()).await?;
    }
    Ok(())
}
