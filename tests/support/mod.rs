//! What the integration tests share, one module per kind of help: the
//! prost model of the format and blob helpers (`pb`), a deterministic
//! generator (`rng`), and for the tests against a Kinesis API, the client,
//! stream and reader helpers (`kinesis`) and the fault proxy (`proxy`).
//! Each test file takes it with `mod support;`.
#![allow(dead_code)]

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "aws-sdk")]
pub mod kinesis;
pub mod pb;
#[cfg(feature = "aws-sdk")]
pub mod proxy;
#[cfg(feature = "cli")]
pub mod proxy_cli;
pub mod rng;

/// `partition_key` and `explicit_hash_key` are those of `want`, an entry
/// of a fixture manifest (Google's parse), for the case `case`.
pub fn assert_keys(
    partition_key: &str,
    explicit_hash_key: Option<&str>,
    want: &serde_json::Value,
    case: &str,
) {
    assert_eq!(partition_key, want["partition_key"].as_str().unwrap(), "{case}");
    assert_eq!(explicit_hash_key, want["explicit_hash_key"].as_str(), "{case}");
}
