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
