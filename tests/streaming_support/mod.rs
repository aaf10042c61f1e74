//! Helpers of `tests/streaming.rs`: a server on a loopback port, one HTTP/1.1 connection per
//! request (so a test can drop exactly that connection), an incremental SSE reader and a small
//! [`McpService`] with tools that stream, wait, flood and record what they did.
//!
//! Every network wait is bounded by [`TIMEOUT`]: a test that goes wrong fails, it never hangs.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use mcp_tower_http::jsonrpc::{ErrorObject, Request as RpcRequest};
use mcp_tower_http::{BoxError, McpService, RequestContext, SessionContext};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The bound on every single network wait.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test after [`TIMEOUT`].
pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

/// Polls `condition` every 10 ms until it holds; fails the test after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// A server on `127.0.0.1:<free port>`; the accept loop and every connection stop on drop.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves a tower service with the hyper-util auto builder, as `mcp-proxy` does.
pub async fn serve<S, B>(service: S) -> Server
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(service.clone());
            connections.spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    Server { addr, task }
}

// ---------------------------------------------------------------------------------------------
// Client: one connection per request

/// A response whose connection the test owns: dropping it (or [`Exchange::disconnect`]) closes
/// the TCP connection.
pub struct Exchange {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    conn: JoinHandle<()>,
    /// Received bytes not yet parsed: `buf[pos..]` (consumed bytes are dropped on the next fill,
    /// so a multi-megabyte replay is not shifted once per event).
    buf: Vec<u8>,
    pos: usize,
    /// `Some(true)` after a clean end of body, `Some(false)` after a body error.
    pub ended: Option<bool>,
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// Sends one request on a fresh connection to `addr` and returns the response head.
pub async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Exchange {
    let stream = bounded("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, connection) = bounded(
        "handshake",
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)),
    )
    .await
    .expect("handshake");
    let conn = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    let response = bounded(&format!("{method} {path}"), sender.send_request(request))
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
    let (parts, body) = response.into_parts();
    Exchange {
        status: parts.status,
        headers: parts.headers,
        body,
        conn,
        buf: Vec::new(),
        pos: 0,
        ended: None,
    }
}

/// One parsed SSE event (or comment block).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub retry: Option<u64>,
    pub comments: Vec<String>,
    /// The block as received, without its terminating blank line.
    pub raw: String,
}

impl Event {
    fn parse(raw: &str) -> Self {
        let mut event = Event {
            raw: raw.to_owned(),
            ..Event::default()
        };
        for line in raw.split('\n') {
            if let Some(comment) = line.strip_prefix(':') {
                event.comments.push(comment.trim().to_owned());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = Some(value.to_owned()),
                "id" => event.id = Some(value.to_owned()),
                "retry" => event.retry = value.parse().ok(),
                "data" => {
                    event.data = Some(match event.data.take() {
                        Some(previous) => format!("{previous}\n{value}"),
                        None => value.to_owned(),
                    })
                }
                other => panic!("unexpected SSE field {other:?} in {raw:?}"),
            }
        }
        event
    }

    /// `true` for a block of comments only (`: keepalive`).
    pub fn is_comment(&self) -> bool {
        self.event.is_none() && self.id.is_none() && self.data.is_none() && self.retry.is_none()
    }

    /// The JSON of the `data` field.
    pub fn json(&self) -> Value {
        let data = self
            .data
            .as_deref()
            .unwrap_or_else(|| panic!("no data: {self:?}"));
        serde_json::from_str(data).unwrap_or_else(|e| panic!("bad JSON {data:?}: {e}"))
    }

    /// The `(stream, seq)` of the `id` field, which must be `<stream>/<seq>`.
    pub fn stream_seq(&self) -> (u64, u64) {
        let id = self
            .id
            .as_deref()
            .unwrap_or_else(|| panic!("no id: {self:?}"));
        let (stream, seq) = id
            .split_once('/')
            .unwrap_or_else(|| panic!("id not <stream>/<seq>: {id:?}"));
        (
            stream
                .parse()
                .unwrap_or_else(|_| panic!("bad stream in {id:?}")),
            seq.parse().unwrap_or_else(|_| panic!("bad seq in {id:?}")),
        )
    }
}

impl Exchange {
    /// Reads one more body frame into the buffer; `false` at the end of the body.
    async fn fill(&mut self) -> bool {
        if self.ended.is_some() {
            return false;
        }
        loop {
            match bounded("next body frame", self.body.frame()).await {
                None => {
                    self.ended = Some(true);
                    return false;
                }
                Some(Err(_)) => {
                    self.ended = Some(false);
                    return false;
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.drain(..self.pos);
                        self.pos = 0;
                        self.buf.extend_from_slice(&data);
                        return true;
                    }
                }
            }
        }
    }

    /// The next SSE block (events and comments alike); `None` at the end of the body.
    pub async fn next_block(&mut self) -> Option<Event> {
        loop {
            let unparsed = &self.buf[self.pos..];
            if let Some(end) = unparsed.windows(2).position(|w| w == b"\n\n") {
                let text = std::str::from_utf8(&unparsed[..end]).expect("utf-8 SSE");
                let event = Event::parse(text);
                self.pos += end + 2;
                return Some(event);
            }
            if !self.fill().await {
                let rest = &self.buf[self.pos..];
                assert!(
                    rest.is_empty(),
                    "body ended inside an event: {:?}",
                    String::from_utf8_lossy(rest)
                );
                return None;
            }
        }
    }

    /// The next SSE event, skipping comment blocks; `None` at the end of the body.
    pub async fn next_event(&mut self) -> Option<Event> {
        loop {
            let block = self.next_block().await?;
            if !block.is_comment() {
                return Some(block);
            }
        }
    }

    /// The next event; fails the test at the end of the body.
    pub async fn expect_event(&mut self) -> Event {
        self.next_event()
            .await
            .expect("the SSE body ended before the expected event")
    }

    /// Every remaining event until the body ends (comments skipped).
    pub async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next_event().await {
            events.push(event);
        }
        events
    }

    /// The whole remaining body as text.
    pub async fn text(&mut self) -> String {
        while self.fill().await {}
        let text = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        String::from_utf8(text).expect("utf-8 body")
    }

    /// Reads the rest of the body, counting bytes without keeping them; returns the count and
    /// the last 4 KiB or so.
    pub async fn drain_counting(&mut self) -> (usize, Vec<u8>) {
        let mut tail = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        let mut total = tail.len();
        while self.fill().await {
            total += self.buf.len();
            let keep = tail.len().min(4096);
            tail.drain(..tail.len() - keep);
            tail.append(&mut self.buf);
        }
        (total, tail)
    }

    /// Closes the TCP connection without reading further.
    pub fn disconnect(self) {
        drop(self);
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// MCP over the client

/// Headers of a conforming POST, with the session if any.
pub fn post_headers<'a>(session: Option<&'a str>, version: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", version),
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    headers
}

/// Headers of a GET on a session, optionally resuming after `last_event_id`.
pub fn get_headers<'a>(
    session: &'a str,
    version: &'a str,
    last_event_id: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("accept", "text/event-stream"),
        ("mcp-protocol-version", version),
        ("mcp-session-id", session),
    ];
    if let Some(id) = last_event_id {
        headers.push(("last-event-id", id));
    }
    headers
}

pub fn request_body(id: i64, method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

pub fn tool_call(id: i64, name: &str, arguments: Value) -> String {
    request_body(
        id,
        "tools/call",
        json!({ "name": name, "arguments": arguments, "_meta": { "progressToken": format!("p{id}") } }),
    )
}

/// POSTs on `session` and returns the response with its body still streaming.
pub async fn post(addr: SocketAddr, session: &str, version: &str, body: &str) -> Exchange {
    exchange(
        addr,
        Method::POST,
        "/mcp",
        &post_headers(Some(session), version),
        body.to_owned(),
    )
    .await
}

/// GETs the session's stream, optionally with `Last-Event-ID`.
pub async fn get(
    addr: SocketAddr,
    session: &str,
    version: &str,
    last_event_id: Option<&str>,
) -> Exchange {
    exchange(
        addr,
        Method::GET,
        "/mcp",
        &get_headers(session, version, last_event_id),
        Bytes::new(),
    )
    .await
}

/// Runs `initialize` + `notifications/initialized` at `version`; returns the session id and the
/// SSE events of the `initialize` response.
pub async fn initialize_with_events(addr: SocketAddr, version: &str) -> (String, Vec<Event>) {
    let body = request_body(
        1,
        "initialize",
        json!({
            "protocolVersion": version,
            "capabilities": { "sampling": {} },
            "clientInfo": { "name": "streaming-test", "version": "0" },
        }),
    );
    let mut init = exchange(
        addr,
        Method::POST,
        "/mcp",
        &post_headers(None, version),
        body,
    )
    .await;
    assert_eq!(init.status, StatusCode::OK, "initialize");
    let session = init.header("mcp-session-id").to_owned();
    assert!(!session.is_empty(), "initialize without Mcp-Session-Id");
    let events = init.rest().await;
    let result = events
        .iter()
        .find(|e| e.data.as_deref().is_some_and(|d| !d.is_empty()))
        .expect("initialize result event")
        .json();
    assert_eq!(result["result"]["protocolVersion"], version, "{result}");
    let mut done = post(
        addr,
        &session,
        version,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(done.status, StatusCode::ACCEPTED);
    assert_eq!(done.text().await, "");
    (session, events)
}

pub async fn initialize(addr: SocketAddr, version: &str) -> String {
    initialize_with_events(addr, version).await.0
}

/// The body of a JSON-RPC error response: `(code, message)`.
pub fn rpc_error(body: &str) -> (i64, String) {
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("bad error body {body:?}: {e}"));
    assert_eq!(value["jsonrpc"], "2.0", "{body}");
    (
        value["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("{body}")),
        value["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Reads the resident set size of this process from `/proc/self/status`, in bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

// ---------------------------------------------------------------------------------------------
// A small MCP server with streaming tools

/// What the tools of [`Probe`] did, shared with the test.
#[derive(Debug, Default)]
pub struct Record {
    pub started: AtomicBool,
    pub completed: AtomicBool,
    /// Messages the flood tool handed to the transport.
    pub flooded: AtomicU64,
}

/// A test server. Tools:
///
/// - `count {count, delay_ms}`: `count` progress notifications numbered `1..=count`, `delay_ms`
///   apart, then the text `counted <count>`.
/// - `standalone {from, count}`: notifications `notifications/message` with `data` numbered
///   `from..from+count` on the session's standalone stream, then `sent`.
/// - `slow {ms}`: sleeps, then `slept`; records `started` and `completed`.
/// - `flood {count, size}`: `count` notifications of `size` bytes on the request's stream, then
///   `flooded`; records `completed`.
/// - `echo {text}`: answers with the text.
///
/// `initialize` reports the session id as `serverInfo.name`, so a test can tell sessions apart
/// in replayed events.
#[derive(Debug)]
pub struct Probe {
    record: Arc<Record>,
    session: String,
}

/// A make-service building [`Probe`]s that share `record`.
pub fn probe(record: Arc<Record>) -> impl Fn(&SessionContext<'_>) -> Probe + Send + Sync + 'static {
    move |cx: &SessionContext<'_>| Probe {
        record: record.clone(),
        session: cx.session_id().map(|s| s.to_string()).unwrap_or_default(),
    }
}

fn text_result(text: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": text.into() }] })
}

fn arg(arguments: &Value, name: &str) -> u64 {
    arguments[name]
        .as_u64()
        .unwrap_or_else(|| panic!("argument {name} missing in {arguments}"))
}

impl McpService for Probe {
    async fn handle_request(
        &self,
        request: RpcRequest,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let params = request.params.unwrap_or(Value::Null);
        match request.method.as_str() {
            "initialize" => Ok(json!({
                "protocolVersion": params["protocolVersion"],
                "capabilities": { "tools": {} },
                "serverInfo": { "name": self.session, "version": "0" },
            })),
            "tools/call" => {
                let arguments = &params["arguments"];
                match params["name"].as_str().unwrap_or_default() {
                    "count" => {
                        let count = arg(arguments, "count");
                        let delay = Duration::from_millis(arg(arguments, "delay_ms"));
                        for n in 1..=count {
                            tokio::time::sleep(delay).await;
                            cx.notify_progress(n as f64, Some(count as f64), None).await;
                        }
                        self.record.completed.store(true, Ordering::SeqCst);
                        Ok(text_result(format!("counted {count}")))
                    }
                    "standalone" => {
                        let from = arg(arguments, "from");
                        let standalone = cx.peer().standalone();
                        for n in from..from + arg(arguments, "count") {
                            standalone
                                .notify(
                                    "notifications/message",
                                    Some(json!({ "level": "info", "data": n })),
                                )
                                .await
                                .map_err(|e| ErrorObject::invalid_params(e.to_string()))?;
                        }
                        Ok(text_result("sent"))
                    }
                    "slow" => {
                        self.record.started.store(true, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(arg(arguments, "ms"))).await;
                        self.record.completed.store(true, Ordering::SeqCst);
                        Ok(text_result("slept"))
                    }
                    "flood" => {
                        let count = arg(arguments, "count");
                        let filler = "x".repeat(arg(arguments, "size") as usize);
                        for n in 0..count {
                            let params =
                                json!({ "level": "debug", "data": { "n": n, "filler": filler } });
                            // A disconnected client only misses these; the handler goes on.
                            let _ = cx
                                .peer()
                                .notify("notifications/message", Some(params))
                                .await;
                            self.record.flooded.fetch_add(1, Ordering::SeqCst);
                        }
                        self.record.completed.store(true, Ordering::SeqCst);
                        Ok(text_result("flooded"))
                    }
                    "echo" => Ok(text_result(arguments["text"].as_str().unwrap_or_default())),
                    other => Err(ErrorObject::invalid_params(format!(
                        "Unknown tool: {other}"
                    ))),
                }
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }
}
