//! `WWW-Authenticate: Bearer` challenges (RFC 6750 §3, RFC 9728 §5.1) and [`ChallengeLayer`],
//! which adds the configured challenge to every [`AuthError`] rejection below it.
//!
//! Auth layers reject with a response carrying an [`AuthError`] in its extensions and a bare
//! challenge. [`ChallengeLayer`] only sets `WWW-Authenticate` (with `realm`, `scope`,
//! `resource_metadata`); the status and the JSON-RPC body come from the crate's one renderer,
//! [`JsonRpcErrorLayer`](crate::error_map::JsonRpcErrorLayer), placed inside it:
//!
//! | error | status | challenge |
//! |---|---|---|
//! | no credentials | 401 | `Bearer realm=…, scope=…, resource_metadata=…` (no `error`, RFC 6750 §3.1) |
//! | bad, expired, wrong-audience token | 401 | `… error="invalid_token", error_description="…" …` |
//! | token in the query string, repeated header | 400 | `… error="invalid_request", error_description="…" …` |
//! | missing scopes (step-up) | 403 | `… error="insufficient_scope", …, scope="<every scope needed>" …` |
//! | JWKS / introspection endpoint down | 503 | none |
//!
//! Parameters come in the order `realm`, `error`, `error_description`, `scope`,
//! `resource_metadata`, joined by `", "`. Every value is a quoted-string (RFC 9110 §5.6.4): `"`
//! and `\` are backslash-escaped, control characters (CR, LF, ...) become spaces and non-ASCII
//! characters `?`, so no input can split or forge a header. `error_description` is cut to 256
//! characters.
//!
//! The body [`JsonRpcErrorLayer`](crate::error_map::JsonRpcErrorLayer) renders is a JSON-RPC
//! error: `{"jsonrpc":"2.0","id":<id or null>,"error":{"code":-32000,"message":…,"data":{"error":…}}}`.
//! The code is `-32000` (server error), never `-32001`, which MCP clients read as "session not
//! found".
//!
//! A bare `401` from elsewhere without `WWW-Authenticate` gets the no-error challenge, so a
//! `401` always tells clients where the metadata is.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::auth::{AuthError, ChallengeLayer};
//! use mcp_tower_http::error_map::JsonRpcErrorLayer;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(
//!         ChallengeLayer::new()
//!             .resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
//!             .scope(["mcp:read"]),
//!     )
//!     .layer(JsonRpcErrorLayer::new())
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         let rejection: Response<Full<Bytes>> =
//!             AuthError::invalid_token("The access token expired").into_response();
//!         Ok::<_, Infallible>(rejection)
//!     });
//!
//! let response = service.oneshot(Request::new(Full::default())).await.unwrap();
//! assert_eq!(response.status(), 401);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     "Bearer error=\"invalid_token\", error_description=\"The access token expired\", \
//!      scope=\"mcp:read\", \
//!      resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
//! );
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(
//!     &body[..],
//!     br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Unauthorized: The access token expired","data":{"error":"invalid_token"}}}"#
//! );
//! # }
//! ```

use super::metadata::ProtectedResourceMetadata;
use super::{AuthError, AuthErrorKind};
use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// The longest `error_description` sent, in characters.
const MAX_DESCRIPTION_CHARS: usize = 256;

/// A `WWW-Authenticate: Bearer` challenge; see the [module docs](crate::auth::challenge).
///
/// ```
/// use mcp_tower_http::auth::BearerChallenge;
///
/// let challenge = BearerChallenge::new()
///     .realm("mcp")
///     .error("invalid_token")
///     .error_description("bad \"token\"\r\nSet-Cookie: x=1");
/// assert_eq!(
///     challenge.to_string(),
///     r#"Bearer realm="mcp", error="invalid_token", error_description="bad \"token\"  Set-Cookie: x=1""#
/// );
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    realm: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    scope: Option<String>,
    resource_metadata: Option<String>,
}

impl BearerChallenge {
    /// The bare challenge `Bearer`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `realm`.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Sets `error` (`invalid_request`, `invalid_token`, `insufficient_scope`).
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Sets `error_description`.
    pub fn error_description(mut self, description: impl Into<String>) -> Self {
        self.error_description = Some(description.into());
        self
    }

    /// Sets `scope`, the space-separated list of `scopes`; an empty list removes it.
    pub fn scope<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let joined = scopes
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        self.scope = (!joined.is_empty()).then_some(joined);
        self
    }

    /// Sets `resource_metadata`, the URL of the RFC 9728 protected resource metadata.
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }

    /// The header value. Every value is sanitized, so this cannot fail.
    pub fn to_header_value(&self) -> HeaderValue {
        HeaderValue::try_from(self.to_string()).unwrap_or(HeaderValue::from_static("Bearer"))
    }
}

impl fmt::Display for BearerChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer")?;
        let params = [
            ("realm", &self.realm, usize::MAX),
            ("error", &self.error, usize::MAX),
            (
                "error_description",
                &self.error_description,
                MAX_DESCRIPTION_CHARS,
            ),
            ("scope", &self.scope, usize::MAX),
            ("resource_metadata", &self.resource_metadata, usize::MAX),
        ];
        let mut first = true;
        for (name, value, max_chars) in params {
            let Some(value) = value else { continue };
            f.write_str(if first { " " } else { ", " })?;
            first = false;
            write!(f, "{name}=\"")?;
            write_quoted_content(f, value, max_chars)?;
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// Writes `value` as the content of a quoted-string: `"` and `\` escaped, control characters
/// replaced by a space, non-ASCII by `?`, at most `max_chars` characters of input.
fn write_quoted_content(f: &mut impl fmt::Write, value: &str, max_chars: usize) -> fmt::Result {
    for c in value.chars().take(max_chars) {
        match c {
            '"' | '\\' => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            ' '..='~' => f.write_char(c)?,
            c if c.is_ascii_control() => f.write_char(' ')?,
            _ => f.write_char('?')?,
        }
    }
    Ok(())
}

/// Renders [`AuthError`] rejections as challenges and JSON-RPC errors; see the
/// [module docs](crate::auth::challenge).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ChallengeLayer {
    config: Arc<Config>,
}

#[derive(Clone, Debug, Default)]
struct Config {
    realm: Option<String>,
    resource_metadata: Option<String>,
    scope: Vec<String>,
}

impl ChallengeLayer {
    /// Challenges with no `realm`, `scope` or `resource_metadata`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Challenges pointing at `metadata`'s document ([`ProtectedResourceMetadata::metadata_url`]).
    pub fn for_metadata(metadata: &ProtectedResourceMetadata) -> Self {
        Self::new().resource_metadata(metadata.metadata_url())
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Sets the `realm` of every challenge.
    pub fn realm(self, realm: impl Into<String>) -> Self {
        let realm = realm.into();
        self.edit(|c| c.realm = Some(realm))
    }

    /// Sets `resource_metadata`, the URL of the protected resource metadata (RFC 9728 §5.1).
    pub fn resource_metadata(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.edit(|c| c.resource_metadata = Some(url))
    }

    /// The scopes the `401` challenges ask for (MCP: the scopes needed for the request). A `403`
    /// names the scopes of its [`InsufficientScope`](AuthErrorKind::InsufficientScope) instead.
    pub fn scope<I, T>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.edit(|c| c.scope = scopes)
    }

    /// The full challenge this layer sends for `error`.
    pub fn challenge_for(&self, error: &AuthError) -> BearerChallenge {
        let c = &self.config;
        let mut challenge = error.challenge();
        challenge.realm = c.realm.clone();
        if !matches!(error.kind(), AuthErrorKind::InsufficientScope { .. }) {
            challenge = challenge.scope(&c.scope);
        }
        challenge.resource_metadata = c.resource_metadata.clone();
        challenge
    }

    /// Sets the full challenge on an auth rejection (and on a bare `401`); the status and the
    /// body are the renderer's.
    fn add_challenge<B>(&self, response: &mut Response<B>) {
        let challenge = match response.extensions().get::<AuthError>() {
            Some(error) if error.kind().has_challenge() => self.challenge_for(error),
            Some(_) => return,
            None if response.status() == StatusCode::UNAUTHORIZED
                && !response.headers().contains_key(header::WWW_AUTHENTICATE) =>
            {
                self.challenge_for(&AuthError::missing_credentials())
            }
            None => return,
        };
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    }
}

impl<S> Layer<S> for ChallengeLayer {
    type Service = Challenge<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Challenge {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`ChallengeLayer`].
#[derive(Clone, Debug)]
pub struct Challenge<S> {
    inner: S,
    layer: ChallengeLayer,
}

impl<S> Challenge<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Challenge<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            future: self.inner.call(req),
            layer: Some(self.layer.clone()),
        }
    }
}

pin_project! {
    /// Response future of [`Challenge`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        layer: Option<ChallengeLayer>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        if let Some(layer) = this.layer.take() {
            layer.add_challenge(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::Id;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::convert::Infallible;
    use tower::ServiceExt;

    const PRM: &str = "https://ex.com/.well-known/oauth-protected-resource/mcp";

    async fn render(
        layer: ChallengeLayer,
        request: Request<()>,
        make: impl Fn() -> Response<Full<Bytes>> + Send + 'static,
    ) -> (http::response::Parts, String) {
        // The challenge goes around the renderer, as in `McpStack`.
        let svc = tower::ServiceBuilder::new()
            .layer(layer)
            .layer(crate::error_map::JsonRpcErrorLayer::new())
            .service_fn(move |_: Request<()>| {
                let response = make();
                async move { Ok::<_, Infallible>(response) }
            });
        let (parts, body) = svc.oneshot(request).await.unwrap().into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts, String::from_utf8(body.to_vec()).unwrap())
    }

    fn full() -> ChallengeLayer {
        ChallengeLayer::new()
            .realm("mcp")
            .resource_metadata(PRM)
            .scope(["mcp:read", "mcp:write"])
    }

    fn www(parts: &http::response::Parts) -> &str {
        parts.headers[header::WWW_AUTHENTICATE].to_str().unwrap()
    }

    #[tokio::test]
    async fn missing_credentials_challenge_has_no_error() {
        let (parts, body) = render(full(), Request::new(()), || {
            AuthError::missing_credentials().into_response()
        })
        .await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            www(&parts),
            r#"Bearer realm="mcp", scope="mcp:read mcp:write", resource_metadata="https://ex.com/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            parts.headers[header::CONTENT_TYPE],
            "application/json; charset=utf-8"
        );
        assert_eq!(
            body,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Unauthorized: authentication required"}}"#
        );
        // Without configuration the challenge is bare.
        let (parts, _) = render(ChallengeLayer::new(), Request::new(()), || {
            AuthError::missing_credentials().into_response()
        })
        .await;
        assert_eq!(www(&parts), "Bearer");
    }

    #[tokio::test]
    async fn invalid_token_and_invalid_request() {
        let (parts, body) = render(full(), Request::new(()), || {
            AuthError::invalid_token("The access token expired").into_response()
        })
        .await;
        assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            www(&parts),
            r#"Bearer realm="mcp", error="invalid_token", error_description="The access token expired", scope="mcp:read mcp:write", resource_metadata="https://ex.com/.well-known/oauth-protected-resource/mcp""#
        );
        assert!(
            body.contains(r#""data":{"error":"invalid_token"}"#),
            "{body}"
        );

        let (parts, _) = render(
            ChallengeLayer::new().resource_metadata(PRM),
            Request::new(()),
            || {
                AuthError::invalid_request("Access tokens are not accepted in the query string")
                    .into_response()
            },
        )
        .await;
        assert_eq!(parts.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            www(&parts),
            r#"Bearer error="invalid_request", error_description="Access tokens are not accepted in the query string", resource_metadata="https://ex.com/.well-known/oauth-protected-resource/mcp""#
        );
    }

    #[tokio::test]
    async fn insufficient_scope_names_every_required_scope() {
        let (parts, body) = render(full(), Request::new(()), || {
            AuthError::insufficient_scope(["mcp:read", "tools:admin"])
                .with_id(Some(Id::Number(3)))
                .into_response()
        })
        .await;
        assert_eq!(parts.status, StatusCode::FORBIDDEN);
        assert_eq!(
            www(&parts),
            r#"Bearer realm="mcp", error="insufficient_scope", error_description="Insufficient scope", scope="mcp:read tools:admin", resource_metadata="https://ex.com/.well-known/oauth-protected-resource/mcp""#
        );
        assert_eq!(
            body,
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"Forbidden: insufficient scope","data":{"error":"insufficient_scope","required_scopes":["mcp:read","tools:admin"]}}}"#
        );
    }

    #[tokio::test]
    async fn hostile_values_never_break_the_header() {
        let hostile = "a\"b\\c\r\nSet-Cookie: evil=1\u{0}\u{7f}\té";
        let layer = ChallengeLayer::new()
            .realm("r\"\r\nX: y")
            .resource_metadata("https://ex.com/\"\n")
            .scope(["a\"b", "c\\d"]);
        let (parts, _) = render(layer, Request::new(()), move || {
            AuthError::invalid_token(hostile).into_response()
        })
        .await;
        assert_eq!(
            www(&parts),
            r#"Bearer realm="r\"  X: y", error="invalid_token", error_description="a\"b\\c  Set-Cookie: evil=1   ?", scope="a\"b c\\d", resource_metadata="https://ex.com/\" ""#
        );
        assert_eq!(
            parts
                .headers
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .count(),
            1
        );
        assert!(parts.headers.get("set-cookie").is_none());
        assert!(parts.headers.get("x").is_none());
        // Long descriptions are cut.
        let long = "x".repeat(10_000);
        let header = BearerChallenge::new().error_description(long).to_string();
        assert_eq!(header.len(), r#"Bearer error_description="""#.len() + 256);
    }

    #[tokio::test]
    async fn unavailable_has_no_challenge_and_others_pass() {
        let (parts, body) = render(full(), Request::new(()), || {
            AuthError::unavailable().into_response()
        })
        .await;
        assert_eq!(parts.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(parts.headers.get(header::WWW_AUTHENTICATE).is_none());
        assert!(body.contains("-32000"), "{body}");

        let (parts, body) =
            render(full(), Request::new(()), || Response::new(Full::from("ok"))).await;
        assert_eq!(parts.status, StatusCode::OK);
        assert!(parts.headers.get(header::WWW_AUTHENTICATE).is_none());
        assert_eq!(body, "ok");

        // A bare 401 from elsewhere gains the no-error challenge, body untouched.
        let (parts, body) = render(full(), Request::new(()), || {
            let mut r = Response::new(Full::from("nope"));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        })
        .await;
        assert!(www(&parts).starts_with(r#"Bearer realm="mcp", scope="#));
        assert_eq!(body, "nope");
    }
}
