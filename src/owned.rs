//! An owned user record (feature `alloc`), and with feature `arbitrary` a
//! generator of valid ones for fuzz targets.

use alloc::string::String;
use alloc::vec::Vec;

use crate::decode::UserRecord;
use crate::encode::Record;

/// A user record that owns its partition key, explicit hash key and data.
///
/// It does not keep tags: a record converted from a tagged
/// [`UserRecord`] loses them. To rebuild tagged records, collect each
/// record's [`tags`](UserRecord::tags) beside it and add the borrowed form
/// with [`Record::with_tags`].
///
/// # Examples
/// ```
/// use kinesis_agg::{OwnedRecord, Record};
/// let owned = OwnedRecord::from(Record::new("k", b"v"));
/// assert_eq!(owned.as_record(), Record::new("k", b"v"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnedRecord {
    /// Partition key.
    pub partition_key: String,
    /// Explicit hash key, if any.
    pub explicit_hash_key: Option<String>,
    /// Data.
    pub data: Vec<u8>,
}

impl OwnedRecord {
    /// A borrowed view, to add to an aggregator.
    pub fn as_record(&self) -> Record<'_> {
        Record::new(&self.partition_key, &self.data)
            .with_optional_explicit_hash_key(self.explicit_hash_key.as_deref())
    }
}

impl From<Record<'_>> for OwnedRecord {
    fn from(r: Record<'_>) -> Self {
        OwnedRecord {
            partition_key: r.partition_key.into(),
            explicit_hash_key: r.explicit_hash_key.map(Into::into),
            data: r.data.into(),
        }
    }
}

impl From<UserRecord<'_>> for OwnedRecord {
    fn from(r: UserRecord<'_>) -> Self {
        OwnedRecord {
            partition_key: r.partition_key.into(),
            explicit_hash_key: r.explicit_hash_key.map(Into::into),
            data: r.data.into(),
        }
    }
}

/// Generates only records an aggregator accepts: a partition key of 1 to
/// 256 UTF-16 code units, an explicit hash key (when present) in
/// `0..=2^128-1` written canonically, any data.
///
/// Fuzz a consumer with valid aggregated records:
///
/// ```
/// use arbitrary::{Arbitrary, Unstructured};
/// use kinesis_agg::{OwnedRecord, RecordAggregator};
///
/// let fuzz_input = [7u8; 300]; // what libFuzzer hands a target
/// let mut u = Unstructured::new(&fuzz_input);
/// let records: Vec<OwnedRecord> = Vec::arbitrary(&mut u).unwrap();
/// let mut agg = RecordAggregator::new();
/// let mut blobs = Vec::new();
/// for r in &records {
///     if let Some(done) = agg.add(r.as_record()).unwrap() {
///         blobs.push(done.into_data());
///     }
/// }
/// blobs.extend(agg.finish().map(|a| a.into_data()));
/// // ... hand each blob to the consumer under test.
/// ```
#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for OwnedRecord {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let raw: String = u.arbitrary()?;
        let mut partition_key = String::new();
        let mut units = 0;
        for c in raw.chars() {
            if units + c.len_utf16() > crate::MAX_PARTITION_KEY_UNITS {
                break;
            }
            units += c.len_utf16();
            partition_key.push(c);
        }
        if partition_key.is_empty() {
            partition_key.push('k');
        }
        let explicit_hash_key = if u.arbitrary()? {
            let v: u128 = u.arbitrary()?;
            Some(alloc::format!("{v}"))
        } else {
            None
        };
        Ok(OwnedRecord {
            partition_key,
            explicit_hash_key,
            data: u.arbitrary()?,
        })
    }
}
