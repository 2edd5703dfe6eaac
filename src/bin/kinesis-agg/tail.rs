//! `tail`: every shard of a stream read back, parents before children,
//! deaggregated under the KCL's rule, printed as `deagg` lines with the
//! shard id.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use kinesis_agg::HashKeyRange;
use kinesis_agg::sdk::{self, ShardRead};

use crate::aws::{self, AwsArgs};
use crate::deagg::print_user_in;
use crate::{Progress, Stop};

#[derive(clap::Args)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    pub(crate) aws: AwsArgs,
    /// Where to start: trim-horizon (the oldest record kept), latest (only
    /// records put from now), a sequence number (that record, in its shard,
    /// then that shard's children), or a time (RFC 3339, such as
    /// 2026-12-01T10:00:00Z, or seconds since the epoch) for every shard.
    #[arg(long, default_value = "trim-horizon", value_parser = parse_from)]
    pub(crate) from: From,
    /// Keep reading as records arrive (until Ctrl-C) instead of stopping at
    /// the end of every shard.
    #[arg(long)]
    pub(crate) follow: bool,
    /// How long one call may take before it counts as failed and is tried
    /// again, in milliseconds. Calls failing with throttling, 5xx answers,
    /// timeouts or lost connections are tried again for up to two minutes.
    #[arg(long, default_value_t = 20_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) request_timeout: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum From {
    TrimHorizon,
    Latest,
    Sequence(String),
    Time(DateTime),
}

fn parse_from(s: &str) -> Result<From, String> {
    match s {
        "trim-horizon" | "TRIM_HORIZON" => return Ok(From::TrimHorizon),
        "latest" | "LATEST" => return Ok(From::Latest),
        _ => {}
    }
    // Sequence numbers are long runs of digits; epoch seconds are short.
    if s.len() >= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(From::Sequence(s.to_owned()));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(From::Time(DateTime::from_secs_f64(secs)));
    }
    DateTime::from_str(s, DateTimeFormat::DateTime)
        .map(From::Time)
        .map_err(|_| {
            "expected trim-horizon, latest, a sequence number, an RFC 3339 time or epoch seconds".to_owned()
        })
}

/// How long a call keeps being tried again through throttling, 5xx
/// answers, timeouts and lost connections before `tail` gives up.
const RETRY_BUDGET: Duration = Duration::from_secs(120);

/// How long each call is given, and the calls tried again, by error code,
/// for the summary.
struct Retries {
    timeout: Duration,
    tried: std::collections::BTreeMap<String, u64>,
}

impl Retries {
    fn note(&mut self, code: &str) {
        *self.tried.entry(code.to_owned()).or_default() += 1;
    }

    fn report(&self) {
        if self.tried.is_empty() {
            return;
        }
        let total: u64 = self.tried.values().sum();
        let each: Vec<String> = self.tried.iter().map(|(c, n)| format!("{c} {n}")).collect();
        eprintln!("kinesis-agg: {total} calls tried again ({})", each.join(", "));
    }
}

async fn list_shards(client: &Client, stream: &str, retries: &mut Retries) -> Result<Vec<Shard>, Stop> {
    let timeout = retries.timeout;
    sdk::retry_transient(
        RETRY_BUDGET,
        timeout,
        |c| retries.note(c),
        || sdk::list_shards(client, stream),
    )
    .await
    .map_err(|e| Stop::Input(format!("ListShards: {e}")))
}

/// One shard being read.
struct Reading {
    id: String,
    range: HashKeyRange,
    iterator: Option<String>,
    /// Last sequence number printed, to resume after an expired iterator.
    last: Option<String>,
    closed: bool,
}

pub(crate) fn tail(args: TailArgs, out: &mut impl Write) -> Result<bool, Stop> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Stop::Input(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(run(args, out))
}

async fn iterator(
    client: &Client,
    stream: &str,
    shard: &str,
    from: &From,
    seq_after: Option<&str>,
    retries: &mut Retries,
) -> Result<Option<String>, String> {
    let req = client.get_shard_iterator().stream_name(stream).shard_id(shard);
    let req = match (seq_after, from) {
        (Some(s), _) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(s),
        (None, From::TrimHorizon) => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        (None, From::Latest) => req.shard_iterator_type(ShardIteratorType::Latest),
        (None, From::Sequence(s)) => req
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(s),
        (None, From::Time(t)) => req
            .shard_iterator_type(ShardIteratorType::AtTimestamp)
            .timestamp(*t),
    };
    let timeout = retries.timeout;
    sdk::retry_transient(RETRY_BUDGET, timeout, |c| retries.note(c), || req.clone().send())
        .await
        .map(|o| o.shard_iterator().map(str::to_owned))
        .map_err(|e| e.to_string())
}

async fn run(args: TailArgs, out: &mut impl Write) -> Result<bool, Stop> {
    let client = aws::client(&args.aws).await?;
    let stream = args.aws.stream.as_str();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            s2.store(true, Ordering::SeqCst);
        }
    });
    let progress = Progress::new("user records read");
    let mut text = String::new();
    let mut record_index = 0usize;
    let mut any_broken = false;
    let mut bytes = 0u64;
    // Shards finished, shards being read, and which shard's records the
    // start applies to (all, except for a sequence number).
    let mut done: HashSet<String> = HashSet::new();
    let mut reading: Vec<Reading> = Vec::new();
    let mut started: HashSet<String> = HashSet::new();
    let mut lineage_root: Option<String> = None;
    let mut known: HashMap<String, Shard> = HashMap::new();
    let mut relist = true;
    let mut idle_rounds = 0u32;
    let mut retries = Retries {
        timeout: Duration::from_millis(args.request_timeout),
        tried: Default::default(),
    };
    loop {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if relist {
            relist = false;
            for s in list_shards(&client, stream, &mut retries).await? {
                known.insert(s.shard_id().to_owned(), s);
            }
            if let (From::Sequence(seq), None) = (&args.from, &lineage_root) {
                // The sequence number's shard: the one that takes it.
                for id in known.keys() {
                    if iterator(&client, stream, id, &args.from, None, &mut retries)
                        .await
                        .is_ok()
                    {
                        lineage_root = Some(id.clone());
                        break;
                    }
                }
                if lineage_root.is_none() {
                    return Err(Stop::Input(format!(
                        "no shard of {stream} holds sequence number {seq}"
                    )));
                }
            }
            // Shards whose parents are read (or gone from the list) start.
            let mut ids: Vec<&String> = known.keys().collect();
            ids.sort();
            for id in ids {
                if started.contains(id) {
                    continue;
                }
                let s = &known[id];
                let parents = [s.parent_shard_id(), s.adjacent_parent_shard_id()];
                let waiting = parents
                    .iter()
                    .flatten()
                    .any(|p| known.contains_key(*p) && !done.contains(*p));
                if waiting {
                    continue;
                }
                let (from, wanted) = match &args.from {
                    From::Sequence(_) if Some(id.as_str()) == lineage_root.as_deref() => {
                        (args.from.clone(), true)
                    }
                    From::Sequence(_) => (
                        From::TrimHorizon,
                        descends(&known, id, lineage_root.as_deref(), 0),
                    ),
                    // Children of shards read from LATEST hold only newer
                    // records: read them from their start.
                    From::Latest if parents.iter().flatten().any(|p| started.contains(*p)) => {
                        (From::TrimHorizon, true)
                    }
                    f => (f.clone(), true),
                };
                started.insert(id.clone());
                if !wanted {
                    done.insert(id.clone());
                    relist = true;
                    continue;
                }
                let range = sdk::shard_range(s).map_err(|e| Stop::Input(format!("shard {id}: {e}")))?;
                let it = iterator(&client, stream, id, &from, None, &mut retries)
                    .await
                    .map_err(|e| Stop::Input(format!("GetShardIterator for {id}: {e}")))?;
                let closed = s
                    .sequence_number_range()
                    .is_some_and(|r| r.ending_sequence_number().is_some());
                reading.push(Reading {
                    id: id.clone(),
                    range,
                    iterator: it,
                    last: None,
                    closed,
                });
            }
        }
        if reading.is_empty() {
            if args.follow {
                tokio::time::sleep(Duration::from_secs(1)).await;
                relist = true;
                continue;
            }
            break;
        }
        let mut got_any = false;
        let mut finished = Vec::new();
        for (n, r) in reading.iter_mut().enumerate() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Some(it) = r.iterator.clone() else {
                finished.push(n);
                continue;
            };
            // Tried again with the same iterator: a repeated read returns
            // the same records, so nothing is printed twice.
            let call = client.get_records().shard_iterator(it).limit(10_000);
            let timeout = retries.timeout;
            let res =
                sdk::retry_transient(RETRY_BUDGET, timeout, |c| retries.note(c), || call.clone().send())
                    .await;
            let page = match res {
                Ok(p) => p,
                Err(e) if e.code() == Some("ExpiredIteratorException") => {
                    r.iterator = iterator(
                        &client,
                        stream,
                        &r.id,
                        &args.from,
                        r.last.as_deref(),
                        &mut retries,
                    )
                    .await
                    .map_err(|e| Stop::Input(format!("GetShardIterator for {}: {e}", r.id)))?;
                    continue;
                }
                Err(e) => {
                    retries.report();
                    return Err(Stop::Input(format!("GetRecords on {}: {e}", r.id)));
                }
            };
            for rec in page.records() {
                let i = record_index;
                record_index += 1;
                match sdk::user_records_in_shard(rec, i, r.range) {
                    Ok(ShardRead::Records(users)) => {
                        for u in &users {
                            bytes += u.data.len() as u64;
                            progress.inc_bytes("user records read", bytes);
                            print_user_in(out, u, &mut text, Some(&r.id))?;
                        }
                    }
                    Ok(ShardRead::Discarded { .. }) => {
                        eprintln!(
                            "kinesis-agg: {} sequence number {}: aggregate discarded by the KCL rule (a user record outside the shard's range; a producer that saw the shard change sends such records again)",
                            r.id,
                            rec.sequence_number()
                        );
                    }
                    // An outcome the library may add later: said, not lost.
                    Ok(other) => {
                        any_broken = true;
                        eprintln!(
                            "kinesis-agg: {} sequence number {}: not printed: {other:?}",
                            r.id,
                            rec.sequence_number()
                        );
                    }
                    Err(broken) => {
                        any_broken = true;
                        eprintln!(
                            "kinesis-agg: {} sequence number {}: invalid aggregated record: {}",
                            r.id,
                            rec.sequence_number(),
                            broken.error
                        );
                    }
                }
                r.last = Some(rec.sequence_number().to_owned());
            }
            got_any |= !page.records().is_empty();
            r.iterator = page.next_shard_iterator().map(str::to_owned);
            let caught_up = page.records().is_empty() && page.millis_behind_latest() == Some(0);
            // Done at the end of a closed shard; at the end of an open one
            // too without --follow.
            if r.iterator.is_none() || (caught_up && (r.closed || !args.follow)) {
                finished.push(n);
            }
        }
        out.flush()?;
        for n in finished.into_iter().rev() {
            let r = reading.remove(n);
            done.insert(r.id);
            relist = true;
        }
        if !got_any {
            idle_rounds += 1;
            if args.follow {
                tokio::time::sleep(Duration::from_millis(if idle_rounds > 3 { 1000 } else { 250 })).await;
                if idle_rounds.is_multiple_of(10) {
                    relist = true;
                }
            }
        } else {
            idle_rounds = 0;
        }
    }
    retries.report();
    Ok(any_broken)
}

/// Whether shard `id` is `root` or descends from it (through either
/// parent of a merge).
fn descends(known: &HashMap<String, Shard>, id: &str, root: Option<&str>, depth: u32) -> bool {
    if Some(id) == root {
        return true;
    }
    let Some(s) = known.get(id) else { return false };
    depth < 10_000
        && [s.parent_shard_id(), s.adjacent_parent_shard_id()]
            .into_iter()
            .flatten()
            .any(|p| descends(known, p, root, depth + 1))
}
