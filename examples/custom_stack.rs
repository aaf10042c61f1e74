//! A custom stack: this crate's `McpStack` mixed with tower-http's `TraceLayer`,
//! `CompressionLayer` and `TimeoutLayer`, with a per-principal rate limit inside the stack
//! (`PrincipalLimitLayer`), where the authenticated `Principal` is known.
//!
//! ```text
//! PORT=3000 cargo run --example custom_stack
//! curl -s http://127.0.0.1:3000/mcp -H 'x-api-key: demo-key' \
//!   -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
//!   -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
//! ```
//!
//! Order, from the outside in: trace every request; compress answers (tower-http's default
//! predicate leaves `text/event-stream` alone, so SSE streams are never buffered); give up on an
//! answer whose head takes over 30 s (the head only: an open stream is not cut); then the MCP
//! stack, whose rate limit runs right after authentication, before the body is read
//! ([`McpStack::principal_limits`]).
use http::{Request, Response, StatusCode};
use mcp_tower_http::McpStack;
use mcp_tower_http::auth::ApiKeys;
use mcp_tower_http::rate_limit::PrincipalLimitLayer;
use mcp_tower_http::server::{CallToolResult, Implementation, McpServer, Tool};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tower::{Service, ServiceBuilder};
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

#[derive(Deserialize)]
struct EchoArgs {
    text: String,
}

/// The MCP server: one `echo` tool.
pub fn server() -> McpServer {
    McpServer::builder(Implementation::new("custom-stack", "1.0.0"))
        .tool(
            Tool::new("echo", "Echoes the text back").input_schema(json!({
                "type": "object",
                "properties": { "text": { "type": "string" } },
                "required": ["text"]
            })),
            |args: EchoArgs, _cx| async move { Ok(CallToolResult::text(args.text)) },
        )
        .build()
}

/// The whole service, ready for hyper or axum: each principal may send `max_per_window`
/// requests at once, then one every `window / max_per_window` (429 with `Retry-After` and a
/// JSON-RPC error body beyond).
pub fn service(
    max_per_window: u32,
    window: Duration,
) -> impl Service<
    Request<hyper::body::Incoming>,
    Response = Response<
        impl http_body::Body<Data = bytes::Bytes, Error = impl Into<mcp_tower_http::BoxError>>
        + Send
        + 'static,
    >,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    let mcp = McpStack::new(server())
        .endpoint_path("/mcp")
        .authenticate(
            ApiKeys::new()
                .key_with_subject("demo-key", "demo")
                .key_with_subject("other-key", "other"),
        )
        .json_response(true)
        .principal_limits(PrincipalLimitLayer::new().rate(
            f64::from(max_per_window) / window.as_secs_f64(),
            max_per_window,
        ))
        .into_service();
    ServiceBuilder::new()
        .layer(TraceLayer::new_for_http())
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(30),
        ))
        .service(mcp)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> std::io::Result<()> {
    // TraceLayer logs through `tracing`: install a subscriber here (e.g.
    // `tracing_subscriber::fmt::init()`) to see its spans.
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    let service = service(60, Duration::from_secs(60));
    loop {
        let (stream, _) = listener.accept().await?;
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}
