//! [`IntrospectionAuthenticator`]: opaque access tokens checked with the authorization server
//! (OAuth 2.0 Token Introspection, RFC 7662).

use super::http_client::{HttpClient, base64, form_encode};
use super::{AuthError, Authenticator, ConfigError, Credentials, principal_from_claims};
use crate::principal::Principal;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Tokens longer than this are refused without asking the authorization server.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The default time an answer is cached (never past the token's `exp`).
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// The longest time a refusal (`active: false`, wrong audience) is cached.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// The default number of cached answers.
const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Checks bearer tokens by POSTing them to an RFC 7662 introspection endpoint.
///
/// * **Request.** `POST <endpoint>` with `token=<token>&token_type_hint=access_token`
///   (form-encoded), `Accept: application/json`, and `Authorization: Basic` when
///   [`client_credentials`](Self::client_credentials) are set (`client_secret_basic`).
/// * **Answer.** `active` must be `true`; `exp` (when present) in the future and `nbf` in the
///   past; `iss` one of the configured issuers, when some are set.
/// * **Audience.** `aud` (a string or an array) must name the resource or an added
///   [`audience`](Self::audience): MCP servers must refuse tokens issued for others. An answer
///   **without** `aud` is refused too, since nothing then shows the token was issued for this
///   server; authorization servers that never return `aud` need
///   [`allow_missing_audience`](Self::allow_missing_audience).
/// * **Principal.** Subject `sub` (else `client_id`), scopes from `scope`, the whole answer as
///   claims.
/// * **Cache.** Answers are cached by token for [`cache_ttl`](Self::cache_ttl) (default 60 s,
///   never past `exp`), refusals for at most 10 s, up to
///   [`cache_capacity`](Self::cache_capacity) entries (default 10,000). Failures to reach the
///   endpoint (`503`) are not cached.
/// * **Transport.** [`HttpClient::default`]: `https://` with the `https-client` feature, else
///   plain HTTP only; another client with [`http_client`](Self::http_client).
///
/// # Example
///
/// ```
/// use mcp_tower_http::auth::IntrospectionAuthenticator;
/// use std::time::Duration;
///
/// let introspection =
///     IntrospectionAuthenticator::new("http://auth.internal/introspect", "https://mcp.example.com/mcp")
///         .unwrap()
///         .client_credentials("mcp-server", "s3cret")
///         .cache_ttl(Duration::from_secs(30));
/// # let _ = introspection;
/// ```
pub struct IntrospectionAuthenticator {
    endpoint: http::Uri,
    audiences: Vec<String>,
    allow_missing_audience: bool,
    issuers: Vec<String>,
    client_auth: Option<HeaderValue>,
    client: HttpClient,
    cache_ttl: Duration,
    cache: Cache,
}

impl fmt::Debug for IntrospectionAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionAuthenticator")
            .field("endpoint", &self.endpoint)
            .field("audiences", &self.audiences)
            .field("allow_missing_audience", &self.allow_missing_audience)
            .field("issuers", &self.issuers)
            .field("client_credentials", &self.client_auth.is_some())
            .field("cache_ttl", &self.cache_ttl)
            .field("cache_capacity", &self.cache.capacity)
            .finish_non_exhaustive()
    }
}

impl IntrospectionAuthenticator {
    /// Introspects at `endpoint` (an absolute http(s) URL) for tokens issued for `resource`.
    pub fn new(endpoint: &str, resource: impl Into<String>) -> Result<Self, ConfigError> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|_| ConfigError::new(format!("invalid introspection URL {endpoint:?}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(ConfigError::new(format!(
                "invalid introspection URL {endpoint:?}: expected an absolute http(s) URL"
            )));
        }
        Ok(Self {
            endpoint: uri,
            audiences: super::resource_audiences(resource.into()),
            allow_missing_audience: false,
            issuers: Vec::new(),
            client_auth: None,
            client: HttpClient::default(),
            cache_ttl: DEFAULT_CACHE_TTL,
            cache: Cache::new(DEFAULT_CACHE_CAPACITY),
        })
    }

    /// Authenticates this server to the endpoint with HTTP Basic (`client_secret_basic`).
    pub fn client_credentials(mut self, client_id: &str, client_secret: &str) -> Self {
        let mut pair = String::new();
        form_encode(client_id, &mut pair);
        pair.push(':');
        form_encode(client_secret, &mut pair);
        let value = format!("Basic {}", base64(pair.as_bytes()));
        // Base64 is visible ASCII: this cannot fail.
        self.client_auth = HeaderValue::try_from(value).ok().map(|mut v| {
            v.set_sensitive(true);
            v
        });
        self
    }

    /// Also accepts tokens for `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Requires `iss` to be `issuer` (call again to allow several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts answers without `aud` (default `false`; see the type docs).
    pub fn allow_missing_audience(mut self, allow: bool) -> Self {
        self.allow_missing_audience = allow;
        self
    }

    /// How long an answer is cached (default 60 s; never past the token's `exp`; zero turns the
    /// cache off).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// How many answers are cached at most (default 10,000).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache = Cache::new(capacity);
        self
    }

    /// The client for the endpoint (default: [`HttpClient::default`]).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = client;
        self
    }

    async fn introspect(&self, token: &str) -> Result<Value, AuthError> {
        let mut form = String::from("token=");
        form_encode(token, &mut form);
        form.push_str("&token_type_hint=access_token");
        let mut request = Request::new(Full::new(Bytes::from(form)));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(auth) = &self.client_auth {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        let (status, body) = self.client.send(request).await.map_err(|error| {
            tracing::warn!(endpoint = %self.endpoint, %error, "token introspection failed");
            AuthError::unavailable()
        })?;
        let answer = serde_json::from_slice::<Value>(&body);
        if status != StatusCode::OK {
            // Some servers answer an unknown token with a 4xx and `{"active": false}`: that is
            // a verdict on the token (the client should re-authorize), not an outage.
            if status.is_client_error()
                && matches!(&answer, Ok(v) if v.get("active") == Some(&Value::Bool(false)))
            {
                return Err(AuthError::invalid_token("The access token is not active"));
            }
            tracing::warn!(endpoint = %self.endpoint, %status, "token introspection refused");
            return Err(AuthError::unavailable());
        }
        match answer {
            Ok(answer @ Value::Object(_)) => Ok(answer),
            _ => {
                tracing::warn!(endpoint = %self.endpoint, "token introspection answer is not a JSON object");
                Err(AuthError::unavailable())
            }
        }
    }

    /// Checks an introspection answer; `exp` is returned for the cache.
    fn evaluate(&self, answer: Value, now: u64) -> Result<(Principal, Option<u64>), AuthError> {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthError::invalid_token("The access token is not active"));
        }
        let exp = answer.get("exp").and_then(Value::as_u64);
        if exp.is_some_and(|exp| exp <= now) {
            return Err(AuthError::invalid_token("The access token expired"));
        }
        if answer
            .get("nbf")
            .and_then(Value::as_u64)
            .is_some_and(|nbf| nbf > now)
        {
            return Err(AuthError::invalid_token(
                "The access token is not valid yet",
            ));
        }
        let wrong_audience =
            || AuthError::invalid_token("The access token was not issued for this resource");
        let ours = |aud: &str| self.audiences.iter().any(|a| a == aud);
        match answer.get("aud") {
            None | Some(Value::Null) if self.allow_missing_audience => {}
            Some(Value::String(aud)) if ours(aud) => {}
            Some(Value::Array(auds)) if auds.iter().filter_map(Value::as_str).any(ours) => {}
            _ => return Err(wrong_audience()),
        }
        if !self.issuers.is_empty() {
            let iss = answer.get("iss").and_then(Value::as_str);
            if !iss.is_some_and(|iss| self.issuers.iter().any(|i| i == iss)) {
                return Err(AuthError::invalid_token(
                    "The access token was issued by an untrusted issuer",
                ));
            }
        }
        Ok((principal_from_claims(answer)?, exp))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator for IntrospectionAuthenticator {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        let Some(token) = credentials.bearer() else {
            return Err(AuthError::missing_credentials());
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::invalid_token("The access token is too large"));
        }
        if let Some(outcome) = self.cache.get(token) {
            return outcome;
        }
        let answer = self.introspect(token).await?;
        let now = unix_now();
        let (outcome, ttl) = match self.evaluate(answer, now) {
            Ok((principal, exp)) => {
                let until_exp = exp.map_or(Duration::MAX, |exp| Duration::from_secs(exp - now));
                (Ok(principal), self.cache_ttl.min(until_exp))
            }
            Err(error) => (Err(error), self.cache_ttl.min(MAX_NEGATIVE_TTL)),
        };
        self.cache.insert(token, outcome.clone(), ttl);
        outcome
    }
}

/// Introspection answers by token, bounded in size and age.
struct Cache {
    entries: Mutex<HashMap<Box<str>, Entry>>,
    capacity: usize,
}

struct Entry {
    outcome: Result<Principal, AuthError>,
    expires: Instant,
}

impl Cache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        crate::sync::lock(&self.entries)
    }

    fn get(&self, token: &str) -> Option<Result<Principal, AuthError>> {
        let mut entries = self.lock();
        let entry = entries.get(token)?;
        if entry.expires > Instant::now() {
            return Some(entry.outcome.clone());
        }
        entries.remove(token);
        None
    }

    fn insert(&self, token: &str, outcome: Result<Principal, AuthError>, ttl: Duration) {
        if ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let Some(expires) = now.checked_add(ttl) else {
            return;
        };
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(token) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                // Still full of live entries: drop an arbitrary one.
                if let Some(victim) = entries.keys().next().cloned() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(token.into(), Entry { outcome, expires });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn expires(&self, token: &str) -> Option<Instant> {
        self.lock().get(token).map(|e| e.expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthErrorKind;
    use crate::auth::http_client::test_server;
    use http::Response;
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RESOURCE: &str = "http://127.0.0.1/mcp";

    /// An introspection endpoint answering from a token → answer table; counts calls and
    /// records the last request.
    struct Endpoint {
        calls: Arc<AtomicUsize>,
        last: Arc<Mutex<Option<(http::request::Parts, Bytes)>>>,
        url: String,
    }

    async fn endpoint(answers: Vec<(&'static str, Value)>) -> Endpoint {
        let calls = Arc::new(AtomicUsize::new(0));
        let last = Arc::new(Mutex::new(None));
        let (c, l) = (calls.clone(), last.clone());
        let answers: Arc<HashMap<String, Value>> = Arc::new(
            answers
                .into_iter()
                .map(|(t, v)| (format!("token={t}&token_type_hint=access_token"), v))
                .collect(),
        );
        let addr = test_server::serve(move |parts, body| {
            c.fetch_add(1, Ordering::SeqCst);
            let answer = String::from_utf8(body.to_vec())
                .ok()
                .and_then(|form| answers.get(&form).cloned());
            *l.lock().unwrap() = Some((parts, body));
            async move {
                match answer {
                    Some(Value::Null) => {
                        let mut r = Response::new(Full::from("boom"));
                        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        r
                    }
                    Some(answer) => Response::new(Full::from(answer.to_string())),
                    None => Response::new(Full::from(r#"{"active":false}"#)),
                }
            }
        })
        .await;
        Endpoint {
            calls,
            last,
            url: format!("http://{addr}/introspect"),
        }
    }

    fn later(secs: u64) -> u64 {
        unix_now() + secs
    }

    async fn auth(a: &IntrospectionAuthenticator, token: &str) -> Result<Principal, AuthError> {
        a.authenticate(&Credentials::new().with_bearer(token)).await
    }

    fn description(e: &AuthError) -> &str {
        e.kind().description().unwrap_or_default()
    }

    #[tokio::test]
    async fn active_token_becomes_a_cached_principal() {
        let ep = endpoint(vec![(
            "good",
            json!({"active": true, "sub": "alice", "aud": RESOURCE, "scope": "mcp:read mcp:write", "exp": later(300)}),
        )])
        .await;
        let a = IntrospectionAuthenticator::new(&ep.url, RESOURCE)
            .unwrap()
            .client_credentials("mcp server", "s3cr:t");
        let p = auth(&a, "good").await.unwrap();
        assert_eq!(&*p.subject, "alice");
        assert_eq!(p.scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(p.claims["aud"], RESOURCE);
        let (parts, body) = ep.last.lock().unwrap().take().unwrap();
        assert_eq!(parts.method, Method::POST);
        assert_eq!(
            parts.headers[header::CONTENT_TYPE],
            "application/x-www-form-urlencoded"
        );
        // base64("mcp+server:s3cr%3At")
        assert_eq!(
            parts.headers[header::AUTHORIZATION],
            format!("Basic {}", base64(b"mcp+server:s3cr%3At"))
        );
        assert_eq!(&body[..], b"token=good&token_type_hint=access_token");
        // Cached: no second call.
        auth(&a, "good").await.unwrap();
        assert_eq!(ep.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn inactive_expired_and_foreign_tokens_are_refused() {
        let ep = endpoint(vec![
            (
                "expired",
                json!({"active": true, "sub": "a", "aud": RESOURCE, "exp": unix_now() - 5}),
            ),
            (
                "future",
                json!({"active": true, "sub": "a", "aud": RESOURCE, "nbf": later(60)}),
            ),
            (
                "other-aud",
                json!({"active": true, "sub": "a", "aud": "https://other.example.com"}),
            ),
            (
                "other-auds",
                json!({"active": true, "sub": "a", "aud": ["x", "y"]}),
            ),
            (
                "our-aud-in-list",
                json!({"active": true, "sub": "a", "aud": ["x", RESOURCE]}),
            ),
            ("no-aud", json!({"active": true, "sub": "a"})),
            (
                "active-string",
                json!({"active": "true", "sub": "a", "aud": RESOURCE}),
            ),
            ("no-subject", json!({"active": true, "aud": RESOURCE})),
            (
                "client-only",
                json!({"active": true, "aud": RESOURCE, "client_id": "app"}),
            ),
        ])
        .await;
        let a = IntrospectionAuthenticator::new(&ep.url, RESOURCE).unwrap();
        for (token, expected) in [
            ("inactive", "The access token is not active"),
            ("active-string", "The access token is not active"),
            ("expired", "The access token expired"),
            ("future", "The access token is not valid yet"),
            (
                "other-aud",
                "The access token was not issued for this resource",
            ),
            (
                "other-auds",
                "The access token was not issued for this resource",
            ),
            (
                "no-aud",
                "The access token was not issued for this resource",
            ),
            (
                "no-subject",
                "The access token names no subject (sub or client_id)",
            ),
        ] {
            let e = auth(&a, token).await.unwrap_err();
            assert_eq!(e.status(), StatusCode::UNAUTHORIZED, "{token}");
            assert_eq!(description(&e), expected, "{token}");
        }
        assert_eq!(&*auth(&a, "our-aud-in-list").await.unwrap().subject, "a");
        assert_eq!(&*auth(&a, "client-only").await.unwrap().subject, "app");
        let lenient = IntrospectionAuthenticator::new(&ep.url, RESOURCE)
            .unwrap()
            .allow_missing_audience(true);
        assert!(auth(&lenient, "no-aud").await.is_ok());
        assert!(auth(&lenient, "other-aud").await.is_err());
        // Refusals are cached briefly too.
        let before = ep.calls.load(Ordering::SeqCst);
        assert!(auth(&a, "inactive").await.is_err());
        assert_eq!(ep.calls.load(Ordering::SeqCst), before);
    }

    #[tokio::test]
    async fn endpoint_failures_are_503_and_not_cached() {
        let ep = endpoint(vec![("boom", Value::Null)]).await;
        let a = IntrospectionAuthenticator::new(&ep.url, RESOURCE).unwrap();
        for _ in 0..2 {
            let e = auth(&a, "boom").await.unwrap_err();
            assert_eq!(e.kind(), &AuthErrorKind::Unavailable);
        }
        assert_eq!(ep.calls.load(Ordering::SeqCst), 2);
        // Nothing listening.
        let a = IntrospectionAuthenticator::new("http://127.0.0.1:9/introspect", RESOURCE).unwrap();
        assert_eq!(
            auth(&a, "x").await.unwrap_err().kind(),
            &AuthErrorKind::Unavailable
        );
        // No token: no call at all.
        let e = a.authenticate(&Credentials::new()).await.unwrap_err();
        assert_eq!(e.kind(), &AuthErrorKind::MissingCredentials);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_in_size_and_by_exp() {
        let ep = endpoint(vec![
            ("t1", json!({"active": true, "sub": "1", "aud": RESOURCE})),
            ("t2", json!({"active": true, "sub": "2", "aud": RESOURCE})),
            ("t3", json!({"active": true, "sub": "3", "aud": RESOURCE})),
            (
                "short",
                json!({"active": true, "sub": "s", "aud": RESOURCE, "exp": later(2)}),
            ),
        ])
        .await;
        let a = IntrospectionAuthenticator::new(&ep.url, RESOURCE)
            .unwrap()
            .cache_capacity(2);
        for t in ["t1", "t2", "t3"] {
            auth(&a, t).await.unwrap();
            assert!(a.cache.len() <= 2);
        }
        let a = IntrospectionAuthenticator::new(&ep.url, RESOURCE).unwrap();
        auth(&a, "short").await.unwrap();
        let expires = a.cache.expires("short").unwrap();
        assert!(expires <= Instant::now() + Duration::from_secs(2));
        let off = IntrospectionAuthenticator::new(&ep.url, RESOURCE)
            .unwrap()
            .cache_ttl(Duration::ZERO);
        auth(&off, "t1").await.unwrap();
        assert_eq!(off.cache.len(), 0);
    }

    #[test]
    fn bad_endpoints_are_config_errors() {
        for url in ["", "/introspect", "ftp://x/introspect", "not a url"] {
            assert!(
                IntrospectionAuthenticator::new(url, RESOURCE).is_err(),
                "{url}"
            );
        }
    }
}
