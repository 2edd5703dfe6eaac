//! PutRecord and PutRecords through the producer: the request validated as
//! Kinesis validates it, each record put into its stream's producer
//! (aggregated per shard), and the call answered when every record has its
//! receipt, or at the deadline.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use kinesis_agg::producer::{
    FailureKind, Producer, ProducerConfig, ProducerError, Receipt, RecordError, Rejected,
};
use kinesis_agg::sdk::ShardMapError;
use kinesis_agg::{Error, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES, Record};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::api::ApiError;
use crate::B64;

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
                ApiError::new(StatusCode::BAD_REQUEST, code.to_owned(), message.to_owned())
            }
            _ => ApiError::internal(format!(
                "the shards of stream {stream} could not be listed: {gave_up}"
            )),
        },
        other => ApiError::internal(format!("stream {stream}: {other}")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsIn<'a> {
    #[serde(borrow)]
    records: Option<Vec<EntryIn<'a>>>,
    #[serde(borrow)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntryIn<'a> {
    #[serde(borrow)]
    data: Option<Cow<'a, str>>,
    #[serde(borrow)]
    partition_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordIn<'a> {
    #[serde(borrow, flatten)]
    entry: EntryIn<'a>,
    #[serde(borrow)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
}

/// A validated put: the stream, and each record's keys and data (the data
/// of all of them in one buffer).
struct Puts<'a> {
    stream: String,
    keys: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    spans: Vec<Range<usize>>,
    data: Vec<u8>,
}

/// The stream a request names: `StreamName`, or the name in `StreamARN`
/// (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
fn stream_of(name: Option<Cow<'_, str>>, arn: Option<Cow<'_, str>>) -> Result<String, ApiError> {
    let name = match (name, arn) {
        (Some(n), _) => n.into_owned(),
        (None, Some(arn)) => match arn.split_once(":stream/") {
            Some((head, n)) if head.starts_with("arn:") && !n.is_empty() => n.to_owned(),
            _ => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{arn}' at 'streamARN' failed to satisfy constraint: Member must be a Kinesis stream ARN"
                )));
            }
        },
        (None, None) => {
            return Err(ApiError::validation(
                "Either StreamName or StreamARN should be provided.",
            ));
        }
    };
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"
        )));
    }
    Ok(name)
}

impl<'a> Puts<'a> {
    /// Validates `entries` as Kinesis does, naming each by its position
    /// (`field` is `records.N.member.` for PutRecords, empty for
    /// PutRecord). Nothing is put when any one is invalid.
    fn validate(
        stream: String,
        entries: Vec<EntryIn<'a>>,
        many: bool,
        max_data: usize,
    ) -> Result<Self, ApiError> {
        let at = |i: usize, f: &str| {
            if many {
                format!("records.{}.member.{f}", i + 1)
            } else {
                f.to_owned()
            }
        };
        let mut puts = Puts {
            stream,
            keys: Vec::with_capacity(entries.len()),
            spans: Vec::with_capacity(entries.len()),
            data: Vec::new(),
        };
        let mut total = 0usize;
        for (i, e) in entries.into_iter().enumerate() {
            let Some(key) = e.partition_key else {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                    at(i, "partitionKey")
                )));
            };
            if let Err(Error::InvalidPartitionKey { .. }) = kinesis_agg::check_partition_key(&key) {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{key}' at '{}' failed to satisfy constraint: Member must have length between 1 and 256",
                    at(i, "partitionKey")
                )));
            }
            if let Some(h) = &e.explicit_hash_key
                && kinesis_agg::parse_hash_key(h).is_err()
            {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"
                )));
            }
            let Some(text) = e.data else {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                    at(i, "data")
                )));
            };
            let start = puts.data.len();
            B64.decode_vec(text.as_bytes(), &mut puts.data)
                .map_err(|e| ApiError::serialization(format!("{} is not base64: {e}", at(i, "data"))))?;
            let size = puts.data.len() - start;
            if size > max_data {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max_data}",
                    at(i, "data")
                )));
            }
            total += size + key.len();
            puts.spans.push(start..puts.data.len());
            puts.keys.push((key, e.explicit_hash_key));
        }
        if many && total > PUT_RECORDS_MAX_BYTES {
            return Err(ApiError::invalid_argument(format!(
                "Records size exceeds {} MB limit",
                PUT_RECORDS_MAX_BYTES >> 20
            )));
        }
        Ok(puts)
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
    puts: &Puts<'_>,
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
    let req: PutRecordsIn<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("the body is not a PutRecords request: {e}")))?;
    let stream = stream_of(req.stream_name, req.stream_arn)?;
    let entries = req.records.unwrap_or_default();
    if entries.is_empty() || entries.len() > PUT_RECORDS_MAX_ENTRIES {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{}' at 'records' failed to satisfy constraint: Member must have length between 1 and {PUT_RECORDS_MAX_ENTRIES}",
            entries.len()
        )));
    }
    let puts = Puts::validate(stream, entries, true, producers.max_user_record_size())?;
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
    let req: PutRecordIn<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("the body is not a PutRecord request: {e}")))?;
    let stream = stream_of(req.stream_name, req.stream_arn)?;
    let puts = Puts::validate(stream, vec![req.entry], false, producers.max_user_record_size())?;
    let outcome = put_all(producers, &puts, deadline).await?.pop();
    match outcome {
        Some(o @ Outcome::Put(_)) => json(&EntryOut::of(&o)),
        Some(Outcome::Failed(code, message)) => Err(if code == "InternalFailure" {
            ApiError::internal(message)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, code, message)
        }),
        None => Err(ApiError::internal("the record has no outcome")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(key: Option<&'a str>, data: Option<&'a str>, hash: Option<&'a str>) -> EntryIn<'a> {
        EntryIn {
            data: data.map(Cow::Borrowed),
            partition_key: key.map(Cow::Borrowed),
            explicit_hash_key: hash.map(Cow::Borrowed),
        }
    }

    fn refused(entries: Vec<EntryIn<'_>>, max: usize) -> ApiError {
        match Puts::validate("s".to_owned(), entries, true, max) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn entries_are_validated_as_kinesis_does() {
        let ok = Puts::validate(
            "s".to_owned(),
            vec![
                entry(Some("a"), Some("aGk="), None),
                entry(Some("b"), Some(""), Some("42")),
            ],
            true,
            10,
        )
        .unwrap();
        assert_eq!(ok.spans, vec![0..2, 2..2]);
        assert_eq!(&ok.data, b"hi");

        let e = refused(
            vec![
                entry(Some("a"), Some("aGk="), None),
                entry(None, Some("aGk="), None),
            ],
            10,
        );
        assert_eq!(&*e.code, "ValidationException");
        assert!(
            e.message.contains("records.2.member.partitionKey"),
            "{}",
            e.message
        );

        let long = "k".repeat(257);
        let e = refused(vec![entry(Some(&long), Some(""), None)], 10);
        assert_eq!(&*e.code, "ValidationException");

        let e = refused(
            vec![entry(
                Some("a"),
                Some(""),
                Some("340282366920938463463374607431768211456"),
            )],
            10,
        );
        assert_eq!(&*e.code, "InvalidArgumentException");
        assert!(e.message.contains("ExplicitHashKey"));

        let e = refused(vec![entry(Some("a"), Some("not base64!"), None)], 10);
        assert_eq!(&*e.code, "SerializationException");

        let e = refused(vec![entry(Some("a"), Some(&B64.encode([0u8; 11])), None)], 10);
        assert!(e.message.contains("records.1.member.data"), "{}", e.message);
        assert!(e.message.contains("less than or equal to 10"), "{}", e.message);

        let e = refused(vec![entry(Some("a"), None, None)], 10);
        assert!(e.message.contains("records.1.member.data"), "{}", e.message);
    }

    #[test]
    fn a_request_over_five_mib_is_refused_whole() {
        let big = B64.encode(vec![0u8; 1 << 20]);
        let entries = (0..5).map(|_| entry(Some("k"), Some(&big), None)).collect();
        let e = refused(entries, 1 << 20);
        assert_eq!(&*e.code, "InvalidArgumentException");
        assert!(e.message.contains("5 MB"), "{}", e.message);
        let big = B64.encode(vec![0u8; (1 << 20) - 1]);
        let entries: Vec<_> = (0..5).map(|_| entry(Some("k"), Some(&big), None)).collect();
        assert!(Puts::validate("s".to_owned(), entries, true, 1 << 20).is_ok());
    }

    #[test]
    fn the_stream_is_named_or_taken_from_its_arn() {
        let name = |n: Option<&str>, a: Option<&str>| stream_of(n.map(Cow::Borrowed), a.map(Cow::Borrowed));
        assert_eq!(name(Some("s-1.x_y"), None).unwrap(), "s-1.x_y");
        assert_eq!(
            name(None, Some("arn:aws:kinesis:us-east-1:123456789012:stream/orders")).unwrap(),
            "orders"
        );
        assert_eq!(&*name(None, None).unwrap_err().code, "ValidationException");
        assert_eq!(&*name(Some("a b"), None).unwrap_err().code, "ValidationException");
        assert_eq!(
            &*name(None, Some("orders")).unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            &*name(Some(&"s".repeat(129)), None).unwrap_err().code,
            "ValidationException"
        );
    }
}
