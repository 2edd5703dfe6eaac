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
pub mod rng;
