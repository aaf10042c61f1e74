//! Traces and logs of the `mcp-proxy` binary over real loopback sockets: `--log-format json`
//! lines carry the request spans' fields, and (feature `otel`) `--otel` exports the spans by
//! OTLP/HTTP to a receiver of the test's, decoded with the official OpenTelemetry protobuf
//! definitions (`opentelemetry-proto`). Neither ever shows a credential.

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use support::{Proxy, Reply, must_send, wait_until};

const KEY: &str = "key-0-traces-5b1e9c0d7a";
/// A wrong bearer token: refused, and never written anywhere.
const TOKEN: &str = "tok-not-the-key-83f2a6c1";
/// A tool argument: arguments are not recorded either.
const ARGUMENT: &str = "argument-text-4d9e";
const VERSION: &str = "2025-06-18";

async fn post(url: &str, session: Option<&str>, auth: (&str, &str), body: &Value) -> Reply {
    let mut headers = vec![
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", VERSION),
        auth,
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    must_send(Method::POST, url, &headers, body.to_string()).await
}

/// A session of the API key's principal, a `tools/call echo`, an unknown method, and a request
/// with a wrong bearer token. The session id.
async fn workload(url: &str) -> String {
    let key = ("x-api-key", KEY);
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": VERSION, "capabilities": {},
                    "clientInfo": { "name": "traces-test", "version": "0" } },
    });
    let reply = post(url, None, key, &init).await;
    assert_eq!(reply.status, StatusCode::OK, "initialize: {reply}");
    let session = reply
        .header("mcp-session-id")
        .expect("a session id")
        .to_owned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let reply = post(url, Some(&session), key, &initialized).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "initialized: {reply}");
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": ARGUMENT } },
    });
    let reply = post(url, Some(&session), key, &call).await;
    assert!(reply.body.contains(ARGUMENT), "tools/call echo: {reply}");
    let unknown = json!({ "jsonrpc": "2.0", "id": 3, "method": "no/such/method" });
    let reply = post(url, Some(&session), key, &unknown).await;
    assert!(reply.body.contains("-32601"), "no/such/method: {reply}");
    // The same call, sessionless (2026-07-28).
    let modern = json!({
        "jsonrpc": "2.0", "id": 4, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": ARGUMENT }, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        } },
    });
    let headers = [
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "echo"),
        key,
    ];
    let reply = must_send(Method::POST, url, &headers, modern.to_string()).await;
    assert!(
        reply.body.contains(ARGUMENT),
        "2026-07-28 tools/call: {reply}"
    );
    let bearer = format!("Bearer {TOKEN}");
    let reply = post(url, None, ("authorization", &bearer), &init).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "wrong token: {reply}"
    );
    session
}

/// The stderr lines of the proxy's log.
fn stderr_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| line.strip_prefix("[mcp-proxy stderr] "))
        .collect()
}

/// The spans of a JSON log line (`spans`: outermost first), by name.
fn span_of<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|span| span["name"] == name)
}

#[tokio::test]
async fn json_logs_carry_the_request_spans_and_never_the_key() {
    let proxy = Proxy::builtin(&[
        "--api-key",
        KEY,
        "--log-format",
        "json",
        "--log-level",
        "debug",
    ]);
    let session = workload(&proxy.url()).await;
    // The 401's `answered` line is the last one the workload causes.
    let logged = wait_until(Duration::from_secs(10), || {
        proxy.log().contains("\"http.response.status_code\":401")
    })
    .await
    .is_ok();
    let log = proxy.log();
    assert!(logged, "no line for the 401:\n{log}");

    let lines: Vec<Value> = stderr_lines(&log)
        .into_iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["timestamp"].is_string() && l["level"].is_string()),
        "{log}"
    );
    // The tool call's own line: both spans, with the method, tool, session and principal.
    let call = lines
        .iter()
        .find(|l| span_of(l, "mcp.request").is_some_and(|s| s["gen_ai.tool.name"] == "echo"))
        .unwrap_or_else(|| panic!("no line inside the tools/call span:\n{log}"));
    let rpc = span_of(call, "mcp.request").unwrap();
    assert_eq!(rpc["mcp.method.name"], "tools/call", "{call}");
    assert_eq!(rpc["mcp.session.id"], session.as_str(), "{call}");
    assert_eq!(rpc["enduser.id"], "api-key:0", "{call}");
    let http = span_of(call, "http.request").expect("inside the HTTP span");
    assert_eq!(http["url.path"], "/mcp", "{call}");
    assert_eq!(http["enduser.id"], "api-key:0", "{call}");
    // The unknown method's error code.
    assert!(
        lines.iter().any(|l| span_of(l, "mcp.request")
            .is_some_and(|s| s["mcp.method.name"] == "no/such/method"
                && s["rpc.response.status_code"] == "-32601")),
        "no -32601 on the unknown method's span:\n{log}"
    );
    // The HTTP status, recorded when the answer is ready.
    assert!(
        lines.iter().any(|l| l["fields"]["message"] == "answered"
            && span_of(l, "http.request").is_some_and(
                |s| s["http.response.status_code"] == 401 && s.get("enduser.id").is_none()
            )),
        "no 401 line without a principal:\n{log}"
    );
    for secret in [KEY, TOKEN, ARGUMENT] {
        assert!(!log.contains(secret), "`{secret}` in the log:\n{log}");
    }
}

#[tokio::test]
async fn text_logs_are_the_default() {
    let proxy = Proxy::builtin(&["--log-level", "debug"]);
    support::initialize(&proxy).await;
    let logged = wait_until(Duration::from_secs(10), || proxy.log().contains("answered"))
        .await
        .is_ok();
    let log = proxy.log();
    assert!(logged, "{log}");
    let line = stderr_lines(&log)
        .into_iter()
        .find(|l| l.contains("answered") && l.contains("mcp.request"))
        .unwrap_or_else(|| panic!("no answered line in the JSON-RPC span:\n{log}"));
    assert!(
        line.contains("mcp.method.name=initialize") && !line.starts_with('{'),
        "{line}"
    );
}

#[tokio::test]
async fn otel_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "otel") {
        return;
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-proxy"))
        .args(["--port", "0", "--otel"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`otel` feature"), "{stderr}");
}

#[cfg(feature = "otel")]
mod otlp {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    /// A tiny OTLP/HTTP receiver: keeps the body of every `POST /v1/traces`.
    struct Receiver {
        base: String,
        bodies: Arc<Mutex<Vec<Bytes>>>,
        task: JoinHandle<()>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Receiver {
        async fn start() -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let bodies = Arc::new(Mutex::new(Vec::new()));
            let kept = bodies.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let kept = kept.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req: http::Request<Incoming>| {
                            let kept = kept.clone();
                            async move {
                                let traces = req.method() == Method::POST
                                    && req.uri().path() == "/v1/traces";
                                let body = req.into_body().collect().await?.to_bytes();
                                let status = match traces {
                                    true => {
                                        kept.lock().unwrap().push(body);
                                        StatusCode::OK
                                    }
                                    false => StatusCode::NOT_FOUND,
                                };
                                // An empty ExportTraceServiceResponse is zero bytes.
                                let response = http::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::new()))
                                    .unwrap();
                                Ok::<_, hyper::Error>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self { base, bodies, task }
        }

        fn bodies(&self) -> Vec<Bytes> {
            self.bodies.lock().unwrap().clone()
        }
    }

    fn text(value: &AnyValue) -> String {
        match &value.value {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            Some(any_value::Value::BoolValue(b)) => b.to_string(),
            Some(any_value::Value::DoubleValue(d)) => d.to_string(),
            other => format!("{other:?}"),
        }
    }

    fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
        attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .map(text)
    }

    #[tokio::test]
    async fn otlp_export_has_the_request_spans_and_no_secret() {
        let receiver = Receiver::start().await;
        // A long batch delay: the spans arrive because shutdown flushes them.
        let mut proxy = Proxy::start_with_env(
            &["--api-key", KEY, "--otel"],
            &[] as &[&str],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.base),
                ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
            ],
        );
        let session = workload(&proxy.url()).await;
        assert!(receiver.bodies().is_empty(), "exported before the flush");
        proxy.sigterm();
        let status = proxy.wait_exit(Duration::from_secs(20)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{status:?}\n{}",
            proxy.log()
        );

        let bodies = receiver.bodies();
        assert!(!bodies.is_empty(), "nothing exported:\n{}", proxy.log());
        for body in &bodies {
            for secret in [KEY, TOKEN, ARGUMENT] {
                let found = body.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "`{secret}` in an exported batch");
            }
        }
        let mut spans: Vec<Span> = Vec::new();
        for body in &bodies {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
            for resource_spans in request.resource_spans {
                let resource = resource_spans.resource.expect("a resource");
                assert_eq!(
                    attr(&resource.attributes, "service.name").as_deref(),
                    Some("mcp-proxy")
                );
                for scope in resource_spans.scope_spans {
                    spans.extend(scope.spans);
                }
            }
        }
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        let call = spans
            .iter()
            .find(|s| s.name == "tools/call echo")
            .unwrap_or_else(|| panic!("no `tools/call echo` span in {names:?}"));
        let get = |span: &Span, key| attr(&span.attributes, key);
        assert_eq!(get(call, "mcp.method.name").as_deref(), Some("tools/call"));
        assert_eq!(get(call, "gen_ai.tool.name").as_deref(), Some("echo"));
        assert_eq!(get(call, "mcp.session.id"), Some(session.clone()));
        assert_eq!(get(call, "enduser.id").as_deref(), Some("api-key:0"));
        assert_eq!(get(call, "jsonrpc.request.id").as_deref(), Some("2"));
        // SPAN_KIND_SERVER
        assert_eq!(call.kind, 2);
        // Its parent: the POST that carried it, with the status, session and principal.
        let http = spans
            .iter()
            .find(|s| s.span_id == call.parent_span_id)
            .unwrap_or_else(|| panic!("no parent of the tools/call span in {names:?}"));
        assert_eq!(http.name, "POST /mcp");
        assert_eq!(http.trace_id, call.trace_id);
        assert_eq!(
            get(http, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(get(http, "mcp.session.id"), Some(session.clone()));
        assert_eq!(get(http, "enduser.id").as_deref(), Some("api-key:0"));
        // The sessionless call: its own span, with the revision and no session.
        let modern = spans
            .iter()
            .find(|s| get(s, "mcp.protocol.version").as_deref() == Some("2026-07-28"))
            .unwrap_or_else(|| panic!("no 2026-07-28 span in {names:?}"));
        assert_eq!(modern.name, "tools/call echo");
        assert_eq!(get(modern, "enduser.id").as_deref(), Some("api-key:0"));
        assert_eq!(get(modern, "mcp.session.id"), None);
        // The JSON-RPC error code of the unknown method.
        let unknown = spans
            .iter()
            .find(|s| s.name == "no/such/method")
            .unwrap_or_else(|| panic!("no `no/such/method` span in {names:?}"));
        assert_eq!(
            get(unknown, "rpc.response.status_code").as_deref(),
            Some("-32601")
        );
        assert_eq!(get(unknown, "error.type").as_deref(), Some("-32601"));
        // The refused request: a 401 HTTP span with no principal and no JSON-RPC child.
        let refused = spans
            .iter()
            .find(|s| get(s, "http.response.status_code").as_deref() == Some("401"))
            .unwrap_or_else(|| panic!("no 401 span in {names:?}"));
        assert_eq!(get(refused, "enduser.id"), None);
        assert!(!spans.iter().any(|s| s.parent_span_id == refused.span_id));
    }
}
