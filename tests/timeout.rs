//! `RequestTimeoutLayer` over a real socket: a handler that does not answer in time gets
//! `-32001 Request timed out` with its request's id, in the framing the request asked for (an
//! SSE event, or a JSON body), while the session and quick requests carry on.

mod common;

use common::*;
use http::StatusCode;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::jsonrpc::{ErrorObject, Request};
use mcp_tower_http::timeout::RequestTimeoutLayer;
use mcp_tower_http::{McpService, McpStack, RequestContext, SessionContext};
use serde_json::{Value, json};
use std::time::Duration;
use tower::Layer;

const VERSION: &str = "2025-11-25";
const LIMIT: Duration = Duration::from_millis(300);

/// The everything server plus a `slow` tool that answers after an hour.
struct Slow(EverythingServer);

impl McpService for Slow {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let slow = request.method == "tools/call"
            && request.params.as_ref().is_some_and(|p| p["name"] == "slow");
        if slow {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(json!({ "content": [] }));
        }
        self.0.handle_request(request, cx).await
    }
}

async fn server(json_response: bool) -> TestServer {
    let make = RequestTimeoutLayer::new(LIMIT)
        .layer(|_: &SessionContext<'_>| Slow(EverythingServer::new()));
    let service = McpStack::new(make)
        .endpoint_path("/mcp")
        .json_response(json_response)
        .into_service();
    serve(service).await
}

async fn timed_out_then_echo(json_response: bool) {
    let server = server(json_response).await;
    let session = initialize(&server.url, VERSION).await;
    let headers = session_headers(Some(&session), VERSION);

    let slow = request_body(7, "tools/call", json!({ "name": "slow", "arguments": {} }));
    let (status, h, body) = post(&server.url, &headers, &slow).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let expected_type = if json_response {
        "application/json"
    } else {
        "text/event-stream"
    };
    assert!(
        header(&h, "content-type").starts_with(expected_type),
        "{h:?}"
    );
    let answer = one_message(&h, &body);
    assert_eq!(
        answer,
        json!({
            "jsonrpc": "2.0",
            "id": 7,
            "error": { "code": -32001, "message": "Request timed out", "data": { "timeout": 300 } },
        })
    );

    // The session is intact and a quick request is answered as usual.
    let echo = request_body(
        8,
        "tools/call",
        json!({ "name": "echo", "arguments": { "text": "hi" } }),
    );
    let (status, h, body) = post(&server.url, &headers, &echo).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = one_message(&h, &body);
    assert_eq!(answer["id"], 8, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
}

#[tokio::test]
async fn a_slow_request_answers_32001_on_its_sse_stream() {
    timed_out_then_echo(false).await;
}

#[tokio::test]
async fn a_slow_request_answers_32001_as_its_json_body() {
    timed_out_then_echo(true).await;
}
