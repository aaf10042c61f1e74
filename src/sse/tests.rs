use super::*;
use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::{Id, Message};
use crate::protocol::ProtocolVersion;
use crate::session::Session;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use tower::{Layer, ServiceExt};

const BOTH: &str = "application/json, text/event-stream";

fn answering(
    outgoing: fn() -> Outgoing,
) -> impl tower::Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_req: Request<()>| async move {
        let mut r = Response::new(Full::<Bytes>::default());
        r.extensions_mut().insert(outgoing());
        Ok::<_, Infallible>(r)
    })
}

fn one() -> Outgoing {
    Outgoing::One(Message::result(Id::Number(1), json!({})))
}

fn post(accept: &str) -> Request<()> {
    Request::post("/")
        .header("accept", accept)
        .body(())
        .unwrap()
}

fn session(version: ProtocolVersion) -> Arc<Session> {
    let s = Arc::new(Session::new(None, version));
    s.initialize(version, Arc::new(()), |_| Box::pin(async {}));
    s
}

async fn body_of<B: http_body::Body<Data = Bytes>>(r: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn post_needs_both_media_types() {
    let svc = SseLayer::new().layer(answering(one));
    for accept in ["application/json", "text/event-stream", "text/html"] {
        let r = svc.clone().oneshot(post(accept)).await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE, "{accept}");
    }
    let r = svc.clone().oneshot(post("*/*")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = svc
        .oneshot(post("application/*;q=0.9, text/event-stream"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn json_mode_writes_one_json_body() {
    let svc = SseLayer::new().json_response(true).layer(answering(one));
    let r = svc.oneshot(post(BOTH)).await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(body_of(r).await, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);

    let svc = SseLayer::new().json_response(true).layer(answering(|| {
        Outgoing::Batch(vec![
            Message::result(Id::Number(1), json!(1)),
            Message::result(Id::Number(2), json!(2)),
        ])
    }));
    let r = svc.oneshot(post(BOTH)).await.unwrap();
    assert_eq!(
        body_of(r).await,
        r#"[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":2,"result":2}]"#
    );
}

#[tokio::test]
async fn priming_event_only_from_2025_11_25_on() {
    for (version, primed) in [
        (ProtocolVersion::V2025_11_25, true),
        (ProtocolVersion::V2025_06_18, false),
    ] {
        let svc = SseLayer::new().layer(answering(one));
        let mut req = post(BOTH);
        req.extensions_mut().insert(session(version));
        req.extensions_mut().insert(version);
        let r = svc.oneshot(req).await.unwrap();
        assert_eq!(r.headers()["cache-control"], "no-cache, no-transform");
        assert_eq!(r.headers()["x-accel-buffering"], "no");
        let body = body_of(r).await;
        assert_eq!(body.starts_with("id: 1/0\ndata: \n\n"), primed, "{body}");
        assert!(body.contains("event: message\n"));
    }
}

#[tokio::test]
async fn streams_messages_as_they_come_then_ends() {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = MessageStream::new(rx);
    let svc = SseLayer::new().layer(tower::service_fn(move |_req: Request<()>| {
        let stream = stream.clone();
        async move {
            let mut r = Response::new(Full::<Bytes>::default());
            r.extensions_mut().insert(Outgoing::Stream(stream));
            Ok::<_, Infallible>(r)
        }
    }));
    let r = svc.oneshot(post(BOTH)).await.unwrap();
    let note = Message::notification("notifications/progress", None);
    tx.send(StreamEvent::Message(note)).await.unwrap();
    let answer = Message::result(Id::Number(1), json!({}));
    tx.send(StreamEvent::Message(answer)).await.unwrap();
    drop(tx);
    let body = body_of(r).await;
    assert_eq!(
        body,
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
         event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
    );
}

#[tokio::test]
async fn json_mode_still_streams_a_stream_answer() {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stream = MessageStream::new(rx);
    let svc =
        SseLayer::new()
            .json_response(true)
            .layer(tower::service_fn(move |_req: Request<()>| {
                let stream = stream.clone();
                async move {
                    let mut r = Response::new(Full::<Bytes>::default());
                    r.extensions_mut().insert(Outgoing::Stream(stream));
                    Ok::<_, Infallible>(r)
                }
            }));
    let r = svc.oneshot(post(BOTH)).await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let answer = Message::result(Id::Number(1), json!({}));
    tx.send(StreamEvent::Message(answer)).await.unwrap();
    drop(tx);
    assert_eq!(
        body_of(r).await,
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"
    );
}

#[tokio::test]
async fn one_standalone_stream_per_session() {
    let s = session(ProtocolVersion::V2025_11_25);
    let svc = SseLayer::new().layer(answering(one));
    let get = |accept: &str| {
        let mut req = Request::get("/").header("accept", accept).body(()).unwrap();
        req.extensions_mut().insert(s.clone());
        req.extensions_mut().insert(ProtocolVersion::V2025_11_25);
        req
    };
    let r = svc.clone().oneshot(get("application/json")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_ACCEPTABLE);

    let first = svc.clone().oneshot(get("text/event-stream")).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = svc.clone().oneshot(get("text/event-stream")).await.unwrap();
    assert_eq!(
        second
            .extensions()
            .get::<TransportError>()
            .map(|e| e.kind()),
        Some(TransportErrorKind::StreamConflict)
    );
    // Once the first stream is gone, a new one may attach.
    drop(first);
    let third = svc.oneshot(get("text/event-stream")).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    let mut body = third.into_body();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&frame[..], b"id: 0/0\ndata: \n\n");
}

/// Added to the count of [`flooding`] when a send fails (the handler then stops).
const FAILED: usize = 1_000_000;

/// A layer around a handler that streams `count` notifications as fast as it may, counting
/// those the transport took; the count stops at the first failed send, plus [`FAILED`].
fn flooding(
    layer: SseLayer,
    count: usize,
    sent: Arc<std::sync::atomic::AtomicUsize>,
) -> impl tower::Service<
    Request<()>,
    Response = Response<ResponseBody<Full<Bytes>>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    layer.layer(tower::service_fn(move |_req: Request<()>| {
        let sent = sent.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                for n in 0..count {
                    let note = Message::notification("n", Some(json!(n)));
                    if tx.send(StreamEvent::Message(note)).await.is_err() {
                        sent.fetch_add(FAILED, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
            let mut r = Response::new(Full::<Bytes>::default());
            r.extensions_mut()
                .insert(Outgoing::Stream(MessageStream::new(rx)));
            Ok::<_, Infallible>(r)
        }
    }))
}

fn on_session(mut req: Request<()>, s: &Arc<Session>) -> Request<()> {
    req.extensions_mut().insert(s.clone());
    req.extensions_mut().insert(ProtocolVersion::V2025_11_25);
    req
}

fn resume_from(s: &Arc<Session>, id: &str) -> Request<()> {
    let req = Request::get("/")
        .header("accept", "text/event-stream")
        .header("last-event-id", id)
        .body(())
        .unwrap();
    on_session(req, s)
}

/// The `n` values of the notifications in an SSE body, in order.
fn notified(body: &str) -> Vec<u64> {
    body.split("\n\n")
        .filter_map(|event| event.split("data: ").nth(1))
        .filter(|data| !data.is_empty())
        .map(|data| {
            serde_json::from_str::<serde_json::Value>(data).unwrap()["params"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn sent_now(sent: &std::sync::atomic::AtomicUsize) -> usize {
    sent.load(std::sync::atomic::Ordering::SeqCst)
}

/// Waits (real time, at most 10 s) until `sent` stops moving for 100 ms; returns it.
async fn settled(sent: &std::sync::atomic::AtomicUsize) -> usize {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = sent_now(sent);
    let mut still = 0;
    while still < 10 {
        assert!(tokio::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let now = sent_now(sent);
        still = if now == last { still + 1 } else { 0 };
        last = now;
    }
    last
}

/// Waits (real time, at most 10 s) until `condition` holds.
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

const STALL: std::time::Duration = std::time::Duration::from_millis(300);

#[tokio::test]
async fn a_stalled_reader_holds_the_handler_back_then_is_closed_and_resumes_everything() {
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = SseLayer::new().connection_capacity(2).stall_timeout(STALL);
    let s = session(ProtocolVersion::V2025_11_25);
    let svc = flooding(layer, 100, sent.clone());
    let started = tokio::time::Instant::now();
    let stalled = svc
        .clone()
        .oneshot(on_session(post(BOTH), &s))
        .await
        .unwrap();
    let mut stalled = stalled.into_body();

    // Nobody reads: the queue (2 frames) fills and the handler waits.
    let held = settled(&sent).await;
    assert!(held < 10, "the handler ran on: {held}");
    // After the stall timeout the connection is closed, and a queue's worth is stored for the
    // client while it is away; then the handler waits again.
    until("the stalled connection is closed", || {
        sent_now(&sent) > held
    })
    .await;
    assert!(
        started.elapsed() >= STALL,
        "closed before the stall timeout"
    );
    let away = settled(&sent).await;
    assert!(away <= held + 4, "{held} -> {away}");
    let mut frames = 0;
    while let Some(frame) = stalled.frame().await {
        frame.unwrap();
        frames += 1;
    }
    assert!(
        frames <= 3,
        "the priming event and the queued frames, then the end: {frames}"
    );

    // The client resumes from the start and gets everything, the rest live.
    let resumed = svc.oneshot(resume_from(&s, "1/0")).await.unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    let body = body_of(resumed).await;
    assert_eq!(notified(&body), (0..100).collect::<Vec<_>>());
    assert_eq!(sent_now(&sent), 100);
}

#[tokio::test]
async fn a_client_away_past_the_stall_timeout_no_longer_holds_the_handler_back() {
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = SseLayer::new().connection_capacity(2).stall_timeout(STALL);
    let s = session(ProtocolVersion::V2025_11_25);
    let svc = flooding(layer, 1000, sent.clone());
    let response = svc
        .clone()
        .oneshot(on_session(post(BOTH), &s))
        .await
        .unwrap();
    drop(response);
    let held = settled(&sent).await;
    assert!(
        held < 10,
        "a client away holds the handler back at first: {held}"
    );
    until("the handler is let go", || sent_now(&sent) == 1000).await;
    // What was stored is still there (no pressure evicted it).
    let resumed = svc.oneshot(resume_from(&s, "1/0")).await.unwrap();
    assert_eq!(
        notified(&body_of(resumed).await),
        (0..1000).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_session_that_ends_releases_a_handler_waiting_for_its_client() {
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = SseLayer::new()
        .connection_capacity(2)
        .stall_timeout(std::time::Duration::from_secs(1000));
    let s = session(ProtocolVersion::V2025_11_25);
    let svc = flooding(layer, 1000, sent.clone());
    drop(svc.oneshot(on_session(post(BOTH), &s)).await.unwrap());
    let held = settled(&sent).await;
    assert!(held < 10, "{held}");
    s.close().await;
    until("the handler's send fails", || sent_now(&sent) >= FAILED).await;
    let after = sent_now(&sent) - FAILED;
    assert!(
        after < held + 4,
        "nothing more was taken: {held} -> {after}"
    );
}
