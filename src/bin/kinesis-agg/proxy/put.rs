//! PutRecord and PutRecords through the producer: the request validated as
//! Kinesis validates it, each record put into its stream's producer
//! (aggregated per shard), and the call answered when every record has its
//! receipt, or at the deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kinesis_agg::Record;
use kinesis_agg::api::PutRequest;
use kinesis_agg::producer::{
    FailureKind, Producer, ProducerConfig, ProducerError, Receipt, RecordError, Rejected,
};
use kinesis_agg::sdk::ShardMapError;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::api::ApiError;

/// One producer per stream, made on its first put.
pub(crate) struct Producers {
    client: aws_sdk_kinesis::Client,
    cfg: ProducerConfig,
    streams: std::sync::Mutex<HashMap<String, Arc<OnceCell<Producer>>>>,
}

impl Producers {
    pub(crate) fn new(client: aws_sdk_kinesis::Client, cfg: ProducerConfig) -> Self {
        Producers {
            client,
            cfg,
            streams: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The producer of `stream`, made now if it is the first put to it. A
    /// failure is not kept: the next put tries again.
    async fn get(&self, stream: &str, deadline: Instant) -> Result<Producer, ApiError> {
        let cell = {
            let mut streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            streams.entry(stream.to_owned()).or_default().clone()
        };
        let make = cell.get_or_try_init(|| Producer::new(self.client.clone(), stream, self.cfg.clone()));
        match tokio::time::timeout_at(deadline, make).await {
            Ok(Ok(p)) => Ok(p.clone()),
            Ok(Err(e)) => Err(producer_error(stream, &e)),
            Err(_) => Err(ApiError::internal(format!(
                "the shards of stream {stream} could not be listed in time"
            ))),
        }
    }

    /// Every producer made so far.
    pub(crate) fn all(&self) -> Vec<Producer> {
        let streams = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        streams.values().filter_map(|c| c.get().cloned()).collect()
    }

    /// The largest user record's data a put may hold.
    pub(crate) fn max_user_record_size(&self) -> usize {
        self.cfg.max_user_record_size
    }
}

/// A producer that could not start, as the error Kinesis would give.
fn producer_error(stream: &str, e: &ProducerError) -> ApiError {
    match e {
        ProducerError::Shards(ShardMapError::ListShards(gave_up)) => match gave_up.code() {
            Some(
                code @ ("ResourceNotFoundException" | "AccessDeniedException" | "InvalidArgumentException"),
            ) => {
                let said = gave_up.to_string();
                let message = said
                    .strip_prefix(code)
                    .and_then(|m| m.strip_prefix(": "))
                    .unwrap_or(&said);
                ApiError::new(400, code.to_owned(), message.to_owned())
            }
            _ => ApiError::internal(format!(
                "the shards of stream {stream} could not be listed: {gave_up}"
            )),
        },
        other => ApiError::internal(format!("stream {stream}: {other}")),
    }
}

/// One record's outcome.
enum Outcome {
    Put(Receipt),
    Failed(&'static str, String),
}

/// Puts every record and waits for their outcomes until `deadline`.
async fn put_all(
    producers: &Producers,
    puts: &PutRequest<'_>,
    deadline: Instant,
) -> Result<Vec<Outcome>, ApiError> {
    let producer = producers.get(&puts.stream, deadline).await?;
    let n = puts.keys.len();
    let mut futures = Vec::with_capacity(n);
    // A call's records are admitted together while there is room (`put`
    // would let other tasks run between them, spreading one call's records
    // over many scheduling rounds), under one lock of the producer.
    let records = puts.keys.iter().zip(&puts.spans).map(|((key, hash), span)| {
        Record::new(key, &puts.data[span.clone()]).with_optional_explicit_hash_key(hash.as_deref())
    });
    for tried in producer.try_put_many(records) {
        let record = match tried {
            Ok(f) => {
                futures.push(Ok(f));
                continue;
            }
            Err(Rejected::Full { record }) => record,
            Err(e) => e.into_record(),
        };
        match tokio::time::timeout_at(deadline, producer.put(record)).await {
            Ok(Ok(f)) => futures.push(Ok(f)),
            Ok(Err(Rejected::Shutdown { .. })) => futures.push(Err(Outcome::Failed(
                "InternalFailure",
                "the proxy is shutting down; the record was not put".to_owned(),
            ))),
            Ok(Err(e)) => futures.push(Err(Outcome::Failed("InternalFailure", e.to_string()))),
            Err(_) => futures.push(Err(Outcome::Failed(
                "InternalFailure",
                "the proxy's buffers were full until its deadline; the record was not put".to_owned(),
            ))),
        }
    }
    // One deadline for all of them; what has no answer by then is
    // answered as not yet put.
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(n);
    let mut pending = Vec::with_capacity(n);
    for (i, f) in futures.into_iter().enumerate() {
        match f {
            Err(o) => outcomes.push(Some(o)),
            Ok(f) => {
                outcomes.push(None);
                pending.push((i, f));
            }
        }
    }
    let wait = async {
        for (i, f) in &mut pending {
            let got = f.await;
            outcomes[*i] = Some(match got {
                Ok(receipt) => Outcome::Put(receipt),
                Err(e) => failed(&e),
            });
        }
    };
    if tokio::time::timeout_at(deadline, wait).await.is_err() {
        for (i, f) in &mut pending {
            if outcomes[*i].is_none() {
                outcomes[*i] = f.try_take().map(|got| match got {
                    Ok(receipt) => Outcome::Put(receipt),
                    Err(e) => failed(&e),
                });
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Outcome::Failed(
                    "InternalFailure",
                    "not yet put when the proxy's deadline came: it may still be put, and a retry may duplicate it"
                        .to_owned(),
                )
            })
        })
        .collect())
}

/// A record that failed for good, as the entry error a client's retry
/// logic understands.
fn failed(e: &RecordError) -> Outcome {
    let code = match e.kind {
        FailureKind::Throttled => "ProvisionedThroughputExceededException",
        FailureKind::Rejected => match e.attempts.last().and_then(|a| a.error_code.as_deref()) {
            Some("KMSDisabledException") => "KMSDisabledException",
            Some("KMSInvalidStateException") => "KMSInvalidStateException",
            Some("KMSAccessDeniedException") => "KMSAccessDeniedException",
            Some("KMSNotFoundException") => "KMSNotFoundException",
            Some("KMSOptInRequired") => "KMSOptInRequired",
            Some("KMSThrottlingException") => "KMSThrottlingException",
            _ => "InternalFailure",
        },
        _ => "InternalFailure",
    };
    Outcome::Failed(code, e.message.clone())
}

/// Writes a JSON string: the text as it is when it needs no escape (shard
/// ids, sequence numbers, error codes), else through serde_json.
fn push_str(out: &mut Vec<u8>, s: &str) {
    // Every byte looked at, no early exit: the check is then vector code.
    let plain = s
        .bytes()
        .fold(true, |ok, b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A record's entry in the answer: where it went, or why it failed.
fn push_entry(out: &mut Vec<u8>, o: &Outcome) {
    match o {
        Outcome::Put(r) => {
            out.extend_from_slice(b"{\"ShardId\":");
            push_str(out, r.shard_id());
            out.extend_from_slice(b",\"SequenceNumber\":");
            push_str(out, r.sequence_number());
        }
        Outcome::Failed(code, message) => {
            out.extend_from_slice(b"{\"ErrorCode\":");
            push_str(out, code);
            out.extend_from_slice(b",\"ErrorMessage\":");
            push_str(out, message);
        }
    }
    out.push(b'}');
}

/// Answers PutRecords (its request parsed): a JSON answer (written by hand:
/// a busy proxy writes hundreds of thousands of entries a second).
pub(crate) async fn put_records(
    producers: &Producers,
    puts: &PutRequest<'_>,
    within: Duration,
) -> Result<Bytes, ApiError> {
    let outcomes = put_all(producers, puts, Instant::now() + within).await?;
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed(..)))
        .count();
    let mut out = Vec::with_capacity(64 + outcomes.len() * 110);
    out.extend_from_slice(format!("{{\"FailedRecordCount\":{failed},\"Records\":[").as_bytes());
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_entry(&mut out, o);
    }
    out.extend_from_slice(b"]}");
    Ok(Bytes::from(out))
}

/// Answers PutRecord (its request parsed): a JSON answer; a record that
/// failed is the call's error.
pub(crate) async fn put_record(
    producers: &Producers,
    puts: &PutRequest<'_>,
    within: Duration,
) -> Result<Bytes, ApiError> {
    let outcome = put_all(producers, puts, Instant::now() + within).await?.pop();
    match outcome {
        Some(o @ Outcome::Put(_)) => {
            let mut out = Vec::with_capacity(128);
            push_entry(&mut out, &o);
            Ok(Bytes::from(out))
        }
        Some(Outcome::Failed(code, message)) => Err(if code == "InternalFailure" {
            ApiError::internal(message)
        } else {
            ApiError::new(400, code, message)
        }),
        None => Err(ApiError::internal("the record has no outcome")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_json_whatever_the_text() {
        let mut out = Vec::new();
        push_entry(
            &mut out,
            &Outcome::Failed("InternalFailure", "a \"quoted\"\n\\ message".to_owned()),
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ErrorCode": "InternalFailure", "ErrorMessage": "a \"quoted\"\n\\ message"})
        );
        let mut out = Vec::new();
        push_str(&mut out, "shardId-000000000001");
        assert_eq!(out, b"\"shardId-000000000001\"");
        // Each character JSON escapes, at each end of a long text.
        for special in ["\"", "\\", "\u{1f}", "\n", "\u{0}"] {
            let long = "4959".repeat(20);
            for text in [
                format!("{special}{long}"),
                format!("{long}{special}"),
                special.to_owned(),
            ] {
                let mut out = Vec::new();
                push_str(&mut out, &text);
                assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), text);
            }
        }
        let mut out = Vec::new();
        push_str(&mut out, "é\u{7f}✓");
        assert_eq!(out, "\"é\u{7f}✓\"".as_bytes());
    }
}
