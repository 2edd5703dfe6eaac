//! The background task: completing aggregates, collecting calls, answering.

use super::*;

/// What a PutRecords result means for one Kinesis record.
#[derive(Clone)]
pub(crate) enum Outcome {
    Put {
        shard_id: String,
        sequence_number: String,
    },
    Retry {
        code: String,
        message: Option<String>,
        throttled: bool,
    },
    Fail {
        code: String,
        message: Option<String>,
    },
}

pub(crate) async fn pump(s: Arc<Shared>) {
    loop {
        if s.stopped.load(Ordering::Acquire) && s.lock().pending == 0 {
            return;
        }
        let notified = s.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let now = Instant::now();
        let (batches, refresh, next) = plan(&s, now);
        for (batch, permit) in batches {
            tokio::spawn(send(s.clone(), batch, permit));
        }
        if refresh {
            tokio::spawn(refresh_map(s.clone()));
        }
        let _ = tokio::time::timeout_at(next, notified).await;
    }
}

pub(crate) type Batch = (Vec<KRecord>, tokio::sync::OwnedSemaphorePermit);

/// Under the lock: completes aggregates that are due, expires what is past
/// its TTL, and takes the calls to send now. Returns them, whether to
/// refresh the shard map, and when to look again.
pub(crate) fn plan(s: &Shared, now: Instant) -> (Vec<Batch>, bool, Instant) {
    let cfg = &s.cfg;
    let mut st = s.lock();
    // Nothing to wait for: a look now and then all the same.
    let mut next = now + Duration::from_secs(5);
    let flush = std::mem::take(&mut st.flush_now);
    for i in 0..st.shards.len() {
        if let Some(due) = st.shards[i].close_at {
            if flush || due <= now {
                if let Some(k) = st.complete(i, cfg, now) {
                    st.shards[i].ready.push_back(k);
                }
            } else {
                next = next.min(due);
            }
        }
    }
    if let Some(d) = expire(s, &mut st, now) {
        next = next.min(d);
    }
    let wanted = (st.refresh_wanted || !st.misrouted.is_empty()) && !st.refreshing;
    let refresh = wanted && st.refresh_after <= now;
    if wanted && !refresh {
        next = next.min(st.refresh_after);
    }
    if refresh {
        st.refreshing = true;
        st.refresh_wanted = false;
    }
    let mut batches = Vec::new();
    loop {
        if !due(&st, cfg, now, flush, &mut next) {
            break;
        }
        let Ok(permit) = s.calls.clone().try_acquire_owned() else {
            break;
        };
        let batch = collect(&mut st, cfg, now, &mut next);
        if batch.is_empty() {
            break;
        }
        batches.push((batch, permit));
    }
    st.next_look = next;
    st.fresh = (0, 0);
    drop(st);
    // Expiry may have answered records a flush waits for.
    s.settled.notify_waiters();
    (batches, refresh, next)
}

/// Whether a call should go now: a full call's worth is ready, or a ready
/// Kinesis record's time to go ([`KRecord::send_by`]) has come, or a flush
/// asked, or a retry is due.
pub(crate) fn due(st: &State, cfg: &ProducerConfig, now: Instant, flush: bool, next: &mut Instant) -> bool {
    let (mut count, mut bytes) = (0usize, 0usize);
    let mut send_by: Option<Instant> = None;
    for sh in &st.shards {
        if cfg.preserve_order && sh.in_flight > 0 {
            continue;
        }
        if let Some(r) = sh.retry.front() {
            if r.not_before <= now {
                return true;
            }
            *next = (*next).min(r.not_before);
        }
        if let Some(k) = sh.ready.front() {
            if k.not_before > now {
                *next = (*next).min(k.not_before);
                continue;
            }
            if flush || !k.attempts.is_empty() {
                return true;
            }
            send_by = Some(send_by.map_or(k.send_by, |o| o.min(k.send_by)));
        }
        count += sh.ready.len();
        bytes += sh.ready.iter().map(KRecord::size).sum::<usize>();
        if count >= cfg.collection_max_count || bytes >= cfg.collection_max_size {
            return true;
        }
    }
    match send_by {
        Some(o) if o <= now => true,
        Some(o) => {
            *next = (*next).min(o);
            false
        }
        None => false,
    }
}

/// Takes one call's Kinesis records, shard by shard in turn, within the
/// call's limits and each shard's rate limit.
pub(crate) fn collect(
    st: &mut State,
    cfg: &ProducerConfig,
    now: Instant,
    next: &mut Instant,
) -> Vec<KRecord> {
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let n = st.shards.len();
    let start = st.next_rotation % n.max(1);
    st.next_rotation = st.next_rotation.wrapping_add(1);
    let mut progress = true;
    while progress && batch.len() < cfg.collection_max_count {
        progress = false;
        for j in 0..n {
            if batch.len() >= cfg.collection_max_count {
                break;
            }
            let sh = &mut st.shards[(start + j) % n];
            if cfg.preserve_order && sh.in_flight > 0 {
                continue;
            }
            // Retries first, then fresh records.
            let from_retry = sh.retry.front().is_some_and(|r| r.not_before <= now);
            let front = if from_retry {
                sh.retry.front()
            } else {
                sh.ready.front()
            };
            let Some(k) = front else { continue };
            if k.not_before > now {
                *next = (*next).min(k.not_before);
                continue;
            }
            let size = k.size();
            if bytes + size > cfg.collection_max_size {
                continue;
            }
            if let Err(wait) = sh.bucket.take(size, now) {
                *next = (*next).min(now + wait);
                continue;
            }
            let k = if from_retry {
                sh.retry.pop_front()
            } else {
                sh.ready.pop_front()
            };
            if let Some(k) = k {
                sh.in_flight += 1;
                bytes += size;
                batch.push(k);
                progress = !cfg.preserve_order;
            }
        }
    }
    batch
}

/// Fails every queued Kinesis record whose oldest user record is past its
/// TTL. Returns the earliest deadline of those left.
pub(crate) fn expire(s: &Shared, st: &mut State, now: Instant) -> Option<Instant> {
    let mut dead = Vec::new();
    let mut earliest: Option<Instant> = None;
    for sh in &mut st.shards {
        for q in [&mut sh.ready, &mut sh.retry] {
            if q.iter().any(|k| k.deadline <= now) {
                let (keep, gone): (VecDeque<KRecord>, VecDeque<KRecord>) =
                    q.drain(..).partition(|k| k.deadline > now);
                *q = keep;
                dead.extend(gone);
            }
            if let Some(d) = q.iter().map(|k| k.deadline).min() {
                earliest = Some(earliest.map_or(d, |e| e.min(d)));
            }
        }
    }
    for k in dead {
        s.metrics.expired.increment(k.users.count as u64);
        let msg = format!("expired: not put within its TTL of {:?}", s.cfg.record_ttl);
        fail(s, st, k, FailureKind::Expired, msg);
    }
    earliest
}

/// A Kinesis record as a PutRecords entry (its MD5, if an aggregate,
/// written first).
fn entry(k: &KRecord) -> PutEntry<'_> {
    PutEntry {
        data: k.data(),
        partition_key: k.partition_key(),
        explicit_hash_key: k.ehk.as_deref(),
    }
}

/// What a call's answer means for each of its `n` Kinesis records: put,
/// to try again (throttling, the service's failures, timeouts, lost
/// connections, answers that cannot be read or do not match the call), or
/// failed for good.
fn outcomes(answer: Option<PutAnswer>, n: usize, timeout: Duration) -> Vec<Outcome> {
    let every = |o: Outcome| (0..n).map(|_| o.clone()).collect::<Vec<_>>();
    match answer {
        None => every(Outcome::Retry {
            code: "Timeout".to_owned(),
            message: Some(format!("no answer within {timeout:?}")),
            throttled: false,
        }),
        Some(PutAnswer::Failed {
            code,
            message,
            transient: true,
        }) => every(Outcome::Retry {
            throttled: crate::sdk::throttling_code(&code),
            code,
            message,
        }),
        Some(PutAnswer::Failed { code, message, .. }) => every(Outcome::Fail { code, message }),
        Some(PutAnswer::Entries(answers)) if answers.len() != n => every(Outcome::Retry {
            code: "ShortResponse".to_owned(),
            message: Some(format!("{} results for {n} entries", answers.len())),
            throttled: false,
        }),
        Some(PutAnswer::Entries(answers)) => answers
            .into_iter()
            .map(|a| match a {
                EntryAnswer::Put {
                    shard_id,
                    sequence_number,
                } => Outcome::Put {
                    shard_id,
                    sequence_number,
                },
                EntryAnswer::Failed { code, message } if crate::sdk::transient_code(&code) => {
                    Outcome::Retry {
                        throttled: crate::sdk::throttling_code(&code),
                        code,
                        message,
                    }
                }
                EntryAnswer::Failed { code, message } => Outcome::Fail { code, message },
                EntryAnswer::Empty => Outcome::Retry {
                    code: "ShortResponse".to_owned(),
                    message: Some("a result with neither an error nor a sequence number".to_owned()),
                    throttled: false,
                },
            })
            .collect(),
    }
}

/// Writes the MD5 of every aggregate of a call that has none yet, side
/// by side ([`ShardAggregate::digest_all`]).
fn digest_all(batch: &mut [KRecord]) {
    let (at, pending): (Vec<usize>, Vec<ShardAggregate<Undigested>>) = batch
        .iter_mut()
        .enumerate()
        .filter_map(|(i, k)| k.take_pending().map(|a| (i, a)))
        .unzip();
    for (i, a) in at.into_iter().zip(ShardAggregate::digest_all(pending)) {
        batch[i].payload = Payload::Aggregate(a);
    }
}

pub(crate) async fn send(s: Arc<Shared>, mut batch: Vec<KRecord>, permit: tokio::sync::OwnedSemaphorePermit) {
    use tracing::Instrument;
    digest_all(&mut batch);
    let n = batch.len();
    let span = tracing::debug_span!("PutRecords", stream = %s.stream, entries = n);
    let started = Instant::now();
    let answer = {
        let entries: Vec<PutEntry<'_>> = batch.iter().map(entry).collect();
        let call = s.transport.put_records(&s.stream, &entries);
        tokio::time::timeout(s.cfg.request_timeout, call)
            .instrument(span)
            .await
            .ok()
    };
    let took = started.elapsed();
    s.metrics.request_time.record(took.as_secs_f64() * 1000.0);
    s.metrics.kinesis_per_request.record(n as f64);
    match &answer {
        None => tracing::debug!(stream = %s.stream, entries = n, "PutRecords timed out"),
        Some(PutAnswer::Failed { code, .. }) => {
            tracing::debug!(stream = %s.stream, entries = n, code = %code, "PutRecords failed");
        }
        Some(PutAnswer::Entries(_)) => {}
    }
    let outcomes = outcomes(answer, n, s.cfg.request_timeout);
    answer_call(&s, batch, outcomes, started, took);
    drop(permit);
    s.settled.notify_waiters();
    s.wake.notify_one();
}

/// Applies one call's outcomes.
pub(crate) fn answer_call(
    s: &Shared,
    batch: Vec<KRecord>,
    outcomes: Vec<Outcome>,
    started: Instant,
    took: Duration,
) {
    let cfg = &s.cfg;
    let mut st = s.lock();
    let now = Instant::now();
    for (mut k, outcome) in batch.into_iter().zip(outcomes) {
        // With preserve_order, a record that landed on another shard keeps
        // its shard blocked until the refreshed map says what to do.
        let blocks = cfg.preserve_order
            && k.aggregated()
            && matches!(&outcome, Outcome::Put { shard_id, .. } if shard_id.as_str() != &*k.shard_id);
        if !blocks && let Some(sh) = st.shards.iter_mut().find(|sh| sh.id == k.shard_id) {
            sh.in_flight = sh.in_flight.saturating_sub(1);
        }
        let (code, message) = match &outcome {
            Outcome::Put { .. } => (None, None),
            Outcome::Retry { code, message, .. } | Outcome::Fail { code, message } => {
                (Some(code.clone()), message.clone())
            }
        };
        if let Some(c) = &code {
            s.metrics.error(c);
        }
        k.attempts.push(Attempt {
            delay: started.saturating_duration_since(k.since),
            duration: took,
            error_code: code,
            error_message: message,
        });
        k.since = now;
        match outcome {
            Outcome::Put {
                shard_id,
                sequence_number,
            } => {
                if shard_id.as_str() == &*k.shard_id || !k.aggregated() {
                    if !st.agg.shard_map().shards().iter().any(|sh| sh.id == shard_id) {
                        st.refresh_wanted = true;
                    }
                    deliver(s, &mut st, k, &shard_id, &sequence_number);
                } else {
                    tracing::debug!(stream = %s.stream, expected = %k.shard_id, landed = %shard_id, "aggregate landed on another shard");
                    st.misrouted.push((k, shard_id, sequence_number));
                }
            }
            Outcome::Retry { code, .. } if s.stopped.load(Ordering::Acquire) => {
                let m = format!("the producer stopped before the record was put (last attempt: {code})");
                fail(s, &mut st, k, FailureKind::Shutdown, m);
            }
            Outcome::Retry { code, throttled, .. } => {
                if throttled && cfg.fail_if_throttled {
                    fail(
                        s,
                        &mut st,
                        k,
                        FailureKind::Throttled,
                        format!("throttled ({code}) with fail_if_throttled"),
                    );
                } else {
                    retry(s, &mut st, k, now);
                }
            }
            Outcome::Fail { code, message } => {
                let m = format!(
                    "rejected by Kinesis: {code}{}",
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                );
                fail(s, &mut st, k, FailureKind::Rejected, m);
            }
        }
    }
}

/// Schedules another attempt with exponential backoff and full jitter,
/// or fails the record when that would pass its TTL.
pub(crate) fn retry(s: &Shared, st: &mut State, mut k: KRecord, now: Instant) {
    let cfg = &s.cfg;
    let failures = k.attempts.len().clamp(1, 30) as u32;
    let backoff = crate::backoff::Backoff::new(cfg.first_backoff, cfg.max_backoff);
    let wait = backoff
        .pause(failures, &mut st.jitter)
        .max(Duration::from_millis(1));
    if now + wait >= k.deadline {
        let m = format!("expired: not put within its TTL of {:?}", cfg.record_ttl);
        s.metrics.expired.increment(k.users.count as u64);
        fail(s, st, k, FailureKind::Expired, m);
        return;
    }
    k.not_before = now + wait;
    match st.shards.iter_mut().find(|sh| sh.id == k.shard_id) {
        Some(sh) if cfg.preserve_order => sh.ready.push_front(k),
        Some(sh) => sh.retry.push_back(k),
        // Its shard is gone from the map: route it again.
        None => reroute(s, st, k, now),
    }
}

/// Answers a Kinesis record's user records with receipts.
pub(crate) fn deliver(s: &Shared, st: &mut State, k: KRecord, shard_id: &str, sequence_number: &str) {
    let aggregated = k.aggregated();
    let size = k.size();
    let at = st.shards.iter().position(|sh| &*sh.id == shard_id);
    let shard: Arc<str> = at.map_or_else(|| Arc::from(shard_id), |i| st.shards[i].id.clone());
    let n = k.users.count;
    s.metrics.kinesis_put.increment(1);
    s.metrics.kinesis_data_put.increment(size as u64);
    s.metrics.user_put.increment(n as u64);
    s.metrics.user_per_kinesis.record(n as f64);
    s.metrics
        .retries_per_record
        .record(k.attempts.len().saturating_sub(1) as f64);
    s.metrics
        .buffering_time
        .record(Instant::now().saturating_duration_since(k.oldest).as_secs_f64() * 1000.0);
    k.slot.resolve(Resolution::Put(Arc::new(Put {
        shard_id: shard,
        sequence_number: Box::from(sequence_number),
        aggregated,
        attempts: k.attempts.into_boxed_slice(),
    })));
    let bytes = settle_users(s, st, &k.users);
    s.metrics.user_data_put.increment(bytes as u64);
    match k.payload {
        Payload::Aggregate(a) => st.agg.recycle(a),
        Payload::Pending(a) => st.agg.recycle(a),
        Payload::Plain(_) => {}
    }
}

/// Counts answered user records out of the pending ones and their epochs,
/// and gives their room back. Returns their bytes.
fn settle_users(s: &Shared, st: &mut State, users: &Users) -> usize {
    for &(e, n) in &users.epochs {
        st.settle(e, n);
    }
    s.metrics.pending.set(st.pending as f64);
    s.bytes.add_permits(users.bytes);
    s.records.add_permits(users.count);
    users.bytes
}

/// Answers a Kinesis record's user records with an error.
pub(crate) fn fail(s: &Shared, st: &mut State, k: KRecord, kind: FailureKind, message: String) {
    let n = k.users.count;
    tracing::debug!(stream = %s.stream, records = n, ?kind, %message, "user records failed");
    k.slot.resolve(Resolution::Failed {
        kind,
        message: Arc::from(message),
        attempts: Arc::from(k.attempts),
        carried: Carried::from_payload(k.payload),
    });
    settle_users(s, st, &k.users);
}

/// Effective hash keys of a Kinesis record's user records, in order (an
/// aggregate's MD5 written first, so that it reads back), the partition
/// keys' MD5s from `keys`' cache.
pub(crate) fn hash_keys(keys: &mut ShardedAggregator, k: &mut KRecord) -> Vec<u128> {
    k.digest();
    match &k.payload {
        Payload::Plain(r) => keys
            .hash_key(&r.partition_key, r.explicit_hash_key.as_deref())
            .into_iter()
            .collect(),
        Payload::Aggregate(a) => match crate::deaggregate(a.data()) {
            Ok(Deaggregated::Aggregated(agg)) => agg
                .records()
                .map(|r| keys.hash_key(r.partition_key, r.explicit_hash_key).unwrap_or(0))
                .collect(),
            _ => Vec::new(),
        },
        // Digested above.
        Payload::Pending(_) => Vec::new(),
    }
}

/// Routes a Kinesis record again under the current map: whole, to the
/// shard that holds all its user records; else record by record into the
/// shards' aggregates, each remembering the attempts so far.
pub(crate) fn reroute(s: &Shared, st: &mut State, mut k: KRecord, now: Instant) {
    let keys = hash_keys(&mut st.agg, &mut k);
    let map = st.agg.shard_map();
    let mut shards = keys.iter().map(|h| map.route_index(*h));
    let first = shards.next().flatten();
    let one = first.is_some() && shards.all(|j| j == first);
    if let (true, Some(j)) = (one, first) {
        // Records routed here again before this one go first.
        if let Some(earlier) = st.complete(j, &s.cfg, now) {
            st.shards[j].ready.push_back(earlier);
        }
        let sh = &mut st.shards[j];
        k.shard_id = sh.id.clone();
        if k.attempts.is_empty() {
            sh.ready.push_back(k);
        } else {
            sh.retry.push_back(k);
        }
        return;
    }
    // A record sent alone may be an aggregate itself, sent as it is; the
    // user records of an aggregate the producer wrote never are.
    let (records, whole): (Vec<Record<'_>>, bool) = match &k.payload {
        Payload::Plain(r) => (vec![r.as_record()], super::state::is_aggregate(&r.data)),
        Payload::Aggregate(a) => match crate::deaggregate(a.data()) {
            Ok(Deaggregated::Aggregated(agg)) => (
                agg.records()
                    .map(|r| {
                        Record::new(r.partition_key, r.data)
                            .with_optional_explicit_hash_key(r.explicit_hash_key)
                    })
                    .collect(),
                false,
            ),
            _ => (Vec::new(), false),
        },
        // Digested by `hash_keys` above.
        Payload::Pending(_) => (Vec::new(), false),
    };
    if records.len() != k.users.count || keys.len() != k.users.count {
        // Never: the producer wrote the aggregate itself. Should it not
        // read back, its records fail rather than vanish.
        let m = "the producer could not read back an aggregate it wrote, to route it again".to_owned();
        fail(s, st, k, FailureKind::Rejected, m);
        return;
    }
    let mut to = Vec::with_capacity(records.len());
    for ((record, epoch), hash) in records.into_iter().zip(k.users.epochs()).zip(keys) {
        let user = User {
            epoch,
            size: held_bytes(&record) as u32,
        };
        let routed = route(
            st,
            &s.cfg,
            record,
            Routing { hash, whole },
            user,
            Some(k.oldest),
            &mut Clock::at(now),
        );
        let index = routed.index;
        to.push((routed.take_slot(st), index));
    }
    k.slot.resolve(Resolution::Moved {
        attempts: Arc::from(k.attempts),
        to: to.into_boxed_slice(),
    });
}

pub(crate) async fn refresh_map(s: Arc<Shared>) {
    let listed = s
        .transport
        .shard_map(&s.stream, Duration::ZERO, s.cfg.request_timeout)
        .await;
    let now = Instant::now();
    let mut st = s.lock();
    st.refreshing = false;
    match listed {
        Ok(map) => {
            st.refresh_failures = 0;
            let changed = &map != st.agg.shard_map();
            if changed {
                tracing::info!(stream = %s.stream, shards = map.shards().len(), "shard map changed: routing buffered records again");
            }
            apply_map(&s, &mut st, map, changed, now);
        }
        Err(e) => {
            // Again after a pause that doubles with each failure, from 100
            // ms to 10 s (ListShards allows few calls a second).
            st.refresh_failures = st.refresh_failures.saturating_add(1);
            let pause = crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
                .cap(st.refresh_failures + 1);
            tracing::warn!(stream = %s.stream, error = %e, ?pause, "ListShards failed; will try again");
            st.refresh_wanted = true;
            st.refresh_after = now + pause;
        }
    }
    drop(st);
    s.settled.notify_waiters();
    s.wake.notify_one();
}

/// Settles a Kinesis record that landed on `landed`: a success when that
/// shard's range holds all its user records (the KCL keeps it), else its
/// user records are sent again, routed by the current map.
pub(crate) fn settle_misrouted(
    s: &Shared,
    st: &mut State,
    mut k: KRecord,
    landed: &str,
    seq: &str,
    now: Instant,
) {
    // Its shard stayed blocked with preserve_order (see `answer`).
    if s.cfg.preserve_order
        && let Some(sh) = st.shards.iter_mut().find(|sh| sh.id == k.shard_id)
    {
        sh.in_flight = sh.in_flight.saturating_sub(1);
    }
    let range = st
        .agg
        .shard_map()
        .shards()
        .iter()
        .find(|sh| sh.id == landed)
        .map(|sh| sh.range);
    if range.is_some_and(|r| hash_keys(&mut st.agg, &mut k).iter().all(|h| r.contains(*h))) {
        deliver(s, st, k, landed, seq);
        return;
    }
    if let Some(a) = k.attempts.last_mut() {
        a.error_code = Some("WrongShard".to_owned());
        a.error_message = Some(format!(
            "put on {landed} (sequence number {seq}), whose range does not hold all its user records: the KCL would discard it"
        ));
    }
    s.metrics.error("WrongShard");
    reroute(s, st, k, now);
}

/// Switches to `map` (when `changed`): every aggregate being built is
/// completed and every queued Kinesis record routed again (split where
/// its user records now belong to different shards), after the records
/// that landed on unexpected shards are settled, oldest first, so that
/// each shard's queue keeps the order records were put in.
pub(crate) fn apply_map(s: &Shared, st: &mut State, map: ShardMap, changed: bool, now: Instant) {
    let misrouted = std::mem::take(&mut st.misrouted);
    if !changed {
        for (k, landed, seq) in misrouted {
            settle_misrouted(s, st, k, &landed, &seq, now);
        }
        return;
    }
    let mut queued = Vec::new();
    let mut in_flight = Vec::new();
    for i in 0..st.shards.len() {
        // Oldest first: queued records, then the aggregate being built.
        let building = st.complete(i, &s.cfg, now);
        let sh = &mut st.shards[i];
        queued.extend(sh.ready.drain(..));
        queued.extend(sh.retry.drain(..));
        queued.extend(building);
        in_flight.push((sh.id.clone(), sh.in_flight));
    }
    st.shards = shard_states(&map, &s.cfg, now);
    // Every aggregate was completed above: nothing is left to hand back.
    let left = st.agg.set_map(map);
    debug_assert!(left.is_empty());
    // In-flight counts carry over to shards that remain.
    for (id, n) in in_flight {
        if let Some(sh) = st.shards.iter_mut().find(|sh| sh.id == id) {
            sh.in_flight = n;
        }
    }
    for (k, landed, seq) in misrouted {
        settle_misrouted(s, st, k, &landed, &seq, now);
    }
    for k in queued {
        reroute(s, st, k, now);
    }
    for i in 0..st.shards.len() {
        if let Some(k) = st.complete(i, &s.cfg, now) {
            st.shards[i].ready.push_back(k);
        }
    }
}
