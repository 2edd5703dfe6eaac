//! `put`: user records (JSON lines, the `agg` input shape) to a stream
//! through the library's `Producer`, with a receipt per record.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use kinesis_agg::OwnedRecord;
use kinesis_agg::producer::{
    Attempt, Invalid, Producer, ProducerConfig, Receipt, ReceiptFuture, RecordError, Rejected,
};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::aws::{self, AwsArgs};
use crate::input::{MAX_JSON_LINE, parse_user_record, read_line};
use crate::{Progress, Stop, open, parse_limit, write_line};

#[derive(clap::Args)]
pub(crate) struct PutArgs {
    #[command(flatten)]
    pub(crate) aws: AwsArgs,
    /// Print one JSON line per user record, in input order: line, shard_id,
    /// sequence_number, sub_sequence_number (null when it went out
    /// unaggregated), attempts, and error for a record that failed.
    #[arg(long)]
    pub(crate) receipts: bool,
    #[command(flatten)]
    pub(crate) producer: ProducerArgs,
    /// Input file (standard input when absent).
    pub(crate) file: Option<PathBuf>,
}

/// The producer's settings, as `put` and `proxy` take them.
#[derive(clap::Args)]
pub(crate) struct ProducerArgs {
    /// Longest a record waits to be aggregated and collected, in
    /// milliseconds.
    #[arg(long, default_value_t = millis(defaults().record_max_buffered_time), value_name = "MS")]
    pub(crate) max_buffered_time: u64,
    /// Send every user record as its own Kinesis record.
    #[arg(long)]
    pub(crate) no_aggregation: bool,
    /// Largest aggregate (data plus outer partition key).
    #[arg(long, default_value_t = defaults().aggregation_max_size, value_parser = parse_limit)]
    pub(crate) aggregation_max_size: usize,
    /// How long a record may take to be put before it fails, in
    /// milliseconds.
    #[arg(long, default_value_t = millis(defaults().record_ttl), value_name = "MS")]
    pub(crate) record_ttl: u64,
    /// How long one PutRecords call may take, in milliseconds.
    #[arg(long, default_value_t = millis(defaults().request_timeout), value_name = "MS")]
    pub(crate) request_timeout: u64,
    /// Per-shard rate limit, in percent of a shard's 1 MiB/s and 1,000
    /// records/s.
    #[arg(long, default_value_t = defaults().rate_limit, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) rate_limit: u32,
    /// Most PutRecords calls in flight.
    #[arg(long, default_value_t = defaults().max_concurrency, value_parser = at_least_one)]
    pub(crate) max_concurrency: usize,
    /// Fail a record the first time it is throttled.
    #[arg(long)]
    pub(crate) fail_if_throttled: bool,
    /// Keep each partition key's records in order across retries (slower).
    #[arg(long)]
    pub(crate) preserve_order: bool,
    /// Largest user record's data, in bytes (1 to 10485760: above the
    /// default only for streams configured for large records).
    #[arg(long, default_value_t = defaults().max_user_record_size, value_parser = parse_max_user_record_size)]
    pub(crate) max_user_record_size: usize,
}

impl ProducerArgs {
    /// The library's settings with these flags applied.
    pub(crate) fn config(&self) -> ProducerConfig {
        let cfg = defaults();
        // Room for two of the largest records beside the default cap.
        let max_buffered_bytes = cfg.max_buffered_bytes.max(2 * self.max_user_record_size + 1024);
        cfg.record_max_buffered_time(Duration::from_millis(self.max_buffered_time))
            .aggregation(!self.no_aggregation)
            .aggregation_max_size(self.aggregation_max_size)
            .record_ttl(Duration::from_millis(self.record_ttl))
            .request_timeout(Duration::from_millis(self.request_timeout))
            .rate_limit(self.rate_limit)
            .max_concurrency(self.max_concurrency)
            .fail_if_throttled(self.fail_if_throttled)
            .preserve_order(self.preserve_order)
            .max_user_record_size(self.max_user_record_size)
            .max_buffered_bytes(max_buffered_bytes)
    }
}

/// The library's settings: every default the flags show comes from here.
fn defaults() -> ProducerConfig {
    ProducerConfig::default()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A user record's largest data: 1 byte to a large-record stream's 10 MiB
/// (an aggregate's limit, `parse_limit`, starts at 30 and counts the outer
/// partition key; this counts data alone).
fn parse_max_user_record_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if (1..=kinesis_agg::MAX_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between 1 and {}", kinesis_agg::MAX_LIMIT))
    }
}

#[derive(Serialize)]
struct AttemptLine<'a> {
    delay_ms: f64,
    duration_ms: f64,
    error_code: Option<&'a str>,
    error_message: Option<&'a str>,
}

#[derive(Serialize)]
struct ReceiptLine<'a> {
    line: u64,
    shard_id: Option<&'a str>,
    sequence_number: Option<&'a str>,
    sub_sequence_number: Option<u64>,
    attempts: Vec<AttemptLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn attempt_lines(attempts: &[Attempt]) -> Vec<AttemptLine<'_>> {
    attempts
        .iter()
        .map(|a| AttemptLine {
            delay_ms: a.delay.as_secs_f64() * 1000.0,
            duration_ms: a.duration.as_secs_f64() * 1000.0,
            error_code: a.error_code.as_deref(),
            error_message: a.error_message.as_deref(),
        })
        .collect()
}

/// What the run did, for the summary.
#[derive(Default)]
struct Tally {
    read: u64,
    bytes: u64,
    put: u64,
    failed: Vec<(u64, String)>,
    kinesis: HashSet<Arc<str>>,
}

/// Ctrl-C: 1 after the first (stop reading, send what is held), 2 after
/// the second (abandon what is not sent).
struct Interrupt {
    count: AtomicU8,
    notify: Notify,
}

enum Item {
    Record(u64, OwnedRecord),
    Bad(u64, String),
    Failed(Stop),
}

/// Reads and parses the input on a thread of its own (a blocked read must
/// not hold up the runtime or Ctrl-C), a bounded channel away.
fn reader(file: Option<PathBuf>, tx: mpsc::Sender<Item>) {
    let mut input = match open(&file) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.blocking_send(Item::Failed(e));
            return;
        }
    };
    let (mut line, mut data, mut line_no) = (Vec::new(), Vec::new(), 0u64);
    loop {
        match read_line(
            &mut input as &mut dyn BufRead,
            &mut line,
            MAX_JSON_LINE,
            line_no + 1,
        ) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                let _ = tx.blocking_send(Item::Failed(e));
                return;
            }
        }
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        let item = match parse_user_record(text, &mut data) {
            Ok(r) if !r.tags.is_empty() => Item::Bad(
                line_no,
                "tags are not sent by put (a producer writes none): remove them, or use agg".to_owned(),
            ),
            Ok(r) => Item::Record(
                line_no,
                OwnedRecord {
                    partition_key: r.partition_key,
                    explicit_hash_key: r.explicit_hash_key,
                    data: std::mem::take(&mut data),
                },
            ),
            Err(msg) => Item::Bad(line_no, msg),
        };
        let stop = matches!(item, Item::Bad(..));
        if tx.blocking_send(item).is_err() || stop {
            return;
        }
    }
}

pub(crate) fn put(args: PutArgs, out: &mut impl Write) -> Result<bool, Stop> {
    crate::runtime()?.block_on(run(args, out))
}

/// Why a line's record has no receipt: the producer's answer, or what the
/// command saw itself.
enum Failed {
    /// The producer's error for it.
    Record(RecordError),
    /// Refused at `put`, never buffered.
    Invalid(Invalid),
    /// Abandoned (a second Ctrl-C) while its call was in flight.
    Abandoned,
}

impl Failed {
    fn attempts(&self) -> &[Attempt] {
        match self {
            Failed::Record(e) => &e.attempts,
            Failed::Invalid(_) | Failed::Abandoned => &[],
        }
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Record(e) => write!(f, "{e}"),
            Failed::Invalid(why) => write!(f, "invalid: {why} (after 0 attempts)"),
            Failed::Abandoned => f.write_str(
                "abandoned while its PutRecords call was in flight: it may or may not be in the stream (after 0 attempts)",
            ),
        }
    }
}

fn record(
    tally: &mut Tally,
    out: &mut dyn Write,
    receipts: bool,
    line: u64,
    result: Result<Receipt, Failed>,
) -> Result<(), Stop> {
    let line_out = match &result {
        Ok(r) => {
            tally.put += 1;
            tally.kinesis.insert(r.sequence_number().into());
            ReceiptLine {
                line,
                shard_id: Some(r.shard_id()),
                sequence_number: Some(r.sequence_number()),
                sub_sequence_number: r.sub_sequence_number(),
                attempts: attempt_lines(r.attempts()),
                error: None,
            }
        }
        Err(e) => {
            tally.failed.push((line, e.to_string()));
            ReceiptLine {
                line,
                shard_id: None,
                sequence_number: None,
                sub_sequence_number: None,
                attempts: attempt_lines(e.attempts()),
                error: Some(e.to_string()),
            }
        }
    };
    if receipts {
        write_line(out, &line_out)?;
    }
    Ok(())
}

async fn run(args: PutArgs, out: &mut impl Write) -> Result<bool, Stop> {
    let started = Instant::now();
    let client = aws::client(&args.aws.connection).await?;
    let cfg = args.producer.config();
    let producer = Producer::new(client, &args.aws.stream, cfg)
        .await
        .map_err(|e| Stop::Input(e.to_string()))?;

    let interrupt = Arc::new(Interrupt {
        count: AtomicU8::new(0),
        notify: Notify::new(),
    });
    let i2 = interrupt.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            i2.count.fetch_add(1, Ordering::SeqCst);
            i2.notify.notify_waiters();
        }
    });

    let (tx, mut rx) = mpsc::channel::<Item>(4096);
    let file = args.file.clone();
    std::thread::spawn(move || reader(file, tx));

    let progress = Progress::new("user records put");
    let mut tally = Tally::default();
    let mut pending: VecDeque<(u64, ReceiptFuture)> = VecDeque::new();
    let mut bad_line = None;
    let mut input_error = None;
    let mut stopped_at = None;
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            () = interrupt.notify.notified() => None,
        };
        if interrupt.count.load(Ordering::SeqCst) > 0 {
            stopped_at = Some(tally.read);
            break;
        }
        let Some(item) = item else { break };
        match item {
            Item::Record(line, rec) => {
                tally.read += 1;
                tally.bytes += rec.data.len() as u64;
                let admitted = tokio::select! {
                    r = producer.put(rec) => Some(r),
                    () = interrupt.notify.notified() => None,
                };
                match admitted {
                    Some(Ok(f)) => pending.push_back((line, f)),
                    Some(Err(Rejected::Invalid { reason, .. })) => {
                        let e = Failed::Invalid(reason);
                        // In input order: after the records before it.
                        flush_ready(&mut pending, &mut tally, out, args.receipts, true).await?;
                        record(&mut tally, out, args.receipts, line, Err(e))?;
                    }
                    Some(Err(other)) => return Err(Stop::Input(other.to_string())),
                    None => {
                        stopped_at = Some(tally.read - 1);
                        tally.read -= 1;
                        break;
                    }
                }
                progress.inc_bytes("user records put", tally.bytes);
                flush_ready(&mut pending, &mut tally, out, args.receipts, false).await?;
            }
            Item::Bad(line, msg) => {
                bad_line = Some(format!("line {line}: {msg}"));
                break;
            }
            Item::Failed(e) => {
                input_error = Some(e);
                break;
            }
        }
    }
    drop(rx);
    drop(progress);

    // Send what is held; a (second) Ctrl-C abandons it.
    let mut abandoned = None;
    tokio::select! {
        () = producer.flush() => {}
        () = async {
            loop {
                let n = interrupt.notify.notified();
                tokio::pin!(n);
                n.as_mut().enable();
                if interrupt.count.load(Ordering::SeqCst) >= if stopped_at.is_some() { 2 } else { 1 } {
                    return;
                }
                n.await;
            }
        } => {
            abandoned = Some(producer.abandon());
        }
    }
    if abandoned.is_some() {
        // At once: records of calls in flight are not waited for.
        flush_ready(&mut pending, &mut tally, out, args.receipts, false).await?;
        for (line, mut f) in pending.drain(..) {
            let result = match f.try_take() {
                Some(r) => r.map_err(Failed::Record),
                None => Err(Failed::Abandoned),
            };
            record(&mut tally, out, args.receipts, line, result)?;
        }
    } else {
        flush_ready(&mut pending, &mut tally, out, args.receipts, true).await?;
        producer.shutdown().await;
    }

    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "kinesis-agg: put {} of {} user records ({} bytes of data) to {} in {} Kinesis records, {:.1} s ({:.0} records/s); {} failed",
        tally.put,
        tally.read,
        tally.bytes,
        args.aws.stream,
        tally.kinesis.len(),
        secs,
        tally.put as f64 / secs.max(1e-9),
        tally.failed.len()
    );
    for (line, why) in tally.failed.iter().take(10) {
        eprintln!("kinesis-agg: line {line}: {why}");
    }
    if tally.failed.len() > 10 {
        eprintln!(
            "kinesis-agg: ... and {} more (--receipts lists each)",
            tally.failed.len() - 10
        );
    }
    if let Some(n) = abandoned {
        eprintln!("kinesis-agg: stopped at once: {n} user records abandoned, not known to be put");
    }
    if let Some(n) = stopped_at {
        eprintln!(
            "kinesis-agg: interrupted: stopped reading after {n} user records; the rest of the input was not sent"
        );
    }
    if let Some(e) = input_error {
        return Err(e);
    }
    if let Some(msg) = bad_line {
        return Err(Stop::Data(msg));
    }
    Ok(!tally.failed.is_empty() || stopped_at.is_some() || abandoned.is_some())
}

/// Prints the receipts at the front that are there (all of them, waiting,
/// with `wait`), in input order.
async fn flush_ready(
    pending: &mut VecDeque<(u64, ReceiptFuture)>,
    tally: &mut Tally,
    out: &mut dyn Write,
    receipts: bool,
    wait: bool,
) -> Result<(), Stop> {
    while let Some((line, f)) = pending.front_mut() {
        let line = *line;
        let result = if wait {
            f.await
        } else {
            match f.try_take() {
                Some(r) => r,
                None => return Ok(()),
            }
        };
        pending.pop_front();
        record(tally, out, receipts, line, result.map_err(Failed::Record))?;
    }
    Ok(())
}
