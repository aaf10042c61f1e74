//! `examples/custom_stack.rs` over a real socket: tower-http's Trace, Compression and Timeout
//! around `McpStack`, and the per-principal rate limit (`PrincipalLimitLayer`) inside it.

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/custom_stack.rs"]
mod custom_stack;

use common::*;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use std::time::Duration;

const V: &str = "2025-11-25";

fn headers<'a>(key: &'a str, session: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![JSON, ACCEPT_BOTH, ("x-api-key", key)];
    if let Some(id) = session {
        h.push(("mcp-session-id", id));
        h.push(("mcp-protocol-version", V));
    }
    h
}

#[tokio::test]
async fn the_custom_stack_serves_compresses_json_and_rate_limits_per_principal() {
    // Five requests per principal per minute.
    let server = serve(custom_stack::service(5, Duration::from_secs(60))).await;

    // No key: the stack's auth refuses before the rate limit counts anything.
    let (status, _, _) = post(&server.url, &[JSON, ACCEPT_BOTH], &initialize_body(1, V)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, headers_, body) = post(
        &server.url,
        &headers("demo-key", None),
        &initialize_body(1, V),
    )
    .await; // 1
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = header(&headers_, "mcp-session-id").to_owned();
    let s = Some(session.as_str());
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, _) = post(&server.url, &headers("demo-key", s), initialized).await; // 2
    assert_eq!(status, StatusCode::ACCEPTED);

    // A JSON answer is compressed when the client accepts gzip.
    let mut gzip = headers("demo-key", s);
    gzip.push(("accept-encoding", "gzip"));
    let list = request_body(2, "tools/list", json!({}));
    let response = open(Method::POST, &server.url, &gzip, list.clone()).await; // 3
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert!(header(response.headers(), "content-type").starts_with("application/json"));
    let compressed = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&compressed[..2], &[0x1f, 0x8b], "a gzip stream");

    // The standalone SSE stream is left alone (never buffered by the compressor).
    let mut sse = vec![
        ACCEPT_SSE,
        ("x-api-key", "demo-key"),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", V),
        ("accept-encoding", "gzip"),
    ];
    sse.dedup();
    let stream = open(Method::GET, &server.url, &sse, "").await; // 4
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(header(stream.headers(), "content-type").starts_with("text/event-stream"));
    assert!(stream.headers().get("content-encoding").is_none());
    drop(stream);

    let call = request_body(
        3,
        "tools/call",
        json!({ "name": "echo", "arguments": { "text": "hi" } }),
    );
    let (status, h, body) = post(&server.url, &headers("demo-key", s), &call).await; // 5
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(one_message(&h, &body)["result"]["content"][0]["text"], "hi");

    // The sixth request of this principal is refused with 429 + Retry-After (the next one is
    // allowed 12 s after the first: 5 a minute) and a JSON-RPC error; another principal is not
    // affected.
    let (status, h, body) = post(&server.url, &headers("demo-key", s), &call).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&wait), "{wait}");
    assert_rpc_error(&h, &body, -32000, json!(null));
    let (status, _, body) = post(
        &server.url,
        &headers("other-key", None),
        &initialize_body(1, V),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
