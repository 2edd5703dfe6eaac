//! What the producer asks of Kinesis, behind a small trait: PutRecords and
//! ListShards. The SDK's client is the one used for real; the unit tests
//! use an in-memory stream (`tests::FakeKinesis`) that answers, rejects,
//! delays, loses answers and reshards as a test asks.

use super::*;

/// One PutRecords entry, borrowed from the Kinesis record it carries.
pub(crate) struct PutEntry<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) partition_key: &'a str,
    pub(crate) explicit_hash_key: Option<&'a str>,
}

/// What a PutRecords call came to.
pub(crate) enum PutAnswer {
    /// An answer per entry, in order (a well-behaved service gives as many
    /// as were sent; the producer checks).
    Entries(Vec<EntryAnswer>),
    /// The call failed as a whole.
    Failed {
        /// The service's error code, or the producer's name for what
        /// happened (`Connection`, `UnreadableResponse`, `HTTP500`, ...).
        code: String,
        message: Option<String>,
        /// Whether trying again may fix it (throttling, 5xx, lost
        /// connections, answers cut short).
        transient: bool,
    },
}

/// One entry's answer.
pub(crate) enum EntryAnswer {
    Put {
        shard_id: String,
        sequence_number: String,
    },
    Failed {
        code: String,
        message: Option<String>,
    },
    /// Neither an error nor a sequence number.
    Empty,
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Kinesis as the producer uses it.
pub(crate) trait Transport: Send + Sync + 'static {
    /// One PutRecords call (one attempt: the producer retries itself).
    fn put_records<'a>(&'a self, stream: &'a str, entries: &'a [PutEntry<'a>]) -> BoxFuture<'a, PutAnswer>;

    /// The stream's shard map, tried again through transient failures for
    /// up to `budget` (`Duration::ZERO`: once).
    fn shard_map<'a>(
        &'a self,
        stream: &'a str,
        budget: Duration,
        attempt_timeout: Duration,
    ) -> BoxFuture<'a, Result<ShardMap, crate::sdk::ShardMapError>>;
}

/// A name for an SDK error without a service code, for the attempts.
fn error_kind<E>(
    e: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
) -> String {
    use aws_sdk_kinesis::error::SdkError;
    match e {
        SdkError::TimeoutError(_) => "Timeout".to_owned(),
        SdkError::DispatchFailure(_) => "Connection".to_owned(),
        SdkError::ResponseError(_) => "UnreadableResponse".to_owned(),
        SdkError::ServiceError(s) if s.raw().status().is_success() => "UnreadableResponse".to_owned(),
        SdkError::ServiceError(s) => format!("HTTP{}", s.raw().status().as_u16()),
        _ => "Request".to_owned(),
    }
}

impl Transport for Client {
    fn put_records<'a>(&'a self, stream: &'a str, entries: &'a [PutEntry<'a>]) -> BoxFuture<'a, PutAnswer> {
        Box::pin(async move {
            let entries = match entries.iter().map(sdk_entry).collect::<Result<Vec<_>, _>>() {
                Ok(entries) => entries,
                // The builder refuses only a missing data or partition key,
                // both always set: never taken.
                Err(e) => {
                    return PutAnswer::Failed {
                        code: "Request".to_owned(),
                        message: Some(e.to_string()),
                        transient: false,
                    };
                }
            };
            // The producer retries itself (within the TTL, counting each
            // attempt in the receipts): the SDK's own retries are off.
            let call = self
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .customize()
                .config_override(
                    aws_sdk_kinesis::config::Builder::default().retry_config(RetryConfig::disabled()),
                )
                .send()
                .await;
            match call {
                Ok(out) => PutAnswer::Entries(
                    out.records()
                        .iter()
                        .map(|r| match (r.error_code(), r.shard_id(), r.sequence_number()) {
                            (Some(code), _, _) => EntryAnswer::Failed {
                                code: code.to_owned(),
                                message: r.error_message().map(str::to_owned),
                            },
                            (None, Some(shard), Some(seq)) => EntryAnswer::Put {
                                shard_id: shard.to_owned(),
                                sequence_number: seq.to_owned(),
                            },
                            (None, _, _) => EntryAnswer::Empty,
                        })
                        .collect(),
                ),
                Err(e) => {
                    let (code, message) = match (e.code(), e.message()) {
                        (Some(c), m) => (c.to_owned(), m.map(str::to_owned)),
                        (None, _) => (
                            error_kind(&e),
                            Some(format!("{}", aws_sdk_kinesis::error::DisplayErrorContext(&e))),
                        ),
                    };
                    PutAnswer::Failed {
                        code,
                        message,
                        transient: crate::sdk::is_transient(&e),
                    }
                }
            }
        })
    }

    fn shard_map<'a>(
        &'a self,
        stream: &'a str,
        budget: Duration,
        attempt_timeout: Duration,
    ) -> BoxFuture<'a, Result<ShardMap, crate::sdk::ShardMapError>> {
        Box::pin(crate::sdk::list_shard_map(
            self,
            stream,
            budget,
            attempt_timeout,
            move |code| {
                tracing::info!(stream = %stream, %code, "ListShards failed; trying again");
            },
        ))
    }
}

fn sdk_entry(e: &PutEntry<'_>) -> Result<PutRecordsRequestEntry, crate::sdk::BuildError> {
    PutRecordsRequestEntry::builder()
        .data(Blob::new(e.data))
        .partition_key(e.partition_key)
        .set_explicit_hash_key(e.explicit_hash_key.map(str::to_owned))
        .build()
}
