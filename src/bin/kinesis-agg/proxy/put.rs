//! PutRecord and PutRecords through the producer: the request validated as
//! Kinesis validates it, each record put into its stream's producer
//! (aggregated per shard), and the call answered when every record has its
//! receipt, or at the deadline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kinesis_agg::Record;
use kinesis_agg::api::{PutRequest, parse_put_record, parse_put_records};
use kinesis_agg::producer::{
    FailureKind, Producer, ProducerConfig, ProducerError, Receipt, RecordError, Rejected,
};
use kinesis_agg::sdk::ShardMapError;
use serde::Serialize;
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
    for ((key, hash), span) in puts.keys.iter().zip(&puts.spans) {
        let record =
            Record::new(key, &puts.data[span.clone()]).with_optional_explicit_hash_key(hash.as_deref());
        // Taken at once while there is room: a call's records are admitted
        // together (`put` would let other tasks run between them, spreading
        // one call's records over many scheduling rounds).
        let record = match producer.try_put(record) {
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
    let mut outcomes = Vec::with_capacity(n);
    for f in futures {
        outcomes.push(match f {
            Err(o) => o,
            Ok(f) => match tokio::time::timeout_at(deadline, f).await {
                Ok(Ok(receipt)) => Outcome::Put(receipt),
                Ok(Err(e)) => failed(&e),
                Err(_) => Outcome::Failed(
                    "InternalFailure",
                    "not yet put when the proxy's deadline came: it may still be put, and a retry may duplicate it"
                        .to_owned(),
                ),
            },
        });
    }
    Ok(outcomes)
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

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsOut<'a> {
    failed_record_count: usize,
    records: Vec<EntryOut<'a>>,
}

/// Answers PutRecords: a JSON body in, a JSON answer out.
pub(crate) async fn put_records(
    producers: &Producers,
    body: &[u8],
    within: Duration,
) -> Result<Bytes, ApiError> {
    let deadline = Instant::now() + within;
    let puts = parse_put_records(body, producers.max_user_record_size())?;
    let outcomes = put_all(producers, &puts, deadline).await?;
    let mut out = PutRecordsOut {
        failed_record_count: 0,
        records: Vec::with_capacity(outcomes.len()),
    };
    for o in &outcomes {
        out.failed_record_count += usize::from(matches!(o, Outcome::Failed(..)));
        out.records.push(EntryOut::of(o));
    }
    json(&out)
}

impl<'a> EntryOut<'a> {
    /// A record's entry in the answer: where it went, or why it failed.
    fn of(o: &'a Outcome) -> Self {
        match o {
            Outcome::Put(r) => EntryOut {
                shard_id: Some(r.shard_id()),
                sequence_number: Some(r.sequence_number()),
                error_code: None,
                error_message: None,
            },
            Outcome::Failed(code, message) => EntryOut {
                shard_id: None,
                sequence_number: None,
                error_code: Some(code),
                error_message: Some(message),
            },
        }
    }
}

fn json(out: &impl Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(out)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// Answers PutRecord: a JSON body in, a JSON answer out; a record that
/// failed is the call's error.
pub(crate) async fn put_record(
    producers: &Producers,
    body: &[u8],
    within: Duration,
) -> Result<Bytes, ApiError> {
    let deadline = Instant::now() + within;
    let puts = parse_put_record(body, producers.max_user_record_size())?;
    let outcome = put_all(producers, &puts, deadline).await?.pop();
    match outcome {
        Some(o @ Outcome::Put(_)) => json(&EntryOut::of(&o)),
        Some(Outcome::Failed(code, message)) => Err(if code == "InternalFailure" {
            ApiError::internal(message)
        } else {
            ApiError::new(400, code, message)
        }),
        None => Err(ApiError::internal("the record has no outcome")),
    }
}
