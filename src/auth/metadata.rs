//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document MCP clients read to find the
//! authorization server, and where it lives.
//!
//! For the resource `https://mcp.example.com/mcp` the document is served at
//! `/.well-known/oauth-protected-resource/mcp` (RFC 9728 §3.1 path insertion, what MCP clients try
//! first) and at the root form `/.well-known/oauth-protected-resource` (their fallback; turn it off
//! with [`serve_root`](ProtectedResourceMetadata::serve_root)). It is public: no authentication,
//! `Access-Control-Allow-Origin: *`, preflights answered. `resource` is exactly the configured
//! string, which clients compare with the URL they connect to, so configure the public URL of the
//! MCP endpoint (not one derived from `Host`).
//!
//! Serve it with [`MetadataLayer`] outside the auth layers (it answers its paths and forwards
//! everything else), or mount [`ProtectedResourceMetadata::into_service`] in a router.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::auth::{MetadataLayer, ProtectedResourceMetadata};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let metadata = ProtectedResourceMetadata::new("https://mcp.example.com/mcp")
//!     .unwrap()
//!     .authorization_server("https://auth.example.com")
//!     .scopes_supported(["mcp:read", "mcp:write"]);
//! assert_eq!(
//!     metadata.metadata_url(),
//!     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
//! );
//!
//! let service = ServiceBuilder::new()
//!     .layer(MetadataLayer::new(metadata))
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//!     });
//!
//! let request = Request::get("/.well-known/oauth-protected-resource/mcp")
//!     .body(Full::default())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["access-control-allow-origin"], "*");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(
//!     &body[..],
//!     br#"{"resource":"https://mcp.example.com/mcp","authorization_servers":["https://auth.example.com"],"scopes_supported":["mcp:read","mcp:write"],"bearer_methods_supported":["header"]}"#
//! );
//! # }
//! ```

use super::ConfigError;
use crate::body::ResponseBody;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use pin_project_lite::pin_project;
use serde::Serialize;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The well-known path prefix (RFC 9728 §3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The parts of a resource identifier the metadata location is built from.
struct ResourceUrl {
    uri: http::Uri,
}

fn parse_resource(resource: &str) -> Result<ResourceUrl, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::new(format!(
            "invalid resource identifier {resource:?}: {why} (expected an absolute http(s) URL)"
        ))
    };
    if resource.contains('#') {
        return Err(invalid("it has a fragment"));
    }
    let uri: http::Uri = resource.parse().map_err(|_| invalid("not a URL"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("https" | "http"), Some(authority)) if !authority.as_str().contains('@') => {
            Ok(ResourceUrl { uri })
        }
        (Some("https" | "http"), Some(_)) => Err(invalid("it has user information")),
        (Some(_), Some(_)) => Err(invalid("not http or https")),
        _ => Err(invalid("not absolute")),
    }
}

/// The path of the metadata document for a resource path: `/mcp` →
/// `/.well-known/oauth-protected-resource/mcp`; `` and `/` → the root form.
fn well_known_path(resource_path: &str) -> String {
    match resource_path {
        "" | "/" => WELL_KNOWN_PATH.to_owned(),
        path => format!("{WELL_KNOWN_PATH}{path}"),
    }
}

/// The URL of the protected resource metadata of `resource` (RFC 9728 §3.1): the well-known
/// path inserted between the authority and the resource's path, the query kept.
///
/// ```
/// use mcp_tower_http::auth::resource_metadata_url;
///
/// assert_eq!(
///     resource_metadata_url("https://example.com").unwrap(),
///     "https://example.com/.well-known/oauth-protected-resource"
/// );
/// assert_eq!(
///     resource_metadata_url("https://example.com/").unwrap(),
///     "https://example.com/.well-known/oauth-protected-resource"
/// );
/// assert_eq!(
///     resource_metadata_url("https://example.com/api/mcp?tenant=one").unwrap(),
///     "https://example.com/.well-known/oauth-protected-resource/api/mcp?tenant=one"
/// );
/// assert!(resource_metadata_url("example.com/api/mcp").is_err());
/// ```
pub fn resource_metadata_url(resource: &str) -> Result<String, ConfigError> {
    let ResourceUrl { uri } = parse_resource(resource)?;
    let scheme = uri.scheme_str().unwrap_or("https");
    let authority = uri.authority().map_or("", |a| a.as_str());
    let mut url = format!("{scheme}://{authority}{}", well_known_path(uri.path()));
    if let Some(query) = uri.query() {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

/// An RFC 9728 protected resource metadata document; see the [module docs](crate::auth::metadata).
#[derive(Clone, Debug, Serialize)]
pub struct ProtectedResourceMetadata {
    resource: String,
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    bearer_methods_supported: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<String>,
    #[serde(skip)]
    path: String,
    #[serde(skip)]
    metadata_url: String,
    #[serde(skip)]
    serve_root: bool,
}

impl ProtectedResourceMetadata {
    /// The document for `resource`, the public URL of the MCP endpoint, kept exactly as given.
    /// Fails unless it is an absolute `http`/`https` URL without fragment or user information.
    ///
    /// MCP requires at least one [`authorization_server`](Self::authorization_server).
    pub fn new(resource: impl Into<String>) -> Result<Self, ConfigError> {
        let resource = resource.into();
        let metadata_url = resource_metadata_url(&resource)?;
        let path = well_known_path(parse_resource(&resource)?.uri.path());
        Ok(Self {
            resource,
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            bearer_methods_supported: ["header"],
            resource_name: None,
            resource_documentation: None,
            path,
            metadata_url,
            serve_root: true,
        })
    }

    /// Adds an authorization server (its issuer URL).
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// Sets `scopes_supported`.
    pub fn scopes_supported<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `resource_name`, a human-readable name.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Sets `resource_documentation`, a URL of human-readable documentation.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// Also serves the document at the root form `/.well-known/oauth-protected-resource` (default
    /// `true`; it is the only form when the resource has no path).
    pub fn serve_root(mut self, serve: bool) -> Self {
        self.serve_root = serve;
        self
    }

    /// The resource identifier, exactly as configured.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The URL of this document, for the `resource_metadata` challenge parameter.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The path the document is served at (the path-inserted form).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `true` when `path` serves the document.
    pub fn serves_path(&self, path: &str) -> bool {
        path == self.path || (self.serve_root && path == WELL_KNOWN_PATH)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Bytes {
        // Serializing strings and string lists cannot fail.
        serde_json::to_vec(self)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    /// A service answering the document's paths (404 elsewhere), e.g. for a router.
    pub fn into_service(self) -> MetadataService {
        MetadataService {
            document: Arc::new(Document::new(self)),
        }
    }
}

/// The document rendered once, and the paths it is served at.
#[derive(Debug)]
struct Document {
    metadata: ProtectedResourceMetadata,
    json: Bytes,
}

impl Document {
    fn new(metadata: ProtectedResourceMetadata) -> Self {
        let json = metadata.to_json();
        Self { metadata, json }
    }

    /// The answer for a request to one of the document's paths.
    fn respond<B>(&self, req: &Request<B>) -> Response<Bytes> {
        let (status, body) = match *req.method() {
            Method::GET | Method::HEAD => (StatusCode::OK, self.json.clone()),
            Method::OPTIONS => (StatusCode::NO_CONTENT, Bytes::new()),
            _ => (StatusCode::METHOD_NOT_ALLOWED, Bytes::new()),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        match status {
            StatusCode::OK => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            StatusCode::NO_CONTENT => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
                if let Some(requested) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
                }
                headers.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static("86400"),
                );
            }
            _ => {
                headers.insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, OPTIONS"),
                );
            }
        }
        response
    }
}

/// Serves the metadata document only; made by [`ProtectedResourceMetadata::into_service`].
#[derive(Clone, Debug)]
pub struct MetadataService {
    document: Arc<Document>,
}

impl MetadataService {
    /// The answer for `req` when it is for one of the document's paths.
    pub(crate) fn respond_to<B>(&self, req: &Request<B>) -> Option<Response<Bytes>> {
        self.document
            .metadata
            .serves_path(req.uri().path())
            .then(|| self.document.respond(req))
    }
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.document.metadata.serves_path(req.uri().path()) {
            ready(Ok(self.document.respond(&req).map(Full::new)))
        } else {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::NOT_FOUND;
            ready(Ok(response))
        }
    }
}

/// Answers the metadata document's paths and forwards every other request; see the
/// [module docs](crate::auth::metadata).
#[derive(Clone, Debug)]
#[must_use]
pub struct MetadataLayer {
    document: Arc<Document>,
}

impl MetadataLayer {
    /// A layer serving `metadata`.
    pub fn new(metadata: ProtectedResourceMetadata) -> Self {
        Self {
            document: Arc::new(Document::new(metadata)),
        }
    }

    /// The document served.
    pub fn metadata(&self) -> &ProtectedResourceMetadata {
        &self.document.metadata
    }
}

impl<S> Layer<S> for MetadataLayer {
    type Service = Metadata<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metadata {
            inner,
            document: self.document.clone(),
        }
    }
}

/// The service made by [`MetadataLayer`].
#[derive(Clone, Debug)]
pub struct Metadata<S> {
    inner: S,
    document: Arc<Document>,
}

impl<S> Metadata<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metadata<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.document.metadata.serves_path(req.uri().path()) {
            let response = self.document.respond(&req);
            return ResponseFuture {
                kind: Kind::Ready {
                    response: Some(response),
                },
            };
        }
        ResponseFuture {
            kind: Kind::Inner {
                future: self.inner.call(req),
            },
        }
    }
}

pin_project! {
    /// Response future of [`Metadata`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<Bytes>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::inner))),
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response.map(ResponseBody::full))),
                None => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[test]
    fn metadata_url_inserts_the_path_and_keeps_the_query() {
        for (resource, url) in [
            (
                "https://example.com",
                "https://example.com/.well-known/oauth-protected-resource",
            ),
            (
                "https://example.com/",
                "https://example.com/.well-known/oauth-protected-resource",
            ),
            (
                "https://ex.com/mcp",
                "https://ex.com/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "http://127.0.0.1:8080/public/mcp/",
                "http://127.0.0.1:8080/.well-known/oauth-protected-resource/public/mcp/",
            ),
            (
                "https://example.com/api/mcp?tenant=one",
                "https://example.com/.well-known/oauth-protected-resource/api/mcp?tenant=one",
            ),
            (
                "https://example.com?tenant=one",
                "https://example.com/.well-known/oauth-protected-resource?tenant=one",
            ),
            (
                "HTTPS://Ex.COM:8443/Mcp",
                "https://Ex.COM:8443/.well-known/oauth-protected-resource/Mcp",
            ),
        ] {
            assert_eq!(resource_metadata_url(resource).unwrap(), url, "{resource}");
        }
        for bad in [
            "example.com/api/mcp",
            "/mcp",
            "https://ex.com/mcp#frag",
            "https://user@ex.com/mcp",
            "ftp://ex.com/mcp",
            "",
        ] {
            assert!(resource_metadata_url(bad).is_err(), "{bad}");
        }
    }

    fn metadata() -> ProtectedResourceMetadata {
        ProtectedResourceMetadata::new("https://ex.com/mcp")
            .unwrap()
            .authorization_server("https://as.example.com/")
            .scopes_supported(["mcp:read"])
    }

    async fn get(
        service: MetadataService,
        method: Method,
        path: &str,
    ) -> (http::response::Parts, Bytes) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let (parts, body) = service.oneshot(request).await.unwrap().into_parts();
        (parts, body.collect().await.unwrap().to_bytes())
    }

    #[tokio::test]
    async fn serves_the_path_inserted_and_root_forms() {
        let service = metadata().into_service();
        for path in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ] {
            let (parts, body) = get(service.clone(), Method::GET, path).await;
            assert_eq!(parts.status, StatusCode::OK, "{path}");
            assert_eq!(parts.headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(parts.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
            assert_eq!(
                &body[..],
                br#"{"resource":"https://ex.com/mcp","authorization_servers":["https://as.example.com/"],"scopes_supported":["mcp:read"],"bearer_methods_supported":["header"]}"#
            );
        }
        for path in [
            "/.well-known/oauth-protected-resource/other",
            "/.well-known/oauth-protected-resource/mcp/",
            "/mcp",
        ] {
            let (parts, _) = get(service.clone(), Method::GET, path).await;
            assert_eq!(parts.status, StatusCode::NOT_FOUND, "{path}");
        }
        let no_root = metadata().serve_root(false).into_service();
        let (parts, _) = get(no_root, Method::GET, WELL_KNOWN_PATH).await;
        assert_eq!(parts.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn preflight_and_other_methods() {
        let service = metadata().into_service();
        let request = Request::options("/.well-known/oauth-protected-resource/mcp")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "mcp-protocol-version")
            .body(())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert_eq!(
            response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "mcp-protocol-version"
        );
        let (parts, body) = get(
            service,
            Method::POST,
            "/.well-known/oauth-protected-resource",
        )
        .await;
        assert_eq!(parts.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(parts.headers[header::ALLOW], "GET, HEAD, OPTIONS");
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn the_layer_forwards_other_paths() {
        let svc = MetadataLayer::new(metadata()).layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::from("inner")))
        }));
        let response = svc
            .clone()
            .oneshot(Request::get("/mcp").body(()).unwrap())
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"inner");
        let response = svc
            .oneshot(
                Request::get("/.well-known/oauth-protected-resource/mcp?x=1")
                    .body(())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(br#"{"resource":"https://ex.com/mcp""#));
    }
}
