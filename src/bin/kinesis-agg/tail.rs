//! `tail`: every shard of a stream read back, parents before children,
//! deaggregated under the KCL's rule, printed as `deagg` lines with the
//! shard id.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::{DateTime, DateTimeFormat};
use kinesis_agg::sdk::{self, ShardRead, StartingPosition, StreamReader};

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
    pub(crate) from: StartingPosition,
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

fn parse_from(s: &str) -> Result<StartingPosition, String> {
    match s {
        "trim-horizon" | "TRIM_HORIZON" => return Ok(StartingPosition::TrimHorizon),
        "latest" | "LATEST" => return Ok(StartingPosition::Latest),
        _ => {}
    }
    // Sequence numbers are long runs of digits; epoch seconds are short.
    if s.len() >= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(StartingPosition::AtSequenceNumber(s.to_owned()));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(StartingPosition::AtTimestamp(DateTime::from_secs_f64(secs)));
    }
    DateTime::from_str(s, DateTimeFormat::DateTime)
        .map(StartingPosition::AtTimestamp)
        .map_err(|_| {
            "expected trim-horizon, latest, a sequence number, an RFC 3339 time or epoch seconds".to_owned()
        })
}

/// How long a call keeps being tried again through throttling, 5xx
/// answers, timeouts and lost connections before `tail` gives up.
const RETRY_BUDGET: Duration = Duration::from_secs(120);

pub(crate) fn tail(args: TailArgs, out: &mut impl Write) -> Result<bool, Stop> {
    crate::runtime()?.block_on(run(args, out))
}

/// Says on stderr which calls were tried again, by error code.
fn report(retried: &std::collections::BTreeMap<String, u64>) {
    if retried.is_empty() {
        return;
    }
    let total: u64 = retried.values().sum();
    let each: Vec<String> = retried.iter().map(|(c, n)| format!("{c} {n}")).collect();
    eprintln!("kinesis-agg: {total} calls tried again ({})", each.join(", "));
}

async fn run(args: TailArgs, out: &mut impl Write) -> Result<bool, Stop> {
    let client = aws::client(&args.aws.connection).await?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let s2 = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            s2.notify_one();
        }
    });
    let mut reader = StreamReader::new(client, args.aws.stream.as_str(), args.from)
        .follow(args.follow)
        .request_timeout(Duration::from_millis(args.request_timeout))
        .retry_budget(RETRY_BUDGET);
    let progress = Progress::new("user records read");
    let mut text = String::new();
    let mut record_index = 0usize;
    let mut any_broken = false;
    let mut bytes = 0u64;
    loop {
        let page = tokio::select! {
            page = reader.next_page() => page,
            () = stop.notified() => break,
        };
        let page = match page {
            Ok(Some(page)) => page,
            Ok(None) => break,
            Err(e) => {
                report(reader.retried());
                return Err(Stop::Input(e.to_string()));
            }
        };
        let reads = sdk::user_records_in_shard_each(&page.records, record_index, page.shard.range);
        record_index += page.records.len();
        for (rec, read) in page.records.iter().zip(reads) {
            match read {
                Ok(ShardRead::Records(users)) => {
                    for u in &users {
                        bytes += u.data.len() as u64;
                        progress.inc_bytes("user records read", bytes);
                        print_user_in(out, u, &mut text, Some(&page.shard.id))?;
                    }
                }
                Ok(ShardRead::Discarded { .. }) => {
                    eprintln!(
                        "kinesis-agg: {} sequence number {}: aggregate discarded by the KCL rule (a user record outside the shard's range; a producer that saw the shard change sends such records again)",
                        page.shard.id,
                        rec.sequence_number()
                    );
                }
                // An outcome the library may add later: said, not lost.
                Ok(other) => {
                    any_broken = true;
                    eprintln!(
                        "kinesis-agg: {} sequence number {}: not printed: {other:?}",
                        page.shard.id,
                        rec.sequence_number()
                    );
                }
                Err(broken) => {
                    any_broken = true;
                    eprintln!(
                        "kinesis-agg: {} sequence number {}: invalid aggregated record: {}",
                        page.shard.id,
                        rec.sequence_number(),
                        broken.error
                    );
                }
            }
        }
        out.flush()?;
    }
    report(reader.retried());
    Ok(any_broken)
}
