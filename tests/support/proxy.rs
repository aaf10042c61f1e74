//! The `mcp-proxy` binary as a child process of a test: started on a free loopback port, its
//! output kept for failure messages, killed and reaped when dropped. Shared by the test files
//! that drive the real binary (`#[path = "support/proxy.rs"] mod proxy;`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the binary may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const LISTENING: &str = "listening on http://";

/// `true` under CI, where a missing external client is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Kills and reaps the child when dropped, so no test leaves a process behind (also on panic).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `mcp-proxy` binary, running on a free loopback port.
pub struct Server {
    _child: KillOnDrop,
    /// `http://HOST:PORT/mcp`
    pub url: String,
    /// Everything the server printed so far (stdout and stderr), for failure messages.
    log: Arc<Mutex<String>>,
}

impl Server {
    pub fn start(extra_args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-proxy"));
        // The binary reads its options from `MCP_PROXY_*` too: test its defaults, whatever the
        // environment says.
        for (var, _) in std::env::vars_os() {
            if var.to_str().is_some_and(|v| v.starts_with("MCP_PROXY_")) {
                cmd.env_remove(var);
            }
        }
        let mut child = cmd
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start the mcp-proxy binary");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        // Read both streams to the end (so the server never blocks on a full pipe), keep a copy
        // of every line, and hand lines to the test thread until it stops listening.
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (name, stream) in [
            ("stdout", Box::new(stdout) as Box<dyn Read + Send>),
            ("stderr", Box::new(stderr)),
        ] {
            let tx = tx.clone();
            let log = Arc::clone(&log);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap()
                        .push_str(&format!("[server {name}] {line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let child = KillOnDrop(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = parse_listening(&line) {
                        break format!("{base}/mcp");
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "mcp-proxy printed no `{LISTENING}HOST:PORT` line within {STARTUP_TIMEOUT:?}; \
                     output:\n{}",
                    log.lock().unwrap()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "mcp-proxy closed its output (exited?) before printing a \
                     `{LISTENING}HOST:PORT` line; output:\n{}",
                    log.lock().unwrap()
                ),
            }
        };
        Server {
            _child: child,
            url,
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The server's process id (for /proc figures).
    pub fn pid(&self) -> u32 {
        self._child.0.id()
    }
}

/// A client process run to completion (or killed).
pub struct ClientRun {
    /// `None` when it was killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` in `dir` (stdin closed, output captured), killed after `timeout`. Loopback only:
/// proxy settings of the environment are kept away from it; colours are off.
pub fn run_client(mut cmd: Command, dir: &Path, timeout: Duration) -> ClientRun {
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("no_proxy", "127.0.0.1,localhost,::1")
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}")),
    );
    let read_all = |mut stream: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.0.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.0.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the client") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Killing a timed-out client closes its pipes, so the readers finish.
    drop(child);
    ClientRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// `... listening on http://127.0.0.1:41234/mcp ...` → `http://127.0.0.1:41234`.
pub fn parse_listening(line: &str) -> Option<String> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let authority: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-'))
        .collect();
    let port = authority.rsplit_once(':')?.1;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("http://{authority}"))
}

#[test]
fn parse_listening_line() {
    assert_eq!(
        parse_listening("mcp-proxy listening on http://127.0.0.1:4321/mcp").as_deref(),
        Some("http://127.0.0.1:4321")
    );
    assert_eq!(
        parse_listening("INFO listening on http://[::1]:80, ok").as_deref(),
        Some("http://[::1]:80")
    );
    assert_eq!(parse_listening("listening on http://localhost/mcp"), None);
    assert_eq!(parse_listening("starting"), None);
}
