//! Protobuf primitives: varints, tags and length-delimited fields.
//!
//! Reading follows Google's parser: a varint is at most 10 bytes, non-minimal
//! encodings are accepted, and bits above 64 in a tenth byte are dropped
//! (Google's C++ and upb parsers truncate; prost rejects them). Writing is
//! always minimal, which is what every reference encoder emits.

use crate::error::Error;
use crate::limits::MAX_NESTING;

/// Varint wire type.
pub(crate) const WT_VARINT: u8 = 0;
/// Fixed 64-bit wire type.
pub(crate) const WT_I64: u8 = 1;
/// Length-delimited wire type.
pub(crate) const WT_LEN: u8 = 2;
/// Deprecated group start.
pub(crate) const WT_SGROUP: u8 = 3;
/// Deprecated group end.
pub(crate) const WT_EGROUP: u8 = 4;
/// Fixed 32-bit wire type.
pub(crate) const WT_I32: u8 = 5;

/// Largest field number protobuf allows (2^29 - 1).
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Number of bytes the minimal varint encoding of `v` takes (1 to 10).
#[inline]
pub(crate) const fn varint_len(v: u64) -> usize {
    // Lengths, indices and counts are almost always below 2^14: two
    // comparisons decide them. Otherwise 1 + floor(bits / 7).
    if v < 0x80 {
        1
    } else if v < 0x4000 {
        2
    } else {
        let bits = 64 - v.leading_zeros() as usize;
        bits.div_ceil(7)
    }
}

/// Writes the minimal varint of `v` at `out[pos..]` and returns the new
/// position. The caller guarantees room (sizes are computed beforehand).
#[inline(always)]
pub(crate) fn put_varint(out: &mut [u8], mut pos: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[pos] = (v as u8) | 0x80;
        v >>= 7;
        pos += 1;
    }
    out[pos] = v as u8;
    pos + 1
}

/// Work counting for the tests that bound how work grows, per thread and
/// in test builds only: [`Work::Steps`] for the linear-time tests (hostile
/// input must cost work in proportion to its size, never more: each field
/// header, varint and fast-path record read is one step), and
/// [`Work::Moves`] for the moves of records in an aggregator's buffer. The
/// tests bound a count or compare how it grows, never pin one.
#[cfg(test)]
pub(crate) mod work {
    use core::cell::Cell;
    /// What is counted.
    #[derive(Clone, Copy)]
    pub(crate) enum Work {
        Steps = 0,
        Moves = 1,
    }
    std::thread_local! {
        static COUNTS: [Cell<u64>; 2] = const { [Cell::new(0), Cell::new(0)] };
    }
    pub(crate) fn count(w: Work) {
        COUNTS.with(|c| c[w as usize].set(c[w as usize].get() + 1));
    }
    /// The count since the last take, on this thread.
    pub(crate) fn take(w: Work) -> u64 {
        COUNTS.with(|c| c[w as usize].replace(0))
    }
}

#[inline(always)]
pub(crate) fn tick() {
    #[cfg(test)]
    work::count(work::Work::Steps);
}

/// A bounds-checked reader over one protobuf message body.
///
/// `base` is the absolute offset of `buf[0]` in the caller's blob, so that
/// every error names a position in the data the user handed in.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

/// One field header: number and wire type, with the offset of its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub number: u64,
    pub wire_type: u8,
    pub offset: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// A reader over `buf` positioned at `pos`.
    #[inline]
    pub(crate) fn at(buf: &'a [u8], pos: usize, base: usize) -> Self {
        Reader { buf, pos, base }
    }

    /// Position of the next unread byte in `buf`.
    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Absolute offset of the next unread byte.
    #[inline]
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Reads a varint of at most 10 bytes.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, Error> {
        tick();
        let start = self.pos;
        if let Some(&b) = self.buf.get(start)
            && b < 0x80
        {
            self.pos = start + 1;
            return Ok(u64::from(b));
        }
        let mut value: u64 = 0;
        let mut i = 0;
        while i < 10 {
            let Some(&b) = self.buf.get(start + i) else {
                return Err(Error::Truncated {
                    offset: self.base + start,
                });
            };
            // Bits past 64 in the tenth byte are dropped, as Google does.
            value |= u64::from(b & 0x7F).wrapping_shl(7 * i as u32);
            i += 1;
            if b < 0x80 {
                self.pos = start + i;
                return Ok(value);
            }
        }
        Err(Error::VarintTooLong {
            offset: self.base + start,
        })
    }

    /// Reads a field header. Field number 0, numbers above 2^29-1, tags
    /// that do not fit 32 bits and wire types 6 and 7 are rejected.
    #[inline]
    pub(crate) fn field(&mut self) -> Result<Field, Error> {
        tick();
        let offset = self.offset();
        // Fast path: one-byte tag.
        if let Some(&b) = self.buf.get(self.pos)
            && (8..0x80).contains(&b)
            && (b & 7) < 6
        {
            self.pos += 1;
            return Ok(Field {
                number: u64::from(b >> 3),
                wire_type: b & 7,
                offset,
            });
        }
        let tag = self.varint()?;
        let number = tag >> 3;
        let wire_type = (tag & 7) as u8;
        if number == 0 || number > MAX_FIELD {
            return Err(Error::InvalidTag { offset });
        }
        if wire_type > WT_I32 {
            return Err(Error::InvalidWireType { offset, wire_type });
        }
        Ok(Field {
            number,
            wire_type,
            offset,
        })
    }

    /// Reads a length prefix and returns the bytes it covers together with
    /// their absolute offset.
    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<(&'a [u8], usize), Error> {
        let len_offset = self.offset();
        let len = self.varint()?;
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or(Error::LengthPastEnd { offset: len_offset })?;
        self.pos = end;
        Ok((&self.buf[start..end], self.base + start))
    }

    /// Advances `n` bytes, or fails with `Truncated` at `offset`.
    #[inline]
    fn advance(&mut self, n: usize, offset: usize) -> Result<(), Error> {
        tick();
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                self.pos = end;
                Ok(())
            }
            _ => Err(Error::Truncated { offset }),
        }
    }

    /// Skips the value of an unknown field whose header was just read.
    ///
    /// `depth` is the nesting depth of the message being read; a group
    /// opened here may nest further groups up to [`MAX_NESTING`] in total.
    /// Groups are skipped without recursion: only the field numbers of the
    /// open groups are remembered, in a fixed array on the stack.
    pub(crate) fn skip(&mut self, field: Field, depth: usize) -> Result<(), Error> {
        match field.wire_type {
            WT_SGROUP => self.skip_group(field, depth),
            _ => self.skip_scalar(field),
        }
    }

    /// Skips a value that is not a group.
    #[inline]
    fn skip_scalar(&mut self, field: Field) -> Result<(), Error> {
        match field.wire_type {
            WT_VARINT => self.varint().map(|_| ()),
            WT_I64 => self.advance(8, self.offset()),
            WT_LEN => self.bytes().map(|_| ()),
            WT_I32 => self.advance(4, self.offset()),
            // An end-group tag with no group open (start-group is handled
            // by the caller).
            _ => Err(Error::UnexpectedEndGroup { offset: field.offset }),
        }
    }

    /// Skips a group and every group nested in it, without recursion:
    /// only the field numbers of the open groups are remembered, in a fixed
    /// array on the stack (kept out of the callers' frames).
    #[inline(never)]
    #[cold]
    fn skip_group(&mut self, first: Field, depth: usize) -> Result<(), Error> {
        let mut open = [0u32; MAX_NESTING];
        let mut n = 0usize;
        let mut next = first;
        loop {
            if next.wire_type == WT_SGROUP {
                if depth + n + 1 > MAX_NESTING {
                    return Err(Error::NestingTooDeep { offset: next.offset });
                }
                // Field numbers are below 2^29, so they fit a u32.
                open[n] = next.number as u32;
                n += 1;
            } else if next.wire_type == WT_EGROUP {
                // n >= 1 here: the loop only reads fields inside a group.
                if u64::from(open[n - 1]) != next.number {
                    return Err(Error::UnexpectedEndGroup { offset: next.offset });
                }
                n -= 1;
                if n == 0 {
                    return Ok(());
                }
            } else {
                self.skip_scalar(next)?;
            }
            if self.is_empty() {
                return Err(Error::Truncated {
                    offset: self.offset(),
                });
            }
            next = self.field()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: u64) -> ([u8; 10], usize) {
        let mut out = [0u8; 10];
        let n = put_varint(&mut out, 0, v);
        (out, n)
    }

    #[test]
    fn field_numbers_are_valid_from_1_to_2_pow_29_minus_1() {
        let tag = |number: u64, wire_type: u64| encode(number << 3 | wire_type);
        for (number, ok) in [
            (1, true),
            (15, true),
            (16, true),
            (MAX_FIELD, true),
            (MAX_FIELD + 1, false),
        ] {
            let (buf, n) = tag(number, 0);
            let got = Reader::new(&buf[..n], 7).field();
            if ok {
                assert_eq!(
                    got,
                    Ok(Field {
                        number,
                        wire_type: 0,
                        offset: 7
                    }),
                    "field {number}"
                );
            } else {
                assert_eq!(got, Err(Error::InvalidTag { offset: 7 }), "field {number}");
            }
        }
        // Field 0, in one byte and in a longer varint.
        assert_eq!(
            Reader::new(&[0x00], 0).field(),
            Err(Error::InvalidTag { offset: 0 })
        );
        assert_eq!(
            Reader::new(&[0x80, 0x00], 0).field(),
            Err(Error::InvalidTag { offset: 0 })
        );
        // Every defined wire type, 5 (fixed32) the last, in one byte and
        // beyond.
        for wt in 0u64..=5 {
            for number in [1u64, 15, 16, 100, MAX_FIELD] {
                let (buf, n) = tag(number, wt);
                assert_eq!(
                    Reader::new(&buf[..n], 0).field(),
                    Ok(Field {
                        number,
                        wire_type: wt as u8,
                        offset: 0
                    }),
                    "field {number}, wire type {wt}"
                );
            }
        }
        // Wire types 6 and 7, in one byte and beyond.
        for wt in [6u64, 7] {
            for number in [1u64, 100] {
                let (buf, n) = tag(number, wt);
                assert_eq!(
                    Reader::new(&buf[..n], 0).field(),
                    Err(Error::InvalidWireType {
                        offset: 0,
                        wire_type: wt as u8
                    })
                );
            }
        }
    }

    #[test]
    fn varint_round_trips_at_every_7_bit_boundary() {
        for k in 0..64u32 {
            let edge = 1u64 << k;
            for v in [edge - 1, edge, edge + 1, edge.wrapping_mul(2).wrapping_sub(1)] {
                let (buf, n) = encode(v);
                assert_eq!(n, varint_len(v), "length of {v}");
                let mut r = Reader::new(&buf[..n], 0);
                assert_eq!(r.varint(), Ok(v));
                assert!(r.is_empty());
            }
        }
        assert_eq!(encode(u64::MAX).1, 10);
    }

    #[test]
    fn varint_len_changes_exactly_at_multiples_of_7_bits() {
        assert_eq!(varint_len(0), 1);
        for bytes in 1..10usize {
            let last = (1u64 << (7 * bytes)) - 1;
            assert_eq!(varint_len(last), bytes);
            assert_eq!(varint_len(last + 1), bytes + 1);
        }
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn non_minimal_varints_are_accepted() {
        // 1 written in 10 bytes.
        let buf = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(Reader::new(&buf, 0).varint(), Ok(1));
        // 0 written as 0x80 0x00.
        assert_eq!(Reader::new(&[0x80, 0x00], 0).varint(), Ok(0));
    }

    #[test]
    fn tenth_byte_overflow_bits_are_dropped_like_google() {
        let mut buf = [0xFFu8; 10];
        buf[9] = 0x7F;
        assert_eq!(Reader::new(&buf, 0).varint(), Ok(u64::MAX));
    }

    #[test]
    fn eleven_byte_varint_is_rejected() {
        let buf = [0x80u8; 11];
        assert_eq!(
            Reader::new(&buf, 7).varint(),
            Err(Error::VarintTooLong { offset: 7 })
        );
        let mut ok = [0x80u8; 11];
        ok[10] = 0;
        assert_eq!(
            Reader::new(&ok, 0).varint(),
            Err(Error::VarintTooLong { offset: 0 })
        );
    }

    #[test]
    fn truncated_varint_names_its_start() {
        assert_eq!(
            Reader::new(&[0x80, 0x80], 3).varint(),
            Err(Error::Truncated { offset: 3 })
        );
        assert_eq!(Reader::new(&[], 3).varint(), Err(Error::Truncated { offset: 3 }));
    }

    #[test]
    fn field_headers() {
        let mut r = Reader::new(&[0x0A, 0x18, 0xF8, 0xFF, 0xFF, 0xFF, 0x0F], 0);
        assert_eq!(
            r.field(),
            Ok(Field {
                number: 1,
                wire_type: 2,
                offset: 0
            })
        );
        assert_eq!(r.field().map(|f| (f.number, f.wire_type)), Ok((3, 0)));
        // Largest field number, varint wire type.
        assert_eq!(r.field().map(|f| (f.number, f.wire_type)), Ok((MAX_FIELD, 0)));
        // Field number 0.
        assert_eq!(
            Reader::new(&[0x02], 0).field(),
            Err(Error::InvalidTag { offset: 0 })
        );
        // Field number 2^29 (tag 0x1_0000_0000 >> 3 overflows the limit).
        let big = [0x80, 0x80, 0x80, 0x80, 0x10];
        assert_eq!(Reader::new(&big, 0).field(), Err(Error::InvalidTag { offset: 0 }));
        // Wire types 6 and 7.
        assert_eq!(
            Reader::new(&[0x0E], 0).field(),
            Err(Error::InvalidWireType {
                offset: 0,
                wire_type: 6
            })
        );
        assert_eq!(
            Reader::new(&[0x0F], 0).field(),
            Err(Error::InvalidWireType {
                offset: 0,
                wire_type: 7
            })
        );
        // Two-byte tag for field 16.
        let mut r = Reader::new(&[0x82, 0x01], 0);
        assert_eq!(r.field().map(|f| (f.number, f.wire_type)), Ok((16, 2)));
    }

    #[test]
    fn length_delimited_bounds() {
        let mut r = Reader::new(&[0x02, b'h', b'i', 0x03, b'x'], 10);
        assert_eq!(r.bytes(), Ok((&b"hi"[..], 11)));
        assert_eq!(r.bytes(), Err(Error::LengthPastEnd { offset: 13 }));
        // A length near u64::MAX must not overflow.
        let huge = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        assert_eq!(
            Reader::new(&huge, 0).bytes(),
            Err(Error::LengthPastEnd { offset: 0 })
        );
    }

    fn skip_all(buf: &[u8]) -> Result<(), Error> {
        let mut r = Reader::new(buf, 0);
        while !r.is_empty() {
            let f = r.field()?;
            r.skip(f, 0)?;
        }
        Ok(())
    }

    #[test]
    fn skips_every_wire_type() {
        // varint, fixed64, length-delimited, fixed32
        let buf = [
            0x08, 0x96, 0x01, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1A, 0x01, 0xAA, 0x25, 1, 2, 3, 4,
        ];
        assert_eq!(skip_all(&buf), Ok(()));
        assert_eq!(skip_all(&buf[..18]), Err(Error::Truncated { offset: 16 }));
        assert_eq!(skip_all(&buf[..8]), Err(Error::Truncated { offset: 4 }));
    }

    #[test]
    fn skips_nested_groups_and_checks_their_numbers() {
        // group 5 { group 6 { varint 1 } } : 0x2B 0x33 0x08 0x01 0x34 0x2C
        assert_eq!(skip_all(&[0x2B, 0x33, 0x08, 0x01, 0x34, 0x2C]), Ok(()));
        // Mismatched end: group 5 closed as 6.
        assert_eq!(
            skip_all(&[0x2B, 0x34]),
            Err(Error::UnexpectedEndGroup { offset: 1 })
        );
        // End group with nothing open.
        assert_eq!(skip_all(&[0x2C]), Err(Error::UnexpectedEndGroup { offset: 0 }));
        // Unterminated group.
        assert_eq!(skip_all(&[0x2B, 0x08, 0x01]), Err(Error::Truncated { offset: 3 }));
    }

    #[test]
    fn group_nesting_limit() {
        let mut ok = [0u8; 2 * MAX_NESTING];
        ok[..MAX_NESTING].fill(0x2B);
        ok[MAX_NESTING..].fill(0x2C);
        assert_eq!(skip_all(&ok), Ok(()));
        let mut deep = [0u8; 2 * MAX_NESTING + 2];
        deep[..=MAX_NESTING].fill(0x2B);
        deep[MAX_NESTING + 1..].fill(0x2C);
        assert_eq!(
            skip_all(&deep),
            Err(Error::NestingTooDeep { offset: MAX_NESTING })
        );
    }
}
