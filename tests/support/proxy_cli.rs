//! Running `kinesis-agg proxy` for a test: on a free loopback port (it
//! says which on stderr), its stderr kept, stopped by PID when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Running {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (`https://` with --tls-cert).
    pub url: String,
    pub addr: std::net::SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    /// What it has said on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits up to 5 s for its stderr to hold `needle`; says whether it did.
    pub fn said(&self, needle: &str) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while !self.stderr().contains(needle) {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Sends SIGTERM (`kill -TERM PID`).
    pub fn terminate(&self) {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    /// Waits up to `limit` for it to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < until,
                "the proxy did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `command` (a `kinesis-agg proxy ...` with `--listen
/// 127.0.0.1:0`) and waits for the line that says where it listens.
pub fn start(mut command: Command) -> Running {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let pipe = child.stderr.take().unwrap();
    let kept = stderr.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest.split(',').next().unwrap().to_owned();
                let _ = tx.send(url);
                sent = true;
            }
            let mut k = kept.lock().unwrap();
            k.push_str(&line);
            k.push('\n');
        }
    });
    let url = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "the proxy did not say where it listens: {}",
                stderr.lock().unwrap()
            );
        }
    };
    let addr = url.split("://").nth(1).unwrap().parse().unwrap();
    Running {
        child,
        url,
        addr,
        stderr,
    }
}
