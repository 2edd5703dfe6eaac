//! `kinesis-agg`: deaggregate and aggregate KPL records from a terminal.
//!
//! Exit status: 0 on success, 1 when some input data was bad (each case is
//! reported on stderr), 2 for usage errors and unreadable input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use clap::{Parser, Subcommand, ValueEnum};
use kinesis_agg::{Deaggregated, Error, RecordAggregator};
use serde::{Deserialize, Serialize};

/// Standard alphabet; padding optional on input, always written on output.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Parser)]
#[command(
    name = "kinesis-agg",
    version,
    about = "Read and write Kinesis Producer Library aggregated records"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Deaggregate Kinesis records into user records, one JSON line each.
    #[command(after_help = "\
Output: one JSON object per user record, in order, with the keys
  record, aggregated, sub_sequence_number, partition_key, explicit_hash_key, data
A record that is not aggregated prints one line with aggregated false, null keys and
its data unchanged.

Exit status: 0; 1 if any record had a valid checksum but a broken body (each is
reported on stderr, and the others are still printed); 2 for usage errors and
unreadable input.

Example:
  echo 84mawgoFa2V5LTAaJQgAGiFUZXN0aW5nIEtQTCBBZ2dyZWdhdGVkIFJlY29yZCAxLTBlW2Hfd6iL1WkMbznr8jc2 \\
    | kinesis-agg deagg")]
    Deagg {
        /// How the input holds records: one base64 record per line, or the
        /// whole input as one record's raw bytes.
        #[arg(long, value_enum, default_value_t = Input::Base64)]
        input: Input,
        /// What to do with a record whose checksum is valid but whose body
        /// is broken: report it (exit status 1), or print it as a pass-through.
        #[arg(long, value_enum, default_value_t = OnInvalid::Error)]
        on_invalid: OnInvalid,
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
        /// Input file (standard input when absent).
        file: Option<PathBuf>,
    },
    /// Aggregate user records (JSON lines) into aggregated records.
    #[command(after_help = "\
Input: one JSON object per line:
  {\"partition_key\": \"...\", \"explicit_hash_key\": \"...\" or null (optional), \"data\": \"<base64>\"}
Output: one JSON object per aggregate, in order, with the keys
  partition_key, explicit_hash_key, data (base64), user_records
An aggregate is closed only when the next record does not fit.

Exit status: 0; 1 at the first bad line (the aggregates of all earlier lines are
written first); 2 for usage errors and unreadable input.

Example:
  printf '%s\\n' '{\"partition_key\":\"a\",\"data\":\"aGVsbG8=\"}' '{\"partition_key\":\"b\",\"data\":\"d29ybGQ=\"}' \\
    | kinesis-agg agg --max-size 51200")]
    Agg {
        /// Largest aggregate, counting its data and its outer partition key
        /// as Kinesis does (30 to 10485760).
        #[arg(long, default_value_t = kinesis_agg::DEFAULT_LIMIT, value_parser = parse_limit)]
        max_size: usize,
        /// Aggregate per shard, with the stream's shards as `aws kinesis
        /// list-shards` prints them (closed shards are ignored). Every
        /// aggregate then holds only records of one shard, gains `shard_id`,
        /// and carries its first record's hash key as explicit_hash_key.
        #[arg(long, value_name = "LIST_SHARDS_JSON")]
        shards: Option<PathBuf>,
        /// Input file (standard input when absent).
        file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Input {
    /// One base64-encoded record per non-blank line.
    Base64,
    /// The whole input is one record.
    Raw,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnInvalid {
    /// Report on stderr, print nothing for it, exit 1 at the end.
    Error,
    /// Print it as a pass-through record.
    Passthrough,
}

fn parse_limit(s: &str) -> Result<usize, String> {
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
enum Stop {
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

fn open(file: &Option<PathBuf>) -> Result<Box<dyn BufRead>, Stop> {
    match file {
        None => Ok(Box::new(BufReader::with_capacity(1 << 16, io::stdin().lock()))),
        Some(p) => File::open(p)
            .map(|f| Box::new(BufReader::with_capacity(1 << 16, f)) as Box<dyn BufRead>)
            .map_err(|e| Stop::Input(format!("cannot read {}: {e}", p.display()))),
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
            file,
        } => deagg(
            input,
            on_invalid,
            shard_range.map(|r| (r, lenient)),
            &file,
            &mut out,
        ),
        Command::Agg {
            max_size,
            shards: Some(shards),
            file,
        } => agg_sharded(max_size, &shards, &file, &mut out),
        Command::Agg {
            max_size,
            shards: None,
            file,
        } => agg(max_size, &file, &mut out),
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

#[derive(Serialize)]
struct UserLine<'a> {
    record: u64,
    aggregated: bool,
    sub_sequence_number: Option<u64>,
    partition_key: Option<&'a str>,
    explicit_hash_key: Option<&'a str>,
    data: &'a str,
}

/// Returns `Ok(true)` when some record was reported as invalid or
/// discarded.
fn deagg(
    input: Input,
    on_invalid: OnInvalid,
    shard: Option<(kinesis_agg::HashKeyRange, bool)>,
    file: &Option<PathBuf>,
    out: &mut impl Write,
) -> Result<bool, Stop> {
    let mut reader = open(file)?;
    let mut any_invalid = false;
    let mut scratch = String::new();
    let mut emit = |index: u64, where_: &str, blob: &[u8], out: &mut dyn Write| -> Result<(), Stop> {
        match kinesis_agg::deaggregate(blob) {
            Ok(Deaggregated::Aggregated(agg)) => {
                let mut print = |r: kinesis_agg::UserRecord<'_>| -> Result<(), Stop> {
                    scratch.clear();
                    B64.encode_string(r.data, &mut scratch);
                    write_line(
                        out,
                        &UserLine {
                            record: index,
                            aggregated: true,
                            sub_sequence_number: Some(r.sub_sequence_number),
                            partition_key: Some(r.partition_key),
                            explicit_hash_key: r.explicit_hash_key,
                            data: &scratch,
                        },
                    )
                };
                match shard {
                    None => agg.records().try_for_each(&mut print)?,
                    Some((range, false)) => match agg.check_range(range) {
                        Ok(()) => agg.records().try_for_each(&mut print)?,
                        Err(o) => {
                            any_invalid = true;
                            eprintln!(
                                "kinesis-agg: record {index}{where_}: aggregate of {} user records discarded by the KCL rule: {o} ({range})",
                                agg.len()
                            );
                        }
                    },
                    Some((range, true)) => {
                        let mut kept = agg.records_in_range(range);
                        kept.by_ref().try_for_each(&mut print)?;
                        if kept.outside() > 0 {
                            eprintln!(
                                "kinesis-agg: record {index}{where_}: kept {} user records, {} outside the shard's range ({range})",
                                agg.len() - kept.outside(),
                                kept.outside()
                            );
                        }
                    }
                }
            }
            Ok(Deaggregated::Plain { data, .. }) => passthrough(out, index, data, &mut scratch)?,
            Err(e) => match on_invalid {
                OnInvalid::Error => {
                    any_invalid = true;
                    eprintln!("kinesis-agg: record {index}{where_}: invalid aggregated record: {e}");
                }
                OnInvalid::Passthrough => passthrough(out, index, blob, &mut scratch)?,
            },
        }
        Ok(())
    };
    match input {
        Input::Raw => {
            let mut blob = Vec::new();
            reader.read_to_end(&mut blob)?;
            emit(0, "", &blob, out)?;
        }
        Input::Base64 => {
            let mut line = Vec::new();
            let mut blob = Vec::new();
            let mut line_no = 0u64;
            let mut index = 0u64;
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                line_no += 1;
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                blob.clear();
                B64.decode_vec(text, &mut blob)
                    .map_err(|e| Stop::Input(format!("line {line_no}: not valid base64: {e}")))?;
                emit(index, &format!(" (line {line_no})"), &blob, out)?;
                index += 1;
            }
        }
    }
    Ok(any_invalid)
}

fn passthrough(out: &mut dyn Write, index: u64, data: &[u8], scratch: &mut String) -> Result<(), Stop> {
    scratch.clear();
    B64.encode_string(data, scratch);
    write_line(
        out,
        &UserLine {
            record: index,
            aggregated: false,
            sub_sequence_number: None,
            partition_key: None,
            explicit_hash_key: None,
            data: scratch,
        },
    )
}

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Stop> {
    serde_json::to_writer(&mut *out, value).map_err(|e| Stop::Input(format!("cannot write output: {e}")))?;
    out.write_all(b"\n")?;
    Ok(())
}

#[derive(Deserialize)]
struct InRecord {
    partition_key: Option<String>,
    #[serde(default)]
    explicit_hash_key: Option<String>,
    data: Option<String>,
}

#[derive(Serialize)]
struct AggLine<'a> {
    partition_key: &'a str,
    explicit_hash_key: Option<&'a str>,
    data: &'a str,
    user_records: usize,
}

fn agg(max_size: usize, file: &Option<PathBuf>, out: &mut impl Write) -> Result<bool, Stop> {
    let mut reader = open(file)?;
    let mut aggregator =
        RecordAggregator::with_limit(max_size).map_err(|e| Stop::Input(format!("--max-size: {e}")))?;
    let mut scratch = String::new();
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut line_no = 0u64;
    let mut failure = None;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match parse_user_record(text, &mut data) {
            Err(msg) => {
                failure = Some(format!("line {line_no}: {msg}"));
                break;
            }
            Ok(rec) => match aggregator.add(&rec.0, &data, rec.1.as_deref()) {
                Ok(Some(done)) => {
                    print_aggregate(out, &done, &mut scratch)?;
                    aggregator.recycle(done);
                }
                Ok(None) => {}
                Err(e) => {
                    failure = Some(format!("line {line_no}: {}", describe(e)));
                    break;
                }
            },
        }
    }
    if let Some(done) = aggregator.flush() {
        print_aggregate(out, &done, &mut scratch)?;
    }
    match failure {
        Some(msg) => Err(Stop::Data(msg)),
        None => Ok(false),
    }
}

#[derive(Serialize)]
struct ShardLine<'a> {
    shard_id: &'a str,
    partition_key: &'a str,
    explicit_hash_key: &'a str,
    data: &'a str,
    user_records: usize,
}

fn agg_sharded(
    max_size: usize,
    shards: &PathBuf,
    file: &Option<PathBuf>,
    out: &mut impl Write,
) -> Result<bool, Stop> {
    let json = std::fs::read_to_string(shards)
        .map_err(|e| Stop::Input(format!("cannot read {}: {e}", shards.display())))?;
    let map = kinesis_agg::ShardMap::from_list_shards_json(&json)
        .map_err(|e| Stop::Input(format!("{}: {e}", shards.display())))?;
    if map.shards().is_empty() {
        return Err(Stop::Input(format!("{}: no open shards", shards.display())));
    }
    let mut reader = open(file)?;
    let mut aggregator = kinesis_agg::ShardedAggregator::with_limit(map, max_size)
        .map_err(|e| Stop::Input(format!("--max-size: {e}")))?;
    let mut scratch = String::new();
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut line_no = 0u64;
    let mut failure = None;
    let print = |out: &mut dyn Write, a: &kinesis_agg::ShardAggregate, scratch: &mut String| {
        scratch.clear();
        B64.encode_string(a.aggregate.data(), scratch);
        write_line(
            out,
            &ShardLine {
                shard_id: &a.shard_id,
                partition_key: a.aggregate.partition_key(),
                explicit_hash_key: &a.explicit_hash_key,
                data: scratch,
                user_records: a.aggregate.record_count(),
            },
        )
    };
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match parse_user_record(text, &mut data) {
            Err(msg) => {
                failure = Some(format!("line {line_no}: {msg}"));
                break;
            }
            Ok(rec) => match aggregator.add(&rec.0, &data, rec.1.as_deref()) {
                Ok(done) => {
                    for a in &done {
                        print(out, a, &mut scratch)?;
                    }
                }
                Err(e) => {
                    failure = Some(format!("line {line_no}: {}", describe(e)));
                    break;
                }
            },
        }
    }
    for a in aggregator.flush_all() {
        print(out, &a, &mut scratch)?;
    }
    match failure {
        Some(msg) => Err(Stop::Data(msg)),
        None => Ok(false),
    }
}

fn describe(e: Error) -> String {
    match e {
        Error::RecordTooLarge { size, limit } => {
            format!(
                "record too large: an aggregate holding only it counts {size} bytes, over the limit of {limit}"
            )
        }
        other => other.to_string(),
    }
}

fn parse_user_record(text: &[u8], data: &mut Vec<u8>) -> Result<(String, Option<String>), String> {
    let rec: InRecord = serde_json::from_slice(text).map_err(|e| format!("not a JSON user record: {e}"))?;
    let pk = rec.partition_key.ok_or("partition_key is missing")?;
    let b64 = rec.data.ok_or("data is missing")?;
    data.clear();
    B64.decode_vec(b64.as_bytes(), data)
        .map_err(|e| format!("data is not valid base64: {e}"))?;
    kinesis_agg::check_partition_key(&pk).map_err(|e| e.to_string())?;
    if let Some(e) = &rec.explicit_hash_key {
        kinesis_agg::check_explicit_hash_key(e).map_err(|e| e.to_string())?;
    }
    Ok((pk, rec.explicit_hash_key))
}

fn print_aggregate(
    out: &mut impl Write,
    a: &kinesis_agg::Aggregate,
    scratch: &mut String,
) -> Result<(), Stop> {
    scratch.clear();
    B64.encode_string(a.data(), scratch);
    write_line(
        out,
        &AggLine {
            partition_key: a.partition_key(),
            explicit_hash_key: a.explicit_hash_key(),
            data: scratch,
            user_records: a.record_count(),
        },
    )
}
