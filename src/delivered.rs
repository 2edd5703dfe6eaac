//! User records as a consumer receives them: each with the metadata of the
//! Kinesis record it came in. One type for every source (a Lambda event, a
//! Firehose event, GetRecords through the SDK, the CLI's inputs), so that
//! code handling user records does not depend on where they came from.

use core::fmt;

#[cfg(feature = "alloc")]
use crate::decode::{Deaggregated, Options, Verified};
use crate::decode::{Tags, UserRecord};
use crate::error::Error;

/// A Kinesis record as delivered: its data blob and what the delivery says
/// of it. Sources fill what they know and leave the rest `None`.
///
/// # Examples
/// ```
/// use kinesis_agg::{KinesisRecord, OnInvalid};
/// let outer = KinesisRecord::new(b"not aggregated")
///     .with_partition_key(Some("outer"))
///     .with_sequence_number(Some("49590338271490256608559692538361571095921575989136588898"));
/// let users = outer.user_records(0, OnInvalid::Error);
/// let only = users[0].as_ref().unwrap();
/// assert!(!only.aggregated);
/// assert_eq!((only.partition_key, only.data), (Some("outer"), &b"not aggregated"[..]));
/// assert_eq!(only.outer.sequence_number, outer.sequence_number);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KinesisRecord<'a> {
    /// The data blob: aggregated or not.
    pub data: &'a [u8],
    /// The Kinesis record's own partition key (the outer one).
    pub partition_key: Option<&'a str>,
    /// Its sequence number.
    pub sequence_number: Option<&'a str>,
    /// The shard it was read from.
    pub shard_id: Option<&'a str>,
    /// When it reached Kinesis, in milliseconds since the epoch.
    pub approximate_arrival_millis: Option<i64>,
    /// The event source (`aws:kinesis`), where an event says.
    pub event_source: Option<&'a str>,
    /// The id the delivery gives it: a Lambda Kinesis event's `eventID`, a
    /// Firehose event's `recordId`.
    pub record_id: Option<&'a str>,
}

/// One user record with the metadata of the Kinesis record it came in.
///
/// A Kinesis record that is not aggregated is one user record: its own
/// data and partition key, `aggregated: false`, no sub-sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveredRecord<'a> {
    /// Position of the Kinesis record in its batch (event, response, input),
    /// from 0.
    pub record: usize,
    /// Whether it came out of an aggregated record.
    pub aggregated: bool,
    /// The user record's partition key: a not-aggregated record's own
    /// (`None` when the source does not give one).
    pub partition_key: Option<&'a str>,
    /// The user record's explicit hash key, only when it has one.
    pub explicit_hash_key: Option<&'a str>,
    /// The user record's data.
    pub data: &'a [u8],
    /// Its position among the aggregate's user records; `None` when not
    /// aggregated.
    pub sub_sequence_number: Option<u64>,
    /// Its tags (none when not aggregated).
    pub tags: Tags<'a>,
    /// The Kinesis record it came in.
    pub outer: KinesisRecord<'a>,
}

impl<'a> DeliveredRecord<'a> {
    /// A user record read from an aggregated `outer`, at `record` in its
    /// batch.
    pub fn aggregated(record: usize, outer: KinesisRecord<'a>, user: UserRecord<'a>) -> Self {
        DeliveredRecord {
            record,
            aggregated: true,
            partition_key: Some(user.partition_key),
            explicit_hash_key: user.explicit_hash_key,
            data: user.data,
            sub_sequence_number: Some(user.sub_sequence_number),
            tags: user.tags,
            outer,
        }
    }

    /// `outer` as the one user record it is when not aggregated.
    pub fn plain(record: usize, outer: KinesisRecord<'a>) -> Self {
        DeliveredRecord {
            record,
            aggregated: false,
            partition_key: outer.partition_key,
            explicit_hash_key: None,
            data: outer.data,
            sub_sequence_number: None,
            tags: Tags::default(),
            outer,
        }
    }
}

/// What to do with a Kinesis record whose checksum is right but whose
/// aggregated body is broken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnInvalid {
    /// Report it: a [`BrokenRecord`] in the user records' place.
    #[default]
    Error,
    /// Hand it on unchanged, as one not-aggregated user record.
    Passthrough,
}

/// A Kinesis record whose aggregated body is broken, named by its position
/// in the batch and the ids a caller reports it by (a Lambda partial batch
/// response takes the sequence number, a Firehose response the record id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokenRecord<'a> {
    /// Position of the Kinesis record in its batch, from 0.
    pub record: usize,
    /// Its sequence number, where the source gives one.
    pub sequence_number: Option<&'a str>,
    /// Its id, where the source gives one (see [`KinesisRecord::record_id`]).
    pub record_id: Option<&'a str>,
    /// What is wrong, with the byte offset.
    pub error: Error,
}

impl fmt::Display for BrokenRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}", self.record)?;
        match (self.record_id, self.sequence_number) {
            (Some(id), _) => write!(f, " ({id})")?,
            (None, Some(seq)) => write!(f, " (sequence number {seq})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.error)
    }
}

impl core::error::Error for BrokenRecord<'_> {}

impl<'a> KinesisRecord<'a> {
    /// A record of which only the data blob is known.
    pub const fn new(data: &'a [u8]) -> Self {
        KinesisRecord {
            data,
            partition_key: None,
            sequence_number: None,
            shard_id: None,
            approximate_arrival_millis: None,
            event_source: None,
            record_id: None,
        }
    }
}

/// `with_FIELD(value)`: the same record with that field set.
macro_rules! with {
    ($($with:ident $field:ident: $t:ty;)*) => {
        impl<'a> KinesisRecord<'a> {
            $(
                #[doc = concat!("The same record with [`", stringify!($field), "`](Self::", stringify!($field), ") set.")]
                pub const fn $with(mut self, value: Option<$t>) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

with! {
    with_partition_key partition_key: &'a str;
    with_sequence_number sequence_number: &'a str;
    with_shard_id shard_id: &'a str;
    with_approximate_arrival_millis approximate_arrival_millis: i64;
    with_event_source event_source: &'a str;
    with_record_id record_id: &'a str;
}

#[cfg(feature = "alloc")]
impl<'a> KinesisRecord<'a> {
    /// Calls `each` with every user record of this Kinesis record (at
    /// `record` in its batch), in order, or with the [`BrokenRecord`] in
    /// their place; stops at the first `Err` that `each` returns. The body
    /// is validated whole before the first user record is handed out.
    ///
    /// # Errors
    /// What `each` returned.
    pub fn try_for_each_user_record<E>(
        &self,
        record: usize,
        options: Options,
        on_invalid: OnInvalid,
        each: impl FnMut(Result<DeliveredRecord<'a>, BrokenRecord<'a>>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.try_for_each_user_record_in(record, options, on_invalid, None, each)
            .map(|_| ())
    }

    /// [`try_for_each_user_record`](Self::try_for_each_user_record) for a
    /// record read from a shard whose hash keys are `range`, under the
    /// KCL's rule: an aggregate holding any user record outside the range
    /// is discarded whole. Then `each` is not called and the answer is the
    /// first user record outside (see
    /// [`AggregatedRecord::check_range`](crate::AggregatedRecord::check_range));
    /// `None` otherwise. With no range, every aggregate is delivered.
    ///
    /// # Errors
    /// What `each` returned.
    pub fn try_for_each_user_record_in<E>(
        &self,
        record: usize,
        options: Options,
        on_invalid: OnInvalid,
        range: Option<crate::HashKeyRange>,
        each: impl FnMut(Result<DeliveredRecord<'a>, BrokenRecord<'a>>) -> Result<(), E>,
    ) -> Result<Option<crate::OutOfRange>, E> {
        self.deliver(record, &options.verify(self.data), on_invalid, range, each)
    }

    /// Hands out the user records of this Kinesis record, whose envelope
    /// `verified` holds.
    pub(crate) fn deliver<E>(
        &self,
        record: usize,
        verified: &Verified<'a>,
        on_invalid: OnInvalid,
        range: Option<crate::HashKeyRange>,
        mut each: impl FnMut(Result<DeliveredRecord<'a>, BrokenRecord<'a>>) -> Result<(), E>,
    ) -> Result<Option<crate::OutOfRange>, E> {
        let delivered = match verified.deaggregate() {
            Ok(Deaggregated::Aggregated(agg)) => {
                if let Some(Err(out)) = range.map(|r| agg.check_range(r)) {
                    return Ok(Some(out));
                }
                agg.records()
                    .try_for_each(|u| each(Ok(DeliveredRecord::aggregated(record, *self, u))))
            }
            Ok(Deaggregated::Plain { .. }) => each(Ok(DeliveredRecord::plain(record, *self))),
            Err(error) => match on_invalid {
                OnInvalid::Passthrough => each(Ok(DeliveredRecord::plain(record, *self))),
                OnInvalid::Error => each(Err(BrokenRecord {
                    record,
                    sequence_number: self.sequence_number,
                    record_id: self.record_id,
                    error,
                })),
            },
        };
        delivered.map(|()| None)
    }

    /// The user records of this Kinesis record (at `record` in its batch),
    /// in order, read with default [`Options`].
    pub fn user_records(
        &self,
        record: usize,
        on_invalid: OnInvalid,
    ) -> alloc::vec::Vec<Result<DeliveredRecord<'a>, BrokenRecord<'a>>> {
        let mut out = alloc::vec::Vec::new();
        let _ = self.try_for_each_user_record(record, Options::new(), on_invalid, |r| {
            out.push(r);
            Ok::<(), core::convert::Infallible>(())
        });
        out
    }
}

/// The user records of many Kinesis records (a Lambda event, a GetRecords
/// answer), their checksums verified side by side
/// ([`Options::verify_all`]): to `each`, in order, what
/// [`KinesisRecord::try_for_each_user_record_in`] gives for each record
/// (at its index in `records`), the KCL's range rule applied when `range`
/// is given. Returns, for each record, the first user record outside the
/// range of a discarded aggregate.
///
/// # Errors
/// What `each` returned; the records after it are not read.
#[cfg(feature = "alloc")]
pub fn try_for_each_user_record_of<'a, E>(
    records: &[KinesisRecord<'a>],
    options: Options,
    on_invalid: OnInvalid,
    range: Option<crate::HashKeyRange>,
    mut each: impl FnMut(Result<DeliveredRecord<'a>, BrokenRecord<'a>>) -> Result<(), E>,
) -> Result<alloc::vec::Vec<Option<crate::OutOfRange>>, E> {
    let blobs: alloc::vec::Vec<&'a [u8]> = records.iter().map(|r| r.data).collect();
    let verified = options.verify_all(&blobs);
    records
        .iter()
        .zip(&verified)
        .enumerate()
        .map(|(i, (r, v))| r.deliver(i, v, on_invalid, range, &mut each))
        .collect()
}

/// The user records of many Kinesis records, in order, their checksums
/// verified side by side (see [`try_for_each_user_record_of`]).
#[cfg(feature = "alloc")]
pub fn user_records_of<'a>(
    records: &[KinesisRecord<'a>],
    options: Options,
    on_invalid: OnInvalid,
) -> alloc::vec::Vec<Result<DeliveredRecord<'a>, BrokenRecord<'a>>> {
    let mut out = alloc::vec::Vec::new();
    let _ = try_for_each_user_record_of(records, options, on_invalid, None, |r| {
        out.push(r);
        Ok::<(), core::convert::Infallible>(())
    });
    out
}
