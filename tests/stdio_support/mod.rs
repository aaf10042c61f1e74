//! Helpers of `tests/stdio.rs`: the real `mcp-proxy` binary serving a stdio command on a
//! loopback port, its child processes as seen in `/proc`, a small hyper client, and runs of the
//! external client scripts in `tests/interop/`.
//!
//! Every wait is bounded: a test that goes wrong fails, it never hangs. Every process a test
//! starts (the proxy, its children, a client) is killed by pid when its guard drops.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the binary may take to print its `listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one client script run may take (a run normally takes about 2.5 s).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound on one HTTP exchange (an `initialize` waits for the child to start).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The proxy's default grace period between closing a child's stdin, SIGTERM and SIGKILL.
pub const CHILD_GRACE: Duration = Duration::from_secs(5);
/// The protocol revision the raw requests use.
pub const VERSION: &str = "2025-06-18";

const LISTENING: &str = "listening on http://";

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn interop_dir() -> PathBuf {
    repo_dir().join("tests").join("interop")
}

/// `tests/fixtures/stdio_server.py`: answers `initialize` and `tools/list`; `tools/call say`
/// writes to stderr and answers; any other `tools/call` exits the process without answering.
pub fn crashing_fixture() -> PathBuf {
    repo_dir()
        .join("tests")
        .join("fixtures")
        .join("stdio_server.py")
}

/// The entry of `@modelcontextprotocol/server-everything` (run as `node <entry> stdio`).
pub fn everything_entry() -> PathBuf {
    interop_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `true` if `marker` exists; otherwise panics: the tests that need it are `#[ignore]`d and run
/// only when asked for (`bash .ci/run` installs the clients, then runs them).
pub fn installed(what: &str, marker: &Path) -> bool {
    assert!(
        marker.exists(),
        "{what} is not installed ({} is missing): run `bash .ci/run`, which installs the interop \
         clients and runs the ignored tests",
        marker.display()
    );
    true
}

/// The `node <server-everything> stdio` command, or `None` (after a skip line) when it is not
/// installed.
pub fn everything_command() -> Option<Vec<OsString>> {
    let entry = everything_entry();
    if !installed("@modelcontextprotocol/server-everything", &entry) {
        return None;
    }
    Some(vec!["node".into(), entry.into(), "stdio".into()])
}

/// The `python3 -u tests/fixtures/stdio_server.py` command, or `None` (after a skip line)
/// when `python3` cannot run. The interpreter is named by its real path (`sys.executable`): a
/// `python3` on `PATH` may be a wrapper script (pyenv's shim) that makes every start ~10 times
/// slower.
pub fn fixture_command() -> Option<Vec<OsString>> {
    let found = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|path| !path.is_empty());
    let Some(python) = found else {
        if in_ci() {
            panic!("python3 is needed for tests/fixtures/stdio_server.py but CI is set");
        }
        println!("skipped: python3 is not available (needed for tests/fixtures)");
        return None;
    };
    Some(vec![python.into(), "-u".into(), crashing_fixture().into()])
}

// ---------------------------------------------------------------------------------------------
// Processes in /proc

/// One process, from `/proc/<pid>/stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    /// Start time in clock ticks since boot: tells a reused pid apart.
    pub start: u64,
    pub comm: String,
}

/// Reads `/proc/<pid>/stat`; `None` once the process is gone (reaped).
pub fn proc_stat(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    Some(Proc {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        state: fields.first()?.chars().next()?,
        start: fields.get(19)?.parse().ok()?,
        comm,
    })
}

/// Every process whose parent is `ppid`, zombies included.
pub fn children_of(ppid: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: Vec<Proc> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .filter(|p| p.ppid == ppid)
        .collect();
    children.sort_by_key(|p| p.pid);
    children
}

/// `true` while `p` (the same process, not a reuse of its pid) exists and is not a zombie.
pub fn is_running(p: &Proc) -> bool {
    proc_stat(p.pid).is_some_and(|now| now.start == p.start && now.state != 'Z')
}

/// Sends `signal` (`TERM`, `KILL`) to one process by pid with the `kill` command.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls `condition` every 20 ms until it holds and returns how long that took; `Err` with the
/// time waited after `limit`.
pub async fn wait_until(
    limit: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for a test thread without a runtime.
pub fn wait_until_blocking(
    limit: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(start.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy

/// The `mcp-proxy` binary serving a stdio command on a free loopback port. On drop it and every
/// child it still has are killed (by pid) and reaped.
pub struct Proxy {
    child: Child,
    pub pid: u32,
    /// `http://HOST:PORT`
    pub base: String,
    /// Everything the proxy printed so far (stdout and stderr), one `[stdout]`/`[stderr]`
    /// prefixed line each.
    log: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl Proxy {
    /// Starts `mcp-proxy --host 127.0.0.1 --port 0 <flags> -- <command>` and waits for its
    /// `listening on http://HOST:PORT/...` line.
    pub fn start(flags: &[&str], command: &[OsString]) -> Proxy {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-proxy"));
        cmd.args(["--host", "127.0.0.1", "--port", "0"])
            .args(flags)
            .arg("--")
            .args(command)
            .current_dir(repo_dir())
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
        let pid = child.id();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<String>();
        // Read both streams to the end (so the proxy never blocks on a full pipe), keep every
        // line, and hand lines to this thread until it has found the listening line.
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
                    log.lock().unwrap().push_str(&format!("[{name}] {line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        drop(tx);
        let mut proxy = Proxy {
            child,
            pid,
            base: String::new(),
            log,
            exited: None,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        proxy.base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = parse_listening(&line) {
                        break base;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{cmd:?} printed no `{LISTENING}HOST:PORT` line within {STARTUP_TIMEOUT:?}; \
                     output:\n{}",
                    proxy.log()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{cmd:?} closed its output (exited?) before printing a `{LISTENING}HOST:PORT` \
                     line; output:\n{}",
                    proxy.log()
                ),
            }
        };
        proxy
    }

    /// `http://HOST:PORT/mcp`
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// What the proxy printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The proxy's child processes (zombies included).
    pub fn children(&self) -> Vec<Proc> {
        children_of(self.pid)
    }

    /// The proxy's children that are running (not zombies).
    pub fn live_children(&self) -> Vec<Proc> {
        self.children()
            .into_iter()
            .filter(|p| p.state != 'Z')
            .collect()
    }

    /// Sends SIGTERM to the proxy.
    pub fn sigterm(&self) {
        signal(self.pid, "TERM");
    }

    /// The exit status once the proxy has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("waiting for mcp-proxy");
        }
        self.exited
    }

    /// Waits up to `limit` for the proxy to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let _ = wait_until(limit, || self.try_exit().is_some()).await;
        self.exited
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let children = self.children();
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Children that outlived a killed proxy (its kill_on_drop never ran) are ours to end.
        for child in children.iter().filter(|c| is_running(c)) {
            signal(child.pid, "KILL");
        }
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

// ---------------------------------------------------------------------------------------------
// HTTP

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC messages of the body: the events of an SSE body, or one JSON value.
    pub fn messages(&self) -> Vec<Value> {
        let content_type = self.header("content-type").unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return serde_json::from_str(&self.body).map_or_else(|_| Vec::new(), |v| vec![v]);
        }
        let normalized = self.body.replace("\r\n", "\n");
        normalized
            .split("\n\n")
            .filter_map(|block| {
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .filter(|d| !d.is_empty())
            .filter_map(|d| serde_json::from_str(&d).ok())
            .collect()
    }

    /// The answer to the request with `id` in the body.
    pub fn answer(&self, id: i64) -> Option<Value> {
        self.messages().into_iter().find(|m| m["id"] == id)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

/// Sends one request on a fresh connection and reads the whole answer, within [`HTTP_TIMEOUT`].
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let mut request = Request::builder().method(method.clone()).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    // A fresh client per request: no pooled connection outlives the test's runtime.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {url}: no answer within {HTTP_TIMEOUT:?}")))
}

/// Like [`send`], panicking on a transport error.
pub async fn must_send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let what = format!("{method} {url}");
    send(method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// POSTs a JSON-RPC body, on the session if given.
pub async fn post(url: &str, session: Option<&str>, body: &Value) -> Reply {
    let mut headers = vec![
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", VERSION),
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    must_send(Method::POST, url, &headers, body.to_string()).await
}

pub fn initialize_body(id: i64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": { "name": "stdio-test", "version": "0" },
        },
    })
}

pub fn request_body(id: i64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// Sends `initialize` (id 1) and `notifications/initialized`; the session id, or the reply of a
/// failed `initialize`.
pub async fn try_initialize(url: &str) -> Result<String, Reply> {
    let reply = post(url, None, &initialize_body(1)).await;
    let ok = reply.status == StatusCode::OK
        && reply
            .answer(1)
            .is_some_and(|a| a["result"]["protocolVersion"].is_string());
    let Some(session) = reply.header("mcp-session-id").filter(|_| ok) else {
        return Err(reply);
    };
    let session = session.to_owned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let ack = post(url, Some(&session), &initialized).await;
    assert_eq!(
        ack.status,
        StatusCode::ACCEPTED,
        "notifications/initialized: {ack}"
    );
    Ok(session)
}

/// [`try_initialize`], panicking (with the proxy's log) if it fails.
pub async fn initialize(proxy: &Proxy) -> String {
    match try_initialize(&proxy.url()).await {
        Ok(session) => session,
        Err(reply) => panic!("initialize failed: {reply}\nproxy:\n{}", proxy.log()),
    }
}

/// DELETE on the session.
pub async fn delete(url: &str, session: &str) -> Reply {
    must_send(
        Method::DELETE,
        url,
        &[
            ("mcp-session-id", session),
            ("mcp-protocol-version", VERSION),
        ],
        Bytes::new(),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Client scripts

/// What a client script printed.
pub struct ClientRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Kills (by pid) and reaps a client when dropped, also on panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a client script to completion (killed after [`CLIENT_TIMEOUT`]), capturing its output.
pub fn run_client(mut cmd: Command, proxy: &Proxy) -> ClientRun {
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
    let started = Instant::now();
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
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the client") {
            break Some(status);
        }
        if started.elapsed() >= CLIENT_TIMEOUT {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        drop(child); // kill it; its pipes close and the readers finish
        panic!(
            "client {cmd:?} did not finish within {CLIENT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}\n\
             proxy:\n{}",
            stdout.join().unwrap(),
            stderr.join().unwrap(),
            proxy.log()
        );
    };
    ClientRun {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took: started.elapsed(),
    }
}

// ---------------------------------------------------------------------------------------------
// A streaming SSE response (the legacy `GET /sse`)

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// An open SSE response, read event by event. Dropping it closes the connection.
pub struct EventStream {
    pub status: StatusCode,
    frames: tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, String>>,
    buf: String,
    reader: tokio::task::JoinHandle<()>,
    /// `Some(Ok(()))` after a clean end of the body, `Some(Err(_))` after a body error.
    pub ended: Option<Result<(), String>>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl EventStream {
    /// Sends a GET and returns once the response head has arrived.
    pub async fn open(url: &str) -> EventStream {
        let request = Request::builder()
            .method(Method::GET)
            .uri(url)
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let response = tokio::time::timeout(HTTP_TIMEOUT, client.request(request))
            .await
            .unwrap_or_else(|_| panic!("GET {url}: no answer within {HTTP_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
        let status = response.status();
        let mut body = response.into_body();
        let (tx, frames) = tokio::sync::mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Ok(data) = frame.into_data()
                            && tx.send(Ok(data)).is_err()
                        {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:?}")));
                        return;
                    }
                }
            }
        });
        EventStream {
            status,
            frames,
            buf: String::new(),
            reader,
            ended: None,
        }
    }

    /// The next event: `None` once the body has ended (see [`EventStream::ended`]); panics if
    /// nothing arrives within `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.buf = self.buf.replace("\r\n", "\n");
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data = Vec::new();
                let mut has_field = false;
                for line in block.lines() {
                    if line.is_empty() || line.starts_with(':') {
                        continue;
                    }
                    has_field = true;
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => event.event = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        _ => {}
                    }
                }
                if has_field {
                    event.data = data.join("\n");
                    return Some(event);
                }
                continue;
            }
            if self.ended.is_some() {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Err(_) => panic!("no SSE event within {limit:?} (buffered: {:?})", self.buf),
                Ok(Some(Ok(data))) => self.buf.push_str(&String::from_utf8_lossy(&data)),
                Ok(Some(Err(e))) => self.ended = Some(Err(e)),
                Ok(None) => self.ended = Some(Ok(())),
            }
        }
    }

    /// The next JSON-RPC message (`event: message`), skipping other events; `None` at the end.
    pub async fn next_message(&mut self, limit: Duration) -> Option<Value> {
        loop {
            let event = self.next_event(limit).await?;
            if event.event.as_deref().unwrap_or("message") == "message" && !event.data.is_empty() {
                return Some(
                    serde_json::from_str(&event.data)
                        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", event.data)),
                );
            }
        }
    }
}
