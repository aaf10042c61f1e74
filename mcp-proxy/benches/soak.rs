//! Soak: the `mcp-proxy` binary under minutes of mixed, churning traffic, with its resident
//! memory and open file descriptors read from /proc at the start, every 30 s and at the end.
//!
//! `cargo bench -p mcp-proxy --bench soak` runs the release binary for 3 minutes; `MCP_SOAK_SECS` sets the
//! length, `MCP_SOAK_WORKERS` the number of concurrent clients (default 8) and `MCP_SOAK_ARGS`
//! extra server flags. Under `cargo test --benches` it runs 3 s as a smoke test. The server
//! listens on 127.0.0.1, port 0, with default flags; every client loops over four scenarios:
//!
//! - churn: `initialize` → `notifications/initialized` → `tools/call` → DELETE;
//! - streams: a standalone GET stream held open while a call streams progress and its result;
//! - disconnect and resume: a call's stream cut by the client after its first progress
//!   notification, resumed with `Last-Event-ID`, which must deliver the rest and the result;
//! - legacy: `GET /sse`, `initialize` and a call through `/messages`, answers read from the
//!   stream, then the stream dropped.
//!
//! Every step is bounded (10 s) and the run stops by itself. It exits 1 on any error (a wrong
//! status, a missing or wrong answer, a timeout) or when the server no longer answers. Linux only
//! (/proc).

#[path = "../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The bound on every step: connect, send, read a body or the next event.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
const SAMPLE_EVERY: Duration = Duration::from_secs(30);
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

type Result<T> = std::result::Result<T, String>;

async fn bounded<F: Future>(what: &str, future: F) -> Result<F::Output> {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .map_err(|_| format!("{what}: no answer within {STEP_TIMEOUT:?}"))
}

// ---------------------------------------------------------------------------------------------
// Counters and /proc

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
    scenarios: [AtomicU64; 4],
    /// The first few errors, for the report.
    first_errors: Mutex<Vec<String>>,
}

const SCENARIOS: [&str; 4] = ["churn", "streams", "disconnect+resume", "legacy"];

impl Stats {
    fn error(&self, scenario: &str, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap();
        if first.len() < 10 {
            first.push(format!("{scenario}: {e}"));
        }
    }
}

/// Resident memory (KiB) and open file descriptors of a process.
fn proc_figures(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((rss, fds))
}

fn report(label: &str, pid: u32, stats: &Stats, started: Instant) {
    let (rss, fds) = proc_figures(pid).unwrap_or_default();
    println!(
        "  {label:<8} t={:>4}s  rss {:>6.1} MiB  fds {fds:>4}  requests {:>8}  errors {}",
        started.elapsed().as_secs(),
        rss as f64 / 1024.0,
        stats.requests.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
    );
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client

/// One client connection; dropping it closes the socket at once, whatever is in flight.
struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let stream = bounded("connect", TcpStream::connect(addr))
            .await?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = bounded("handshake", http1::handshake(TokioIo::new(stream)))
            .await?
            .map_err(|e| format!("handshake: {e}"))?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Conn { sender, task })
    }

    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        bounded("ready", self.sender.ready())
            .await?
            .map_err(|e| format!("ready: {e}"))?;
        bounded("response head", self.sender.send_request(request))
            .await?
            .map_err(|e| format!("send: {e}"))
    }
}

struct Client {
    addr: SocketAddr,
    /// The keep-alive connection for short exchanges.
    conn: Option<Conn>,
    stats: Arc<Stats>,
}

/// The headers of one request.
#[derive(Default, Clone)]
struct Head<'a> {
    accept: Option<&'a str>,
    session: Option<&'a str>,
    version: Option<&'a str>,
    last_event_id: Option<&'a str>,
}

impl Client {
    fn request(
        &self,
        method: Method,
        path: &str,
        head: &Head<'_>,
        body: Vec<u8>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in [
            ("accept", head.accept),
            ("mcp-session-id", head.session),
            ("mcp-protocol-version", head.version),
            ("last-event-id", head.last_event_id),
        ] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        request.body(Full::new(Bytes::from(body))).expect("request")
    }

    /// A request on the keep-alive connection, its body read to the end.
    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        head: &Head<'_>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, HeaderMap, Bytes)> {
        if self.conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
            self.conn = Some(Conn::open(self.addr).await?);
        }
        let request = self.request(method.clone(), path, head, body);
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let conn = self.conn.as_mut().expect("connected");
        let result = async {
            let (parts, body) = conn.send(request).await?.into_parts();
            let body = bounded("body", body.collect())
                .await?
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result.map_err(|e: String| format!("{method} {path}: {e}"))
    }

    /// A request on a connection of its own, for a stream read event by event.
    async fn open_stream(
        &self,
        method: Method,
        path: &str,
        head: &Head<'_>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, HeaderMap, Events, Conn)> {
        let mut conn = Conn::open(self.addr).await?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let request = self.request(method.clone(), path, head, body);
        let (parts, body) = conn
            .send(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?
            .into_parts();
        Ok((parts.status, parts.headers, Events::new(body), conn))
    }
}

// ---------------------------------------------------------------------------------------------
// SSE

#[derive(Debug, Default)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Event {
    fn message(&self) -> Result<Value> {
        serde_json::from_str(&self.data).map_err(|e| format!("event data {:?}: {e}", self.data))
    }
}

/// Events read one by one from a streaming body (the server frames with LF only).
struct Events {
    body: Incoming,
    buf: Vec<u8>,
}

impl Events {
    fn new(body: Incoming) -> Self {
        Self {
            body,
            buf: Vec::new(),
        }
    }

    /// The next event with a field (comments skipped); `None` when the stream ends.
    async fn next(&mut self) -> Result<Option<Event>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block)? {
                    return Ok(Some(event));
                }
                continue;
            }
            match bounded("next event", self.body.frame()).await? {
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(format!("stream ended inside an event: {:?}", self.buf)),
                Some(Err(e)) => return Err(format!("stream: {e}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event that carries a message.
    async fn next_message(&mut self) -> Result<(Option<String>, Value)> {
        loop {
            match self.next().await? {
                None => return Err("stream ended before the expected message".into()),
                Some(e) if e.data.is_empty() => continue,
                Some(e) => return Ok((e.id.clone(), e.message()?)),
            }
        }
    }
}

fn parse_block(block: &[u8]) -> Result<Option<Event>> {
    let text = std::str::from_utf8(block).map_err(|e| format!("SSE not UTF-8: {e}"))?;
    let mut event = Event::default();
    let mut seen = false;
    let mut data = Vec::new();
    for line in text
        .split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
    {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        seen = true;
        match field {
            "id" => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    event.data = data.join("\n");
    Ok(seen.then_some(event))
}

/// The messages of a complete SSE body.
fn sse_messages(body: &[u8]) -> Result<Vec<Value>> {
    let mut messages = Vec::new();
    let text = std::str::from_utf8(body).map_err(|e| format!("SSE not UTF-8: {e}"))?;
    for chunk in text.split("\n\n") {
        if let Some(event) = parse_block(chunk.as_bytes())?
            && !event.data.is_empty()
        {
            messages.push(event.message()?);
        }
    }
    Ok(messages)
}

/// The one message of a POST answer, SSE or JSON.
fn one_message(headers: &HeaderMap, body: &[u8]) -> Result<Value> {
    let sse = headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !sse {
        return serde_json::from_slice(body).map_err(|e| format!("JSON body: {e}"));
    }
    match <[Value; 1]>::try_from(sse_messages(body)?) {
        Ok([message]) => Ok(message),
        Err(messages) => Err(format!("one message expected, got {messages:?}")),
    }
}

fn expect_status(what: &str, got: StatusCode, want: StatusCode, body: &[u8]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    Err(format!(
        "{what}: {got} (expected {want}): {}",
        String::from_utf8_lossy(&body[..body.len().min(300)])
    ))
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn initialize_body(version: &str) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": { "name": "soak", "version": "0" },
        },
    })
    .to_string()
    .into_bytes()
}

const INITIALIZED: &[u8] = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

fn echo_body(id: u64, text: &str) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": text } },
    })
    .to_string()
    .into_bytes()
}

/// `test_tool_with_progress`: three progress notifications 50 ms apart, then the result.
fn progress_body(id: u64) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": id } },
    })
    .to_string()
    .into_bytes()
}

fn is_progress(message: &Value) -> bool {
    message["method"] == "notifications/progress"
}

fn check_echo(message: &Value, id: u64, text: &str) -> Result<()> {
    if message["id"] == id && message["result"]["content"][0]["text"] == text {
        return Ok(());
    }
    Err(format!("echo {id} answered {message}"))
}

/// Opens a Streamable HTTP session; returns its id.
async fn open_session(client: &mut Client, version: &str) -> Result<String> {
    let head = Head {
        accept: Some(ACCEPT_BOTH),
        ..Head::default()
    };
    let (status, headers, body) = client
        .exchange(Method::POST, "/mcp", &head, initialize_body(version))
        .await?;
    expect_status("initialize", status, StatusCode::OK, &body)?;
    let answer = one_message(&headers, &body)?;
    if answer["result"]["protocolVersion"] != version {
        return Err(format!("initialize answered {answer}"));
    }
    let session = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .ok_or("initialize without Mcp-Session-Id")?
        .to_owned();
    let head = Head {
        accept: Some(ACCEPT_BOTH),
        session: Some(&session),
        version: Some(version),
        ..Head::default()
    };
    let (status, _, body) = client
        .exchange(Method::POST, "/mcp", &head, INITIALIZED.to_vec())
        .await?;
    expect_status("initialized", status, StatusCode::ACCEPTED, &body)?;
    Ok(session)
}

async fn delete_session(client: &mut Client, session: &str, version: &str) -> Result<()> {
    let head = Head {
        session: Some(session),
        version: Some(version),
        ..Head::default()
    };
    let (status, _, body) = client
        .exchange(Method::DELETE, "/mcp", &head, Vec::new())
        .await?;
    expect_status("DELETE", status, StatusCode::OK, &body)
}

async fn churn(client: &mut Client, n: u64) -> Result<()> {
    const V: &str = "2025-06-18";
    let session = open_session(client, V).await?;
    let head = Head {
        accept: Some(ACCEPT_BOTH),
        session: Some(&session),
        version: Some(V),
        ..Head::default()
    };
    let text = format!("soak {n}");
    let (status, headers, body) = client
        .exchange(Method::POST, "/mcp", &head, echo_body(1, &text))
        .await?;
    expect_status("echo", status, StatusCode::OK, &body)?;
    check_echo(&one_message(&headers, &body)?, 1, &text)?;
    delete_session(client, &session, V).await
}

async fn streams(client: &mut Client) -> Result<()> {
    const V: &str = "2025-11-25";
    let session = open_session(client, V).await?;
    let head = Head {
        accept: Some("text/event-stream"),
        session: Some(&session),
        version: Some(V),
        ..Head::default()
    };
    let (status, _, mut standalone, standalone_conn) = client
        .open_stream(Method::GET, "/mcp", &head, Vec::new())
        .await?;
    expect_status("standalone GET", status, StatusCode::OK, b"")?;
    // 2025-11-25: a priming event (an id, no data) first.
    match standalone.next().await? {
        Some(e) if e.id.is_some() && e.data.is_empty() => {}
        other => return Err(format!("standalone stream began with {other:?}")),
    }
    let head = Head {
        accept: Some(ACCEPT_BOTH),
        ..head
    };
    let (status, headers, body) = client
        .exchange(Method::POST, "/mcp", &head, progress_body(2))
        .await?;
    expect_status("progress call", status, StatusCode::OK, &body)?;
    if !headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        return Err("progress call not answered with SSE".into());
    }
    let messages = sse_messages(&body)?;
    let progress = messages.iter().filter(|m| is_progress(m)).count();
    let answered = messages
        .last()
        .is_some_and(|m| m["id"] == 2 && m["result"].is_object());
    if progress != 3 || !answered {
        return Err(format!(
            "progress call: {progress} notifications, answered {answered}"
        ));
    }
    drop(standalone_conn);
    delete_session(client, &session, V).await
}

async fn disconnect_and_resume(client: &mut Client) -> Result<()> {
    const V: &str = "2025-11-25";
    let session = open_session(client, V).await?;
    let head = Head {
        accept: Some(ACCEPT_BOTH),
        session: Some(&session),
        version: Some(V),
        ..Head::default()
    };
    let (status, _, mut events, conn) = client
        .open_stream(Method::POST, "/mcp", &head, progress_body(3))
        .await?;
    expect_status("progress call", status, StatusCode::OK, b"")?;
    // Read up to the first progress notification, then cut the connection.
    let (last_id, first) = events.next_message().await?;
    if !is_progress(&first) {
        return Err(format!("expected progress first, got {first}"));
    }
    let last_id = last_id.ok_or("a progress event without an id")?;
    drop(events);
    drop(conn);

    let head = Head {
        accept: Some("text/event-stream"),
        last_event_id: Some(&last_id),
        ..head
    };
    let (status, _, mut events, conn) = client
        .open_stream(Method::GET, "/mcp", &head, Vec::new())
        .await?;
    expect_status("resume", status, StatusCode::OK, b"")?;
    let mut progress = 1;
    loop {
        let (_, message) = events.next_message().await?;
        if is_progress(&message) {
            progress += 1;
            continue;
        }
        if message["id"] != 3 || !message["result"].is_object() {
            return Err(format!("resumed stream answered {message}"));
        }
        break;
    }
    if progress != 3 {
        return Err(format!(
            "{progress} progress notifications across the resume, not 3"
        ));
    }
    drop(conn);
    delete_session(client, &session, V).await
}

async fn legacy(client: &mut Client, n: u64) -> Result<()> {
    let head = Head {
        accept: Some("text/event-stream"),
        ..Head::default()
    };
    let (status, _, mut events, conn) = client
        .open_stream(Method::GET, "/sse", &head, Vec::new())
        .await?;
    expect_status("GET /sse", status, StatusCode::OK, b"")?;
    let endpoint = match events.next().await? {
        Some(e) if e.event.as_deref() == Some("endpoint") => e.data,
        other => return Err(format!("/sse began with {other:?}")),
    };
    let head = Head::default();
    let post = async |client: &mut Client, body: Vec<u8>| -> Result<()> {
        let (status, _, body) = client
            .exchange(Method::POST, &endpoint, &head, body)
            .await?;
        expect_status("POST /messages", status, StatusCode::ACCEPTED, &body)
    };
    post(client, initialize_body("2024-11-05")).await?;
    let (_, answer) = events.next_message().await?;
    if answer["id"] != 0 || !answer["result"].is_object() {
        return Err(format!("legacy initialize answered {answer}"));
    }
    post(client, INITIALIZED.to_vec()).await?;
    let text = format!("legacy {n}");
    post(client, echo_body(1, &text)).await?;
    let (_, answer) = events.next_message().await?;
    check_echo(&answer, 1, &text)?;
    // The legacy session ends with its stream.
    drop(events);
    drop(conn);
    Ok(())
}

async fn worker(addr: SocketAddr, stats: Arc<Stats>, until: Instant, index: u64) {
    let mut client = Client {
        addr,
        conn: None,
        stats: stats.clone(),
    };
    // Mostly churn; every worker starts at a different point of the mix.
    const MIX: [usize; 8] = [0, 1, 0, 2, 0, 3, 0, 2];
    let mut n = index;
    while Instant::now() < until {
        let scenario = MIX[(n as usize) % MIX.len()];
        let result = match scenario {
            0 => churn(&mut client, n).await,
            1 => streams(&mut client).await,
            2 => disconnect_and_resume(&mut client).await,
            _ => legacy(&mut client, n).await,
        };
        stats.scenarios[scenario].fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            stats.error(SCENARIOS[scenario], e);
            // A fresh connection after an error.
            client.conn = None;
        }
        n += 1;
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = env("MCP_SOAK_SECS", if full { 180 } else { 3 });
    let workers = env("MCP_SOAK_WORKERS", 8).max(1);
    let args = std::env::var("MCP_SOAK_ARGS").unwrap_or_default();
    let args: Vec<&str> = args.split_whitespace().collect();
    let server = support::Proxy::builtin(&args);
    let pid = server.pid;
    let addr: SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address");
    println!(
        "soak: {} {} (pid {pid}) on {addr}, {secs} s, {workers} clients",
        env!("CARGO_BIN_EXE_mcp-proxy"),
        args.join(" ")
    );
    let stats = Arc::new(Stats::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    report("start", pid, &stats, started);
    let pinged = runtime.block_on(async {
        let until = Instant::now() + Duration::from_secs(secs);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..workers {
            tasks.spawn(worker(addr, stats.clone(), until, i));
        }
        let sampler = {
            let stats = stats.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval_at(
                    tokio::time::Instant::now() + SAMPLE_EVERY,
                    SAMPLE_EVERY,
                );
                loop {
                    every.tick().await;
                    report("", pid, &stats, started);
                }
            })
        };
        // Every step is bounded, so the workers end soon after `until`; this is the backstop.
        let backstop = Duration::from_secs(secs) + 4 * STEP_TIMEOUT;
        if tokio::time::timeout(backstop, async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            stats.error("run", "workers still running at the backstop".into());
            tasks.abort_all();
        }
        sampler.abort();
        report("end", pid, &stats, started);
        // Client connections are closed now; give the server a moment to notice.
        tokio::time::sleep(Duration::from_secs(2)).await;
        report("settled", pid, &stats, started);
        let mut client = Client {
            addr,
            conn: None,
            stats: stats.clone(),
        };
        client
            .exchange(Method::GET, "/ping", &Head::default(), Vec::new())
            .await
            .is_ok_and(|(status, _, body)| status == StatusCode::OK && &body[..] == b"pong")
    });
    let elapsed = started.elapsed().as_secs_f64();
    let requests = stats.requests.load(Ordering::Relaxed);
    let errors = stats.errors.load(Ordering::Relaxed);
    let mix: Vec<String> = SCENARIOS
        .iter()
        .zip(&stats.scenarios)
        .map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    println!("  scenarios: {}", mix.join(", "));
    println!(
        "  requests {requests} ({:.0}/s), errors {errors}, /ping after: {}",
        requests as f64 / elapsed,
        if pinged { "pong" } else { "NO ANSWER" }
    );
    for e in stats.first_errors.lock().unwrap().iter() {
        println!("  error: {e}");
    }
    let log = server.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    println!("  server warnings/errors logged: {}", warnings.len());
    for line in warnings.iter().take(5) {
        println!("    {line}");
    }
    if errors > 0 || !pinged {
        std::process::exit(1);
    }
}
