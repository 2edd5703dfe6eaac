//! PutRecord and PutRecords requests read and validated as Kinesis
//! validates them: a request with any invalid entry is refused whole.

use std::borrow::{Cow, ToOwned};
use std::format;
use std::ops::Range;
use std::string::String;
use std::vec::Vec;

use serde::{Deserialize, Deserializer};

use super::ApiError;
use crate::b64;
use crate::{Error, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsIn<'a> {
    #[serde(borrow)]
    records: Option<Vec<EntryIn<'a>>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed", rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntryIn<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    data: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    partition_key: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    explicit_hash_key: Option<Cow<'a, str>>,
}

/// A string field or null, borrowed from the body where it holds no escape.
/// (serde's own `Cow` copies every string inside an `Option`, `borrow` or
/// not: an allocation for each key and each record's base64 data.)
fn borrowed<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(Text)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordIn<'a> {
    #[serde(borrow, flatten)]
    entry: EntryIn<'a>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    stream_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed", rename = "StreamARN")]
    stream_arn: Option<Cow<'a, str>>,
}

/// A validated PutRecord or PutRecords request: the stream, and each
/// record's keys and data (the data of all of them decoded into one
/// buffer; the keys borrowed from the body where they hold no escapes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRequest<'a> {
    /// The stream's name (from `StreamName`, or the end of `StreamARN`).
    pub stream: String,
    /// Each record's partition key and explicit hash key.
    pub keys: Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>,
    /// Each record's data, as a range of `data`.
    pub spans: Vec<Range<usize>>,
    /// The records' data, one after another.
    pub data: Vec<u8>,
}

impl PutRequest<'_> {
    /// The `i`th record's data.
    pub fn data_of(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .and_then(|r| self.data.get(r.clone()))
            .unwrap_or(&[])
    }
}

/// The stream a request names: `StreamName`, or the name in `StreamARN`
/// (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`).
fn stream_of(name: Option<Cow<'_, str>>, arn: Option<Cow<'_, str>>) -> Result<String, ApiError> {
    let name = match (name, arn) {
        (Some(n), _) => n.into_owned(),
        (None, Some(arn)) => match arn.split_once(":stream/") {
            Some((head, n)) if head.starts_with("arn:") && !n.is_empty() => n.to_owned(),
            _ => {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{arn}' at 'streamARN' failed to satisfy constraint: Member must be a Kinesis stream ARN"
                )));
            }
        },
        (None, None) => {
            return Err(ApiError::validation(
                "Either StreamName or StreamARN should be provided.",
            ));
        }
    };
    let ok = (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{name}' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"
        )));
    }
    Ok(name)
}

impl<'a> PutRequest<'a> {
    /// Validates `entries` as Kinesis does, naming each by its position
    /// (`field` is `records.N.member.` for PutRecords, empty for
    /// PutRecord). Nothing is put when any one is invalid.
    fn validate(
        stream: String,
        entries: Vec<EntryIn<'a>>,
        many: bool,
        max_data: usize,
    ) -> Result<Self, ApiError> {
        let at = |i: usize, f: &str| {
            if many {
                format!("records.{}.member.{f}", i + 1)
            } else {
                f.to_owned()
            }
        };
        // The decoded data's room at once (base64 is 4 characters for 3
        // bytes), not grown record by record.
        let room = entries
            .iter()
            .map(|e| e.data.as_ref().map_or(0, |d| d.len() / 4 * 3 + 3))
            .sum();
        let mut puts = PutRequest {
            stream,
            keys: Vec::with_capacity(entries.len()),
            spans: Vec::with_capacity(entries.len()),
            data: Vec::with_capacity(room),
        };
        let mut total = 0usize;
        for (i, e) in entries.into_iter().enumerate() {
            let Some(key) = e.partition_key else {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                    at(i, "partitionKey")
                )));
            };
            if let Err(Error::InvalidPartitionKey { .. }) = crate::check_partition_key(&key) {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value '{key}' at '{}' failed to satisfy constraint: Member must have length between 1 and 256",
                    at(i, "partitionKey")
                )));
            }
            if let Some(h) = &e.explicit_hash_key
                && crate::parse_hash_key(h).is_err()
            {
                return Err(ApiError::invalid_argument(format!(
                    "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"
                )));
            }
            let Some(text) = e.data else {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                    at(i, "data")
                )));
            };
            let start = puts.data.len();
            b64::decode_append(text.as_bytes(), b64::Padding::Optional, &mut puts.data)
                .map_err(|e| ApiError::serialization(format!("{} is not base64: {e}", at(i, "data"))))?;
            let size = puts.data.len() - start;
            if size > max_data {
                return Err(ApiError::validation(format!(
                    "1 validation error detected: Value at '{}' failed to satisfy constraint: Member must have length less than or equal to {max_data}",
                    at(i, "data")
                )));
            }
            total += size + key.len();
            puts.spans.push(start..puts.data.len());
            puts.keys.push((key, e.explicit_hash_key));
        }
        if many && total > PUT_RECORDS_MAX_BYTES {
            return Err(ApiError::invalid_argument(format!(
                "Records size exceeds {} MB limit",
                PUT_RECORDS_MAX_BYTES >> 20
            )));
        }
        Ok(puts)
    }
}

/// Reads and validates a PutRecords request (JSON), its data at most
/// `max_data` bytes a record (1 MiB, or up to 10 MiB for a stream that
/// takes large records).
///
/// # Errors
/// What Kinesis answers for such a request: `SerializationException` for
/// a body that is not a PutRecords request or data that is not base64,
/// `ValidationException` for a missing stream, no entries or more than
/// 500, a missing or bad partition key, missing or too large data,
/// `InvalidArgumentException` for a bad explicit hash key or more than
/// 5 MiB of data and keys in all.
pub fn parse_put_records(body: &[u8], max_data: usize) -> Result<PutRequest<'_>, ApiError> {
    let req: PutRecordsIn<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("the body is not a PutRecords request: {e}")))?;
    let stream = stream_of(req.stream_name, req.stream_arn)?;
    let entries = req.records.unwrap_or_default();
    if entries.is_empty() || entries.len() > PUT_RECORDS_MAX_ENTRIES {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{}' at 'records' failed to satisfy constraint: Member must have length between 1 and {PUT_RECORDS_MAX_ENTRIES}",
            entries.len()
        )));
    }
    PutRequest::validate(stream, entries, true, max_data)
}

/// Reads and validates a PutRecord request (JSON): one record, as
/// [`parse_put_records`] does.
///
/// # Errors
/// As [`parse_put_records`].
pub fn parse_put_record(body: &[u8], max_data: usize) -> Result<PutRequest<'_>, ApiError> {
    let req: PutRecordIn<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::serialization(format!("the body is not a PutRecord request: {e}")))?;
    let stream = stream_of(req.stream_name, req.stream_arn)?;
    PutRequest::validate(stream, std::vec![req.entry], false, max_data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn entry<'a>(key: Option<&'a str>, data: Option<&'a str>, hash: Option<&'a str>) -> EntryIn<'a> {
        EntryIn {
            data: data.map(Cow::Borrowed),
            partition_key: key.map(Cow::Borrowed),
            explicit_hash_key: hash.map(Cow::Borrowed),
        }
    }

    fn refused(entries: Vec<EntryIn<'_>>, max: usize) -> ApiError {
        match PutRequest::validate("s".to_owned(), entries, true, max) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn entries_are_validated_as_kinesis_does() {
        let ok = PutRequest::validate(
            "s".to_owned(),
            vec![
                entry(Some("a"), Some("aGk="), None),
                entry(Some("b"), Some(""), Some("42")),
            ],
            true,
            10,
        )
        .unwrap();
        assert_eq!(ok.spans, vec![0..2, 2..2]);
        assert_eq!(&ok.data, b"hi");

        let e = refused(
            vec![
                entry(Some("a"), Some("aGk="), None),
                entry(None, Some("aGk="), None),
            ],
            10,
        );
        assert_eq!(&*e.code, "ValidationException");
        assert!(
            e.message.contains("records.2.member.partitionKey"),
            "{}",
            e.message
        );

        let long = "k".repeat(257);
        let e = refused(vec![entry(Some(&long), Some(""), None)], 10);
        assert_eq!(&*e.code, "ValidationException");

        let e = refused(
            vec![entry(
                Some("a"),
                Some(""),
                Some("340282366920938463463374607431768211456"),
            )],
            10,
        );
        assert_eq!(&*e.code, "InvalidArgumentException");
        assert!(e.message.contains("ExplicitHashKey"));

        let e = refused(vec![entry(Some("a"), Some("not base64!"), None)], 10);
        assert_eq!(&*e.code, "SerializationException");

        let e = refused(vec![entry(Some("a"), Some(&b64::encode(&[0u8; 11])), None)], 10);
        assert!(e.message.contains("records.1.member.data"), "{}", e.message);
        assert!(e.message.contains("less than or equal to 10"), "{}", e.message);

        let e = refused(vec![entry(Some("a"), None, None)], 10);
        assert!(e.message.contains("records.1.member.data"), "{}", e.message);
    }

    #[test]
    fn a_request_over_five_mib_is_refused_whole() {
        let big = b64::encode(&vec![0u8; 1 << 20]);
        let entries = (0..5).map(|_| entry(Some("k"), Some(&big), None)).collect();
        let e = refused(entries, 1 << 20);
        assert_eq!(&*e.code, "InvalidArgumentException");
        assert!(e.message.contains("5 MB"), "{}", e.message);
        let big = b64::encode(&vec![0u8; (1 << 20) - 1]);
        let entries: Vec<_> = (0..5).map(|_| entry(Some("k"), Some(&big), None)).collect();
        assert!(PutRequest::validate("s".to_owned(), entries, true, 1 << 20).is_ok());
    }

    #[test]
    fn the_stream_is_named_or_taken_from_its_arn() {
        let name = |n: Option<&str>, a: Option<&str>| stream_of(n.map(Cow::Borrowed), a.map(Cow::Borrowed));
        assert_eq!(name(Some("s-1.x_y"), None).unwrap(), "s-1.x_y");
        assert_eq!(
            name(None, Some("arn:aws:kinesis:us-east-1:123456789012:stream/orders")).unwrap(),
            "orders"
        );
        assert_eq!(&*name(None, None).unwrap_err().code, "ValidationException");
        assert_eq!(&*name(Some("a b"), None).unwrap_err().code, "ValidationException");
        assert_eq!(
            &*name(None, Some("orders")).unwrap_err().code,
            "ValidationException"
        );
        assert_eq!(
            &*name(Some(&"s".repeat(129)), None).unwrap_err().code,
            "ValidationException"
        );
    }

    #[test]
    fn keys_are_borrowed_from_the_body_unless_escaped_and_null_is_absent() {
        let body = br#"{"StreamName":"s","Records":[
            {"Data":"aGk=","PartitionKey":"plain","ExplicitHashKey":"42"},
            {"Data":"aGk=","PartitionKey":"t\u00e9l\u00e9","ExplicitHashKey":null}]}"#;
        let puts = parse_put_records(body, 1 << 20).unwrap();
        assert!(matches!(
            &puts.keys[0],
            (Cow::Borrowed("plain"), Some(Cow::Borrowed("42")))
        ));
        assert!(matches!(&puts.keys[1], (Cow::Owned(k), None) if k == "t\u{e9}l\u{e9}"));
        assert_eq!(puts.data_of(1), b"hi");
        // The same through PutRecord, whose fields are flattened.
        let one = parse_put_record(
            br#"{"StreamName":"s","Data":"aGk=","PartitionKey":"plain"}"#,
            1 << 20,
        )
        .unwrap();
        assert!(matches!(&one.keys[0], (Cow::Borrowed("plain"), None)));
        let e = parse_put_records(
            br#"{"StreamName":"s","Records":[{"Data":7,"PartitionKey":"k"}]}"#,
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(&*e.code, "SerializationException");
    }
}
