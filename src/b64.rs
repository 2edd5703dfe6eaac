//! Standard base64 (RFC 4648 §4), as the Kinesis API, Lambda events and
//! the AWS CLI carry record data (feature `b64`).
//!
//! One codec for every face that meets base64 text: the proxy's PutRecords
//! and GetRecords, the CLI's inputs and outputs, the Python bindings. It
//! runs on `base64-simd`, which picks SSSE3, AVX2 or NEON code at run time
//! (3 to 6 times the speed of a scalar codec here, from 100-byte records
//! up); this module adds what the faces need on top: padding that is
//! required or optional, appending to and writing into caller storage,
//! and an error that says what is wrong and where.
//!
//! Decoding is strict in everything but padding: only the 64 characters
//! of the standard alphabet, no whitespace, and the unused bits of the
//! last character zero (each binary value has one text).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Whether `=` padding must end a text whose length is not a multiple of
/// four characters' worth of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// The text's length is a multiple of 4, padded with `=` (what
    /// Lambda delivers and the RFC requires).
    Required,
    /// Padding may be there or not (the AWS SDKs accept both, and some
    /// clients leave it out).
    Optional,
}

/// Why a text is not standard base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base64Error {
    /// A byte outside the alphabet (or `=` where it cannot be), at this
    /// offset in the text.
    InvalidByte {
        /// Its offset in the text.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// The text has a length no encoding gives (one character past a
    /// multiple of 4, or, with padding required, any length that is not
    /// a multiple of 4).
    InvalidLength(usize),
    /// The last character carries bits that are not zero beyond the data
    /// (at this offset): no encoder writes it.
    TrailingBits(usize),
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Base64Error::InvalidByte { offset, byte } if byte.is_ascii_graphic() => {
                write!(f, "invalid character '{}' at offset {offset}", byte as char)
            }
            Base64Error::InvalidByte { offset, byte } => {
                write!(f, "invalid byte 0x{byte:02x} at offset {offset}")
            }
            Base64Error::InvalidLength(n) => {
                write!(f, "a length of {n} characters, which no base64 text has")
            }
            Base64Error::TrailingBits(offset) => {
                write!(f, "the character at offset {offset} has bits set beyond the data")
            }
        }
    }
}

impl core::error::Error for Base64Error {}

/// The length of the padded text of `n` bytes, or `None` past `usize`.
pub const fn encoded_len(n: usize) -> Option<usize> {
    match n.checked_add(2) {
        Some(m) => (m / 3).checked_mul(4),
        None => None,
    }
}

/// Appends the padded base64 text of `data` to `out`.
pub fn encode_append(data: &[u8], out: &mut String) {
    base64_simd::STANDARD.encode_append(data, out);
}

/// Appends the padded base64 text of `data` to `out`, as bytes (for a
/// body being written, such as JSON's).
pub fn encode_append_vec(data: &[u8], out: &mut Vec<u8>) {
    base64_simd::STANDARD.encode_append(data, out);
}

/// The padded base64 text of `data`.
pub fn encode(data: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(data)
}

/// Writes the padded base64 text of `data` into `out`, which must be
/// exactly [`encoded_len`]`(data.len())` bytes long (else `false`, and
/// nothing is written): for storage another runtime owns, such as a
/// Python `bytes` being made.
pub fn encode_into(data: &[u8], out: &mut [u8]) -> bool {
    if encoded_len(data.len()) != Some(out.len()) {
        return false;
    }
    let _written = base64_simd::STANDARD.encode(data, base64_simd::Out::from_slice(out));
    true
}

/// Decodes `text`, appending the bytes to `out`. On an error `out` is as
/// it was.
pub fn decode_append(text: &[u8], padding: Padding, out: &mut Vec<u8>) -> Result<(), Base64Error> {
    let start = out.len();
    let unpadded = match padding {
        Padding::Required if !text.len().is_multiple_of(4) => {
            return Err(Base64Error::InvalidLength(text.len()));
        }
        Padding::Required | Padding::Optional => strip_padding(text),
    };
    // The text without its padding, decoded as such: one rule for both
    // forms (base64-simd's padded decoder would also want the length a
    // multiple of 4, which an unpadded text is not).
    match base64_simd::STANDARD_NO_PAD.decode_append(unpadded, out) {
        Ok(()) => Ok(()),
        Err(_) => {
            out.truncate(start);
            Err(explain(text, unpadded.len()))
        }
    }
}

/// Decodes `text` into a new vector.
pub fn decode(text: &[u8], padding: Padding) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::new();
    decode_append(text, padding, &mut out)?;
    Ok(out)
}

/// `text` without the padding a complete text ends with: up to two `=`,
/// and only when they make the length a multiple of 4. Any other `=` is
/// left for the decoder to refuse.
fn strip_padding(text: &[u8]) -> &[u8] {
    match text {
        [rest @ .., b'=', b'='] if text.len().is_multiple_of(4) => rest,
        [rest @ .., b'='] if matches!(text.len() % 4, 0 | 3) => {
            // "QQ=" (a partial pad) is accepted too: optional padding
            // is taken loosely, whatever of it is there.
            rest
        }
        _ => text,
    }
}

/// What is wrong with a text the decoder refused: the first byte outside
/// the alphabet, else its length, else the last character's spare bits.
/// Only run on failure, so it may be slow.
fn explain(text: &[u8], unpadded: usize) -> Base64Error {
    for (offset, &byte) in text[..unpadded].iter().enumerate() {
        if value(byte).is_none() {
            return Base64Error::InvalidByte { offset, byte };
        }
    }
    if let Some((offset, &byte)) = text.iter().enumerate().skip(unpadded).find(|&(_, &b)| b != b'=') {
        return Base64Error::InvalidByte { offset, byte };
    }
    let spare_mask = match unpadded % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => return Base64Error::InvalidLength(text.len()),
    };
    match text[..unpadded].last().and_then(|&b| value(b)) {
        Some(v) if v & spare_mask != 0 => Base64Error::TrailingBits(unpadded - 1),
        // Not reached for a text base64-simd refused; said as a length
        // rather than not at all.
        _ => Base64Error::InvalidLength(text.len()),
    }
}

/// The 6-bit value of an alphabet character.
fn value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use base64::Engine;

    const PADDED: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
    const INDIFFERENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );

    #[test]
    fn encodes_as_the_base64_crate_does_at_every_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 37 + 11) as u8).collect();
        for n in 0..=data.len() {
            let want = PADDED.encode(&data[..n]);
            assert_eq!(encode(&data[..n]), want, "{n}");
            let mut s = String::from("x");
            encode_append(&data[..n], &mut s);
            assert_eq!(&s[1..], want);
            let mut v = vec![b'y'];
            encode_append_vec(&data[..n], &mut v);
            assert_eq!(&v[1..], want.as_bytes());
            assert_eq!(encoded_len(n), Some(want.len()));
            let mut buf = vec![0u8; want.len()];
            assert!(encode_into(&data[..n], &mut buf));
            assert_eq!(buf, want.as_bytes());
            let mut short = vec![0u8; want.len() + 1];
            assert!(!encode_into(&data[..n], &mut short));
            assert!(short.iter().all(|&b| b == 0));
        }
        assert_eq!(encoded_len(usize::MAX), None);
    }

    #[test]
    fn decodes_what_it_encodes_with_and_without_padding() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 91 + 5) as u8).collect();
        for n in 0..=data.len() {
            let text = encode(&data[..n]);
            assert_eq!(decode(text.as_bytes(), Padding::Required).unwrap(), &data[..n]);
            assert_eq!(decode(text.as_bytes(), Padding::Optional).unwrap(), &data[..n]);
            let bare = text.trim_end_matches('=');
            assert_eq!(decode(bare.as_bytes(), Padding::Optional).unwrap(), &data[..n]);
            if bare.len() != text.len() {
                assert_eq!(
                    decode(bare.as_bytes(), Padding::Required),
                    Err(Base64Error::InvalidLength(bare.len()))
                );
            }
        }
    }

    /// Every text of up to 4 characters over a small alphabet holding
    /// every class of byte: accepted exactly when the base64 crate accepts
    /// it (padding required, and padding indifferent), with its bytes.
    #[test]
    fn accepts_and_refuses_as_the_base64_crate_does() {
        let chars = b"AQgw+/=a \n-";
        let mut text = Vec::new();
        for len in 0..=5u32 {
            for mut code in 0..(chars.len() as u32).pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(chars[(code % chars.len() as u32) as usize]);
                    code /= chars.len() as u32;
                }
                for (padding, engine) in [(Padding::Required, PADDED), (Padding::Optional, INDIFFERENT)] {
                    let mut out = vec![7u8];
                    let got = decode_append(&text, padding, &mut out);
                    let want = engine.decode(&text);
                    match (&got, &want) {
                        (Ok(()), Ok(bytes)) => assert_eq!(&out[1..], &bytes[..]),
                        (Err(_), Err(_)) => assert_eq!(out, [7]),
                        _ => panic!("{:?} {padding:?}: {got:?} against {want:?}", text),
                    }
                }
            }
        }
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = |t: &str| decode(t.as_bytes(), Padding::Optional).unwrap_err();
        assert_eq!(
            e("QUJD QUJD"),
            Base64Error::InvalidByte {
                offset: 4,
                byte: b' '
            }
        );
        assert_eq!(
            e("QUJD-UJD"),
            Base64Error::InvalidByte {
                offset: 4,
                byte: b'-'
            }
        );
        assert_eq!(
            e("QQ==QQ=="),
            Base64Error::InvalidByte {
                offset: 2,
                byte: b'='
            }
        );
        assert_eq!(e("QUJDQ"), Base64Error::InvalidLength(5));
        assert_eq!(e("QR=="), Base64Error::TrailingBits(1));
        assert_eq!(e("QUJ="), Base64Error::TrailingBits(2));
        assert_eq!(
            decode(b"QQ=", Padding::Required),
            Err(Base64Error::InvalidLength(3))
        );
        assert_eq!(e("QUJD\n").to_string(), "invalid byte 0x0a at offset 4");
        assert_eq!(e("QUJD*").to_string(), "invalid character '*' at offset 4");
        assert_eq!(
            e("QR==").to_string(),
            "the character at offset 1 has bits set beyond the data"
        );
        assert_eq!(
            e("QUJDQ").to_string(),
            "a length of 5 characters, which no base64 text has"
        );
    }
}
