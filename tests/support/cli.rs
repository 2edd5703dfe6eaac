//! Running the `kinesis-agg` binary: with test credentials in its
//! environment, as the AWS CLI would find them, and standard input fed
//! from a thread (so that a large input never blocks on a full pipe).

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

/// The binary, with test credentials and region in its environment.
pub fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kinesis-agg"));
    c.env("AWS_ACCESS_KEY_ID", "AKIDKINESISAGG")
        .env("AWS_SECRET_ACCESS_KEY", "test-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    c
}

/// The binary with no credentials, region or profile in its environment,
/// and `home` as its home folder: what it finds is what `home/.aws` holds.
#[allow(dead_code)]
pub fn cli_at_home(home: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kinesis-agg"));
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", home).env("AWS_EC2_METADATA_DISABLED", "true");
    c
}

/// Starts `c` with its three standard streams piped.
pub fn spawn_piped(mut c: Command) -> Child {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `c` with `stdin` as its input, to the end.
pub fn run(c: Command, stdin: &[u8]) -> Output {
    let mut child = spawn_piped(c);
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}
