//! What becomes of each user record: receipts, errors, and the futures that give them.

use super::*;

/// One PutRecords attempt of the Kinesis record that carried a user record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// Time from when the Kinesis record was ready (or its previous attempt
    /// ended) to the start of this attempt: backoff, rate limiting, waiting
    /// for a free connection.
    pub delay: Duration,
    /// How long the PutRecords call took.
    pub duration: Duration,
    /// The error code, `None` for the attempt that succeeded. Kinesis's
    /// codes (`ProvisionedThroughputExceededException`, `InternalFailure`,
    /// ...) or the producer's own: `Timeout` (no answer within the request
    /// timeout), `Connection` (the call failed before an answer),
    /// `WrongShard` (the aggregate landed on a shard whose range does not
    /// hold all its user records), `ShortResponse`.
    pub error_code: Option<String>,
    /// The error message, when there is one.
    pub error_message: Option<String>,
}

/// What became of a user record that was put.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The shard that holds it.
    pub shard_id: Arc<str>,
    /// The sequence number of the Kinesis record that carried it.
    pub sequence_number: Arc<str>,
    /// Its position in that aggregate; `None` when it went out unaggregated.
    pub sub_sequence_number: Option<u64>,
    /// Every attempt, the successful last one included.
    pub attempts: Arc<[Attempt]>,
}

/// Why a user record failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Not put within its TTL.
    Expired,
    /// Kinesis rejected it with an error that retrying does not fix.
    Rejected,
    /// Throttled, with `fail_if_throttled`.
    Throttled,
    /// The producer shut down before it was sent.
    Shutdown,
}

/// A user record that failed for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// Why.
    pub kind: FailureKind,
    /// What happened, in words.
    pub message: String,
    /// Every attempt made.
    pub attempts: Arc<[Attempt]>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after {} attempts)", self.message, self.attempts.len())
    }
}

impl std::error::Error for RecordError {}

/// The result of one user record, to await.
#[derive(Debug)]
pub struct ReceiptFuture(pub(crate) oneshot::Receiver<Result<Receipt, RecordError>>);

impl ReceiptFuture {
    /// The result if it is there, without waiting (`None`: not yet).
    pub fn try_take(&mut self) -> Option<Result<Receipt, RecordError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(dropped())),
        }
    }
}

pub(crate) fn dropped() -> RecordError {
    RecordError {
        kind: FailureKind::Shutdown,
        message: "the producer was dropped before the record was sent".to_owned(),
        attempts: Arc::from([]),
    }
}

impl Future for ReceiptFuture {
    type Output = Result<Receipt, RecordError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| Err(dropped())))
    }
}
