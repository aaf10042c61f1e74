use super::*;
use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::Payload;
use crate::jsonrpc_body::ParsedBody;
use crate::principal::Principal;
use crate::protocol::ProtocolVersion;
use http::{Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower::{Layer, Service, ServiceExt};

/// An inner service that initializes the session it is handed, as the endpoint does.
fn inner()
-> impl Service<Request<ParsedBody>, Response = Response<()>, Error = Infallible, Future = impl Send>
+ Clone {
    tower::service_fn(|req: Request<ParsedBody>| async move {
        if let Some(session) = req.extensions().get::<Arc<Session>>()
            && !session.is_initialized()
        {
            session.initialize(ProtocolVersion::V2025_06_18, Arc::new(()), |_| {
                Box::pin(async {})
            });
        }
        Ok::<_, Infallible>(Response::new(()))
    })
}

fn post(body: &str, session: Option<&str>) -> Request<ParsedBody> {
    let mut req = Request::post("/mcp").body(ParsedBody::default()).unwrap();
    req.extensions_mut()
        .insert(Payload::parse(body.as_bytes()).unwrap());
    if let Some(id) = session {
        req.headers_mut()
            .insert(MCP_SESSION_ID, id.parse().unwrap());
    }
    req
}

const INIT: &str =
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

fn kind(r: &Response<()>) -> Option<TransportErrorKind> {
    r.extensions().get::<TransportError>().map(|e| e.kind())
}

async fn open(layer: &SessionLayer) -> String {
    let r = layer
        .layer(inner())
        .oneshot(post(INIT, None))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.headers()[MCP_SESSION_ID].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn initialize_mints_a_visible_ascii_id_with_122_random_bits() {
    let layer = SessionLayer::new();
    let a = open(&layer).await;
    let b = open(&layer).await;
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert!(a.bytes().all(|c| (0x21..=0x7e).contains(&c)));
    assert_eq!(layer.registry().len(), 2);
    assert_eq!(
        layer.registry().get(&a).unwrap().protocol_version(),
        ProtocolVersion::V2025_06_18
    );
}

#[tokio::test]
async fn failed_initialize_registers_nothing() {
    let layer = SessionLayer::new().max_sessions(1);
    let req = post(INIT, None);
    // An endpoint whose initialize fails never initializes the session.
    let svc = layer.layer(tower::service_fn(|_req: Request<ParsedBody>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let r = svc.oneshot(req).await.unwrap();
    assert!(r.headers().get(MCP_SESSION_ID).is_none());
    assert!(layer.registry().is_empty());
    // The reservation was given back: the one allowed session can still be opened.
    open(&layer).await;
}

#[tokio::test]
async fn routing_errors() {
    let layer = SessionLayer::new();
    let id = open(&layer).await;
    let svc = layer.layer(inner());

    let r = svc.clone().oneshot(post(LIST, None)).await.unwrap();
    assert_eq!(kind(&r), Some(TransportErrorKind::MissingSessionId));
    assert_eq!(
        r.extensions().get::<TransportError>().unwrap().id(),
        Some(&crate::jsonrpc::Id::Number(2))
    );
    let r = svc.clone().oneshot(post(LIST, Some("nope"))).await.unwrap();
    assert_eq!(kind(&r), Some(TransportErrorKind::SessionNotFound));
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let mut req = post(LIST, Some(&id));
    req.headers_mut()
        .insert(MCP_PROTOCOL_VERSION, "1999-01-01".parse().unwrap());
    let r = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(
        kind(&r),
        Some(TransportErrorKind::UnsupportedProtocolVersion)
    );

    let r = svc.clone().oneshot(post(INIT, Some(&id))).await.unwrap();
    assert_eq!(kind(&r), Some(TransportErrorKind::InvalidRequest));

    // 2025-06-18 has no batches.
    let batch = format!("[{LIST}]");
    let r = svc.clone().oneshot(post(&batch, Some(&id))).await.unwrap();
    assert_eq!(kind(&r), Some(TransportErrorKind::InvalidRequest));

    let r = svc.clone().oneshot(post(LIST, Some(&id))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn batches_are_accepted_at_2025_03_26_only() {
    let layer = SessionLayer::new().stateless(true);
    let svc = layer.layer(inner());
    let batch = format!("[{LIST},{LIST}]");
    let r = svc.clone().oneshot(post(&batch, None)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "no header means 2025-03-26");
    let mut req = post(&batch, None);
    req.headers_mut()
        .insert(MCP_PROTOCOL_VERSION, "2025-11-25".parse().unwrap());
    let r = svc.oneshot(req).await.unwrap();
    assert_eq!(kind(&r), Some(TransportErrorKind::InvalidRequest));
}

#[tokio::test]
async fn delete_ends_the_session() {
    let layer = SessionLayer::new();
    let id = open(&layer).await;
    let svc = layer.layer(inner());
    let delete = || {
        Request::delete("/mcp")
            .header(MCP_SESSION_ID, id.as_str())
            .body(ParsedBody::default())
            .unwrap()
    };
    let r = svc.clone().oneshot(delete()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = svc.clone().oneshot(delete()).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = svc.oneshot(post(LIST, Some(&id))).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(layer.registry().is_empty());
}

#[tokio::test]
async fn stateless_refuses_get_and_delete_and_ignores_session_ids() {
    let svc = SessionLayer::new().stateless(true).layer(inner());
    for method in [http::Method::GET, http::Method::DELETE] {
        let req = Request::builder()
            .method(method)
            .body(ParsedBody::default())
            .unwrap();
        let r = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "POST");
    }
    let r = svc
        .clone()
        .oneshot(post(LIST, Some("stale")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = svc.oneshot(post(INIT, None)).await.unwrap();
    assert!(r.headers().get(MCP_SESSION_ID).is_none());
}

#[tokio::test]
async fn session_limit_answers_503_with_retry_after() {
    let layer = SessionLayer::new().max_sessions(1).retry_after(7);
    open(&layer).await;
    let r = layer
        .layer(inner())
        .oneshot(post(INIT, None))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "7");
}

#[tokio::test]
async fn sessions_are_bound_to_their_principal() {
    let layer = SessionLayer::new();
    let mut init = post(INIT, None);
    init.extensions_mut().insert(Principal::new("alice"));
    let r = layer.layer(inner()).oneshot(init).await.unwrap();
    let id = r.headers()[MCP_SESSION_ID].to_str().unwrap().to_owned();
    let svc = layer.layer(inner());

    let mut as_bob = post(LIST, Some(&id));
    as_bob.extensions_mut().insert(Principal::new("bob"));
    assert_eq!(
        svc.clone().oneshot(as_bob).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let anonymous = post(LIST, Some(&id));
    assert_eq!(
        svc.clone().oneshot(anonymous).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let mut as_alice = post(LIST, Some(&id));
    as_alice.extensions_mut().insert(Principal::new("alice"));
    assert_eq!(
        svc.oneshot(as_alice).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn idle_sessions_expire_unless_attached() {
    let layer = SessionLayer::new().idle_timeout(Duration::from_millis(30));
    let idle = open(&layer).await;
    let busy = open(&layer).await;
    let guard = layer.registry().get(&busy).unwrap().attach();
    tokio::time::sleep(Duration::from_millis(60)).await;
    // The background sweep may have run already; sweeping again is harmless.
    layer.registry().sweep_idle().await;
    assert!(layer.registry().get(&idle).is_none());
    assert!(layer.registry().get(&busy).is_some());
    drop(guard);
    tokio::time::sleep(Duration::from_millis(60)).await;
    layer.registry().sweep_idle().await;
    assert!(layer.registry().is_empty());
}
