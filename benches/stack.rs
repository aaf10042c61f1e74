//! In-process benchmarks of the Streamable HTTP stack: no sockets, no hyper, just tower services
//! driven with `oneshot` on a current-thread tokio runtime.
//!
//! - `stack/*`: the whole [`McpStack`] around [`EverythingServer`], one `tools/call` of `echo`
//!   per iteration (JSON, SSE and stateless modes), plus a full session lifecycle.
//! - `jsonrpc/*`: parsing and serializing a typical `tools/call` request and result.
//! - `layer/*`: each layer alone around a trivial `service_fn`, next to the bare `service_fn`, so
//!   the difference is what the layer costs. Every variant builds the same request and collects
//!   the response body, so those costs are in the baselines too.
//!
//! Run with `cargo bench --bench stack` (add `-- --quick` for a fast check).

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use mcp_tower_http::error_map::JsonRpcErrorLayer;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::jsonrpc::{Id, Message, Payload};
use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
use mcp_tower_http::session::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID, SessionLayer};
use mcp_tower_http::sse::{Outgoing, SseLayer};
use mcp_tower_http::{McpStack, SessionContext};
use serde_json::json;
use std::convert::Infallible;
use std::fmt::Debug;
use std::hint::black_box;
use std::time::Duration;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_http::limit::RequestBodyLimitLayer;

const PROTOCOL_VERSION: &str = "2025-11-25";
const ACCEPT: &str = "application/json, text/event-stream";

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-tower-http-bench","version":"0.0.0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const TOOLS_CALL_ECHO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"text":"hello from the benchmark"},"name":"echo"}}"#;
const TOOLS_CALL_ECHO_MODERN: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"text":"hello from the benchmark"},"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"mcp-tower-http-bench","version":"0.0.0"}}}}"#;
const TOOLS_CALL_RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"text":"hello from the benchmark","type":"text"}]}}"#;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A 2026-07-28 `tools/call` as a client sends it: routing headers, `_meta`, no session.
fn post_modern() -> Request<Full<Bytes>> {
    Request::post("/mcp")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, ACCEPT)
        .header(MCP_PROTOCOL_VERSION, "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .body(Full::new(Bytes::from_static(
            TOOLS_CALL_ECHO_MODERN.as_bytes(),
        )))
        .expect("request")
}

/// A POST as an MCP client sends it; `session` adds `Mcp-Session-Id`.
fn post(body: &'static str, session: Option<&HeaderValue>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/mcp")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, ACCEPT)
        .header(MCP_PROTOCOL_VERSION, PROTOCOL_VERSION);
    if let Some(id) = session {
        builder = builder.header(MCP_SESSION_ID, id.clone());
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

fn delete(session: &HeaderValue) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::DELETE)
        .uri("/mcp")
        .header(MCP_PROTOCOL_VERSION, PROTOCOL_VERSION)
        .header(MCP_SESSION_ID, session.clone())
        .body(Full::default())
        .expect("request")
}

/// Calls a clone of `service` once.
async fn call<S, B>(service: &S, req: Request<Full<Bytes>>) -> Response<B>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
{
    service.clone().oneshot(req).await.expect("service error")
}

async fn collect<B>(response: Response<B>) -> Bytes
where
    B: Body<Data = Bytes>,
    B::Error: Debug,
{
    response
        .into_body()
        .collect()
        .await
        .expect("body error")
        .to_bytes()
}

/// One request, the whole body collected: what each iteration measures.
async fn roundtrip<S, B>(service: &S, req: Request<Full<Bytes>>) -> Bytes
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body<Data = Bytes>,
    B::Error: Debug,
{
    collect(call(service, req).await).await
}

/// Setup: sends `req`, asserts the status, returns the response headers and body.
async fn checked<S, B>(
    service: &S,
    req: Request<Full<Bytes>>,
    status: StatusCode,
) -> (http::HeaderMap, Bytes)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body<Data = Bytes>,
    B::Error: Debug,
{
    let response = call(service, req).await;
    let actual = response.status();
    let headers = response.headers().clone();
    let body = collect(response).await;
    assert_eq!(actual, status, "{}", String::from_utf8_lossy(&body));
    (headers, body)
}

/// Opens a session: `initialize`, then `notifications/initialized`; returns `Mcp-Session-Id`.
async fn open_session<S, B>(service: &S) -> HeaderValue
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body<Data = Bytes>,
    B::Error: Debug,
{
    let (headers, _) = checked(service, post(INITIALIZE, None), StatusCode::OK).await;
    let session = headers
        .get(MCP_SESSION_ID)
        .expect("initialize answered without Mcp-Session-Id")
        .clone();
    checked(
        service,
        post(INITIALIZED, Some(&session)),
        StatusCode::ACCEPTED,
    )
    .await;
    session
}

fn assert_echo(body: &Bytes) {
    let text = String::from_utf8_lossy(body);
    assert!(
        text.contains(r#""text":"hello from the benchmark""#) && text.contains(r#""id":1"#),
        "unexpected echo answer: {text}"
    );
}

fn stack(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("stack");

    // JSON responses, stateful session.
    let json = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
        .json_response(true)
        .into_service();
    let session = rt.block_on(async {
        let session = open_session(&json).await;
        let (headers, body) =
            checked(&json, post(TOOLS_CALL_ECHO, Some(&session)), StatusCode::OK).await;
        assert_eq!(
            headers[http::header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        assert_echo(&body);
        session
    });
    group.bench_function("json/tools_call_echo", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&json, post(TOOLS_CALL_ECHO, Some(&session))));
    });

    // SSE responses (the default): the handler runs in a spawned task, answers over a channel.
    let sse = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new()).into_service();
    let sse_session = rt.block_on(async {
        let session = open_session(&sse).await;
        let (headers, body) =
            checked(&sse, post(TOOLS_CALL_ECHO, Some(&session)), StatusCode::OK).await;
        assert_eq!(
            headers[http::header::CONTENT_TYPE],
            "text/event-stream; charset=utf-8"
        );
        assert_echo(&body);
        session
    });
    group.bench_function("sse/tools_call_echo", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&sse, post(TOOLS_CALL_ECHO, Some(&sse_session))));
    });

    // Stateless: a fresh server per request, no session lookup.
    let stateless = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
        .stateless(true)
        .json_response(true)
        .into_service();
    rt.block_on(async {
        let (_, body) = checked(&stateless, post(TOOLS_CALL_ECHO, None), StatusCode::OK).await;
        assert_echo(&body);
    });
    group.bench_function("stateless/tools_call_echo", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&stateless, post(TOOLS_CALL_ECHO, None)));
    });

    // 2026-07-28 on the default dual-era stack: per-request `_meta`, routing headers, a fresh
    // server per request, a JSON answer stamped with resultType and serverInfo. The budget is
    // `stateless/tools_call_echo` + 10%.
    let modern = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new()).into_service();
    rt.block_on(async {
        let (headers, body) = checked(&modern, post_modern(), StatusCode::OK).await;
        assert_eq!(
            headers[http::header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        assert_echo(&body);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(r#""resultType":"complete""#), "{text}");
        assert!(headers.get(MCP_SESSION_ID).is_none());
    });
    group.bench_function("modern/tools_call_echo", |b| {
        b.to_async(&rt).iter(|| roundtrip(&modern, post_modern()));
    });

    // A whole session per iteration: initialize, one tools/call, DELETE.
    rt.block_on(async {
        let (headers, _) = checked(&json, post(INITIALIZE, None), StatusCode::OK).await;
        let id = headers[MCP_SESSION_ID].clone();
        let (_, body) = checked(&json, post(TOOLS_CALL_ECHO, Some(&id)), StatusCode::OK).await;
        assert_echo(&body);
        checked(&json, delete(&id), StatusCode::OK).await;
        checked(
            &json,
            post(TOOLS_CALL_ECHO, Some(&id)),
            StatusCode::NOT_FOUND,
        )
        .await;
    });
    let live_before = json.sessions().len();
    group.bench_function("session_churn", |b| {
        b.to_async(&rt).iter(|| async {
            let response = call(&json, post(INITIALIZE, None)).await;
            let id = response.headers()[MCP_SESSION_ID].clone();
            black_box(collect(response).await);
            black_box(roundtrip(&json, post(TOOLS_CALL_ECHO, Some(&id))).await);
            roundtrip(&json, delete(&id)).await
        });
    });
    assert_eq!(json.sessions().len(), live_before, "churn leaked sessions");

    group.finish();
}

fn jsonrpc(c: &mut Criterion) {
    let mut group = c.benchmark_group("jsonrpc");
    let request = Payload::parse(TOOLS_CALL_ECHO.as_bytes()).expect("request parses");
    let Payload::Single(request) = request else {
        panic!("not a single message")
    };
    let result = Payload::parse(TOOLS_CALL_RESULT.as_bytes()).expect("result parses");
    let Payload::Single(result) = result else {
        panic!("not a single message")
    };
    // serde_json writes object keys sorted, so the constants are written that way to round-trip.
    assert_eq!(&request.to_bytes()[..], TOOLS_CALL_ECHO.as_bytes());
    assert_eq!(&result.to_bytes()[..], TOOLS_CALL_RESULT.as_bytes());

    group.bench_function("parse/tools_call_request", |b| {
        b.iter(|| Payload::parse(black_box(TOOLS_CALL_ECHO.as_bytes())))
    });
    group.bench_function("parse/tools_call_result", |b| {
        b.iter(|| Payload::parse(black_box(TOOLS_CALL_RESULT.as_bytes())))
    });
    group.bench_function("serialize/tools_call_request", |b| {
        b.iter(|| black_box(&request).to_bytes())
    });
    group.bench_function("serialize/tools_call_result", |b| {
        b.iter(|| black_box(&result).to_bytes())
    });
    group.finish();
}

/// The trivial inner service of the `layer/*` benchmarks.
fn empty<B>(_: Request<B>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::default())))
}

fn layers(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("layer");

    // The trivial inner service: an empty 200.
    let bare = tower::service_fn(empty::<Full<Bytes>>);
    // The same, carrying a precomputed echo answer for `SseLayer` to frame (the clone of the
    // message is in its baseline, the encoding in the layer).
    let answer = Message::result(
        Id::Number(1),
        json!({ "content": [{ "type": "text", "text": "hello from the benchmark" }] }),
    );
    let answering = tower::service_fn(move |_: Request<Full<Bytes>>| {
        let mut response = Response::new(Full::<Bytes>::default());
        response
            .extensions_mut()
            .insert(Outgoing::One(answer.clone()));
        std::future::ready(Ok::<_, Infallible>(response))
    });

    let error = JsonRpcErrorLayer::new().layer(bare);
    let limit = RequestBodyLimitLayer::new(mcp_tower_http::stack::DEFAULT_MAX_BODY_SIZE)
        .layer(tower::service_fn(empty));
    let parsed = tower::service_fn(empty::<ParsedBody>);
    let body = JsonRpcBodyLayer::new().layer(parsed);
    // The session layer takes only parsed bodies: measured behind the body layer.
    let session = JsonRpcBodyLayer::new().layer(SessionLayer::new().stateless(true).layer(parsed));
    let sse = SseLayer::new().json_response(true).layer(answering.clone());

    rt.block_on(async {
        for status in [
            call(&bare, post(TOOLS_CALL_ECHO, None)).await.status(),
            call(&error, post(TOOLS_CALL_ECHO, None)).await.status(),
            call(&limit, post(TOOLS_CALL_ECHO, None)).await.status(),
            call(&body, post(TOOLS_CALL_ECHO, None)).await.status(),
            call(&session, post(TOOLS_CALL_ECHO, None)).await.status(),
        ] {
            assert_eq!(status, StatusCode::OK);
        }
        let (_, framed) = checked(&sse, post(TOOLS_CALL_ECHO, None), StatusCode::OK).await;
        assert_echo(&framed);
    });

    group.bench_function("bare_service_fn", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&bare, post(TOOLS_CALL_ECHO, None)));
    });
    group.bench_function("json_rpc_error", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&error, post(TOOLS_CALL_ECHO, None)));
    });
    group.bench_function("request_body_limit", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&limit, post(TOOLS_CALL_ECHO, None)));
    });
    group.bench_function("json_rpc_body", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&body, post(TOOLS_CALL_ECHO, None)));
    });
    group.bench_function("json_rpc_body+session_stateless", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&session, post(TOOLS_CALL_ECHO, None)));
    });
    group.bench_function("bare_service_fn_with_answer", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&answering, post(TOOLS_CALL_ECHO, None)));
    });
    group.bench_function("sse_json", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&sse, post(TOOLS_CALL_ECHO, None)));
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = stack, jsonrpc, layers
}
criterion_main!(benches);
