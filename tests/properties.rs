//! Property tests of the HTTP surface on stable Rust (proptest): the header parsers and the SSE
//! framing, driven through the public layers with `tower::ServiceExt::oneshot` and arbitrary
//! input. Whatever a client sends, the answer is a well-formed response with a status from the
//! documented table (and a JSON-RPC error body for errors), and every message comes out of an
//! SSE stream exactly as it went in.
//!
//! 256 cases per property by default (a few seconds in all); `PROPTEST_CASES=5000 cargo test
//! --test properties` searches longer. The JSON-RPC parser's properties are unit tests
//! (`src/jsonrpc/proptests.rs`), where the fast path can be compared with the exact one.
//!
//! Sections: `Accept` · `Mcp-Session-Id` · `Last-Event-ID` · `Authorization` · the whole stack ·
//! SSE framing · routing headers (2026-07-28: the parsers are private, so their properties are in
//! `src/routing_headers.rs`, module `proptests`).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use mcp_tower_http::auth::{ApiKeys, AuthErrorKind, Credentials};
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::jsonrpc::{self, ErrorCode, ErrorObject, Id, Message, Payload};
use mcp_tower_http::sse::{EventId, MessageStream, Outgoing, SseLayer, StreamEvent};
use mcp_tower_http::{
    McpService, McpStack, RequestContext, SessionContext, TransportError, TransportErrorKind,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::fmt::Debug;
use std::time::Duration;
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt};

// ---------------------------------------------------------------------------------------------
// Harness

/// How long one response body may take; a property failing on a hung body says so.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `test` on `cases` inputs (or `PROPTEST_CASES`), writing nothing to the source tree, and
/// fails with proptest's minimal failing input.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: Debug,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
}

/// Sends one request and reads the whole answer (bounded by [`BODY_TIMEOUT`]).
async fn call<S, B>(service: &S, request: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let response = service.clone().oneshot(request).await.expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = tokio::time::timeout(BODY_TIMEOUT, body.collect())
        .await
        .unwrap_or_else(|_| panic!("body not finished within {BODY_TIMEOUT:?}"))
        .expect("body")
        .to_bytes();
    (parts.status, parts.headers, bytes)
}

fn request(method: Method, headers: &[(&str, HeaderValue)], body: &[u8]) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri("/mcp");
    for (name, value) in headers {
        request = request.header(*name, value.clone());
    }
    request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request")
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header value")
}

const ACCEPT_BOTH: &str = "application/json, text/event-stream";

fn post_headers(session: Option<&str>) -> Vec<(&'static str, HeaderValue)> {
    let mut headers = vec![
        ("accept", value(ACCEPT_BOTH)),
        ("content-type", value("application/json")),
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", value(session)));
    }
    headers
}

fn initialize_body(version: &str) -> Vec<u8> {
    json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": { "name": "properties", "version": "0" },
        },
    })
    .to_string()
    .into_bytes()
}

/// Opens a session on `service`; returns its id.
async fn open_session<S, B>(service: &S, version: &str, extra: &[(&str, HeaderValue)]) -> String
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let mut headers = post_headers(None);
    headers.extend(extra.iter().cloned());
    let (status, headers, body) = call(
        service,
        request(Method::POST, &headers, &initialize_body(version)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    headers["mcp-session-id"]
        .to_str()
        .expect("ascii session id")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Every byte string `HeaderValue` takes: visible ASCII, space, tab and obs-text (0x80-0xff).
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![4 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => 0x80u8..=0xff],
        0..40,
    )
}

fn arbitrary_header() -> impl Strategy<Value = HeaderValue> {
    header_bytes().prop_map(|b| HeaderValue::from_bytes(&b).expect("valid header bytes"))
}

/// Strings with the characters that break framings: CR, LF, CRLF, NUL, U+2028/9, NEL, quotes,
/// backslashes, non-BMP.
fn tricky_string() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(vec![
        "\r", "\n", "\r\n", "\0", "\u{2028}", "\u{2029}", "\u{85}", "\"", "\\", ":", " ", "\t",
        "a", "é", "😀", "data: x", "id: 9/9", "\u{feff}",
    ]);
    prop_oneof![
        prop::collection::vec(tricky, 0..10).prop_map(|parts| parts.concat()),
        any::<String>(),
    ]
}

/// Any JSON value a few levels deep; doubles are short (see `src/jsonrpc/proptests.rs` for why
/// long ones may move by one ULP).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-999_999i64..=999_999, -9i32..=9)
            .prop_map(|(m, e)| { json!(format!("{m}e{e}").parse::<f64>().unwrap_or(0.0)) }),
        tricky_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((tricky_string(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((tricky_string(), json_value()), 0..4)
        .prop_map(|members| Value::Object(members.into_iter().collect()))
}

fn params() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop_oneof![
        object(),
        prop::collection::vec(json_value(), 0..3).prop_map(Value::Array),
    ])
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        any::<i64>().prop_map(Id::Number),
        tricky_string().prop_map(|s| Id::String(s.into())),
    ]
}

fn error_object() -> impl Strategy<Value = ErrorObject> {
    (
        any::<i32>(),
        tricky_string(),
        prop::option::of(
            json_value().prop_filter("null data reads back as none", |v| !v.is_null()),
        ),
    )
        .prop_map(|(code, message, data)| ErrorObject {
            code: ErrorCode(code),
            message,
            data,
        })
}

/// Any message of the four kinds.
fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (id(), tricky_string(), params()).prop_map(|(id, m, p)| Message::request(id, m, p)),
        (tricky_string(), params()).prop_map(|(m, p)| Message::notification(m, p)),
        (id(), json_value()).prop_map(|(id, result)| Message::result(id, result)),
        (prop::option::of(id()), error_object()).prop_map(|(id, e)| Message::error(id, e)),
    ]
}

// ---------------------------------------------------------------------------------------------
// SSE, read the way a browser does

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

/// Parses an SSE body as the WHATWG algorithm does: lines end at CRLF, CR or LF; a blank line
/// dispatches; `:` starts a comment; one space after the colon is dropped; an unfinished event
/// at the end is discarded. Unlike a browser it keeps events with empty data (priming events),
/// so their ids can be checked.
fn parse_sse(text: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let (mut event, mut data, mut seen) = (SseEvent::default(), Vec::new(), false);
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        let line = &rest[..end];
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if line.is_empty() {
            if seen {
                event.data = data.join("\n");
                events.push(std::mem::take(&mut event));
            }
            (data, seen) = (Vec::new(), false);
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        seen = true;
        match field {
            "id" if !value.contains('\0') => event.id = Some(value.to_owned()),
            "event" => event.event = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    events
}

/// `<stream>/<seq>`, both plain decimal u64.
fn is_event_id(s: &str) -> bool {
    let decimal = |n: &str| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (n == "0" || !n.starts_with('0'))
            && n.parse::<u64>().is_ok()
    };
    s.split_once('/')
        .is_some_and(|(stream, seq)| decimal(stream) && decimal(seq))
}

/// Checks an SSE body byte by byte and returns its events: UTF-8, LF line ends only (a CR inside
/// a value would end the line for a client), only the lines the framing writes, each `data:`
/// one JSON text, every event finished.
fn check_sse(body: &[u8]) -> Result<Vec<SseEvent>, TestCaseError> {
    let text = std::str::from_utf8(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(!text.contains('\r'), "raw CR in {text:?}");
    prop_assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "unfinished event: {text:?}"
    );
    for line in text.split('\n') {
        let ok = line.is_empty()
            || line == ": keepalive"
            || line == "event: message"
            || line.strip_prefix("id: ").is_some_and(is_event_id)
            || line
                .strip_prefix("retry: ")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
            || line.strip_prefix("data: ").is_some_and(|d| {
                d.is_empty() || serde_json::from_str::<serde::de::IgnoredAny>(d).is_ok()
            });
        prop_assert!(ok, "unexpected line {line:?} in {text:?}");
    }
    Ok(parse_sse(text))
}

/// The messages of the events that carry data.
fn messages_of(events: &[SseEvent]) -> Result<Vec<Message>, TestCaseError> {
    events
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| {
            prop_assert_eq!(e.event.as_deref(), Some("message"));
            match Payload::parse(e.data.as_bytes()) {
                Ok(Payload::Single(m)) => Ok(m),
                other => Err(TestCaseError::fail(format!("{:?}: {other:?}", e.data))),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Error bodies: the documented status table

/// Statuses the stack documents (README, `session` and `auth` module tables).
const DOCUMENTED: [u16; 12] = [200, 202, 400, 401, 403, 404, 405, 406, 409, 413, 415, 503];

/// A rejection of the stack: `application/json` with one JSON-RPC error whose code fits the
/// status, plus the header the status promises.
fn check_error_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(body);
    prop_assert_eq!(
        headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes),
        Some(&b"application/json; charset=utf-8"[..]),
        "{} {}",
        status,
        text
    );
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| TestCaseError::fail(format!("{status}: not JSON ({e}): {text}")))?;
    prop_assert_eq!(&value["jsonrpc"], "2.0", "{}", text);
    prop_assert!(value.get("result").is_none(), "{}", text);
    prop_assert!(
        matches!(
            value.get("id"),
            Some(Value::Null | Value::String(_) | Value::Number(_))
        ),
        "id: {}",
        text
    );
    let code = value["error"]["code"].as_i64();
    prop_assert!(value["error"]["message"].is_string(), "{}", text);
    let codes: &[i64] = match status.as_u16() {
        400 => &[-32700, -32600, -32000],
        404 => &[-32001],
        _ => &[-32000],
    };
    prop_assert!(
        code.is_some_and(|c| codes.contains(&c)),
        "{} with {}",
        status,
        text
    );
    let promised = match status.as_u16() {
        401 => Some(header::WWW_AUTHENTICATE),
        405 => Some(header::ALLOW),
        _ => None,
    };
    if let Some(name) = promised {
        prop_assert!(headers.contains_key(&name), "{} without {}", status, name);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Accept

/// `Accept` as RFC 9110 lists media ranges, read independently of the layer: comma-separated
/// ranges, parameters after `;` ignored, case-insensitive, wildcards. (Like the layer, `q=0` is
/// not read as a refusal.)
fn accept_model(values: &[HeaderValue]) -> (bool, bool) {
    let (mut json, mut event_stream) = (false, false);
    for value in values {
        let text = String::from_utf8_lossy(value.as_bytes()).to_ascii_lowercase();
        for range in text.split(',') {
            let range = range.split(';').next().unwrap_or("");
            let range = range.trim_matches([' ', '\t']);
            json |= matches!(range, "application/json" | "application/*" | "*/*");
            event_stream |= matches!(range, "text/event-stream" | "text/*" | "*/*");
        }
    }
    (json, event_stream)
}

/// `Accept` lines built from media ranges (right, wrong, near-miss, odd case, parameters, odd
/// whitespace), or arbitrary bytes.
fn accept_lines() -> impl Strategy<Value = Vec<HeaderValue>> {
    let range = (
        prop::sample::select(vec![
            "application/json",
            "text/event-stream",
            "*/*",
            "application/*",
            "text/*",
            "text/html",
            "APPLICATION/JSON",
            "Text/Event-Stream",
            "application/jsonx",
            "application/json-seq",
            "text/event-streams",
            "application",
            "*",
            "",
            "application /json",
        ]),
        prop::sample::select(vec!["", ";q=0.9", "; charset=utf-8", ";q=0", " ;level=1"]),
        prop::sample::select(vec!["", " ", "\t", "  "]),
    )
        .prop_map(|(range, params, space)| format!("{space}{range}{params}{space}"));
    let line = prop::collection::vec(range, 0..4)
        .prop_map(|ranges| value(&ranges.join(",")))
        .boxed();
    prop::collection::vec(prop_oneof![4 => line, 1 => arbitrary_header()], 0..3)
}

/// A POST is refused with 406 exactly when `Accept` does not allow both JSON and SSE.
#[test]
fn accept_decides_406_for_posts() {
    let rt = runtime();
    check(256, accept_lines(), |lines| {
        rt.block_on(async {
            let service = ServiceBuilder::new().layer(SseLayer::new()).service_fn(
                |_: Request<Full<Bytes>>| async {
                    let mut response = Response::new(Full::<Bytes>::default());
                    let answer = Message::result(Id::Number(1), json!({}));
                    response.extensions_mut().insert(Outgoing::One(answer));
                    Ok::<_, Infallible>(response)
                },
            );
            let mut req = request(Method::POST, &[], b"");
            for line in &lines {
                req.headers_mut().append(header::ACCEPT, line.clone());
            }
            let response = service.oneshot(req).await.expect("infallible");
            let (json, event_stream) = accept_model(&lines);
            if json && event_stream {
                prop_assert_eq!(response.status(), StatusCode::OK, "{:?}", lines);
            } else {
                prop_assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE, "{:?}", lines);
                let kind = response
                    .extensions()
                    .get::<TransportError>()
                    .map(TransportError::kind);
                prop_assert_eq!(kind, Some(TransportErrorKind::NotAcceptable));
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Mcp-Session-Id

/// Values near a live session id: itself, changed in one place, cased, padded, cut; or any bytes.
fn session_id_near(live: String) -> impl Strategy<Value = Vec<u8>> {
    let edits =
        (any::<prop::sample::Index>(), 0x20u8..0x7f, 0..6u8).prop_map(move |(at, byte, how)| {
            let mut id = live.clone().into_bytes();
            let at = at.index(id.len());
            match how {
                0 => {}
                1 => id[at] = byte,
                2 => id.insert(at, byte),
                3 => {
                    id.remove(at);
                }
                4 => id.make_ascii_uppercase(),
                _ => id = [b" ", &id[..], b" "].concat(),
            }
            id
        });
    prop_oneof![3 => edits, 1 => header_bytes()]
}

/// Only the exact live id reaches the session; anything else is 404 with a `-32001` JSON-RPC
/// error, for POST, GET and DELETE alike, and never a panic.
#[test]
fn session_ids_route_exactly() {
    let rt = runtime();
    let service = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new()).into_service();
    let live = rt.block_on(open_session(&service, "2025-06-18", &[]));
    let strategy = (
        session_id_near(live.clone()),
        prop::sample::select(vec![Method::POST, Method::GET, Method::DELETE]),
    );
    // A DELETE of the live id ends it; later cases aim at a new one.
    let first = live.clone();
    let live = std::cell::RefCell::new(live);
    check(256, strategy, |(id, method)| {
        rt.block_on(async {
            let current = live.borrow().clone();
            let id = if id == first.as_bytes() {
                current.clone().into_bytes()
            } else {
                id
            };
            let mut headers = post_headers(None);
            headers.push((
                "mcp-session-id",
                HeaderValue::from_bytes(&id).expect("header bytes"),
            ));
            let body: &[u8] = match method {
                Method::POST => br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                _ => b"",
            };
            let response = service
                .clone()
                .oneshot(request(method.clone(), &headers, body))
                .await
                .expect("infallible");
            if id == current.as_bytes() {
                prop_assert_eq!(response.status(), StatusCode::OK, "{}", method);
                if method == Method::DELETE {
                    *live.borrow_mut() = open_session(&service, "2025-06-18", &[]).await;
                }
            } else {
                let (parts, body) = response.into_parts();
                let body = body.collect().await.expect("body").to_bytes();
                prop_assert_eq!(parts.status, StatusCode::NOT_FOUND, "{:?}", id);
                check_error_response(parts.status, &parts.headers, &body)?;
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Last-Event-ID

/// `EventId` prints as `<stream>/<seq>` and reads back.
#[test]
fn event_ids_round_trip() {
    check(256, (any::<u64>(), any::<u64>()), |(stream, seq)| {
        let id = EventId { stream, seq };
        let text = id.to_string();
        prop_assert!(is_event_id(&text), "{}", text);
        prop_assert_eq!(text.parse::<EventId>(), Ok(id));
        Ok(())
    });
}

/// Any string: parsing never panics, and what parses is two decimal numbers around one `/` and
/// prints back to the same id.
#[test]
fn event_id_garbage_never_panics() {
    let strategy = prop_oneof![
        any::<String>(),
        "[0-9+ -]{0,22}/[0-9+ /-]{0,22}",
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| format!("{a}/{b}")),
        Just(format!("{}0/1", u64::MAX)),
    ];
    check(256, strategy, |text| {
        if let Ok(id) = text.parse::<EventId>() {
            let (stream, seq) = text.split_once('/').unwrap_or_default();
            let plain = |n: &str| {
                let n = n.strip_prefix('+').unwrap_or(n);
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
            };
            prop_assert!(plain(stream) && plain(seq), "{:?} parsed", text);
            prop_assert_eq!(id.to_string().parse::<EventId>(), Ok(id));
        }
        Ok(())
    });
}

/// `Last-Event-ID` on a GET: garbage is 400 with a JSON-RPC error, the ids of the session's
/// stream resume it (200), and nothing else is answered.
#[test]
fn last_event_id_is_read_or_refused() {
    let rt = runtime();
    let service = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new()).into_service();
    // Every event id the session's streams sent: the initialize answer's and a call's.
    let (session, known) = rt.block_on(async {
        let ids = |body: &[u8]| -> Vec<String> {
            parse_sse(std::str::from_utf8(body).expect("utf-8"))
                .into_iter()
                .filter_map(|e| e.id)
                .collect()
        };
        let init = initialize_body("2025-11-25");
        let (_, headers, body) = call(&service, request(Method::POST, &post_headers(None), &init)).await;
        let session = headers["mcp-session-id"].to_str().expect("ascii").to_owned();
        let mut known = ids(&body);
        let call_body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
        let (status, _, body) =
            call(&service, request(Method::POST, &post_headers(Some(&session)), call_body)).await;
        assert_eq!(status, StatusCode::OK);
        known.extend(ids(&body));
        assert!(known.len() >= 4, "priming events and answers: {known:?}");
        (session, known)
    });
    let near_known = (prop::sample::select(known.clone()), "[ \t]{0,2}")
        .prop_map(|(id, pad)| HeaderValue::from_str(&format!("{pad}{id}{pad}")).expect("value"));
    let numbers = (0u64..4, 0u64..6).prop_map(|(a, b)| value(&format!("{a}/{b}")));
    let strategy = prop_oneof![2 => near_known, 1 => numbers, 2 => arbitrary_header()];
    check(256, strategy, |last_event_id| {
        rt.block_on(async {
            let headers = [
                ("accept", value("text/event-stream")),
                ("mcp-session-id", value(&session)),
                ("last-event-id", last_event_id.clone()),
            ];
            let req = request(Method::GET, &headers, b"");
            let parsed = last_event_id
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<EventId>().ok());
            let resumable = parsed.is_some_and(|id| known.contains(&id.to_string()));
            if resumable {
                let (status, headers, body) = call(&service, req).await;
                prop_assert_eq!(status, StatusCode::OK, "{:?}", last_event_id);
                prop_assert!(
                    headers[header::CONTENT_TYPE]
                        .as_bytes()
                        .starts_with(b"text/event-stream")
                );
                check_sse(&body)?;
            } else {
                let (status, headers, body) = call(&service, req).await;
                prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{:?}", last_event_id);
                check_error_response(status, &headers, &body)?;
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Authorization

/// An `Authorization` value: Bearer in any case with odd spacing, other schemes, or any bytes.
fn authorization() -> impl Strategy<Value = HeaderValue> {
    let token = prop_oneof![Just("secret-key".to_owned()), "[!-~]{0,12}", "[ !-~]{0,12}"];
    let built = (
        prop::sample::select(vec!["Bearer", "bearer", "BEARER", "Basic", "Bearerx", ""]),
        prop::sample::select(vec!["", " ", "  ", "\t"]),
        token,
    )
        .prop_map(|(scheme, space, token)| value(&format!("{scheme}{space}{token}")));
    prop_oneof![3 => built, 1 => arbitrary_header()]
}

/// The credentials RFC 6750 reads in `Authorization` (and the `X-API-Key` convention), written
/// independently: two of a header or a non-ASCII value is an invalid request; `Bearer` in any
/// case, a space, then the token.
fn credentials_model(
    authorization: &[HeaderValue],
    api_key: &[HeaderValue],
) -> Option<(Option<String>, Option<String>)> {
    let single = |values: &[HeaderValue]| -> Result<Option<String>, ()> {
        match values {
            [] => Ok(None),
            [v] => {
                let bytes = v.as_bytes();
                if bytes
                    .iter()
                    .any(|&b| !(b == b'\t' || (0x20..0x7f).contains(&b)))
                {
                    return Err(());
                }
                Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
            }
            _ => Err(()),
        }
    };
    let trim = |s: &str| s.trim_matches([' ', '\t']).to_owned();
    let non_empty = |s: String| (!s.is_empty()).then_some(s);
    let bearer = single(authorization).ok()?.and_then(|v| {
        let v = trim(&v);
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| non_empty(trim(token)))
            .flatten()
    });
    let api_key = single(api_key).ok()?.and_then(|v| non_empty(trim(&v)));
    Some((bearer, api_key))
}

fn credential_headers() -> impl Strategy<Value = (Vec<HeaderValue>, Vec<HeaderValue>)> {
    let api_key = prop_oneof![
        Just(value("secret-key")),
        Just(value(" secret-key ")),
        arbitrary_header()
    ];
    (
        prop::collection::vec(authorization(), 0..3),
        prop::collection::vec(api_key, 0..3),
    )
}

/// `Credentials::from_headers` reads what the model reads, and refuses what it refuses.
#[test]
fn credentials_are_read_as_specified() {
    check(256, credential_headers(), |(authorization, api_key)| {
        let mut headers = HeaderMap::new();
        for v in &authorization {
            headers.append(header::AUTHORIZATION, v.clone());
        }
        for v in &api_key {
            headers.append("x-api-key", v.clone());
        }
        let read = Credentials::from_headers(&headers);
        match credentials_model(&authorization, &api_key) {
            Some((bearer, key)) => {
                let read = read.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
                prop_assert_eq!(read.bearer(), bearer.as_deref());
                prop_assert_eq!(read.api_key(), key.as_deref());
            }
            None => {
                let kind = read.map(|_| ()).map_err(|e| e.kind().clone());
                prop_assert!(
                    matches!(kind, Err(AuthErrorKind::InvalidRequest { .. })),
                    "{:?}",
                    kind
                );
            }
        }
        Ok(())
    });
}

/// Through the stack with an API key: the right key opens a session, a missing or wrong one is
/// 401, a malformed header 400; every refusal is a challenge and a JSON-RPC error.
#[test]
fn authorization_through_the_stack() {
    let rt = runtime();
    let service = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
        .authenticate(ApiKeys::new().key("secret-key"))
        .into_service();
    check(256, credential_headers(), |(authorization, api_key)| {
        rt.block_on(async {
            let mut req = request(
                Method::POST,
                &post_headers(None),
                &initialize_body("2025-06-18"),
            );
            for v in &authorization {
                req.headers_mut().append(header::AUTHORIZATION, v.clone());
            }
            for v in &api_key {
                req.headers_mut().append("x-api-key", v.clone());
            }
            let (status, headers, body) = call(&service, req).await;
            let expected = match credentials_model(&authorization, &api_key) {
                None => StatusCode::BAD_REQUEST,
                // X-API-Key first, else the bearer token.
                Some((bearer, key)) => match key.or(bearer).as_deref() {
                    Some("secret-key") => StatusCode::OK,
                    _ => StatusCode::UNAUTHORIZED,
                },
            };
            prop_assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
            if status != StatusCode::OK {
                check_error_response(status, &headers, &body)?;
                prop_assert!(headers.contains_key(header::WWW_AUTHENTICATE));
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------------------
// The whole stack

/// One arbitrary request to the stack: a method, a body and each header right, wrong or absent.
#[derive(Debug, Clone)]
struct Probe {
    method: Method,
    body: Bytes,
    accept: Option<HeaderValue>,
    content_type: Option<HeaderValue>,
    /// `None`: no header; `Some(None)`: the live session's id; `Some(Some(v))`: `v`.
    session: Option<Option<HeaderValue>>,
    protocol_version: Option<HeaderValue>,
    last_event_id: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
    origin: Option<HeaderValue>,
}

fn probe() -> impl Strategy<Value = Probe> {
    let method = prop::sample::select(vec![
        Method::POST,
        Method::POST,
        Method::POST,
        Method::GET,
        Method::DELETE,
        Method::PUT,
        Method::PATCH,
        Method::OPTIONS,
    ]);
    let body = prop_oneof![
        Just(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec()),
        Just(br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#.to_vec()),
        Just(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec()),
        Just(br#"{"jsonrpc":"2.0","id":5,"result":{}}"#.to_vec()),
        Just(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#.to_vec()),
        Just(initialize_body("2025-06-18")),
        Just(Vec::new()),
        message().prop_map(|m| m.to_bytes().to_vec()),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..48),
    ];
    let right_or_any = |right: &'static [&'static str]| {
        prop::option::weighted(
            0.85,
            prop_oneof![
                3 => prop::sample::select(right.to_vec()).prop_map(value),
                1 => arbitrary_header(),
            ],
        )
    };
    let session = prop::option::weighted(
        0.8,
        prop_oneof![3 => Just(None), 1 => arbitrary_header().prop_map(Some)],
    );
    (
        (method, body),
        right_or_any(&[ACCEPT_BOTH, "text/event-stream", "application/json"]),
        right_or_any(&[
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
        ]),
        session,
        right_or_any(&["2025-06-18", "2025-03-26", "2025-11-25", "1999-01-01"]),
        prop::option::weighted(0.2, arbitrary_header()),
        right_or_any(&["Bearer secret-key", "Bearer wrong", "Basic eDp5"]),
        prop::option::weighted(
            0.15,
            prop_oneof![
                prop::sample::select(vec![
                    "http://localhost:3000",
                    "https://evil.example",
                    "null"
                ])
                .prop_map(value),
                arbitrary_header(),
            ],
        ),
    )
        .prop_map(
            |(
                (method, body),
                accept,
                content_type,
                session,
                protocol_version,
                last_event_id,
                authorization,
                origin,
            )| Probe {
                method,
                body: Bytes::from(body),
                accept,
                content_type,
                session,
                protocol_version,
                last_event_id,
                authorization,
                origin,
            },
        )
}

/// Whatever the method, body and headers, the stack answers with a documented status: a
/// success is SSE, JSON or an empty 202, and a refusal is a JSON-RPC error with the status's
/// code and headers. Never a panic, never a 500.
#[test]
fn any_request_gets_a_documented_answer() {
    let rt = runtime();
    let service = McpStack::new(|_: &SessionContext<'_>| EverythingServer::new())
        .authenticate(ApiKeys::new().key("secret-key"))
        .legacy_sse("/sse", "/messages")
        .endpoint_path("/mcp")
        .into_service();
    let auth = [("authorization", value("Bearer secret-key"))];
    check(256, probe(), |probe| {
        rt.block_on(async {
            let live = open_session(&service, "2025-06-18", &auth).await;
            let mut headers: Vec<(&str, HeaderValue)> = Vec::new();
            let mut add = |name, v: &Option<HeaderValue>| {
                if let Some(v) = v {
                    headers.push((name, v.clone()));
                }
            };
            add("accept", &probe.accept);
            add("content-type", &probe.content_type);
            add(
                "mcp-session-id",
                &probe
                    .session
                    .clone()
                    .map(|s| s.unwrap_or_else(|| value(&live))),
            );
            add("mcp-protocol-version", &probe.protocol_version);
            add("last-event-id", &probe.last_event_id);
            add("authorization", &probe.authorization);
            add("origin", &probe.origin);
            let req = request(probe.method.clone(), &headers, &probe.body);
            let response = service.clone().oneshot(req).await.expect("infallible");
            let (parts, body) = response.into_parts();
            let (status, headers) = (parts.status, parts.headers);
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            if probe.method == Method::GET && status.is_success() {
                // The standalone stream stays open: its head is all there is to check.
                prop_assert!(
                    content_type.starts_with(b"text/event-stream"),
                    "{:?}",
                    content_type
                );
                return Ok(());
            }
            let body = tokio::time::timeout(BODY_TIMEOUT, body.collect())
                .await
                .map_err(|_| TestCaseError::fail(format!("body hung: {probe:?}")))?
                .map_err(|e| TestCaseError::fail(format!("body error {e:?}")))?
                .to_bytes();
            prop_assert!(
                DOCUMENTED.contains(&status.as_u16()),
                "{} for {:?}",
                status,
                probe
            );
            match status.as_u16() {
                200 if content_type.starts_with(b"text/event-stream") => {
                    check_sse(&body)?;
                }
                // DELETE ends a session; OPTIONS is a CORS preflight, answered by the CORS layer.
                200 if probe.method == Method::DELETE || probe.method == Method::OPTIONS => {
                    prop_assert!(body.is_empty(), "{:?}", body)
                }
                200 => {
                    let parsed = serde_json::from_slice::<Value>(&body);
                    prop_assert!(parsed.is_ok(), "200 {:?}: {:?}", content_type, body);
                }
                202 => prop_assert!(body.is_empty(), "202 with {:?}", body),
                _ => check_error_response(status, &headers, &body)?,
            }
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------------------
// SSE framing

/// How the framing layer is set up for one case.
#[derive(Clone, Copy, Debug)]
enum Framing {
    WithStore,
    WithoutStore,
    JsonMode,
}

/// Complete answers and streams of any messages come out of `SseLayer` intact: no raw CR or LF
/// inside a field, one JSON text per `data:` line, the same messages in the same order (and in
/// JSON mode the same JSON).
#[test]
fn framing_round_trips_any_messages() {
    let rt = runtime();
    let strategy = (
        prop::collection::vec(message(), 1..6),
        0..3u8,
        prop::sample::select(vec![
            Framing::WithStore,
            Framing::WithoutStore,
            Framing::JsonMode,
        ]),
    );
    check(256, strategy, |(messages, shape, framing)| {
        rt.block_on(async {
            let outgoing = match shape {
                0 => Outgoing::One(messages[0].clone()),
                1 => Outgoing::Batch(messages.clone()),
                _ => {
                    let (tx, rx) = tokio::sync::mpsc::channel(messages.len());
                    for m in &messages {
                        let _ = tx.try_send(StreamEvent::Message(m.clone()));
                    }
                    Outgoing::Stream(MessageStream::new(rx))
                }
            };
            let sent = match shape {
                0 => vec![messages[0].clone()],
                _ => messages.clone(),
            };
            let layer = match framing {
                Framing::WithStore => SseLayer::new(),
                Framing::WithoutStore => SseLayer::new().without_event_store(),
                Framing::JsonMode => SseLayer::new().json_response(true),
            };
            let service = ServiceBuilder::new().layer(layer).service_fn(move |_| {
                let outgoing = outgoing.clone();
                async move {
                    let mut response = Response::new(Full::<Bytes>::default());
                    response.extensions_mut().insert(outgoing);
                    Ok::<_, Infallible>(response)
                }
            });
            let req = request(Method::POST, &[("accept", value(ACCEPT_BOTH))], b"");
            let (status, headers, body) = call(&service, req).await;
            prop_assert_eq!(status, StatusCode::OK);
            let content_type = headers[header::CONTENT_TYPE].as_bytes();
            if content_type.starts_with(b"application/json") {
                // JSON mode, complete answer: the message, or the batch as an array.
                let got = match Payload::parse(&body) {
                    Ok(payload) => payload.messages().to_vec(),
                    Err(e) => return Err(TestCaseError::fail(format!("{e}: {body:?}"))),
                };
                prop_assert!(matches!(framing, Framing::JsonMode) && shape < 2);
                prop_assert_eq!(got, sent);
            } else {
                prop_assert_eq!(content_type, b"text/event-stream; charset=utf-8");
                let events = check_sse(&body)?;
                // No session: nothing to resume, so no ids.
                prop_assert!(events.iter().all(|e| e.id.is_none()), "{:?}", events);
                prop_assert_eq!(messages_of(&events)?, sent);
            }
            Ok(())
        })
    });
}

/// A server that plays a script: it sends the notifications listed in the request's params,
/// then answers with the listed result or error.
struct Script;

impl McpService for Script {
    async fn handle_request(
        &self,
        request: jsonrpc::Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let params = request.params.unwrap_or_default();
        if request.method == "initialize" {
            return Ok(json!({
                "protocolVersion": params["protocolVersion"],
                "capabilities": {},
                "serverInfo": { "name": "script", "version": "0" },
            }));
        }
        for note in params["notes"].as_array().into_iter().flatten() {
            let method = note["method"].as_str().unwrap_or_default();
            let _ = cx.peer().notify(method, note.get("params").cloned()).await;
        }
        match params.get("error") {
            Some(error) => Err(serde_json::from_value(error.clone())
                .unwrap_or_else(|_| ErrorObject::new(ErrorCode::INTERNAL_ERROR, "bad script"))),
            None => Ok(params["result"].clone()),
        }
    }
}

/// What one scripted request sends and gets.
#[derive(Clone, Debug)]
struct Scene {
    id: Id,
    method: String,
    /// Few enough to stay within one connection's queue (64 frames).
    notes: Vec<(String, Option<Value>)>,
    answer: Result<Value, ErrorObject>,
    resume_at: prop::sample::Index,
}

fn scene() -> impl Strategy<Value = Scene> {
    (
        id(),
        tricky_string().prop_filter("not initialize", |m| m != "initialize"),
        prop::collection::vec((tricky_string(), params()), 0..6),
        prop_oneof![json_value().prop_map(Ok), error_object().prop_map(Err),],
        any::<prop::sample::Index>(),
    )
        .prop_map(|(id, method, notes, answer, resume_at)| Scene {
            id,
            method,
            notes,
            answer,
            resume_at,
        })
}

/// Through the whole stack with an event store: a handler's notifications and answer come out of
/// the POST stream intact, under well-formed, consecutive ids with a priming event first; and a
/// resume from any of those ids replays exactly the rest.
#[test]
fn streams_and_resumes_round_trip() {
    let rt = runtime();
    let service = McpStack::new(|_: &SessionContext<'_>| Script).into_service();
    let session = rt.block_on(open_session(&service, "2025-11-25", &[]));
    check(128, scene(), |scene| {
        rt.block_on(async {
            let notes: Vec<Value> = scene
                .notes
                .iter()
                .map(|(method, params)| match params {
                    Some(p) => json!({ "method": method, "params": p }),
                    None => json!({ "method": method }),
                })
                .collect();
            let script = match &scene.answer {
                Ok(result) => json!({ "notes": notes, "result": result }),
                Err(error) => json!({ "notes": notes, "error": error }),
            };
            let sent = Message::request(scene.id.clone(), scene.method.clone(), Some(script));
            let headers = post_headers(Some(&session));
            let (status, _, body) =
                call(&service, request(Method::POST, &headers, &sent.to_bytes())).await;
            prop_assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            let events = check_sse(&body)?;

            let mut expected: Vec<Message> = scene
                .notes
                .iter()
                .map(|(method, params)| Message::notification(method.clone(), params.clone()))
                .collect();
            expected.push(match scene.answer.clone() {
                Ok(result) => Message::result(scene.id.clone(), result),
                Err(error) => Message::error(Some(scene.id.clone()), error),
            });
            prop_assert_eq!(messages_of(&events)?, expected.clone());

            // Every event has an id on one stream, counting from the priming event's 0.
            let ids: Vec<EventId> = events
                .iter()
                .map(|e| e.id.as_deref().and_then(|id| id.parse().ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    TestCaseError::fail(format!("an event without an id: {events:?}"))
                })?;
            prop_assert!(
                events[0].data.is_empty(),
                "priming event first: {:?}",
                events
            );
            for (seq, id) in ids.iter().enumerate() {
                prop_assert_eq!(
                    *id,
                    EventId {
                        stream: ids[0].stream,
                        seq: seq as u64
                    }
                );
            }

            // Resume after any event: the rest, byte for byte, under the same ids.
            let at = scene.resume_at.index(ids.len());
            let headers = [
                ("accept", value("text/event-stream")),
                ("mcp-session-id", value(&session)),
                ("last-event-id", value(&ids[at].to_string())),
            ];
            let (status, _, replay) = call(&service, request(Method::GET, &headers, b"")).await;
            prop_assert_eq!(
                status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&replay)
            );
            let replayed: Vec<SseEvent> = check_sse(&replay)?
                .into_iter()
                .filter(|e| !e.data.is_empty())
                .collect();
            let rest: Vec<SseEvent> = events[at + 1..]
                .iter()
                .filter(|e| !e.data.is_empty())
                .cloned()
                .collect();
            prop_assert_eq!(replayed, rest);
            Ok(())
        })
    });
}

// ---------------------------------------------------------------------------------------------
// Routing headers (2026-07-28: `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`)
//
// In `src/routing_headers.rs` (module `proptests`, beside the private parsers): arbitrary values
// are `Ok` or a `-32020` rejection, never a panic; an encoded `=?base64?…?=` value matches the
// body's and a different one does not. The status rows (400, id echoed) are in tests/modern.rs.
