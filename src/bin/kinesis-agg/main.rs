//! `kinesis-agg`: deaggregate, aggregate and inspect KPL records from a
//! terminal.
//!
//! Exit status: 0 on success, 1 when some input data was bad (each case is
//! reported on stderr), 2 for usage errors and unreadable input.
//!
//! One module per command, one for the input shapes they read.

mod agg;
mod aws;
mod deagg;
mod input;
mod inspect;
mod put;
mod tail;

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::agg::{Output, Sink};
use crate::deagg::InvalidPolicy;
use crate::input::InputArgs;

/// Standard alphabet; padding optional on input, always written on output.
pub(crate) const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Parser)]
#[command(
    name = "kinesis-agg",
    version,
    about = "Read and write Kinesis Producer Library aggregated records"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Deaggregate Kinesis records into user records, one JSON line each.
    #[command(after_help = "\
Output: one JSON object per user record, in order, with the keys
  record, aggregated, sub_sequence_number, partition_key, explicit_hash_key, data,
  sequence_number, tags
(tags: a list of {\"key\", \"value\"}, value null when unset; empty for most records).
A record that is not aggregated prints one line with aggregated false, its data
unchanged, and its own partition key (null for base64 and raw input).

Exit status: 0; 1 if any record had a valid checksum but a broken body, or was
discarded by --shard-range (each is reported on stderr, the others are still
printed); 2 for usage errors and unreadable input.

Examples:
  echo 84mawgoFa2V5LTAaJQgAGiFUZXN0aW5nIEtQTCBBZ2dyZWdhdGVkIFJlY29yZCAxLTBlW2Hfd6iL1WkMbznr8jc2 \\
    | kinesis-agg deagg
  aws kinesis get-records --shard-iterator \"$IT\" | kinesis-agg deagg --input get-records")]
    Deagg {
        #[command(flatten)]
        input: InputArgs,
        /// What to do with a record whose checksum is valid but whose body
        /// is broken: report it (exit status 1), or print it as a pass-through.
        #[arg(long, value_enum, default_value_t = InvalidPolicy::Error)]
        on_invalid: InvalidPolicy,
        /// The hash key range of the shard the records were read from
        /// (START:END, decimal). Applies the KCL's rule: an aggregate with any
        /// user record outside the range is discarded whole, reported on
        /// stderr, and the exit status is 1.
        #[arg(long, value_name = "START:END")]
        shard_range: Option<kinesis_agg::HashKeyRange>,
        /// With --shard-range: keep the user records inside the range instead
        /// of discarding the aggregate, and report how many were outside.
        #[arg(long, requires = "shard_range")]
        lenient: bool,
    },
    /// Aggregate user records (JSON lines) into aggregated records.
    #[command(after_help = "\
Input: one JSON object per line:
  {\"partition_key\": \"...\", \"explicit_hash_key\": \"...\" or null (optional), \"data\": \"<base64>\",
   \"tags\": [{\"key\": \"...\", \"value\": \"...\" or null}] (optional)}
Other keys are ignored, so deagg output is valid input: deagg | agg rebuilds the
aggregates it read, byte for byte, when they were written canonically.
Output (--output aggregates): one JSON object per aggregate, in order, with the keys
  partition_key, explicit_hash_key, data (base64), user_records (and shard_id with --shards)
Output (--output put-records): one `aws kinesis put-records --cli-input-json` request per
line, each with at most 500 entries and 5 MiB of data plus partition keys. These are
for AWS CLI v2, which base64-decodes the Data fields. AWS CLI v1 does not: it stores
each entry's base64 text as the record's data, so consumers see plain records and every
user record is lost to them (and large requests are refused with 413). With AWS CLI v1,
put the records with `kinesis-agg put` instead.
An aggregate is closed only when the next record does not fit.

Exit status: 0; 1 at the first bad line (the aggregates of all earlier lines are
written first); 2 for usage errors and unreadable input.

Examples:
  printf '%s\\n' '{\"partition_key\":\"a\",\"data\":\"aGVsbG8=\"}' '{\"partition_key\":\"b\",\"data\":\"d29ybGQ=\"}' \\
    | kinesis-agg agg --max-size 51200
  kinesis-agg agg --shards shards.json --output put-records --stream-name my-stream records.jsonl")]
    Agg {
        /// Largest aggregate, counting its data and its outer partition key
        /// as Kinesis does.
        #[arg(long, default_value_t = kinesis_agg::DEFAULT_LIMIT, value_parser = parse_limit)]
        max_size: usize,
        /// Aggregate per shard, with the stream's shards as `aws kinesis
        /// list-shards` prints them (closed shards are ignored). Every
        /// aggregate then holds only records of one shard, gains `shard_id`,
        /// and carries its first record's hash key as explicit_hash_key.
        #[arg(long, value_name = "LIST_SHARDS_JSON")]
        shards: Option<PathBuf>,
        /// What to print.
        #[arg(long, value_enum, default_value_t = Output::Aggregates)]
        output: Output,
        /// The stream to name in put-records requests.
        #[arg(long, required_if_eq("output", "put-records"))]
        stream_name: Option<String>,
        /// Input file (standard input when absent).
        file: Option<PathBuf>,
    },
    /// Describe each input record: aggregated or not and why, tables, sizes,
    /// errors with their byte offsets.
    #[command(after_help = "\
Exit status: 0; 1 if any record had a valid checksum but a broken body; 2 for usage
errors and unreadable input.

Example:
  echo 84mawgoFa2V5LTAaJQgAGiFUZXN0aW5nIEtQTCBBZ2dyZWdhdGVkIFJlY29yZCAxLTBlW2Hfd6iL1WkMbznr8jc2 \\
    | kinesis-agg inspect")]
    Inspect {
        #[command(flatten)]
        input: InputArgs,
        /// Print one JSON object per record instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put user records (JSON lines, as agg reads them) to a stream through
    /// the producer: aggregated per shard, batched, rate-limited, retried.
    #[command(after_help = "\
Input: one JSON object per line, as agg reads them (partition_key, explicit_hash_key,
data in base64; tags are refused: a producer writes none).
Output with --receipts: one JSON object per user record, in input order, with the keys
  line (from 1), shard_id, sequence_number, sub_sequence_number (null when the record
  went out unaggregated), attempts (each with delay_ms, duration_ms, error_code,
  error_message), and error for a record that failed for good.
A summary goes to stderr, and each record that failed, by line.

Credentials and region are found as the AWS CLI finds them (environment, --profile or
AWS_PROFILE, ~/.aws/config and ~/.aws/credentials, SSO, instance and container roles).
Ctrl-C stops reading, sends what was read and prints the rest of the receipts; a second
Ctrl-C stops at once and says how many records were abandoned.

Exit status: 0 when every record was put; 1 if any failed for good, a line was bad (the
records before it are sent first), or the run was interrupted; 2 for usage errors,
unreadable input and a stream that cannot be reached.

Examples:
  kinesis-agg put --stream my-stream --region eu-west-1 --receipts records.jsonl > receipts.jsonl
  kinesis-agg deagg --input lambda event.json | kinesis-agg put --stream copy --endpoint http://127.0.0.1:4567 --region us-east-1")]
    Put(put::PutArgs),
    /// Read a stream's records back: every shard, parents before children,
    /// deaggregated under the KCL rule, as deagg prints them (with shard_id).
    #[command(after_help = "\
Output: one JSON object per user record, with deagg's keys (record counts Kinesis records
read, from 0) and shard_id. Shards are read parents before children, so each partition
key's records come out in the order the stream holds them. An aggregate with a user record
outside its shard's range is discarded, as the KCL discards it, and reported on stderr.

Exit status: 0; 1 if a record had a valid checksum but a broken body (reported on
stderr); 2 for usage errors and a stream that cannot be read. Without --follow it stops
at the end of every shard; with it, at Ctrl-C.

Examples:
  kinesis-agg tail --stream my-stream --region eu-west-1 --from 2026-12-01T10:00:00Z
  kinesis-agg tail --stream my-stream --from latest --follow")]
    Tail(tail::TailArgs),
}

pub(crate) fn parse_limit(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if (kinesis_agg::MIN_LIMIT..=kinesis_agg::MAX_LIMIT).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "must be between {} and {}",
            kinesis_agg::MIN_LIMIT,
            kinesis_agg::MAX_LIMIT
        ))
    }
}

/// Why the command stopped early.
pub(crate) enum Stop {
    /// Bad data: exit status 1.
    Data(String),
    /// Unreadable input or a failed write: exit status 2.
    Input(String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Self {
        Stop::Input(format!("I/O error: {e}"))
    }
}

/// The runtime the commands that call Kinesis run on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Stop> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Stop::Input(format!("cannot start the runtime: {e}")))
}

pub(crate) fn open(file: &Option<PathBuf>) -> Result<Box<dyn BufRead>, Stop> {
    match file {
        None => Ok(Box::new(BufReader::with_capacity(1 << 16, io::stdin().lock()))),
        Some(p) => File::open(p)
            .map(|f| Box::new(BufReader::with_capacity(1 << 16, f)) as Box<dyn BufRead>)
            .map_err(|e| Stop::Input(format!("cannot read {}: {e}", p.display()))),
    }
}

/// A spinner on stderr when it is a terminal; nothing otherwise.
pub(crate) struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub(crate) fn new(what: &'static str) -> Self {
        if !io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} {msg} ({per_sec}, {elapsed})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_message(what);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress(Some(bar))
    }
    pub(crate) fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }
    /// One more record, with the bytes so far shown beside the count
    /// (refreshed every 256 records).
    pub(crate) fn inc_bytes(&self, what: &str, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(1);
            if b.position() % 256 == 1 {
                b.set_message(format!("{what}, {:.1} MB", bytes as f64 / 1e6));
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 16, stdout);
    let result = match cli.command {
        Command::Deagg {
            input,
            on_invalid,
            shard_range,
            lenient,
        } => deagg::deagg(
            &input,
            on_invalid.into(),
            shard_range.map(|r| (r, lenient)),
            &mut out,
        ),
        Command::Agg {
            max_size,
            shards,
            output,
            stream_name,
            file,
        } => {
            let sink = match output {
                Output::Aggregates => Sink::Lines,
                Output::PutRecords => Sink::put_records(stream_name.unwrap_or_default()),
            };
            agg::agg(max_size, shards.as_ref(), sink, &file, &mut out)
        }
        Command::Inspect { input, json } => inspect::inspect(&input, json, &mut out),
        Command::Put(args) => put::put(args, &mut out),
        Command::Tail(args) => tail::tail(args, &mut out),
    };
    let flushed = out.flush();
    let code = match result {
        Ok(bad) => u8::from(bad),
        Err(Stop::Data(msg)) => {
            eprintln!("kinesis-agg: {msg}");
            1
        }
        Err(Stop::Input(msg)) => {
            eprintln!("kinesis-agg: {msg}");
            2
        }
    };
    if let Err(e) = flushed
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("kinesis-agg: cannot write output: {e}");
        return ExitCode::from(2);
    }
    ExitCode::from(code)
}

pub(crate) fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Stop> {
    serde_json::to_writer(&mut *out, value).map_err(|e| Stop::Input(format!("cannot write output: {e}")))?;
    out.write_all(b"\n")?;
    Ok(())
}
