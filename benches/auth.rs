//! In-process benchmarks of the security layers: no sockets, tower services driven with
//! `oneshot` on a current-thread tokio runtime, the response body collected.
//!
//! - `auth_layer/*`: each layer alone around a trivial `service_fn` on an accepted request, next
//!   to the bare `service_fn`: `AuthLayer` with API keys (`X-API-Key`), `AuthLayer` with an HS256
//!   JWT (`Authorization: Bearer`), tower-http CORS from the [`McpCors`] preset with an allowed
//!   `Origin`, [`OriginLayer`] with an allowed `Origin`, and [`ChallengeLayer`] passing a 200.
//!   Every variant sends the same request (all those headers at once), so building it is in the
//!   baseline too.
//! - `auth_stack/*`: the whole [`McpStack`] (JSON responses, a live session) answering
//!   `tools/call` of `echo`: plain, plain with an allowed `Origin` (CORS at work), with API keys,
//!   with API keys and an allowed `Origin` (CORS), and with a JWT. The request is the same but
//!   for the `Origin`/credential headers.
//!
//! Run with `cargo bench --bench auth` (add `-- --quick` for a fast check).

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use mcp_tower_http::auth::{ApiKeys, AuthLayer, ChallengeLayer, JwtAuthenticator};
use mcp_tower_http::cors::McpCors;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::origin::OriginLayer;
use mcp_tower_http::session::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use mcp_tower_http::{McpStack, SessionContext};
use std::convert::Infallible;
use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

const PROTOCOL_VERSION: &str = "2025-11-25";
const ACCEPT: &str = "application/json, text/event-stream";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const SECRET: &[u8] = b"an HS256 secret for the auth benchmark";
const KEY: &str = "bench-key-5f0c1d2e3a4b";
const APP: &str = "https://app.example.com";

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-tower-http-bench","version":"0.0.0"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const TOOLS_CALL_ECHO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"text":"hello from the benchmark"},"name":"echo"}}"#;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An HS256 access token for `RESOURCE`, valid for an hour.
fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "sub": "bench-user",
        "aud": RESOURCE,
        "iat": now,
        "exp": now + 3600,
        "scope": "mcp:read mcp:write",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("encode a JWT")
}

/// What a request carries besides the MCP headers.
#[derive(Clone, Default)]
struct Extra {
    origin: Option<&'static str>,
    api_key: bool,
    bearer: Option<HeaderValue>,
}

/// A POST as an MCP client sends it.
fn post(body: &'static str, session: Option<&HeaderValue>, extra: &Extra) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/mcp")
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, ACCEPT)
        .header(MCP_PROTOCOL_VERSION, PROTOCOL_VERSION);
    if let Some(id) = session {
        builder = builder.header(MCP_SESSION_ID, id.clone());
    }
    if let Some(origin) = extra.origin {
        builder = builder.header(http::header::ORIGIN, origin);
    }
    if extra.api_key {
        builder = builder.header("x-api-key", KEY);
    }
    if let Some(bearer) = &extra.bearer {
        builder = builder.header(http::header::AUTHORIZATION, bearer.clone());
    }
    builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request")
}

/// One request, the whole body collected: what each iteration measures.
async fn roundtrip<S, B>(service: &S, req: Request<Full<Bytes>>) -> (StatusCode, Bytes)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body<Data = Bytes>,
    B::Error: Debug,
{
    let response = service.clone().oneshot(req).await.expect("service error");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body error")
        .to_bytes();
    (status, body)
}

/// Setup: sends `req`, asserts the status, returns the response headers.
async fn checked<S, B>(
    service: &S,
    req: Request<Full<Bytes>>,
    status: StatusCode,
) -> http::HeaderMap
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body<Data = Bytes>,
    B::Error: Debug,
{
    let response = service.clone().oneshot(req).await.expect("service error");
    let actual = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body error")
        .to_bytes();
    assert_eq!(actual, status, "{}", String::from_utf8_lossy(&body));
    headers
}

/// The trivial inner service: an empty 200.
fn empty<B>(_: Request<B>) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
    std::future::ready(Ok(Response::new(Full::default())))
}

fn layers(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("auth_layer");
    let extra = Extra {
        origin: Some(APP),
        api_key: true,
        bearer: Some(HeaderValue::try_from(format!("Bearer {}", token())).expect("header")),
    };

    let bare = tower::service_fn(empty::<Full<Bytes>>);
    let api_key = AuthLayer::new(ApiKeys::new().key(KEY)).layer(bare);
    let jwt = AuthLayer::new(JwtAuthenticator::new(RESOURCE).hs256_secret(SECRET)).layer(bare);
    let cors = McpCors::new().allow_origin(APP).layer().layer(bare);
    let origin = OriginLayer::localhost().allow_origin(APP).layer(bare);
    let challenge = ChallengeLayer::new().layer(bare);

    rt.block_on(async {
        assert_eq!(
            roundtrip(&bare, post(TOOLS_CALL_ECHO, None, &extra))
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            roundtrip(&api_key, post(TOOLS_CALL_ECHO, None, &extra))
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            roundtrip(&jwt, post(TOOLS_CALL_ECHO, None, &extra)).await.0,
            StatusCode::OK
        );
        assert_eq!(
            roundtrip(&origin, post(TOOLS_CALL_ECHO, None, &extra))
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            roundtrip(&challenge, post(TOOLS_CALL_ECHO, None, &extra))
                .await
                .0,
            StatusCode::OK
        );
        let response = cors
            .clone()
            .oneshot(post(TOOLS_CALL_ECHO, None, &extra))
            .await
            .expect("cors");
        assert_eq!(response.headers()["access-control-allow-origin"], APP);
        // The refusals, so the accepted path is known to be the one measured.
        let refused = Extra::default();
        assert_eq!(
            roundtrip(&api_key, post(TOOLS_CALL_ECHO, None, &refused))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            roundtrip(&jwt, post(TOOLS_CALL_ECHO, None, &refused))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let evil = Extra {
            origin: Some("http://evil.example.com"),
            ..Extra::default()
        };
        assert_eq!(
            roundtrip(&origin, post(TOOLS_CALL_ECHO, None, &evil))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
    });

    group.bench_function("bare_service_fn", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&bare, post(TOOLS_CALL_ECHO, None, &extra)));
    });
    group.bench_function("api_key_x_api_key", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&api_key, post(TOOLS_CALL_ECHO, None, &extra)));
    });
    group.bench_function("jwt_hs256_bearer", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&jwt, post(TOOLS_CALL_ECHO, None, &extra)));
    });
    group.bench_function("cors_allowed_origin", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&cors, post(TOOLS_CALL_ECHO, None, &extra)));
    });
    group.bench_function("origin_allowed", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&origin, post(TOOLS_CALL_ECHO, None, &extra)));
    });
    group.bench_function("challenge_passthrough", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&challenge, post(TOOLS_CALL_ECHO, None, &extra)));
    });
    group.finish();
}

fn assert_echo(status: StatusCode, body: &Bytes) {
    let text = String::from_utf8_lossy(body);
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains(r#""text":"hello from the benchmark""#) && text.contains(r#""id":1"#),
        "unexpected echo answer: {text}"
    );
}

fn stacks(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("auth_stack");
    let make = |_: &SessionContext<'_>| EverythingServer::new();
    let plain = McpStack::new(make).json_response(true).into_service();
    let keyed = McpStack::new(make)
        .json_response(true)
        .authenticate(ApiKeys::new().key(KEY))
        .origin(OriginLayer::localhost().allow_origin(APP))
        .cors(McpCors::new().allow_origin(APP))
        .into_service();
    let jwt = McpStack::new(make)
        .json_response(true)
        .authenticate(JwtAuthenticator::new(RESOURCE).hs256_secret(SECRET))
        .into_service();

    let none = Extra::default();
    let loopback = Extra {
        origin: Some("http://localhost:5173"),
        ..Extra::default()
    };
    let key = Extra {
        api_key: true,
        ..Extra::default()
    };
    let key_cors = Extra {
        origin: Some(APP),
        api_key: true,
        ..Extra::default()
    };
    let bearer = Extra {
        bearer: Some(HeaderValue::try_from(format!("Bearer {}", token())).expect("header")),
        ..Extra::default()
    };

    // One session per variant, opened with its own credentials.
    let open = |service: &_, extra: &Extra| {
        rt.block_on(async {
            let headers = checked(service, post(INITIALIZE, None, extra), StatusCode::OK).await;
            let session = headers[MCP_SESSION_ID].clone();
            checked(
                service,
                post(INITIALIZED, Some(&session), extra),
                StatusCode::ACCEPTED,
            )
            .await;
            let (status, body) =
                roundtrip(service, post(TOOLS_CALL_ECHO, Some(&session), extra)).await;
            assert_echo(status, &body);
            session
        })
    };
    let plain_session = open(&plain, &none);
    let plain_origin_session = open(&plain, &loopback);
    let keyed_session = open(&keyed, &key);
    let keyed_cors_session = open(&keyed, &key_cors);
    let jwt_session = rt.block_on(async {
        let headers = checked(&jwt, post(INITIALIZE, None, &bearer), StatusCode::OK).await;
        let session = headers[MCP_SESSION_ID].clone();
        checked(
            &jwt,
            post(INITIALIZED, Some(&session), &bearer),
            StatusCode::ACCEPTED,
        )
        .await;
        session
    });
    rt.block_on(async {
        // The CORS variant really gets CORS headers; the protected stack refuses no key.
        let response = keyed
            .clone()
            .oneshot(post(TOOLS_CALL_ECHO, Some(&keyed_cors_session), &key_cors))
            .await
            .expect("stack");
        assert_eq!(response.headers()["access-control-allow-origin"], APP);
        let (status, _) =
            roundtrip(&keyed, post(TOOLS_CALL_ECHO, Some(&keyed_session), &none)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    });

    group.bench_function("plain/tools_call_echo", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&plain, post(TOOLS_CALL_ECHO, Some(&plain_session), &none)));
    });
    group.bench_function("plain_loopback_origin/tools_call_echo", |b| {
        b.to_async(&rt).iter(|| {
            roundtrip(
                &plain,
                post(TOOLS_CALL_ECHO, Some(&plain_origin_session), &loopback),
            )
        });
    });
    group.bench_function("api_key/tools_call_echo", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&keyed, post(TOOLS_CALL_ECHO, Some(&keyed_session), &key)));
    });
    group.bench_function("api_key_cors/tools_call_echo", |b| {
        b.to_async(&rt).iter(|| {
            roundtrip(
                &keyed,
                post(TOOLS_CALL_ECHO, Some(&keyed_cors_session), &key_cors),
            )
        });
    });
    group.bench_function("jwt/tools_call_echo", |b| {
        b.to_async(&rt)
            .iter(|| roundtrip(&jwt, post(TOOLS_CALL_ECHO, Some(&jwt_session), &bearer)));
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = layers, stacks
}
criterion_main!(benches);
