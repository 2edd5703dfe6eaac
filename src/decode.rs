//! Deaggregation: classify a Kinesis data blob, validate an aggregated
//! body completely, then hand out zero-copy views of its user records.

use core::fmt;
use core::iter::FusedIterator;

use crate::error::{Error, Required, Table};
use crate::hash::{HashKeyRange, parse_hash_key, partition_key_hash};
use crate::limits::{DIGEST_LEN, MAGIC, MAX_NESTING};
use crate::wire::{Field, Reader, WT_LEN, WT_VARINT};

/// Storage for one key table while a body is read.
///
/// Implemented for [`FixedTable`] (at most `N` keys, no heap; more is
/// [`Error::TableFull`]) and, with the `alloc` feature, for
/// `Vec<&str>` ([`VecTable`], any number of keys). Lookups are by index,
/// O(1). Implement it for other storage (an arena, a reused buffer) when
/// neither fits.
pub trait KeyTable<'a> {
    /// Empties the table.
    fn clear(&mut self);
    /// Appends a key; `false` when the table is at capacity.
    fn try_push(&mut self, key: &'a str) -> bool;
    /// The keys, in table order.
    fn as_slice(&self) -> &[&'a str];
    /// The most keys the table can hold.
    fn capacity(&self) -> usize;
}

#[cfg(feature = "alloc")]
impl<'a> KeyTable<'a> for alloc::vec::Vec<&'a str> {
    fn clear(&mut self) {
        alloc::vec::Vec::clear(self)
    }
    fn try_push(&mut self, key: &'a str) -> bool {
        self.push(key);
        true
    }
    fn as_slice(&self) -> &[&'a str] {
        self
    }
    fn capacity(&self) -> usize {
        usize::MAX
    }
}

/// A key table of at most `N` keys, stored inline: no heap.
///
/// [`deaggregate_fixed::<N>`](deaggregate_fixed) reads with two of them,
/// one per table, so it takes `N` partition keys and `N` explicit hash keys
/// (as [`Aggregator<_, N>`](crate::Aggregator) writes at most `N` of
/// each); a body with more is [`Error::TableFull`]. Each costs `N` string
/// references (16 bytes each on 64-bit targets, 8 on 32-bit ones).
///
/// # Examples
/// ```
/// use kinesis_agg::{FixedTable, KeyTable};
/// let mut t = FixedTable::<1>::new();
/// assert!(t.try_push("a"));
/// assert!(!t.try_push("b"));
/// assert_eq!(t.as_slice(), ["a"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedTable<'a, const N: usize> {
    keys: heapless::Vec<&'a str, N>,
}

impl<const N: usize> FixedTable<'_, N> {
    /// An empty table.
    pub const fn new() -> Self {
        FixedTable {
            keys: heapless::Vec::new(),
        }
    }
}

impl<const N: usize> Default for FixedTable<'_, N> {
    fn default() -> Self {
        FixedTable::new()
    }
}

impl<'a, const N: usize> KeyTable<'a> for FixedTable<'a, N> {
    fn clear(&mut self) {
        self.keys.clear()
    }
    fn try_push(&mut self, key: &'a str) -> bool {
        self.keys.push(key).is_ok()
    }
    fn as_slice(&self) -> &[&'a str] {
        &self.keys
    }
    fn capacity(&self) -> usize {
        N
    }
}

/// What to do with the MD5 trailer of a magic-prefixed blob.
///
/// | policy | checksum wrong | checksum right, body broken | not checked, body broken |
/// |---|---|---|---|
/// | `Verify` (default) | plain ([`PlainReason::ChecksumMismatch`]) | error | - |
/// | `Strict` | [`Error::ChecksumMismatch`] | error | - |
/// | `Skip` | - | - | plain ([`PlainReason::Unparsable`]) |
///
/// Blobs without the magic, or of 20 bytes or fewer, are plain under every
/// policy, as the KCL has them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// Check it; a wrong one makes the blob a plain record, as the KCL
    /// reads it.
    #[default]
    Verify,
    /// Check it; a wrong one is [`Error::ChecksumMismatch`] (a reader that
    /// knows every record on its stream is aggregated).
    Strict,
    /// Do not check it (trusted input, to save the MD5): a body that parses
    /// is aggregated, one that does not is a plain record
    /// ([`PlainReason::Unparsable`], with the parse error), since nothing
    /// then says it was meant to be aggregated.
    Skip,
}

/// How to read blobs: the [`Checksum`] policy. The default verifies the
/// checksum and passes a blob whose checksum is wrong through as plain.
///
/// # Examples
/// ```
/// use kinesis_agg::{Checksum, Deaggregated, Options};
/// let opts = Options::new().checksum(Checksum::Strict);
/// // Not magic-prefixed: plain, even in strict mode.
/// let out = opts.deaggregate_fixed::<4>(b"hello").unwrap();
/// assert!(matches!(out, Deaggregated::Plain { data: b"hello", .. }));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options {
    checksum: Checksum,
}

/// Why a blob was passed through as a plain record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlainReason {
    /// It does not start with the magic bytes `F3 89 9A C2`.
    NoMagic,
    /// It has the magic but is 20 bytes or shorter.
    TooShort,
    /// It has the magic but its last 16 bytes are not the MD5 of the body.
    ChecksumMismatch,
    /// The checksum was not verified ([`Checksum::Skip`]) and the body
    /// does not parse; the error says why.
    Unparsable(Error),
}

impl fmt::Display for PlainReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlainReason::NoMagic => f.write_str("no aggregation magic"),
            PlainReason::TooShort => f.write_str("magic present but 20 bytes or shorter"),
            PlainReason::ChecksumMismatch => f.write_str("magic present but MD5 checksum differs"),
            PlainReason::Unparsable(e) => write!(f, "unverified body does not parse: {e}"),
        }
    }
}

/// What the envelope of a blob says, before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// Magic, length and (unless skipped) checksum all hold.
    Aggregated {
        /// The protobuf body between the magic and the trailer.
        body: &'a [u8],
    },
    /// A plain record.
    Plain(PlainReason),
}

impl Options {
    /// [`Checksum::Verify`].
    pub const fn new() -> Self {
        Options {
            checksum: Checksum::Verify,
        }
    }

    /// The same options with this checksum policy.
    pub const fn checksum(mut self, policy: Checksum) -> Self {
        self.checksum = policy;
        self
    }

    /// The checksum policy.
    pub const fn checksum_policy(&self) -> Checksum {
        self.checksum
    }

    /// Reads only the envelope: magic, length and checksum.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Envelope, Options, PlainReason};
    /// let e = Options::new().envelope(b"\xF3\x89\x9A\xC2 too short");
    /// assert_eq!(e, Ok(Envelope::Plain(PlainReason::TooShort)));
    /// ```
    pub fn envelope<'a>(&self, blob: &'a [u8]) -> Result<Envelope<'a>, Error> {
        self.envelope_by(blob, crate::checksum::md5)
    }

    /// The envelope, the body's MD5 (when the policy wants it) from `md5`.
    #[inline]
    fn envelope_by<'a>(
        &self,
        blob: &'a [u8],
        md5: impl FnOnce(&[u8]) -> [u8; DIGEST_LEN],
    ) -> Result<Envelope<'a>, Error> {
        match split(blob) {
            Err(reason) => Ok(Envelope::Plain(reason)),
            Ok((body, _)) if self.checksum == Checksum::Skip => Ok(Envelope::Aggregated { body }),
            Ok((body, trailer)) => self.judge(body, trailer, &md5(body)),
        }
    }

    /// Reads `blob`'s envelope with its body's MD5 computed by the caller,
    /// with a platform's own MD5 (a JavaScript runtime's native one, a
    /// hardware engine): `body_md5` is the MD5 of the bytes between the
    /// magic and the trailer, `blob[4..blob.len() - 16]`. The library still
    /// decides: it is used only when the blob has the magic and is longer
    /// than 20 bytes, and not under [`Checksum::Skip`]. The blob then reads
    /// as [`Options`] reads it, given the right MD5; a wrong one reads as a
    /// wrong trailer would.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Deaggregated, Options, Record, RecordAggregator};
    /// use md5::{Digest, Md5};
    /// let mut agg = RecordAggregator::new();
    /// agg.add(Record::new("k", b"one")).unwrap();
    /// let blob = agg.finish().unwrap().into_data();
    /// let md5: [u8; 16] = Md5::digest(&blob[4..blob.len() - 16]).into();
    /// let read = Options::new().verify_with_md5(&blob, &md5);
    /// assert!(matches!(read.deaggregate(), Ok(Deaggregated::Aggregated(_))));
    /// // A wrong MD5 is a wrong trailer: the blob is a plain record.
    /// let wrong = Options::new().verify_with_md5(&blob, &[0; 16]);
    /// assert!(matches!(wrong.deaggregate(), Ok(Deaggregated::Plain { .. })));
    /// ```
    pub fn verify_with_md5<'a>(&self, blob: &'a [u8], body_md5: &[u8; DIGEST_LEN]) -> Verified<'a> {
        Verified {
            blob,
            envelope: self.envelope_by(blob, |_| *body_md5),
            options: *self,
        }
    }

    /// The envelope of a body whose MD5 is `md5`, by the policy.
    fn judge<'a>(
        &self,
        body: &'a [u8],
        trailer: &[u8],
        md5: &[u8; DIGEST_LEN],
    ) -> Result<Envelope<'a>, Error> {
        if md5[..] == *trailer {
            Ok(Envelope::Aggregated { body })
        } else if self.checksum == Checksum::Strict {
            Err(Error::ChecksumMismatch)
        } else {
            Ok(Envelope::Plain(PlainReason::ChecksumMismatch))
        }
    }

    /// Reads the envelopes of many blobs, their checksums computed side by
    /// side ([`MD5_LANES`](crate::MD5_LANES) at a time): `out[i]` is
    /// `blobs[i]`'s, to be read as [`Options::deaggregate`] would read it.
    /// No heap. Reads as many blobs as `out` has room for and returns how
    /// many.
    ///
    /// Independent MD5s run in SIMD lanes several times faster than one
    /// after another: a batch of blobs (a Lambda event, a GetRecords
    /// answer) is verified at a fraction of the cost of verifying each.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Deaggregated, Options, Record, RecordAggregator, Verified};
    /// let mut agg = RecordAggregator::new();
    /// agg.add(Record::new("k", b"one")).unwrap();
    /// let blob = agg.finish().unwrap().into_data();
    /// let blobs: [&[u8]; 2] = [&blob, b"plain"];
    /// let mut out = [Verified::default(); 2];
    /// assert_eq!(Options::new().verify_into(&blobs, &mut out), 2);
    /// assert!(matches!(out[0].deaggregate_fixed::<4>(), Ok(Deaggregated::Aggregated(_))));
    /// assert!(matches!(out[1].deaggregate_fixed::<4>(), Ok(Deaggregated::Plain { data: b"plain", .. })));
    /// ```
    pub fn verify_into<'a>(&self, blobs: &[&'a [u8]], out: &mut [Verified<'a>]) -> usize {
        let n = blobs.len().min(out.len());
        let (blobs, out) = (&blobs[..n], &mut out[..n]);
        let mut check = false;
        for (o, &blob) in out.iter_mut().zip(blobs) {
            let envelope = match split(blob) {
                Err(reason) => Ok(Envelope::Plain(reason)),
                Ok((body, _)) => {
                    check |= self.checksum != Checksum::Skip;
                    Ok(Envelope::Aggregated { body })
                }
            };
            *o = Verified {
                blob,
                envelope,
                options: *self,
            };
        }
        if check {
            let bodies = blobs
                .iter()
                .enumerate()
                .filter_map(|(i, b)| split(b).ok().map(|(body, _)| (i, body)));
            crate::checksum::md5_each(bodies, |i, md5| {
                if let Ok((body, trailer)) = split(blobs[i]) {
                    out[i].envelope = self.judge(body, trailer, &md5);
                }
            });
        }
        n
    }

    /// One blob's envelope, its MD5 computed alone.
    #[cfg(feature = "alloc")]
    pub(crate) fn verify<'a>(&self, blob: &'a [u8]) -> Verified<'a> {
        Verified {
            blob,
            envelope: self.envelope(blob),
            options: *self,
        }
    }

    /// [`verify_into`](Self::verify_into) into a vector: every blob's
    /// envelope, in order.
    #[cfg(feature = "alloc")]
    pub fn verify_all<'a>(&self, blobs: &[&'a [u8]]) -> alloc::vec::Vec<Verified<'a>> {
        let mut out = alloc::vec![Verified::default(); blobs.len()];
        self.verify_into(blobs, &mut out);
        out
    }

    /// Deaggregates `blob` with key tables the caller provides (they are
    /// cleared first). See [`Deaggregated`].
    ///
    /// # Errors
    /// A blob that passes the envelope checks but whose body breaks a rule
    /// gives the first violation found; see the crate docs for the rules.
    pub fn deaggregate_with<'a, T: KeyTable<'a>>(
        &self,
        blob: &'a [u8],
        partition_keys: T,
        explicit_hash_keys: T,
    ) -> Result<Deaggregated<'a, T>, Error> {
        self.read(blob, self.envelope(blob)?, partition_keys, explicit_hash_keys)
    }

    /// Reads `blob`'s body, its envelope read already.
    fn read<'a, T: KeyTable<'a>>(
        &self,
        blob: &'a [u8],
        envelope: Envelope<'a>,
        mut partition_keys: T,
        mut explicit_hash_keys: T,
    ) -> Result<Deaggregated<'a, T>, Error> {
        let body = match envelope {
            Envelope::Plain(reason) => return Ok(Deaggregated::Plain { data: blob, reason }),
            Envelope::Aggregated { body } => body,
        };
        partition_keys.clear();
        explicit_hash_keys.clear();
        match parse_body(body, &mut partition_keys, &mut explicit_hash_keys) {
            Ok((count, first)) => Ok(Deaggregated::Aggregated(AggregatedRecord {
                body,
                first,
                count,
                partition_keys,
                explicit_hash_keys,
            })),
            Err(e) if self.checksum == Checksum::Skip => Ok(Deaggregated::Plain {
                data: blob,
                reason: PlainReason::Unparsable(e),
            }),
            Err(e) => Err(e),
        }
    }

    /// Deaggregates with heap-allocated key tables (any number of keys).
    #[cfg(feature = "alloc")]
    pub fn deaggregate<'a>(&self, blob: &'a [u8]) -> Result<Deaggregated<'a, VecTable<'a>>, Error> {
        self.deaggregate_with(blob, VecTable::new(), VecTable::new())
    }

    /// Deaggregates with fixed key tables of `N` entries each, on the stack:
    /// no heap. A body with more than `N` keys in a table is
    /// [`Error::TableFull`].
    pub fn deaggregate_fixed<'a, const N: usize>(
        &self,
        blob: &'a [u8],
    ) -> Result<Deaggregated<'a, FixedTable<'a, N>>, Error> {
        self.deaggregate_with(blob, FixedTable::new(), FixedTable::new())
    }
}

/// A blob's body and trailer, or why it is plain whatever its checksum.
fn split(blob: &[u8]) -> Result<(&[u8], &[u8]), PlainReason> {
    if !blob.starts_with(&MAGIC) {
        return Err(PlainReason::NoMagic);
    }
    if blob.len() <= MAGIC.len() + DIGEST_LEN {
        return Err(PlainReason::TooShort);
    }
    Ok(blob[MAGIC.len()..].split_at(blob.len() - MAGIC.len() - DIGEST_LEN))
}

/// A blob whose envelope was read with others', their checksums computed
/// side by side ([`Options::verify_into`], [`Options::verify_all`]). Read
/// it as [`Options`] reads a blob: the same [`Deaggregated`] outcome or
/// error, without computing its MD5 again.
///
/// `Verified::default()` is an empty plain blob, to fill arrays with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    blob: &'a [u8],
    envelope: Result<Envelope<'a>, Error>,
    options: Options,
}

impl Default for Verified<'_> {
    fn default() -> Self {
        Verified {
            blob: &[],
            envelope: Ok(Envelope::Plain(PlainReason::NoMagic)),
            options: Options::new(),
        }
    }
}

impl<'a> Verified<'a> {
    /// The blob.
    pub fn blob(&self) -> &'a [u8] {
        self.blob
    }

    /// Its envelope, as [`Options::envelope`] gives it.
    pub fn envelope(&self) -> Result<Envelope<'a>, Error> {
        self.envelope
    }

    /// As [`Options::deaggregate_with`].
    ///
    /// # Errors
    /// As [`Options::deaggregate_with`].
    pub fn deaggregate_with<T: KeyTable<'a>>(
        &self,
        partition_keys: T,
        explicit_hash_keys: T,
    ) -> Result<Deaggregated<'a, T>, Error> {
        self.options
            .read(self.blob, self.envelope?, partition_keys, explicit_hash_keys)
    }

    /// As [`Options::deaggregate`].
    ///
    /// # Errors
    /// As [`Options::deaggregate_with`].
    #[cfg(feature = "alloc")]
    pub fn deaggregate(&self) -> Result<Deaggregated<'a, VecTable<'a>>, Error> {
        self.deaggregate_with(VecTable::new(), VecTable::new())
    }

    /// As [`Options::deaggregate_fixed`].
    ///
    /// # Errors
    /// As [`Options::deaggregate_with`].
    pub fn deaggregate_fixed<const N: usize>(&self) -> Result<Deaggregated<'a, FixedTable<'a, N>>, Error> {
        self.deaggregate_with(FixedTable::new(), FixedTable::new())
    }
}

/// Heap key table (feature `alloc`).
#[cfg(feature = "alloc")]
pub type VecTable<'a> = alloc::vec::Vec<&'a str>;

/// Deaggregates `blob` with default [`Options`] and heap key tables.
///
/// # Examples
/// ```
/// use kinesis_agg::{deaggregate, Deaggregated};
/// match deaggregate(b"just bytes").unwrap() {
///     Deaggregated::Plain { data, .. } => assert_eq!(data, b"just bytes"),
///     Deaggregated::Aggregated(_) => unreachable!(),
/// }
/// ```
#[cfg(feature = "alloc")]
pub fn deaggregate(blob: &[u8]) -> Result<Deaggregated<'_, VecTable<'_>>, Error> {
    Options::new().deaggregate(blob)
}

/// Deaggregates `blob` with default [`Options`] and fixed key tables of `N`
/// keys each (`N` partition keys, `N` explicit hash keys): no heap.
///
/// # Examples
/// ```
/// use kinesis_agg::{deaggregate_fixed, Deaggregated};
/// let out = deaggregate_fixed::<8>(b"plain").unwrap();
/// assert!(matches!(out, Deaggregated::Plain { .. }));
/// ```
pub fn deaggregate_fixed<const N: usize>(blob: &[u8]) -> Result<Deaggregated<'_, FixedTable<'_, N>>, Error> {
    Options::new().deaggregate_fixed(blob)
}

/// The outcome of reading one Kinesis data blob.
#[derive(Clone, Debug)]
pub enum Deaggregated<'a, T> {
    /// A valid aggregated record, fully validated.
    Aggregated(AggregatedRecord<'a, T>),
    /// Not an aggregated record: pass `data` (the whole blob) through as
    /// one user record.
    Plain {
        /// The blob, unchanged.
        data: &'a [u8],
        /// Why it is not aggregated.
        reason: PlainReason,
    },
}

/// A validated aggregated record whose user records can be iterated
/// without copying.
#[derive(Clone, Debug)]
pub struct AggregatedRecord<'a, T> {
    body: &'a [u8],
    first: usize,
    count: usize,
    partition_keys: T,
    explicit_hash_keys: T,
}

impl<'a, T: KeyTable<'a>> AggregatedRecord<'a, T> {
    /// Number of user records.
    pub fn len(&self) -> usize {
        self.count
    }

    /// `true` when the aggregate holds no user records (a valid but empty
    /// body, which no conforming producer writes).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The protobuf body (between the magic and the MD5 trailer).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The partition key table, in wire order.
    pub fn partition_keys(&self) -> &[&'a str] {
        self.partition_keys.as_slice()
    }

    /// The explicit hash key table, in wire order.
    pub fn explicit_hash_keys(&self) -> &[&'a str] {
        self.explicit_hash_keys.as_slice()
    }

    /// The index in [`partition_keys`](Self::partition_keys) of a user
    /// record's partition key: for a caller that makes one object per
    /// table entry (a binding's strings) and finds it again for each
    /// record. `None` for a string that is not one of this aggregate's
    /// table entries (an equal string elsewhere is not one). While reading
    /// the records, [`Records::with_key_indices`] gives the indices as the
    /// records name them, with no search.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Deaggregated, Record, RecordAggregator, deaggregate};
    /// let mut agg = RecordAggregator::new();
    /// for key in ["b", "a", "b"] {
    ///     agg.add(Record::new(key, b"x")).unwrap();
    /// }
    /// let blob = agg.finish().unwrap().into_data();
    /// let Ok(Deaggregated::Aggregated(read)) = deaggregate(&blob) else { panic!() };
    /// let indices: Vec<_> = read.records().map(|r| read.partition_key_index(r.partition_key)).collect();
    /// assert_eq!(indices, [Some(0), Some(1), Some(0)]);
    /// assert_eq!(read.partition_key_index("a"), None); // equal, but not the entry
    /// ```
    pub fn partition_key_index(&self, key: &str) -> Option<usize> {
        entry_index(self.partition_keys.as_slice(), key)
    }

    /// The index in [`explicit_hash_keys`](Self::explicit_hash_keys) of a
    /// user record's explicit hash key, as
    /// [`partition_key_index`](Self::partition_key_index).
    pub fn explicit_hash_key_index(&self, key: &str) -> Option<usize> {
        entry_index(self.explicit_hash_keys.as_slice(), key)
    }

    /// The user records, in order, borrowing from the input.
    pub fn records(&self) -> Records<'a, '_> {
        Records {
            body: self.body,
            pos: self.first,
            pks: self.partition_keys.as_slice(),
            ehks: self.explicit_hash_keys.as_slice(),
            next: 0,
            remaining: self.count,
        }
    }

    /// The KCL's rule for an aggregate read from a shard: every user
    /// record's effective hash key must lie in the shard's range, or the
    /// KCL discards the whole aggregate. Here the discard is reported: the
    /// first record outside the range, with its hash key.
    ///
    /// # Errors
    /// The first user record outside `range`.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Deaggregated, HashKeyRange, Record, RecordAggregator};
    /// let mut agg = RecordAggregator::new();
    /// agg.add(Record::new("k", b"in").with_explicit_hash_key("10")).unwrap();
    /// agg.add(Record::new("k", b"out").with_explicit_hash_key("99")).unwrap();
    /// let blob = agg.finish().unwrap().into_data();
    /// let Deaggregated::Aggregated(a) = kinesis_agg::deaggregate(&blob).unwrap() else { panic!() };
    /// let shard = HashKeyRange::new(0, 50).unwrap();
    /// let err = a.check_range(shard).unwrap_err();
    /// assert_eq!((err.sub_sequence_number, err.hash_key), (1, Some(99)));
    /// // Lenient: keep what lies in the range, count the rest.
    /// let mut kept = a.records_in_range(shard);
    /// assert_eq!(kept.next().unwrap().data, b"in");
    /// assert!(kept.next().is_none());
    /// assert_eq!(kept.outside(), 1);
    /// ```
    pub fn check_range(&self, range: HashKeyRange) -> Result<(), OutOfRange> {
        let mut last: Option<(&str, u128)> = None;
        for r in self.records() {
            let key = r.hash_key_cached(&mut last);
            if !key.is_some_and(|k| range.contains(k)) {
                return Err(OutOfRange {
                    sub_sequence_number: r.sub_sequence_number,
                    hash_key: key,
                });
            }
        }
        Ok(())
    }

    /// The user records whose effective hash key lies in `range`, counting
    /// the others ([`InRange::outside`]).
    pub fn records_in_range(&self, range: HashKeyRange) -> InRange<'a, '_> {
        InRange {
            records: self.records(),
            range,
            outside: 0,
            last: None,
        }
    }

    /// Gives the key tables back, to reuse their storage.
    pub fn into_tables(self) -> (T, T) {
        (self.partition_keys, self.explicit_hash_keys)
    }
}

impl<'a, 't, T: KeyTable<'a>> IntoIterator for &'t AggregatedRecord<'a, T> {
    type Item = UserRecord<'a>;
    type IntoIter = Records<'a, 't>;
    fn into_iter(self) -> Records<'a, 't> {
        self.records()
    }
}

/// One user record, borrowing from the input blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserRecord<'a> {
    /// Its partition key.
    pub partition_key: &'a str,
    /// Its explicit hash key, only when the record sets one (field 2).
    pub explicit_hash_key: Option<&'a str>,
    /// Its data.
    pub data: &'a [u8],
    /// Its position among the aggregate's records, from 0.
    pub sub_sequence_number: u64,
    /// Its tags (producers seldom write any).
    pub tags: Tags<'a>,
}

impl<'a> UserRecord<'a> {
    /// The record's effective hash key: its explicit hash key if it has
    /// one, else the MD5 of its partition key. `None` when its explicit
    /// hash key is not a valid hash key (a producer other than this crate
    /// wrote it).
    pub fn hash_key(&self) -> Option<u128> {
        match self.explicit_hash_key {
            Some(e) => parse_hash_key(e).ok(),
            None => Some(partition_key_hash(self.partition_key)),
        }
    }

    /// `hash_key`, remembering the last partition key's hash.
    fn hash_key_cached(&self, last: &mut Option<(&'a str, u128)>) -> Option<u128> {
        if self.explicit_hash_key.is_some() {
            return self.hash_key();
        }
        if let Some((k, h)) = *last
            && core::ptr::eq(k, self.partition_key)
        {
            return Some(h);
        }
        let h = partition_key_hash(self.partition_key);
        *last = Some((self.partition_key, h));
        Some(h)
    }
}

/// The first user record outside a shard's range (see
/// [`AggregatedRecord::check_range`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// Its sub-sequence number.
    pub sub_sequence_number: u64,
    /// Its effective hash key; `None` when its explicit hash key is not a
    /// valid hash key.
    pub hash_key: Option<u128>,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.hash_key {
            Some(k) => write!(
                f,
                "user record {} has hash key {k}, outside the shard's range",
                self.sub_sequence_number
            ),
            None => write!(
                f,
                "user record {} has an explicit hash key that is not a hash key",
                self.sub_sequence_number
            ),
        }
    }
}

impl core::error::Error for OutOfRange {}

/// The user records of an aggregate that lie in a hash key range.
#[derive(Clone, Debug)]
pub struct InRange<'a, 't> {
    records: Records<'a, 't>,
    range: HashKeyRange,
    outside: usize,
    last: Option<(&'a str, u128)>,
}

impl<'a> InRange<'a, '_> {
    /// How many records so far lay outside the range (all of them once the
    /// iterator is exhausted).
    pub fn outside(&self) -> usize {
        self.outside
    }
}

impl<'a> Iterator for InRange<'a, '_> {
    type Item = UserRecord<'a>;
    fn next(&mut self) -> Option<UserRecord<'a>> {
        loop {
            let r = self.records.next()?;
            if r.hash_key_cached(&mut self.last)
                .is_some_and(|k| self.range.contains(k))
            {
                return Some(r);
            }
            self.outside += 1;
        }
    }
}

impl FusedIterator for InRange<'_, '_> {}

/// The index of `key` in `table`, found by where it lies: a record's key
/// borrows the bytes of its table entry, and the entries lie in the body
/// in table order, so their addresses ascend (a binary search, no string
/// comparison). The entry found must be `key` itself, not an equal string.
fn entry_index(table: &[&str], key: &str) -> Option<usize> {
    let at = key.as_ptr() as usize;
    let i = table.binary_search_by(|k| (k.as_ptr() as usize).cmp(&at)).ok()?;
    (table[i].len() == key.len()).then_some(i)
}

/// Iterator over the user records of an [`AggregatedRecord`].
///
/// Exact-sized and fused. Items borrow from the input (`'a`), not from the
/// iterator or the tables (`'t`).
#[derive(Clone, Debug)]
pub struct Records<'a, 't> {
    body: &'a [u8],
    pos: usize,
    pks: &'t [&'a str],
    ehks: &'t [&'a str],
    next: u64,
    remaining: usize,
}

impl<'a> Iterator for Records<'a, '_> {
    type Item = UserRecord<'a>;

    #[inline]
    fn next(&mut self) -> Option<UserRecord<'a>> {
        if self.remaining == 0 {
            return None;
        }
        match self.next_canonical() {
            Some((record, _)) => Some(record),
            None => self.next_general(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Where a user record's keys lie in its aggregate's tables: what the
/// record's fields 1 and 2 say, for a caller that makes one object per
/// table entry and hands it to each record that names it (what
/// [`AggregatedRecord::partition_key_index`] finds again from a key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyIndices {
    /// The index of its partition key in
    /// [`AggregatedRecord::partition_keys`].
    pub partition_key: usize,
    /// The index of its explicit hash key in
    /// [`AggregatedRecord::explicit_hash_keys`], when it has one.
    pub explicit_hash_key: Option<usize>,
}

/// Iterator over the user records of an [`AggregatedRecord`] with their
/// [`KeyIndices`]: [`Records::with_key_indices`].
///
/// Exact-sized and fused, as [`Records`].
#[derive(Clone, Debug)]
pub struct IndexedRecords<'a, 't>(Records<'a, 't>);

impl<'a> Iterator for IndexedRecords<'a, '_> {
    type Item = (UserRecord<'a>, KeyIndices);

    #[inline]
    fn next(&mut self) -> Option<(UserRecord<'a>, KeyIndices)> {
        let records = &mut self.0;
        if records.remaining == 0 {
            return None;
        }
        match records.next_canonical() {
            Some(entry) => Some(entry),
            None => records.next_general_indexed(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for IndexedRecords<'_, '_> {}
impl FusedIterator for IndexedRecords<'_, '_> {}

impl<'a, 't> Records<'a, 't> {
    /// The same records, each with the indices of its keys in the
    /// aggregate's tables.
    ///
    /// # Examples
    /// ```
    /// use kinesis_agg::{Deaggregated, KeyIndices, Record, RecordAggregator, deaggregate};
    /// let mut agg = RecordAggregator::new();
    /// agg.add(Record::new("b", b"1")).unwrap();
    /// agg.add(Record::new("a", b"2").with_explicit_hash_key("7")).unwrap();
    /// agg.add(Record::new("b", b"3")).unwrap();
    /// let blob = agg.finish().unwrap().into_data();
    /// let Ok(Deaggregated::Aggregated(read)) = deaggregate(&blob) else { panic!() };
    /// let keys: Vec<KeyIndices> = read.records().with_key_indices().map(|(_, k)| k).collect();
    /// assert_eq!(keys[1], KeyIndices { partition_key: 1, explicit_hash_key: Some(0) });
    /// assert_eq!(keys[2], KeyIndices { partition_key: 0, explicit_hash_key: None });
    /// ```
    pub fn with_key_indices(self) -> IndexedRecords<'a, 't> {
        IndexedRecords(self)
    }

    /// The next record and its key indices when it has the canonical
    /// layout (read inline; everything else out of line, by
    /// `next_general` or, with the indices, `next_general_indexed`: two
    /// functions, so that a build that never asks for indices carries no
    /// code for them). Some records remain.
    #[inline(always)]
    fn next_canonical(&mut self) -> Option<(UserRecord<'a>, KeyIndices)> {
        if let Some(c) = canonical_at(self.body, self.pos)
            && let Some(&partition_key) = self.pks.get(c.pk)
            && let Some(data) = self.body.get(c.data_start..c.data_start + c.data_len)
            && let Some(explicit_hash_key) = match c.ehk {
                None => Some(None),
                Some(i) => self.ehks.get(i).copied().map(Some),
            }
        {
            self.pos = c.end;
            self.remaining -= 1;
            self.next += 1;
            let record = UserRecord {
                partition_key,
                explicit_hash_key,
                data,
                sub_sequence_number: self.next - 1,
                tags: Tags { rest: &[], base: 0 },
            };
            let keys = KeyIndices {
                partition_key: c.pk,
                explicit_hash_key: c.ehk,
            };
            return Some((record, keys));
        }
        None
    }

    /// The next record through the general field loop.
    #[inline(never)]
    fn next_general(&mut self) -> Option<UserRecord<'a>> {
        self.general().map(|(record, _)| record)
    }

    /// `next_general` with the record's key indices.
    #[inline(never)]
    fn next_general_indexed(&mut self) -> Option<(UserRecord<'a>, KeyIndices)> {
        self.general()
    }

    #[inline(always)]
    fn general(&mut self) -> Option<(UserRecord<'a>, KeyIndices)> {
        // The body was validated in full, so none of the failures below can
        // happen; they end the iteration rather than panic.
        let rec = self.next_record();
        match rec {
            Some(r) => {
                self.remaining -= 1;
                self.next += 1;
                Some(r)
            }
            None => {
                self.remaining = 0;
                None
            }
        }
    }

    #[inline(always)]
    fn next_record(&mut self) -> Option<(UserRecord<'a>, KeyIndices)> {
        // Canonical records are read by `next_canonical`; this loop reads any
        // record (canonical ones too) and skips the fields between records.
        loop {
            let mut reader = Reader::at(self.body, self.pos, MAGIC.len());
            let field = reader.field().ok()?;
            if field.number == 3 && field.wire_type == WT_LEN {
                let (bytes, base) = reader.bytes().ok()?;
                self.pos = reader.pos();
                let r = parse_record(bytes, base, false).ok()?;
                let pk = usize::try_from(r.pk).ok()?;
                let partition_key = *self.pks.get(pk)?;
                let (explicit_hash_key, ehk) = match r.ehk {
                    Some(i) => {
                        let i = usize::try_from(i).ok()?;
                        (Some(*self.ehks.get(i)?), Some(i))
                    }
                    None => (None, None),
                };
                let record = UserRecord {
                    partition_key,
                    explicit_hash_key,
                    data: r.data,
                    sub_sequence_number: self.next,
                    tags: Tags {
                        rest: if r.has_tags { bytes } else { &[] },
                        base,
                    },
                };
                let keys = KeyIndices {
                    partition_key: pk,
                    explicit_hash_key: ehk,
                };
                return Some((record, keys));
            }
            reader.skip(field, 0).ok()?;
            self.pos = reader.pos();
        }
    }
}

/// A record entry in the canonical layout every producer writes: tag 0x1A,
/// then fields 1, (2,) 3 in order with short varints, data running exactly
/// to the end of the record. Such a record is complete and valid as it
/// stands, so both passes read it without the general field loop.
#[derive(Clone, Copy, Debug)]
struct Canonical {
    pk: usize,
    ehk: Option<usize>,
    data_start: usize,
    data_len: usize,
    /// Body position after the record.
    end: usize,
}

/// A varint of 1 to 3 bytes (values below 2^21), as `usize`.
#[inline(always)]
fn short_varint(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let b0 = *b.get(i)?;
    if b0 < 0x80 {
        return Some((usize::from(b0), i + 1));
    }
    let b1 = *b.get(i + 1)?;
    if b1 < 0x80 {
        return Some((usize::from(b0 & 0x7F) | usize::from(b1) << 7, i + 2));
    }
    let b2 = *b.get(i + 2)?;
    if b2 < 0x80 {
        return Some((
            usize::from(b0 & 0x7F) | usize::from(b1 & 0x7F) << 7 | usize::from(b2) << 14,
            i + 3,
        ));
    }
    None
}

#[inline(always)]
fn canonical_at(body: &[u8], pos: usize) -> Option<Canonical> {
    crate::wire::tick();
    if *body.get(pos)? != 0x1A {
        return None;
    }
    let (len, start) = short_varint(body, pos + 1)?;
    let end = start + len;
    let rec = body.get(start..end)?;
    if *rec.first()? != 0x08 {
        return None;
    }
    let (pk, mut i) = short_varint(rec, 1)?;
    let mut ehk = None;
    if rec.get(i) == Some(&0x10) {
        let (e, j) = short_varint(rec, i + 1)?;
        ehk = Some(e);
        i = j;
    }
    if rec.get(i) != Some(&0x1A) {
        return None;
    }
    let (data_len, ds) = short_varint(rec, i + 1)?;
    if ds + data_len != rec.len() {
        return None;
    }
    Some(Canonical {
        pk,
        ehk,
        data_start: start + ds,
        data_len,
        end,
    })
}

impl ExactSizeIterator for Records<'_, '_> {}
impl FusedIterator for Records<'_, '_> {}

/// One tag of a user record: what [`Tags`] yields and what
/// [`Record::tags`](crate::Record::tags) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag<'a> {
    /// The tag's key.
    pub key: &'a str,
    /// The tag's value, when set.
    pub value: Option<&'a str>,
}

/// Iterator over a user record's tags (already validated).
/// `Tags::default()` yields none.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tags<'a> {
    /// The rest of the record's fields, and the offset of their first byte.
    rest: &'a [u8],
    base: usize,
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;
    fn next(&mut self) -> Option<Tag<'a>> {
        let mut r = Reader::new(self.rest, self.base);
        let out = loop {
            if r.is_empty() {
                break None;
            }
            let Ok(field) = r.field() else { break None };
            if field.number == 4 && field.wire_type == WT_LEN {
                let Ok((bytes, base)) = r.bytes() else { break None };
                break parse_tag(bytes, base, 2).ok();
            }
            if r.skip(field, 1).is_err() {
                break None;
            }
        };
        let used = r.offset() - self.base;
        self.rest = match out {
            Some(_) => self.rest.get(used..).unwrap_or(&[]),
            None => &[],
        };
        self.base += used;
        out
    }
}

impl FusedIterator for Tags<'_> {}

impl PartialEq for Tags<'_> {
    fn eq(&self, other: &Self) -> bool {
        Iterator::eq(*self, *other)
    }
}

impl Eq for Tags<'_> {}

/// The fields of one `Record` message.
struct RecordFields<'a> {
    pk: u64,
    ehk: Option<u64>,
    data: &'a [u8],
    has_tags: bool,
}

/// Parses one `Record`. `check_tags` validates every tag (first pass);
/// iteration passes `false` since the body was validated already. Records
/// in the canonical layout never get here: [`canonical_at`] reads them.
fn parse_record(bytes: &[u8], base: usize, check_tags: bool) -> Result<RecordFields<'_>, Error> {
    let mut r = Reader::new(bytes, base);
    let mut pk = None;
    let mut ehk = None;
    let mut data = None;
    let mut has_tags = false;
    while !r.is_empty() {
        let f = r.field()?;
        match (f.number, f.wire_type) {
            (1, WT_VARINT) => pk = Some(r.varint()?),
            (2, WT_VARINT) => ehk = Some(r.varint()?),
            (3, WT_LEN) => data = Some(r.bytes()?.0),
            (4, WT_LEN) => {
                let (tag, at) = r.bytes()?;
                has_tags = true;
                if check_tags {
                    parse_tag(tag, at, 2)?;
                }
            }
            // Wrong wire type for a known field: Google keeps it as an
            // unknown field, and so do we.
            _ => r.skip(f, 1)?,
        }
    }
    let pk = pk.ok_or(Error::MissingField {
        offset: base,
        field: Required::PartitionKeyIndex,
    })?;
    let data = data.ok_or(Error::MissingField {
        offset: base,
        field: Required::Data,
    })?;
    Ok(RecordFields {
        pk,
        ehk,
        data,
        has_tags,
    })
}

fn utf8(bytes: &[u8], offset: usize) -> Result<&str, Error> {
    core::str::from_utf8(bytes).map_err(|e| Error::InvalidUtf8 {
        offset: offset + e.valid_up_to(),
    })
}

fn parse_tag(bytes: &[u8], base: usize, depth: usize) -> Result<Tag<'_>, Error> {
    let mut r = Reader::new(bytes, base);
    let mut key = None;
    let mut value = None;
    while !r.is_empty() {
        let f = r.field()?;
        match (f.number, f.wire_type) {
            (1, WT_LEN) => {
                let (b, at) = r.bytes()?;
                key = Some(utf8(b, at)?);
            }
            (2, WT_LEN) => {
                let (b, at) = r.bytes()?;
                value = Some(utf8(b, at)?);
            }
            _ => r.skip(f, depth)?,
        }
    }
    let key = key.ok_or(Error::MissingField {
        offset: base,
        field: Required::TagKey,
    })?;
    Ok(Tag { key, value })
}

/// Validates the whole body, filling the key tables. Returns the number of
/// records and the body position of the first record field.
fn parse_body<'a, T: KeyTable<'a>>(
    body: &'a [u8],
    pks: &mut T,
    ehks: &mut T,
) -> Result<(usize, usize), Error> {
    let base = MAGIC.len();
    let mut pos = 0;
    let mut count = 0usize;
    let mut first = body.len();
    let mut max_pk = 0u64;
    // One more than the largest explicit-hash-key index (0: none seen).
    let mut ehk_end = 0u64;
    while pos < body.len() {
        // A run of canonical records, as producers write them.
        while let Some(c) = canonical_at(body, pos) {
            if count == 0 {
                first = pos;
            }
            count += 1;
            max_pk = max_pk.max(c.pk as u64);
            if let Some(e) = c.ehk {
                ehk_end = ehk_end.max(e as u64 + 1);
            }
            pos = c.end;
        }
        if pos >= body.len() {
            break;
        }
        let mut r = Reader::at(body, pos, base);
        let f: Field = r.field()?;
        match (f.number, f.wire_type) {
            (1, WT_LEN) | (2, WT_LEN) => {
                let (b, at) = r.bytes()?;
                let key = utf8(b, at)?;
                let (table, which) = if f.number == 1 {
                    (&mut *pks, Table::PartitionKey)
                } else {
                    (&mut *ehks, Table::ExplicitHashKey)
                };
                if !table.try_push(key) {
                    return Err(Error::TableFull {
                        offset: f.offset,
                        table: which,
                        capacity: table.capacity(),
                    });
                }
            }
            (3, WT_LEN) => {
                let (b, at) = r.bytes()?;
                let rec = parse_record(b, at, true)?;
                if count == 0 {
                    first = pos;
                }
                count += 1;
                max_pk = max_pk.max(rec.pk);
                if let Some(e) = rec.ehk {
                    ehk_end = ehk_end.max(e.saturating_add(1));
                }
            }
            _ => r.skip(f, 0)?,
        }
        pos = r.pos();
    }
    let pk_len = pks.as_slice().len();
    let ehk_len = ehks.as_slice().len();
    let pk_bad = count > 0 && !fits(max_pk, pk_len);
    let ehk_bad = ehk_end > 0 && !fits(ehk_end - 1, ehk_len);
    if pk_bad || ehk_bad {
        return Err(first_bad_index(body, pk_len, ehk_len));
    }
    Ok((count, first))
}

fn fits(index: u64, len: usize) -> bool {
    usize::try_from(index).is_ok_and(|i| i < len)
}

/// Error path only: finds the first record, in body order, whose index
/// lies outside its table. The body is known to parse.
fn first_bad_index(body: &[u8], pk_len: usize, ehk_len: usize) -> Error {
    let mut r = Reader::new(body, MAGIC.len());
    while let Ok(f) = r.field() {
        if f.number == 3 && f.wire_type == WT_LEN {
            let Ok((b, at)) = r.bytes() else { break };
            let Ok(rec) = parse_record(b, at, false) else {
                break;
            };
            if !fits(rec.pk, pk_len) {
                return Error::IndexOutOfRange {
                    offset: f.offset,
                    table: Table::PartitionKey,
                    index: rec.pk,
                    len: pk_len,
                };
            }
            if let Some(e) = rec.ehk.filter(|&e| !fits(e, ehk_len)) {
                return Error::IndexOutOfRange {
                    offset: f.offset,
                    table: Table::ExplicitHashKey,
                    index: e,
                    len: ehk_len,
                };
            }
        } else if r.skip(f, 0).is_err() {
            break;
        }
    }
    // Unreachable for a body that parsed; report the body start.
    Error::IndexOutOfRange {
        offset: MAGIC.len(),
        table: Table::PartitionKey,
        index: 0,
        len: pk_len,
    }
}

const _: () = assert!(MAX_NESTING >= 3);

#[cfg(test)]
#[cfg(feature = "alloc")]
mod tests {
    //! Deaggregation does work linear in its input for every shape: the
    //! steps counted (field headers, varints, fixed-width skips, records)
    //! stay within a small constant per input byte, and doubling an input
    //! doubles the work.
    use alloc::vec::Vec;

    use md5::{Digest, Md5};

    use super::*;
    use crate::wire::work;

    fn wrap(body: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(body);
        b.extend_from_slice(&Md5::digest(body));
        b
    }

    fn ld(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = alloc::vec![field << 3 | 2];
        let mut n = payload.len();
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend_from_slice(payload);
        v
    }

    /// Steps to classify, validate and fully iterate (tags included). The
    /// tests of millions of steps are left out under Miri: the counts do
    /// not depend on the interpreter.
    fn steps(body: &[u8]) -> (u64, usize) {
        let blob = wrap(body);
        work::take(work::Work::Steps);
        let mut yielded = 0;
        match Options::new().deaggregate(&blob) {
            Ok(Deaggregated::Aggregated(a)) => {
                for r in a.records() {
                    yielded += 1 + r.tags.count();
                }
            }
            Ok(Deaggregated::Plain { .. }) | Err(_) => {}
        }
        (work::take(work::Work::Steps), yielded)
    }

    fn assert_linear(name: &str, make: impl Fn(usize) -> Vec<u8>, n: usize) {
        let small = make(n);
        let large = make(2 * n);
        let (a, ya) = steps(&small);
        let (b, yb) = steps(&large);
        let per_byte = b as f64 / large.len() as f64;
        assert!(per_byte <= 2.0, "{name}: {per_byte:.2} steps per byte");
        let ratio = b as f64 / a as f64;
        let size_ratio = large.len() as f64 / small.len() as f64;
        assert!(
            ratio <= size_ratio * 1.05,
            "{name}: work grew {ratio:.2}x for {size_ratio:.2}x the input"
        );
        assert!(yb >= ya, "{name}");
    }

    /// Canonical records of every shape the one-pass reader takes (key
    /// indices and data lengths in 1- to 3-byte varints, with and without
    /// explicit hash keys) read back as written. (That they take that
    /// reader only changes speed: `CODEC_COUNT` in `benches/codec.rs`
    /// counts the instructions.)
    #[test]
    fn canonical_records_of_every_short_shape_read_back() {
        let mut tables = Vec::new();
        for i in 0..200 {
            tables.extend_from_slice(&ld(1, alloc::format!("k{i}").as_bytes()));
        }
        tables.extend_from_slice(&ld(2, b"7"));
        tables.extend_from_slice(&ld(2, b"8"));
        let record = |pk: usize, ehk: Option<usize>, len: usize| {
            let mut inner = alloc::vec![0x08];
            let mut v = pk;
            while v >= 0x80 {
                inner.push((v as u8) | 0x80);
                v >>= 7;
            }
            inner.push(v as u8);
            if let Some(e) = ehk {
                inner.extend_from_slice(&[0x10, e as u8]);
            }
            inner.extend_from_slice(&ld(3, &alloc::vec![b'x'; len]));
            ld(3, &inner)
        };
        let mut body = tables.clone();
        // Lengths 128 and 16,384 put 0x80 bytes in their varints.
        let shapes = [
            (0, None, 0),
            (1, Some(0), 5),
            (199, Some(1), 127),
            (150, None, 128),
            (4, None, 16_384),
            (3, Some(1), 20_000),
        ];
        for &(pk, ehk, len) in &shapes {
            body.extend_from_slice(&record(pk, ehk, len));
        }
        let blob = wrap(&body);
        let Ok(Deaggregated::Aggregated(a)) = Options::new().deaggregate(&blob) else {
            panic!("not read as aggregated")
        };
        let got: Vec<(&str, Option<&str>, usize)> = a
            .records()
            .map(|r| (r.partition_key, r.explicit_hash_key, r.data.len()))
            .collect();
        let keys: Vec<alloc::string::String> = (0..200).map(|i| alloc::format!("k{i}")).collect();
        let want: Vec<(&str, Option<&str>, usize)> = shapes
            .iter()
            .map(|&(pk, ehk, len)| (keys[pk].as_str(), ehk.map(|e| ["7", "8"][e]), len))
            .collect();
        assert_eq!(got, want);
    }

    /// Short varints are 1 to 3 bytes; a fourth byte, or a missing one,
    /// makes the record take the general loop.
    #[test]
    fn short_varints_are_one_to_three_bytes() {
        let at = |b: &[u8]| short_varint(b, 1);
        assert_eq!(at(&[0xFF, 0x00]), Some((0, 2)));
        assert_eq!(at(&[0xFF, 0x7F]), Some((127, 2)));
        assert_eq!(at(&[0xFF, 0x80, 0x01]), Some((128, 3)));
        assert_eq!(at(&[0xFF, 0xFF, 0x7F]), Some((16_383, 3)));
        assert_eq!(at(&[0xFF, 0x80, 0x80, 0x01]), Some((16_384, 4)));
        assert_eq!(at(&[0xFF, 0xFF, 0xFF, 0x7F]), Some(((1 << 21) - 1, 4)));
        assert_eq!(at(&[0xFF, 0x80, 0x80, 0x80, 0x01]), None, "2^21 takes four bytes");
        assert_eq!(at(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]), None);
        assert_eq!(at(&[0xFF, 0x80]), None, "truncated");
        assert_eq!(at(&[0xFF, 0x80, 0x80]), None, "truncated");
        assert_eq!(at(&[0xFF]), None);
    }

    /// Records that are not canonical (here: a tag after the data, a
    /// field out of order) take the general loop and still come out
    /// right, each counted down exactly once.
    #[test]
    fn records_the_one_pass_reader_refuses_are_read_by_the_general_loop() {
        let mut body = ld(1, b"k");
        let tagged = [&[0x08, 0x00][..], &ld(3, b"a"), &ld(4, &ld(1, b"t"))].concat();
        let reordered = [&ld(3, b"b")[..], &[0x08, 0x00]].concat();
        body.extend_from_slice(&ld(3, &tagged));
        body.extend_from_slice(&ld(3, &reordered));
        body.extend_from_slice(&[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00]);
        let blob = wrap(&body);
        let Ok(Deaggregated::Aggregated(a)) = Options::new().deaggregate(&blob) else {
            panic!()
        };
        let mut it = a.records();
        let mut seen = Vec::new();
        while let Some(r) = it.next() {
            seen.push((r.data, r.tags.count(), it.len()));
        }
        assert_eq!(seen, [(&b"a"[..], 1, 2), (&b"b"[..], 0, 1), (&b""[..], 0, 0)]);
        assert!(it.next().is_none());
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn millions_of_tiny_unknown_fields() {
        // Field 9, varint 0: two bytes each.
        assert_linear("tiny fields", |n| [0x48u8, 0x00].repeat(n), 1_000_000);
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn tiny_records() {
        let make = |n: usize| {
            let mut b = ld(1, b"k");
            for _ in 0..n {
                b.extend_from_slice(&[0x1A, 0x04, 0x08, 0x00, 0x1A, 0x00]);
            }
            b
        };
        assert_linear("tiny records", make, 300_000);
        assert_eq!(steps(&make(1000)).1, 1000);
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn tables_of_100k_keys() {
        let make = |n: usize| {
            let mut b = Vec::new();
            for i in 0..n {
                b.extend_from_slice(&ld(1, alloc::format!("key-{i}").as_bytes()));
            }
            b.extend_from_slice(&[0x1A, 0x05, 0x08, 0x00, 0x1A, 0x01, b'x']);
            b
        };
        assert_linear("100k keys", make, 100_000);
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn records_with_thousands_of_tags() {
        let make = |n: usize| {
            let mut rec = alloc::vec![0x08, 0x00, 0x1A, 0x01, b'x'];
            for i in 0..n {
                let key = alloc::format!("t{i}");
                let tag = [ld(1, key.as_bytes()), ld(2, b"v")].concat();
                rec.extend_from_slice(&ld(4, &tag));
            }
            let mut b = ld(1, b"k");
            b.extend_from_slice(&ld(3, &rec));
            b.extend_from_slice(&ld(3, &rec));
            b
        };
        assert_linear("thousands of tags", make, 5_000);
        assert_eq!(steps(&make(3000)).1, 2 * 3001);
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn maximal_varints_everywhere() {
        let ten = |v: u8| {
            let mut x = [0x80u8; 10];
            x[0] = 0x80 | v;
            x[9] = 0x00;
            x
        };
        let make = |n: usize| {
            let mut b = ld(1, b"k");
            for _ in 0..n {
                let mut rec = alloc::vec![0x08];
                rec.extend_from_slice(&ten(0));
                rec.push(0x1A);
                rec.extend_from_slice(&ten(1));
                rec.push(b'x');
                b.push(0x1A);
                b.push(rec.len() as u8);
                b.extend_from_slice(&rec);
                // An unknown field with a maximal varint tag and value.
                b.extend_from_slice(&[0xF8, 0xFF, 0xFF, 0xFF, 0x0F]);
                b.extend_from_slice(&ten(5));
            }
            b
        };
        assert_linear("maximal varints", make, 100_000);
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn deep_groups_repeated() {
        let make = |n: usize| {
            let mut b = ld(1, b"k");
            for _ in 0..n {
                b.extend_from_slice(&[0x2B; 100]);
                b.extend_from_slice(&[0x2C; 100]);
            }
            b
        };
        assert_linear("deep groups", make, 10_000);
    }

    #[test]
    #[cfg_attr(miri, ignore = "millions of steps")]
    fn an_index_error_late_in_a_long_body_is_still_linear() {
        // The error path rescans the body once to name the first bad record.
        let make = |n: usize| {
            let mut b = ld(1, b"k");
            for _ in 0..n {
                b.extend_from_slice(&[0x1A, 0x05, 0x08, 0x00, 0x1A, 0x01, b'x']);
            }
            b.extend_from_slice(&[0x1A, 0x05, 0x08, 0x07, 0x1A, 0x01, b'x']);
            b
        };
        assert_linear("late index error", make, 200_000);
    }
}
