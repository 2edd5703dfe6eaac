//! The function as Lambda runs it: the built binary against a small Lambda
//! Runtime API on loopback that hands out the event samples of
//! `tests/fixtures/events/` one invocation at a time and collects what the
//! function answers. The server binds 127.0.0.1 on a free port; the
//! function is stopped by its PID at the end.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// What the function posted for one invocation.
#[derive(Debug)]
enum Answer {
    Response(String, Value),
    Error(String, Value),
}

fn event(name: &str) -> Value {
    let path = format!(
        "{}/../../tests/fixtures/events/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Reads one HTTP request: method, path, body (Content-Length or chunked).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let (mut len, mut chunked) = (0usize, false);
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some((method, path, body))
}

fn reply(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Serves the Runtime API: each `next` takes the following event (and
/// waits once there are none), each response or error is sent on `tx`.
fn serve(listener: TcpListener, events: Vec<Value>, tx: mpsc::Sender<Answer>) {
    let queue = Arc::new(Mutex::new(
        events.into_iter().enumerate().collect::<VecDeque<_>>(),
    ));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let (queue, tx) = (Arc::clone(&queue), tx.clone());
        std::thread::spawn(move || {
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            while let Some((method, path, body)) = read_request(&mut reader) {
                if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
                    let next = queue.lock().unwrap().pop_front();
                    let Some((n, ev)) = next else {
                        // No more events: hold the call until the function is stopped.
                        std::thread::sleep(Duration::from_secs(3600));
                        return;
                    };
                    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 60_000;
                    let headers = [
                        ("Content-Type", "application/json".to_owned()),
                        ("Lambda-Runtime-Aws-Request-Id", format!("request-{n}")),
                        ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
                        (
                            "Lambda-Runtime-Invoked-Function-Arn",
                            "arn:aws:lambda:us-east-1:123456789012:function:test".to_owned(),
                        ),
                        ("Lambda-Runtime-Trace-Id", format!("Root=1-00000000-{n:024}")),
                    ];
                    reply(&mut writer, "200 OK", &headers, ev.to_string().as_bytes());
                } else if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
                    let (id, kind) = rest.split_once('/').unwrap();
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let answer = match kind {
                        "response" => Answer::Response(id.to_owned(), value),
                        _ => Answer::Error(id.to_owned(), value),
                    };
                    reply(&mut writer, "202 Accepted", &[], b"{}");
                    let _ = tx.send(answer);
                } else {
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    reply(&mut writer, "202 Accepted", &[], b"{}");
                    let _ = tx.send(Answer::Error(path, value));
                }
            }
        });
    }
}

#[test]
fn the_function_answers_each_sample_event_through_the_runtime_api() {
    let with_times = {
        let mut ev = event("lambda_fanout_mixed");
        for r in ev["Records"].as_array_mut().unwrap() {
            r["kinesis"]["approximateArrivalTimestamp"] = json!(1.5e9);
        }
        ev
    };
    let events = vec![
        event("lambda_kinesis"),
        // As published: no approximateArrivalTimestamp, which the event
        // type requires; the runtime reports the invocation as failed.
        event("lambda_fanout_mixed"),
        with_times,
    ];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || serve(listener, events, tx));
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinesis-agg-lambda-function"))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "stream")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "group")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let answers: Vec<Answer> = (0..3)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("an answer from the function")
        })
        .collect();
    // Stopped by its PID; then its output is complete.
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);

    // 1: the broken record (missing_data, the fourth) is the one item failure.
    let Answer::Response(id, body) = &answers[0] else {
        panic!("{answers:?}")
    };
    assert_eq!(id, "request-0");
    let seq = event("lambda_kinesis")["Records"][3]["kinesis"]["sequenceNumber"].clone();
    assert_eq!(body["batchItemFailures"], json!([{"itemIdentifier": seq}]));
    // 2: the event could not be read.
    let Answer::Error(id, body) = &answers[1] else {
        panic!("{answers:?}")
    };
    assert_eq!(id, "request-1");
    assert!(
        body["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    // 3: both records read, none broken.
    let Answer::Response(id, body) = &answers[2] else {
        panic!("{answers:?}")
    };
    assert_eq!(id, "request-2");
    assert_eq!(body["batchItemFailures"], json!([]));
    // The user records of invocations 1 and 3, one line each, then the tallies.
    assert!(
        stdout.contains("key-0 49590338271490256608559692538361571095921575989136588898:0 33 bytes"),
        "{stdout}"
    );
    assert!(
        stdout.contains("13 user records from 5 Kinesis records, 1 broken"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 user records from 2 Kinesis records, 0 broken"),
        "{stdout}"
    );
}
