//! The stack embedded in a host application: mounted in an axum 0.8 `Router` beside the app's
//! own routes, and served by bare hyper without axum.

mod common;

use axum::Router;
use axum::routing;
use common::*;
use http::StatusCode;
use serde_json::json;

/// initialize → tools/list → DELETE on `url`, checking each answer.
async fn full_exchange(url: &str) {
    let session = initialize(url, "2025-11-25").await;
    let (status, h, body) = post(
        url,
        &session_headers(Some(&session), "2025-11-25"),
        &request_body(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = one_message(&h, &body);
    assert_eq!(answer["id"], 2);
    let tools = answer["result"]["tools"].as_array().expect("tools");
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{body}");

    let (status, h, body) = delete(url, &[("mcp-session-id", session.as_str())]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert!(h.get("content-type").is_none());
    let (status, _, body) = post(
        url,
        &session_headers(Some(&session), "2025-11-25"),
        &request_body(3, "ping", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn mounted_in_an_axum_router_beside_app_routes() {
    let mcp = stack().into_service();
    let sessions = mcp.sessions().clone();
    let app: Router = Router::new()
        .route("/", routing::get(|| async { "my app" }))
        .route("/health", routing::get(|| async { "ok" }))
        .route_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let server = TestServer::from_task(addr, task, Some(sessions));

    // The app's own routes.
    let (status, _, body) = get(&format!("{}/", server.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "my app"));
    let (status, _, body) = get(&format!("{}/health", server.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, _) = get(&format!("{}/elsewhere", server.base), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // MCP at /mcp, with its own error mapping.
    full_exchange(&server.url).await;
    let (status, h, body) = post(&server.url, &[ACCEPT_BOTH, JSON], "{bad").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_rpc_error(&h, &body, -32700, serde_json::Value::Null);
    assert_eq!(server.sessions().len(), 0);

    // The app route still answers after MCP traffic.
    let (status, _, body) = get(&format!("{}/", server.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "my app"));
}

#[tokio::test]
async fn served_by_bare_hyper_without_axum() {
    // No endpoint path: every path is the MCP endpoint (except GET /ping).
    let mcp = stack().into_service();
    let sessions = mcp.sessions().clone();
    let server = serve(mcp).await.with_sessions(sessions);
    full_exchange(&server.url).await;
    full_exchange(&format!("{}/any/path", server.base)).await;
    let (status, _, body) = get(&format!("{}/ping", server.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    assert_eq!(server.sessions().len(), 0);
}
