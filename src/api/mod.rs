//! The Kinesis API's shapes (feature `api`): what a Kinesis endpoint, such
//! as `kinesis-agg proxy`, reads and writes. PutRecord and PutRecords
//! requests read and validated as Kinesis validates them, GetRecords
//! answers deaggregated (aggregated records replaced by their user
//! records), and the CBOR protocol of the AWS SDKs for Java turned into the
//! JSON one and back. Errors are [`ApiError`]s, in Kinesis's own terms
//! (the HTTP status, the error type a client's SDK matches, a message).
//!
//! Everything here works on bodies in memory and never panics on what a
//! client or a server sends.

mod cbor;
mod get;
mod put;

use std::borrow::Cow;
use std::fmt;
use std::string::String;

pub use cbor::{cbor_to_json, json_to_cbor};
pub use get::{GetRecordsRead, ShardCheck, deaggregate_get_records};
pub use put::{PutRequest, parse_put_record, parse_put_records};

/// An error in Kinesis's shape: the HTTP status, the error's type (the
/// `__type` of the body, which SDKs match) and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status: 400 for a request Kinesis refuses, 500 for a
    /// failure a retry may cure.
    pub status: u16,
    /// The error's type: `ValidationException`, `InvalidArgumentException`,
    /// `SerializationException`, `InternalFailure`, ...
    pub code: Cow<'static, str>,
    /// What is wrong, in words.
    pub message: String,
}

impl ApiError {
    /// An error of this status, type and message.
    pub fn new(status: u16, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// A request that breaks the API's constraints (400
    /// `ValidationException`).
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    /// A value the API refuses (400 `InvalidArgumentException`).
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidArgumentException", message)
    }

    /// A body that is not the protocol's (400 `SerializationException`).
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(400, "SerializationException", message)
    }

    /// A failure that a retry may cure (500 `InternalFailure`).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalFailure", message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
