//! Streaming behaviour over real loopback sockets: resumption with `Last-Event-ID` after a
//! dropped connection (POST and standalone GET streams), SSE polling (SEP-1699), server→client
//! requests, cancellation, backpressure and the stall timeout (a reading client gets every
//! event, a stalled one is disconnected and resumes, memory stays bounded), event-store fairness
//! between sessions, the legacy HTTP+SSE transport and priming events. References:
//! `mcp-http-spec.md` §1 T8–T14 and T20; issue 9, findings 1 and 2.
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
// 7. A client that stops reading: held back, disconnected after the stall timeout, memory
//    bounded, and everything still resumable (issue 9, finding 1)
// ---------------------------------------------------------------------------------------------

/// Messages the flood sends, and their filler size: about 100 MB in total.
const FLOOD_COUNT: u64 = 100_000;
const FLOOD_SIZE: u64 = 1_000;

/// The stall timeout of the stall tests: long enough for a test to act between the server's
/// moves on a loaded machine, short enough to keep the tests quick.
const STALL: Duration = Duration::from_secs(3);

/// The memory test takes this exclusively, the tests that move tens of megabytes take it
/// shared: RSS is the whole process's, and their buffers must not count against its bound.
static MEMORY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The RSS growth allowed while flooding a client that stopped reading. The server holds at
/// most: the stream's events in the store (what the socket buffers took, a few MiB, plus 64
/// frames stored while the client is away; bounded anyway by the session's 16 MiB quota,
/// `DEFAULT_MAX_SESSION_BYTES`), 64 frames queued for the connection (~70 KB), 32 messages queued
/// from the handler, and hyper's write buffer. Socket buffers are kernel memory, not RSS. 48 MiB
/// leaves room for allocator slack and the other tests of this binary running alongside, yet is
/// half of what buffering the flood (~100 MB) would take.
const RSS_BOUND: u64 = 48 * 1024 * 1024;

/// Samples `record.flooded` every 20 ms until it has not moved for 300 ms (the handler is held
/// back), tracking the peak RSS meanwhile; returns the count.
async fn held_back(record: &Record, peak: &mut u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = record.flooded.load(Ordering::SeqCst);
    let mut still_since = Instant::now();
    loop {
        *peak = (*peak).max(rss_bytes());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = record.flooded.load(Ordering::SeqCst);
        if now != last {
            last = now;
            still_since = Instant::now();
        } else if still_since.elapsed() >= Duration::from_millis(300) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the handler was not held back: {now} of {FLOOD_COUNT} sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_held_then_disconnected_and_resumes_everything_in_bounded_memory() {
    use mcp_tower_http::sse::SseLayer;
    let _memory = MEMORY.write().await;
    let record = Arc::new(Record::default());
    let server = serve(
        McpStack::new(probe(record.clone()))
            .sse(SseLayer::new().stall_timeout(STALL))
            .endpoint_path("/mcp")
            .into_service(),
    )
    .await;
    let session = initialize(server.addr, LATEST).await;
    let before = rss_bytes();

    let call = tool_call(
        11,
        "flood",
        json!({ "count": FLOOD_COUNT, "size": FLOOD_SIZE }),
    );
    let mut stalled = post(server.addr, &session, LATEST, &call).await;
    assert_sse_headers(&stalled, "POST flood");
    let priming = stalled.expect_event().await;
    let stream = assert_priming(&priming);
    // The client stops reading here. The handler runs until the socket buffers and the queues
    // are full, then waits for the reader.
    let mut peak = before;
    let stuck = held_back(&record, &mut peak).await;
    assert!(
        stuck < FLOOD_COUNT / 2,
        "the handler was not held back by a client that stopped reading: {stuck} sent"
    );
    // After the stall timeout the connection is closed: the stream stores what comes while the
    // client is away, a queue's worth (64), then holds the handler back again.
    eventually(
        "the stalled connection is closed and the stream goes on storing",
        STALL * 4,
        || record.flooded.load(Ordering::SeqCst) > stuck,
    )
    .await;
    let away = held_back(&record, &mut peak).await;
    assert!(
        away - stuck <= 64 + 32 + 2,
        "a client away may cost a queue's worth of events, not {}",
        away - stuck
    );
    let growth = peak.saturating_sub(before);
    eprintln!(
        "held back after {stuck} of {FLOOD_COUNT} messages, {away} once disconnected; RSS {} MiB -> peak {} MiB (+{} KiB)",
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

    // The client comes back (within the stall timeout) and gets every message from the start.
    let priming_id = priming.id.clone().expect("priming id");
    let mut resumed = get(server.addr, &session, LATEST, Some(&priming_id)).await;
    assert_sse_headers(&resumed, "GET with Last-Event-ID after a stall");
    let mut next = 1;
    let mut last = None;
    while let Some(event) = resumed.next_event().await {
        assert_eq!(event.stream_seq(), (stream, next), "gap or duplicate");
        next += 1;
        last = Some(event);
    }
    assert_eq!(resumed.ended, Some(true), "the resumed stream ends cleanly");
    assert_eq!(next, FLOOD_COUNT + 2, "every notification and the result");
    let result = last.expect("events");
    assert_eq!(message(&result), text_result(json!(11), "flooded"));
    assert_eq!(record.flooded.load(Ordering::SeqCst), FLOOD_COUNT);

    // The stalled connection got what the socket buffers held, then its end: not the result.
    let (read, tail) = stalled.drain_counting().await;
    assert!(stalled.ended.is_some(), "the stalled body ends");
    let produced = (FLOOD_COUNT * FLOOD_SIZE) as usize;
    assert!(
        read < produced / 3,
        "read {read} bytes of {produced}: the stalled connection was not cut off"
    );
    assert!(
        !String::from_utf8_lossy(&tail).contains("flooded"),
        "the result went to the stalled connection"
    );
}

/// A reader slower than the handler but never stalled for the stall timeout keeps its
/// connection and gets everything on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_but_steady_reader_keeps_its_connection_and_gets_everything() {
    use mcp_tower_http::sse::SseLayer;
    let _memory = MEMORY.read().await;
    let record = Arc::new(Record::default());
    let server = serve(
        McpStack::new(probe(record.clone()))
            .sse(SseLayer::new().stall_timeout(STALL))
            .endpoint_path("/mcp")
            .into_service(),
    )
    .await;
    let session = initialize(server.addr, LATEST).await;
    // 2000 x 8 KiB: more than the socket buffers and queues take, produced faster than this
    // reader reads, so the stream waits for it.
    let call = tool_call(14, "flood", json!({ "count": 2000, "size": 8 * 1024 }));
    let mut stream = post(server.addr, &session, LATEST, &call).await;
    let id = assert_priming(&stream.expect_event().await);
    let mut n = 0;
    while let Some(event) = stream.next_event().await {
        n += 1;
        assert_eq!(event.stream_seq(), (id, n), "gap or duplicate");
        if n <= 2000 {
            // 2 ms per message: far under the stall timeout each time, over it in all.
            tokio::time::sleep(Duration::from_millis(2)).await;
        } else {
            assert_eq!(message(&event), text_result(json!(14), "flooded"));
        }
    }
    assert_eq!(stream.ended, Some(true));
    assert_eq!(
        n, 2001,
        "every message and the result on the one connection"
    );
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
    // Room for about four of the stream's events (each counts its data plus 128 bytes).
    let store = InMemoryEventStore::new().max_session_bytes(1000);
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

    // Seq 1 is no longer stored (the session's byte quota): the resume is refused...
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

// ---------------------------------------------------------------------------------------------
// 10. Bursts reach a client reading at full speed, in full (issue 9, finding 1)
// ---------------------------------------------------------------------------------------------

const V0326: &str = "2025-03-26";

/// A client that keeps reading, but a little slower than the server writes (as any client is
/// slower than a release build of the server): a 1 ms pause every 10 events. With more data
/// than the socket buffers hold, the stream must wait for it rather than give up on it.
async fn keep_pace(n: usize) {
    if n.is_multiple_of(10) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The text the batch's echo `n` sends: 200 bytes and more, so the answers (~3.5 MB) outgrow
/// the socket buffers.
fn echo_text(n: usize) -> String {
    format!("n{n}:{}", "x".repeat(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_10000_requests_is_answered_in_full() {
    const N: usize = 10_000;
    let _memory = MEMORY.read().await;
    let server = everything(|s| s).await;
    let session = initialize(server.addr, V0326).await;
    let batch: Vec<Value> = (1..=N)
        .map(|id| {
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "method": "tools/call",
                "params": { "name": "echo", "arguments": { "text": echo_text(id) } },
            })
        })
        .collect();
    let body = Value::Array(batch).to_string();
    let mut stream = post(server.addr, &session, V0326, &body).await;
    assert_sse_headers(&stream, "POST a batch of 10,000");
    let mut answered = vec![false; N + 1];
    let mut count = 0;
    let mut stream_id = None;
    while let Some(event) = stream.next_event().await {
        let (id, seq) = event.stream_seq();
        assert_eq!(*stream_id.get_or_insert(id), id);
        count += 1;
        assert_eq!(seq, count as u64, "gap or duplicate");
        let answer = message(&event);
        let n = answer["id"].as_u64().expect("numeric id") as usize;
        assert!(!answered[n], "answered twice: {n}");
        answered[n] = true;
        assert_eq!(answer, text_result(json!(n), &echo_text(n)));
        keep_pace(count).await;
    }
    assert_eq!(stream.ended, Some(true), "the stream ends cleanly");
    assert_eq!(count, N, "every request of the batch is answered");
}

/// The command line of the stdio fixture, or `None` (skip; a failure under CI) without
/// `python3`.
fn stdio_fixture() -> Option<mcp_tower_http::stdio::StdioCommand> {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is needed for the stdio fixture"
        );
        eprintln!("skipped: python3 is not installed");
        return None;
    }
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stdio_server.py"
    );
    Some(mcp_tower_http::stdio::StdioCommand::new("python3").args([fixture]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_child_burst_of_20000_progress_notifications_then_its_result_arrives_in_full() {
    const N: u64 = 20_000;
    let _memory = MEMORY.read().await;
    let Some(command) = stdio_fixture() else {
        return;
    };
    let server = serve(McpStack::new(command).endpoint_path("/mcp").into_service()).await;
    let session = initialize(server.addr, LATEST).await;
    // ~300 bytes each, 6 MB in all: more than the socket buffers hold.
    let call = tool_call(21, "burst", json!({ "count": N, "size": 200 }));
    let mut stream = post(server.addr, &session, LATEST, &call).await;
    assert_sse_headers(&stream, "POST burst");
    let id = assert_priming(&stream.expect_event().await);
    for n in 1..=N {
        let event = stream.expect_event().await;
        assert_eq!(event.stream_seq(), (id, n), "gap or duplicate");
        let progress = message(&event);
        assert_eq!(progress["method"], "notifications/progress", "{progress}");
        assert_eq!(progress["params"]["progressToken"], "p21", "{progress}");
        assert_eq!(progress["params"]["progress"], n, "{progress}");
        keep_pace(n as usize).await;
    }
    let result = stream.expect_event().await;
    assert_eq!(result.stream_seq(), (id, N + 1));
    assert_eq!(
        message(&result),
        text_result(json!(21), &format!("burst {N}"))
    );
    assert!(stream.next_event().await.is_none());
    assert_eq!(stream.ended, Some(true));
}

// ---------------------------------------------------------------------------------------------
// 11. One session's traffic does not evict another's resumable events (issue 9, finding 2)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sessions_traffic_does_not_evict_a_resumable_stream() {
    /// 20 answers of 4 MiB: 80 MiB, more than the store's 64 MiB in all, from one session.
    const ECHOES: usize = 20;
    let _memory = MEMORY.read().await;
    let record = Arc::new(Record::default());
    let server = probe_server(&record).await;
    let a = initialize(server.addr, LATEST).await;
    let b = initialize(server.addr, LATEST).await;

    // A reads a little of a stream, then loses its connection; the rest is stored for it.
    let call = tool_call(31, "count", json!({ "count": 10, "delay_ms": 5 }));
    let mut first = post(server.addr, &a, LATEST, &call).await;
    let stream = assert_priming(&first.expect_event().await);
    let seen = first.expect_event().await;
    assert_eq!(seen.stream_seq(), (stream, 1));
    first.disconnect();
    eventually(
        "A's handler completes without its connection",
        Duration::from_secs(5),
        || record.completed.load(Ordering::SeqCst),
    )
    .await;

    // B echoes 4 MiB, again and again, reading each answer.
    let text = "x".repeat(4 * 1024 * 1024);
    for n in 0..ECHOES {
        let id = 100 + n as i64;
        let echo = tool_call(id, "echo", json!({ "text": text }));
        let mut answer = post(server.addr, &b, LATEST, &echo).await;
        assert_eq!(answer.status, StatusCode::OK);
        let (read, _) = answer.drain_counting().await;
        assert!(read > text.len(), "echo {n}: {read} bytes");
    }

    // A resumes: every event after the one it saw, then the result.
    let last = seen.id.clone().expect("an id");
    let mut resumed = get(server.addr, &a, LATEST, Some(&last)).await;
    assert_eq!(
        resumed.status,
        StatusCode::OK,
        "A's resume after B's traffic"
    );
    let rest = resumed.rest().await;
    let ids: Vec<(u64, u64)> = rest.iter().map(Event::stream_seq).collect();
    let expected: Vec<(u64, u64)> = (2..=11).map(|seq| (stream, seq)).collect();
    assert_eq!(ids, expected);
    assert_eq!(message(&rest[9]), text_result(json!(31), "counted 10"));
}
