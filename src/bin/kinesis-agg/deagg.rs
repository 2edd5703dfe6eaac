//! `deagg`: Kinesis records in, user records out, one JSON line each.

use std::io::Write;

use clap::ValueEnum;
use kinesis_agg::{Deaggregated, DeliveredRecord, OnInvalid, Options};
use serde::Serialize;

use crate::input::{
    InRecord, InputArgs, JsonTag, base64_text_note, base64_text_of_aggregate, for_each_record,
};
use crate::{Progress, Stop, write_line};

/// `--on-invalid`: the library's [`OnInvalid`], as clap lists it.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InvalidPolicy {
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
    /// `tail` only: the shard the record was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<&'a str>,
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

/// Prints one user record as its JSON line; `text` is scratch space for
/// the base64 of its data.
pub(crate) fn print_user(
    out: &mut dyn Write,
    r: &DeliveredRecord<'_>,
    text: &mut String,
) -> Result<(), Stop> {
    print_user_in(out, r, text, None)
}

/// [`print_user`] with the shard the record was read from.
pub(crate) fn print_user_in(
    out: &mut dyn Write,
    r: &DeliveredRecord<'_>,
    text: &mut String,
    shard_id: Option<&str>,
) -> Result<(), Stop> {
    text.clear();
    kinesis_agg::b64::encode_append(r.data, text);
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
            shard_id,
        },
    )
}

/// Records read and not yet printed: their checksums are verified together
/// (the library's `Options::verify_all`, MD5s side by side) before each is
/// printed in turn. A batch holds at most this many records, or this many
/// bytes.
const BATCH_RECORDS: usize = 64;
const BATCH_BYTES: usize = 8 << 20;

/// Prints user records of the records read, a batch at a time.
struct Printer<'o, W: Write> {
    out: &'o mut W,
    on_invalid: OnInvalid,
    shard: Option<(kinesis_agg::HashKeyRange, bool)>,
    text: String,
    any_invalid: bool,
    batch: Vec<(usize, InRecord)>,
    bytes: usize,
}

impl<W: Write> Printer<'_, W> {
    fn push(&mut self, i: usize, rec: InRecord) -> Result<(), Stop> {
        self.bytes += rec.blob.len();
        self.batch.push((i, rec));
        if self.batch.len() >= BATCH_RECORDS || self.bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Stop> {
        let batch = std::mem::take(&mut self.batch);
        self.bytes = 0;
        let blobs: Vec<&[u8]> = batch.iter().map(|(_, r)| r.blob.as_slice()).collect();
        let verified = Options::new().verify_all(&blobs);
        for ((i, rec), v) in batch.iter().zip(&verified) {
            self.print(*i, rec, v)?;
        }
        Ok(())
    }

    /// Prints the user records of `rec` (at `i` in the input), whose
    /// envelope `v` holds.
    fn print(&mut self, i: usize, rec: &InRecord, v: &kinesis_agg::Verified<'_>) -> Result<(), Stop> {
        let outer = rec.outer();
        let (out, text) = (&mut *self.out, &mut self.text);
        match v.deaggregate() {
            Ok(Deaggregated::Aggregated(agg)) => {
                let mut print = |u| print_user(out, &DeliveredRecord::aggregated(i, outer, u), text);
                match self.shard {
                    None => agg.records().try_for_each(&mut print)?,
                    // The KCL's rule for records read from one shard.
                    Some((range, false)) => match agg.check_range(range) {
                        Ok(()) => agg.records().try_for_each(&mut print)?,
                        Err(o) => {
                            self.any_invalid = true;
                            eprintln!(
                                "kinesis-agg: record {i}{}: aggregate of {} user records discarded by the KCL rule: {o} ({range})",
                                rec.place,
                                agg.len()
                            );
                        }
                    },
                    Some((range, true)) => {
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
            }
            Ok(Deaggregated::Plain { .. }) => print_user(out, &DeliveredRecord::plain(i, outer), text)?,
            Err(e) => match self.on_invalid {
                OnInvalid::Error => {
                    self.any_invalid = true;
                    eprintln!(
                        "kinesis-agg: record {i}{}: invalid aggregated record: {e}",
                        rec.place
                    );
                }
                OnInvalid::Passthrough => print_user(out, &DeliveredRecord::plain(i, outer), text)?,
            },
        }
        Ok(())
    }
}

/// Returns `Ok(true)` when some record was reported as invalid or
/// discarded. Records are read in batches whose checksums are verified
/// together; what was read before a bad input line is printed before the
/// error stops the command, as when they were read one by one.
pub(crate) fn deagg(
    args: &InputArgs,
    on_invalid: OnInvalid,
    shard: Option<(kinesis_agg::HashKeyRange, bool)>,
    out: &mut impl Write,
) -> Result<bool, Stop> {
    let mut printer = Printer {
        out,
        on_invalid,
        shard,
        text: String::new(),
        any_invalid: false,
        batch: Vec::with_capacity(BATCH_RECORDS),
        bytes: 0,
    };
    let mut index = 0usize;
    let progress = Progress::new("records");
    let read = for_each_record(args, |rec| {
        let i = index;
        index += 1;
        progress.inc();
        if let Some(n) = base64_text_of_aggregate(&rec.blob) {
            eprintln!(
                "kinesis-agg: record {i}{}: not aggregated: {}",
                rec.place,
                base64_text_note(n)
            );
        }
        printer.push(i, rec)
    });
    printer.flush()?;
    read?;
    Ok(printer.any_invalid)
}
