//! Authentication and authorization over real loopback sockets: the [`McpStack`] auth builder
//! (`authenticate`, `protected_resource`, `challenge`, `scopes`, `cors`, `origin`) around the
//! everything server. (The `mcp-proxy` binary's auth flags and the end-to-end OAuth runs are in
//! `mcp-proxy/tests/auth.rs`.)
//!
//! Every case asserts the status, the exact `WWW-Authenticate` header and the JSON-RPC error body
//! (`application/json; charset=utf-8`). References: `mcp-http-spec.md` §3 (A1–A7) and §5.4,
//! `mcp-proxy-behaviour.md` §1.3, §1.4 and the seed defects of §1.12 (#4 legacy SSE was not
//! authenticated, #7 challenge escaping, #8 unknown paths answered 401, #10 sessions not bound
//! to the principal, #11 CORS).

mod auth_support;
mod common;

use auth_support::*;
use common::*;
use http::{HeaderMap, Method, StatusCode};
use hyper::body::Incoming;
use jsonwebtoken::Algorithm;
use mcp_tower_http::McpStack;
use mcp_tower_http::Principal;
use mcp_tower_http::auth::{
    ApiKeys, AuthError, Authenticator, ChallengeLayer, Credentials, IntrospectionAuthenticator,
    JwtAuthenticator, ProtectedResourceMetadata, ScopePolicy, authenticate_fn,
};
use mcp_tower_http::cors::McpCors;
use mcp_tower_http::origin::OriginLayer;
use serde_json::{Value, json};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const PRM: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
const ISSUER: &str = "https://auth.example.com";
const KEY: &str = "key-0-6f1c2b9a5e";
const KEY2: &str = "key-1-a83d77e0c4";
const SECRET: &[u8] = b"an HS256 secret for the auth socket tests";
const LATEST: &str = "2025-11-25";
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const APP: &str = "https://app.example.com";
const EVIL: &str = "http://evil.example.com";

type Head<'a> = (&'a str, &'a str);
type Exchange = (StatusCode, HeaderMap, String);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn metadata() -> ProtectedResourceMetadata {
    ProtectedResourceMetadata::new(RESOURCE)
        .expect("resource")
        .authorization_server(ISSUER)
}

fn api_keys() -> ApiKeys {
    ApiKeys::new().key(KEY).key(KEY2)
}

fn jwt_authenticator() -> JwtAuthenticator {
    JwtAuthenticator::new(RESOURCE).hs256_secret(SECRET)
}

/// The stack protected by `authenticator`, with the metadata document, customized by `f`.
async fn protected(
    authenticator: impl Authenticator,
    f: impl FnOnce(McpStack<Everything>) -> McpStack<Everything>,
) -> TestServer {
    spawn(f(stack()
        .authenticate(authenticator)
        .protected_resource(metadata())))
    .await
}

fn with<'a>(base: &[Head<'a>], extra: &[Head<'a>]) -> Vec<Head<'a>> {
    base.iter().chain(extra).copied().collect()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Claims of a good token for `sub` with `scope`.
fn claims(sub: &str, scope: &str) -> Value {
    json!({ "sub": sub, "aud": RESOURCE, "exp": now() + 300, "iat": now(), "scope": scope })
}

/// `initialize` + `notifications/initialized` with `auth` headers; the session id.
async fn open_session(url: &str, auth: &[Head<'_>]) -> String {
    let (status, headers, body) = post(
        url,
        &with(&[ACCEPT_BOTH, JSON], auth),
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "initialize: {body}");
    let session = header(&headers, "mcp-session-id").to_owned();
    assert!(!session.is_empty(), "no Mcp-Session-Id");
    let (status, _, body) = call_on(url, &session, auth, INITIALIZED).await;
    assert_eq!(status, StatusCode::ACCEPTED, "initialized: {body}");
    session
}

/// POST `body` on `session` with conforming headers and `auth`.
async fn call_on(url: &str, session: &str, auth: &[Head<'_>], body: &str) -> Exchange {
    post(
        url,
        &with(&session_headers(Some(session), LATEST), auth),
        body,
    )
    .await
}

fn tool_call(id: i64, tool: &str, arguments: Value) -> String {
    request_body(
        id,
        "tools/call",
        json!({ "name": tool, "arguments": arguments }),
    )
}

fn echo_call(id: i64, text: &str) -> String {
    tool_call(id, "echo", json!({ "text": text }))
}

/// Calls `echo` on `session` and checks the answer.
async fn assert_echo(url: &str, session: &str, auth: &[Head<'_>], text: &str) {
    let (status, headers, body) = call_on(url, session, auth, &echo_call(5, text)).await;
    assert_eq!(status, StatusCode::OK, "echo: {body}");
    let answer = one_message(&headers, &body);
    assert_eq!(answer["id"], 5, "{body}");
    assert_eq!(answer["result"]["content"][0]["text"], text, "{body}");
}

/// The JSON-RPC error body of an auth rejection.
fn error_body(id: Value, message: &str, error: Option<&str>) -> Value {
    let mut object = json!({ "code": -32000, "message": message });
    if let Some(error) = error {
        object["data"] = json!({ "error": error });
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": object })
}

fn missing_body() -> Value {
    error_body(Value::Null, "Unauthorized: authentication required", None)
}

fn invalid_body(description: &str) -> Value {
    error_body(
        Value::Null,
        &format!("Unauthorized: {description}"),
        Some("invalid_token"),
    )
}

/// `Bearer resource_metadata="<PRM>"`: no credentials (RFC 6750 §3.1: no `error`).
fn www_missing() -> String {
    format!(r#"Bearer resource_metadata="{PRM}""#)
}

fn www_invalid(description: &str) -> String {
    format!(
        r#"Bearer error="invalid_token", error_description="{description}", resource_metadata="{PRM}""#
    )
}

fn www_invalid_request(description: &str) -> String {
    format!(
        r#"Bearer error="invalid_request", error_description="{description}", resource_metadata="{PRM}""#
    )
}

fn www_scope(scope: &str) -> String {
    format!(
        r#"Bearer error="insufficient_scope", error_description="Insufficient scope", scope="{scope}", resource_metadata="{PRM}""#
    )
}

/// Asserts a rejection: status, the one `WWW-Authenticate` (or none), the JSON content type,
/// the whole JSON-RPC body, and no session.
#[track_caller]
fn assert_rejected(response: &Exchange, status: StatusCode, www: Option<&str>, body: Value) {
    let (actual, headers, text) = response;
    assert_eq!(*actual, status, "status; body {text}");
    let challenges: Vec<&str> = headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().expect("ASCII challenge"))
        .collect();
    match www {
        Some(www) => assert_eq!(challenges, [www], "WWW-Authenticate"),
        None => assert!(
            challenges.is_empty(),
            "unexpected WWW-Authenticate {challenges:?}"
        ),
    }
    assert_eq!(
        header(headers, "content-type"),
        "application/json; charset=utf-8",
        "content type; body {text}"
    );
    assert_eq!(json_body(text), body, "body");
    assert!(headers.get("mcp-session-id").is_none(), "a session id");
}

/// Reads SSE events from `body` into `buffer` until `done` says so.
async fn read_events(
    body: &mut Incoming,
    buffer: &mut String,
    done: impl Fn(&[SseEvent]) -> bool,
) -> Vec<SseEvent> {
    loop {
        let events = sse_events(buffer);
        if done(&events) {
            return events;
        }
        let frame = next_frame(body, TIMEOUT)
            .await
            .expect("the stream ended early");
        buffer.push_str(std::str::from_utf8(&frame).expect("UTF-8 frame"));
    }
}

// ---------------------------------------------------------------------------------------------
// 1. API keys
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_key_missing_is_401_without_an_error_code() {
    let server = protected(api_keys(), |s| s).await;
    for auth in [
        &[][..],
        // Another scheme is not a credential this server reads.
        &[("authorization", "Basic a2V5LTAtNmYxYzJiOWE1ZTo=")][..],
        &[("authorization", "Bearer")][..],
        &[("x-api-key", "")][..],
    ] {
        let response = post(
            &server.url,
            &with(&[ACCEPT_BOTH, JSON], auth),
            &initialize_body(1, LATEST),
        )
        .await;
        assert_rejected(
            &response,
            StatusCode::UNAUTHORIZED,
            Some(&www_missing()),
            missing_body(),
        );
    }
    assert_eq!(
        server.sessions().len(),
        0,
        "a refused initialize opened a session"
    );
}

#[tokio::test]
async fn api_key_wrong_is_401_invalid_token() {
    let server = protected(api_keys(), |s| s).await;
    let prefix = &KEY[..KEY.len() - 1];
    let longer = format!("{KEY}0");
    let bearer_wrong = bearer("not-a-key");
    for auth in [
        [("x-api-key", "not-a-key")],
        [("x-api-key", prefix)],
        [("x-api-key", longer.as_str())],
        [("x-api-key", "KEY-0-6F1C2B9A5E")],
        [("authorization", bearer_wrong.as_str())],
    ] {
        let response = post(
            &server.url,
            &with(&[ACCEPT_BOTH, JSON], &auth),
            &initialize_body(1, LATEST),
        )
        .await;
        assert_rejected(
            &response,
            StatusCode::UNAUTHORIZED,
            Some(&www_invalid("Invalid API key")),
            invalid_body("Invalid API key"),
        );
    }
    assert_eq!(server.sessions().len(), 0);
}

#[tokio::test]
async fn api_key_right_via_x_api_key_and_via_bearer() {
    let server = protected(api_keys(), |s| s).await;
    let bearer_key = bearer(KEY);
    for auth in [
        [("x-api-key", KEY)],
        [("authorization", bearer_key.as_str())],
    ] {
        let session = open_session(&server.url, &auth).await;
        assert_echo(&server.url, &session, &auth, "keyed").await;
    }
    // The scheme is case-insensitive; X-API-Key wins over a bearer token sent beside it.
    let lower = format!("bearer {KEY}");
    let session = open_session(&server.url, &[("authorization", lower.as_str())]).await;
    assert_echo(&server.url, &session, &[("authorization", &lower)], "lower").await;
    let both = [("x-api-key", KEY), ("authorization", "Bearer not-a-key")];
    let session = open_session(&server.url, &both).await;
    assert_echo(&server.url, &session, &both, "both").await;
}

#[tokio::test]
async fn several_api_keys_are_each_accepted() {
    let keys = ApiKeys::new()
        .key(KEY)
        .key(KEY2)
        .key_with_subject("a-third-much-longer-key-0123456789", "ci-bot");
    let server = protected(keys, |s| s).await;
    for key in [KEY, KEY2, "a-third-much-longer-key-0123456789"] {
        let auth = [("x-api-key", key)];
        let session = open_session(&server.url, &auth).await;
        assert_echo(&server.url, &session, &auth, key).await;
    }
    assert_eq!(server.sessions().len(), 3);
}

#[tokio::test]
async fn credentials_in_the_query_string_are_400_even_with_a_good_header() {
    let server = protected(api_keys(), |s| s.legacy_sse("/sse", "/messages")).await;
    const WHY: &str =
        "Credentials are not accepted in the query string; use the Authorization header";
    let good = bearer(KEY);
    for (method, target) in [
        (Method::POST, format!("/mcp?api_key={KEY}")),
        (Method::POST, format!("/mcp?access_token={KEY}")),
        (Method::POST, format!("/mcp?tenant=1&Access_Token={KEY}")),
        (Method::POST, "/mcp?token=anything".to_owned()),
        (Method::GET, format!("/mcp?apikey={KEY}")),
        (Method::DELETE, format!("/mcp?x-api-key={KEY}")),
        (Method::GET, format!("/sse?access_token={KEY}")),
        (
            Method::POST,
            format!("/messages?sessionId=abc&api_key={KEY}"),
        ),
    ] {
        for auth in [("x-api-key", KEY), ("authorization", good.as_str())] {
            let url = format!("{}{target}", server.base);
            let response = send(
                method.clone(),
                &url,
                &[ACCEPT_BOTH, JSON, ACCEPT_SSE, auth],
                PING.to_owned(),
            )
            .await;
            assert_rejected(
                &response,
                StatusCode::BAD_REQUEST,
                Some(&www_invalid_request(WHY)),
                error_body(
                    Value::Null,
                    &format!("Bad Request: {WHY}"),
                    Some("invalid_request"),
                ),
            );
        }
    }
    assert_eq!(server.sessions().len(), 0);
    // Other query parameters are fine.
    let url = format!("{}/mcp?tenant=1", server.base);
    let (status, _, body) = post(
        &url,
        &[ACCEPT_BOTH, JSON, ("x-api-key", KEY)],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn auth_runs_on_post_get_and_delete_of_streamable_http() {
    let server = protected(api_keys(), |s| s).await;
    let auth = [("x-api-key", KEY)];
    let session = open_session(&server.url, &auth).await;
    let base = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LATEST),
    ];
    let wrong = [("x-api-key", "not-a-key")];

    // POST on the session.
    let response = call_on(&server.url, &session, &[], PING).await;
    assert_rejected(
        &response,
        StatusCode::UNAUTHORIZED,
        Some(&www_missing()),
        missing_body(),
    );
    let response = call_on(&server.url, &session, &wrong, PING).await;
    assert_rejected(
        &response,
        StatusCode::UNAUTHORIZED,
        Some(&www_invalid("Invalid API key")),
        invalid_body("Invalid API key"),
    );

    // GET: the standalone stream.
    for (auth, www, body) in [
        (&[][..], www_missing(), missing_body()),
        (
            &wrong[..],
            www_invalid("Invalid API key"),
            invalid_body("Invalid API key"),
        ),
    ] {
        let response = get(&server.url, &with(&with(&base, &[ACCEPT_SSE]), auth)).await;
        assert_rejected(&response, StatusCode::UNAUTHORIZED, Some(&www), body);
    }
    let stream = open(
        Method::GET,
        &server.url,
        &with(&with(&base, &[ACCEPT_SSE]), &auth),
        "",
    )
    .await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(
        header(stream.headers(), "content-type"),
        "text/event-stream; charset=utf-8"
    );
    drop(stream);

    // DELETE: refused without the key, and the session lives on.
    for (auth, www, body) in [
        (&[][..], www_missing(), missing_body()),
        (
            &wrong[..],
            www_invalid("Invalid API key"),
            invalid_body("Invalid API key"),
        ),
    ] {
        let response = delete(&server.url, &with(&base, auth)).await;
        assert_rejected(&response, StatusCode::UNAUTHORIZED, Some(&www), body);
    }
    let (status, _, body) = call_on(&server.url, &session, &auth, PING).await;
    assert_eq!(status, StatusCode::OK, "the session survived: {body}");
    let (status, _, body) = delete(&server.url, &with(&base, &auth)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = call_on(&server.url, &session, &auth, PING).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted");
}

/// Seed defect #4: the legacy transport was not authenticated.
#[tokio::test]
async fn auth_runs_on_the_legacy_sse_transport() {
    let server = protected(api_keys(), |s| s.legacy_sse("/sse", "/messages")).await;
    let sse = format!("{}/sse", server.base);
    let wrong = [("x-api-key", "not-a-key")];
    for (auth, www, body) in [
        (&[][..], www_missing(), missing_body()),
        (
            &wrong[..],
            www_invalid("Invalid API key"),
            invalid_body("Invalid API key"),
        ),
    ] {
        let response = get(&sse, &with(&[ACCEPT_SSE], auth)).await;
        assert_rejected(&response, StatusCode::UNAUTHORIZED, Some(&www), body);
    }

    let auth = [("x-api-key", KEY)];
    let response = open(Method::GET, &sse, &with(&[ACCEPT_SSE], &auth), "").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut buffer = String::new();
    let events = read_events(&mut body, &mut buffer, |events| !events.is_empty()).await;
    assert_eq!(events[0].event.as_deref(), Some("endpoint"), "{events:?}");
    let endpoint = events[0].data.clone();
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let messages = format!("{}{endpoint}", server.base);

    let init = request_body(
        1,
        "initialize",
        json!({ "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": { "name": "legacy", "version": "0" } }),
    );
    for (auth, www, body) in [
        (&[][..], www_missing(), missing_body()),
        (
            &wrong[..],
            www_invalid("Invalid API key"),
            invalid_body("Invalid API key"),
        ),
    ] {
        let response = post(&messages, &with(&[ACCEPT_BOTH, JSON], auth), &init).await;
        assert_rejected(&response, StatusCode::UNAUTHORIZED, Some(&www), body);
    }
    // Another key (another principal) does not reach this session either.
    let (status, _, _) = post(&messages, &[ACCEPT_BOTH, JSON, ("x-api-key", KEY2)], &init).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another principal's session");

    let (status, _, text) = post(&messages, &with(&[ACCEPT_BOTH, JSON], &auth), &init).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let events = read_events(&mut body, &mut buffer, |events| {
        events.iter().any(|e| e.data.contains(r#""id":1"#))
    })
    .await;
    let answer = events
        .iter()
        .find(|e| e.data.contains(r#""id":1"#))
        .expect("initialize answer");
    assert!(answer.data.contains(r#""result""#), "{answer:?}");
}

#[tokio::test]
async fn ping_preflight_and_metadata_stay_open() {
    let server = protected(api_keys(), |s| s.legacy_sse("/sse", "/messages")).await;
    let (status, _, body) = get(&format!("{}/ping", server.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));

    for path in ["/mcp", "/sse", "/messages"] {
        let (status, headers, body) = send(
            Method::OPTIONS,
            &format!("{}{path}", server.base),
            &[
                ("origin", "http://localhost:5173"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type, mcp-protocol-version, mcp-session-id, x-api-key",
                ),
            ],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "preflight {path}: {body}");
        assert!(headers.get("www-authenticate").is_none(), "{path}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            "http://localhost:5173"
        );
        let methods = header(&headers, "access-control-allow-methods");
        for method in ["GET", "POST", "DELETE"] {
            assert!(methods.contains(method), "{method} not in {methods}");
        }
        let allowed = header(&headers, "access-control-allow-headers");
        for name in [
            "authorization",
            "content-type",
            "mcp-protocol-version",
            "mcp-session-id",
            "x-api-key",
        ] {
            assert!(allowed.contains(name), "{name} not in {allowed}");
        }
    }

    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, headers, _) = get(&format!("{}{path}", server.base), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(headers.get("www-authenticate").is_none(), "{path}");
    }
}

/// Seed defect #8: unknown paths were answered 401 by the API-key gate.
#[tokio::test]
async fn unknown_paths_are_404_with_or_without_a_key() {
    let server = protected(api_keys(), |s| s.legacy_sse("/sse", "/messages")).await;
    for path in [
        "/",
        "/other",
        "/mcpx",
        "/mcp/x",
        "/ssex",
        "/messagesXYZ",
        "/.well-known/oauth-protected-resource/other",
        "/.well-known/oauth-authorization-server",
    ] {
        for auth in [
            &[][..],
            &[("x-api-key", KEY)][..],
            &[("x-api-key", "bad")][..],
        ] {
            let url = format!("{}{path}", server.base);
            let (status, headers, body) = post(&url, &with(&[ACCEPT_BOTH, JSON], auth), PING).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path} {auth:?}: {body}");
            assert!(headers.get("www-authenticate").is_none(), "{path}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. JWT (HS256)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jwt_good_token_is_accepted() {
    let server = protected(jwt_authenticator(), |s| s).await;
    let mut array_aud = claims("alice", "");
    array_aud["aud"] = json!(["https://other.example.com/mcp", RESOURCE]);
    let mut within_leeway = claims("alice", "");
    within_leeway["exp"] = json!(now() - 5);
    let mut by_client = claims("", "");
    by_client.as_object_mut().unwrap().remove("sub");
    by_client["client_id"] = json!("client-7");
    for token_claims in [claims("alice", "mcp"), array_aud, within_leeway, by_client] {
        let token = bearer(&jwt(SECRET, &token_claims));
        let auth = [("authorization", token.as_str())];
        let session = open_session(&server.url, &auth).await;
        assert_echo(&server.url, &session, &auth, "signed").await;
    }
}

#[tokio::test]
async fn jwt_bad_tokens_are_401_invalid_token() {
    let server = protected(jwt_authenticator(), |s| s).await;
    let good = claims("alice", "mcp");
    let with_claim = |name: &str, value: Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };
    let without = |name: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let mut anonymous = without("sub");
    anonymous.as_object_mut().unwrap().remove("client_id");
    const MALFORMED: &str =
        "The access token is malformed or uses an algorithm that is not accepted";
    const BAD_SIGNATURE: &str = "The access token signature is invalid";
    const WRONG_AUDIENCE: &str = "The access token was not issued for this resource";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            jwt(SECRET, &with_claim("exp", json!(now() - 600))),
            "The access token expired",
        ),
        (
            "not yet valid",
            jwt(SECRET, &with_claim("nbf", json!(now() + 600))),
            "The access token is not valid yet",
        ),
        (
            "wrong audience",
            jwt(
                SECRET,
                &with_claim("aud", json!("https://other.example.com/mcp")),
            ),
            WRONG_AUDIENCE,
        ),
        (
            "audience with a trailing slash",
            jwt(SECRET, &with_claim("aud", json!(format!("{RESOURCE}/")))),
            WRONG_AUDIENCE,
        ),
        ("no audience", jwt(SECRET, &without("aud")), WRONG_AUDIENCE),
        (
            "no exp",
            jwt(SECRET, &without("exp")),
            "The access token has no exp claim",
        ),
        (
            "alg none",
            unsigned_jwt(r#"{"alg":"none"}"#, &good),
            MALFORMED,
        ),
        (
            "alg none, typ JWT",
            unsigned_jwt(r#"{"alg":"none","typ":"JWT"}"#, &good),
            MALFORMED,
        ),
        (
            "alg NONE",
            unsigned_jwt(r#"{"alg":"NONE","typ":"JWT"}"#, &good),
            MALFORMED,
        ),
        (
            "HS256 header, no signature",
            unsigned_jwt(r#"{"alg":"HS256","typ":"JWT"}"#, &good),
            BAD_SIGNATURE,
        ),
        (
            "wrong key",
            jwt(b"another secret entirely, same length...", &good),
            BAD_SIGNATURE,
        ),
        (
            "tampered payload",
            tampered_jwt(&jwt(SECRET, &good), &with_claim("sub", json!("admin"))),
            BAD_SIGNATURE,
        ),
        (
            "HS384 with the same secret",
            jwt_with(Algorithm::HS384, SECRET, &good),
            "The access token algorithm is not accepted",
        ),
        ("not a JWT", "not.a.jwt".to_owned(), MALFORMED),
        (
            "no subject",
            jwt(SECRET, &anonymous),
            "The access token names no subject (sub or client_id)",
        ),
    ];
    for (case, token, description) in cases {
        let authorization = bearer(&token);
        let response = post(
            &server.url,
            &[ACCEPT_BOTH, JSON, ("authorization", authorization.as_str())],
            &initialize_body(1, LATEST),
        )
        .await;
        assert_eq!(
            response.0,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            response.2
        );
        assert_rejected(
            &response,
            StatusCode::UNAUTHORIZED,
            Some(&www_invalid(description)),
            invalid_body(description),
        );
    }
    assert_eq!(server.sessions().len(), 0);
    // JWTs are read from the bearer token only: X-API-Key is not a JWT source.
    let token = jwt(SECRET, &good);
    let response = post(
        &server.url,
        &[ACCEPT_BOTH, JSON, ("x-api-key", token.as_str())],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_rejected(
        &response,
        StatusCode::UNAUTHORIZED,
        Some(&www_missing()),
        missing_body(),
    );
}

#[tokio::test]
async fn jwt_scopes_come_from_scope_and_scp() {
    let policy = ScopePolicy::new()
        .require(["mcp:read"])
        .tool("echo", ["mcp:echo"]);
    let server = protected(jwt_authenticator(), |s| s.scopes(policy)).await;
    let token = |extra: Value| {
        let mut c = json!({ "sub": "alice", "aud": RESOURCE, "exp": now() + 300 });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        bearer(&jwt(SECRET, &c))
    };
    for extra in [
        json!({ "scope": "mcp:read mcp:echo" }),
        json!({ "scp": ["mcp:read", "mcp:echo"] }),
        json!({ "scp": "mcp:read mcp:echo" }),
        json!({ "scope": "mcp:read", "scp": ["mcp:echo"] }),
    ] {
        let authorization = token(extra.clone());
        let auth = [("authorization", authorization.as_str())];
        let session = open_session(&server.url, &auth).await;
        assert_echo(&server.url, &session, &auth, &extra.to_string()).await;
    }
    // Only the global scope: the session opens, echo needs more.
    let authorization = token(json!({ "scp": ["mcp:read"] }));
    let auth = [("authorization", authorization.as_str())];
    let session = open_session(&server.url, &auth).await;
    let response = call_on(&server.url, &session, &auth, &echo_call(9, "x")).await;
    assert_eq!(response.0, StatusCode::FORBIDDEN, "{}", response.2);
    // No scope at all: even initialize is refused, naming the global scope.
    let authorization = token(json!({ "scope": "" }));
    let response = post(
        &server.url,
        &[ACCEPT_BOTH, JSON, ("authorization", authorization.as_str())],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_rejected(
        &response,
        StatusCode::FORBIDDEN,
        Some(&www_scope("mcp:read")),
        json!({ "jsonrpc": "2.0", "id": 1, "error": { "code": -32000, "message": "Forbidden: insufficient scope", "data": { "error": "insufficient_scope", "required_scopes": ["mcp:read"] } } }),
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Challenges with hostile input (seed defect #7)
// ---------------------------------------------------------------------------------------------

const EVIL_DESCRIPTION: &str = "evil \"x\" \\ \r\nSet-Cookie: a=b";

/// Refuses every bearer token with a description chosen by the token.
fn hostile_authenticator() -> impl Authenticator {
    authenticate_fn(|c: &Credentials| {
        let outcome = match c.bearer() {
            None => Err(AuthError::missing_credentials()),
            Some("evil") => Err(AuthError::invalid_token(EVIL_DESCRIPTION)),
            Some("unicode") => Err(AuthError::invalid_token("caf\u{e9}\u{0}\tend \u{2028}!")),
            Some("long") => Err(AuthError::invalid_token("x".repeat(1000))),
            Some("scopes") => Err(AuthError::insufficient_scope(["a\"b", "c\\d"])),
            Some("down") => Err(AuthError::unavailable()),
            Some(_) => Ok(Principal::new("nobody-special")),
        };
        async move { outcome }
    })
}

#[tokio::test]
async fn hostile_error_descriptions_are_escaped_in_one_header() {
    let challenge = ChallengeLayer::for_metadata(&metadata())
        .realm("mcp \"prod\"\r\nX-Evil: 1")
        .scope(["mcp:read", "a\"b"]);
    let server = protected(hostile_authenticator(), |s| s.challenge(challenge)).await;
    let head = r#"Bearer realm="mcp \"prod\"  X-Evil: 1""#;
    let tail = format!(r#"resource_metadata="{PRM}""#);
    let cases = [
        (
            "evil",
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"{head}, error="invalid_token", error_description="evil \"x\" \\   Set-Cookie: a=b", scope="mcp:read a\"b", {tail}"#
            )),
            invalid_body(EVIL_DESCRIPTION),
        ),
        (
            "unicode",
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"{head}, error="invalid_token", error_description="caf?  end ?!", scope="mcp:read a\"b", {tail}"#
            )),
            invalid_body("caf\u{e9}\u{0}\tend \u{2028}!"),
        ),
        (
            "long",
            StatusCode::UNAUTHORIZED,
            Some(format!(
                r#"{head}, error="invalid_token", error_description="{}", scope="mcp:read a\"b", {tail}"#,
                "x".repeat(256)
            )),
            invalid_body(&"x".repeat(1000)),
        ),
        (
            // A 403 names the scopes of its error, not the configured ones.
            "scopes",
            StatusCode::FORBIDDEN,
            Some(format!(
                r#"{head}, error="insufficient_scope", error_description="Insufficient scope", scope="a\"b c\\d", {tail}"#
            )),
            json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32000, "message": "Forbidden: insufficient scope", "data": { "error": "insufficient_scope", "required_scopes": ["a\"b", "c\\d"] } } }),
        ),
        (
            "down",
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            error_body(
                Value::Null,
                "Service Unavailable: the credentials could not be verified",
                None,
            ),
        ),
    ];
    for (token, status, www, body) in cases {
        let authorization = bearer(token);
        let response = post(
            &server.url,
            &[ACCEPT_BOTH, JSON, ("authorization", authorization.as_str())],
            PING,
        )
        .await;
        assert_rejected(&response, status, www.as_deref(), body);
    }

    // On the wire: one WWW-Authenticate line, no injected header, no stray CR or LF.
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer evil\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PING}",
        server.addr,
        PING.len()
    );
    let raw = raw_exchange(server.addr, request.as_bytes(), TIMEOUT).await;
    let (head_block, _) = raw.split_once("\r\n\r\n").expect("a response head");
    let lines: Vec<&str> = head_block.split("\r\n").collect();
    assert!(lines[0].starts_with("HTTP/1.1 401"), "{head_block}");
    for line in &lines {
        assert!(!line.contains(['\r', '\n']), "{line:?}");
        assert!(line.is_ascii(), "{line:?}");
    }
    let names: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
        .collect();
    assert_eq!(
        names.iter().filter(|n| *n == "www-authenticate").count(),
        1,
        "{head_block}"
    );
    assert!(
        !names.iter().any(|n| n == "set-cookie" || n == "x-evil"),
        "{head_block}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Step-up (403 insufficient_scope)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tool_scope_step_up_names_every_required_scope() {
    let policy = ScopePolicy::new()
        .require(["mcp"])
        .tool("echo", ["mcp:echo"]);
    let server = protected(jwt_authenticator(), |s| s.scopes(policy)).await;
    let basic = bearer(&jwt(SECRET, &claims("alice", "mcp")));
    let auth = [("authorization", basic.as_str())];
    let session = open_session(&server.url, &auth).await;
    let (status, _, body) = call_on(
        &server.url,
        &session,
        &auth,
        &request_body(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = call_on(
        &server.url,
        &session,
        &auth,
        &tool_call(3, "add", json!({ "a": 2, "b": 3 })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a tool without its own scope: {body}"
    );

    let response = call_on(&server.url, &session, &auth, &echo_call(7, "step up")).await;
    assert_rejected(
        &response,
        StatusCode::FORBIDDEN,
        Some(&www_scope("mcp mcp:echo")),
        json!({ "jsonrpc": "2.0", "id": 7, "error": { "code": -32000, "message": "Forbidden: insufficient scope", "data": { "error": "insufficient_scope", "required_scopes": ["mcp", "mcp:echo"] } } }),
    );
    // A batch with the call is refused the same way, with that call's id.
    let batch = format!("[{},{}]", PING, echo_call(8, "in a batch"));
    let response = call_on(&server.url, &session, &auth, &batch).await;
    assert_eq!(response.0, StatusCode::FORBIDDEN, "{}", response.2);
    assert_eq!(json_body(&response.2)["id"], 8);

    // The re-authorized token (same subject, more scopes) continues the same session.
    let stepped = bearer(&jwt(SECRET, &claims("alice", "mcp mcp:echo")));
    assert_echo(
        &server.url,
        &session,
        &[("authorization", stepped.as_str())],
        "step up",
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. Sessions are bound to the principal (seed defect #10)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_session_replayed_by_another_principal_is_unknown() {
    let server = protected(api_keys(), |s| s).await;
    let owner = [("x-api-key", KEY)];
    let other = [("x-api-key", KEY2)];
    let session = open_session(&server.url, &owner).await;

    // Exactly as if the session did not exist.
    let unknown = call_on(&server.url, "no-such-session", &other, PING).await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND);
    assert_eq!(
        json_body(&unknown.2)["error"]["code"],
        -32001,
        "{}",
        unknown.2
    );
    let replayed = call_on(&server.url, &session, &other, PING).await;
    assert_eq!(replayed.0, unknown.0);
    assert_eq!(replayed.2, unknown.2);
    assert_eq!(
        header(&replayed.1, "content-type"),
        header(&unknown.1, "content-type")
    );
    let base = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", LATEST),
    ];
    let (status, _, _) = get(&server.url, &with(&with(&base, &[ACCEPT_SSE]), &other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "GET by another principal");
    let (status, _, _) = delete(&server.url, &with(&base, &other)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "DELETE by another principal");

    // The owner still has it.
    let (status, _, body) = call_on(&server.url, &session, &owner, PING).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_echo(&server.url, &session, &owner, "still mine").await;
}

#[tokio::test]
async fn the_same_principal_may_use_another_token() {
    let server = protected(jwt_authenticator(), |s| s).await;
    let first = bearer(&jwt(
        SECRET,
        &json!({ "sub": "alice", "aud": RESOURCE, "exp": now() + 300, "jti": "1" }),
    ));
    let second = bearer(&jwt(
        SECRET,
        &json!({ "sub": "alice", "aud": RESOURCE, "exp": now() + 600, "jti": "2" }),
    ));
    let bob = bearer(&jwt(SECRET, &claims("bob", "")));
    let session = open_session(&server.url, &[("authorization", first.as_str())]).await;
    assert_echo(
        &server.url,
        &session,
        &[("authorization", second.as_str())],
        "same subject",
    )
    .await;
    let (status, _, _) = call_on(
        &server.url,
        &session,
        &[("authorization", bob.as_str())],
        PING,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob on alice's session");
}

// ---------------------------------------------------------------------------------------------
// 6. Origin and CORS
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_evil_origin_with_a_good_host_is_403() {
    let server = protected(api_keys(), |s| {
        s.legacy_sse("/sse", "/messages")
            .origin(OriginLayer::localhost().allow_hosts(["localhost", "127.0.0.1"]))
    })
    .await;
    let host = format!("localhost:{}", server.addr.port());
    for origin in [
        EVIL,
        "http://localhost.evil.com",
        "null",
        "http://127.0.0.1.evil.com",
    ] {
        for auth in [&[("x-api-key", KEY)][..], &[][..]] {
            for (method, path) in [(Method::POST, "/mcp"), (Method::GET, "/sse")] {
                let response = send(
                    method.clone(),
                    &format!("{}{path}", server.base),
                    &with(
                        &[
                            ACCEPT_BOTH,
                            JSON,
                            ("origin", origin),
                            ("host", host.as_str()),
                        ],
                        auth,
                    ),
                    initialize_body(1, LATEST),
                )
                .await;
                assert_rejected(
                    &response,
                    StatusCode::FORBIDDEN,
                    None,
                    error_body(Value::Null, "Forbidden: Origin not allowed", None),
                );
                assert!(
                    response.1.get("access-control-allow-origin").is_none(),
                    "{origin}"
                );
            }
        }
    }
    assert_eq!(server.sessions().len(), 0);
}

fn assert_exposes_mcp_headers(headers: &HeaderMap, origin: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), origin);
    let exposed = header(headers, "access-control-expose-headers").to_ascii_lowercase();
    for name in ["mcp-session-id", "mcp-protocol-version", "www-authenticate"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed:?}");
    }
    let vary = header(headers, "vary").to_ascii_lowercase();
    assert!(vary.contains("origin"), "vary {vary:?}");
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_headers_on_answers_and_challenges() {
    let server = protected(api_keys(), |s| {
        s.origin(OriginLayer::localhost().allow_origin(APP))
            .cors(McpCors::new().allow_origin(APP))
    })
    .await;
    for origin in [APP, "http://localhost:6274"] {
        let (status, headers, body) = post(
            &server.url,
            &[ACCEPT_BOTH, JSON, ("origin", origin), ("x-api-key", KEY)],
            &initialize_body(1, LATEST),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_exposes_mcp_headers(&headers, origin);
        assert!(headers.get("access-control-allow-credentials").is_none());

        // The challenge is readable by the page: CORS headers on the 401 too.
        let response = post(
            &server.url,
            &[ACCEPT_BOTH, JSON, ("origin", origin)],
            &initialize_body(1, LATEST),
        )
        .await;
        assert_rejected(
            &response,
            StatusCode::UNAUTHORIZED,
            Some(&www_missing()),
            missing_body(),
        );
        assert_exposes_mcp_headers(&response.1, origin);
    }
    // Credentialed CORS echoes the origin, never `*`.
    let server = protected(api_keys(), |s| {
        s.origin(OriginLayer::localhost().allow_origin(APP))
            .cors(McpCors::new().allow_origin(APP).allow_credentials(true))
    })
    .await;
    let (status, headers, _) = post(
        &server.url,
        &[ACCEPT_BOTH, JSON, ("origin", APP), ("x-api-key", KEY)],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_exposes_mcp_headers(&headers, APP);
    assert_eq!(header(&headers, "access-control-allow-credentials"), "true");
}

#[tokio::test]
async fn a_wildcard_origin_never_comes_with_credentials() {
    for cors in [
        McpCors::new().allow_credentials(true).any_origin(),
        McpCors::new().any_origin().allow_credentials(true),
    ] {
        let server = protected(api_keys(), |s| s.origin(OriginLayer::any()).cors(cors)).await;
        let origin = "https://anywhere.example";
        let (status, headers, body) = post(
            &server.url,
            &[ACCEPT_BOTH, JSON, ("origin", origin), ("x-api-key", KEY)],
            &initialize_body(1, LATEST),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(header(&headers, "access-control-allow-origin"), "*");
        assert!(headers.get("access-control-allow-credentials").is_none());
        let (status, headers, _) = send(
            Method::OPTIONS,
            &server.url,
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization"),
            ],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "access-control-allow-origin"), "*");
        assert!(headers.get("access-control-allow-credentials").is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Protected-resource metadata (RFC 9728)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn protected_resource_metadata_is_public_and_exact() {
    let server = protected(api_keys(), |s| s).await;
    let document = json!({
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
    });
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        for origin in [&[][..], &[("origin", EVIL)][..]] {
            let (status, headers, body) = get(&format!("{}{path}", server.base), origin).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(header(&headers, "content-type"), "application/json");
            assert_eq!(header(&headers, "access-control-allow-origin"), "*");
            assert_eq!(json_body(&body), document, "{path}");
            assert_eq!(
                body,
                format!(
                    r#"{{"resource":"{RESOURCE}","authorization_servers":["{ISSUER}"],"bearer_methods_supported":["header"]}}"#
                )
            );
        }
        let (status, headers, _) = post(&format!("{}{path}", server.base), &[JSON], "{}").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(header(&headers, "allow"), "GET, HEAD, OPTIONS");
    }

    // The resource is served exactly as configured (trailing slash, port, query kept), at the
    // path-inserted location the challenge names.
    let resource = "http://127.0.0.1:9/Tenant/mcp/?x=1";
    let custom = ProtectedResourceMetadata::new(resource)
        .unwrap()
        .authorization_server("http://127.0.0.1:9/as/")
        .authorization_server(ISSUER)
        .scopes_supported(["mcp:read", "mcp:write"])
        .resource_name("Test server");
    assert_eq!(
        custom.metadata_url(),
        "http://127.0.0.1:9/.well-known/oauth-protected-resource/Tenant/mcp/?x=1"
    );
    let server = spawn(stack().authenticate(api_keys()).protected_resource(custom)).await;
    let (status, _, body) = get(
        &format!(
            "{}/.well-known/oauth-protected-resource/Tenant/mcp/",
            server.base
        ),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!(
            r#"{{"resource":"{resource}","authorization_servers":["http://127.0.0.1:9/as/","{ISSUER}"],"scopes_supported":["mcp:read","mcp:write"],"bearer_methods_supported":["header"],"resource_name":"Test server"}}"#
        )
    );
    let (status, headers, _) = post(&server.url, &[ACCEPT_BOTH, JSON], PING).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&headers, "www-authenticate"),
        r#"Bearer resource_metadata="http://127.0.0.1:9/.well-known/oauth-protected-resource/Tenant/mcp/?x=1""#
    );
}

/// `metadata.rs`: the document is public, "`Access-Control-Allow-Origin: *`, preflights answered"
/// (and `mcp-http-spec.md` §3 A2 [rec]: PRM with CORS `*`). In the stack, the CORS layer sits
/// outside the router and answers every OPTIONS with the MCP origin policy, so a browser client
/// on an origin not in the CORS list fails the preflight its PRM fetch needs (the TS SDK sends
/// `MCP-Protocol-Version` with it).
#[tokio::test]
async fn metadata_preflight_from_any_origin_is_allowed() {
    let server = protected(api_keys(), |s| s).await;
    let (status, headers, _) = send(
        Method::OPTIONS,
        &format!("{}/.well-known/oauth-protected-resource/mcp", server.base),
        &[
            ("origin", "https://web-client.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "mcp-protocol-version"),
        ],
        "",
    )
    .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(header(&headers, "access-control-allow-origin"), "*");
}

// ---------------------------------------------------------------------------------------------
// 8. Token introspection (RFC 7662)
// ---------------------------------------------------------------------------------------------

/// The answers of the test introspection endpoint.
fn introspection_answer(token: &str) -> (StatusCode, Value) {
    let exp = now() + 300;
    let answer = match token {
        "tok-active" | "a+b/c=" => {
            json!({ "active": true, "sub": "alice", "client_id": "c1", "aud": RESOURCE, "scope": "mcp", "exp": exp })
        }
        "tok-aud-array" => {
            json!({ "active": true, "sub": "alice", "aud": ["https://other.example.com", RESOURCE], "exp": exp })
        }
        "tok-inactive" => json!({ "active": false }),
        "tok-other-aud" => {
            json!({ "active": true, "sub": "alice", "aud": "https://other.example.com/mcp", "exp": exp })
        }
        "tok-no-aud" => json!({ "active": true, "sub": "alice", "exp": exp }),
        "tok-expired" => {
            json!({ "active": true, "sub": "alice", "aud": RESOURCE, "exp": now() - 5 })
        }
        "tok-500" => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": "boom" }),
            );
        }
        _ => json!({ "active": false }),
    };
    (StatusCode::OK, answer)
}

#[tokio::test]
async fn introspection_active_inactive_and_audience() {
    let endpoint = IntrospectionServer::start(introspection_answer).await;
    let introspection = IntrospectionAuthenticator::new(&endpoint.url, RESOURCE)
        .unwrap()
        .client_credentials("mcp-server", "s3cret");
    let server = protected(introspection, |s| s).await;

    for token in ["tok-active", "tok-aud-array", "a+b/c="] {
        let authorization = bearer(token);
        let auth = [("authorization", authorization.as_str())];
        let session = open_session(&server.url, &auth).await;
        assert_echo(&server.url, &session, &auth, token).await;
    }
    for (token, description) in [
        ("tok-inactive", "The access token is not active"),
        ("tok-unknown", "The access token is not active"),
        (
            "tok-other-aud",
            "The access token was not issued for this resource",
        ),
        // No `aud`: nothing shows the token was issued for this server.
        (
            "tok-no-aud",
            "The access token was not issued for this resource",
        ),
        ("tok-expired", "The access token expired"),
    ] {
        let authorization = bearer(token);
        for _ in 0..2 {
            let response = post(
                &server.url,
                &[ACCEPT_BOTH, JSON, ("authorization", authorization.as_str())],
                PING,
            )
            .await;
            assert_eq!(
                response.0,
                StatusCode::UNAUTHORIZED,
                "{token}: {}",
                response.2
            );
            assert_rejected(
                &response,
                StatusCode::UNAUTHORIZED,
                Some(&www_invalid(description)),
                invalid_body(description),
            );
        }
    }
    // An endpoint failure is a 503 without a challenge, and is not cached.
    for _ in 0..2 {
        let response = post(
            &server.url,
            &[ACCEPT_BOTH, JSON, ("authorization", "Bearer tok-500")],
            PING,
        )
        .await;
        assert_rejected(
            &response,
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            error_body(
                Value::Null,
                "Service Unavailable: the credentials could not be verified",
                None,
            ),
        );
    }

    // The cache: every token was introspected once (`tok-active` served the three requests of
    // its session; refusals are cached too), except the failing one.
    let hits = endpoint.all_hits();
    for token in [
        "tok-active",
        "tok-aud-array",
        "a+b/c=",
        "tok-inactive",
        "tok-unknown",
        "tok-other-aud",
        "tok-no-aud",
        "tok-expired",
    ] {
        assert_eq!(hits.get(token), Some(&1), "{token}: {hits:?}");
    }
    assert_eq!(hits.get("tok-500"), Some(&2), "{hits:?}");

    // The request: form-encoded token and hint, JSON accepted, client_secret_basic.
    let requests = endpoint.requests();
    let first = &requests[0];
    assert_eq!(first.body, "token=tok-active&token_type_hint=access_token");
    assert_eq!(first.content_type, "application/x-www-form-urlencoded");
    assert_eq!(first.accept, "application/json");
    assert_eq!(
        first.authorization.as_deref(),
        Some("Basic bWNwLXNlcnZlcjpzM2NyZXQ=")
    );
    let special = requests
        .iter()
        .find(|r| r.token == "a+b/c=")
        .expect("a+b/c=");
    assert!(
        special.body.starts_with("token=a%2Bb%2Fc%3D&"),
        "{}",
        special.body
    );
}

#[tokio::test]
async fn introspection_may_allow_a_missing_audience() {
    let endpoint = IntrospectionServer::start(introspection_answer).await;
    let introspection = IntrospectionAuthenticator::new(&endpoint.url, RESOURCE)
        .unwrap()
        .allow_missing_audience(true);
    let server = protected(introspection, |s| s).await;
    let auth = [("authorization", "Bearer tok-no-aud")];
    let session = open_session(&server.url, &auth).await;
    assert_echo(&server.url, &session, &auth, "no aud").await;
    // A wrong audience is still refused.
    let response = post(
        &server.url,
        &[ACCEPT_BOTH, JSON, ("authorization", "Bearer tok-other-aud")],
        PING,
    )
    .await;
    assert_eq!(response.0, StatusCode::UNAUTHORIZED);
    assert!(endpoint.requests()[0].authorization.is_none());
}
