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
mod proxy;
mod put;
mod tail;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::agg::{Output, Sink};
use crate::deagg::InvalidPolicy;
use crate::input::InputArgs;

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
    #[command(after_help = include_str!("help/deagg.txt"))]
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
    #[command(after_help = include_str!("help/agg.txt"))]
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
    #[command(after_help = include_str!("help/inspect.txt"))]
    Inspect {
        #[command(flatten)]
        input: InputArgs,
        /// Print one JSON object per record instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put user records (JSON lines, as agg reads them) to a stream through
    /// the producer: aggregated per shard, batched, rate-limited, retried.
    #[command(after_help = include_str!("help/put.txt"))]
    Put(put::PutArgs),
    /// Read a stream's records back: every shard, parents before children,
    /// deaggregated under the KCL rule, as deagg prints them (with shard_id).
    #[command(after_help = include_str!("help/tail.txt"))]
    Tail(tail::TailArgs),
    /// Serve the Kinesis API on a local port: records put through it are
    /// aggregated per shard, records read through it deaggregated, every
    /// other call forwarded, each signed with the proxy's credentials.
    #[command(after_help = include_str!("help/proxy.txt"))]
    Proxy(proxy::ProxyArgs),
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

pub(crate) fn open(file: &Option<PathBuf>) -> Result<Reader, Stop> {
    let inner: Box<dyn Read> = match file {
        None => Box::new(io::stdin().lock()),
        Some(p) => {
            Box::new(File::open(p).map_err(|e| Stop::Input(format!("cannot read {}: {e}", p.display())))?)
        }
    };
    Ok(BufReader::with_capacity(1 << 16, inner))
}

/// The input, buffered. A concrete `BufReader` rather than a `dyn BufRead`:
/// serde_json reads JSON a byte at a time, which the standard library
/// serves from a `BufReader`'s buffer inline, but through a `dyn` reader
/// as one virtual `read` call a byte.
pub(crate) type Reader = BufReader<Box<dyn Read>>;

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
        Command::Proxy(args) => proxy::proxy(args),
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

/// Writes `value` as one JSON line.
///
/// The line is made in a buffer of the thread's and written with one
/// call: serde_json writes a value token by token, and each token written
/// to a `dyn Write` would be a virtual call.
pub(crate) fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Stop> {
    thread_local! {
        static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    LINE.with_borrow_mut(|line| {
        line.clear();
        serde_json::to_writer(&mut *line, value)
            .map_err(|e| Stop::Input(format!("cannot write output: {e}")))?;
        line.push(b'\n');
        let written = out.write_all(line);
        // An aggregate's line can be 14 MB; the buffer does not keep that.
        line.shrink_to(1 << 16);
        Ok(written?)
    })
}
