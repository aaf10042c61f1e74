//! Shared helpers for the integration tests: a server on a loopback port, a small hyper client,
//! an SSE parser and a frame-by-frame body reader.
//!
//! Every network operation is bounded by [`TIMEOUT`], so a test that goes wrong fails instead of
//! hanging.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::session::SessionRegistry;
use mcp_tower_http::{BoxError, McpStack, SessionContext};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The bound on every single network operation of a test.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The `Accept` a conforming POST sends.
pub const ACCEPT_BOTH: (&str, &str) = ("accept", "application/json, text/event-stream");
/// `Content-Type: application/json`.
pub const JSON: (&str, &str) = ("content-type", "application/json");
/// `Accept: text/event-stream`, for GET.
pub const ACCEPT_SSE: (&str, &str) = ("accept", "text/event-stream");

/// The make-service of the built-in "everything" server, as a nameable type.
pub type Everything = fn(&SessionContext<'_>) -> EverythingServer;

fn make_everything(_: &SessionContext<'_>) -> EverythingServer {
    EverythingServer::new()
}

/// The stack around the everything server, with defaults; customize it, then [`spawn`] it.
pub fn stack() -> McpStack<Everything> {
    McpStack::new(make_everything as Everything)
}

/// A server on `127.0.0.1:<free port>`; stops (accept loop and every connection) when dropped.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    sessions: Option<Arc<SessionRegistry>>,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Wraps a server task that serves on `addr`; the task is aborted on drop.
    pub fn from_task(
        addr: SocketAddr,
        task: JoinHandle<()>,
        sessions: Option<Arc<SessionRegistry>>,
    ) -> Self {
        Self {
            base: format!("http://{addr}"),
            url: format!("http://{addr}/mcp"),
            addr,
            sessions,
            task,
        }
    }

    /// Records the session table of the served stack, for [`TestServer::sessions`].
    pub fn with_sessions(mut self, sessions: Arc<SessionRegistry>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The session table of the served stack.
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        self.sessions
            .as_ref()
            .expect("this server was not started from an McpStack")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `stack.endpoint_path("/mcp")` on a loopback port.
pub async fn spawn(stack: McpStack<Everything>) -> TestServer {
    let service = stack.endpoint_path("/mcp").into_service();
    let sessions = service.sessions().clone();
    serve(service).await.with_sessions(sessions)
}

/// Serves any tower service with the hyper-util auto builder, like `mcp-proxy` does.
pub async fn serve<S, B>(service: S) -> TestServer
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
        // Dropping the set (when this task is aborted) aborts every connection task.
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
    TestServer::from_task(addr, task, None)
}

/// Awaits `future`, failing the test after [`TIMEOUT`].
pub async fn bounded<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    // A fresh client per request: no pooled connection outlives the test's runtime.
    Client::builder(TokioExecutor::new()).build_http()
}

fn build(method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(body)).expect("request")
}

/// Sends a request and returns the response head with the body still streaming.
pub async fn open(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let request = build(method.clone(), url, headers, body.into());
    bounded(&format!("{method} {url}"), client().request(request))
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e:?}"))
}

/// Sends a request and reads the whole response.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, String) {
    let response = open(method.clone(), url, headers, body).await;
    let (parts, body) = response.into_parts();
    let bytes = bounded(&format!("body of {method} {url}"), body.collect())
        .await
        .expect("read body")
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).expect("utf-8 body");
    (parts.status, parts.headers, text)
}

/// POST.
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, String) {
    send(Method::POST, url, headers, body.to_owned()).await
}

/// GET, reading the whole body (use [`open`] for streams).
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    send(Method::GET, url, headers, Bytes::new()).await
}

/// DELETE.
pub async fn delete(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, String) {
    send(Method::DELETE, url, headers, Bytes::new()).await
}

/// The headers of a conforming POST on a session (`None`: no session header).
pub fn session_headers<'a>(session: Option<&'a str>, version: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![ACCEPT_BOTH, JSON, ("mcp-protocol-version", version)];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    headers
}

/// An `initialize` request body.
pub fn initialize_body(id: i64, version: &str) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            // A client that can answer the server's input requests.
            "capabilities": { "sampling": {}, "elicitation": {}, "roots": {} },
            "clientInfo": { "name": "integration-test", "version": "0" },
        },
    })
    .to_string()
}

/// A request body.
pub fn request_body(id: i64, method: &str, params: Value) -> String {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()
}

/// Initializes a session at `version`, sends `notifications/initialized`, returns the session id.
pub async fn initialize(url: &str, version: &str) -> String {
    let (status, headers, body) =
        post(url, &[ACCEPT_BOTH, JSON], &initialize_body(1, version)).await;
    assert_eq!(status, StatusCode::OK, "initialize: {body}");
    let session = headers
        .get("mcp-session-id")
        .expect("initialize response carries Mcp-Session-Id")
        .to_str()
        .expect("ascii session id")
        .to_owned();
    let answer = one_message(&headers, &body);
    assert_eq!(answer["id"], 1, "{body}");
    assert!(answer["result"]["protocolVersion"].is_string(), "{body}");
    let (status, _, body) = post(
        url,
        &session_headers(Some(&session), version),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "notifications/initialized: {body}"
    );
    session
}

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field.
    pub id: Option<String>,
    /// The `event:` field.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Parses an SSE body into events; comment-only blocks (keep-alives) are skipped.
pub fn sse_events(body: &str) -> Vec<SseEvent> {
    let normalized = body.replace("\r\n", "\n");
    let mut events = Vec::new();
    for block in normalized.split("\n\n") {
        let mut event = SseEvent::default();
        let mut has_field = false;
        let mut data_lines: Vec<&str> = Vec::new();
        for line in block.lines() {
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            has_field = true;
            match field {
                "id" => event.id = Some(value.to_owned()),
                "event" => event.event = Some(value.to_owned()),
                "data" => data_lines.push(value),
                _ => {}
            }
        }
        if has_field {
            event.data = data_lines.join("\n");
            events.push(event);
        }
    }
    events
}

/// The JSON-RPC messages of an SSE body (events with non-empty data).
pub fn sse_messages(body: &str) -> Vec<Value> {
    sse_events(body)
        .into_iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| serde_json::from_str(&e.data).unwrap_or_else(|_| panic!("event data: {}", e.data)))
        .collect()
}

/// The single JSON-RPC message of a response, SSE or JSON.
pub fn one_message(headers: &HeaderMap, body: &str) -> Value {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("text/event-stream") {
        let mut messages = sse_messages(body);
        assert_eq!(messages.len(), 1, "one message expected: {body}");
        messages.remove(0)
    } else {
        json_body(body)
    }
}

/// Parses a JSON body.
pub fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// Asserts a JSON-RPC error response: content type, code and id; returns the message.
pub fn assert_rpc_error(headers: &HeaderMap, body: &str, code: i64, id: Value) -> String {
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json; charset=utf-8"),
        "error content type; body {body}"
    );
    let value = json_body(body);
    assert_eq!(value["jsonrpc"], "2.0", "{body}");
    assert_eq!(value["error"]["code"], code, "error code; body {body}");
    assert_eq!(value["id"], id, "error id; body {body}");
    assert!(value.get("result").is_none(), "{body}");
    value["error"]["message"]
        .as_str()
        .expect("error message")
        .to_owned()
}

/// The next data frame of a streaming body: `None` at its end, panics after `timeout`.
pub async fn next_frame(body: &mut Incoming, timeout: Duration) -> Option<Bytes> {
    try_next_frame(body, timeout)
        .await
        .unwrap_or_else(|()| panic!("no frame within {timeout:?}"))
}

/// Like [`next_frame`], but `Err(())` when nothing arrives within `timeout`.
pub async fn try_next_frame(body: &mut Incoming, timeout: Duration) -> Result<Option<Bytes>, ()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(()),
            Ok(None) => return Ok(None),
            Ok(Some(frame)) => frame.expect("body frame"),
        };
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// Reads a streaming body to its end, frame by frame, with `timeout` per frame.
pub async fn read_frames(body: &mut Incoming, timeout: Duration) -> Vec<Bytes> {
    let mut frames = Vec::new();
    while let Some(frame) = next_frame(body, timeout).await {
        frames.push(frame);
    }
    frames
}

/// The text of a header, or `""`.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Writes `bytes` on a fresh TCP connection and reads until the server closes it (or `wait`
/// passes, for a server that keeps the connection open).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = bounded("connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    bounded("write", stream.write_all(bytes))
        .await
        .expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            // A reset after the answer was read still leaves the answer.
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}
