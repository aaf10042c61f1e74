//! SSE framing and event-store costs, in process.
//!
//! - `sse/frame/*`: `SseLayer` framing an answer of 1 or 10 messages (the encoding a client
//!   sees), against the same inner service in JSON mode.
//! - `sse/stream_50_notifications`: through the whole stack (in process, no sockets), a
//!   handler streaming 50 progress notifications then its answer: the stream's pump stores each
//!   event and hands it to the connection, the body is collected. The resumable streaming path,
//!   per message. (50: within one 64-frame connection queue, so the code before backpressure,
//!   which dropped what overflowed it, can be measured too.)
//! - `store/append`: one append to an `InMemoryEventStore` whose session is at a byte quota of
//!   1000 events (so every append also evicts: the steady state of a busy session).
//! - `store/replay/*`: resuming after the middle of a 100-event stream, and after its last event.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use mcp_tower_http::jsonrpc::{ErrorObject, Request as RpcRequest};
use mcp_tower_http::jsonrpc::{Id, Message};
use mcp_tower_http::session::SessionId;
use mcp_tower_http::sse::{
    EVENT_OVERHEAD, EventId, EventStore, InMemoryEventStore, Outgoing, SseLayer,
};
use mcp_tower_http::{McpService, McpStack, RequestContext, SessionContext};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn answer(n: usize) -> Outgoing {
    let result = |i: i64| {
        Message::result(
            Id::Number(i),
            json!({"content": [{"type": "text", "text": "hello from the benchmark, echo"}]}),
        )
    };
    match n {
        1 => Outgoing::One(result(1)),
        n => Outgoing::Batch((1..=n as i64).map(result).collect()),
    }
}

fn frame(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("sse/frame");
    for (name, n, json_mode) in [
        ("sse_1_message", 1, false),
        ("sse_10_messages", 10, false),
        ("json_1_message", 1, true),
    ] {
        let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| async move {
            let mut response = Response::new(Full::<Bytes>::default());
            response.extensions_mut().insert(answer(n));
            Ok::<_, Infallible>(response)
        });
        let service = SseLayer::new().json_response(json_mode).layer(inner);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut service = service.clone();
                async move {
                    let request = Request::post("/mcp")
                        .header("accept", "application/json, text/event-stream")
                        .body(Full::<Bytes>::default())
                        .expect("request");
                    let response = service.ready().await.expect("ready").call(request).await;
                    let body = response.expect("response").into_body().collect().await;
                    black_box(body.map(|b| b.to_bytes().len()).unwrap_or(0))
                }
            })
        });
    }
    group.finish();
}

/// Streams 50 progress notifications, then answers.
struct Streamer;

impl McpService for Streamer {
    async fn handle_request(
        &self,
        request: RpcRequest,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        match request.method.as_str() {
            "initialize" => Ok(json!({
                "protocolVersion": "2025-11-25",
                "capabilities": { "tools": {} },
                "serverInfo": { "name": "bench", "version": "0" },
            })),
            _ => {
                for n in 1..=50 {
                    cx.notify_progress(f64::from(n), Some(50.0), None).await;
                }
                Ok(json!({ "content": [{ "type": "text", "text": "streamed" }] }))
            }
        }
    }
}

fn post(body: &str, session: Option<&http::HeaderValue>) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25");
    if let Some(id) = session {
        builder = builder.header("mcp-session-id", id.clone());
    }
    builder
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

fn stream(c: &mut Criterion) {
    let rt = runtime();
    let make = |_: &SessionContext<'_>| Streamer;
    let service = McpStack::new(make).endpoint_path("/mcp").into_service();
    let session = rt.block_on(async {
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
        let response = service.clone().oneshot(post(init, None)).await.expect("initialize");
        let session = response.headers()["mcp-session-id"].clone();
        let _ = response.into_body().collect().await;
        let done = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        let response = service
            .clone()
            .oneshot(post(done, Some(&session)))
            .await
            .expect("initialized");
        let _ = response.into_body().collect().await;
        session
    });
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"stream","arguments":{},"_meta":{"progressToken":"p"}}}"#;
    let tail: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"text\":\"streamed\",\"type\":\"text\"}]}}\n\n";
    c.bench_function("sse/stream_50_notifications", |b| {
        b.to_async(&rt).iter(|| {
            let service = service.clone();
            let request = post(call, Some(&session));
            async move {
                let response = service.oneshot(request).await.expect("response");
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                // Every message arrives, the answer last.
                assert!(body.ends_with(tail), "{body:?}");
                black_box(body.len())
            }
        })
    });
}

fn store(c: &mut Criterion) {
    let rt = runtime();
    let session = SessionId::random();
    let data = Message::result(
        Id::Number(1),
        json!({"content": [{"type": "text", "text": "x"}]}),
    )
    .to_bytes();
    // A session quota of 1000 such events: once full, each measured append also evicts.
    let store = InMemoryEventStore::new().max_session_bytes(1000 * (data.len() + EVENT_OVERHEAD));
    let mut seq = 0u64;
    rt.block_on(async {
        for _ in 0..1000 {
            store
                .append(&session, EventId { stream: 1, seq }, data.clone())
                .await;
            seq += 1;
        }
    });
    c.bench_function("store/append", |b| {
        b.to_async(&rt).iter(|| {
            let id = EventId { stream: 1, seq };
            seq += 1;
            let (store, session, data) = (&store, &session, data.clone());
            async move { store.append(session, id, data).await }
        })
    });

    let replay_store = InMemoryEventStore::new();
    let replay_session = SessionId::random();
    rt.block_on(async {
        for seq in 0..100 {
            let id = EventId { stream: 7, seq };
            replay_store.append(&replay_session, id, data.clone()).await;
        }
    });
    let mut group = c.benchmark_group("store/replay");
    for (name, after) in [("after_middle_of_100", 49u64), ("after_last", 99)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let after = EventId {
                    stream: 7,
                    seq: after,
                };
                let events = replay_store.replay_after(&replay_session, after).await;
                black_box(events.map(|e| e.len()))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = frame, stream, store
}
criterion_main!(benches);
