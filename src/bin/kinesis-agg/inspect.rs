//! `inspect`: what each input record is, and why.

use std::io::{self, Write};

use kinesis_agg::{Deaggregated, PlainReason};
use serde::Serialize;

use crate::input::{InputArgs, base64_text_note, base64_text_of_aggregate, for_each_record};
use crate::{Progress, Stop, write_line};

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
    /// A plain record whose data is the base64 text of an aggregated
    /// record: that record's user records.
    base64_text_of_aggregate: Option<usize>,
}

pub(crate) fn inspect(args: &InputArgs, json: bool, out: &mut impl Write) -> Result<bool, Stop> {
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
                ins.base64_text_of_aggregate = base64_text_of_aggregate(blob);
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
        (None, false) => {
            writeln!(
                out,
                "record {}{place}: not aggregated, {} bytes{seq}: {}",
                i.record,
                i.length,
                i.reason.unwrap_or("")
            )?;
            match i.base64_text_of_aggregate {
                Some(n) => writeln!(out, "  {}", base64_text_note(n)),
                None => Ok(()),
            }
        }
    }
}
