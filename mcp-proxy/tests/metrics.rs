//! Issue 12, metrics and health: `--metrics-port` serves Prometheus text on a listener of its
//! own (checked with the official Python `prometheus_client` parser after a scripted
//! workload), never on the MCP port; `/healthz` and `/readyz` are open on both, and readiness
//! turns 503 during a graceful shutdown and while `--redis` is unreachable.
//!
//! The parser test needs `prometheus_client` in `tests/interop/.venv` and the Redis test needs
//! `redis-server`: both are `#[ignore]`d and installed by `bash .ci/run`, which runs them.

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const KEY: &str = "metrics-test-key";
const ACCEPT: (&str, &str) = ("accept", "application/json, text/event-stream");
const JSON: (&str, &str) = ("content-type", "application/json");
const AUTH: (&str, &str) = ("x-api-key", KEY);

/// The metrics base URL from the proxy's `mcp-proxy metrics at http://ADDR/metrics` line.
fn metrics_base(proxy: &Proxy) -> String {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let log = proxy.log();
        if let Some(line) = log.lines().find(|l| l.contains("metrics at http://")) {
            let url = &line[line.find("http://").expect("url")..];
            return url.trim().trim_end_matches("/metrics").to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no metrics line in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn get(url: &str) -> Reply {
    must_send(Method::GET, url, &[], "").await
}

/// POSTs a JSON-RPC body with the API key (and the session, if any).
async fn call(url: &str, session: Option<&str>, body: &Value) -> Reply {
    let mut headers = vec![ACCEPT, JSON, AUTH, ("mcp-protocol-version", VERSION)];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    must_send(Method::POST, url, &headers, body.to_string()).await
}

/// One sample as the Python parser read it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses `text` with `prometheus_client.parser.text_string_to_metric_families` (the venv's
/// Python): the families' types by name, and every sample.
fn parse_with_prometheus_client(text: &str) -> (HashMap<String, String>, Vec<Sample>) {
    let python = interop_dir().join(".venv/bin/python");
    installed("prometheus_client (tests/interop/.venv)", &python);
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families, samples = {}, []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"families": families, "samples": samples}))
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write the metrics");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "prometheus_client could not parse the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let families = parsed["families"]
        .as_object()
        .expect("families")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let samples = parsed["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| Sample {
            name: s[0].as_str().expect("name").to_owned(),
            labels: s[1]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect(),
            value: s[2].as_f64().expect("value"),
        })
        .collect();
    (families, samples)
}

/// The value of the sample `name` whose labels include `labels`, summed over the others.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus_client in tests/interop/.venv (installed by .ci/run)"]
async fn scrape_after_a_workload_parses_with_prometheus_client() {
    let proxy = Proxy::builtin(&["--metrics-port", "0", "--api-key", KEY]);
    let metrics = metrics_base(&proxy);
    let url = proxy.url();

    // Two authentication failures: no key, a wrong key.
    let refused = must_send(Method::POST, &url, &[ACCEPT, JSON], "{}").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused}");
    let refused = must_send(
        Method::POST,
        &url,
        &[ACCEPT, JSON, ("x-api-key", "wrong")],
        "{}",
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused}");

    let init = call(&url, None, &initialize_body(1)).await;
    assert_eq!(init.status, StatusCode::OK, "{init}");
    let session = init.header("mcp-session-id").expect("session").to_owned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let ack = call(&url, Some(&session), &initialized).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED, "{ack}");

    // Two successful calls of `echo`, one of a tool that does not exist, one refused argument.
    for id in [2, 3] {
        let params = json!({ "name": "echo", "arguments": { "text": "hi" } });
        let reply = call(
            &url,
            Some(&session),
            &request_body(id, "tools/call", params),
        )
        .await;
        let answer = reply.answer(id).unwrap_or_else(|| panic!("{reply}"));
        assert!(answer["result"].is_object(), "{answer}");
    }
    let params = json!({ "name": "no-such-tool-1234", "arguments": {} });
    let reply = call(&url, Some(&session), &request_body(4, "tools/call", params)).await;
    let unknown = reply.answer(4).unwrap_or_else(|| panic!("{reply}"));
    let unknown_code = unknown["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error: {unknown}"));
    // A known tool (it succeeded above) failing: counted under its name.
    let params = json!({ "name": "echo", "arguments": {} });
    let reply = call(&url, Some(&session), &request_body(5, "tools/call", params)).await;
    let refused_args = reply.answer(5).unwrap_or_else(|| panic!("{reply}"));
    let refused_code = refused_args["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("an error: {refused_args}"))
        .to_string();

    // The session's standalone SSE stream, open while the metrics are scraped.
    let stream = EventStream::request(
        Method::GET,
        &url,
        &[
            ("accept", "text/event-stream"),
            AUTH,
            ("mcp-session-id", &session),
            ("mcp-protocol-version", VERSION),
        ],
        "",
    )
    .await;
    assert_eq!(stream.status, StatusCode::OK);

    // Never on the MCP port.
    let on_mcp = get(&format!("{}/metrics", proxy.base)).await;
    assert_eq!(on_mcp.status, StatusCode::NOT_FOUND, "{on_mcp}");

    let scrape = get(&format!("{metrics}/metrics")).await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert_eq!(
        scrape.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (families, samples) = parse_with_prometheus_client(&scrape.body);
    let text = &scrape.body;

    for (family, kind) in [
        ("mcp_http_requests", "counter"),
        ("mcp_rpc_requests", "counter"),
        ("mcp_rpc_request_duration_seconds", "histogram"),
        ("mcp_rpc_errors", "counter"),
        ("mcp_auth_failures", "counter"),
        ("mcp_rate_limited_requests", "counter"),
        ("mcp_sessions_active", "gauge"),
        ("mcp_sse_streams_open", "gauge"),
        ("mcp_event_store_bytes", "gauge"),
    ] {
        assert_eq!(
            families.get(family).map(String::as_str),
            Some(kind),
            "{family}: {text}"
        );
    }
    let echo = [("method", "tools/call"), ("tool", "echo")];
    // Two successes and one refusal.
    assert_eq!(
        value(&samples, "mcp_rpc_requests_total", &echo),
        3.0,
        "{text}"
    );
    assert_eq!(
        value(&samples, "mcp_rpc_request_duration_seconds_count", &echo),
        3.0
    );
    let inf = [("method", "tools/call"), ("tool", "echo"), ("le", "+Inf")];
    assert_eq!(
        value(&samples, "mcp_rpc_request_duration_seconds_bucket", &inf),
        3.0
    );
    assert!(value(&samples, "mcp_rpc_request_duration_seconds_sum", &echo) > 0.0);
    assert_eq!(
        value(
            &samples,
            "mcp_rpc_requests_total",
            &[("method", "initialize")]
        ),
        1.0
    );
    // The made-up name is not a label; its error is counted under `other` with its code.
    assert!(!text.contains("no-such-tool-1234"), "{text}");
    let code = unknown_code.to_string();
    assert_eq!(
        value(
            &samples,
            "mcp_rpc_errors_total",
            &[("method", "tools/call"), ("tool", "other"), ("code", &code)]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "mcp_rpc_errors_total",
            &[
                ("method", "tools/call"),
                ("tool", "echo"),
                ("code", &refused_code)
            ]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "mcp_auth_failures_total",
            &[("reason", "missing_credentials")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "mcp_auth_failures_total",
            &[("reason", "invalid_token")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "mcp_http_requests_total",
            &[("method", "POST"), ("status", "401")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &samples,
            "mcp_http_requests_total",
            &[("method", "GET"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(value(&samples, "mcp_rate_limited_requests_total", &[]), 0.0);
    assert_eq!(
        value(
            &samples,
            "mcp_sessions_active",
            &[("transport", "streamable_http")]
        ),
        1.0
    );
    assert_eq!(value(&samples, "mcp_sse_streams_open", &[]), 1.0, "{text}");
    // The answers above went out as SSE events, kept for resumption.
    assert!(
        value(&samples, "mcp_event_store_bytes", &[]) > 0.0,
        "{text}"
    );

    // The stream closes: no longer counted.
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = get(&format!("{metrics}/metrics")).await.body;
        if text.contains("\nmcp_sse_streams_open 0\n") {
            break;
        }
        assert!(Instant::now() < deadline, "stream still counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_children_are_counted() {
    let Some(command) = fixture_command() else {
        return;
    };
    let proxy = Proxy::start(&["--metrics-port", "0"], &command);
    let metrics = metrics_base(&proxy);
    let session = initialize(&proxy).await;
    // Any tool but `say` makes the fixture exit without answering: a crash.
    let params = json!({ "name": "crash", "arguments": {} });
    let _ = post(
        &proxy.url(),
        Some(&session),
        &request_body(2, "tools/call", params),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(&format!("{metrics}/metrics")).await.body;
        if text.contains("\nmcp_stdio_children_crashed_total 1\n") {
            assert!(
                text.contains("\nmcp_stdio_children_spawned_total 1\n"),
                "{text}"
            );
            assert!(text.contains("\nmcp_stdio_children_alive 0\n"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no crash counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_during_graceful_shutdown() {
    let mut proxy = Proxy::builtin(&["--metrics-port", "0", "--graceful-shutdown-timeout", "30"]);
    let metrics = metrics_base(&proxy);
    for base in [&proxy.base, &metrics] {
        let ready = get(&format!("{base}/readyz")).await;
        assert_eq!(
            (ready.status, ready.body.as_str()),
            (StatusCode::OK, "ready")
        );
        let live = get(&format!("{base}/healthz")).await;
        assert_eq!((live.status, live.body.as_str()), (StatusCode::OK, "ok"));
    }
    // Open like /ping: no Origin check on the MCP port either.
    let foreign = must_send(
        Method::GET,
        &format!("{}/readyz", proxy.base),
        &[("origin", "https://evil.example")],
        "",
    )
    .await;
    assert_eq!(foreign.status, StatusCode::OK);

    let session = initialize(&proxy).await;
    let url = proxy.url();
    let long = tokio::spawn(async move {
        let params = json!({ "name": "slow_compute", "arguments": { "seconds": 3 } });
        post(&url, Some(&session), &request_body(2, "tools/call", params)).await
    });
    // The request is in flight once the server has it (the RPC counter counts on completion,
    // the HTTP one on the response head: wait for neither, just for the call to be sent).
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.sigterm();
    let deadline = Instant::now() + Duration::from_secs(10);
    let not_ready = loop {
        let ready = get(&format!("{metrics}/readyz")).await;
        if ready.status == StatusCode::SERVICE_UNAVAILABLE {
            break ready;
        }
        assert!(Instant::now() < deadline, "still ready: {ready}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(not_ready.body, "shutting down");
    assert!(
        !long.is_finished(),
        "the long request ended before readiness turned"
    );
    // Still alive while it drains.
    let live = get(&format!("{metrics}/healthz")).await;
    assert_eq!(live.status, StatusCode::OK);
    let answered = long.await.expect("the long request");
    let answer = answered.answer(2).unwrap_or_else(|| panic!("{answered}"));
    assert!(answer["result"].is_object(), "{answer}");
    let status = proxy.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{:?}", proxy.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (installed by .ci/run)"]
async fn readiness_follows_redis() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::builtin(&[
        "--metrics-port",
        "0",
        "--redis",
        &redis.url(),
        "--cluster-secret",
        "metrics-test-secret",
    ]);
    let metrics = metrics_base(&proxy);
    for base in [&proxy.base, &metrics] {
        let ready = get(&format!("{base}/readyz")).await;
        assert_eq!(ready.status, StatusCode::OK, "{ready}");
    }
    redis.kill();
    for base in [&proxy.base, &metrics] {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = get(&format!("{base}/readyz")).await;
            if ready.status == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(ready.body, "redis unreachable");
                break;
            }
            assert!(Instant::now() < deadline, "still ready: {ready}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Liveness does not depend on Redis.
        let live = get(&format!("{base}/healthz")).await;
        assert_eq!(live.status, StatusCode::OK);
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = get(&format!("{metrics}/readyz")).await;
        if ready.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn metrics_flags() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mcp-proxy"))
            .args(args)
            .env_remove("MCP_PROXY_METRICS_PORT")
            .env_remove("MCP_PROXY_METRICS_HOST")
            .output()
            .expect("run mcp-proxy")
    };
    let out = run(&["--metrics-host", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--metrics-host needs --metrics-port"));
    let out = run(&["--port", "9123", "--metrics-port", "9123"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("listener of their own"));
}
