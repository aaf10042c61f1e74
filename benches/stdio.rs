//! The stdio bridge's costs, in process through the full stack (no sockets):
//!
//! - session start latency through a child (`initialize` → the child answers; spawn included),
//! - a `tools/call` round trip through the child against the same call to the built-in server,
//! - the same call as a 2026-07-28 request, through the pool of children (see the `stdio` module
//!   docs: the first request starts and initializes a child; the others reuse it).
//!
//! The child is `tests/fixtures/stdio_server.py` (Python stdlib only; its `say` tool echoes).
//! `cargo bench --bench stdio` runs 50 sessions and 5,000 calls; `cargo test` a smoke run.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::stdio::StdioCommand;
use mcp_tower_http::{MakeMcpService, McpStack, SessionContext};
use std::time::{Duration, Instant};
use tower::{Service, ServiceExt};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"stdio-bench","version":"1"}}}"#;

fn post(body: String, session: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    request.body(Full::from(body)).expect("request")
}

async fn send<S>(service: &mut S, request: Request<Full<Bytes>>) -> (Option<String>, String)
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<mcp_tower_http::stack::StackBody>>,
    S::Error: std::fmt::Debug,
{
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("response");
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (session, String::from_utf8_lossy(&body).into_owned())
}

/// A 2026-07-28 `tools/call` of `say`: no session, the revision and capabilities in `_meta`.
fn modern_call(id: usize) -> Request<Full<Bytes>> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"say","arguments":{{"text":"bench"}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "say")
        .body(Full::from(body))
        .expect("request")
}

/// Measures the first 2026-07-28 call (a child started and initialized, the server described)
/// and then `calls` round trips through the pooled child.
async fn run_modern(command: StdioCommand, calls: usize) -> (Duration, Duration) {
    let pool = command.pool();
    let mut service = McpStack::new(command).json_response(true).into_service();
    let started = Instant::now();
    let (_, answer) = send(&mut service, modern_call(1)).await;
    let first = started.elapsed();
    assert!(answer.contains("bench"), "unexpected answer: {answer}");
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let t = Instant::now();
        let (_, answer) = send(&mut service, modern_call(i + 2)).await;
        times.push(t.elapsed());
        assert!(answer.contains("bench"), "unexpected answer: {answer}");
    }
    times.sort();
    pool.close().await;
    (first, percentile(&times, 0.5))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Opens a session and measures `calls` round trips of `call` on it.
async fn run<M: MakeMcpService>(make: M, call: &str, calls: usize) -> (Duration, Duration) {
    let mut service = McpStack::new(make).json_response(true).into_service();
    let started = Instant::now();
    let (session, body) = send(&mut service, post(INIT.to_owned(), None)).await;
    let start_latency = started.elapsed();
    let session = session.unwrap_or_else(|| panic!("no session: {body}"));
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{call}}}"#,
            i + 2
        );
        let t = Instant::now();
        let (_, answer) = send(&mut service, post(body, Some(&session))).await;
        times.push(t.elapsed());
        assert!(answer.contains("bench"), "unexpected answer: {answer}");
    }
    times.sort();
    service.sessions().close_all().await;
    (start_latency, percentile(&times, 0.5))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (sessions, calls) = if full { (50, 5_000) } else { (3, 50) };
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stdio_server.py"
    );
    let child = || StdioCommand::new("python3").args([fixture]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut starts = Vec::new();
        for _ in 0..sessions {
            let (start, _) = run(child(), r#"{"name":"say","arguments":{"text":"bench"}}"#, 1).await;
            starts.push(start);
        }
        starts.sort();
        let (_, child_call) =
            run(child(), r#"{"name":"say","arguments":{"text":"bench"}}"#, calls).await;
        let (_, builtin_call) = run(
            |_: &SessionContext<'_>| EverythingServer::new(),
            r#"{"name":"echo","arguments":{"text":"bench"}}"#,
            calls,
        )
        .await;
        let (modern_first, modern_call) = run_modern(child(), calls).await;
        println!(
            "stdio: session start through a child (spawn + initialize): p50 {:.1} ms, p90 {:.1} ms over {sessions} sessions",
            percentile(&starts, 0.5).as_secs_f64() * 1e3,
            percentile(&starts, 0.9).as_secs_f64() * 1e3,
        );
        println!(
            "stdio: tools/call round trip p50: through the child {:.1} us, built-in server {:.1} us, bridge overhead {:.1} us ({calls} calls)",
            child_call.as_secs_f64() * 1e6,
            builtin_call.as_secs_f64() * 1e6,
            (child_call.saturating_sub(builtin_call)).as_secs_f64() * 1e6,
        );
        println!(
            "stdio: 2026-07-28 tools/call through the pool p50 {:.1} us ({:.2}x the 2025 session's); first call (child start + initialize + discovery) {:.1} ms",
            modern_call.as_secs_f64() * 1e6,
            modern_call.as_secs_f64() / child_call.as_secs_f64(),
            modern_first.as_secs_f64() * 1e3,
        );
    });
}
