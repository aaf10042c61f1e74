//! Streaming behaviour over real loopback sockets: resumption with `Last-Event-ID` after a
//! dropped connection (POST and standalone GET streams), SSE polling (SEP-1699), server→client
//! requests, cancellation, the slow-reader bound, the legacy HTTP+SSE transport and priming
//! events. References: `mcp-http-spec.md` §1 T8–T14 and T20.
//!
//! Each test opens its own TCP connection per HTTP request, so it can drop exactly the connection
//! it means to, and every wait is bounded (see `streaming_support`).

mod streaming_support;

use http::{Method, StatusCode};
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::{McpStack, SessionContext};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use streaming_support::*;

const LATEST: &str = "2025-11-25";
const V0618: &str = "2025-06-18";

const SSE_CONTENT_TYPE: &str = "text/event-stream; charset=utf-8";

/// Serves the built-in everything server at `/mcp`, customised by `customize`.
async fn everything(
    customize: impl FnOnce(
        McpStack<fn(&SessionContext<'_>) -> EverythingServer>,
    ) -> McpStack<fn(&SessionContext<'_>) -> EverythingServer>,
) -> Server {
    fn make(_: &SessionContext<'_>) -> EverythingServer {
        EverythingServer::new()
    }
    let stack = McpStack::new(make as fn(&SessionContext<'_>) -> EverythingServer);
    serve(customize(stack).endpoint_path("/mcp").into_service()).await
}

/// Serves the [`Probe`] test server at `/mcp`, sharing `record` with the test.
async fn probe_server(record: &Arc<Record>) -> Server {
    serve(
        McpStack::new(probe(record.clone()))
            .endpoint_path("/mcp")
            .into_service(),
    )
    .await
}

fn assert_sse_headers(exchange: &Exchange, what: &str) {
    assert_eq!(exchange.status, StatusCode::OK, "{what}");
    assert_eq!(exchange.header("content-type"), SSE_CONTENT_TYPE, "{what}");
    assert_eq!(
        exchange.header("cache-control"),
        "no-cache, no-transform",
        "{what}"
    );
    assert_eq!(exchange.header("x-accel-buffering"), "no", "{what}");
}

/// Asserts a priming event: `id: <stream>/0` and empty data, nothing else. Returns the stream.
fn assert_priming(event: &Event) -> u64 {
    let (stream, seq) = event.stream_seq();
    assert_eq!(seq, 0, "priming event not at seq 0: {event:?}");
    assert_eq!(event.raw, format!("id: {stream}/0\ndata: "), "{event:?}");
    stream
}

/// Asserts an `event: message` carrying a JSON-RPC message; returns it.
fn message(event: &Event) -> Value {
    assert_eq!(event.event.as_deref(), Some("message"), "{event:?}");
    event.json()
}

fn text_result(id: Value, text: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": { "content": [{ "type": "text", "text": text }] } })
}

/// Asserts the response is a JSON-RPC error: status, code, message.
async fn assert_rejected(mut exchange: Exchange, status: StatusCode, code: i64, text: &str) {
    assert_eq!(exchange.status, status, "expected {status}");
    let body = exchange.text().await;
    let (got_code, message) = rpc_error(&body);
    assert_eq!(got_code, code, "{body}");
    assert_eq!(message, text, "{body}");
}

// ---------------------------------------------------------------------------------------------
// 1. Resume a POST stream after the connection dropped mid-call (T8, T9, T13, T14)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn resume_after_dropped_connection_mid_call_has_no_gap_and_no_duplicate() {
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let session = initialize(server.addr, LATEST).await;

    let call = tool_call(7, "count", json!({ "count": 20, "delay_ms": 20 }));
    let mut first = post(server.addr, &session, LATEST, &call).await;
    assert_sse_headers(&first, "POST tools/call");
    let mut seen = vec![first.expect_event().await];
    let stream = assert_priming(&seen[0]);
    while seen.len() < 6 {
        seen.push(first.expect_event().await);
    }
    let last_id = seen.last().and_then(|e| e.id.clone()).expect("an id");
    first.disconnect();
    // Some events are produced while no connection is attached (replayed from the store), the
    // rest after the client is back (delivered live).
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut resumed = get(server.addr, &session, LATEST, Some(&last_id)).await;
    assert_sse_headers(&resumed, "GET with Last-Event-ID");
    let rest = resumed.rest().await;
    assert_eq!(resumed.ended, Some(true), "the resumed stream ends cleanly");
    assert!(
        rest.iter().all(|e| e.data.as_deref() != Some("")),
        "a resumed stream is not primed again: {rest:?}"
    );

    let all: Vec<Event> = seen.into_iter().chain(rest).collect();
    let ids: Vec<(u64, u64)> = all.iter().map(Event::stream_seq).collect();
    let expected: Vec<(u64, u64)> = (0..=21).map(|seq| (stream, seq)).collect();
    assert_eq!(
        ids, expected,
        "ids must be <stream>/<seq>, gap-free, once each"
    );
    for (n, event) in all[1..=20].iter().enumerate() {
        let progress = message(event);
        assert_eq!(progress["method"], "notifications/progress", "{progress}");
        assert_eq!(progress["params"]["progressToken"], "p7", "{progress}");
        assert_eq!(progress["params"]["progress"], (n + 1) as f64, "{progress}");
        assert_eq!(progress["params"]["total"], 20.0, "{progress}");
    }
    assert_eq!(message(&all[21]), text_result(json!(7), "counted 20"));
}

// ---------------------------------------------------------------------------------------------
// 2. SSE polling: the server closes the connection, the client resumes (T8, SEP-1699)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn test_reconnection_closes_with_retry_and_the_result_arrives_on_resume() {
    let server = everything(|s| s).await;
    let session = initialize(server.addr, LATEST).await;

    let call = tool_call(3, "test_reconnection", json!({}));
    let mut polled = post(server.addr, &session, LATEST, &call).await;
    assert_sse_headers(&polled, "POST test_reconnection");
    let mut blocks = Vec::new();
    while let Some(block) = polled.next_block().await {
        blocks.push(block);
    }
    assert_eq!(polled.ended, Some(true), "the connection is closed cleanly");
    let blocks: Vec<Event> = blocks.into_iter().filter(|b| !b.is_comment()).collect();
    assert_eq!(blocks.len(), 2, "priming + retry, no result: {blocks:?}");
    let stream = assert_priming(&blocks[0]);
    assert_eq!(blocks[1].raw, "retry: 500", "{blocks:?}");
    let retry = Duration::from_millis(blocks[1].retry.expect("retry"));

    // The client waits as told, then resumes from the priming event's id.
    tokio::time::sleep(retry).await;
    let priming_id = blocks[0].id.clone().expect("priming id");
    let mut resumed = get(server.addr, &session, LATEST, Some(&priming_id)).await;
    assert_sse_headers(&resumed, "GET with Last-Event-ID");
    let events = resumed.rest().await;
    assert_eq!(resumed.ended, Some(true));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].stream_seq(), (stream, 1));
    assert_eq!(
        message(&events[0]),
        text_result(
            json!(3),
            "Reconnection test completed successfully. If you received this, the client properly \
             reconnected after stream closure."
        )
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Resume the standalone GET stream (T11, T13, T14)
// ---------------------------------------------------------------------------------------------

/// Makes the probe send notifications `from..from+count` on the standalone stream.
async fn send_standalone(server: &Server, session: &str, id: i64, from: u64, count: u64) {
    let call = tool_call(id, "standalone", json!({ "from": from, "count": count }));
    let mut answer = post(server.addr, session, LATEST, &call).await;
    let events = answer.rest().await;
    // Each message goes on exactly one stream (T12): the notifications are not on this one.
    assert_eq!(events.len(), 2, "priming and result only: {events:?}");
    assert_priming(&events[0]);
    assert_eq!(message(&events[1]), text_result(json!(id), "sent"));
}

/// Asserts the next event of a standalone stream is notification `n` with id `0/n`.
async fn expect_standalone(stream: &mut Exchange, n: u64) {
    let event = stream.expect_event().await;
    assert_eq!(event.stream_seq(), (0, n), "{event:?}");
    let notification = message(&event);
    assert_eq!(notification["method"], "notifications/message", "{event:?}");
    assert_eq!(notification["params"]["data"], n, "{event:?}");
}

#[tokio::test]
async fn standalone_stream_resumes_without_loss_or_duplicates() {
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let session = initialize(server.addr, LATEST).await;

    let mut standalone = get(server.addr, &session, LATEST, None).await;
    assert_sse_headers(&standalone, "standalone GET");
    let priming = standalone.expect_event().await;
    assert_eq!(
        assert_priming(&priming),
        0,
        "the standalone stream is stream 0"
    );
    send_standalone(&server, &session, 2, 1, 3).await;
    for n in 1..=3 {
        expect_standalone(&mut standalone, n).await;
    }
    standalone.disconnect();

    // Sent while no GET stream is attached.
    send_standalone(&server, &session, 3, 4, 3).await;
    let mut resumed = get(server.addr, &session, LATEST, Some("0/3")).await;
    assert_sse_headers(&resumed, "standalone GET with Last-Event-ID");
    for n in 4..=6 {
        expect_standalone(&mut resumed, n).await;
    }
    // While it is attached a second standalone GET conflicts...
    let second = get(server.addr, &session, LATEST, None).await;
    assert_rejected(
        second,
        StatusCode::CONFLICT,
        -32000,
        "Conflict: Only one SSE stream is allowed per session",
    )
    .await;
    // ... and new messages follow live, right after the replayed ones: nothing twice.
    send_standalone(&server, &session, 4, 7, 1).await;
    expect_standalone(&mut resumed, 7).await;
    resumed.disconnect();

    // A fresh GET without Last-Event-ID after a drop gets what was sent while detached. Give
    // the server a moment to see the connection close first: a message handed to a connection
    // that is closing counts as delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_standalone(&server, &session, 5, 8, 2).await;
    let mut fresh = get(server.addr, &session, LATEST, None).await;
    assert_sse_headers(&fresh, "fresh standalone GET");
    let priming = fresh.expect_event().await;
    assert_eq!(
        priming.raw, "id: 0/7\ndata: ",
        "a fresh connection is primed with its resume point"
    );
    for n in 8..=9 {
        expect_standalone(&mut fresh, n).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Last-Event-ID errors (T14)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_last_event_ids_are_400_and_never_replay_another_session() {
    const UNKNOWN: &str = "Bad Request: unknown Last-Event-ID";
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let a = initialize(server.addr, LATEST).await;
    let call = tool_call(2, "count", json!({ "count": 2, "delay_ms": 1 }));
    let events = post(server.addr, &a, LATEST, &call).await.rest().await;
    let ids: Vec<&str> = events.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(
        ids,
        ["2/0", "2/1", "2/2", "2/3"],
        "A's call is its stream 2"
    );
    let b = initialize(server.addr, LATEST).await;

    for garbage in ["garbage", "1/x", "1", "/1", "1/", "1/2/3", "-1/0"] {
        let response = get(server.addr, &b, LATEST, Some(garbage)).await;
        assert_rejected(response, StatusCode::BAD_REQUEST, -32000, UNKNOWN).await;
    }
    // A stream B never had, and a position past the end of one it had.
    for unknown in ["99/0", "1/99"] {
        let response = get(server.addr, &b, LATEST, Some(unknown)).await;
        assert_rejected(response, StatusCode::BAD_REQUEST, -32000, UNKNOWN).await;
    }
    // A's id on B's session: B has no stream 2.
    let response = get(server.addr, &b, LATEST, Some("2/1")).await;
    assert_rejected(response, StatusCode::BAD_REQUEST, -32000, UNKNOWN).await;

    // The same id on A replays A's events after it.
    let mut replay = get(server.addr, &a, LATEST, Some("2/1")).await;
    let replayed = replay.rest().await;
    let ids: Vec<&str> = replayed.iter().filter_map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, ["2/2", "2/3"]);
    assert_eq!(message(&replayed[1]), text_result(json!(2), "counted 2"));

    // An id both sessions have replays each session's own event (the initialize results name
    // the session they belong to).
    for session in [&a, &b] {
        let mut replay = get(server.addr, session, LATEST, Some("1/0")).await;
        let replayed = replay.rest().await;
        assert_eq!(replayed.len(), 1, "{replayed:?}");
        assert_eq!(replayed[0].id.as_deref(), Some("1/1"));
        let init = message(&replayed[0]);
        assert_eq!(init["result"]["serverInfo"]["name"], session.as_str());
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Server→client requests: sampling round trip and timeout
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sampling_round_trip_over_the_post_stream() {
    let server = everything(|s| s).await;
    let session = initialize(server.addr, LATEST).await;
    let prompt = "What is 2+2?";
    let call = tool_call(5, "test_sampling", json!({ "prompt": prompt }));
    let mut stream = post(server.addr, &session, LATEST, &call).await;
    assert_sse_headers(&stream, "POST test_sampling");
    let n = assert_priming(&stream.expect_event().await);

    let event = stream.expect_event().await;
    assert_eq!(event.stream_seq(), (n, 1));
    let request = message(&event);
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    assert_eq!(
        request["params"]["messages"],
        json!([{ "role": "user", "content": { "type": "text", "text": prompt } }])
    );
    assert_eq!(request["params"]["maxTokens"], 100);
    let request_id = request["id"].clone();
    assert!(request_id.is_string(), "{request}");

    let answer = json!({
        "jsonrpc": "2.0",
        "id": request_id,
        "result": {
            "role": "assistant",
            "content": { "type": "text", "text": "Four, said the model." },
            "model": "test-model",
            "stopReason": "endTurn",
        },
    });
    let mut ack = post(server.addr, &session, LATEST, &answer.to_string()).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    assert!(
        ack.headers.get("content-type").is_none(),
        "{:?}",
        ack.headers
    );
    assert_eq!(ack.text().await, "");

    let result = stream.expect_event().await;
    assert_eq!(result.stream_seq(), (n, 2));
    assert_eq!(
        message(&result),
        text_result(json!(5), "LLM response: Four, said the model.")
    );
    assert!(
        stream.next_event().await.is_none(),
        "the stream ends after the result"
    );
    assert_eq!(stream.ended, Some(true));
}

#[tokio::test]
async fn unanswered_sampling_times_out_into_the_tool_result() {
    let server = everything(|s| s.client_request_timeout(Duration::from_millis(300))).await;
    let session = initialize(server.addr, LATEST).await;
    let call = tool_call(6, "test_sampling", json!({ "prompt": "anyone?" }));
    let posted = Instant::now();
    let mut stream = post(server.addr, &session, LATEST, &call).await;
    assert_priming(&stream.expect_event().await);
    let request = message(&stream.expect_event().await);
    assert_eq!(request["method"], "sampling/createMessage");

    // No answer: the built-in server turns the -32001 timeout into a text result.
    let result = stream.expect_event().await;
    let waited = posted.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "timed out after {waited:?}, configured 300 ms"
    );
    assert_eq!(
        message(&result),
        text_result(
            json!(6),
            "Sampling not supported or error: the client did not answer sampling/createMessage in time"
        )
    );
    assert!(stream.next_event().await.is_none());

    // A late answer is accepted and dropped.
    let late = json!({ "jsonrpc": "2.0", "id": request["id"], "result": {} });
    let mut ack = post(server.addr, &session, LATEST, &late.to_string()).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    assert_eq!(ack.text().await, "");
}

// ---------------------------------------------------------------------------------------------
// 6. Cancellation, and a dropped connection that is not one (T9)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn cancelled_notification_ends_the_stream_without_a_response() {
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let session = initialize(server.addr, LATEST).await;
    let call = tool_call(9, "slow", json!({ "ms": 3000 }));
    let mut stream = post(server.addr, &session, LATEST, &call).await;
    assert_priming(&stream.expect_event().await);
    eventually("the handler starts", Duration::from_secs(2), || {
        record.started.load(Ordering::SeqCst)
    })
    .await;

    let started = Instant::now();
    let cancel = json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": { "requestId": 9, "reason": "changed my mind" },
    });
    let mut ack = post(server.addr, &session, LATEST, &cancel.to_string()).await;
    assert_eq!(ack.status, StatusCode::ACCEPTED);
    assert_eq!(ack.text().await, "");

    let rest = stream.rest().await;
    assert!(rest.is_empty(), "no response after cancellation: {rest:?}");
    assert_eq!(stream.ended, Some(true));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the stream ended only after {:?}",
        started.elapsed()
    );
    assert!(
        !record.completed.load(Ordering::SeqCst),
        "the handler was stopped"
    );
}

#[tokio::test]
async fn dropped_connection_does_not_cancel_the_handler() {
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let session = initialize(server.addr, LATEST).await;
    let call = tool_call(10, "slow", json!({ "ms": 300 }));
    let mut stream = post(server.addr, &session, LATEST, &call).await;
    let priming = stream.expect_event().await;
    assert_priming(&priming);
    stream.disconnect();

    eventually(
        "the handler completes without its connection",
        Duration::from_secs(3),
        || record.completed.load(Ordering::SeqCst),
    )
    .await;
    let priming_id = priming.id.expect("priming id");
    let mut resumed = get(server.addr, &session, LATEST, Some(&priming_id)).await;
    let events = resumed.rest().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(message(&events[0]), text_result(json!(10), "slept"));
}

// ---------------------------------------------------------------------------------------------
// 7. A client that stops reading cannot make the server buffer without bound
// ---------------------------------------------------------------------------------------------

/// Messages the flood sends, and their filler size: about 100 MB in total.
const FLOOD_COUNT: u64 = 100_000;
const FLOOD_SIZE: u64 = 1_000;

/// The RSS growth allowed while flooding a client that stopped reading. With the defaults the
/// server holds at most: the session's last 1000 events in the store (`DEFAULT_MAX_EVENTS_PER_SESSION`,
/// ~1.1 KB each: ~1.1 MB; the 64 MiB `DEFAULT_MAX_TOTAL_BYTES` is a store-wide ceiling this one
/// session never reaches), 64 frames queued for the connection (~70 KB), 32 messages queued
/// from the handler, and one frame in hyper's write buffer. Socket buffers are kernel memory, not
/// RSS. 48 MiB leaves ample room for allocator slack and the other tests of this binary running
/// alongside, yet is half of what buffering the flood (~100 MB) would take.
const RSS_BOUND: u64 = 48 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_disconnected_and_memory_stays_bounded() {
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let session = initialize(server.addr, LATEST).await;
    let before = rss_bytes();
    let started = Instant::now();

    let call = tool_call(
        11,
        "flood",
        json!({ "count": FLOOD_COUNT, "size": FLOOD_SIZE }),
    );
    let mut stream = post(server.addr, &session, LATEST, &call).await;
    assert_sse_headers(&stream, "POST flood");
    let priming = stream.expect_event().await;
    assert_priming(&priming);
    // The client stops reading here.

    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(25);
    while !record.completed.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the flood did not finish: {} of {FLOOD_COUNT} sent",
            record.flooded.load(Ordering::SeqCst)
        );
        peak = peak.max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak = peak.max(rss_bytes());
    let flood_time = started.elapsed();
    assert_eq!(record.flooded.load(Ordering::SeqCst), FLOOD_COUNT);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "flood of {FLOOD_COUNT} x {FLOOD_SIZE} B took {flood_time:?}; RSS {} MiB -> peak {} MiB (+{} KiB)",
        before >> 20,
        peak >> 20,
        growth >> 10
    );
    assert!(
        growth < RSS_BOUND,
        "RSS grew by {} MiB while a client was not reading (bound {} MiB)",
        growth >> 20,
        RSS_BOUND >> 20
    );

    // The server gave up on the connection: what is left is what the socket buffers and the
    // connection queue held, then the end of the body; the result never reached this connection.
    let (read, tail) = stream.drain_counting().await;
    assert!(stream.ended.is_some(), "the body ends");
    let produced = (FLOOD_COUNT * FLOOD_SIZE) as usize;
    assert!(
        read < produced / 3,
        "read {read} bytes of {produced}: the slow connection was not cut off"
    );
    let tail = String::from_utf8_lossy(&tail);
    assert!(
        !tail.contains("flooded"),
        "the result went to a dead connection"
    );
    eprintln!(
        "the slow connection delivered {} KiB before ending",
        read >> 10
    );

    // The store kept only the session's last 1000 events: the start is gone.
    let priming_id = priming.id.expect("priming id");
    let response = get(server.addr, &session, LATEST, Some(&priming_id)).await;
    assert_rejected(
        response,
        StatusCode::BAD_REQUEST,
        -32000,
        "Bad Request: unknown Last-Event-ID",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. The legacy HTTP+SSE transport (T20)
// ---------------------------------------------------------------------------------------------

async fn legacy_post(server: &Server, uri: &str, body: &str) -> Exchange {
    exchange(
        server.addr,
        Method::POST,
        uri,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        body.to_owned(),
    )
    .await
}

#[tokio::test]
async fn legacy_sse_transport() {
    let server = everything(|s| {
        s.legacy_sse("/sse", "/messages")
            .keep_alive(Duration::from_millis(100))
    })
    .await;
    let mut sse = exchange(
        server.addr,
        Method::GET,
        "/sse",
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_sse_headers(&sse, "GET /sse");
    let endpoint = sse.expect_event().await;
    assert_eq!(endpoint.event.as_deref(), Some("endpoint"), "{endpoint:?}");
    let uri = endpoint.data.clone().expect("endpoint data");
    let id = uri
        .strip_prefix("/messages?sessionId=")
        .unwrap_or_else(|| panic!("endpoint data {uri:?}"))
        .to_owned();
    assert!(
        !id.is_empty() && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "{id:?}"
    );
    assert_eq!(endpoint.raw, format!("event: endpoint\ndata: {uri}"));

    let init = request_body(
        1,
        "initialize",
        json!({ "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": { "name": "legacy", "version": "0" } }),
    );
    let mut accepted = legacy_post(&server, &uri, &init).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert_eq!(accepted.text().await, "");
    let result = sse.expect_event().await;
    assert_eq!(result.id, None, "legacy events carry no id");
    let result = message(&result);
    assert_eq!(result["id"], 1, "{result}");
    assert_eq!(
        result["result"]["serverInfo"]["name"],
        "mcp-tower-http-everything"
    );

    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let mut accepted = legacy_post(&server, &uri, initialized).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert_eq!(accepted.text().await, "");
    let echo = tool_call(2, "echo", json!({ "text": "over legacy" }));
    let mut accepted = legacy_post(&server, &uri, &echo).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    assert_eq!(accepted.text().await, "");
    assert_eq!(
        message(&sse.expect_event().await),
        text_result(json!(2), "over legacy")
    );

    // Keep-alive comments on the idle stream.
    let keep_alive = tokio::time::timeout(Duration::from_secs(2), sse.next_block())
        .await
        .expect("a keep-alive within 2 s")
        .expect("the stream is open");
    assert_eq!(keep_alive.raw, ": keepalive");

    // Routing errors.
    let missing = legacy_post(&server, "/messages", echo.as_str()).await;
    assert_rejected(
        missing,
        StatusCode::BAD_REQUEST,
        -32000,
        "Bad Request: sessionId query parameter is required",
    )
    .await;
    let unknown = legacy_post(&server, "/messages?sessionId=nope", echo.as_str()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    for path in [
        format!("/messagesXYZ?sessionId={id}"),
        format!("/messages/x?sessionId={id}"),
    ] {
        let mut wrong = legacy_post(&server, &path, echo.as_str()).await;
        assert_eq!(wrong.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(wrong.text().await, "", "{path}");
    }
    let mut wrong = exchange(
        server.addr,
        Method::GET,
        "/sseXYZ",
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    assert_eq!(wrong.text().await, "");

    // The two transports keep separate session tables.
    let streamable = initialize(server.addr, LATEST).await;
    let other = format!("/messages?sessionId={streamable}");
    let cross = legacy_post(&server, &other, echo.as_str()).await;
    assert_eq!(
        cross.status,
        StatusCode::NOT_FOUND,
        "a Streamable HTTP id on /messages"
    );
    let cross = get(server.addr, &id, LATEST, None).await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND, "a legacy id on /mcp");

    // The session lives as long as its stream.
    sse.disconnect();
    let ping = r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let response = legacy_post(&server, &uri, ping).await;
        if response.status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(response.status, StatusCode::ACCEPTED);
        assert!(
            Instant::now() < deadline,
            "the legacy session outlived its stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Priming events only from 2025-11-25 on (T8)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn priming_event_only_for_2025_11_25() {
    let server = everything(|s| s).await;
    let echo = tool_call(2, "echo", json!({ "text": "hi" }));

    // 2025-06-18: ids, but no event with empty data anywhere.
    let (session, init_events) = initialize_with_events(server.addr, V0618).await;
    let mut stream = post(server.addr, &session, V0618, &echo).await;
    assert_sse_headers(&stream, "POST at 2025-06-18");
    let events = stream.rest().await;
    for event in init_events.iter().chain(&events) {
        assert_ne!(
            event.data.as_deref(),
            Some(""),
            "no priming at 2025-06-18: {event:?}"
        );
        assert_eq!(event.event.as_deref(), Some("message"), "{event:?}");
    }
    assert_eq!(init_events.len(), 1, "{init_events:?}");
    assert_eq!(init_events[0].id.as_deref(), Some("1/1"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].id.as_deref(), Some("2/1"));
    assert_eq!(message(&events[0]), text_result(json!(2), "hi"));

    // 2025-11-25: every stream starts with `id: <stream>/0` and empty data.
    let (session, init_events) = initialize_with_events(server.addr, LATEST).await;
    assert_eq!(init_events.len(), 2, "{init_events:?}");
    assert_eq!(init_events[0].raw, "id: 1/0\ndata: ");
    assert_eq!(init_events[1].id.as_deref(), Some("1/1"));
    let mut stream = post(server.addr, &session, LATEST, &echo).await;
    let events = stream.rest().await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].raw, "id: 2/0\ndata: ");
    assert_eq!(events[1].id.as_deref(), Some("2/1"));
    assert_eq!(message(&events[1]), text_result(json!(2), "hi"));
}

// ---------------------------------------------------------------------------------------------
// Defects found while writing these tests
// ---------------------------------------------------------------------------------------------

/// A `Last-Event-ID` past the last event of a live stream names an event that was never sent,
/// so it is unknown (400, as for a finished stream). It must not take over the stream from the
/// client still reading it.
#[tokio::test]
async fn future_last_event_id_on_a_live_stream_is_400_and_does_not_steal_it() {
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let session = initialize(server.addr, LATEST).await;
    let call = tool_call(12, "count", json!({ "count": 10, "delay_ms": 40 }));
    let mut live = post(server.addr, &session, LATEST, &call).await;
    let stream = assert_priming(&live.expect_event().await);
    assert_eq!(live.expect_event().await.stream_seq(), (stream, 1));

    let bogus = format!("{stream}/1000");
    let mut hijack = get(server.addr, &session, LATEST, Some(&bogus)).await;
    let status = hijack.status;
    let hijacked = if status == StatusCode::OK {
        hijack.rest().await
    } else {
        Vec::new()
    };
    let rest = live.rest().await;
    let ids: Vec<(u64, u64)> = rest.iter().map(Event::stream_seq).collect();
    let expected: Vec<(u64, u64)> = (2..=11).map(|seq| (stream, seq)).collect();
    assert_eq!(
        (status, ids),
        (StatusCode::BAD_REQUEST, expected),
        "a GET with never-issued id {bogus} got {status} and {} events; the live connection kept only: {rest:?}",
        hijacked.len()
    );
}

/// A `Last-Event-ID` that is refused (400: its event was evicted) must not disturb the client
/// still reading that stream.
#[tokio::test]
async fn refused_last_event_id_does_not_close_the_live_connection() {
    use mcp_tower_http::sse::{InMemoryEventStore, SseLayer};
    let record = Arc::new(Record::default());
    let store = InMemoryEventStore::new().max_events_per_session(4);
    let server = serve(
        McpStack::new(probe(record.clone()))
            .sse(SseLayer::new().event_store(store))
            .endpoint_path("/mcp")
            .into_service(),
    )
    .await;
    let session = initialize(server.addr, LATEST).await;
    let call = tool_call(13, "count", json!({ "count": 12, "delay_ms": 30 }));
    let mut live = post(server.addr, &session, LATEST, &call).await;
    let stream = assert_priming(&live.expect_event().await);
    let mut ids = Vec::new();
    while ids.len() < 6 {
        ids.push(live.expect_event().await.stream_seq());
    }

    // Seq 1 is no longer stored (4 events per session): the resume is refused...
    let evicted = format!("{stream}/1");
    let refused = get(server.addr, &session, LATEST, Some(&evicted)).await;
    assert_rejected(
        refused,
        StatusCode::BAD_REQUEST,
        -32000,
        "Bad Request: unknown Last-Event-ID",
    )
    .await;
    // ... and the live connection goes on to the result.
    ids.extend(live.rest().await.iter().map(Event::stream_seq));
    let expected: Vec<(u64, u64)> = (1..=13).map(|seq| (stream, seq)).collect();
    assert_eq!(
        ids, expected,
        "the live connection lost events after a refused resume"
    );
}
