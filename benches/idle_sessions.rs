//! Memory per idle session: opens N sessions through the full stack (initialize +
//! notifications/initialized, the built-in server behind each) and reports the growth of the
//! process's resident memory per session. `cargo bench --bench idle_sessions` opens 100,000;
//! under `cargo test` it opens 2,000 as a smoke run.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::{McpStack, SessionContext};
use std::time::Instant;
use tower::{Service, ServiceExt};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"idle-bench","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// Resident memory in bytes, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn post(body: &'static str, session: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    request.body(Full::from(body)).expect("request")
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let sessions: usize = if full { 100_000 } else { 2_000 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut service = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
            .json_response(true)
            .into_service();
        // Warm up allocator pools and lazy tables with a few sessions first.
        for _ in 0..100 {
            open(&mut service).await;
        }
        let before = rss_bytes().unwrap_or(0);
        let started = Instant::now();
        for _ in 0..sessions {
            open(&mut service).await;
        }
        let elapsed = started.elapsed();
        let after = rss_bytes().unwrap_or(0);
        let live = service.sessions().len();
        assert_eq!(live, sessions + 100, "every session stays open");
        let per_session = after.saturating_sub(before) as f64 / sessions as f64;
        println!(
            "idle_sessions: {sessions} sessions opened in {:.2} s ({:.0}/s); RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per idle session",
            elapsed.as_secs_f64(),
            sessions as f64 / elapsed.as_secs_f64(),
            before as f64 / 1048576.0,
            after as f64 / 1048576.0,
            per_session
        );
    });
}

async fn open<S>(service: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<mcp_tower_http::stack::StackBody>>,
    S::Error: std::fmt::Debug,
{
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(post(INIT, None))
        .await
        .expect("initialize");
    let id = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("session id");
    let _ = response.into_body().collect().await;
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(post(INITIALIZED, Some(&id)))
        .await
        .expect("initialized");
    assert_eq!(response.status(), 202);
}
