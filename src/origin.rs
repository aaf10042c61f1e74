//! DNS-rebinding protection: `Origin` (and optionally `Host`) validation.
//!
//! A browser page on another site can reach a server on `localhost` through DNS rebinding; the
//! `Origin` header it cannot forge gives it away. [`OriginLayer`] answers 403 with a JSON-RPC
//! error body when a request carries an `Origin` that is not allowed. A request without `Origin`
//! (a non-browser client) passes. `Host` validation is independent and optional: each header is
//! checked on its own, so an evil `Origin` with a good `Host` is still refused.
//!
//! The default allow-list is the loopback origins on any port (`http://localhost:5173`,
//! `https://127.0.0.1`, `http://[::1]:8080`), right for a server bound to loopback. Add the
//! origins of your web clients with [`OriginLayer::allow_origin`].
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::origin::OriginLayer;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(OriginLayer::localhost().allow_origin("https://app.example.com"))
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//!     });
//!
//! let evil = Request::post("/mcp")
//!     .header("origin", "http://evil.example.com")
//!     .body(Full::<Bytes>::default())
//!     .unwrap();
//! assert_eq!(service.clone().oneshot(evil).await.unwrap().status(), StatusCode::FORBIDDEN);
//!
//! let app = Request::post("/mcp")
//!     .header("origin", "https://app.example.com")
//!     .body(Full::<Bytes>::default())
//!     .unwrap();
//! assert_eq!(service.oneshot(app).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

use crate::error::{TransportError, TransportErrorKind};
use http::{Request, Response, header};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

pub use crate::future::ResponseFuture;

/// Validates `Origin` (and optionally `Host`); see the [module docs](crate::origin).
#[derive(Clone, Debug)]
pub struct OriginLayer {
    policy: Arc<Policy>,
}

#[derive(Debug, Default)]
struct Policy {
    allow_loopback: bool,
    allow_any: bool,
    origins: Vec<String>,
    hosts: Option<Vec<String>>,
}

impl Default for OriginLayer {
    fn default() -> Self {
        Self::localhost()
    }
}

/// The loopback host names.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Lower-cases an origin and drops a trailing slash and default port, so equal origins compare
/// equal: `HTTPS://App.Example.com:443/` → `https://app.example.com`.
pub(crate) fn normalize_origin(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    if let Some(rest) = origin.strip_prefix("https://") {
        if let Some(host) = rest.strip_suffix(":443") {
            return format!("https://{host}");
        }
    } else if let Some(rest) = origin.strip_prefix("http://")
        && let Some(host) = rest.strip_suffix(":80")
    {
        return format!("http://{host}");
    }
    origin
}

/// Splits `host[:port]` (IPv6 in brackets) and returns the host, lower-cased.
fn host_part(authority: &str) -> String {
    let authority = authority.trim().to_ascii_lowercase();
    if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => authority[..=end].to_owned(),
            None => authority,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host.to_owned(),
            _ => authority,
        }
    }
}

pub(crate) fn is_loopback_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    if authority.contains(['/', '@', '?', '#']) {
        return false;
    }
    LOOPBACK_HOSTS.contains(&host_part(authority).as_str())
}

impl OriginLayer {
    /// Allows loopback origins on any port, and requests without `Origin`.
    pub fn localhost() -> Self {
        Self {
            policy: Arc::new(Policy {
                allow_loopback: true,
                ..Policy::default()
            }),
        }
    }

    /// Allows no origin at all (only requests without `Origin`); add some with
    /// [`allow_origin`](Self::allow_origin).
    pub fn none() -> Self {
        Self {
            policy: Arc::new(Policy::default()),
        }
    }

    /// Allows every origin: turns the `Origin` check off. For servers that authenticate every
    /// request and want any web client.
    pub fn any() -> Self {
        Self {
            policy: Arc::new(Policy {
                allow_any: true,
                ..Policy::default()
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Policy)) -> Self {
        let mut policy = Policy {
            allow_loopback: self.policy.allow_loopback,
            allow_any: self.policy.allow_any,
            origins: self.policy.origins.clone(),
            hosts: self.policy.hosts.clone(),
        };
        f(&mut policy);
        self.policy = Arc::new(policy);
        self
    }

    /// Also allows `origin` (`scheme://host[:port]`, compared case-insensitively).
    pub fn allow_origin(self, origin: impl AsRef<str>) -> Self {
        let origin = normalize_origin(origin.as_ref());
        self.edit(|p| p.origins.push(origin))
    }

    /// Also validates `Host`: only these host names (any port) are accepted. Loopback names are
    /// accepted when loopback origins are.
    pub fn allow_hosts<I, H>(self, hosts: I) -> Self
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        let hosts: Vec<String> = hosts.into_iter().map(|h| host_part(h.as_ref())).collect();
        self.edit(|p| p.hosts = Some(hosts))
    }

    /// `true` when `origin` may make requests.
    pub fn is_origin_allowed(&self, origin: &str) -> bool {
        let p = &self.policy;
        if p.allow_any {
            return true;
        }
        let origin = normalize_origin(origin);
        (p.allow_loopback && is_loopback_origin(&origin)) || p.origins.contains(&origin)
    }

    fn is_host_allowed(&self, host: &str) -> bool {
        let p = &self.policy;
        let Some(hosts) = &p.hosts else {
            return true;
        };
        let host = host_part(host);
        (p.allow_loopback && LOOPBACK_HOSTS.contains(&host.as_str())) || hosts.contains(&host)
    }

    fn check<B>(&self, req: &Request<B>) -> Result<(), TransportError> {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|o| self.is_origin_allowed(o));
            if !allowed {
                return Err(TransportError::new(TransportErrorKind::Forbidden)
                    .with_message("Forbidden: Origin not allowed"));
            }
        }
        if self.policy.hosts.is_some() {
            // HTTP/2 carries the host in the URI authority instead of a Host header.
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()));
            if !host.is_some_and(|h| self.is_host_allowed(h)) {
                return Err(TransportError::new(TransportErrorKind::Forbidden)
                    .with_message("Forbidden: Host not allowed"));
            }
        }
        Ok(())
    }
}

impl<S> Layer<S> for OriginLayer {
    type Service = Origin<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Origin {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`OriginLayer`].
#[derive(Clone, Debug)]
pub struct Origin<S> {
    inner: S,
    layer: OriginLayer,
}

impl<S> Origin<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Origin<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.layer.check(&req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(error) => ResponseFuture::reject(error.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use std::convert::Infallible;
    use tower::ServiceExt;

    async fn status(layer: &OriginLayer, headers: &[(&str, &str)]) -> StatusCode {
        let svc = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
        let mut req = Request::post("/mcp");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        svc.oneshot(req.body(()).unwrap()).await.unwrap().status()
    }

    #[tokio::test]
    async fn loopback_origins_on_any_port_and_no_origin_pass() {
        let layer = OriginLayer::localhost();
        for origin in [
            "http://localhost:5173",
            "http://127.0.0.1",
            "https://[::1]:8443",
            "HTTP://LOCALHOST:1",
        ] {
            assert_eq!(
                status(&layer, &[("origin", origin)]).await,
                StatusCode::OK,
                "{origin}"
            );
        }
        assert_eq!(status(&layer, &[]).await, StatusCode::OK);
    }

    #[tokio::test]
    async fn other_origins_are_forbidden() {
        let layer = OriginLayer::localhost();
        for origin in [
            "http://evil.example.com",
            "http://localhost.evil.com",
            "http://127.0.0.1.evil.com:80",
            "http://user@localhost",
            "null",
            "file://",
            "http://localhost/path",
        ] {
            assert_eq!(
                status(&layer, &[("origin", origin)]).await,
                StatusCode::FORBIDDEN,
                "{origin}"
            );
        }
    }

    #[tokio::test]
    async fn configured_origins_match_normalized() {
        let layer = OriginLayer::none().allow_origin("https://App.Example.com/");
        assert_eq!(
            status(&layer, &[("origin", "https://app.example.com:443")]).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&layer, &[("origin", "http://localhost:3000")]).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(
                &OriginLayer::any(),
                &[("origin", "http://evil.example.com")]
            )
            .await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn host_and_origin_are_checked_independently() {
        let layer = OriginLayer::localhost().allow_hosts(["mcp.example.com"]);
        assert_eq!(
            status(&layer, &[("host", "mcp.example.com:8080")]).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&layer, &[("host", "localhost:8080")]).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&layer, &[("host", "evil.example.com")]).await,
            StatusCode::FORBIDDEN
        );
        // A good Host does not excuse an evil Origin.
        assert_eq!(
            status(
                &layer,
                &[
                    ("host", "localhost:8080"),
                    ("origin", "http://evil.example.com")
                ]
            )
            .await,
            StatusCode::FORBIDDEN
        );
        // Without Host validation, any Host passes.
        assert_eq!(
            status(&OriginLayer::localhost(), &[("host", "evil.example.com")]).await,
            StatusCode::OK
        );
    }
}
