//! CORS for MCP, as a preset of tower-http's [`CorsLayer`].
//!
//! [`McpCors`] builds a [`CorsLayer`] with what browser MCP clients need:
//!
//! - allowed request headers: `Content-Type`, `Authorization`, `Accept`, `Mcp-Session-Id`,
//!   `MCP-Protocol-Version`, `Last-Event-ID`, `X-API-Key`, `Mcp-Method`, `Mcp-Name` (plus any
//!   added with [`McpCors::allow_header`]), and every `Mcp-Param-*` name a preflight asks for
//!   (2026-07-28 tools name their own; CORS has no prefix wildcard, so those names are
//!   reflected from `Access-Control-Request-Headers`, and only those);
//! - exposed response headers: `Mcp-Session-Id`, `MCP-Protocol-Version`, `WWW-Authenticate`;
//! - methods `GET`, `POST`, `DELETE`, `OPTIONS`;
//! - origins: loopback on any port by default (as [`OriginLayer`](crate::origin::OriginLayer)),
//!   plus configured ones, or any origin with [`McpCors::any_origin`] (then never with
//!   credentials: a wildcard origin and credentials together are refused by design).
//!
//! Put it outermost: it answers preflights itself, so they never need credentials.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::cors::McpCors;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(McpCors::new().allow_origin("https://app.example.com").layer())
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//!     });
//!
//! let preflight = Request::options("/mcp")
//!     .header("origin", "https://app.example.com")
//!     .header("access-control-request-method", "POST")
//!     .header("access-control-request-headers", "mcp-session-id, authorization")
//!     .body(Full::<Bytes>::default())
//!     .unwrap();
//! let response = service.oneshot(preflight).await.unwrap();
//! assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example.com");
//! # }
//! ```

use crate::origin::{is_loopback_origin, normalize_origin};
use crate::routing_headers::MCP_PARAM_PREFIX;
use http::{HeaderName, HeaderValue, Method, Request, Response, header};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tower::{Layer, Service};
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors, CorsLayer};

/// The request headers MCP clients send.
pub const ALLOWED_HEADERS: [&str; 9] = [
    "content-type",
    "authorization",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "x-api-key",
    "mcp-method",
    "mcp-name",
];

/// The response headers MCP clients read.
pub const EXPOSED_HEADERS: [&str; 3] =
    ["mcp-session-id", "mcp-protocol-version", "www-authenticate"];

/// [`EXPOSED_HEADERS`] as tower-http joins them.
const EXPOSED_HEADERS_VALUE: &str = "mcp-session-id,mcp-protocol-version,www-authenticate";

/// Builds the MCP CORS preset; see the [module docs](crate::cors).
#[derive(Clone, Debug)]
pub struct McpCors {
    loopback: bool,
    any: bool,
    origins: Vec<String>,
    extra_headers: Vec<HeaderName>,
    credentials: bool,
    max_age: Option<Duration>,
}

impl Default for McpCors {
    fn default() -> Self {
        Self::new()
    }
}

impl McpCors {
    /// Loopback origins, no credentials, preflights cached 10 minutes.
    pub fn new() -> Self {
        Self {
            loopback: true,
            any: false,
            origins: Vec::new(),
            extra_headers: Vec::new(),
            credentials: false,
            max_age: Some(Duration::from_secs(600)),
        }
    }

    /// Also allows `origin` (`scheme://host[:port]`).
    pub fn allow_origin(mut self, origin: impl AsRef<str>) -> Self {
        self.origins.push(normalize_origin(origin.as_ref()));
        self
    }

    /// Allows any origin (`Access-Control-Allow-Origin: *`). Turns credentials off.
    pub fn any_origin(mut self) -> Self {
        self.any = true;
        self.credentials = false;
        self
    }

    /// Also allows request header `name`. Names that are not valid header names are ignored
    /// (and logged).
    pub fn allow_header(mut self, name: impl AsRef<str>) -> Self {
        match HeaderName::try_from(name.as_ref()) {
            Ok(name) => self.extra_headers.push(name),
            Err(_) => tracing::warn!(
                header = name.as_ref(),
                "ignoring an invalid CORS header name"
            ),
        }
        self
    }

    /// Sends `Access-Control-Allow-Credentials: true` (cookies, TLS client certificates). Has no
    /// effect with [`any_origin`](Self::any_origin): a wildcard origin never gets credentials.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow && !self.any;
        self
    }

    /// How long browsers may cache a preflight; `None` sends no `Access-Control-Max-Age`.
    pub fn max_age(mut self, max_age: impl Into<Option<Duration>>) -> Self {
        self.max_age = max_age.into();
        self
    }

    /// The layer: tower-http's [`CorsLayer`] with this policy, behind a filter that lets
    /// preflights ask for `Mcp-Param-*` headers.
    pub fn layer(self) -> McpCorsLayer {
        let allowed: Arc<[HeaderName]> = ALLOWED_HEADERS
            .iter()
            .map(|h| HeaderName::from_static(h))
            .chain(self.extra_headers.iter().cloned())
            .collect();
        let without_origin = Arc::new(self.headers_without_origin());
        McpCorsLayer {
            cors: self.cors_layer(),
            allowed,
            without_origin,
        }
    }

    /// What tower-http's CORS adds to the answer of a non-preflight request without `Origin`
    /// (`Vary: origin` apart), built once: that request skips its per-request header map.
    fn headers_without_origin(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::new();
        if self.credentials {
            headers.push((
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        headers.push((
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS_VALUE),
        ));
        if self.any {
            headers.push((
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ));
        }
        headers
    }

    fn cors_layer(self) -> CorsLayer {
        let exposed = EXPOSED_HEADERS.map(HeaderName::from_static);
        // The request-headers list is filtered by `McpCorsService` before it is mirrored.
        let mut layer = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(exposed)
            .vary([header::ORIGIN]);
        if let Some(max_age) = self.max_age {
            layer = layer.max_age(max_age);
        }
        if self.any {
            return layer.allow_origin(tower_http::cors::Any);
        }
        let origins: Arc<[String]> = self.origins.into();
        let loopback = self.loopback;
        let allow = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            let Ok(origin) = origin.to_str() else {
                return false;
            };
            let origin = normalize_origin(origin);
            (loopback && is_loopback_origin(&origin)) || origins.contains(&origin)
        });
        layer
            .allow_origin(allow)
            .allow_credentials(self.credentials)
    }
}

/// The layer made by [`McpCors::layer`].
#[derive(Clone, Debug)]
pub struct McpCorsLayer {
    cors: CorsLayer,
    allowed: Arc<[HeaderName]>,
    without_origin: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl<S> Layer<S> for McpCorsLayer {
    type Service = McpCorsService<Cors<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        McpCorsService {
            inner: self.cors.layer(inner),
            allowed: self.allowed.clone(),
            without_origin: self.without_origin.clone(),
        }
    }
}

/// The service made by [`McpCorsLayer`]: rewrites a preflight's `Access-Control-Request-Headers`
/// to the allowed headers plus the `Mcp-Param-*` names it asked for, which tower-http's CORS
/// then mirrors. A request without `Origin` (not from a browser) gets the same headers as
/// tower-http would add, prebuilt.
#[derive(Clone, Debug)]
pub struct McpCorsService<S> {
    inner: S,
    allowed: Arc<[HeaderName]>,
    without_origin: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl<S> McpCorsService<S> {
    crate::macros::define_inner_service_accessors!();
}

/// The allowed list, plus the `Mcp-Param-*` names among `requested`.
fn allowed_request_headers(allowed: &[HeaderName], requested: &[&HeaderValue]) -> HeaderValue {
    let mut names: Vec<&str> = allowed.iter().map(HeaderName::as_str).collect();
    let params: Vec<String> = requested
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| {
            name.len() > MCP_PARAM_PREFIX.len()
                && name.starts_with(MCP_PARAM_PREFIX)
                && HeaderName::from_bytes(name.as_bytes()).is_ok()
        })
        .take(64)
        .collect();
    names.extend(params.iter().map(String::as_str));
    // Header names are visible ASCII joined by commas: always a valid value.
    HeaderValue::from_str(&names.join(",")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl<S, B, ResBody> Service<Request<B>> for McpCorsService<Cors<S>>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if req.method() == Method::OPTIONS {
            let requested: Vec<&HeaderValue> = req
                .headers()
                .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .iter()
                .collect();
            let value = allowed_request_headers(&self.allowed, &requested);
            req.headers_mut()
                .insert(header::ACCESS_CONTROL_REQUEST_HEADERS, value);
        } else if !req.headers().contains_key(header::ORIGIN) {
            return ResponseFuture {
                kind: Kind::WithoutOrigin {
                    future: self.inner.get_mut().call(req),
                    headers: self.without_origin.clone(),
                },
            };
        }
        ResponseFuture {
            kind: Kind::Cors {
                future: self.inner.call(req),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`McpCorsService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Cors { #[pin] future: tower_http::cors::ResponseFuture<F> },
        WithoutOrigin { #[pin] future: F, headers: Arc<Vec<(HeaderName, HeaderValue)>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Cors { future } => future.poll(cx),
            KindProj::WithoutOrigin { future, headers } => {
                let mut response = ready!(future.poll(cx))?;
                // As tower-http: `Vary` is appended to the inner service's, the rest replace.
                let response_headers = response.headers_mut();
                response_headers.append(header::VARY, HeaderValue::from_static("origin"));
                for (name, value) in headers.iter() {
                    response_headers.insert(name, value.clone());
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response, StatusCode};
    use std::convert::Infallible;
    use tower::{Layer, ServiceExt};

    async fn call(cors: McpCors, req: Request<()>) -> Response<()> {
        let svc = cors
            .layer()
            .layer(tower::service_fn(|_: Request<()>| async {
                // The inner service would demand credentials: preflights must never reach it.
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                Ok::<_, Infallible>(r)
            }));
        svc.oneshot(req).await.unwrap()
    }

    fn preflight(origin: &str) -> Request<()> {
        Request::options("/mcp")
            .header("origin", origin)
            .header("access-control-request-method", "DELETE")
            .header(
                "access-control-request-headers",
                "mcp-session-id, x-api-key",
            )
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn preflight_from_an_allowed_origin_needs_no_credentials() {
        let r = call(McpCors::new(), preflight("http://localhost:5173")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "http://localhost:5173");
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(methods.contains("DELETE"), "{methods}");
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        for name in ALLOWED_HEADERS {
            assert!(allowed.contains(name), "{name} missing from {allowed}");
        }
        assert!(h.get("access-control-allow-credentials").is_none());
    }

    #[tokio::test]
    async fn disallowed_origin_gets_no_allow_origin() {
        let r = call(McpCors::new(), preflight("http://evil.example.com")).await;
        assert!(r.headers().get("access-control-allow-origin").is_none());
    }

    #[tokio::test]
    async fn actual_requests_expose_mcp_headers() {
        let req = Request::post("/mcp")
            .header("origin", "https://app.example.com")
            .body(())
            .unwrap();
        let cors = McpCors::new()
            .allow_origin("https://app.example.com")
            .allow_credentials(true);
        let r = call(cors, req).await;
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-credentials"], "true");
        let exposed = h["access-control-expose-headers"].to_str().unwrap();
        for name in EXPOSED_HEADERS {
            assert!(exposed.contains(name), "{name} missing from {exposed}");
        }
    }

    /// A request without `Origin` skips tower-http's CORS: its answer must carry exactly the
    /// headers tower-http would have added.
    #[tokio::test]
    async fn requests_without_origin_get_what_tower_http_adds() {
        let configs = [
            McpCors::new(),
            McpCors::new().allow_credentials(true),
            McpCors::new().any_origin(),
            McpCors::new()
                .allow_origin("https://app.example.com")
                .max_age(None),
        ];
        let inner = || {
            tower::service_fn(|_: Request<()>| async {
                let mut r = Response::new(());
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("accept"));
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_EXPOSE_HEADERS,
                    HeaderValue::from_static("x-inner"),
                );
                Ok::<_, Infallible>(r)
            })
        };
        for cors in configs {
            let request = || Request::post("/mcp").body(()).unwrap();
            let ours = cors.clone().layer().layer(inner()).oneshot(request());
            let theirs = cors.cors_layer().layer(inner()).oneshot(request());
            let (ours, theirs) = (ours.await.unwrap(), theirs.await.unwrap());
            let listed = |r: &Response<()>| {
                r.headers()
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(listed(&ours), listed(&theirs));
            assert!(
                ours.headers()
                    .contains_key(header::ACCESS_CONTROL_EXPOSE_HEADERS)
            );
        }
    }

    #[tokio::test]
    async fn wildcard_never_comes_with_credentials() {
        let cors = McpCors::new().allow_credentials(true).any_origin();
        let r = call(cors, preflight("http://anywhere.example")).await;
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(
            r.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
        let cors = McpCors::new().any_origin().allow_credentials(true);
        let r = call(cors, preflight("http://anywhere.example")).await;
        assert!(
            r.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }

    #[tokio::test]
    async fn mcp_param_headers_a_preflight_asks_for_are_allowed_and_nothing_else() {
        let req = Request::options("/mcp")
            .header("origin", "http://127.0.0.1:3000")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "mcp-method, Mcp-Param-Region, x-evil, mcp-param-",
            )
            .body(())
            .unwrap();
        let r = call(McpCors::new(), req).await;
        let allowed = r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap();
        assert!(allowed.contains("mcp-param-region"), "{allowed}");
        assert!(allowed.contains("mcp-method"), "{allowed}");
        assert!(!allowed.contains("x-evil"), "{allowed}");
        assert!(
            !allowed.split(',').any(|h| h.trim() == "mcp-param-"),
            "{allowed}"
        );
    }

    #[tokio::test]
    async fn extra_headers_are_allowed() {
        let cors = McpCors::new()
            .allow_header("X-Custom-Header")
            .allow_header("bad header");
        let r = call(cors, preflight("http://127.0.0.1:3000")).await;
        let allowed = r.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap();
        assert!(allowed.contains("x-custom-header"), "{allowed}");
    }
}
