//! A small hyper client: one request per fresh connection, bounded by [`HTTP_TIMEOUT`].

use super::proxy::Proxy;
use super::sse::sse_messages;
use super::{HTTP_TIMEOUT, VERSION};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The JSON-RPC messages of the body: the events of an SSE body, or one JSON value.
    pub fn messages(&self) -> Vec<Value> {
        let content_type = self.header("content-type").unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            return serde_json::from_str(&self.body).map_or_else(|_| Vec::new(), |v| vec![v]);
        }
        sse_messages(&self.body)
    }

    /// The answer to the request with `id` in the body.
    pub fn answer(&self, id: i64) -> Option<Value> {
        self.messages().into_iter().find(|m| m["id"] == id)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

/// Sends one request on a fresh connection and reads the whole answer, within [`HTTP_TIMEOUT`].
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let mut request = Request::builder().method(method.clone()).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(body.into()))
        .map_err(|e| e.to_string())?;
    // A fresh client per request: no pooled connection outlives the test's runtime.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("{e:?}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{method} {url}: no answer within {HTTP_TIMEOUT:?}")))
}

/// Like [`send`], panicking on a transport error.
pub async fn must_send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let what = format!("{method} {url}");
    send(method, url, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// POSTs a JSON-RPC body, on the session if given.
pub async fn post(url: &str, session: Option<&str>, body: &Value) -> Reply {
    let mut headers = vec![
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", VERSION),
    ];
    if let Some(session) = session {
        headers.push(("mcp-session-id", session));
    }
    must_send(Method::POST, url, &headers, body.to_string()).await
}

pub fn initialize_body(id: i64) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": { "name": "stdio-test", "version": "0" },
        },
    })
}

pub fn request_body(id: i64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// Sends `initialize` (id 1) and `notifications/initialized`; the session id, or the reply of a
/// failed `initialize`.
pub async fn try_initialize(url: &str) -> Result<String, Reply> {
    let reply = post(url, None, &initialize_body(1)).await;
    let ok = reply.status == StatusCode::OK
        && reply
            .answer(1)
            .is_some_and(|a| a["result"]["protocolVersion"].is_string());
    let Some(session) = reply.header("mcp-session-id").filter(|_| ok) else {
        return Err(reply);
    };
    let session = session.to_owned();
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let ack = post(url, Some(&session), &initialized).await;
    assert_eq!(
        ack.status,
        StatusCode::ACCEPTED,
        "notifications/initialized: {ack}"
    );
    Ok(session)
}

/// [`try_initialize`], panicking (with the proxy's log) if it fails.
pub async fn initialize(proxy: &Proxy) -> String {
    match try_initialize(&proxy.url()).await {
        Ok(session) => session,
        Err(reply) => panic!("initialize failed: {reply}\nproxy:\n{}", proxy.log()),
    }
}

/// DELETE on the session.
pub async fn delete(url: &str, session: &str) -> Reply {
    must_send(
        Method::DELETE,
        url,
        &[
            ("mcp-session-id", session),
            ("mcp-protocol-version", VERSION),
        ],
        Bytes::new(),
    )
    .await
}

/// The value of header `name` (empty when absent).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
