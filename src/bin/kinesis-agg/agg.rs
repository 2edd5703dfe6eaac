//! `agg`: user records (JSON lines) in, aggregates or put-records
//! requests out.

use std::io::Write;
use std::path::PathBuf;

use clap::ValueEnum;
use kinesis_agg::{Batch, Error, PutRecordsBatcher, Record, RecordAggregator, Tag};
use serde::Serialize;

use crate::input::{MAX_JSON_LINE, parse_user_record, read_line};
use crate::{Progress, Stop, open, write_line};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// One JSON line per aggregate.
    Aggregates,
    /// One put-records request per line.
    PutRecords,
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
pub(crate) struct PutEntry {
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
pub(crate) enum Sink {
    Lines,
    PutRecords {
        stream: String,
        entries: Vec<PutEntry>,
        batcher: PutRecordsBatcher,
    },
}

impl Sink {
    /// put-records requests naming `stream`.
    pub(crate) fn put_records(stream: String) -> Self {
        Sink::PutRecords {
            stream,
            entries: Vec::new(),
            batcher: PutRecordsBatcher::new(),
        }
    }

    fn emit(
        &mut self,
        out: &mut dyn Write,
        shard_id: Option<&str>,
        a: &kinesis_agg::Aggregate,
        ehk: Option<&str>,
    ) -> Result<(), Stop> {
        let data = kinesis_agg::b64::encode(a.data());
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

pub(crate) fn agg(
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

pub(crate) fn describe(e: Error) -> String {
    match e {
        Error::RecordTooLarge { size, limit } => {
            format!(
                "record too large: an aggregate holding only it counts {size} bytes, over the limit of {limit}"
            )
        }
        other => other.to_string(),
    }
}
