//! The producer's logic against an in-memory stream, in plain `cargo test`
//! and in milliseconds: tokio's clock is paused, so backoff, timeouts and
//! TTLs pass at once. The tests against kinesalite and the fault proxy
//! (`tests/producer.rs`) stay the end-to-end proof.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;

use super::*;
use crate::{HashKeyRange, Shard};

/// What the fake does with one PutRecords call.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Stores every entry.
    Store,
    /// Rejects every `nth` entry (from the first) with `code`, stores the
    /// rest.
    Reject { nth: usize, code: &'static str },
    /// Fails the whole call.
    Fail { code: &'static str, transient: bool },
    /// Stores every entry, then answers as if the connection were lost.
    StoreThenLose,
    /// Never answers.
    Hang,
}

/// One Kinesis record as the fake stream holds it.
#[derive(Clone, Debug)]
struct Stored {
    /// When the fake stored it (the clock is tokio's, paused).
    at: Instant,
    sequence_number: String,
    partition_key: String,
    explicit_hash_key: Option<String>,
    data: Vec<u8>,
}

struct FakeState {
    /// The open shards; `all` keeps the closed ones too.
    map: ShardMap,
    all: Vec<Shard>,
    stored: HashMap<String, Vec<Stored>>,
    next_sequence: u64,
    calls: usize,
    /// Decides each call by its number (from 0).
    plan: Box<dyn FnMut(usize) -> Plan + Send>,
    /// After this many calls, the stream splits its first open shard.
    split_after: Option<usize>,
    /// ListShards calls to fail (transiently) before answering.
    list_failures: usize,
}

/// A Kinesis stream in memory: routes entries by hash key over its shards
/// as Kinesis does, numbers them, and answers as its plan says.
struct FakeKinesis(StdMutex<FakeState>);

impl FakeKinesis {
    fn new(shards: usize, plan: impl FnMut(usize) -> Plan + Send + 'static) -> Arc<Self> {
        let w = u128::MAX / shards as u128;
        let all: Vec<Shard> = (0..shards)
            .map(|i| Shard {
                id: format!("shardId-{i:012}"),
                range: HashKeyRange::new(
                    i as u128 * w,
                    if i + 1 == shards {
                        u128::MAX
                    } else {
                        (i as u128 + 1) * w - 1
                    },
                )
                .unwrap(),
            })
            .collect();
        Arc::new(FakeKinesis(StdMutex::new(FakeState {
            map: ShardMap::new(all.clone()).unwrap(),
            all,
            stored: HashMap::new(),
            next_sequence: 0,
            calls: 0,
            plan: Box::new(plan),
            split_after: None,
            list_failures: 0,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    /// Every stored Kinesis record, by shard.
    fn stored(&self) -> HashMap<String, Vec<Stored>> {
        self.lock().stored.clone()
    }

    /// Every shard there has been, closed ones included.
    fn all_shards(&self) -> Vec<Shard> {
        self.lock().all.clone()
    }
}

impl FakeState {
    fn store(&mut self, e: &PutEntry<'_>) -> EntryAnswer {
        let hash = crate::effective_hash_key(e.partition_key, e.explicit_hash_key).unwrap();
        let shard = self.map.route(hash).unwrap().id.clone();
        self.next_sequence += 1;
        let sequence_number = format!("{:020}", self.next_sequence);
        self.stored.entry(shard.clone()).or_default().push(Stored {
            at: Instant::now(),
            sequence_number: sequence_number.clone(),
            partition_key: e.partition_key.to_owned(),
            explicit_hash_key: e.explicit_hash_key.map(str::to_owned),
            data: e.data.to_vec(),
        });
        EntryAnswer::Put {
            shard_id: shard,
            sequence_number,
        }
    }

    /// Closes the first open shard and opens its two halves.
    fn split(&mut self) {
        let parent = self.map.shards()[0].clone();
        let mid = parent.range.start + (parent.range.end - parent.range.start) / 2;
        let n = self.all.len();
        let children = [
            Shard {
                id: format!("shardId-{n:012}"),
                range: HashKeyRange::new(parent.range.start, mid).unwrap(),
            },
            Shard {
                id: format!("shardId-{:012}", n + 1),
                range: HashKeyRange::new(mid + 1, parent.range.end).unwrap(),
            },
        ];
        self.all.extend(children.iter().cloned());
        let open = self.map.shards()[1..].iter().cloned().chain(children);
        self.map = ShardMap::new(open).unwrap();
    }
}

impl Transport for FakeKinesis {
    fn put_records<'a>(
        &'a self,
        _stream: &'a str,
        entries: &'a [PutEntry<'a>],
    ) -> transport::BoxFuture<'a, PutAnswer> {
        let answer = {
            let mut st = self.lock();
            let call = st.calls;
            st.calls += 1;
            if st.split_after == Some(call) {
                st.split();
            }
            match (st.plan)(call) {
                Plan::Store => Some(PutAnswer::Entries(entries.iter().map(|e| st.store(e)).collect())),
                Plan::Reject { nth, code } => Some(PutAnswer::Entries(
                    entries
                        .iter()
                        .enumerate()
                        .map(|(i, e)| {
                            if i % nth == 0 {
                                EntryAnswer::Failed {
                                    code: code.to_owned(),
                                    message: Some("the fake said no".to_owned()),
                                }
                            } else {
                                st.store(e)
                            }
                        })
                        .collect(),
                )),
                Plan::Fail { code, transient } => Some(PutAnswer::Failed {
                    code: code.to_owned(),
                    message: None,
                    transient,
                }),
                Plan::StoreThenLose => {
                    for e in entries {
                        st.store(e);
                    }
                    Some(PutAnswer::Failed {
                        code: "Connection".to_owned(),
                        message: Some("lost after the fake stored it".to_owned()),
                        transient: true,
                    })
                }
                Plan::Hang => None,
            }
        };
        Box::pin(async move {
            match answer {
                Some(a) => a,
                None => std::future::pending().await,
            }
        })
    }

    fn shard_map<'a>(
        &'a self,
        _stream: &'a str,
        _budget: Duration,
        _attempt_timeout: Duration,
    ) -> transport::BoxFuture<'a, Result<ShardMap, crate::sdk::ShardMapError>> {
        let answer = {
            let mut st = self.lock();
            if st.list_failures > 0 {
                st.list_failures -= 1;
                Err(crate::sdk::ShardMapError::ListShards(
                    crate::sdk::GaveUp::Timeout { attempts: 1 },
                ))
            } else {
                Ok(st.map.clone())
            }
        };
        Box::pin(async move { answer })
    }
}

/// Settings for tests: short waits (on the paused clock they pass at once
/// all the same).
fn config() -> ProducerConfig {
    ProducerConfig::default()
        .record_max_buffered_time(Duration::from_millis(50))
        .request_timeout(Duration::from_secs(1))
        .record_ttl(Duration::from_secs(20))
        .aggregation_max_size(4_000)
}

async fn producer(fake: &Arc<FakeKinesis>, cfg: ProducerConfig) -> Producer {
    Producer::start(fake.clone(), "fake".to_owned(), cfg)
        .await
        .unwrap()
}

/// `n` user records over `keys` partition keys; the data names the record.
fn records(n: usize, keys: usize) -> Vec<OwnedRecord> {
    (0..n)
        .map(|i| OwnedRecord {
            partition_key: format!("key-{}", i % keys),
            explicit_hash_key: None,
            data: format!("record {i:06}").into_bytes(),
        })
        .collect()
}

/// Puts every record, then flushes and takes every receipt, in order.
async fn put_all(p: &Producer, records: &[OwnedRecord]) -> Vec<Result<Receipt, RecordError>> {
    let mut futures = Vec::new();
    for r in records {
        futures.push(p.put(r.clone()).await.unwrap());
    }
    p.flush().await;
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

/// A user record of the fake stream: the Kinesis record at `sequence_number`
/// of `shard`, its user record `sub` (or the record itself, unaggregated).
fn stored_user_record(
    stored: &HashMap<String, Vec<Stored>>,
    shard: &str,
    sequence_number: &str,
    sub: Option<u64>,
) -> OwnedRecord {
    let k = stored[shard]
        .iter()
        .find(|k| k.sequence_number == sequence_number)
        .expect("a stored Kinesis record");
    match sub {
        None => OwnedRecord {
            partition_key: k.partition_key.clone(),
            explicit_hash_key: k.explicit_hash_key.clone(),
            data: k.data.clone(),
        },
        Some(i) => match crate::deaggregate(&k.data).unwrap() {
            Deaggregated::Aggregated(a) => OwnedRecord::from(a.records().nth(i as usize).unwrap()),
            Deaggregated::Plain { .. } => panic!("sub-sequence number {i} of a plain record"),
        },
    }
}

/// Every stored user record, with the number of times it is stored: the
/// KCL's reading (an aggregate with a record outside its shard is
/// discarded whole) when `kcl` is set.
fn stored_counts(fake: &FakeKinesis, kcl: bool) -> HashMap<Vec<u8>, usize> {
    let shards = fake.all_shards();
    let mut counts = HashMap::new();
    for (shard, ks) in fake.stored() {
        let range = shards.iter().find(|s| s.id == shard).unwrap().range;
        for k in ks {
            let users: Vec<OwnedRecord> = match crate::deaggregate(&k.data).unwrap() {
                Deaggregated::Aggregated(a) => a.records().map(OwnedRecord::from).collect(),
                Deaggregated::Plain { .. } => vec![OwnedRecord {
                    partition_key: k.partition_key,
                    explicit_hash_key: k.explicit_hash_key,
                    data: k.data,
                }],
            };
            let inside = users.iter().all(|u| {
                range.contains(
                    crate::effective_hash_key(&u.partition_key, u.explicit_hash_key.as_deref()).unwrap(),
                )
            });
            if kcl && !inside {
                continue;
            }
            for u in users {
                *counts.entry(u.data).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// Every receipt names the stored user record it answers, in a Kinesis
/// record the KCL keeps (every user record of it in the shard's range).
fn check_receipts(fake: &FakeKinesis, sent: &[OwnedRecord], results: &[Result<Receipt, RecordError>]) {
    let stored = fake.stored();
    let shards = fake.all_shards();
    for (r, result) in sent.iter().zip(results) {
        let receipt = result.as_ref().unwrap_or_else(|e| panic!("{r:?}: {e}"));
        let got = stored_user_record(
            &stored,
            receipt.shard_id(),
            receipt.sequence_number(),
            receipt.sub_sequence_number(),
        );
        assert_eq!(&got, r, "the receipt names another record");
        let range = shards.iter().find(|s| s.id == receipt.shard_id()).unwrap().range;
        let k = stored[receipt.shard_id()]
            .iter()
            .find(|k| k.sequence_number == receipt.sequence_number())
            .unwrap();
        if let Deaggregated::Aggregated(a) = crate::deaggregate(&k.data).unwrap() {
            assert_eq!(a.check_range(range), Ok(()), "the KCL would discard it");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn every_receipt_names_the_record_it_answers() {
    let fake = FakeKinesis::new(4, |_| Plan::Store);
    let p = producer(&fake, config()).await;
    let sent = records(3_000, 50);
    let results = put_all(&p, &sent).await;
    check_receipts(&fake, &sent, &results);
    // Each once, aggregated: far fewer Kinesis records than user records.
    let counts = stored_counts(&fake, true);
    assert_eq!(counts.len(), sent.len());
    assert!(counts.values().all(|&n| n == 1));
    let kinesis: usize = fake.stored().values().map(Vec::len).sum();
    assert!(kinesis < sent.len() / 10, "{kinesis} Kinesis records");
    assert_eq!(p.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn throttled_entries_are_retried_until_put_with_every_attempt_kept() {
    // The first three calls throttle every other entry.
    let fake = FakeKinesis::new(2, |call| {
        if call < 3 {
            Plan::Reject {
                nth: 2,
                code: "ProvisionedThroughputExceededException",
            }
        } else {
            Plan::Store
        }
    });
    let p = producer(&fake, config()).await;
    let sent = records(2_000, 40);
    let results = put_all(&p, &sent).await;
    check_receipts(&fake, &sent, &results);
    assert!(stored_counts(&fake, true).values().all(|&n| n == 1));
    let retried: Vec<&Receipt> = results
        .iter()
        .map(|r| r.as_ref().unwrap())
        .filter(|r| r.attempts().len() > 1)
        .collect();
    assert!(!retried.is_empty(), "nothing was throttled");
    for r in retried {
        let (last, before) = r.attempts().split_last().unwrap();
        assert_eq!(last.error_code, None);
        assert!(
            before
                .iter()
                .all(|a| a.error_code.as_deref() == Some("ProvisionedThroughputExceededException"))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_final_rejection_fails_the_record_once_and_fail_if_throttled_fails_at_once() {
    let fake = FakeKinesis::new(1, |_| Plan::Reject {
        nth: 1,
        code: "ValidationException",
    });
    let p = producer(&fake, config()).await;
    // With explicit hash keys on some.
    let mut sent = records(10, 3);
    sent[1].explicit_hash_key = Some("12345".into());
    sent[4].explicit_hash_key = Some(u128::MAX.to_string());
    for (r, record) in put_all(&p, &sent).await.into_iter().zip(&sent) {
        let e = r.unwrap_err();
        assert_eq!(e.kind, FailureKind::Rejected);
        assert_eq!(e.attempts.len(), 1, "a final error is not retried");
        assert!(e.message.contains("ValidationException"), "{e}");
        // Each error hands its own record back, keys and data as put.
        assert_eq!(e.record.as_ref(), Some(record));
    }
    let fake = FakeKinesis::new(1, |_| Plan::Reject {
        nth: 1,
        code: "ProvisionedThroughputExceededException",
    });
    // Unaggregated, each record its own Kinesis record.
    let p = producer(&fake, config().fail_if_throttled(true).aggregation(false)).await;
    for (r, record) in put_all(&p, &sent).await.into_iter().zip(&sent) {
        let e = r.unwrap_err();
        assert_eq!((e.kind, e.attempts.len()), (FailureKind::Throttled, 1));
        assert_eq!(e.record.as_ref(), Some(record));
    }
}

#[tokio::test(start_paused = true)]
async fn calls_failing_as_a_whole_are_retried_and_a_lost_answer_only_duplicates_its_own_records() {
    // Call 0 fails with a 500, call 1 is stored but its answer lost, call
    // 2 fails for throttling; then every call is stored.
    let fake = FakeKinesis::new(3, |call| match call {
        0 => Plan::Fail {
            code: "InternalFailure",
            transient: true,
        },
        1 => Plan::StoreThenLose,
        2 => Plan::Fail {
            code: "ThrottlingException",
            transient: true,
        },
        _ => Plan::Store,
    });
    let p = producer(&fake, config()).await;
    let sent = records(1_500, 30);
    let results = put_all(&p, &sent).await;
    check_receipts(&fake, &sent, &results);
    let counts = stored_counts(&fake, true);
    assert_eq!(counts.len(), sent.len(), "a record was lost");
    let twice: Vec<&Vec<u8>> = counts.iter().filter(|(_, n)| **n > 1).map(|(d, _)| d).collect();
    assert!(!twice.is_empty(), "the lost answer's records were not sent again");
    assert!(counts.values().all(|&n| n <= 2));
    // Exactly the records of a call whose answer was lost are there twice:
    // their receipts show an attempt that ended with "Connection".
    for (r, result) in sent.iter().zip(&results) {
        let lost = result
            .as_ref()
            .unwrap()
            .attempts()
            .iter()
            .any(|a| a.error_code.as_deref() == Some("Connection"));
        assert_eq!(counts[&r.data] == 2, lost, "{r:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn records_expire_after_their_ttl_when_no_call_is_answered() {
    let fake = FakeKinesis::new(2, |_| Plan::Hang);
    let ttl = Duration::from_secs(5);
    let p = producer(
        &fake,
        config()
            .record_ttl(ttl)
            .request_timeout(Duration::from_millis(700)),
    )
    .await;
    let start = Instant::now();
    let sent = records(20, 4);
    for (r, record) in put_all(&p, &sent).await.into_iter().zip(&sent) {
        let e = r.unwrap_err();
        assert_eq!(e.kind, FailureKind::Expired, "{e}");
        assert_eq!(e.record.as_ref(), Some(record));
        assert!(
            e.attempts
                .iter()
                .all(|a| a.error_code.as_deref() == Some("Timeout"))
        );
        assert!(!e.attempts.is_empty());
    }
    // Given up within the TTL and one call's timeout (a record whose next
    // attempt could not start before its deadline is failed then); the
    // clock is tokio's, paused: no machine's speed decides this.
    assert!(
        start.elapsed() <= ttl + Duration::from_millis(700),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(p.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_put_hands_records_back_at_the_caps_and_put_waits() {
    let fake = FakeKinesis::new(1, |_| Plan::Hang);
    let p = producer(&fake, config().max_buffered_records(100)).await;
    let sent = records(101, 7);
    let mut futures = Vec::new();
    for r in &sent[..100] {
        futures.push(p.try_put(r.clone()).unwrap());
    }
    match p.try_put(sent[100].clone()) {
        Err(Rejected::Full { record }) => assert_eq!(record, sent[100]),
        other => panic!("not refused at the cap: {other:?}"),
    }
    assert_eq!(p.pending(), 100);
    // put waits for room: nothing frees it here.
    let waited = tokio::time::timeout(Duration::from_secs(3), p.put(sent[100].clone())).await;
    assert!(waited.is_err(), "put did not wait at the cap");
    // abandon answers everything buffered, handing each record back:
    // those in aggregates not yet sent (no MD5 written yet) and those
    // still being aggregated.
    assert_eq!(p.abandon(), 100);
    for (f, record) in futures.into_iter().zip(&sent) {
        let e = f.await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Shutdown);
        assert_eq!(e.record.as_ref(), Some(record));
    }
}

#[tokio::test(start_paused = true)]
async fn a_split_while_records_are_buffered_loses_nothing_and_the_kcl_keeps_every_receipt() {
    // Many shards' worth of keys into one shard, which splits after the
    // second call: aggregates built for the parent land on a child.
    let fake = FakeKinesis::new(1, |_| Plan::Store);
    fake.lock().split_after = Some(2);
    let p = producer(&fake, config().collection_max_count(5)).await;
    let sent = records(4_000, 200);
    let results = put_all(&p, &sent).await;
    check_receipts(&fake, &sent, &results);
    assert_eq!(
        stored_counts(&fake, true).len(),
        sent.len(),
        "the KCL would miss a record"
    );
    assert_eq!(p.shard_map().shards().len(), 2, "the map was not refreshed");
    assert!(
        results.iter().any(|r| r
            .as_ref()
            .unwrap()
            .attempts()
            .iter()
            .any(|a| a.error_code.as_deref() == Some("WrongShard"))),
        "no aggregate landed on the wrong shard"
    );
}

#[tokio::test(start_paused = true)]
async fn preserve_order_keeps_each_keys_records_in_order_through_retries() {
    // Calls throttle every third entry, at random-looking calls.
    let fake = FakeKinesis::new(2, |call| {
        if call % 3 == 1 {
            Plan::Reject {
                nth: 3,
                code: "ProvisionedThroughputExceededException",
            }
        } else {
            Plan::Store
        }
    });
    let p = producer(&fake, config().preserve_order(true)).await;
    let sent = records(3_000, 20);
    let results = put_all(&p, &sent).await;
    check_receipts(&fake, &sent, &results);
    // Per key, the stream's order (sequence numbers, then sub-sequence
    // numbers) is the order put.
    let mut by_key: HashMap<&str, Vec<(String, u64, usize)>> = HashMap::new();
    for (i, (r, result)) in sent.iter().zip(&results).enumerate() {
        let receipt = result.as_ref().unwrap();
        by_key.entry(&r.partition_key).or_default().push((
            receipt.sequence_number().to_owned(),
            receipt.sub_sequence_number().unwrap_or(0),
            i,
        ));
    }
    for (key, mut places) in by_key {
        let put_order: Vec<usize> = places.iter().map(|p| p.2).collect();
        places.sort();
        let stream_order: Vec<usize> = places.iter().map(|p| p.2).collect();
        assert_eq!(stream_order, put_order, "{key} out of order");
    }
}

#[tokio::test(start_paused = true)]
async fn shutdown_sends_what_is_buffered_then_refuses() {
    let fake = FakeKinesis::new(2, |_| Plan::Store);
    let p = producer(
        &fake,
        config().record_max_buffered_time(Duration::from_secs(3600)),
    )
    .await;
    let sent = records(500, 9);
    let mut futures = Vec::new();
    for r in &sent {
        futures.push(p.put(r.clone()).await.unwrap());
    }
    p.shutdown().await;
    let mut results = Vec::new();
    for f in futures {
        results.push(f.await);
    }
    check_receipts(&fake, &sent, &results);
    match p.try_put(sent[0].clone()) {
        Err(Rejected::Shutdown { record }) => assert_eq!(record, sent[0]),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn list_shards_is_tried_again_at_the_start_and_a_bad_setting_is_refused() {
    let fake = FakeKinesis::new(1, |_| Plan::Store);
    fake.lock().list_failures = 1;
    // The fake's ListShards fails once as a whole, without the retries the
    // SDK transport makes: the start fails with the call's error.
    let err = Producer::start(fake.clone(), "fake".to_owned(), config())
        .await
        .unwrap_err();
    assert!(matches!(err, ProducerError::Shards(_)), "{err}");
    let err = Producer::start(fake.clone(), "fake".to_owned(), config().collection_max_count(0))
        .await
        .unwrap_err();
    match err {
        ProducerError::Config(c) => assert_eq!((c.setting, c.value), ("collection_max_count", 0)),
        other => panic!("{other}"),
    }
    // Then it starts.
    let p = producer(&fake, config()).await;
    let sent = records(10, 2);
    check_receipts(&fake, &sent, &put_all(&p, &sent).await);
}

#[test]
fn a_shards_closing_time_is_within_the_buffered_time_at_its_own_phase() {
    let anchor = Instant::now();
    for buffered_ms in [0u64, 1, 7, 50, 100, 1_000] {
        let buffered = Duration::from_millis(buffered_ms);
        for n in [1usize, 2, 10, 200] {
            let mut phases = std::collections::BTreeSet::new();
            for i in 0..n {
                for t_us in [0u64, 1, 999, 4_321, 100_000, 123_457, 2_000_000] {
                    let t = anchor + Duration::from_micros(t_us);
                    let at = state::close_time(anchor, i, n, t, buffered);
                    assert!(at <= t + buffered, "{buffered:?} {n} {i} {t_us}");
                    if buffered.is_zero() {
                        assert_eq!(at, t);
                        continue;
                    }
                    assert!(at > t, "{buffered:?} {n} {i} {t_us}");
                    // The same phase whenever the aggregate opens.
                    let phase = (at - anchor).as_nanos() % buffered.as_nanos();
                    let first = state::close_time(anchor, i, n, anchor, buffered) - anchor;
                    assert_eq!(phase, first.as_nanos() % buffered.as_nanos());
                    phases.insert(phase);
                }
            }
            // About one phase every 10 ms of the buffered time, no more
            // than there are shards.
            let expected = if buffered.is_zero() {
                0
            } else {
                (buffered_ms as usize / 10).clamp(1, n)
            };
            assert_eq!(phases.len(), expected, "{buffered:?} over {n} shards");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn under_steady_load_shards_close_at_different_moments_each_after_the_whole_buffered_time() {
    // Ten shards, a record a millisecond to each for 1 s: an aggregate
    // opens right after the last one closed, so it waits the whole
    // buffered time (100 ms); the shards' aggregates go at ten different
    // moments rather than all at once.
    let fake = FakeKinesis::new(10, |_| Plan::Store);
    let buffered = Duration::from_millis(100);
    let cfg = config()
        .record_max_buffered_time(buffered)
        .aggregation_max_size(50_000);
    let p = producer(&fake, cfg).await;
    let ranges: Vec<u128> = fake.all_shards().iter().map(|s| s.range.start).collect();
    let mut futures = Vec::new();
    for ms in 0..1_000u32 {
        for (i, start) in ranges.iter().enumerate() {
            let r = OwnedRecord {
                partition_key: format!("shard {i}"),
                explicit_hash_key: Some(start.to_string()),
                data: format!("{i} at {ms}").into_bytes(),
            };
            futures.push((Instant::now(), p.put(r).await.unwrap()));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // No flush: every record goes within the buffered time of its put.
    for (put_at, f) in futures {
        let receipt = f.await.unwrap();
        let stored = fake.stored();
        let k = stored[receipt.shard_id()]
            .iter()
            .find(|k| k.sequence_number == receipt.sequence_number())
            .unwrap();
        assert!(k.at - put_at <= buffered, "waited {:?}", k.at - put_at);
    }
    let stored = fake.stored();
    let mut moments: HashMap<Instant, usize> = HashMap::new();
    for (shard, ks) in &stored {
        // The first aggregate may close early; the middle ones each hold
        // the whole buffered time's records.
        assert!(
            (10..=12).contains(&ks.len()),
            "{shard}: {} Kinesis records",
            ks.len()
        );
        for k in &ks[1..ks.len() - 1] {
            let n = match crate::deaggregate(&k.data).unwrap() {
                Deaggregated::Aggregated(a) => a.len(),
                _ => 1,
            };
            assert!(
                (99..=101).contains(&n),
                "{shard}: an aggregate of {n} user records"
            );
        }
        for k in ks {
            *moments.entry(k.at).or_default() += 1;
        }
    }
    let together = moments.values().max().copied().unwrap_or(0);
    assert_eq!(together, 1, "{together} shards' aggregates went at one moment");
}

#[tokio::test(start_paused = true)]
async fn a_user_record_that_is_an_aggregate_is_sent_as_it_is_never_nested() {
    let fake = FakeKinesis::new(4, |_| Plan::Store);
    let p = producer(&fake, config()).await;
    // An aggregate another producer wrote (its user records under the key
    // it is put with, so that they lie in its shard), the same bytes with
    // a wrong trailer (plain data that starts with the magic), and
    // ordinary records around them.
    let mut agg = crate::RecordAggregator::new();
    for i in 0..3 {
        agg.add(Record::new("outer", format!("inner {i}").as_bytes()))
            .unwrap();
    }
    let inner = agg.finish().unwrap().into_data();
    let mut broken = inner.clone();
    *broken.last_mut().unwrap() ^= 1;
    let mut sent = records(20, 5);
    let as_record = |key: &str, data: &[u8]| OwnedRecord {
        partition_key: key.to_owned(),
        explicit_hash_key: None,
        data: data.to_vec(),
    };
    sent.insert(7, as_record("outer", &inner));
    sent.insert(12, as_record("broken", &broken));
    let results = put_all(&p, &sent).await;
    check_receipts(&fake, &sent, &results);
    let stored = fake.stored();
    let kinesis_record = |i: usize| {
        let r = results[i].as_ref().unwrap();
        stored[r.shard_id()]
            .iter()
            .find(|k| k.sequence_number == r.sequence_number())
            .unwrap()
            .clone()
    };
    // The aggregate went alone, byte for byte as it came, under its key.
    assert_eq!(results[7].as_ref().unwrap().sub_sequence_number(), None);
    let k = kinesis_record(7);
    assert_eq!((k.partition_key.as_str(), &k.data), ("outer", &inner));
    // The record with a wrong trailer is data like any other: aggregated,
    // and read back as it was put.
    let r = results[12].as_ref().unwrap();
    assert!(r.sub_sequence_number().is_some());
    let k = kinesis_record(12);
    assert_ne!(k.data, broken);
    // No aggregate holds a user record that is itself an aggregate.
    for k in stored.values().flatten() {
        if let Ok(Deaggregated::Aggregated(a)) = crate::deaggregate(&k.data) {
            assert!(a.records().all(|u| !state::is_aggregate(u.data)));
        }
    }
}

#[tokio::test(start_paused = true)]
async fn try_put_many_answers_each_record_in_place_and_each_receipt_names_its_record() {
    // Small aggregates over few shards: many are sealed in the middle of
    // a batch, so records of one batch and shard wait on different slots.
    let fake = FakeKinesis::new(3, |_| Plan::Store);
    let p = producer(&fake, config()).await;
    let mut sent = records(3_000, 40);
    // Invalid records among them, answered in place.
    sent[10].partition_key = String::new();
    sent[777].explicit_hash_key = Some("not a number".to_owned());
    sent[1_500].explicit_hash_key = Some("12345678901234567890".to_owned());
    let mut futures = Vec::new();
    for batch in sent.chunks(500) {
        let answers = p.try_put_many(batch.iter().cloned());
        assert_eq!(answers.len(), batch.len());
        futures.extend(answers);
    }
    p.flush().await;
    let mut results = Vec::new();
    let mut kept = Vec::new();
    for (i, (f, r)) in futures.into_iter().zip(&sent).enumerate() {
        match f {
            Ok(f) => {
                results.push(f.await);
                kept.push(r.clone());
            }
            Err(Rejected::Invalid { record, reason }) => {
                assert!([10, 777].contains(&i), "record {i} refused: {reason}");
                assert_eq!(&record, r);
            }
            Err(e) => panic!("record {i}: {e}"),
        }
    }
    assert_eq!(kept.len(), sent.len() - 2);
    check_receipts(&fake, &kept, &results);
    let counts = stored_counts(&fake, true);
    assert_eq!(counts.len(), kept.len());
    assert!(counts.values().all(|&n| n == 1));
    let kinesis: usize = fake.stored().values().map(Vec::len).sum();
    assert!(kinesis > 6, "{kinesis} Kinesis records: few aggregates sealed");
    assert_eq!(p.pending(), 0);
}

#[tokio::test(start_paused = true)]
async fn try_put_many_hands_back_from_the_first_record_without_room_and_after_shutdown_all() {
    let fake = FakeKinesis::new(1, |_| Plan::Hang);
    let p = producer(&fake, config().max_buffered_records(100)).await;
    let sent = records(130, 7);
    let first = p.try_put_many(sent[..95].iter().cloned());
    assert!(first.iter().all(Result::is_ok));
    // Room for 5 more: those are admitted, the rest handed back in order.
    let answers = p.try_put_many(sent[95..].iter().cloned());
    for (k, (a, r)) in answers.into_iter().zip(&sent[95..]).enumerate() {
        match a {
            Ok(_) => assert!(k < 5, "record {k} admitted past the cap"),
            Err(Rejected::Full { record }) => {
                assert!(k >= 5, "record {k} refused with room");
                assert_eq!(&record, r);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(p.pending(), 100);
    assert_eq!(p.abandon(), 100);
    let after = p.try_put_many(sent[..3].iter().cloned());
    assert!(after.iter().all(|a| matches!(a, Err(Rejected::Shutdown { .. }))));
}
