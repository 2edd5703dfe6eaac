//! `kinesis-agg`: deaggregate, aggregate and inspect KPL records from a
//! terminal.
//!
//! Exit status: 0 on success, 1 when some input data was bad (each case is
//! reported on stderr), 2 for usage errors and unreadable input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use clap::{Parser, Subcommand, ValueEnum};
use kinesis_agg::{
    Batch, Deaggregated, DeliveredRecord, Error, KinesisRecord, OnInvalid, Options, PlainReason,
    PutRecordsBatcher, Record, RecordAggregator, Tag,
};
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
line, each with at most 500 entries and 5 MiB of data plus partition keys.
An aggregate is closed only when the next record does not fit.

Exit status: 0; 1 at the first bad line (the aggregates of all earlier lines are
written first); 2 for usage errors and unreadable input.

Examples:
  printf '%s\\n' '{\"partition_key\":\"a\",\"data\":\"aGVsbG8=\"}' '{\"partition_key\":\"b\",\"data\":\"d29ybGQ=\"}' \\
    | kinesis-agg agg --max-size 51200
  kinesis-agg agg --shards shards.json --output put-records --stream-name my-stream records.jsonl")]
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
}

#[derive(clap::Args)]
struct InputArgs {
    /// How the input holds records: one base64 record per line, the whole
    /// input as one record's raw bytes, a Lambda Kinesis event, a Firehose
    /// transformation event, `aws kinesis get-records` output, or JSON of any
    /// of those three (detected by shape). JSON inputs may hold several
    /// documents one after another.
    #[arg(long, value_enum, default_value_t = Input::Base64)]
    input: Input,
    /// Input file (standard input when absent).
    file: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Input {
    /// One base64-encoded record per non-blank line.
    Base64,
    /// The whole input is one record.
    Raw,
    /// Lambda Kinesis event: {"Records": [{"kinesis": {...}}]}.
    Lambda,
    /// Firehose transformation event: {"records": [{"recordId", "data", "kinesisRecordMetadata"}]}.
    Firehose,
    /// What `aws kinesis get-records` prints: {"Records": [{"SequenceNumber", "Data", "PartitionKey"}]}.
    GetRecords,
    /// Any of the three JSON shapes, detected per document.
    Json,
}

/// `--on-invalid`: the library's [`OnInvalid`], as clap lists it.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InvalidPolicy {
    /// Report on stderr, print nothing for it, exit 1 at the end.
    Error,
    /// Print it as a pass-through record.
    Passthrough,
}

impl From<InvalidPolicy> for OnInvalid {
    fn from(p: InvalidPolicy) -> Self {
        match p {
            InvalidPolicy::Error => OnInvalid::Error,
            InvalidPolicy::Passthrough => OnInvalid::Passthrough,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// One JSON line per aggregate.
    Aggregates,
    /// One put-records request per line.
    PutRecords,
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

/// A spinner on stderr when it is a terminal; nothing otherwise.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(what: &'static str) -> Self {
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
    fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
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
        } => deagg(
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
                Output::PutRecords => Sink::PutRecords {
                    stream: stream_name.unwrap_or_default(),
                    entries: Vec::new(),
                    batcher: PutRecordsBatcher::new(),
                },
            };
            agg(max_size, shards.as_ref(), sink, &file, &mut out)
        }
        Command::Inspect { input, json } => inspect(&input, json, &mut out),
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

fn write_line(out: &mut dyn Write, value: &impl Serialize) -> Result<(), Stop> {
    serde_json::to_writer(&mut *out, value).map_err(|e| Stop::Input(format!("cannot write output: {e}")))?;
    out.write_all(b"\n")?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Reading input records
// ---------------------------------------------------------------------------

/// One Kinesis record from the input, with what the input says about it.
struct InRecord {
    blob: Vec<u8>,
    /// Where it came from, for messages: " (line 3)" or " (document 1)".
    place: String,
    partition_key: Option<String>,
    sequence_number: Option<String>,
}

impl InRecord {
    /// The record as the library's delivered-record metadata.
    fn outer(&self) -> KinesisRecord<'_> {
        KinesisRecord {
            partition_key: self.partition_key.as_deref(),
            sequence_number: self.sequence_number.as_deref(),
            ..KinesisRecord::new(&self.blob)
        }
    }
}

/// The largest Kinesis record (10 MiB) in base64, with a CRLF: the longest
/// base64 input line accepted.
const MAX_BASE64_LINE: usize = kinesis_agg::MAX_LIMIT.div_ceil(3) * 4 + 2;

/// The longest `agg` input line accepted: a largest record's data in
/// base64, with room for keys and tags.
const MAX_JSON_LINE: usize = MAX_BASE64_LINE + (1 << 20);

/// Reads one line (through `\n`) into `line`, at most `max` bytes.
/// `Ok(false)` at the end of the input.
fn read_line(reader: &mut dyn BufRead, line: &mut Vec<u8>, max: usize, line_no: u64) -> Result<bool, Stop> {
    line.clear();
    let n = reader.take(max as u64 + 1).read_until(b'\n', line)?;
    if n > max {
        return Err(Stop::Input(format!(
            "line {line_no} is longer than {max} bytes, more than the largest Kinesis record needs"
        )));
    }
    Ok(n > 0)
}

/// Calls `each` with every input record, in order, streaming: base64 lines
/// one at a time, JSON documents one record at a time. What is held at
/// once is one input record (a line, or one element of a JSON document's
/// record list), never the whole input; lines and raw input longer than the
/// largest Kinesis record needs are refused.
fn for_each_record(args: &InputArgs, mut each: impl FnMut(InRecord) -> Result<(), Stop>) -> Result<(), Stop> {
    let mut reader = open(&args.file)?;
    match args.input {
        Input::Raw => {
            let mut blob = Vec::new();
            let limit = kinesis_agg::MAX_LIMIT;
            reader.take(limit as u64 + 1).read_to_end(&mut blob)?;
            if blob.len() > limit {
                return Err(Stop::Input(format!(
                    "raw input is longer than {limit} bytes, the largest Kinesis record"
                )));
            }
            each(InRecord {
                blob,
                place: String::new(),
                partition_key: None,
                sequence_number: None,
            })
        }
        Input::Base64 => {
            let mut line = Vec::new();
            let mut line_no = 0u64;
            loop {
                if !read_line(&mut reader, &mut line, MAX_BASE64_LINE, line_no + 1)? {
                    return Ok(());
                }
                line_no += 1;
                let text = line.trim_ascii();
                if text.is_empty() {
                    continue;
                }
                let blob = B64
                    .decode(text)
                    .map_err(|e| Stop::Input(format!("line {line_no}: not valid base64: {e}")))?;
                each(InRecord {
                    blob,
                    place: format!(" (line {line_no})"),
                    partition_key: None,
                    sequence_number: None,
                })?;
            }
        }
        shape => json::for_each_record(reader, shape, &mut each),
    }
}

/// The three JSON shapes, read one record at a time with serde's visitors
/// (a document is never held whole).
mod json {
    use std::fmt;
    use std::io::BufRead;

    use serde::Deserialize;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{B64, Engine, InRecord, Input, Stop};

    /// One element of a record list, in any of the three shapes.
    #[derive(Deserialize)]
    #[allow(non_snake_case)]
    struct Element {
        /// Lambda Kinesis event.
        kinesis: Option<Lambda>,
        /// get-records.
        Data: Option<String>,
        PartitionKey: Option<String>,
        SequenceNumber: Option<String>,
        /// Firehose.
        data: Option<String>,
        #[serde(rename = "kinesisRecordMetadata")]
        metadata: Option<FirehoseMeta>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lambda {
        data: Option<String>,
        partition_key: Option<String>,
        sequence_number: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct FirehoseMeta {
        partition_key: Option<String>,
        sequence_number: Option<String>,
    }

    /// Reads every document of the input, calling `each` per record.
    pub(super) fn for_each_record(
        reader: Box<dyn BufRead>,
        shape: Input,
        each: &mut dyn FnMut(InRecord) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let mut de = serde_json::Deserializer::from_reader(reader);
        let mut stop = None;
        for doc in 1.. {
            // Whitespace, then either the end or another document.
            if de.end().is_ok() {
                return Ok(());
            }
            let seed = Document {
                shape,
                doc,
                each: &mut *each,
                stop: &mut stop,
            };
            if let Err(e) = seed.deserialize(&mut de) {
                return Err(stop.take().unwrap_or_else(|| {
                    let what = if e.is_data() { "" } else { "not JSON: " };
                    Stop::Input(format!("document {doc}: {what}{e}"))
                }));
            }
        }
        Ok(())
    }

    struct Document<'e, 's> {
        shape: Input,
        doc: usize,
        each: &'e mut dyn FnMut(InRecord) -> Result<(), Stop>,
        stop: &'s mut Option<Stop>,
    }

    impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Document<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a Lambda Kinesis event, a Firehose event or get-records output")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = false;
            let Document {
                shape,
                doc,
                each,
                stop,
            } = self;
            while let Some(key) = map.next_key::<String>()? {
                let list = matches!(
                    (key.as_str(), shape),
                    ("Records", Input::Lambda | Input::GetRecords | Input::Json)
                        | ("records", Input::Firehose | Input::Json)
                );
                if list && !seen {
                    seen = true;
                    let firehose = key == "records";
                    map.next_value_seed(List {
                        shape,
                        firehose,
                        doc,
                        each: &mut *each,
                        stop: &mut *stop,
                    })?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if !seen {
                return Err(de::Error::custom(match shape {
                    Input::Lambda => "a Lambda Kinesis event needs \"Records\"",
                    Input::GetRecords => "get-records output needs \"Records\"",
                    Input::Firehose => "a Firehose event needs \"records\"",
                    _ => "not a Lambda Kinesis event, a Firehose event or get-records output",
                }));
            }
            Ok(())
        }
    }

    struct List<'e, 's> {
        shape: Input,
        firehose: bool,
        doc: usize,
        each: &'e mut dyn FnMut(InRecord) -> Result<(), Stop>,
        stop: &'s mut Option<Stop>,
    }

    impl<'de> DeserializeSeed<'de> for List<'_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for List<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut i = 0usize;
            while let Some(el) = seq.next_element::<Element>()? {
                let rec = record(el, self.shape, self.firehose, i).map_err(de::Error::custom)?;
                if let Err(stop) = (self.each)(rec) {
                    *self.stop = Some(stop);
                    return Err(de::Error::custom("stopped"));
                }
                i += 1;
            }
            let _ = self.doc;
            Ok(())
        }
    }

    /// One element as an input record, checked against the shape asked for
    /// (`json`: the element's own fields decide).
    fn record(el: Element, shape: Input, firehose: bool, i: usize) -> Result<InRecord, String> {
        let (data, pk, seq) = if firehose {
            let m = el.metadata;
            let (pk, seq) = m.map_or((None, None), |m| (m.partition_key, m.sequence_number));
            (el.data, pk, seq)
        } else if let Some(k) = el.kinesis {
            if shape == Input::GetRecords {
                return Err(format!("record {i}: a Lambda event record in get-records output"));
            }
            (k.data, k.partition_key, k.sequence_number)
        } else if shape == Input::Lambda {
            return Err(format!("record {i}: no \"kinesis\""));
        } else if el.Data.is_some() || el.SequenceNumber.is_some() {
            (el.Data, el.PartitionKey, el.SequenceNumber)
        } else {
            return Err(format!(
                "record {i}: not a Lambda Kinesis event, a Firehose event or get-records record"
            ));
        };
        let data = data.ok_or_else(|| format!("record {i}: no data"))?;
        let blob = B64
            .decode(data.as_bytes())
            .map_err(|e| format!("record {i}: data is not valid base64: {e}"))?;
        Ok(InRecord {
            blob,
            place: match &seq {
                Some(q) => format!(" (sequence number {q})"),
                None => format!(" (record {i} of its document)"),
            },
            partition_key: pk,
            sequence_number: seq,
        })
    }
}

// ---------------------------------------------------------------------------
// deagg
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct UserLine<'a> {
    record: u64,
    aggregated: bool,
    sub_sequence_number: Option<u64>,
    partition_key: Option<&'a str>,
    explicit_hash_key: Option<&'a str>,
    data: &'a str,
    sequence_number: Option<&'a str>,
    tags: TagList<'a>,
}

/// A user record's tags as a JSON list of `{key, value}`.
struct TagList<'a>(kinesis_agg::Tags<'a>);

impl Serialize for TagList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.map(|t| JsonTag {
            key: t.key.to_owned(),
            value: t.value.map(str::to_owned),
        }))
    }
}

#[derive(Serialize, Deserialize)]
struct JsonTag {
    key: String,
    value: Option<String>,
}

/// Prints one user record as its JSON line; `text` is scratch space for
/// the base64 of its data.
fn print_user(out: &mut dyn Write, r: &DeliveredRecord<'_>, text: &mut String) -> Result<(), Stop> {
    text.clear();
    B64.encode_string(r.data, text);
    write_line(
        out,
        &UserLine {
            record: r.record as u64,
            aggregated: r.aggregated,
            sub_sequence_number: r.sub_sequence_number,
            partition_key: r.partition_key,
            explicit_hash_key: r.explicit_hash_key,
            data: text,
            sequence_number: r.outer.sequence_number,
            tags: TagList(r.tags),
        },
    )
}

/// Returns `Ok(true)` when some record was reported as invalid or
/// discarded.
fn deagg(
    args: &InputArgs,
    on_invalid: OnInvalid,
    shard: Option<(kinesis_agg::HashKeyRange, bool)>,
    out: &mut impl Write,
) -> Result<bool, Stop> {
    let mut any_invalid = false;
    let mut text = String::new();
    let mut index = 0usize;
    let progress = Progress::new("records");
    for_each_record(args, |rec| {
        let i = index;
        index += 1;
        progress.inc();
        let outer = rec.outer();
        let Some((range, lenient)) = shard else {
            return outer.try_for_each_user_record(i, Options::new(), on_invalid, |r| match r {
                Ok(user) => print_user(out, &user, &mut text),
                Err(broken) => {
                    any_invalid = true;
                    eprintln!(
                        "kinesis-agg: record {i}{}: invalid aggregated record: {}",
                        rec.place, broken.error
                    );
                    Ok(())
                }
            });
        };
        // The KCL's rule for records read from one shard.
        match kinesis_agg::deaggregate(&rec.blob) {
            Ok(Deaggregated::Aggregated(agg)) => {
                let mut print = |u| print_user(out, &DeliveredRecord::aggregated(i, outer, u), &mut text);
                if !lenient {
                    match agg.check_range(range) {
                        Ok(()) => agg.records().try_for_each(&mut print)?,
                        Err(o) => {
                            any_invalid = true;
                            eprintln!(
                                "kinesis-agg: record {i}{}: aggregate of {} user records discarded by the KCL rule: {o} ({range})",
                                rec.place,
                                agg.len()
                            );
                        }
                    }
                } else {
                    let mut kept = agg.records_in_range(range);
                    kept.by_ref().try_for_each(&mut print)?;
                    if kept.outside() > 0 {
                        eprintln!(
                            "kinesis-agg: record {i}{}: kept {} user records, {} outside the shard's range ({range})",
                            rec.place,
                            agg.len() - kept.outside(),
                            kept.outside()
                        );
                    }
                }
            }
            Ok(Deaggregated::Plain { .. }) => print_user(out, &DeliveredRecord::plain(i, outer), &mut text)?,
            Err(e) => match on_invalid {
                OnInvalid::Error => {
                    any_invalid = true;
                    eprintln!(
                        "kinesis-agg: record {i}{}: invalid aggregated record: {e}",
                        rec.place
                    );
                }
                OnInvalid::Passthrough => print_user(out, &DeliveredRecord::plain(i, outer), &mut text)?,
            },
        }
        Ok(())
    })?;
    Ok(any_invalid)
}

// ---------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------

#[derive(Serialize, Default)]
struct Inspection<'a> {
    record: u64,
    sequence_number: Option<&'a str>,
    length: usize,
    aggregated: bool,
    /// Why not aggregated: "no magic", "too short", "checksum mismatch".
    reason: Option<&'static str>,
    magic: bool,
    checksum: Option<&'static str>,
    partition_keys: Option<usize>,
    explicit_hash_keys: Option<usize>,
    user_records: Option<usize>,
    data_min: Option<usize>,
    data_max: Option<usize>,
    data_total: Option<usize>,
    overhead: Option<usize>,
    error: Option<String>,
    error_offset: Option<usize>,
}

fn inspect(args: &InputArgs, json: bool, out: &mut impl Write) -> Result<bool, Stop> {
    let mut any_invalid = false;
    let mut index = 0u64;
    let progress = Progress::new("records");
    for_each_record(args, |rec| {
        progress.inc();
        let blob = &rec.blob;
        let mut ins = Inspection {
            record: index,
            sequence_number: rec.sequence_number.as_deref(),
            length: blob.len(),
            magic: blob.starts_with(&kinesis_agg::MAGIC),
            ..Inspection::default()
        };
        index += 1;
        // One read: the envelope verdict and the body in one pass, one MD5.
        match kinesis_agg::deaggregate(blob) {
            Ok(Deaggregated::Plain { reason, .. }) => {
                ins.reason = Some(match reason {
                    PlainReason::NoMagic => "no magic",
                    PlainReason::TooShort => "too short (20 bytes or fewer)",
                    _ => "checksum mismatch",
                });
                ins.checksum = matches!(reason, PlainReason::ChecksumMismatch).then_some("mismatch");
            }
            Ok(Deaggregated::Aggregated(a)) => {
                ins.checksum = Some("ok");
                ins.aggregated = true;
                ins.partition_keys = Some(a.partition_keys().len());
                ins.explicit_hash_keys = Some(a.explicit_hash_keys().len());
                ins.user_records = Some(a.len());
                let sizes = a.records().map(|r| r.data.len());
                ins.data_min = sizes.clone().min();
                ins.data_max = sizes.clone().max();
                let total: usize = sizes.sum();
                ins.data_total = Some(total);
                ins.overhead = Some(blob.len() - total);
            }
            // Default options: an error means the checksum held and the body did not.
            Err(e) => {
                ins.checksum = Some("ok");
                any_invalid = true;
                ins.error = Some(e.to_string());
                ins.error_offset = e.offset();
            }
        }
        if json {
            write_line(out, &ins)
        } else {
            describe_record(out, &ins, &rec.place).map_err(Stop::from)
        }
    })?;
    Ok(any_invalid)
}

fn describe_record(out: &mut dyn Write, i: &Inspection<'_>, place: &str) -> io::Result<()> {
    let seq = i
        .sequence_number
        .map(|s| format!(", sequence number {s}"))
        .unwrap_or_default();
    match (&i.error, i.aggregated) {
        (Some(e), _) => writeln!(
            out,
            "record {}{place}: BROKEN aggregated record, {} bytes{seq}: magic ok, checksum ok, body invalid: {e}",
            i.record, i.length
        ),
        (None, true) => {
            writeln!(
                out,
                "record {}{place}: aggregated, {} bytes{seq}: magic ok, length ok, checksum ok",
                i.record, i.length
            )?;
            writeln!(
                out,
                "  tables: {} partition keys, {} explicit hash keys; {} user records",
                i.partition_keys.unwrap_or(0),
                i.explicit_hash_keys.unwrap_or(0),
                i.user_records.unwrap_or(0)
            )?;
            let overhead = i.overhead.unwrap_or(0);
            writeln!(
                out,
                "  data: smallest {}, largest {}, total {} bytes; overhead {} bytes ({:.1}%)",
                i.data_min.map_or("-".into(), |v| v.to_string()),
                i.data_max.map_or("-".into(), |v| v.to_string()),
                i.data_total.unwrap_or(0),
                overhead,
                100.0 * overhead as f64 / i.length.max(1) as f64
            )
        }
        (None, false) => writeln!(
            out,
            "record {}{place}: not aggregated, {} bytes{seq}: {}",
            i.record,
            i.length,
            i.reason.unwrap_or("")
        ),
    }
}

// ---------------------------------------------------------------------------
// agg
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct JsonUserRecord {
    partition_key: Option<String>,
    #[serde(default)]
    explicit_hash_key: Option<String>,
    data: Option<String>,
    #[serde(default)]
    tags: Vec<JsonTag>,
}

/// One parsed input line.
struct InputRecord {
    partition_key: String,
    explicit_hash_key: Option<String>,
    tags: Vec<JsonTag>,
}

#[derive(Serialize)]
struct AggLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<&'a str>,
    partition_key: &'a str,
    explicit_hash_key: Option<&'a str>,
    data: &'a str,
    user_records: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutEntry {
    data: String,
    partition_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    explicit_hash_key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutRequest<'a> {
    stream_name: &'a str,
    records: &'a [PutEntry],
}

/// Where finished aggregates go.
enum Sink {
    Lines,
    PutRecords {
        stream: String,
        entries: Vec<PutEntry>,
        batcher: PutRecordsBatcher,
    },
}

impl Sink {
    fn emit(
        &mut self,
        out: &mut dyn Write,
        shard_id: Option<&str>,
        a: &kinesis_agg::Aggregate,
        ehk: Option<&str>,
    ) -> Result<(), Stop> {
        let data = B64.encode(a.data());
        match self {
            Sink::Lines => write_line(
                out,
                &AggLine {
                    shard_id,
                    partition_key: a.partition_key(),
                    explicit_hash_key: ehk,
                    data: &data,
                    user_records: a.record_count(),
                },
            ),
            Sink::PutRecords { batcher, .. } => {
                if batcher.push(a.counted_len()) == Batch::SendFirst {
                    self.flush(out)?;
                }
                if let Sink::PutRecords { entries, .. } = self {
                    entries.push(PutEntry {
                        data,
                        partition_key: a.partition_key().to_owned(),
                        explicit_hash_key: ehk.map(str::to_owned),
                    });
                }
                Ok(())
            }
        }
    }

    /// A shard's aggregate, put with the explicit hash key that routes it.
    fn emit_shard(&mut self, out: &mut dyn Write, d: &kinesis_agg::ShardAggregate) -> Result<(), Stop> {
        self.emit(
            out,
            Some(d.shard_id()),
            d.aggregate(),
            Some(d.explicit_hash_key()),
        )
    }

    fn flush(&mut self, out: &mut dyn Write) -> Result<(), Stop> {
        if let Sink::PutRecords { stream, entries, .. } = self
            && !entries.is_empty()
        {
            write_line(
                out,
                &PutRequest {
                    stream_name: stream,
                    records: entries,
                },
            )?;
            entries.clear();
        }
        Ok(())
    }
}

/// Either aggregator, behind one interface.
enum Aggregators {
    Plain(RecordAggregator),
    Sharded(Box<kinesis_agg::ShardedAggregator>),
}

fn agg(
    max_size: usize,
    shards: Option<&PathBuf>,
    mut sink: Sink,
    file: &Option<PathBuf>,
    out: &mut impl Write,
) -> Result<bool, Stop> {
    let mut aggregators = match shards {
        None => Aggregators::Plain(
            RecordAggregator::with_limit(max_size).map_err(|e| Stop::Input(format!("--max-size: {e}")))?,
        ),
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .map_err(|e| Stop::Input(format!("cannot read {}: {e}", path.display())))?;
            let map = kinesis_agg::ShardMap::from_list_shards_json(&json)
                .map_err(|e| Stop::Input(format!("{}: {e}", path.display())))?;
            if map.shards().is_empty() {
                return Err(Stop::Input(format!("{}: no open shards", path.display())));
            }
            Aggregators::Sharded(Box::new(
                kinesis_agg::ShardedAggregator::with_limit(map, max_size)
                    .map_err(|e| Stop::Input(format!("--max-size: {e}")))?,
            ))
        }
    };
    let mut reader = open(file)?;
    let mut line = Vec::new();
    let mut data = Vec::new();
    let mut line_no = 0u64;
    let mut failure = None;
    let progress = Progress::new("user records");
    loop {
        match read_line(&mut reader, &mut line, MAX_JSON_LINE, line_no + 1) {
            Ok(true) => {}
            Ok(false) => break,
            Err(Stop::Input(msg)) => {
                failure = Some(msg);
                break;
            }
            Err(stop) => return Err(stop),
        }
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        progress.inc();
        let input = match parse_user_record(text, &mut data) {
            Ok(r) => r,
            Err(msg) => {
                failure = Some(format!("line {line_no}: {msg}"));
                break;
            }
        };
        // No allocation for the usual record without tags.
        let tags: Vec<Tag<'_>> = input
            .tags
            .iter()
            .map(|t| Tag {
                key: &t.key,
                value: t.value.as_deref(),
            })
            .collect();
        let record = Record::new(&input.partition_key, &data)
            .with_optional_explicit_hash_key(input.explicit_hash_key.as_deref())
            .with_tags(&tags);
        let added = match &mut aggregators {
            Aggregators::Plain(a) => a.add(record).map(|done| {
                if let Some(done) = done {
                    let ehk = done.explicit_hash_key().map(str::to_owned);
                    sink.emit(out, None, &done, ehk.as_deref())?;
                    a.recycle(done);
                }
                Ok::<(), Stop>(())
            }),
            Aggregators::Sharded(s) => s.add(record).map(|done| {
                for d in done {
                    sink.emit_shard(out, &d)?;
                    s.recycle(d);
                }
                Ok::<(), Stop>(())
            }),
        };
        match added {
            Ok(written) => written?,
            Err(e) => {
                failure = Some(format!("line {line_no}: {}", describe(e)));
                break;
            }
        }
    }
    match &mut aggregators {
        Aggregators::Plain(a) => {
            if let Some(done) = a.finish() {
                let ehk = done.explicit_hash_key().map(str::to_owned);
                sink.emit(out, None, &done, ehk.as_deref())?;
            }
        }
        Aggregators::Sharded(s) => {
            for d in s.finish_all() {
                sink.emit_shard(out, &d)?;
            }
        }
    }
    sink.flush(out)?;
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

fn parse_user_record(text: &[u8], data: &mut Vec<u8>) -> Result<InputRecord, String> {
    let rec: JsonUserRecord =
        serde_json::from_slice(text).map_err(|e| format!("not a JSON user record: {e}"))?;
    let pk = rec.partition_key.ok_or("partition_key is missing")?;
    let b64 = rec.data.ok_or("data is missing")?;
    data.clear();
    B64.decode_vec(b64.as_bytes(), data)
        .map_err(|e| format!("data is not valid base64: {e}"))?;
    kinesis_agg::check_partition_key(&pk).map_err(|e| format!("partition_key: {e}"))?;
    if let Some(e) = &rec.explicit_hash_key {
        kinesis_agg::check_explicit_hash_key(e).map_err(|e| format!("explicit_hash_key: {e}"))?;
    }
    Ok(InputRecord {
        partition_key: pk,
        explicit_hash_key: rec.explicit_hash_key,
        tags: rec.tags,
    })
}
