//! A custom stack: this crate's `McpStack` mixed with tower-http's `TraceLayer`,
//! `CompressionLayer` and `TimeoutLayer`, plus a per-principal rate limit of our own inside the
//! stack, where the authenticated `Principal` is known.
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
//! stack, with the rate limit at its [`McpStack::layer`] point, after authentication.
use futures_util::future::Either;
use http::{Request, Response, StatusCode};
use mcp_tower_http::auth::ApiKeys;
use mcp_tower_http::jsonrpc_body::ParsedBody;
use mcp_tower_http::server::{CallToolResult, Implementation, McpServer, Tool};
use mcp_tower_http::stack::McpCoreBody;
use mcp_tower_http::{McpStack, Principal, TransportError};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service, ServiceBuilder};
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

/// The whole service, ready for hyper or axum.
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
        .layer(RateLimitLayer::new(max_per_window, window))
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

/// At most `max` requests per principal per fixed window; over it, 429 with `Retry-After` and
/// a JSON-RPC error body (rendered by the stack like any rejection). The table holds only the
/// principals of the current window, so it cannot grow past the callers seen in one window.
#[derive(Clone)]
pub struct RateLimitLayer {
    state: Arc<Mutex<Window>>,
    max: u32,
    window: Duration,
}

struct Window {
    started: Instant,
    counts: HashMap<Arc<str>, u32>,
}

impl RateLimitLayer {
    /// `max` requests per principal per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(Window {
                started: Instant::now(),
                counts: HashMap::new(),
            })),
            max,
            window,
        }
    }

    /// Counts one request of `subject`; `false` when it is over the limit.
    fn admit(&self, subject: &Arc<str>) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        if state.started.elapsed() >= self.window {
            state.started = Instant::now();
            state.counts.clear();
        }
        let count = state.counts.entry(subject.clone()).or_insert(0);
        *count += 1;
        *count <= self.max
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limit: self.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limit: RateLimitLayer,
}

impl<S> Service<Request<ParsedBody>> for RateLimit<S>
where
    S: Service<Request<ParsedBody>, Response = Response<McpCoreBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<McpCoreBody>;
    type Error = Infallible;
    // No boxing on the admitted path.
    type Future = Either<S::Future, Ready<Result<Response<McpCoreBody>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ParsedBody>) -> Self::Future {
        let admitted = req
            .extensions()
            .get::<Principal>()
            .is_none_or(|p| self.limit.admit(&p.subject));
        if admitted {
            Either::Left(self.inner.call(req))
        } else {
            let secs = u32::try_from(self.limit.window.as_secs().max(1)).unwrap_or(u32::MAX);
            Either::Right(ready(Ok(
                TransportError::too_many_requests(secs).into_response()
            )))
        }
    }
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
