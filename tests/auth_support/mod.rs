//! JWTs and a local RFC 7662 introspection endpoint: the one copy of the auth fixtures, used by
//! the library's `tests/auth.rs` and (through `#[path]`) by `mcp-proxy/tests/` for the binary's
//! auth flags.
#![allow(dead_code)]

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------------------------

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for s in &sextets[..chunk.len() + 1] {
            out.push(char::from(ALPHABET[*s as usize]));
        }
    }
    out
}

/// A JWT of `claims` signed with `alg` (an HMAC algorithm) and `secret`.
pub fn jwt_with(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("encode a JWT")
}

/// A JWT of `claims`, HS256 with `secret`.
pub fn jwt(secret: &[u8], claims: &Value) -> String {
    jwt_with(Algorithm::HS256, secret, claims)
}

/// An unsigned token: header `header`, payload `claims`, empty signature.
pub fn unsigned_jwt(header: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// `token` with its payload replaced by `claims` (the signature of the original kept).
pub fn tampered_jwt(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let (header, _, signature) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    format!(
        "{header}.{}.{signature}",
        b64url(claims.to_string().as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// A local RFC 7662 introspection endpoint
// ---------------------------------------------------------------------------------------------

/// One request the introspection endpoint received.
#[derive(Clone, Debug)]
pub struct Introspected {
    /// The `token` form field, decoded.
    pub token: String,
    /// The raw form body.
    pub body: String,
    /// `Content-Type`.
    pub content_type: String,
    /// `Accept`.
    pub accept: String,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
}

/// An introspection endpoint on `127.0.0.1:<free port>` answering with a function of the token;
/// stops when dropped.
pub struct IntrospectionServer {
    server: tokio::task::JoinHandle<()>,
    /// `http://127.0.0.1:PORT/introspect`
    pub url: String,
    requests: Arc<Mutex<Vec<Introspected>>>,
}

/// Decodes an `application/x-www-form-urlencoded` value.
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

impl IntrospectionServer {
    /// Serves `POST /introspect`; `answer(token)` gives the status and JSON body.
    pub async fn start<F>(answer: F) -> Self
    where
        F: Fn(&str) -> (StatusCode, Value) + Send + Sync + 'static,
    {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let answer = Arc::new(answer);
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let recorded = recorded.clone();
            let answer = answer.clone();
            async move {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let content_type = header("content-type").unwrap_or_default();
                let accept = header("accept").unwrap_or_default();
                let authorization = header("authorization");
                let path_ok =
                    req.method() == http::Method::POST && req.uri().path() == "/introspect";
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(&body).into_owned();
                let (status, json) = if path_ok {
                    let token = form_field(&body, "token").unwrap_or_default();
                    recorded.lock().unwrap().push(Introspected {
                        token: token.clone(),
                        body: body.clone(),
                        content_type,
                        accept,
                        authorization,
                    });
                    answer(&token)
                } else {
                    (StatusCode::NOT_FOUND, Value::Null)
                };
                let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(response)
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/introspect",
            listener.local_addr().expect("local addr")
        );
        let server = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection task.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let service = TowerToHyperService::new(service.clone());
                connections.spawn(async move {
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            server,
            url,
            requests,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Introspected> {
        self.requests.lock().unwrap().clone()
    }

    /// How many times `token` was introspected.
    pub fn hits(&self, token: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.token == token)
            .count()
    }

    /// Hits per token.
    pub fn all_hits(&self) -> HashMap<String, usize> {
        let mut hits = HashMap::new();
        for r in self.requests.lock().unwrap().iter() {
            *hits.entry(r.token.clone()).or_insert(0) += 1;
        }
        hits
    }
}

impl Drop for IntrospectionServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
