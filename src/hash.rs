//! Hash keys: the 128-bit decimal strings Kinesis routes by.

use crate::error::Error;
use crate::limits::HASH_KEY_MAX_DIGITS;

/// Parses an explicit hash key the way the Kinesis API accepts it: a
/// decimal integer matching `0|[1-9][0-9]{0,38}` whose value is at most
/// 2^128-1.
///
/// # Errors
/// [`Error::InvalidHashKey`] with the position of the first offending
/// character: a non-digit, a leading zero, or the digit that takes the
/// value past 2^128-1; 0 for an empty string.
///
/// # Examples
/// ```
/// use kinesis_agg::{parse_hash_key, Error};
/// let bad = |position| Err(Error::InvalidHashKey { position });
/// assert_eq!(parse_hash_key("0"), Ok(0));
/// assert_eq!(parse_hash_key("340282366920938463463374607431768211455"), Ok(u128::MAX));
/// assert_eq!(parse_hash_key("340282366920938463463374607431768211456"), bad(38));
/// assert_eq!(parse_hash_key("007"), bad(0));
/// assert_eq!(parse_hash_key("12a"), bad(2));
/// assert_eq!(parse_hash_key(""), bad(0));
/// ```
pub fn parse_hash_key(s: &str) -> Result<u128, Error> {
    parse_digits(s).map_err(|position| Error::InvalidHashKey { position })
}

fn parse_digits(s: &str) -> Result<u128, usize> {
    let bytes = s.as_bytes();
    match bytes {
        [] => return Err(0),
        [b'0'] => return Ok(0),
        [b'0', ..] => return Err(0),
        _ => {}
    }
    let mut value: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(i);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .ok_or(i)?;
    }
    Ok(value)
}

/// The hash key Kinesis computes for a partition key: the MD5 of its UTF-8
/// bytes read as a big-endian unsigned 128-bit integer.
///
/// # Examples
/// ```
/// // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
/// assert_eq!(kinesis_agg::partition_key_hash("a"), 0x0cc175b9c0f1b6a831c399e269772661);
/// ```
pub fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(crate::checksum::md5(partition_key.as_bytes()))
}

/// A user record's effective hash key: its explicit hash key if it has
/// one, else the MD5 of its partition key.
///
/// # Errors
/// [`Error::InvalidHashKey`] when the explicit hash key is not a valid
/// hash key.
///
/// # Examples
/// ```
/// use kinesis_agg::{effective_hash_key, partition_key_hash};
/// assert_eq!(effective_hash_key("a", Some("7")), Ok(7));
/// assert_eq!(effective_hash_key("a", None), Ok(partition_key_hash("a")));
/// ```
pub fn effective_hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> Result<u128, Error> {
    match explicit_hash_key {
        Some(e) => parse_hash_key(e),
        None => Ok(partition_key_hash(partition_key)),
    }
}

/// Writes `key` in decimal, as the Kinesis API prints hash keys, into
/// `buf` and returns the digits. No heap.
///
/// # Examples
/// ```
/// let mut buf = [0u8; kinesis_agg::HASH_KEY_MAX_DIGITS];
/// assert_eq!(kinesis_agg::write_hash_key(u128::MAX, &mut buf), "340282366920938463463374607431768211455");
/// assert_eq!(kinesis_agg::write_hash_key(0, &mut buf), "0");
/// ```
pub fn write_hash_key(key: u128, buf: &mut [u8; HASH_KEY_MAX_DIGITS]) -> &str {
    let mut i = buf.len();
    let mut v = key;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    core::str::from_utf8(&buf[i..]).unwrap_or("")
}

/// An inclusive range of hash keys, as a shard owns them.
///
/// # Examples
/// ```
/// use kinesis_agg::HashKeyRange;
/// let r: HashKeyRange = "0:170141183460469231731687303715884105727".parse().unwrap();
/// assert!(r.contains(0) && r.contains(1 << 126) && !r.contains(1 << 127));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HashKeyRange {
    /// First hash key in the range.
    pub start: u128,
    /// Last hash key in the range (inclusive).
    pub end: u128,
}

impl HashKeyRange {
    /// Every hash key: what a one-shard stream owns.
    pub const FULL: HashKeyRange = HashKeyRange {
        start: 0,
        end: u128::MAX,
    };

    /// A range, or `None` when `start > end`.
    pub const fn new(start: u128, end: u128) -> Option<Self> {
        if start <= end {
            Some(HashKeyRange { start, end })
        } else {
            None
        }
    }

    /// Whether `key` lies in the range, bounds included.
    pub const fn contains(&self, key: u128) -> bool {
        self.start <= key && key <= self.end
    }

    /// Parses the range from the API's decimal start and end hash keys.
    ///
    /// # Errors
    /// [`Error::InvalidHashKeyRange`] when either is not a hash key or the
    /// start exceeds the end.
    pub fn from_decimal(start: &str, end: &str) -> Result<Self, Error> {
        let s = parse_hash_key(start).map_err(|_| Error::InvalidHashKeyRange)?;
        let e = parse_hash_key(end).map_err(|_| Error::InvalidHashKeyRange)?;
        HashKeyRange::new(s, e).ok_or(Error::InvalidHashKeyRange)
    }
}

impl core::str::FromStr for HashKeyRange {
    type Err = Error;
    /// `START:END`, both decimal.
    fn from_str(s: &str) -> Result<Self, Error> {
        let (a, b) = s.split_once(':').ok_or(Error::InvalidHashKeyRange)?;
        HashKeyRange::from_decimal(a, b)
    }
}

impl core::fmt::Display for HashKeyRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.start, self.end)
    }
}

/// The index of the range holding `key`, by binary search over `ranges`
/// sorted by start and disjoint (as a stream's open shards are). No heap:
/// the table may be a `static` array. With the `alloc` feature,
/// [`ShardMap::route`](crate::ShardMap::route) does this over a map it
/// keeps sorted and checked.
///
/// # Examples
/// ```
/// use kinesis_agg::{route, HashKeyRange};
/// let half = 1u128 << 127;
/// let shards = [HashKeyRange::new(0, half - 1).unwrap(), HashKeyRange::new(half, u128::MAX).unwrap()];
/// assert_eq!(route(&shards, 5), Some(0));
/// assert_eq!(route(&shards, half), Some(1));
/// assert_eq!(route(&shards[..1], half), None);
/// ```
pub fn route(ranges: &[HashKeyRange], key: u128) -> Option<usize> {
    // Index of the last range whose start is <= key.
    let i = ranges.partition_point(|r| r.start <= key).checked_sub(1)?;
    ranges[i].contains(key).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_power_of_ten_and_the_maximum() {
        let mut buf = [0u8; HASH_KEY_MAX_DIGITS];
        let mut v: u128 = 1;
        for digits in 1..=39 {
            let s = write_hash_key(v, &mut buf);
            assert_eq!(s.len(), digits);
            assert_eq!(parse_hash_key(s), Ok(v));
            let s = write_hash_key(v - 1, &mut buf);
            assert_eq!(parse_hash_key(s), Ok(v - 1));
            v = v.saturating_mul(10);
        }
    }

    #[test]
    fn route_edges() {
        let r = |a: u128, b: u128| HashKeyRange::new(a, b).unwrap();
        let ranges = [r(0, 9), r(10, 10), r(11, 99), r(200, u128::MAX)];
        assert_eq!(route(&ranges, 0), Some(0));
        assert_eq!(route(&ranges, 9), Some(0));
        assert_eq!(route(&ranges, 10), Some(1));
        assert_eq!(route(&ranges, 11), Some(2));
        assert_eq!(route(&ranges, 99), Some(2));
        assert_eq!(route(&ranges, 100), None);
        assert_eq!(route(&ranges, 199), None);
        assert_eq!(route(&ranges, 200), Some(3));
        assert_eq!(route(&ranges, u128::MAX), Some(3));
        assert_eq!(route(&[], 5), None);
        assert_eq!(route(&ranges[2..], 5), None);
        assert_eq!(HashKeyRange::new(2, 1), None);
        assert_eq!("1:0".parse::<HashKeyRange>(), Err(Error::InvalidHashKeyRange));
        assert_eq!("1-2".parse::<HashKeyRange>(), Err(Error::InvalidHashKeyRange));
        assert_eq!("01:2".parse::<HashKeyRange>(), Err(Error::InvalidHashKeyRange));
        assert_eq!("5:5".parse::<HashKeyRange>(), Ok(r(5, 5)));
    }

    #[test]
    fn accepts_exactly_the_api_grammar() {
        let parse_hash_key = parse_digits;
        assert_eq!(parse_hash_key("1"), Ok(1));
        assert_eq!(parse_hash_key("9"), Ok(9));
        assert_eq!(parse_hash_key("10"), Ok(10));
        // 39 digits below the maximum.
        assert_eq!(
            parse_hash_key("100000000000000000000000000000000000000"),
            Ok(10u128.pow(38))
        );
        // 40 digits: too large whatever they are.
        assert_eq!(
            parse_hash_key("1000000000000000000000000000000000000000"),
            Err(39)
        );
        assert_eq!(parse_hash_key("00"), Err(0));
        assert_eq!(parse_hash_key("-1"), Err(0));
        assert_eq!(parse_hash_key("+1"), Err(0));
        assert_eq!(parse_hash_key(" 1"), Err(0));
        assert_eq!(parse_hash_key("1 "), Err(1));
        assert_eq!(parse_hash_key("١"), Err(0));
    }
}
