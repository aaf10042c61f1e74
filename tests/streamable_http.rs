//! Streamable HTTP over real loopback sockets: every status row of the reference table
//! (`mcp-http-spec.md` §1), the SSE framing, sessions and their expiry, stateless and JSON modes,
//! and the seed defects (`mcp-proxy-behaviour.md` §1.12) this stack fixes.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const LATEST: &str = "2025-11-25";
const V0618: &str = "2025-06-18";
const V0326: &str = "2025-03-26";

const PING_1: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// POSTs `body` on `session` with conforming headers.
async fn call(
    url: &str,
    session: &str,
    version: &str,
    body: &str,
) -> (StatusCode, http::HeaderMap, String) {
    post(url, &session_headers(Some(session), version), body).await
}

fn echo_call(id: i64, text: &str) -> String {
    request_body(
        id,
        "tools/call",
        json!({ "name": "echo", "arguments": { "text": text } }),
    )
}

fn assert_no_content_type(headers: &http::HeaderMap, what: &str) {
    assert!(
        headers.get("content-type").is_none(),
        "{what}: unexpected content-type {:?}",
        headers.get("content-type")
    );
}

/// The event ids of an SSE body.
fn event_ids(body: &str) -> Vec<String> {
    sse_events(body).into_iter().filter_map(|e| e.id).collect()
}

// ---------------------------------------------------------------------------------------------
// 406 Not Acceptable
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_accept_missing_either_type_is_406() {
    let server = spawn(stack()).await;
    for accept in [
        Some("application/json"),
        Some("text/event-stream"),
        Some("text/html"),
        None,
    ] {
        let mut headers = vec![JSON];
        if let Some(accept) = accept {
            headers.push(("accept", accept));
        }
        let (status, h, body) = post(&server.url, &headers, &initialize_body(1, LATEST)).await;
        assert_eq!(
            status,
            StatusCode::NOT_ACCEPTABLE,
            "accept {accept:?}: {body}"
        );
        // The request's id is echoed when it is known.
        let message = assert_rpc_error(&h, &body, -32000, json!(1));
        assert!(
            message.contains("application/json and text/event-stream"),
            "{message}"
        );
        assert!(h.get("mcp-session-id").is_none());
    }
    // The same on a live session.
    let session = initialize(&server.url, LATEST).await;
    let headers = [
        JSON,
        ("accept", "application/json"),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LATEST),
    ];
    let (status, h, body) = post(&server.url, &headers, PING_1).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{body}");
    assert_rpc_error(&h, &body, -32000, json!(1));
}

#[tokio::test]
async fn get_accept_without_event_stream_is_406() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    for accept in [Some("application/json"), None] {
        let mut headers = vec![("mcp-session-id", session.as_str())];
        if let Some(accept) = accept {
            headers.push(("accept", accept));
        }
        let (status, h, body) = get(&server.url, &headers).await;
        assert_eq!(
            status,
            StatusCode::NOT_ACCEPTABLE,
            "accept {accept:?}: {body}"
        );
        let message = assert_rpc_error(&h, &body, -32000, Value::Null);
        assert!(message.contains("text/event-stream"), "{message}");
    }
}

// ---------------------------------------------------------------------------------------------
// 415, 413
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn post_content_type_not_json_is_415() {
    let server = spawn(stack()).await;
    for content_type in [Some("text/plain"), Some("application/json-seq"), None] {
        let mut headers = vec![ACCEPT_BOTH];
        if let Some(content_type) = content_type {
            headers.push(("content-type", content_type));
        }
        let (status, h, body) = post(&server.url, &headers, &initialize_body(1, LATEST)).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content-type {content_type:?}: {body}"
        );
        let message = assert_rpc_error(&h, &body, -32000, Value::Null);
        assert!(message.contains("application/json"), "{message}");
    }
    // Parameters are allowed.
    let headers = [
        ACCEPT_BOTH,
        ("content-type", "application/json; charset=utf-8"),
    ];
    let (status, _, body) = post(&server.url, &headers, &initialize_body(1, LATEST)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Splits a raw HTTP/1.1 response into its head and body.
fn split_raw(response: &str) -> (&str, &str) {
    response.split_once("\r\n\r\n").unwrap_or((response, ""))
}

/// The server still answers `/ping` and a fresh `initialize`.
async fn assert_still_serving(server: &TestServer) {
    let (status, _, body) = get(&format!("{}/ping", server.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    initialize(&server.url, LATEST).await;
}

#[tokio::test]
async fn declared_content_length_over_limit_is_413() {
    let server = spawn(stack().max_body_size(1024)).await;
    // Only the head is sent: the declared length alone must be refused, without reading a body.
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n",
        server.addr
    );
    let response = raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(5)).await;
    let (head, body) = split_raw(&response);
    assert!(head.starts_with("HTTP/1.1 413"), "{response}");
    let head_lower = head.to_ascii_lowercase();
    assert!(
        head_lower.contains("content-type: application/json; charset=utf-8"),
        "{head}"
    );
    assert!(head_lower.contains("connection: close"), "{head}");
    let value = json_body(body);
    assert_eq!(value["error"]["code"], -32000, "{body}");
    assert_eq!(value["id"], Value::Null, "{body}");
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Payload Too Large"),
        "{body}"
    );
    assert_still_serving(&server).await;
    assert_eq!(server.sessions().len(), 1);
}

#[tokio::test]
async fn chunked_body_growing_past_limit_is_413() {
    let server = spawn(stack().max_body_size(1024)).await;
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr
    )
    .into_bytes();
    let start = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":""#;
    request.extend_from_slice(format!("{:x}\r\n", start.len()).as_bytes());
    request.extend_from_slice(start);
    request.extend_from_slice(b"\r\n");
    // Three more chunks of 512 bytes: past the limit, and no terminating chunk is ever sent.
    for _ in 0..3 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b'x'; 512]);
        request.extend_from_slice(b"\r\n");
    }
    let response = raw_exchange(server.addr, &request, Duration::from_secs(5)).await;
    let (head, body) = split_raw(&response);
    assert!(head.starts_with("HTTP/1.1 413"), "{response}");
    let value = json_body(body);
    assert_eq!(value["error"]["code"], -32000, "{body}");
    assert_eq!(value["id"], Value::Null, "{body}");
    assert_still_serving(&server).await;
}

#[tokio::test]
async fn body_exactly_at_the_limit_is_accepted_one_more_byte_is_413() {
    let server = spawn(stack().max_body_size(1024)).await;
    let session = initialize(&server.url, LATEST).await;
    let text = "y".repeat(600);
    let mut body = echo_call(2, &text);
    // JSON allows trailing whitespace: pad to exactly the limit.
    body.push_str(&" ".repeat(1024 - body.len()));
    assert_eq!(body.len(), 1024);
    let (status, h, answer) = call(&server.url, &session, LATEST, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        one_message(&h, &answer)["result"]["content"][0]["text"],
        text
    );
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nMcp-Session-Id: {session}\r\nContent-Length: 1025\r\n\r\n",
        server.addr
    );
    let response = raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // The session is unharmed.
    let (status, _, answer) = call(&server.url, &session, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

// ---------------------------------------------------------------------------------------------
// 400 -32700 / -32600
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_json_is_parse_error_with_null_id() {
    let server = spawn(stack()).await;
    for bad in [r#"{"jsonrpc":"2.0","id":1,"method":"#, "not json", ""] {
        let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        let message = assert_rpc_error(&h, &body, -32700, Value::Null);
        assert!(message.starts_with("Parse error"), "{message}");
    }
    // On a session too.
    let session = initialize(&server.url, LATEST).await;
    let (status, h, body) = call(&server.url, &session, LATEST, "{oops").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32700, Value::Null);
}

#[tokio::test]
async fn valid_json_that_is_not_jsonrpc_is_invalid_request() {
    let server = spawn(stack()).await;
    let cases = [
        (r#"{"malformed":true}"#, Value::Null),
        (r#"{"jsonrpc":"2.0","id":4}"#, json!(4)),
        (r#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#, json!("a")),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            Value::Null,
        ),
        ("[]", Value::Null),
        ("42", Value::Null),
    ];
    for (bad, id) in cases {
        let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let message = assert_rpc_error(&h, &body, -32600, id);
        assert!(message.starts_with("Invalid Request"), "{message}");
    }
    assert!(server.sessions().is_empty());
}

#[tokio::test]
async fn batch_at_2025_06_18_or_later_is_invalid_request() {
    let server = spawn(stack()).await;
    let batch =
        r#"[{"jsonrpc":"2.0","id":7,"method":"ping"},{"jsonrpc":"2.0","id":8,"method":"ping"}]"#;
    for version in [V0618, LATEST] {
        let session = initialize(&server.url, version).await;
        let (status, h, body) = call(&server.url, &session, version, batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{version}: {body}");
        let message = assert_rpc_error(&h, &body, -32600, json!(7));
        assert!(message.contains("batch"), "{message}");
    }
}

#[tokio::test]
async fn initialize_inside_a_batch_is_invalid_request() {
    let server = spawn(stack()).await;
    let batch = format!("[{},{}]", initialize_body(3, V0326), PING_1);
    let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], &batch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32600, json!(3));
    assert!(h.get("mcp-session-id").is_none());
    assert!(server.sessions().is_empty());
    // Also on a 2025-03-26 session, where batches are otherwise fine.
    let session = initialize(&server.url, V0326).await;
    let (status, h, body) = call(&server.url, &session, V0326, &batch).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32600, json!(3));
}

#[tokio::test]
async fn reinitialize_on_a_live_session_is_invalid_request() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let (status, h, body) = call(&server.url, &session, LATEST, &initialize_body(9, LATEST)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = assert_rpc_error(&h, &body, -32600, json!(9));
    assert!(message.contains("already initialized"), "{message}");
    assert!(h.get("mcp-session-id").is_none());
    // The session is unharmed.
    let (status, _, body) = call(&server.url, &session, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(server.sessions().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Session header: 400, 404
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_session_header_is_400() {
    let server = spawn(stack()).await;
    initialize(&server.url, LATEST).await;
    let tools_list = request_body(7, "tools/list", json!({}));
    let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], &tools_list).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = assert_rpc_error(&h, &body, -32000, json!(7));
    assert!(
        message.contains("Mcp-Session-Id header is required"),
        "{message}"
    );

    // A notification without a session: no id to echo.
    let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], INITIALIZED).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32000, Value::Null);

    let (status, h, body) = get(&server.url, &[ACCEPT_SSE]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32000, Value::Null);

    let (status, h, body) = delete(&server.url, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32000, Value::Null);
    assert_eq!(server.sessions().len(), 1);
}

#[tokio::test]
async fn unknown_session_is_404_for_post_get_and_delete() {
    let server = spawn(stack()).await;
    initialize(&server.url, LATEST).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, h, body) = call(
        &server.url,
        unknown,
        LATEST,
        &request_body(3, "ping", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let message = assert_rpc_error(&h, &body, -32001, json!(3));
    assert_eq!(message, "Session not found");

    let (status, h, body) = get(&server.url, &[ACCEPT_SSE, ("mcp-session-id", unknown)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_rpc_error(&h, &body, -32001, Value::Null);

    let (status, h, body) = delete(&server.url, &[("mcp-session-id", unknown)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_rpc_error(&h, &body, -32001, Value::Null);
    assert!(h.get("www-authenticate").is_none());
    assert_eq!(server.sessions().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// MCP-Protocol-Version
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unsupported_protocol_version_is_400_listing_supported_versions() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    for bad in ["1999-01-01", "2024-11-05", "latest"] {
        let (status, h, body) = call(
            &server.url,
            &session,
            bad,
            &request_body(5, "ping", json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        // -32000, never -32022 (which dual-era clients read as "modern server").
        let message = assert_rpc_error(&h, &body, -32000, json!(5));
        assert!(message.contains(bad), "{message}");
        assert!(
            message.contains("2025-11-25, 2025-06-18, 2025-03-26"),
            "{message}"
        );
    }
    // A 2026-07-28 header makes a claim-less POST a (malformed) 2026-07-28 request, whatever
    // its session id says: 400 -32602 for the missing `_meta`.
    let modern = [
        ACCEPT_BOTH,
        JSON,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "ping"),
    ];
    let (status, h, body) = post(&server.url, &modern, &request_body(5, "ping", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32602, json!(5));
    // Without 2026-07-28 it is an unknown revision like any other: -32000, never -32022 (which
    // dual-era clients read as "modern server").
    let legacy_only = spawn(stack().modern(false)).await;
    let old = initialize(&legacy_only.url, LATEST).await;
    let (status, h, body) = call(
        &legacy_only.url,
        &old,
        "2026-07-28",
        &request_body(5, "ping", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = assert_rpc_error(&h, &body, -32000, json!(5));
    assert!(message.contains("2026-07-28"), "{message}");

    // GET and DELETE check it too.
    let headers = [
        ACCEPT_SSE,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "1999-01-01"),
    ];
    let (status, h, body) = get(&server.url, &headers).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32000, Value::Null);
    let (status, h, body) = delete(&server.url, &headers[1..]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32000, Value::Null);
    assert_eq!(
        server.sessions().len(),
        1,
        "a refused DELETE keeps the session"
    );

    // Every supported revision is accepted in the header, and an absent header too.
    for good in [LATEST, V0618, V0326] {
        let (status, _, body) = call(&server.url, &session, good, PING_1).await;
        assert_eq!(status, StatusCode::OK, "{good}: {body}");
    }
    let headers = [ACCEPT_BOTH, JSON, ("mcp-session-id", session.as_str())];
    let (status, _, body) = post(&server.url, &headers, PING_1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

// ---------------------------------------------------------------------------------------------
// 202
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn notification_and_response_are_202_with_empty_body() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let bodies = [
        INITIALIZED,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}"#,
        r#"{"jsonrpc":"2.0","id":"srv-99","result":{}}"#,
        r#"{"jsonrpc":"2.0","id":"srv-98","error":{"code":-1,"message":"no"}}"#,
    ];
    for body in bodies {
        let (status, h, answer) = call(&server.url, &session, LATEST, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}: {answer}");
        assert_eq!(answer, "", "{body}");
        assert_no_content_type(&h, body);
    }
}

// ---------------------------------------------------------------------------------------------
// Standalone GET stream: 409, 400 Last-Event-ID
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn second_standalone_get_is_409() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let headers = [
        ACCEPT_SSE,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LATEST),
    ];
    let mut first = open(Method::GET, &server.url, &headers, "").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(
        header(first.headers(), "content-type"),
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(
        header(first.headers(), "cache-control"),
        "no-cache, no-transform"
    );
    assert_eq!(header(first.headers(), "x-accel-buffering"), "no");
    // At 2025-11-25 the stream opens with a priming event on stream 0.
    let priming = next_frame(first.body_mut(), TIMEOUT)
        .await
        .expect("priming event");
    let events = sse_events(std::str::from_utf8(&priming).unwrap());
    assert_eq!(events.len(), 1, "{priming:?}");
    assert_eq!(events[0].data, "");
    assert!(events[0].id.is_some());

    let (status, h, body) = get(&server.url, &headers).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = assert_rpc_error(&h, &body, -32000, Value::Null);
    assert!(message.contains("Only one SSE stream"), "{message}");
    drop(first);
}

#[tokio::test]
async fn get_with_last_event_id_is_400() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    // Ids this server never issued: unknown with or without an event store.
    for last in ["999/0", "garbage", ""] {
        let headers = [
            ACCEPT_SSE,
            ("mcp-session-id", session.as_str()),
            ("last-event-id", last),
        ];
        let (status, h, body) = get(&server.url, &headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{last}: {body}");
        assert_rpc_error(&h, &body, -32000, Value::Null);
    }
}

// ---------------------------------------------------------------------------------------------
// 405, DELETE, 503
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn put_and_patch_are_405_with_allow() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    for method in [Method::PUT, Method::PATCH] {
        for with_session in [false, true] {
            let mut headers = vec![JSON, ACCEPT_BOTH];
            if with_session {
                headers.push(("mcp-session-id", session.as_str()));
            }
            let (status, h, body) = send(method.clone(), &server.url, &headers, PING_1).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} session={with_session}: {body}"
            );
            assert_eq!(header(&h, "allow"), "GET, POST, DELETE");
            assert_rpc_error(&h, &body, -32000, Value::Null);
        }
    }
}

#[tokio::test]
async fn delete_is_200_then_404() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let other = initialize(&server.url, LATEST).await;
    assert_eq!(server.sessions().len(), 2);
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LATEST),
    ];
    let (status, h, body) = delete(&server.url, &headers).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "");
    assert_no_content_type(&h, "DELETE 200");
    assert_eq!(server.sessions().len(), 1);

    let (status, h, body) = delete(&server.url, &headers).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_rpc_error(&h, &body, -32001, Value::Null);
    let (status, h, body) = call(&server.url, &session, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_rpc_error(&h, &body, -32001, json!(1));
    // The other session is untouched.
    let (status, _, body) = call(&server.url, &other, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn delete_ends_an_open_standalone_stream() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, V0618).await;
    let headers = [ACCEPT_SSE, ("mcp-session-id", session.as_str())];
    let mut stream = open(Method::GET, &server.url, &headers, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let (status, _, body) = delete(&server.url, &headers[1..]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The stream ends (no priming at 2025-06-18, so nothing comes before the end).
    let frames = read_frames(stream.body_mut(), Duration::from_secs(5)).await;
    assert!(frames.is_empty(), "{frames:?}");
}

#[tokio::test]
async fn session_limit_is_503_with_retry_after() {
    let server = spawn(stack().max_sessions(2)).await;
    let first = initialize(&server.url, LATEST).await;
    initialize(&server.url, LATEST).await;
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        &initialize_body(4, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(header(&h, "retry-after"), "5");
    assert_rpc_error(&h, &body, -32000, json!(4));
    assert!(h.get("mcp-session-id").is_none());
    assert_eq!(server.sessions().len(), 2);
    // Live sessions keep working; ending one makes room.
    let (status, _, body) = call(&server.url, &first, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = delete(&server.url, &[("mcp-session-id", first.as_str())]).await;
    assert_eq!(status, StatusCode::OK);
    initialize(&server.url, LATEST).await;
    assert_eq!(server.sessions().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// initialize, SSE framing, batches
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn initialize_mints_a_visible_ascii_session_id() {
    let server = spawn(stack()).await;
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = header(&h, "mcp-session-id").to_owned();
    assert!(id.len() >= 32, "{id}");
    assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{id:?}");
    let answer = one_message(&h, &body);
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["protocolVersion"], LATEST);
    assert!(answer["result"]["serverInfo"]["name"].is_string(), "{body}");
    let again = initialize(&server.url, LATEST).await;
    assert_ne!(again, id);
    assert_eq!(server.sessions().len(), 2);
}

#[tokio::test]
async fn initialize_negotiates_the_requested_version() {
    let server = spawn(stack()).await;
    for (requested, answered) in [
        (V0618, V0618),
        (V0326, V0326),
        (LATEST, LATEST),
        ("2024-11-05", LATEST),
        ("1999-01-01", LATEST),
    ] {
        let (status, h, body) = post(
            &server.url,
            &[ACCEPT_BOTH, JSON],
            &initialize_body(1, requested),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{requested}: {body}");
        let answer = one_message(&h, &body);
        assert_eq!(answer["result"]["protocolVersion"], answered, "{requested}");
    }
}

#[tokio::test]
async fn sse_response_headers() {
    let server = spawn(stack()).await;
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&h, "content-type"),
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(header(&h, "cache-control"), "no-cache, no-transform");
    assert_eq!(header(&h, "x-accel-buffering"), "no");
    let session = header(&h, "mcp-session-id").to_owned();
    let (status, h, body) = call(&server.url, &session, LATEST, &echo_call(2, "x")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&h, "content-type"),
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(header(&h, "cache-control"), "no-cache, no-transform");
    assert_eq!(header(&h, "x-accel-buffering"), "no");
    for event in sse_events(&body).iter().filter(|e| !e.data.is_empty()) {
        assert_eq!(event.event.as_deref(), Some("message"), "{body}");
    }
}

#[tokio::test]
async fn priming_event_only_at_2025_11_25_and_event_ids_unique() {
    let server = spawn(stack()).await;
    for version in [LATEST, V0618, V0326] {
        let (status, h, body) = post(
            &server.url,
            &[ACCEPT_BOTH, JSON],
            &initialize_body(1, version),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let session = header(&h, "mcp-session-id").to_owned();
        let mut ids = event_ids(&body);
        let events = sse_events(&body);
        let primed = version == LATEST;
        assert_eq!(
            events.len(),
            if primed { 2 } else { 1 },
            "{version}: {body}"
        );
        if primed {
            assert!(events[0].id.is_some(), "{body}");
            assert_eq!(events[0].data, "", "{body}");
            assert_eq!(events[0].event, None, "{body}");
        }
        let last = events.last().unwrap();
        assert_eq!(last.event.as_deref(), Some("message"));
        assert_eq!(json_body(&last.data)["id"], 1);

        for id in 2..5 {
            let (status, _, body) = call(
                &server.url,
                &session,
                version,
                &request_body(id, "ping", json!({})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let events = sse_events(&body);
            assert_eq!(
                events.len(),
                if primed { 2 } else { 1 },
                "{version}: {body}"
            );
            assert_eq!(events[0].data.is_empty(), primed, "{version}: {body}");
            ids.extend(event_ids(&body));
        }
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{version}: duplicate event ids {ids:?}"
        );
        assert_eq!(ids.len(), if primed { 8 } else { 4 }, "{version}: {ids:?}");
    }
}

#[tokio::test]
async fn batch_accepted_at_2025_03_26() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, V0326).await;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let (status, h, body) = call(&server.url, &session, V0326, batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&h, "content-type"),
        "text/event-stream; charset=utf-8"
    );
    let messages = sse_messages(&body);
    let ids: Vec<&Value> = messages.iter().map(|m| &m["id"]).collect();
    assert_eq!(ids, [&json!(1), &json!(2)], "{body}");
    assert!(messages.iter().all(|m| m["result"] == json!({})), "{body}");
    // A batch of notifications only is a 202.
    let (status, h, body) = call(
        &server.url,
        &session,
        V0326,
        &format!("[{INITIALIZED},{INITIALIZED}]"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, "");
    assert_no_content_type(&h, "batch 202");
}

#[tokio::test]
async fn tools_call_echo_over_sse() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let (status, h, body) = call(&server.url, &session, LATEST, &echo_call(2, "hello sse")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&h, "content-type"),
        "text/event-stream; charset=utf-8"
    );
    let answer = one_message(&h, &body);
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["result"]["content"][0]["text"], "hello sse");
}

#[tokio::test]
async fn tools_call_echo_in_json_mode() {
    let server = spawn(stack().json_response(true)).await;
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&h, "content-type"),
        "application/json; charset=utf-8"
    );
    let session = header(&h, "mcp-session-id").to_owned();
    assert!(!session.is_empty());
    assert_eq!(json_body(&body)["result"]["protocolVersion"], LATEST);

    let (status, h, body) = call(&server.url, &session, LATEST, &echo_call(2, "hello json")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&h, "content-type"),
        "application/json; charset=utf-8"
    );
    let answer = json_body(&body);
    assert!(answer.is_object(), "{body}");
    assert_eq!(answer["jsonrpc"], "2.0");
    assert_eq!(answer["id"], 2);
    assert_eq!(answer["result"]["content"][0]["text"], "hello json");
    // Notifications are still 202 with no body.
    let (status, h, body) = call(&server.url, &session, LATEST, INITIALIZED).await;
    assert_eq!((status, body.as_str()), (StatusCode::ACCEPTED, ""));
    assert_no_content_type(&h, "json-mode 202");
}

#[tokio::test]
async fn batch_in_json_mode_is_a_json_array() {
    let server = spawn(stack().json_response(true)).await;
    let session = initialize(&server.url, V0326).await;
    let batch =
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let (status, h, body) = call(&server.url, &session, V0326, batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        header(&h, "content-type"),
        "application/json; charset=utf-8"
    );
    let answers = json_body(&body);
    let ids: Vec<&Value> = answers
        .as_array()
        .expect("array")
        .iter()
        .map(|m| &m["id"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!(2)], "{body}");
}

#[tokio::test]
async fn progress_notifications_arrive_before_the_result() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let body = request_body(
        5,
        "tools/call",
        json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": "tok-5" } }),
    );
    let headers = session_headers(Some(&session), LATEST);
    let mut response = open(Method::POST, &server.url, &headers, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(response.headers(), "content-type"),
        "text/event-stream; charset=utf-8"
    );
    // Frame by frame: each frame's messages, in arrival order.
    let mut frames: Vec<Vec<Value>> = Vec::new();
    while let Some(frame) = next_frame(response.body_mut(), Duration::from_secs(5)).await {
        frames.push(sse_messages(std::str::from_utf8(&frame).unwrap()));
    }
    let messages: Vec<&Value> = frames.iter().flatten().collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        let m = messages[i];
        assert_eq!(m["method"], "notifications/progress", "{m}");
        assert_eq!(m["params"]["progressToken"], "tok-5", "{m}");
        assert_eq!(m["params"]["progress"], progress, "{m}");
        assert_eq!(m["params"]["total"], 100.0, "{m}");
    }
    assert_eq!(messages[3]["id"], 5);
    assert_eq!(messages[3]["result"]["content"][0]["text"], "tok-5");
    // The first notification was streamed on its own, before the result existed.
    let first_with_progress = frames.iter().position(|f| !f.is_empty()).unwrap();
    assert!(
        frames[first_with_progress]
            .iter()
            .all(|m| m.get("id").is_none()),
        "the first progress notification came in the same frame as the result: {frames:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Stateless mode
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stateless_mode() {
    let server = spawn(stack().stateless(true)).await;
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        h.get("mcp-session-id").is_none(),
        "stateless minted a session id"
    );
    assert_eq!(one_message(&h, &body)["result"]["protocolVersion"], LATEST);

    // A sent session id is ignored.
    let random = "f00dfeed-0000-4000-8000-123456789abc";
    let (status, h, body) = call(
        &server.url,
        random,
        LATEST,
        &request_body(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = one_message(&h, &body);
    assert_eq!(answer["id"], 2);
    let tools = answer["result"]["tools"].as_array().expect("tools");
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{body}");
    // And without any session header.
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        &echo_call(3, "stateless"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        one_message(&h, &body)["result"]["content"][0]["text"],
        "stateless"
    );

    for method in [Method::GET, Method::DELETE] {
        let headers = [ACCEPT_SSE, ("mcp-session-id", random)];
        let (status, h, body) = send(method.clone(), &server.url, &headers, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}: {body}");
        assert_eq!(header(&h, "allow"), "POST", "{method}");
        assert_rpc_error(&h, &body, -32000, Value::Null);
    }
    // An unsupported version header is still refused.
    let (status, h, body) = call(&server.url, random, "1999-01-01", PING_1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32000, json!(1));
    assert!(server.sessions().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sessions() {
    let server = spawn(stack()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let url = server.url.clone();
        tasks.spawn(async move {
            let session = initialize(&url, LATEST).await;
            let text = format!("client {n} says hi");
            let (status, h, body) = call(&url, &session, LATEST, &echo_call(n + 10, &text)).await;
            assert_eq!(status, StatusCode::OK, "{n}: {body}");
            let answer = one_message(&h, &body);
            assert_eq!(answer["id"], n + 10, "{n}");
            assert_eq!(answer["result"]["content"][0]["text"], text, "{n}");
            let (status, _, body) = delete(&url, &[("mcp-session-id", session.as_str())]).await;
            assert_eq!(status, StatusCode::OK, "{n}: {body}");
            session
        });
    }
    let mut sessions = HashSet::new();
    while let Some(joined) = bounded("50 sessions", tasks.join_next()).await {
        sessions.insert(joined.expect("session task"));
    }
    assert_eq!(sessions.len(), 50, "session ids must be distinct");
    assert_eq!(server.sessions().len(), 0);
}

// ---------------------------------------------------------------------------------------------
// Idle expiry
// ---------------------------------------------------------------------------------------------

/// Polls until `session` answers 404, for at most `within`; returns how long it took.
async fn wait_until_gone(server: &TestServer, session: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if server.sessions().get(session).is_none() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "session still live after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn idle_session_expires() {
    let server = spawn(
        stack()
            .session_idle_timeout(Duration::from_millis(300))
            .max_sessions(1),
    )
    .await;
    let session = initialize(&server.url, LATEST).await;
    let (status, _, body) = call(&server.url, &session, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, h, body) = call(&server.url, &session, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_rpc_error(&h, &body, -32001, json!(1));
    assert_eq!(server.sessions().len(), 0);
    // The expired session no longer counts against the limit.
    initialize(&server.url, LATEST).await;
}

#[tokio::test]
async fn open_standalone_stream_keeps_session_alive_until_dropped() {
    let server = spawn(stack().session_idle_timeout(Duration::from_millis(300))).await;
    let session = initialize(&server.url, V0618).await;
    let headers = [ACCEPT_SSE, ("mcp-session-id", session.as_str())];
    let stream = open(Method::GET, &server.url, &headers, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _, body) = call(&server.url, &session, V0618, PING_1).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "session expired under an open stream: {body}"
    );

    drop(stream);
    // The server learns of the drop from the socket; the countdown starts then.
    let took = wait_until_gone(&server, &session, Duration::from_secs(3)).await;
    assert!(
        took >= Duration::from_millis(250),
        "expired too early: {took:?}"
    );
    let (status, h, body) = call(&server.url, &session, V0618, PING_1).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_rpc_error(&h, &body, -32001, json!(1));
}

#[tokio::test]
async fn sessions_without_idle_timeout_stay() {
    let server = spawn(stack().session_idle_timeout(None)).await;
    let session = initialize(&server.url, LATEST).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = call(&server.url, &session, LATEST, PING_1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

// ---------------------------------------------------------------------------------------------
// Seed defects (mcp-proxy-behaviour.md §1.12) and robustness
// ---------------------------------------------------------------------------------------------

/// Seed #3: a malformed body without a session was answered "No valid session ID provided".
#[tokio::test]
async fn seed_03_malformed_json_without_session_is_parse_error() {
    let server = spawn(stack()).await;
    let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = assert_rpc_error(&h, &body, -32700, Value::Null);
    assert!(!message.contains("session"), "{message}");
}

/// Seed #16: 202 and DELETE 200 carried `content-type: text/plain` with an empty body.
#[tokio::test]
async fn seed_16_empty_answers_carry_no_content_type() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let (status, h, body) = call(&server.url, &session, LATEST, INITIALIZED).await;
    assert_eq!((status, body.as_str()), (StatusCode::ACCEPTED, ""));
    assert_no_content_type(&h, "202");
    let (status, h, body) = delete(&server.url, &[("mcp-session-id", session.as_str())]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_no_content_type(&h, "DELETE 200");
}

/// Seed #12: PUT/PATCH/HEAD on the endpoint were 404; `/ping` is an exact GET.
#[tokio::test]
async fn seed_12_put_on_endpoint_is_405_and_ping_is_exact_get() {
    let server = spawn(stack()).await;
    let (status, h, body) = send(Method::PUT, &server.url, &[], "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(header(&h, "allow"), "GET, POST, DELETE");

    let ping = format!("{}/ping", server.base);
    let (status, h, body) = get(&ping, &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8");
    for (method, path) in [
        (Method::POST, "/ping"),
        (Method::PUT, "/ping"),
        (Method::GET, "/pingx"),
        (Method::GET, "/ping/"),
        (Method::GET, "/mcp/extra"),
        (Method::GET, "/"),
    ] {
        let url = format!("{}{path}", server.base);
        let (status, _, body) = send(method.clone(), &url, &[ACCEPT_BOTH, JSON], "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    // The endpoint path itself allows a query string.
    let url = format!("{}?tenant=one", server.url);
    let (status, _, body) = post(&url, &[ACCEPT_BOTH, JSON], &initialize_body(1, LATEST)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Seed #2: an `initialize` refused by the transport after the server was built leaked it.
#[tokio::test]
async fn seed_02_initialize_rejected_by_transport_checks_creates_no_session() {
    // With a limit of one session, a leaked reservation would also block the real initialize.
    let server = spawn(stack().max_sessions(1)).await;
    let init = initialize_body(1, LATEST);
    let cases: [(&[(&str, &str)], StatusCode); 3] = [
        (
            &[ACCEPT_BOTH, ("content-type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            &[JSON, ("accept", "application/json")],
            StatusCode::NOT_ACCEPTABLE,
        ),
        (&[JSON], StatusCode::NOT_ACCEPTABLE),
    ];
    for (headers, expected) in cases {
        for _ in 0..3 {
            let (status, h, body) = post(&server.url, headers, &init).await;
            assert_eq!(status, expected, "{body}");
            assert!(h.get("mcp-session-id").is_none());
            assert_eq!(server.sessions().len(), 0);
        }
    }
    // Refused by the JSON-RPC layer, or by the server's own `initialize` handler.
    let (status, h, body) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32700, Value::Null);
    let bad_params = request_body(1, "initialize", json!({ "protocolVersion": 5 }));
    let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], &bad_params).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        h.get("mcp-session-id").is_none(),
        "a failed initialize minted a session"
    );
    let answer = one_message(&h, &body);
    assert_eq!(answer["id"], 1, "{body}");
    assert_eq!(answer["error"]["code"], -32602, "{body}");
    assert_eq!(server.sessions().len(), 0);

    initialize(&server.url, LATEST).await;
    assert_eq!(server.sessions().len(), 1);
}

/// A malformed request target (`GET //`) once crashed the process.
#[tokio::test]
async fn malformed_request_target_does_not_crash() {
    let server = spawn(stack()).await;
    for target in ["//", "//mcp", "/%", "*"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(server.addr, request.as_bytes(), Duration::from_secs(5)).await;
        assert!(response.starts_with("HTTP/1.1 4"), "{target}: {response:?}");
    }
    // Garbage that is not HTTP at all.
    let response = raw_exchange(
        server.addr,
        b"\x00\x01 nonsense\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 4"),
        "{response:?}"
    );
    let (status, _, body) = get(&format!("{}/ping", server.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    initialize(&server.url, LATEST).await;
}

// ---------------------------------------------------------------------------------------------
// Streams: server-to-client requests, standalone routing, keep-alive, shutdown, limits
// ---------------------------------------------------------------------------------------------

/// Reads frames until a message satisfies `wanted`; returns it.
async fn read_until(body: &mut hyper::body::Incoming, wanted: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = next_frame(body, Duration::from_secs(5))
            .await
            .expect("stream ended before the expected message");
        for message in sse_messages(std::str::from_utf8(&frame).unwrap()) {
            if wanted(&message) {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn no_input_request_goes_to_a_client_that_did_not_declare_the_capability() {
    let server = spawn(stack()).await;
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": LATEST, "capabilities": {}, "clientInfo": { "name": "bare", "version": "0" } },
    });
    let (status, headers, body) = post(&server.url, &[ACCEPT_BOTH, JSON], &init.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = header(&headers, "mcp-session-id").to_owned();
    let body = request_body(
        4,
        "tools/call",
        json!({ "name": "test_sampling", "arguments": { "prompt": "say hi" } }),
    );
    let (status, h, body) = call(&server.url, &session, LATEST, &body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The answer comes at once, with no sampling request before it.
    let messages = sse_messages(&body);
    assert_eq!(messages.len(), 1, "{body}");
    let text = messages[0]["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or("");
    assert!(
        text.contains("Missing required client capability: sampling"),
        "{h:?} {body}"
    );
}

#[tokio::test]
async fn server_to_client_request_is_answered_by_a_posted_response() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, LATEST).await;
    let body = request_body(
        4,
        "tools/call",
        json!({ "name": "test_sampling", "arguments": { "prompt": "say hi" } }),
    );
    let headers = session_headers(Some(&session), LATEST);
    let mut response = open(Method::POST, &server.url, &headers, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let request = read_until(response.body_mut(), |m| m.get("method").is_some()).await;
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let id = request["id"].clone();
    assert!(id.is_string() || id.is_number(), "{request}");

    let answer = json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": { "role": "assistant", "model": "test", "content": { "type": "text", "text": "hi there" } },
    });
    let (status, h, text) = call(&server.url, &session, LATEST, &answer.to_string()).await;
    assert_eq!((status, text.as_str()), (StatusCode::ACCEPTED, ""));
    assert!(h.get("content-type").is_none());

    let result = read_until(response.body_mut(), |m| m.get("id") == Some(&json!(4))).await;
    assert_eq!(
        result["result"]["content"][0]["text"], "LLM response: hi there",
        "{result}"
    );
}

#[tokio::test]
async fn json_mode_sends_request_related_notifications_on_the_standalone_stream() {
    let server = spawn(stack().json_response(true)).await;
    let session = initialize(&server.url, V0618).await;
    let get_headers = [ACCEPT_SSE, ("mcp-session-id", session.as_str())];
    let mut stream = open(Method::GET, &server.url, &get_headers, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    let body = request_body(
        6,
        "tools/call",
        json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": 66 } }),
    );
    let (status, h, answer) = call(&server.url, &session, V0618, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        header(&h, "content-type"),
        "application/json; charset=utf-8"
    );
    let answer = json_body(&answer);
    assert_eq!(answer["id"], 6);
    assert_eq!(answer["result"]["content"][0]["text"], "66");

    let mut progress = Vec::new();
    while progress.len() < 3 {
        let message = read_until(stream.body_mut(), |m| m.get("method").is_some()).await;
        assert_eq!(message["method"], "notifications/progress", "{message}");
        assert_eq!(message["params"]["progressToken"], 66, "{message}");
        progress.push(message["params"]["progress"].as_f64().unwrap());
    }
    assert_eq!(progress, [0.0, 50.0, 100.0]);
}

#[tokio::test]
async fn idle_streams_carry_keep_alive_comments() {
    let server = spawn(stack().keep_alive(Duration::from_millis(100))).await;
    let session = initialize(&server.url, V0618).await;
    let headers = [ACCEPT_SSE, ("mcp-session-id", session.as_str())];
    let mut stream = open(Method::GET, &server.url, &headers, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    for _ in 0..2 {
        let frame = next_frame(stream.body_mut(), Duration::from_secs(2))
            .await
            .expect("keep-alive frame");
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with(':'), "{text:?}");
        assert!(sse_events(text).is_empty(), "{text:?}");
    }
}

#[tokio::test]
async fn close_all_ends_sessions_and_their_streams() {
    let server = spawn(stack().max_sessions(2)).await;
    let session = initialize(&server.url, V0618).await;
    let other = initialize(&server.url, LATEST).await;
    let headers = [ACCEPT_SSE, ("mcp-session-id", session.as_str())];
    let mut stream = open(Method::GET, &server.url, &headers, "").await;
    assert_eq!(stream.status(), StatusCode::OK);
    bounded("close_all", server.sessions().close_all()).await;
    assert_eq!(server.sessions().len(), 0);
    let frames = read_frames(stream.body_mut(), Duration::from_secs(5)).await;
    assert!(frames.is_empty(), "{frames:?}");
    for s in [&session, &other] {
        let (status, h, body) = call(&server.url, s, LATEST, PING_1).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_rpc_error(&h, &body, -32001, json!(1));
    }
    // Closed sessions free their places.
    initialize(&server.url, LATEST).await;
    initialize(&server.url, LATEST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_initializes_respect_max_sessions() {
    let server = spawn(stack().max_sessions(10)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..30 {
        let url = server.url.clone();
        tasks.spawn(async move {
            let (status, h, body) =
                post(&url, &[ACCEPT_BOTH, JSON], &initialize_body(n, LATEST)).await;
            match status {
                StatusCode::OK => assert!(h.get("mcp-session-id").is_some(), "{body}"),
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_rpc_error(&h, &body, -32000, json!(n));
                }
                other => panic!("unexpected {other}: {body}"),
            }
            status
        });
    }
    let mut ok = 0;
    let mut refused = 0;
    while let Some(joined) = bounded("30 initializes", tasks.join_next()).await {
        match joined.expect("task") {
            StatusCode::OK => ok += 1,
            _ => refused += 1,
        }
    }
    assert_eq!((ok, refused), (10, 20));
    assert_eq!(server.sessions().len(), 10);
}

/// A POST whose body is still arriving belongs to its session: the idle sweep must not end the
/// session under it (the seed marks the session busy before reading the body).
#[tokio::test]
async fn slow_upload_on_a_session_keeps_it_alive() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = spawn(stack().session_idle_timeout(Duration::from_millis(300))).await;
    let session = initialize(&server.url, LATEST).await;
    let mut stream = bounded("connect", tokio::net::TcpStream::connect(server.addr))
        .await
        .expect("connect");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nMcp-Session-Id: {session}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    );
    let (first, rest) = PING_1.split_at(10);
    let first_chunk = format!("{:x}\r\n{first}\r\n", first.len());
    bounded("write head", stream.write_all(head.as_bytes()))
        .await
        .expect("write");
    bounded("write chunk", stream.write_all(first_chunk.as_bytes()))
        .await
        .expect("write");
    // Longer than the idle timeout, mid-body.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last = format!("{:x}\r\n{rest}\r\n0\r\n\r\n", rest.len());
    bounded("write rest", stream.write_all(last.as_bytes()))
        .await
        .expect("write");
    let mut response = Vec::new();
    bounded("read answer", stream.read_to_end(&mut response))
        .await
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the session expired while its request body was arriving: {response}"
    );
}

#[tokio::test]
async fn standalone_stream_can_be_reopened_after_the_client_drops_it() {
    let server = spawn(stack()).await;
    let session = initialize(&server.url, V0618).await;
    let headers = [ACCEPT_SSE, ("mcp-session-id", session.as_str())];
    let first = open(Method::GET, &server.url, &headers, "").await;
    assert_eq!(first.status(), StatusCode::OK);
    drop(first);
    // The server learns of the drop from the socket: allow it a moment, then a new GET succeeds.
    let start = Instant::now();
    loop {
        let mut again = open(Method::GET, &server.url, &headers, "").await;
        match again.status() {
            StatusCode::OK => {
                // And it is live: a DELETE ends it.
                let (status, _, _) = delete(&server.url, &headers[1..]).await;
                assert_eq!(status, StatusCode::OK);
                let frames = read_frames(again.body_mut(), Duration::from_secs(5)).await;
                assert!(frames.is_empty(), "{frames:?}");
                return;
            }
            StatusCode::CONFLICT => {
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "still 409 three seconds after the first stream was dropped"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => panic!("unexpected {other}"),
        }
    }
}

/// Seed defect #1: stateless mode never closed its per-request servers (every request leaked
/// one). Here each request builds its own server, and each one is closed once its answer is out,
/// in JSON and SSE modes alike.
#[tokio::test]
async fn seed_01_stateless_servers_are_closed_after_each_request() {
    use mcp_tower_http::jsonrpc::{ErrorObject, Request as RpcRequest};
    use mcp_tower_http::{McpService, McpStack, RequestContext, SessionContext};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counts {
        made: AtomicUsize,
        closed: AtomicUsize,
    }
    struct Counted(Arc<Counts>);
    impl McpService for Counted {
        async fn handle_request(
            &self,
            request: RpcRequest,
            _cx: RequestContext,
        ) -> Result<Value, ErrorObject> {
            match request.method.as_str() {
                "ping" => Ok(json!({})),
                other => Err(ErrorObject::method_not_found(other)),
            }
        }
        async fn close(&self) {
            self.0.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    for json_response in [true, false] {
        let counts = Arc::new(Counts::default());
        let made = counts.clone();
        let service = McpStack::new(move |_: &SessionContext<'_>| {
            made.made.fetch_add(1, Ordering::SeqCst);
            Counted(made.clone())
        })
        .stateless(true)
        .json_response(json_response)
        .endpoint_path("/mcp")
        .into_service();
        let server = serve(service).await;
        let headers = session_headers(None, "2025-06-18");
        for id in 1..=3 {
            let ping = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let (status, _, body) = post(&server.url, &headers, &ping).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let note = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let (status, _, _) = post(&server.url, &headers, note).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        // Closing runs after the answer is written; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while counts.closed.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            counts.made.load(Ordering::SeqCst),
            4,
            "json {json_response}"
        );
        assert_eq!(
            counts.closed.load(Ordering::SeqCst),
            4,
            "json {json_response}"
        );
    }
}
