//! What becomes of each user record: receipts, errors, and the futures that give them.

use super::*;

/// One PutRecords attempt of the Kinesis record that carried a user record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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

/// Where a user record was put: its shard, the sequence number of the
/// Kinesis record that carried it, its position there, and every attempt.
///
/// Cheap to clone: the user records of one Kinesis record share what they
/// have in common.
#[derive(Clone)]
pub struct Receipt {
    put: Arc<Put>,
    index: u32,
    /// Every attempt, for a record a reshard moved from one Kinesis record
    /// into another (those of the first, then the last's).
    moved: Option<Arc<[Attempt]>>,
}

/// What the user records of one Kinesis record that was put share.
pub(crate) struct Put {
    pub(crate) shard_id: Arc<str>,
    pub(crate) sequence_number: Box<str>,
    pub(crate) aggregated: bool,
    pub(crate) attempts: Box<[Attempt]>,
}

impl Receipt {
    /// The shard that holds it.
    pub fn shard_id(&self) -> &str {
        &self.put.shard_id
    }

    /// The sequence number of the Kinesis record that carried it.
    pub fn sequence_number(&self) -> &str {
        &self.put.sequence_number
    }

    /// Its position in that aggregate; `None` when it went out
    /// unaggregated.
    pub fn sub_sequence_number(&self) -> Option<u64> {
        self.put.aggregated.then_some(u64::from(self.index))
    }

    /// Every attempt, the successful last one included.
    pub fn attempts(&self) -> &[Attempt] {
        self.moved.as_deref().unwrap_or(&self.put.attempts)
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("shard_id", &self.shard_id())
            .field("sequence_number", &self.sequence_number())
            .field("sub_sequence_number", &self.sub_sequence_number())
            .field("attempts", &self.attempts())
            .finish()
    }
}

impl PartialEq for Receipt {
    fn eq(&self, other: &Self) -> bool {
        self.shard_id() == other.shard_id()
            && self.sequence_number() == other.sequence_number()
            && self.sub_sequence_number() == other.sub_sequence_number()
            && self.attempts() == other.attempts()
    }
}

impl Eq for Receipt {}

/// Why a user record failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct RecordError {
    /// Why.
    pub kind: FailureKind,
    /// What happened, in words.
    pub message: String,
    /// Every attempt made.
    pub attempts: Arc<[Attempt]>,
    /// The record, handed back to be put again or kept elsewhere: read
    /// from the Kinesis record that carried it (its keys and data as they
    /// were put). `None` only when the producer was dropped without
    /// [`shutdown`](Producer::shutdown) or
    /// [`abandon`](Producer::abandon), which leaves nothing to read.
    pub record: Option<OwnedRecord>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after {} attempts)", self.message, self.attempts.len())
    }
}

impl std::error::Error for RecordError {}

/// The answer for the user records of one Kinesis record, written once and
/// shared by their futures: answering a Kinesis record of 400 user records
/// is one write, not 400 messages.
pub(crate) struct Slot {
    result: OnceLock<Resolution>,
    /// Futures polled before the answer, woken by it.
    wakers: Mutex<Vec<Waker>>,
}

/// What a Kinesis record that failed carried, from which each of its
/// user records' errors hands that record back.
pub(crate) enum Carried {
    /// Sent unaggregated: the record itself.
    Plain(OwnedRecord),
    /// An aggregate, read once, when the first error asks for its record:
    /// the failure path pays for it, not the producer's lock.
    Aggregate {
        blob: Blob,
        records: OnceLock<Box<[OwnedRecord]>>,
    },
    /// Nothing to read (a producer dropped without shutting down).
    Nothing,
}

/// An aggregate's blob, or the aggregate before its MD5 is written (it
/// failed before it was sent), digested when it is read.
pub(crate) enum Blob {
    Digested(Aggregate),
    Undigested(Mutex<Option<UndigestedAggregate>>),
}

impl Carried {
    /// What `payload` holds.
    pub(crate) fn from_payload(payload: Payload) -> Self {
        match payload {
            Payload::Plain(r) => Carried::Plain(r),
            Payload::Aggregate(a) => Carried::aggregate(Blob::Digested(a.into_aggregate())),
            Payload::Pending(a) => Carried::undigested(a.into_aggregate()),
        }
    }

    /// An aggregate completed but not yet digested.
    pub(crate) fn undigested(a: UndigestedAggregate) -> Self {
        Carried::aggregate(Blob::Undigested(Mutex::new(Some(a))))
    }

    fn aggregate(blob: Blob) -> Self {
        Carried::Aggregate {
            blob,
            records: OnceLock::new(),
        }
    }

    /// The user record at `index`.
    fn record(&self, index: u32) -> Option<OwnedRecord> {
        match self {
            Carried::Plain(r) => (index == 0).then(|| r.clone()),
            Carried::Aggregate { blob, records } => records
                .get_or_init(|| match blob {
                    Blob::Digested(a) => read_back(a.data()),
                    // Taken once: `get_or_init` runs this at most once.
                    Blob::Undigested(m) => {
                        let taken = m.lock().unwrap_or_else(|p| p.into_inner()).take();
                        taken.map_or_else(Box::default, |a| read_back(a.digest().data()))
                    }
                })
                .get(index as usize)
                .cloned(),
            Carried::Nothing => None,
        }
    }
}

/// The user records of an aggregate the producer wrote, in order. The
/// producer's own aggregates always read; were one not to, no record is
/// handed back rather than a wrong one.
fn read_back(blob: &[u8]) -> Box<[OwnedRecord]> {
    match crate::deaggregate(blob) {
        Ok(Deaggregated::Aggregated(agg)) => agg.records().map(OwnedRecord::from).collect(),
        _ => Box::default(),
    }
}

/// What became of a Kinesis record's user records.
pub(crate) enum Resolution {
    Put(Arc<Put>),
    Failed {
        kind: FailureKind,
        message: Arc<str>,
        attempts: Arc<[Attempt]>,
        carried: Carried,
    },
    /// Its user records were routed again one by one (the stream was
    /// resharded): where each went, after these attempts.
    Moved {
        attempts: Arc<[Attempt]>,
        to: Box<[(Arc<Slot>, u32)]>,
    },
}

/// The producer's side of a [`Slot`]. Dropped unanswered (a path that
/// forgot it, or a producer going away), it fails its user records rather
/// than leave their futures waiting for ever.
pub(crate) struct SlotTx(Arc<Slot>);

impl SlotTx {
    pub(crate) fn new() -> Self {
        SlotTx(Arc::new(Slot {
            result: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        }))
    }

    /// The slot, for a user record's future.
    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.0
    }

    /// Answers every user record of the slot (the first answer stands) and
    /// wakes the futures waiting for it.
    pub(crate) fn resolve(self, r: Resolution) {
        resolve(&self.0, r);
    }
}

fn resolve(slot: &Slot, r: Resolution) {
    if slot.result.set(r).is_ok() {
        let wakers = std::mem::take(&mut *lock(&slot.wakers));
        for w in wakers {
            w.wake();
        }
    }
}

fn lock(m: &Mutex<Vec<Waker>>) -> MutexGuard<'_, Vec<Waker>> {
    // A waker list is whole whatever panicked while it was held.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Drop for SlotTx {
    fn drop(&mut self) {
        if self.0.result.get().is_none() {
            resolve(
                &self.0,
                Resolution::Failed {
                    kind: FailureKind::Shutdown,
                    message: Arc::from("the producer was dropped before the record was sent"),
                    attempts: Arc::from([]),
                    carried: Carried::Nothing,
                },
            );
        }
    }
}

/// The result of one user record, to await (or to take with
/// [`try_take`](Self::try_take) when it is there).
pub struct ReceiptFuture {
    slot: Arc<Slot>,
    index: u32,
    /// Where its waker is in the slot's list, once registered
    /// (`u32::MAX`: not registered).
    registered: u32,
    /// Attempts of Kinesis records that carried it before a reshard routed
    /// it into another.
    prior: Option<Box<[Attempt]>>,
}

impl fmt::Debug for ReceiptFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiptFuture")
            .field("answered", &self.slot.result.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ReceiptFuture {
    pub(crate) fn new(slot: Arc<Slot>, index: u32) -> Self {
        ReceiptFuture {
            slot,
            index,
            registered: u32::MAX,
            prior: None,
        }
    }

    /// The result if it is there, without waiting (`None`: not yet). It
    /// can be taken again.
    pub fn try_take(&mut self) -> Option<Result<Receipt, RecordError>> {
        self.follow();
        self.slot.result.get().map(|r| self.outcome(r))
    }

    /// Follows the slot's moves to where the record is now.
    fn follow(&mut self) {
        while let Some(Resolution::Moved { attempts, to }) = self.slot.result.get() {
            // Never: a move names every record of the slot. Should it not,
            // the future stays at the move, which `outcome` answers with an
            // error rather than leave it waiting.
            let Some((slot, index)) = to.get(self.index as usize).cloned() else {
                return;
            };
            self.prior = Some(
                self.prior
                    .iter()
                    .flatten()
                    .chain(attempts.iter())
                    .cloned()
                    .collect(),
            );
            self.slot = slot;
            self.index = index;
            self.registered = u32::MAX;
        }
    }

    /// The attempts before the last Kinesis record's, then its own.
    fn with_prior(&self, last: &[Attempt]) -> Option<Arc<[Attempt]>> {
        self.prior
            .as_ref()
            .map(|p| p.iter().chain(last).cloned().collect())
    }

    fn outcome(&self, r: &Resolution) -> Result<Receipt, RecordError> {
        match r {
            Resolution::Put(put) => Ok(Receipt {
                moved: self.with_prior(&put.attempts),
                put: put.clone(),
                index: self.index,
            }),
            Resolution::Failed {
                kind,
                message,
                attempts,
                carried,
            } => Err(RecordError {
                kind: *kind,
                message: message.to_string(),
                attempts: self.with_prior(attempts).unwrap_or_else(|| attempts.clone()),
                record: carried.record(self.index),
            }),
            // `follow` went past every move.
            Resolution::Moved { attempts, .. } => Err(RecordError {
                kind: FailureKind::Shutdown,
                message: "the producer lost track of the record after a reshard".to_owned(),
                attempts: self.with_prior(attempts).unwrap_or_else(|| attempts.clone()),
                record: None,
            }),
        }
    }
}

impl Future for ReceiptFuture {
    type Output = Result<Receipt, RecordError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            this.follow();
            if let Some(r) = this.slot.result.get() {
                return Poll::Ready(this.outcome(r));
            }
            let slot = this.slot.clone();
            let mut wakers = lock(&slot.wakers);
            // Answered since the look above: its wakers were taken already.
            if slot.result.get().is_some() {
                continue;
            }
            match wakers.get_mut(this.registered as usize) {
                Some(w) => {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                    }
                }
                None => {
                    this.registered = u32::try_from(wakers.len()).unwrap_or(u32::MAX);
                    wakers.push(cx.waker().clone());
                }
            }
            return Poll::Pending;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn attempt(code: Option<&str>) -> Attempt {
        Attempt {
            delay: Duration::from_millis(1),
            duration: Duration::from_millis(2),
            error_code: code.map(str::to_owned),
            error_message: None,
        }
    }

    fn put(shard: &str, seq: &str, aggregated: bool, attempts: Vec<Attempt>) -> Resolution {
        Resolution::Put(Arc::new(Put {
            shard_id: Arc::from(shard),
            sequence_number: Box::from(seq),
            aggregated,
            attempts: Box::from(attempts),
        }))
    }

    #[test]
    fn a_future_polled_before_the_answer_is_woken_once_by_it() {
        let tx = SlotTx::new();
        let mut futures: Vec<ReceiptFuture> =
            (0..3).map(|i| ReceiptFuture::new(tx.slot().clone(), i)).collect();
        let counts: Vec<Arc<Count>> = (0..3).map(|_| Arc::new(Count(AtomicUsize::new(0)))).collect();
        for (f, c) in futures.iter_mut().zip(&counts) {
            let waker = Waker::from(c.clone());
            let mut cx = Context::from_waker(&waker);
            // Polled twice: registered once.
            assert!(Pin::new(&mut *f).poll(&mut cx).is_pending());
            assert!(Pin::new(&mut *f).poll(&mut cx).is_pending());
            assert!(f.try_take().is_none());
        }
        assert_eq!(lock(&tx.slot().wakers).len(), 3);
        tx.resolve(put("shardId-1", "49", true, vec![attempt(None)]));
        for (i, (f, c)) in futures.iter_mut().zip(&counts).enumerate() {
            assert_eq!(c.0.load(Ordering::SeqCst), 1, "future {i} woken once");
            let r = f.try_take().unwrap().unwrap();
            assert_eq!((r.shard_id(), r.sequence_number()), ("shardId-1", "49"));
            assert_eq!(r.sub_sequence_number(), Some(i as u64));
            assert_eq!(r.attempts().len(), 1);
            // Taken again: the same answer.
            assert_eq!(f.try_take().unwrap().unwrap(), r);
        }
    }

    #[test]
    fn the_first_answer_stands_and_an_unaggregated_record_has_no_sub_sequence_number() {
        let tx = SlotTx::new();
        let mut f = ReceiptFuture::new(tx.slot().clone(), 0);
        resolve(tx.slot(), put("shardId-2", "7", false, vec![attempt(None)]));
        resolve(tx.slot(), put("shardId-3", "8", true, vec![]));
        drop(tx);
        let r = f.try_take().unwrap().unwrap();
        assert_eq!((r.shard_id(), r.sub_sequence_number()), ("shardId-2", None));
    }

    #[test]
    fn a_moved_record_is_followed_and_keeps_every_attempt() {
        let first = SlotTx::new();
        let mut f0 = ReceiptFuture::new(first.slot().clone(), 0);
        let mut f1 = ReceiptFuture::new(first.slot().clone(), 1);
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        assert!(
            Pin::new(&mut f1)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // Record 0 goes to position 5 of one Kinesis record, record 1 to
        // position 0 of another, which is moved again.
        let (a, b, c) = (SlotTx::new(), SlotTx::new(), SlotTx::new());
        first.resolve(Resolution::Moved {
            attempts: Arc::from(vec![attempt(Some("WrongShard"))]),
            to: Box::from([(a.slot().clone(), 5), (b.slot().clone(), 0)]),
        });
        b.resolve(Resolution::Moved {
            attempts: Arc::from(vec![attempt(Some("Timeout")), attempt(Some("WrongShard"))]),
            to: Box::from([(c.slot().clone(), 2)]),
        });
        // Not answered yet where they are now.
        assert!(f0.try_take().is_none());
        assert!(
            Pin::new(&mut f1)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        a.resolve(put("shardId-4", "100", true, vec![attempt(None)]));
        c.resolve(Resolution::Failed {
            kind: FailureKind::Expired,
            message: Arc::from("expired"),
            attempts: Arc::from(vec![attempt(Some("Timeout"))]),
            carried: Carried::Nothing,
        });
        let r0 = f0.try_take().unwrap().unwrap();
        assert_eq!(r0.sub_sequence_number(), Some(5));
        let codes = |a: &[Attempt]| a.iter().map(|a| a.error_code.clone()).collect::<Vec<_>>();
        assert_eq!(codes(r0.attempts()), [Some("WrongShard".to_owned()), None]);
        let e1 = match Pin::new(&mut f1).poll(&mut Context::from_waker(&waker)) {
            Poll::Ready(Err(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(e1.kind, FailureKind::Expired);
        assert_eq!(
            codes(&e1.attempts),
            ["WrongShard", "Timeout", "WrongShard", "Timeout"].map(|c| Some(c.to_owned()))
        );
    }

    #[test]
    fn a_slot_dropped_unanswered_fails_its_records_and_wakes_them() {
        let tx = SlotTx::new();
        let mut f = ReceiptFuture::new(tx.slot().clone(), 0);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(
            Pin::new(&mut f)
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        drop(tx);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let e = f.try_take().unwrap().unwrap_err();
        assert_eq!(e.kind, FailureKind::Shutdown);
        // A move that does not name a record: answered, not left waiting.
        let tx = SlotTx::new();
        let mut f = ReceiptFuture::new(tx.slot().clone(), 3);
        tx.resolve(Resolution::Moved {
            attempts: Arc::from([]),
            to: Box::from([]),
        });
        assert_eq!(f.try_take().unwrap().unwrap_err().kind, FailureKind::Shutdown);
    }
}
