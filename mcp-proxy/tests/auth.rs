//! The `mcp-proxy` binary's auth and browser-security flags over real loopback sockets, and
//! end-to-end OAuth runs of the TypeScript SDK's headless client against the SDK's demo
//! authorization server (the layers themselves are tested in the library's `tests/auth.rs`).
//!
//! Every case asserts the status, the exact `WWW-Authenticate` header and the JSON-RPC error body
//! (`application/json; charset=utf-8`). References: `mcp-http-spec.md` §3 (A1–A7) and §5.4,
//! `mcp-proxy-behaviour.md` §1.3, §1.4.

mod support;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use support::auth::{IntrospectionServer, jwt, now};
use support::{
    DemoAs, EventStream, Proxy, free_port, header, must_send, run_node, sse_messages,
    ts_sdk_installed,
};

const RESOURCE: &str = "https://mcp.example.com/mcp";
const ISSUER: &str = "https://auth.example.com";
const KEY: &str = "key-0-6f1c2b9a5e";
const KEY2: &str = "key-1-a83d77e0c4";
const SECRET: &[u8] = b"an HS256 secret for the auth socket tests";
const LATEST: &str = "2025-11-25";
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
const APP: &str = "https://app.example.com";
const EVIL: &str = "http://evil.example.com";
/// The `Accept` a conforming POST sends.
const ACCEPT_BOTH: Head<'_> = ("accept", "application/json, text/event-stream");
/// `Content-Type: application/json`.
const JSON: Head<'_> = ("content-type", "application/json");
/// `Accept: text/event-stream`, for GET.
const ACCEPT_SSE: Head<'_> = ("accept", "text/event-stream");

type Head<'a> = (&'a str, &'a str);
type Exchange = (StatusCode, HeaderMap, String);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Sends a request and reads the whole response.
async fn send(
    method: Method,
    url: &str,
    headers: &[Head<'_>],
    body: impl Into<String>,
) -> Exchange {
    let reply = must_send(method, url, headers, body.into()).await;
    (reply.status, reply.headers, reply.body)
}

async fn post(url: &str, headers: &[Head<'_>], body: &str) -> Exchange {
    send(Method::POST, url, headers, body).await
}

async fn get(url: &str, headers: &[Head<'_>]) -> Exchange {
    send(Method::GET, url, headers, "").await
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

/// An `initialize` request body.
fn initialize_body(id: i64, version: &str) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": { "name": "auth-test", "version": "0" },
        },
    })
    .to_string()
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
    let headers = [
        ACCEPT_BOTH,
        JSON,
        ("mcp-protocol-version", LATEST),
        ("mcp-session-id", session),
    ];
    post(url, &with(&headers, auth), body).await
}

fn echo_call(id: i64, text: &str) -> String {
    let params = json!({ "name": "echo", "arguments": { "text": text } });
    json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }).to_string()
}

/// The one JSON-RPC message of a JSON or SSE body.
fn one_message(headers: &HeaderMap, body: &str) -> Value {
    if header(headers, "content-type").starts_with("text/event-stream") {
        let mut messages = sse_messages(body);
        assert_eq!(messages.len(), 1, "one message in {body:?}");
        return messages.remove(0);
    }
    json_body(body)
}

fn json_body(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// Calls `echo` on `session` and checks the answer.
async fn assert_echo(url: &str, session: &str, auth: &[Head<'_>], text: &str) {
    let (status, headers, body) = call_on(url, session, auth, &echo_call(5, text)).await;
    assert_eq!(status, StatusCode::OK, "echo: {body}");
    let answer = one_message(&headers, &body);
    assert_eq!(answer["id"], 5, "{body}");
    assert_eq!(answer["result"]["content"][0]["text"], text, "{body}");
}

/// CORS headers on an answer to `origin`, exposing what an MCP client reads.
fn assert_exposes_mcp_headers(headers: &HeaderMap, origin: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), origin);
    let exposed = header(headers, "access-control-expose-headers").to_ascii_lowercase();
    for name in ["mcp-session-id", "mcp-protocol-version", "www-authenticate"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed:?}");
    }
    let vary = header(headers, "vary").to_ascii_lowercase();
    assert!(vary.contains("origin"), "vary {vary:?}");
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

// ---------------------------------------------------------------------------------------------
// 9. The mcp-proxy binary's flags
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn binary_api_keys_protect_both_transports() {
    let proxy = Proxy::builtin(&[
        "--api-key",
        &format!("{KEY},{KEY2}"),
        "--apiKey",
        "third-key-xyz",
    ]);
    let url = proxy.url().clone();
    let sse = format!("{}/sse", proxy.base);
    // No --resource: no metadata, a bare challenge.
    for target in [&url, &sse] {
        let response = send(
            if target == &url {
                Method::POST
            } else {
                Method::GET
            },
            target,
            &[ACCEPT_BOTH, JSON, ACCEPT_SSE],
            initialize_body(1, LATEST),
        )
        .await;
        assert_rejected(
            &response,
            StatusCode::UNAUTHORIZED,
            Some("Bearer"),
            missing_body(),
        );
    }
    let response = post(
        &url,
        &[ACCEPT_BOTH, JSON, ("x-api-key", "wrong")],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_rejected(
        &response,
        StatusCode::UNAUTHORIZED,
        Some(r#"Bearer error="invalid_token", error_description="Invalid API key""#),
        invalid_body("Invalid API key"),
    );
    let bearer_key = bearer(KEY2);
    for auth in [
        [("x-api-key", KEY)],
        [("authorization", bearer_key.as_str())],
        [("x-api-key", "third-key-xyz")],
    ] {
        let session = open_session(&url, &auth).await;
        assert_echo(&url, &session, &auth, "through the binary").await;
        let (status, _, _) = call_on(&url, &session, &[("x-api-key", "wrong")], PING).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let stream =
        EventStream::request(Method::GET, &sse, &[ACCEPT_SSE, ("x-api-key", KEY)], "").await;
    assert_eq!(stream.status, StatusCode::OK);
    drop(stream);
    let (status, _, _) = post(
        &format!("{}/messages?sessionId=x", proxy.base),
        &[ACCEPT_BOTH, JSON],
        PING,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "/messages without a key");
    let response = post(
        &format!("{url}?api_key={KEY}"),
        &[ACCEPT_BOTH, JSON, ("x-api-key", KEY)],
        PING,
    )
    .await;
    assert_eq!(response.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&response.1, "www-authenticate"),
        r#"Bearer error="invalid_request", error_description="Credentials are not accepted in the query string; use the Authorization header""#
    );
    let (status, _, body) = get(&format!("{}/ping", proxy.base), &[]).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "pong"));
    for auth in [&[][..], &[("x-api-key", KEY)][..]] {
        let (status, _, _) = get(&format!("{}/nope", proxy.base), auth).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = get(
            &format!("{}/.well-known/oauth-protected-resource/mcp", proxy.base),
            auth,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "no --resource, no metadata");
    }
    let (status, headers, _) = send(
        Method::OPTIONS,
        &url,
        &[
            ("origin", "http://localhost:6274"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-api-key"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", proxy.log());
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        "http://localhost:6274"
    );
}

#[tokio::test]
async fn binary_browser_security_flags() {
    let proxy = Proxy::builtin(&[
        "--api-key",
        KEY,
        "--allowed-origin",
        APP,
        "--cors-allow-header",
        "X-Custom-Auth",
    ]);
    let (status, headers, _) = send(
        Method::OPTIONS,
        &proxy.url(),
        &[
            ("origin", APP),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "x-custom-auth, x-api-key"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "access-control-allow-origin"), APP);
    let allowed = header(&headers, "access-control-allow-headers").to_ascii_lowercase();
    assert!(allowed.contains("x-custom-auth"), "{allowed}");
    let (status, headers, body) = post(
        &proxy.url(),
        &[ACCEPT_BOTH, JSON, ("origin", APP), ("x-api-key", KEY)],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_exposes_mcp_headers(&headers, APP);
    let response = post(
        &proxy.url(),
        &[ACCEPT_BOTH, JSON, ("origin", EVIL), ("x-api-key", KEY)],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_rejected(
        &response,
        StatusCode::FORBIDDEN,
        None,
        error_body(Value::Null, "Forbidden: Origin not allowed", None),
    );
}

#[tokio::test]
async fn binary_jwt_scopes_and_metadata_flags() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let resource = format!("{base}/mcp");
    let prm = format!("{base}/.well-known/oauth-protected-resource/mcp");
    let secret = std::str::from_utf8(SECRET).unwrap();
    let port_arg = port.to_string();
    let proxy = Proxy::builtin(&[
        "--port",
        &port_arg,
        "--resource",
        &resource,
        "--authorization-server",
        ISSUER,
        "--jwt-secret",
        secret,
        "--required-scope",
        "mcp",
        "--tool-scope",
        "echo=mcp:echo",
    ]);
    assert_eq!(proxy.url(), resource);

    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let (status, headers, body) = get(&format!("{base}{path}"), &[]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, "access-control-allow-origin"), "*");
        assert_eq!(
            body,
            format!(
                r#"{{"resource":"{resource}","authorization_servers":["{ISSUER}"],"scopes_supported":["mcp"],"bearer_methods_supported":["header"]}}"#
            )
        );
    }
    // The challenge names the scope every request needs (--required-scope).
    let response = post(&resource, &[ACCEPT_BOTH, JSON], &initialize_body(1, LATEST)).await;
    assert_rejected(
        &response,
        StatusCode::UNAUTHORIZED,
        Some(&format!(r#"Bearer scope="mcp", resource_metadata="{prm}""#)),
        missing_body(),
    );

    let token = |scope: &str| {
        bearer(&jwt(
            SECRET,
            &json!({ "sub": "alice", "aud": resource, "exp": now() + 300, "scope": scope }),
        ))
    };
    // A token for another resource (the in-process tests' one) is refused.
    let foreign = bearer(&jwt(SECRET, &claims("alice", "mcp mcp:echo")));
    let response = post(
        &resource,
        &[ACCEPT_BOTH, JSON, ("authorization", foreign.as_str())],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(response.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response.1, "www-authenticate"),
        format!(
            r#"Bearer error="invalid_token", error_description="The access token was not issued for this resource", scope="mcp", resource_metadata="{prm}""#
        )
    );

    let basic = token("mcp");
    let auth = [("authorization", basic.as_str())];
    let session = open_session(&resource, &auth).await;
    let response = call_on(&resource, &session, &auth, &echo_call(7, "step up")).await;
    assert_rejected(
        &response,
        StatusCode::FORBIDDEN,
        Some(&format!(
            r#"Bearer error="insufficient_scope", error_description="Insufficient scope", scope="mcp mcp:echo", resource_metadata="{prm}""#
        )),
        json!({ "jsonrpc": "2.0", "id": 7, "error": { "code": -32000, "message": "Forbidden: insufficient scope", "data": { "error": "insufficient_scope", "required_scopes": ["mcp", "mcp:echo"] } } }),
    );
    let stepped = token("mcp mcp:echo");
    assert_echo(
        &resource,
        &session,
        &[("authorization", stepped.as_str())],
        "step up",
    )
    .await;
    // Without the global scope, nothing passes.
    let none = token("mcp:echo");
    let response = post(
        &resource,
        &[ACCEPT_BOTH, JSON, ("authorization", none.as_str())],
        &initialize_body(1, LATEST),
    )
    .await;
    assert_eq!(response.0, StatusCode::FORBIDDEN, "{}", proxy.log());
}

/// MCP 2025-11-25 (spec §3 A3): the 401 challenge SHOULD carry `scope` (the scopes the request
/// needs). `mcp-proxy --required-scope` lists them in `scopes_supported` and in 403s, but the 401
/// challenge built by `McpStack::protected_resource` has no `scope`.
#[tokio::test]
async fn binary_401_challenge_names_the_required_scopes() {
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let port_arg = port.to_string();
    let secret = std::str::from_utf8(SECRET).unwrap();
    let _proxy = Proxy::builtin(&[
        "--port",
        &port_arg,
        "--resource",
        &resource,
        "--authorization-server",
        ISSUER,
        "--jwt-secret",
        secret,
        "--required-scope",
        "mcp",
    ]);
    let (status, headers, _) = post(&resource, &[ACCEPT_BOTH, JSON], PING).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&headers, "www-authenticate"),
        format!(
            r#"Bearer scope="mcp", resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp""#
        )
    );
}

#[tokio::test]
async fn binary_accepts_api_keys_jwts_and_introspected_tokens_together() {
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}/mcp");
    let endpoint = IntrospectionServer::start(move |token| match token {
        "opaque-good" => (
            StatusCode::OK,
            json!({ "active": true, "client_id": "client-9", "aud": format!("http://127.0.0.1:{port}/mcp"), "exp": now() + 300 }),
        ),
        _ => (StatusCode::OK, json!({ "active": false })),
    })
    .await;
    let port_arg = port.to_string();
    let secret = std::str::from_utf8(SECRET).unwrap();
    let proxy = Proxy::builtin(&[
        "--port",
        &port_arg,
        "--resource",
        &resource,
        "--authorization-server",
        ISSUER,
        "--api-key",
        KEY,
        "--jwt-secret",
        secret,
        "--introspection-url",
        &endpoint.url,
    ]);
    let jwt_token = bearer(&jwt(
        SECRET,
        &json!({ "sub": "alice", "aud": resource, "exp": now() + 300 }),
    ));
    for auth in [
        ("x-api-key", KEY),
        ("authorization", jwt_token.as_str()),
        ("authorization", "Bearer opaque-good"),
    ] {
        let session = open_session(&resource, &[auth]).await;
        assert_echo(&resource, &session, &[auth], "any of three").await;
    }
    assert_eq!(endpoint.hits("opaque-good"), 1);
    assert_eq!(endpoint.hits(KEY), 0, "an X-API-Key is never introspected");
    // A bad bearer token: the last authenticator's refusal is reported.
    let response = post(
        &resource,
        &[ACCEPT_BOTH, JSON, ("authorization", "Bearer opaque-bad")],
        PING,
    )
    .await;
    assert_eq!(response.0, StatusCode::UNAUTHORIZED, "{}", proxy.log());
    assert_eq!(
        header(&response.1, "www-authenticate"),
        format!(
            r#"Bearer error="invalid_token", error_description="The access token is not active", resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp""#
        )
    );
}

// ---------------------------------------------------------------------------------------------
// 10. End to end: the TS SDK's headless OAuth client, the SDK's demo authorization server
// ---------------------------------------------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

struct OauthRun {
    stdout: String,
    as_log: String,
    proxy_log: String,
}

impl OauthRun {
    #[track_caller]
    fn expect(&self, line: &str) {
        assert!(
            self.stdout.lines().any(|l| l == line),
            "missing line `{line}`\n{self}"
        );
    }

    fn count(&self, line: &str) -> usize {
        self.as_log.lines().filter(|l| l.ends_with(line)).count()
    }
}

impl std::fmt::Display for OauthRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "client stdout:\n{}\nauthorization server:\n{}\nproxy:\n{}",
            self.stdout, self.as_log, self.proxy_log
        )
    }
}

/// Starts the demo AS and `mcp-proxy` for it (`--resource http://127.0.0.1:PORT{resource_path}`,
/// extra flags `args`), runs the OAuth client against `http://127.0.0.1:PORT/mcp`.
fn oauth_run(
    resource_path: &str,
    args: &[&str],
) -> Option<(OauthRun, String, String, Proxy, DemoAs)> {
    if !ts_sdk_installed() {
        return None;
    }
    // The resource names the proxy's port, which must be known before the proxy starts.
    let port = free_port();
    let resource = format!("http://127.0.0.1:{port}{resource_path}");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let demo = DemoAs::start(&resource);
    let port_arg = port.to_string();
    let introspection = demo.introspection_url();
    let mut flags = vec![
        "--port",
        &port_arg,
        "--resource",
        &resource,
        "--authorization-server",
        &demo.issuer,
        "--introspection-url",
        &introspection,
    ];
    flags.extend_from_slice(args);
    let proxy = Proxy::builtin(&flags);
    let run = run_node("oauth-client.mjs", &[&url]);
    let outcome = OauthRun {
        stdout: run.stdout.clone(),
        as_log: demo.log(),
        proxy_log: proxy.log(),
    };
    if !run.exited(&outcome.to_string()).success() {
        panic!(
            "oauth-client failed ({:?})\nstderr:\n{}\n{outcome}",
            run.status, run.stderr
        );
    }
    Some((outcome, resource, demo.issuer.clone(), proxy, demo))
}

/// Issue 4's "done when": 401 → metadata → authorization server → token → tools → echo.
#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn oauth_end_to_end_with_the_sdk_demo_authorization_server() {
    let Some((run, resource, issuer, proxy, _demo)) = oauth_run("/mcp", &[]) else {
        return;
    };
    let base = resource.trim_end_matches("/mcp");
    let prm = format!("{base}/.well-known/oauth-protected-resource/mcp");
    let first = run.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(r#"http: POST {resource} -> 401 [Bearer resource_metadata="{prm}"]"#),
        "{run}"
    );
    for line in [
        format!("http: GET {prm} -> 200"),
        format!("http: GET {issuer}.well-known/oauth-authorization-server -> 200"),
        format!("http: POST {issuer}register -> 201"),
        format!("authorize: {issuer}authorize resource={resource} scope="),
        "unauthorized: as expected, authorization code received".to_owned(),
        format!("http: POST {issuer}token -> 200"),
        "token: type=bearer scope=".to_owned(),
        "echo -> hello oauth isError: false".to_owned(),
        "add -> 5 isError: false".to_owned(),
        format!("http: DELETE {resource} -> 200"),
        "done".to_owned(),
    ] {
        run.expect(&line);
    }
    let tools = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("tools: "))
        .unwrap_or_else(|| panic!("no tools line\n{run}"));
    for tool in ["echo", "add"] {
        assert!(
            tools.split(',').any(|t| t == tool),
            "{tool} not listed\n{run}"
        );
    }
    // One token, introspected once for the whole session (the cache).
    assert_eq!(run.count("POST /introspect -> 200"), 1, "{run}");
    assert_eq!(run.count("GET /authorize -> 302"), 1, "{run}");

    // Without a token, still a challenge; a token the authorization server does not know is
    // answered 401 `{"active":false}` by the demo server (RFC 7662 §2.2 says 200): a verdict on
    // the token, so the client gets 401 invalid_token and can re-authorize.
    runtime().block_on(async {
        let (status, headers, _) = post(&proxy.url(), &[ACCEPT_BOTH, JSON], PING).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&headers, "www-authenticate"),
            format!(r#"Bearer resource_metadata="{prm}""#)
        );
        let (status, headers, body) = post(
            &proxy.url(),
            &[
                ACCEPT_BOTH,
                JSON,
                ("authorization", "Bearer not-issued-by-the-as"),
            ],
            PING,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            header(&headers, "www-authenticate").contains(r#"error="invalid_token""#),
            "{headers:?}"
        );
    });
}

/// Step-up with a real client: `--required-scope mcp:tools` (first authorization, from
/// `scopes_supported`), `--tool-scope echo=mcp:echo` (403 → re-authorization with both scopes →
/// the same session continues).
#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn oauth_step_up_end_to_end() {
    let Some((run, resource, issuer, _proxy, _demo)) = oauth_run(
        "/mcp",
        &[
            "--required-scope",
            "mcp:tools",
            "--tool-scope",
            "echo=mcp:echo",
        ],
    ) else {
        return;
    };
    let prm = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        resource.trim_end_matches("/mcp")
    );
    for line in [
        format!("authorize: {issuer}authorize resource={resource} scope=mcp:tools"),
        "token: type=bearer scope=mcp:tools".to_owned(),
        format!(
            r#"http: POST {resource} -> 403 [Bearer error="insufficient_scope", error_description="Insufficient scope", scope="mcp:tools mcp:echo", resource_metadata="{prm}"]"#
        ),
        format!("authorize: {issuer}authorize resource={resource} scope=mcp:tools mcp:echo"),
        "step-up: tools/call echo needs authorization, exchanging the code".to_owned(),
        "token: type=bearer scope=mcp:tools mcp:echo".to_owned(),
        "echo -> hello oauth isError: false".to_owned(),
        "add -> 5 isError: false".to_owned(),
        "done".to_owned(),
    ] {
        run.expect(&line);
    }
    // One session throughout: a single initialize.
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with("session: "))
            .count(),
        1,
        "{run}"
    );
    // Two tokens, each introspected once.
    assert_eq!(run.count("POST /introspect -> 200"), 2, "{run}");
}

/// A resource without a path (`--resource http://127.0.0.1:PORT`, the MCP endpoint below it).
/// The SDK client sends `resource=http://127.0.0.1:PORT` verbatim, but the demo authorization
/// server keeps it as a `URL` and its introspection answers `aud: "http://127.0.0.1:PORT/"`
/// (`URL.href` adds the slash). For a resource without a path both spellings name the same
/// resource, so the token is accepted and the flow completes.
#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn oauth_end_to_end_with_a_pathless_resource() {
    let Some((run, _, _, _proxy, _demo)) = oauth_run("", &[]) else {
        return;
    };
    run.expect("echo -> hello oauth isError: false");
}
