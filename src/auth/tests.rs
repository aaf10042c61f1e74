//! The auth layers together, in the recommended order, around a stub MCP endpoint.

use super::*;
use crate::error_map::JsonRpcErrorLayer;
use crate::jsonrpc_body::JsonRpcBodyLayer;
use crate::jsonrpc_body::ParsedBody;
use crate::origin::OriginLayer;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::limit::RequestBodyLimitLayer;

const RESOURCE: &str = "https://mcp.example.com/mcp";
const PRM_URL: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp";
#[cfg(feature = "jwt")]
const SECRET: &[u8] = b"a shared secret of reasonable length";

fn metadata() -> ProtectedResourceMetadata {
    ProtectedResourceMetadata::new(RESOURCE)
        .unwrap()
        .authorization_server("https://as.example.com")
        .scopes_supported(["mcp"])
}

/// CORS would go first; then metadata, challenge, JSON-RPC errors, Origin, auth, body, scopes.
async fn send<A: Authenticator>(
    authenticator: A,
    request: Request<Full<Bytes>>,
) -> (http::response::Parts, String) {
    let service = ServiceBuilder::new()
        .layer(MetadataLayer::new(metadata()))
        .layer(ChallengeLayer::for_metadata(&metadata()).scope(["mcp"]))
        .layer(JsonRpcErrorLayer::new())
        .layer(OriginLayer::localhost())
        .layer(AuthLayer::new(authenticator))
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(JsonRpcBodyLayer::new())
        .layer(ScopeLayer::new(
            ScopePolicy::new()
                .require(["mcp"])
                .tool("admin", ["mcp:admin"]),
        ))
        .service_fn(|req: Request<ParsedBody>| async move {
            let who = req
                .extensions()
                .get::<Principal>()
                .map_or("nobody".to_owned(), |p| p.subject.to_string());
            Ok::<_, Infallible>(Response::new(Full::from(who)))
        });
    let (parts, body) = service.oneshot(request).await.unwrap().into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts, String::from_utf8(body.to_vec()).unwrap())
}

fn api_keys() -> ApiKeys {
    ApiKeys::new().key("good-key").scopes(["mcp"])
}

fn post() -> http::request::Builder {
    Request::post("/mcp")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
}

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn www(parts: &http::response::Parts) -> &str {
    parts.headers[header::WWW_AUTHENTICATE].to_str().unwrap()
}

#[tokio::test]
async fn metadata_needs_no_credentials() {
    let request = Request::get("/.well-known/oauth-protected-resource/mcp")
        .body(Full::default())
        .unwrap();
    let (parts, body) = send(api_keys(), request).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert_eq!(
        body,
        r#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://as.example.com"],"scopes_supported":["mcp"],"bearer_methods_supported":["header"]}"#
    );
}

#[tokio::test]
async fn no_credentials_get_the_discovery_challenge() {
    let (parts, body) = send(api_keys(), post().body(Full::from(PING)).unwrap()).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&parts),
        format!(r#"Bearer scope="mcp", resource_metadata="{PRM_URL}""#)
    );
    assert_eq!(
        parts.headers[header::CONTENT_TYPE],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Unauthorized: authentication required"}}"#
    );
}

#[tokio::test]
async fn a_bad_key_is_invalid_token_and_a_good_one_passes() {
    let request = post()
        .header("x-api-key", "bad-key")
        .body(Full::from(PING))
        .unwrap();
    let (parts, body) = send(api_keys(), request).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        www(&parts),
        format!(
            r#"Bearer error="invalid_token", error_description="Invalid API key", scope="mcp", resource_metadata="{PRM_URL}""#
        )
    );
    assert!(
        body.contains(r#""message":"Unauthorized: Invalid API key""#),
        "{body}"
    );

    for (name, value) in [
        ("x-api-key", "good-key"),
        ("authorization", "Bearer good-key"),
    ] {
        let request = post().header(name, value).body(Full::from(PING)).unwrap();
        let (parts, body) = send(api_keys(), request).await;
        assert_eq!(parts.status, StatusCode::OK, "{name}");
        assert_eq!(body, "api-key:0");
    }
}

#[tokio::test]
async fn query_tokens_are_400_even_with_a_good_header() {
    let request = Request::post("/mcp?access_token=good-key")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-api-key", "good-key")
        .body(Full::from(PING))
        .unwrap();
    let (parts, body) = send(api_keys(), request).await;
    assert_eq!(parts.status, StatusCode::BAD_REQUEST);
    assert!(www(&parts).starts_with(r#"Bearer error="invalid_request", error_description="Credentials are not accepted in the query string"#));
    assert!(body.contains(r#""code":-32000"#), "{body}");
}

#[tokio::test]
async fn preflights_pass_and_origin_is_checked_first() {
    let request = Request::options("/mcp")
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .body(Full::default())
        .unwrap();
    let (parts, body) = send(api_keys(), request).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body, "nobody");

    // A foreign Origin is a transport 403 (no challenge), whatever the credentials.
    let request = post()
        .header("origin", "http://evil.example.com")
        .body(Full::from(PING))
        .unwrap();
    let (parts, body) = send(api_keys(), request).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert!(parts.headers.get(header::WWW_AUTHENTICATE).is_none());
    assert!(body.contains("Origin not allowed"), "{body}");
}

#[tokio::test]
async fn global_scopes_are_required() {
    let keys = ApiKeys::new().key("good-key");
    let request = post()
        .header("x-api-key", "good-key")
        .body(Full::from(PING))
        .unwrap();
    let (parts, body) = send(keys, request).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_eq!(
        www(&parts),
        format!(
            r#"Bearer error="insufficient_scope", error_description="Insufficient scope", scope="mcp", resource_metadata="{PRM_URL}""#
        )
    );
    assert!(body.contains(r#""id":1"#), "{body}");
}

#[cfg(feature = "jwt")]
mod jwt {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, get_current_timestamp};
    use serde_json::{Value, json};

    fn token(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn claims(scope: &str) -> Value {
        json!({"sub": "alice", "aud": RESOURCE, "exp": get_current_timestamp() + 300, "scope": scope})
    }

    fn keys_or_jwt() -> Either<ApiKeys, JwtAuthenticator> {
        api_keys().or(JwtAuthenticator::new(RESOURCE).hs256_secret(SECRET))
    }

    fn call(tool: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        )
    }

    #[tokio::test]
    async fn api_keys_and_jwts_are_both_accepted() {
        let bearer = format!("Bearer {}", token(claims("mcp")));
        let request = post()
            .header("authorization", bearer)
            .body(Full::from(PING))
            .unwrap();
        let (parts, body) = send(keys_or_jwt(), request).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body, "alice");
        let request = post()
            .header("x-api-key", "good-key")
            .body(Full::from(PING))
            .unwrap();
        assert_eq!(send(keys_or_jwt(), request).await.1, "api-key:0");
    }

    #[tokio::test]
    async fn an_expired_jwt_says_so() {
        let mut expired = claims("mcp");
        expired["exp"] = json!(get_current_timestamp() - 600);
        let request = post()
            .header("authorization", format!("Bearer {}", token(expired)))
            .body(Full::from(PING))
            .unwrap();
        let (parts, _) = send(keys_or_jwt(), request).await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            www(&parts),
            format!(
                r#"Bearer error="invalid_token", error_description="The access token expired", scope="mcp", resource_metadata="{PRM_URL}""#
            )
        );
    }

    #[tokio::test]
    async fn tool_scopes_step_up_with_the_full_list() {
        let bearer = format!("Bearer {}", token(claims("mcp")));
        let body = call("admin");
        let request = post()
            .header("authorization", &bearer)
            .body(Full::from(body.clone()))
            .unwrap();
        let (parts, response) = send(keys_or_jwt(), request).await;
        assert_eq!(parts.status, StatusCode::FORBIDDEN);
        assert_eq!(
            www(&parts),
            format!(
                r#"Bearer error="insufficient_scope", error_description="Insufficient scope", scope="mcp mcp:admin", resource_metadata="{PRM_URL}""#
            )
        );
        assert_eq!(
            response,
            r#"{"jsonrpc":"2.0","id":"c-1","error":{"code":-32000,"message":"Forbidden: insufficient scope","data":{"error":"insufficient_scope","required_scopes":["mcp","mcp:admin"]}}}"#
        );
        // Other tools pass; with the scope, the admin tool passes.
        let body = call("echo");
        let request = post()
            .header("authorization", &bearer)
            .body(Full::from(body.clone()))
            .unwrap();
        assert_eq!(send(keys_or_jwt(), request).await.0.status, StatusCode::OK);
        let body = call("admin");
        let request = post()
            .header(
                "authorization",
                format!("Bearer {}", token(claims("mcp mcp:admin"))),
            )
            .body(Full::from(body.clone()))
            .unwrap();
        assert_eq!(send(keys_or_jwt(), request).await.0.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn the_stack_mounts_in_axum() {
    fn is_send<T: Send + 'static>(_: &T) {}
    let service = ServiceBuilder::new()
        .layer(MetadataLayer::new(metadata()))
        .layer(ChallengeLayer::for_metadata(&metadata()))
        .layer(JsonRpcErrorLayer::new())
        .layer(AuthLayer::new(api_keys()))
        .layer(RequestBodyLimitLayer::new(1024))
        .layer(JsonRpcBodyLayer::new())
        .layer(ScopeLayer::new(ScopePolicy::new()))
        .service_fn(|_: Request<ParsedBody>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("ok")))
        });
    is_send(
        &service
            .clone()
            .oneshot(Request::new(axum::body::Body::empty())),
    );
    let app: axum::Router = axum::Router::new().route_service("/mcp", service);
    let request = Request::get("/mcp")
        .header("x-api-key", "good-key")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request = Request::get("/mcp")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
