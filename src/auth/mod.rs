//! Authentication and authorization for MCP servers as an OAuth 2.1 resource server.
//!
//! The pieces, each its own layer or value:
//!
//! | item | concern |
//! |---|---|
//! | [`AuthLayer`] | reads [`Credentials`] (`Authorization: Bearer`, `X-API-Key`; never the query string), asks an [`Authenticator`], puts the [`Principal`] in the request extensions |
//! | [`ApiKeys`] | static API keys, constant-time comparison |
//! | [`JwtAuthenticator`] | JWT access tokens: HS256 secret, RS256/ES256 from a JWKS file or URL, `aud` = the resource (feature `jwt`) |
//! | [`IntrospectionAuthenticator`] | RFC 7662 token introspection, cached (feature `introspection`) |
//! | [`Either`] / [`Authenticator::or`] | accept two kinds of credentials (API keys *or* JWTs) |
//! | [`ScopeLayer`] + [`ScopePolicy`] | scopes every request needs, and per-tool scopes for `tools/call` (403 step-up) |
//! | [`ChallengeLayer`] | renders every [`AuthError`] as `WWW-Authenticate: Bearer …` + a JSON-RPC error body |
//! | [`MetadataLayer`] / [`ProtectedResourceMetadata`] | RFC 9728 metadata at `/.well-known/oauth-protected-resource[/path]` |
//!
//! Layers keep `Error = S::Error`: a rejection is a response whose extensions carry an
//! [`AuthError`] (status set, a bare challenge header, empty body); [`ChallengeLayer`] renders it
//! with the configured `resource_metadata`, `realm` and `scope`. An [`McpService`](crate::McpService)
//! endpoint, or any layer, can reject the same way ([`AuthError::into_response`]), e.g. to ask for
//! more scopes.
//!
//! # Layer order
//!
//! From the outside in (`ServiceBuilder` order):
//!
//! 1. CORS (tower-http `CorsLayer`, exposing `WWW-Authenticate`) answers preflights.
//! 2. [`MetadataLayer`]: the metadata document, public.
//! 3. [`ChallengeLayer`]: renders [`AuthError`]s.
//! 4. [`JsonRpcErrorLayer`](crate::error_map::JsonRpcErrorLayer): renders transport errors.
//! 5. [`OriginLayer`](crate::origin::OriginLayer).
//! 6. [`AuthLayer`] (before the body is read: unauthenticated bodies are never buffered).
//! 7. body limit, [`JsonRpcBodyLayer`](crate::jsonrpc_body::JsonRpcBodyLayer).
//! 8. [`ScopeLayer`] (needs the parsed [`Payload`](crate::jsonrpc::Payload) for `tools/call`).
//! 9. legacy SSE, sessions (bound to [`Principal::subject`]), SSE, endpoint.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::auth::{
//!     ApiKeys, AuthLayer, ChallengeLayer, MetadataLayer, ProtectedResourceMetadata,
//! };
//! use mcp_tower_http::Principal;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let metadata = ProtectedResourceMetadata::new("https://mcp.example.com/mcp")
//!     .unwrap()
//!     .authorization_server("https://auth.example.com");
//! let challenge = ChallengeLayer::for_metadata(&metadata);
//! let service = ServiceBuilder::new()
//!     .layer(MetadataLayer::new(metadata))
//!     .layer(challenge)
//!     .layer(AuthLayer::new(ApiKeys::new().key("s3cret-key")))
//!     .service_fn(|req: Request<Full<Bytes>>| async move {
//!         let who = req
//!             .extensions()
//!             .get::<Principal>()
//!             .map_or(String::new(), |p| p.subject.to_string());
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(who)))
//!     });
//!
//! let anonymous = Request::post("/mcp").body(Full::default()).unwrap();
//! let response = service.clone().oneshot(anonymous).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     response.headers()["www-authenticate"],
//!     "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
//! );
//!
//! let with_key = Request::post("/mcp")
//!     .header("x-api-key", "s3cret-key")
//!     .body(Full::default())
//!     .unwrap();
//! assert_eq!(service.oneshot(with_key).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```
#![cfg_attr(
    not(feature = "jwt"),
    doc = "\n[`JwtAuthenticator`]: crate::auth \"needs the jwt feature\""
)]
#![cfg_attr(
    not(feature = "introspection"),
    doc = "\n[`IntrospectionAuthenticator`]: crate::auth \"needs the introspection feature\""
)]

mod api_key;
pub mod challenge;
mod credentials;
mod error;
#[cfg(any(feature = "jwt", feature = "introspection"))]
mod http_client;
#[cfg(feature = "introspection")]
mod introspection;
#[cfg(feature = "jwt")]
mod jwt;
mod layer;
pub mod metadata;
mod scope;
mod visibility;

#[cfg(test)]
mod tests;

pub use self::api_key::ApiKeys;
pub use self::challenge::{BearerChallenge, Challenge, ChallengeLayer};
pub use self::credentials::{Credentials, X_API_KEY};
pub use self::error::{AuthError, AuthErrorKind, ConfigError};
#[cfg(any(feature = "jwt", feature = "introspection"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "jwt", feature = "introspection"))))]
pub use self::http_client::HttpClient;
#[cfg(feature = "introspection")]
#[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
pub use self::introspection::IntrospectionAuthenticator;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use self::jwt::{JwksSource, JwtAuthenticator};
pub use self::layer::{Auth, AuthLayer, ResponseFuture};
pub use self::metadata::{
    Metadata, MetadataLayer, MetadataService, ProtectedResourceMetadata, resource_metadata_url,
};
pub use self::scope::{Scope, ScopeLayer, ScopePolicy};
pub use self::visibility::{ToolVisibility, ToolVisibilityLayer};
pub use crate::body::ResponseBody;

use crate::principal::Principal;
use std::future::Future;
use std::sync::Arc;

/// Turns [`Credentials`] into a [`Principal`], or refuses them.
///
/// Return [`AuthError::missing_credentials`] when the request carries nothing this authenticator
/// understands, [`AuthError::invalid_token`] when it carries a credential that is not good, and
/// [`AuthError::unavailable`] when the credential could not be checked.
///
/// Implementations: [`ApiKeys`], `JwtAuthenticator` and `IntrospectionAuthenticator` (features
/// `jwt` and `introspection`), [`Either`] (two of them), `Option<A>` (`None` refuses
/// everything), `Arc<A>`, and [`authenticate_fn`] for closures.
pub trait Authenticator: Send + Sync + 'static {
    /// Authenticates `credentials`.
    fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<Principal, AuthError>> + Send;

    /// Accepts what `self` accepts, else what `other` accepts; see [`Either`].
    fn or<B: Authenticator>(self, other: B) -> Either<Self, B>
    where
        Self: Sized,
    {
        Either::new(self, other)
    }
}

/// The audiences a token for `resource` may carry: the resource exactly, plus, for a resource
/// without a path, the same URL with the root slash (`https://mcp.example.com` and
/// `https://mcp.example.com/` name one resource; authorization servers write either).
#[cfg(any(feature = "jwt", feature = "introspection"))]
pub(crate) fn resource_audiences(resource: String) -> Vec<String> {
    let without_scheme = resource
        .strip_prefix("https://")
        .or_else(|| resource.strip_prefix("http://"));
    let other = match without_scheme {
        Some(rest) if !rest.contains(['/', '?', '#']) => Some(format!("{resource}/")),
        Some(rest) if rest.ends_with('/') && rest.find('/') == Some(rest.len() - 1) => {
            Some(resource.trim_end_matches('/').to_owned())
        }
        _ => None,
    };
    std::iter::once(resource).chain(other).collect()
}

#[cfg(all(test, any(feature = "jwt", feature = "introspection")))]
mod audience_tests {
    use super::resource_audiences;

    #[test]
    fn pathless_resources_accept_the_root_slash_and_nothing_else_changes() {
        assert_eq!(
            resource_audiences("https://mcp.example.com".into()),
            ["https://mcp.example.com", "https://mcp.example.com/"]
        );
        assert_eq!(
            resource_audiences("http://127.0.0.1:8080/".into()),
            ["http://127.0.0.1:8080/", "http://127.0.0.1:8080"]
        );
        assert_eq!(
            resource_audiences("https://mcp.example.com/mcp".into()),
            ["https://mcp.example.com/mcp"]
        );
        assert_eq!(resource_audiences("urn:mcp".into()), ["urn:mcp"]);
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Object-safe form of [`Authenticator`], behind [`BoxAuthenticator`].
trait DynAuthenticator: Send + Sync + 'static {
    fn authenticate_boxed<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>>;
}

impl<A: Authenticator> DynAuthenticator for A {
    fn authenticate_boxed<'a>(
        &'a self,
        credentials: &'a Credentials,
    ) -> BoxFuture<'a, Result<Principal, AuthError>> {
        Box::pin(self.authenticate(credentials))
    }
}

/// Any [`Authenticator`] behind a pointer, for stacks that choose one at run time (the
/// [`McpStack`](crate::McpStack) builder, `mcp-proxy` from its flags). Costs one allocation per
/// request more than a concrete authenticator.
#[derive(Clone)]
pub struct BoxAuthenticator(Arc<dyn DynAuthenticator>);

impl BoxAuthenticator {
    /// Boxes `authenticator`.
    pub fn new(authenticator: impl Authenticator) -> Self {
        Self(Arc::new(authenticator))
    }
}

impl std::fmt::Debug for BoxAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxAuthenticator")
    }
}

impl Authenticator for BoxAuthenticator {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        self.0.authenticate_boxed(credentials).await
    }
}

impl<A: Authenticator> Authenticator for Arc<A> {
    fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<Principal, AuthError>> + Send {
        A::authenticate(self, credentials)
    }
}

impl<A: Authenticator> Authenticator for Option<A> {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        match self {
            Some(a) => a.authenticate(credentials).await,
            None => Err(AuthError::missing_credentials()),
        }
    }
}

/// Two authenticators: the principal of the first that accepts the credentials.
///
/// When both refuse, the more telling error is returned: one that recognised the credential
/// (`invalid_token`) beats "no credentials", a failure to check (`503`) beats both; on a tie the
/// second's error wins (put the authenticator whose messages should be shown second, e.g.
/// `api_keys.or(jwt)` reports "The access token expired" rather than "Invalid API key").
///
/// ```
/// use mcp_tower_http::auth::{ApiKeys, Authenticator, Credentials, authenticate_fn, AuthError};
/// use mcp_tower_http::Principal;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let admin = authenticate_fn(|c: &Credentials| {
///     let ok = c.bearer() == Some("admin-token");
///     async move {
///         if ok { Ok(Principal::new("admin")) } else { Err(AuthError::invalid_token("Unknown token")) }
///     }
/// });
/// let both = ApiKeys::new().key("k1").or(admin);
/// let p = both.authenticate(&Credentials::new().with_bearer("admin-token")).await.unwrap();
/// assert_eq!(&*p.subject, "admin");
/// let p = both.authenticate(&Credentials::new().with_api_key("k1")).await.unwrap();
/// assert_eq!(&*p.subject, "api-key:0");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Either<A, B> {
    first: A,
    second: B,
}

impl<A, B> Either<A, B> {
    /// Tries `first`, then `second`.
    pub fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

impl<A: Authenticator, B: Authenticator> Authenticator for Either<A, B> {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, AuthError> {
        let first = match self.first.authenticate(credentials).await {
            Ok(principal) => return Ok(principal),
            Err(e) => e,
        };
        match self.second.authenticate(credentials).await {
            Ok(principal) => Ok(principal),
            Err(second) if first.kind().rank() > second.kind().rank() => Err(first),
            Err(second) => Err(second),
        }
    }
}

/// An [`Authenticator`] from a closure returning a future; see [`authenticate_fn`].
#[derive(Clone, Copy, Debug)]
pub struct AuthenticateFn<F> {
    f: F,
}

/// Makes an [`Authenticator`] of `f`. The future cannot borrow the credentials: copy what it
/// needs before the `async` block.
pub fn authenticate_fn<F, Fut>(f: F) -> AuthenticateFn<F>
where
    F: Fn(&Credentials) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthError>> + Send,
{
    AuthenticateFn { f }
}

impl<F, Fut> Authenticator for AuthenticateFn<F>
where
    F: Fn(&Credentials) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Principal, AuthError>> + Send,
{
    fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<Principal, AuthError>> + Send {
        (self.f)(credentials)
    }
}

/// Splits a space-separated `scope` value, dropping duplicates and empty entries.
#[cfg(any(feature = "jwt", feature = "introspection"))]
fn split_scopes(scope: &str, into: &mut Vec<String>) {
    for s in scope.split_ascii_whitespace() {
        if !into.iter().any(|have| have == s) {
            into.push(s.to_owned());
        }
    }
}

/// The principal of validated token claims: subject `sub` (else `client_id`), scopes from
/// `scope` (space-separated) and `scp` (array or space-separated string), all claims kept.
#[cfg(any(feature = "jwt", feature = "introspection"))]
pub(crate) fn principal_from_claims(claims: serde_json::Value) -> Result<Principal, AuthError> {
    use serde_json::Value;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let Some(subject) = text("sub")
        .or_else(|| text("client_id"))
        .map(Arc::<str>::from)
    else {
        return Err(AuthError::invalid_token(
            "The access token names no subject (sub or client_id)",
        ));
    };
    let mut scopes = Vec::new();
    if let Some(scope) = text("scope") {
        split_scopes(scope, &mut scopes);
    }
    match claims.get("scp") {
        Some(Value::String(scp)) => split_scopes(scp, &mut scopes),
        Some(Value::Array(items)) => {
            for scp in items.iter().filter_map(Value::as_str) {
                split_scopes(scp, &mut scopes);
            }
        }
        _ => {}
    }
    Ok(Principal {
        subject,
        scopes,
        claims,
    })
}
