//! The layer contract, over real sockets: a hand-built stack missing a layer the endpoint needs
//! answers 500 naming it (never an empty 200), the session lookup respects the principal and a
//! refused request does not keep a session alive, and a layer inserted with `McpStack::layer`
//! sees the principal and the parsed body. (Composing a payload layer without
//! `JsonRpcBodyLayer` in front is a compile error: see the `compile_fail` examples in
//! `src/jsonrpc_body.rs`.)

mod common;

use common::*;
use http::{Request, StatusCode};
use mcp_tower_http::auth::ApiKeys;
use mcp_tower_http::endpoint::McpEndpoint;
use mcp_tower_http::error_map::JsonRpcErrorLayer;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::jsonrpc::Payload;
use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
use mcp_tower_http::session::SessionLayer;
use mcp_tower_http::sse::SseLayer;
use mcp_tower_http::{Principal, SessionContext};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceBuilder;

fn everything(_: &SessionContext<'_>) -> EverythingServer {
    EverythingServer::new()
}

const V: &str = "2025-06-18";

#[tokio::test]
async fn an_endpoint_without_its_sse_layer_answers_500_naming_it() {
    let service = ServiceBuilder::new()
        .layer(JsonRpcErrorLayer::new())
        .layer(JsonRpcBodyLayer::new())
        .layer(SessionLayer::new())
        .service(McpEndpoint::new(everything));
    let server = serve(service).await;
    let (status, headers, body) =
        post(&server.url, &[JSON, ACCEPT_BOTH], &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let message = assert_rpc_error(&headers, &body, -32603, json!(null));
    assert!(
        message.contains("McpEndpoint needs SseLayer"),
        "the 500 names the missing layer: {message}"
    );
}

#[tokio::test]
async fn an_endpoint_without_its_session_layer_answers_500_naming_it() {
    let service = ServiceBuilder::new()
        .layer(JsonRpcErrorLayer::new())
        .layer(JsonRpcBodyLayer::new())
        .layer(SseLayer::new())
        .service(McpEndpoint::new(everything));
    let server = serve(service).await;
    let (status, headers, body) =
        post(&server.url, &[JSON, ACCEPT_BOTH], &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let message = assert_rpc_error(&headers, &body, -32603, json!(null));
    assert!(
        message.contains("McpEndpoint needs SessionLayer"),
        "{message}"
    );
    // The same stack with the session layer works: the 500 was the missing layer, nothing else.
    let service = ServiceBuilder::new()
        .layer(JsonRpcErrorLayer::new())
        .layer(JsonRpcBodyLayer::new())
        .layer(SessionLayer::new())
        .layer(SseLayer::new().json_response(true))
        .service(McpEndpoint::new(everything));
    let server = serve(service).await;
    let (status, _, body) = post(&server.url, &[JSON, ACCEPT_BOTH], &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Sessions opened with key A; requests naming that session with a bad key (401) or another
/// principal's key (404) must not reset its idle clock.
#[tokio::test]
async fn refused_requests_do_not_keep_a_session_alive() {
    let keys = ApiKeys::new()
        .key_with_subject("key-alice", "alice")
        .key_with_subject("key-bob", "bob");
    let server = spawn(
        stack()
            .authenticate(keys)
            .session_idle_timeout(Duration::from_millis(1500))
            .json_response(true),
    )
    .await;
    let alice = [JSON, ACCEPT_BOTH, ("x-api-key", "key-alice")];
    let (status, headers, body) = post(&server.url, &alice, &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = header(&headers, "mcp-session-id").to_owned();
    let ping = request_body(2, "ping", json!({}));
    // For 2.4 s (well past the 1.5 s idle timeout) other callers name the session every 200 ms.
    for round in 0..12 {
        let (who, expected) = if round % 2 == 0 {
            ("wrong-key", StatusCode::UNAUTHORIZED)
        } else {
            ("key-bob", StatusCode::NOT_FOUND)
        };
        let headers = [
            JSON,
            ACCEPT_BOTH,
            ("x-api-key", who),
            ("mcp-session-id", id.as_str()),
            ("mcp-protocol-version", V),
        ];
        let (status, _, _) = post(&server.url, &headers, &ping).await;
        assert_eq!(status, expected, "round {round}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The owner finds it expired: the refused requests did not count as activity.
    let headers = [
        JSON,
        ACCEPT_BOTH,
        ("x-api-key", "key-alice"),
        ("mcp-session-id", id.as_str()),
        ("mcp-protocol-version", V),
    ];
    let (status, _, body) = post(&server.url, &headers, &ping).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

/// What a layer inserted with `McpStack::layer` saw of each request.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String)>>>);

#[derive(Clone)]
struct Record<S> {
    inner: S,
    seen: Seen,
}

impl<S> tower::Service<Request<ParsedBody>> for Record<S>
where
    S: tower::Service<Request<ParsedBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ParsedBody>) -> Self::Future {
        let who = req
            .extensions()
            .get::<Principal>()
            .map_or("nobody".to_owned(), |p| p.subject.to_string());
        let method = req
            .extensions()
            .get::<Payload>()
            .and_then(|p| {
                p.messages()
                    .first()
                    .and_then(|m| m.method())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        if let Ok(mut seen) = self.seen.0.lock() {
            seen.push((who, method));
        }
        self.inner.call(req)
    }
}

#[tokio::test]
async fn a_layer_inside_the_stack_sees_the_principal_and_the_parsed_body() {
    let seen = Seen::default();
    let recorder = seen.clone();
    let keys = ApiKeys::new().key_with_subject("key-carol", "carol");
    let service = stack()
        .authenticate(keys)
        .json_response(true)
        .endpoint_path("/mcp")
        .layer(tower::layer::layer_fn(move |inner| Record {
            inner,
            seen: recorder.clone(),
        }))
        .into_service();
    let server = serve(service).await;
    let carol = [JSON, ACCEPT_BOTH, ("x-api-key", "key-carol")];
    let (status, _, body) = post(&server.url, &carol, &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A refused request (no key) never reaches the inserted layer.
    let (status, _, _) = post(&server.url, &[JSON, ACCEPT_BOTH], &initialize_body(2, V)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let seen = seen.0.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen, vec![("carol".to_owned(), "initialize".to_owned())]);
}
