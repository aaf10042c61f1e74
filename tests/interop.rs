//! Interop tests: the real `mcp-proxy` binary driven by the official MCP client SDKs
//! (TypeScript `@modelcontextprotocol/sdk` and Python `mcp`, versions pinned in `tests/interop/`).
//!
//! Each test starts the binary on `127.0.0.1` with `--port 0`, reads the `listening on http://HOST:PORT`
//! line it prints, runs one client script against `http://HOST:PORT/mcp` and checks what it printed.
//!
//! The clients are installed by `.ci/run` (`npm ci` into `tests/interop/node_modules`, a venv at
//! `tests/interop/.venv`). Without them the tests print a skip line and pass, except under CI
//! (`CI` set), where a missing install is a failure.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the binary may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one client run may take (a run normally takes well under 2 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
const LISTENING: &str = "listening on http://";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `true` if the client is installed; otherwise skips (returns `false`) or, under CI, panics.
fn client_installed(what: &str, marker: &Path) -> bool {
    if marker.exists() {
        return true;
    }
    if in_ci() {
        panic!(
            "{what} is not installed ({} is missing) but CI is set: `.ci/run` must install the \
             interop clients before running the tests",
            marker.display()
        );
    }
    println!(
        "skipped: run .ci/run once to install interop clients ({} missing)",
        marker.display()
    );
    false
}

/// Kills and reaps the child when dropped, so no test leaves a process behind (also on panic).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `mcp-proxy` binary, running on a free loopback port.
struct Server {
    _child: KillOnDrop,
    /// `http://HOST:PORT/mcp`
    url: String,
    /// Everything the server printed so far (stdout and stderr), for failure messages.
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(extra_args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-proxy"))
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
                    "mcp-proxy {extra_args:?} printed no `{LISTENING}HOST:PORT` line within {:?}; output:\n{}",
                    STARTUP_TIMEOUT,
                    log.lock().unwrap()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "mcp-proxy {extra_args:?} closed its output (exited?) before printing a \
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

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// `... listening on http://127.0.0.1:41234/mcp ...` → `http://127.0.0.1:41234`.
fn parse_listening(line: &str) -> Option<String> {
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

struct ClientRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a client to completion (killed after `CLIENT_TIMEOUT`), capturing its output.
fn run_client(mut cmd: Command, server: &Server) -> ClientRun {
    // Loopback only: keep any proxy settings of the environment away from the clients.
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
        .current_dir(interop_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("failed to start client {cmd:?}: {e}")),
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

    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the client") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        drop(child); // kill it; its pipes close and the readers finish
        panic!(
            "client {cmd:?} did not finish within {CLIENT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}\nserver:\n{}",
            stdout.join().unwrap(),
            stderr.join().unwrap(),
            server.log()
        );
    };
    ClientRun {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

fn client_failed(label: &str, why: &str, run: &ClientRun, server: &Server) -> ! {
    panic!(
        "{label}: {why}\nexit: {}\nclient stdout:\n{}\nclient stderr:\n{}\nserver output:\n{}",
        run.status,
        run.stdout,
        run.stderr,
        server.log()
    )
}

/// The checks shared by every client: exit 0, tools listed, `echo` and `add` answered.
fn assert_client_ok(label: &str, run: &ClientRun, server: &Server) {
    let fail = |why: &str| client_failed(label, why, run, server);
    if !run.status.success() {
        fail("client failed");
    }
    let Some(tools) = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("tools:"))
        .map(|t| t.trim().split(',').map(str::to_owned).collect::<Vec<_>>())
    else {
        client_failed(label, "no `tools:` line", run, server);
    };
    for tool in ["echo", "add"] {
        if !tools.iter().any(|t| t == tool) {
            fail(&format!("tool `{tool}` not listed (tools: {tools:?})"));
        }
    }
    for expected in ["echo -> hello interop", "add -> 5"] {
        if !run.stdout.contains(expected) {
            fail(&format!("missing `{expected}`"));
        }
    }
    if run.stdout.contains("isError: true") {
        fail("a tool call returned isError: true");
    }
    println!("{label} ok against {}:\n{}", server.url, run.stdout);
}

/// The client's URL and transport argument: Streamable HTTP at `/mcp`, legacy SSE at `/sse`.
fn target(server: &Server, transport: &str) -> String {
    match transport {
        "sse" => format!("{}/sse", server.url.trim_end_matches("/mcp")),
        _ => server.url.clone(),
    }
}

fn ts_client(label: &str, server_args: &[&str]) {
    ts_client_over(label, server_args, "streamable");
}

fn ts_client_over(label: &str, server_args: &[&str], transport: &str) {
    let dir = interop_dir();
    let sdk = dir.join("node_modules/@modelcontextprotocol/sdk/package.json");
    if !client_installed("the TypeScript SDK client", &sdk) {
        return;
    }
    let server = Server::start(server_args);
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("ts-client.mjs"))
        .arg(target(&server, transport))
        .arg(transport);
    let run = run_client(cmd, &server);
    assert_client_ok(label, &run, &server);
}

fn python_client(label: &str, server_args: &[&str]) {
    python_client_over(label, server_args, "streamable");
}

fn python_client_over(label: &str, server_args: &[&str], transport: &str) {
    let dir = interop_dir();
    let python = dir.join(".venv/bin/python");
    if !client_installed("the Python `mcp` client (venv)", &python) {
        return;
    }
    let server = Server::start(server_args);
    let mut cmd = Command::new(&python);
    cmd.arg(dir.join("py_client.py"))
        .arg(target(&server, transport))
        .arg(transport)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_client(cmd, &server);
    assert_client_ok(label, &run, &server);
}

#[test]
fn ts_sdk_client_streamable_http() {
    ts_client("ts_sdk_client_streamable_http", &[]);
}

#[test]
fn python_client_streamable_http() {
    python_client("python_client_streamable_http", &[]);
}

#[test]
fn ts_sdk_client_json_response() {
    ts_client("ts_sdk_client_json_response", &["--json-response"]);
}

#[test]
fn python_client_json_response() {
    python_client("python_client_json_response", &["--json-response"]);
}

#[test]
fn ts_sdk_client_stateless() {
    ts_client("ts_sdk_client_stateless", &["--stateless"]);
}

#[test]
fn ts_sdk_client_legacy_sse() {
    ts_client_over("ts_sdk_client_legacy_sse", &[], "sse");
}

#[test]
fn python_client_legacy_sse() {
    python_client_over("python_client_legacy_sse", &[], "sse");
}
