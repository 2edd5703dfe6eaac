//! The input shapes: Kinesis records (base64 lines, raw bytes, and the
//! Lambda, Firehose and get-records JSON documents) for `deagg` and
//! `inspect`, and user records (JSON lines) for `agg`.

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;

use clap::ValueEnum;
use kinesis_agg::KinesisRecord;
use serde::{Deserialize, Serialize};

use kinesis_agg::b64::{self, Padding};

use crate::{Stop, open};

#[derive(clap::Args)]
pub(crate) struct InputArgs {
    /// How the input holds records: one base64 record per line, the whole
    /// input as one record's raw bytes, a Lambda Kinesis event, a Firehose
    /// transformation event, `aws kinesis get-records` output, or JSON of any
    /// of those three (detected by shape). JSON inputs may hold several
    /// documents one after another.
    #[arg(long, value_enum, default_value_t = Input::Base64)]
    pub(crate) input: Input,
    /// Input file (standard input when absent).
    pub(crate) file: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub(crate) enum Input {
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

/// One Kinesis record from the input, with what the input says about it.
pub(crate) struct InRecord {
    pub(crate) blob: Vec<u8>,
    /// Where it came from, for messages: " (line 3)" or " (document 1)".
    pub(crate) place: String,
    pub(crate) partition_key: Option<String>,
    pub(crate) sequence_number: Option<String>,
}

impl InRecord {
    /// The record as the library's delivered-record metadata.
    pub(crate) fn outer(&self) -> KinesisRecord<'_> {
        KinesisRecord::new(&self.blob)
            .with_partition_key(self.partition_key.as_deref())
            .with_sequence_number(self.sequence_number.as_deref())
    }
}

/// The largest Kinesis record (10 MiB) in base64, with a CRLF: the longest
/// base64 input line accepted.
const MAX_BASE64_LINE: usize = kinesis_agg::MAX_LIMIT.div_ceil(3) * 4 + 2;

/// The longest `agg` input line accepted: a largest record's data in
/// base64, with room for keys and tags.
pub(crate) const MAX_JSON_LINE: usize = MAX_BASE64_LINE + (1 << 20);

/// Reads one line (through `\n`) into `line`, at most `max` bytes.
/// `Ok(false)` at the end of the input.
pub(crate) fn read_line(
    reader: &mut dyn BufRead,
    line: &mut Vec<u8>,
    max: usize,
    line_no: u64,
) -> Result<bool, Stop> {
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
/// record list), never the whole input, except that a JSON input that is a
/// regular file of at most [`JSON_IN_MEMORY`] bytes is read whole first
/// (serde_json parses text in memory several times faster than a stream,
/// which it reads a byte at a time); lines and raw input longer than the
/// largest Kinesis record needs are refused.
pub(crate) fn for_each_record(
    args: &InputArgs,
    mut each: impl FnMut(InRecord) -> Result<(), Stop>,
) -> Result<(), Stop> {
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
                let blob = b64::decode(text, Padding::Optional)
                    .map_err(|e| Stop::Input(format!("line {line_no}: not valid base64: {e}")))?;
                each(InRecord {
                    blob,
                    place: format!(" (line {line_no})"),
                    partition_key: None,
                    sequence_number: None,
                })?;
            }
        }
        shape if small_file(&args.file) => {
            let mut text = Vec::new();
            (&mut reader).take(JSON_IN_MEMORY + 1).read_to_end(&mut text)?;
            if text.len() as u64 > JSON_IN_MEMORY {
                // It grew since: streamed, from what was read on.
                let rest = BufReader::new(io::Cursor::new(text).chain(reader));
                return json::for_each_record(serde_json::Deserializer::from_reader(rest), shape, &mut each);
            }
            json::for_each_record(serde_json::Deserializer::from_slice(&text), shape, &mut each)
        }
        shape => json::for_each_record(serde_json::Deserializer::from_reader(reader), shape, &mut each),
    }
}

/// The largest JSON input file read whole before it is parsed (a Lambda
/// event is at most 6 MB, a get-records answer about 14 MB).
pub(crate) const JSON_IN_MEMORY: u64 = 64 << 20;

/// Whether `file` names a regular file of at most [`JSON_IN_MEMORY`]
/// bytes. Standard input, pipes and devices are streamed: they may never
/// end, and each document's records are given as they come.
fn small_file(file: &Option<PathBuf>) -> bool {
    file.as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.is_file() && m.len() <= JSON_IN_MEMORY)
}

/// The three JSON shapes, read one record at a time with serde's visitors
/// (from a stream, a document is never held whole).
mod json {
    use std::fmt;

    use serde::Deserialize;
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

    use super::{InRecord, Input};
    use kinesis_agg::b64::{self, Padding};

    use crate::Stop;

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
    pub(super) fn for_each_record<'de, R: serde_json::de::Read<'de>>(
        mut de: serde_json::Deserializer<R>,
        shape: Input,
        each: &mut dyn FnMut(InRecord) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let mut stop = None;
        for doc in 1.. {
            // Whitespace, then either the end or another document.
            if de.end().is_ok() {
                return Ok(());
            }
            let seed = Walk {
                shape,
                list: None,
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

    /// A document (`list` None), or its record list (`list` Some: whether
    /// it is a Firehose event's), read with `each` called per record.
    struct Walk<'e, 's> {
        shape: Input,
        list: Option<bool>,
        each: &'e mut dyn FnMut(InRecord) -> Result<(), Stop>,
        stop: &'s mut Option<Stop>,
    }

    impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            match self.list {
                None => d.deserialize_map(self),
                Some(_) => d.deserialize_seq(self),
            }
        }
    }

    impl<'de> Visitor<'de> for Walk<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self.list {
                None => "a Lambda Kinesis event, a Firehose event or get-records output",
                Some(_) => "a list of records",
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = false;
            let Walk {
                shape, each, stop, ..
            } = self;
            while let Some(key) = map.next_key::<String>()? {
                let list = matches!(
                    (key.as_str(), shape),
                    ("Records", Input::Lambda | Input::GetRecords | Input::Json)
                        | ("records", Input::Firehose | Input::Json)
                );
                if list && !seen {
                    seen = true;
                    map.next_value_seed(Walk {
                        shape,
                        list: Some(key == "records"),
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
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let firehose = self.list == Some(true);
            let mut i = 0usize;
            while let Some(el) = seq.next_element::<Element>()? {
                let rec = record(el, self.shape, firehose, i).map_err(de::Error::custom)?;
                if let Err(stop) = (self.each)(rec) {
                    *self.stop = Some(stop);
                    return Err(de::Error::custom("stopped"));
                }
                i += 1;
            }
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
        let blob = b64::decode(data.as_bytes(), Padding::Optional)
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

#[derive(Serialize, Deserialize)]
pub(crate) struct JsonTag {
    pub(crate) key: String,
    pub(crate) value: Option<String>,
}

/// When a plain record's data is the base64 *text* of a valid aggregated
/// record (what AWS CLI v1 stores for an `agg --output put-records`
/// document: it does not decode blob fields read from
/// `--cli-input-json`), the number of user records that text holds.
pub(crate) fn base64_text_of_aggregate(data: &[u8]) -> Option<usize> {
    // base64 of the magic's first three bytes, F3 89 9A, then of C2's top
    // six bits: every such text starts so, and no binary record does.
    let text = data.trim_ascii();
    if !text.starts_with(b"84maw") {
        return None;
    }
    let blob = b64::decode(text, Padding::Optional).ok()?;
    match kinesis_agg::deaggregate(&blob) {
        Ok(kinesis_agg::Deaggregated::Aggregated(a)) => Some(a.len()),
        _ => None,
    }
}

/// What `deagg` and `inspect` say about such a record: what happened and
/// how to get the user records back.
pub(crate) fn base64_text_note(records: usize) -> String {
    format!(
        "its data is the base64 text of an aggregated record of {records} user records, not the record \
         itself: it was put with its data base64-encoded twice (AWS CLI v1 stores the Data of \
         put-records --cli-input-json as its text; use AWS CLI v2 or kinesis-agg put). To recover \
         them, decode the data once more and deaggregate that: the data is a base64 line for \
         `kinesis-agg deagg` (jq -r .data | base64 -d)"
    )
}

// ---------------------------------------------------------------------------
// User records for agg (and put)
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

/// One parsed `agg` input line (its data decoded apart).
pub(crate) struct InputRecord {
    pub(crate) partition_key: String,
    pub(crate) explicit_hash_key: Option<String>,
    pub(crate) tags: Vec<JsonTag>,
}

/// Parses one `agg` input line, its data decoded into `data`.
pub(crate) fn parse_user_record(text: &[u8], data: &mut Vec<u8>) -> Result<InputRecord, String> {
    let rec: JsonUserRecord =
        serde_json::from_slice(text).map_err(|e| format!("not a JSON user record: {e}"))?;
    let pk = rec.partition_key.ok_or("partition_key is missing")?;
    let text64 = rec.data.ok_or("data is missing")?;
    data.clear();
    b64::decode_append(text64.as_bytes(), Padding::Optional, data)
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
