use super::*;
use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::{ErrorCode, Id};
use crate::{McpService, RequestContext};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::convert::Infallible;
use tower::{Layer, ServiceExt};

/// The value of the sample `name{labels}` in `text`, labels written as in the exposition.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&key)?.strip_prefix(' ')?.parse().ok())
}

/// A server that answers `tools/call` of `ok` and `slow`, fails others with `-32602`, and
/// reports `broken` as a tool error.
struct Tools;

impl McpService for Tools {
    async fn handle_request(
        &self,
        request: crate::jsonrpc::Request,
        _: RequestContext,
    ) -> Result<Value, crate::jsonrpc::ErrorObject> {
        let name = request
            .params
            .as_ref()
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match name.as_str() {
            "ok" => Ok(json!({"content": []})),
            "slow" => {
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                Ok(json!({"content": []}))
            }
            "broken" => Ok(json!({"content": [], "isError": true})),
            _ => Err(crate::jsonrpc::ErrorObject::new(
                ErrorCode::INVALID_PARAMS,
                "unknown tool",
            )),
        }
    }
}

async fn call(service: &impl McpService, method: &str, tool: Option<&str>) -> bool {
    let (cx, _) = RequestContext::detached(Id::Number(1), None, 1);
    let request = crate::jsonrpc::Request {
        id: Id::Number(1),
        method: method.into(),
        params: tool.map(|name| json!({ "name": name })),
    };
    service.handle_request(request, cx).await.is_ok()
}

#[tokio::test]
async fn records_rpc_requests_by_method_and_tool_with_latency_and_codes() {
    let metrics = Metrics::new();
    let service = metrics.rpc_layer().layer(Tools);
    assert!(call(&service, "tools/call", Some("ok")).await);
    assert!(call(&service, "tools/call", Some("ok")).await);
    assert!(call(&service, "tools/call", Some("slow")).await);
    assert!(!call(&service, "tools/call", Some("made-up")).await);
    assert!(call(&service, "tools/call", Some("broken")).await);
    assert!(!call(&service, "no/such/method", None).await);
    let text = metrics.encode();

    let ok = r#"method="tools/call",tool="ok""#;
    assert_eq!(
        sample(&text, "mcp_rpc_requests_total", ok),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "mcp_rpc_request_duration_seconds_count", ok),
        Some(2.0)
    );
    // The slow call lands above 25 ms.
    let slow = r#"method="tools/call",tool="slow""#;
    assert_eq!(
        sample(
            &text,
            "mcp_rpc_request_duration_seconds_bucket",
            &format!(r#"{slow},le="0.025""#)
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mcp_rpc_request_duration_seconds_bucket",
            &format!(r#"{slow},le="+Inf""#)
        ),
        Some(1.0)
    );
    assert!(sample(&text, "mcp_rpc_request_duration_seconds_sum", slow).unwrap() >= 0.03);
    // Names that never succeeded are not labels.
    assert!(!text.contains("made-up"), "{text}");
    assert!(!text.contains("broken"), "{text}");
    assert_eq!(
        sample(
            &text,
            "mcp_rpc_errors_total",
            r#"method="tools/call",tool="other",code="-32602""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "mcp_rpc_requests_total",
            r#"method="tools/call",tool="other""#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "mcp_rpc_errors_total",
            r#"method="other",tool="",code="-32602""#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn tool_labels_stop_at_the_bound() {
    let metrics = Metrics::with_max_tool_labels(1);
    struct Any;
    impl McpService for Any {
        async fn handle_request(
            &self,
            _: crate::jsonrpc::Request,
            _: RequestContext,
        ) -> Result<Value, crate::jsonrpc::ErrorObject> {
            Ok(json!({}))
        }
    }
    let service = metrics.rpc_layer().layer(Any);
    for name in ["first", "second", "third", "first"] {
        assert!(call(&service, "tools/call", Some(name)).await);
    }
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "mcp_rpc_requests_total",
            r#"method="tools/call",tool="first""#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "mcp_rpc_requests_total",
            r#"method="tools/call",tool="other""#
        ),
        Some(2.0)
    );
    assert!(!text.contains(r#"tool="second""#) && !text.contains(r#"tool="third""#));
}

type Responding =
    tower::util::BoxCloneService<Request<()>, Response<MetricsBody<Full<Bytes>>>, Infallible>;

fn responding(make: fn() -> Response<Full<Bytes>>) -> (Metrics, Responding) {
    let metrics = Metrics::new();
    let service = MetricsLayer::new(metrics.clone()).layer(tower::service_fn(
        move |_: Request<()>| async move { Ok(make()) },
    ));
    (metrics, Responding::new(service))
}

use ::http::{Request, Response, StatusCode};

#[tokio::test]
async fn records_http_requests_rate_limits_and_auth_failures() {
    let metrics = Metrics::new();
    let layer = MetricsLayer::new(metrics.clone());
    let limited = layer.layer(tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(
            TransportError::new(TransportErrorKind::TooManyRequests).into_response::<Full<Bytes>>(),
        )
    }));
    let unauthorized = layer.layer(tower::service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(
            TransportError::new(TransportErrorKind::Unauthorized).into_response::<Full<Bytes>>(),
        )
    }));
    for _ in 0..2 {
        let r = limited.clone().oneshot(Request::new(())).await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let post = Request::post("/mcp").body(()).unwrap();
    let r = unauthorized.oneshot(post).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "mcp_http_requests_total",
            r#"method="GET",status="429""#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "mcp_rate_limited_requests_total", ""),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "mcp_http_requests_total",
            r#"method="POST",status="401""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mcp_auth_failures_total", r#"reason="unauthorized""#),
        Some(1.0)
    );
}

#[cfg(feature = "auth")]
#[tokio::test]
async fn auth_failures_carry_their_reason() {
    use crate::auth::{AuthError, AuthErrorKind};
    let metrics = Metrics::new();
    let service =
        MetricsLayer::new(metrics.clone()).layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(
                AuthError::new(AuthErrorKind::MissingCredentials).into_response::<Full<Bytes>>(),
            )
        }));
    service.oneshot(Request::new(())).await.unwrap();
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "mcp_auth_failures_total",
            r#"reason="missing_credentials""#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn sse_streams_count_while_their_body_lives() {
    let (metrics, service) = responding(|| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::from("data: 1\n\n"))
            .unwrap()
    });
    let open = || sample(&metrics.encode(), "mcp_sse_streams_open", "");
    let first = service.clone().oneshot(Request::new(())).await.unwrap();
    let second = service.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(open(), Some(2.0));
    drop(first);
    assert_eq!(open(), Some(1.0));
    // Read to its end: closed, though the body value is still held.
    let mut body = second.into_body();
    while body.frame().await.is_some() {}
    assert_eq!(open(), Some(0.0));
    // A JSON answer is not a stream.
    let (metrics, json) = responding(|| Response::new(Full::from("{}")));
    let _kept = json.oneshot(Request::new(())).await.unwrap();
    assert_eq!(
        sample(&metrics.encode(), "mcp_sse_streams_open", ""),
        Some(0.0)
    );
}

#[tokio::test]
async fn scrape_time_sources() {
    let metrics = Metrics::new();
    let registry = crate::session::SessionLayer::new().registry().clone();
    metrics.track_sessions("streamable_http", &registry);
    let store = InMemoryEventStore::new();
    metrics.track_event_store(store.clone());
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            "mcp_sessions_active",
            r#"transport="streamable_http""#
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "mcp_event_store_bytes", ""), Some(0.0));
    // A dropped registry is no longer reported.
    drop(registry);
    let text = metrics.encode();
    assert!(!text.contains("transport="), "{text}");
}

#[cfg(feature = "stdio")]
#[tokio::test]
async fn stdio_children_alive_spawned_and_crashed() {
    let command = crate::stdio::StdioCommand::new("sh")
        .arg("-c")
        .arg("exit 0")
        .grace_period(std::time::Duration::from_millis(50));
    let metrics = Metrics::new();
    metrics.track_stdio(command.stats());
    // Exits at once by itself: a crash.
    let crashing = command.spawn(None, None).unwrap();
    let stats = command.stats();
    assert_eq!(stats.spawned(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stats.crashed() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!((stats.crashed(), stats.alive()), (1, 0));
    drop(crashing);
    // Closed by us: not a crash.
    let cat = crate::stdio::StdioCommand::new("cat");
    let cat_stats = cat.stats();
    let server = cat.spawn(None, None).unwrap();
    assert_eq!(cat_stats.alive(), 1);
    server.close().await;
    assert_eq!((cat_stats.alive(), cat_stats.crashed()), (0, 0));
    let text = metrics.encode();
    assert_eq!(
        sample(&text, "mcp_stdio_children_spawned_total", ""),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "mcp_stdio_children_crashed_total", ""),
        Some(1.0)
    );
    assert_eq!(sample(&text, "mcp_stdio_children_alive", ""), Some(0.0));
}
