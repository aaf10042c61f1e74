//! A deterministic cost figure: N `tools/call` echo requests through the full stack in process
//! (JSON mode, or SSE with the `sse` argument, a stateless server with `stateless`, or
//! 2026-07-28 requests with `modern`; `metrics` adds the Prometheus layers as `mcp-proxy
//! --metrics-port` does), for counting instructions per request with callgrind,
//! which repeats exactly on a noisy machine:
//!
//! ```text
//! cargo build --release --bench instructions
//! valgrind --tool=callgrind target/release/deps/instructions-* 1000
//! valgrind --tool=callgrind target/release/deps/instructions-* 11000
//! # (second total - first total) / 10000 = instructions per request
//! ```
//!
//! Under `cargo test` it makes a few calls as a smoke run.
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::{McpStack, SessionContext};
use tower::{Layer, Service, ServiceExt};

fn post(body: String, session: Option<&str>) -> Request<Full<Bytes>> {
    let mut r = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(id) = session {
        r = r.header("mcp-session-id", id);
    }
    r.body(Full::<Bytes>::from(body)).unwrap()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let sse = std::env::args().any(|a| a == "sse");
    let stateless = std::env::args().any(|a| a == "stateless");
    let modern = std::env::args().any(|a| a == "modern");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut svc = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
            .json_response(!sse)
            .stateless(stateless)
            .into_service();
        let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from the load generator"}}}"#;
        if stateless || modern {
            let modern_call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from the load generator"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;
            for _ in 0..n {
                let req = if modern {
                    Request::post("/mcp")
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2026-07-28")
                        .header("mcp-method", "tools/call")
                        .header("mcp-name", "echo")
                        .body(Full::<Bytes>::from(modern_call))
                        .unwrap()
                } else {
                    post(call.into(), None)
                };
                let r = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc).await.unwrap().call(req).await.unwrap();
                let _ = r.into_body().collect().await;
            }
            return;
        }
        if std::env::args().any(|a| a == "metrics") {
            let metrics = mcp_tower_http::metrics::Metrics::new();
            let inner = McpStack::new(metrics.rpc_layer().layer(EverythingServer::new()))
                .json_response(!sse)
                .into_service();
            metrics.track_stack(&inner);
            let svc = metrics.http_layer().layer(inner);
            session_calls(svc, n, call).await;
            return;
        }
        session_calls(svc, n, call).await;
    });
}

/// Opens a session, then makes `n` calls on it.
async fn session_calls<S, B>(mut svc: S, n: usize, call: &str)
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    {
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}"#;
        let r = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
            .await
            .unwrap()
            .call(post(init.into(), None))
            .await
            .unwrap();
        let id = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let _ = r.into_body().collect().await;
        for _ in 0..n {
            let r = ServiceExt::<Request<Full<Bytes>>>::ready(&mut svc)
                .await
                .unwrap()
                .call(post(call.into(), Some(&id)))
                .await
                .unwrap();
            let _ = r.into_body().collect().await;
        }
    }
}
