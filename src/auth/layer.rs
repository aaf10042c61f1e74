//! [`AuthLayer`]: authenticates every request before the inner service sees it.

use super::credentials::query_credential_param;
use super::{AuthError, Authenticator, Credentials};
use crate::principal::Principal;
use http::{Method, Request, Response};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// Authenticates requests with an [`Authenticator`]; see the [module docs](crate::auth).
///
/// For every request except `OPTIONS` (CORS preflights carry no credentials):
///
/// 1. a credential-like query parameter (`access_token`, `token`, `api_key`, ...) → `400
///    invalid_request`; its value is never read (MCP: tokens only in the `Authorization` header);
/// 2. [`Credentials::from_headers`]; a repeated or non-ASCII `Authorization`/`X-API-Key` → `400`;
/// 3. the authenticator: its [`Principal`] goes into the request extensions for the layers and
///    the [`McpService`](crate::McpService) below; its [`AuthError`] becomes the response (`401`
///    without `error` when nothing was sent, `401 invalid_token` for a bad credential).
///
/// The authentication future is boxed (one allocation per request): [`Authenticator`] returns
/// an unnameable `impl Future`.
#[must_use]
pub struct AuthLayer<A> {
    authenticator: Arc<A>,
}

impl<A> AuthLayer<A> {
    /// A layer authenticating with `authenticator`.
    pub fn new(authenticator: A) -> Self {
        Self {
            authenticator: Arc::new(authenticator),
        }
    }

    /// A layer sharing `authenticator` (and its caches) with other layers.
    pub fn from_arc(authenticator: Arc<A>) -> Self {
        Self { authenticator }
    }

    /// The authenticator.
    pub fn authenticator(&self) -> &Arc<A> {
        &self.authenticator
    }
}

impl<A> Clone for AuthLayer<A> {
    fn clone(&self) -> Self {
        Self {
            authenticator: self.authenticator.clone(),
        }
    }
}

impl<A> fmt::Debug for AuthLayer<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("authenticator", &std::any::type_name::<A>())
            .finish()
    }
}

impl<S, A> Layer<S> for AuthLayer<A> {
    type Service = Auth<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

/// The service made by [`AuthLayer`].
pub struct Auth<S, A> {
    inner: S,
    authenticator: Arc<A>,
}

impl<S, A> Auth<S, A> {
    crate::macros::define_inner_service_accessors!();
}

impl<S: Clone, A> Clone for Auth<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            authenticator: self.authenticator.clone(),
        }
    }
}

impl<S: fmt::Debug, A> fmt::Debug for Auth<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("authenticator", &std::any::type_name::<A>())
            .finish()
    }
}

type AuthFuture = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send>>;

impl<S, A, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, A>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    A: Authenticator,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if req.method() == Method::OPTIONS {
            return ResponseFuture::calling(self.inner.call(req));
        }
        if let Some(param) = query_credential_param(req.uri()) {
            tracing::debug!(param, "refused a credential in the query string");
            return ResponseFuture::reject(AuthError::invalid_request(
                "Credentials are not accepted in the query string; use the Authorization header",
            ));
        }
        let credentials = match Credentials::from_headers(req.headers()) {
            Ok(credentials) => credentials,
            Err(error) => return ResponseFuture::reject(error),
        };
        let authenticator = self.authenticator.clone();
        let authenticate: AuthFuture =
            Box::pin(async move { authenticator.authenticate(&credentials).await });
        // The ready service goes with the request; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            kind: Kind::Authenticating {
                authenticate,
                request: Some(req),
                service: Some(service),
            },
        }
    }
}

pin_project! {
    /// Response future of [`Auth`].
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Authenticating {
            authenticate: AuthFuture,
            request: Option<Request<ReqBody>>,
            service: Option<S>,
        },
        Calling { #[pin] future: S::Future },
        Reject { response: Option<Response<ResBody>> },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    ResBody: Default,
{
    fn calling(future: S::Future) -> Self {
        Self {
            kind: Kind::Calling { future },
        }
    }

    fn reject(error: AuthError) -> Self {
        Self {
            kind: Kind::Reject {
                response: Some(error.into_response()),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.kind.as_mut().project() {
                KindProj::Authenticating {
                    authenticate,
                    request,
                    service,
                } => {
                    let outcome = ready!(authenticate.as_mut().poll(cx));
                    let (Some(mut request), Some(mut service)) = (request.take(), service.take())
                    else {
                        return Poll::Pending;
                    };
                    match outcome {
                        Ok(principal) => {
                            crate::trace::record_principal(&principal);
                            request.extensions_mut().insert(principal);
                            Kind::Calling {
                                future: service.call(request),
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, "refused a request");
                            return Poll::Ready(Ok(error.into_response()));
                        }
                    }
                }
                KindProj::Calling { future } => return future.poll(cx),
                KindProj::Reject { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            };
            this.kind.set(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthErrorKind, authenticate_fn};
    use http::{StatusCode, header};
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::ServiceExt;

    /// Accepts the bearer token `good` as `alice` and counts calls.
    fn layer(calls: Arc<AtomicUsize>) -> AuthLayer<impl Authenticator> {
        AuthLayer::new(authenticate_fn(move |c: &Credentials| {
            calls.fetch_add(1, Ordering::SeqCst);
            let outcome = match c.bearer() {
                None => Err(AuthError::missing_credentials()),
                Some("good") => Ok(Principal::new("alice")),
                Some(_) => Err(AuthError::invalid_token("Unknown token")),
            };
            async move { outcome }
        }))
    }

    async fn send(layer: AuthLayer<impl Authenticator>, req: Request<()>) -> Response<String> {
        let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
            let who = req
                .extensions()
                .get::<Principal>()
                .map_or("nobody".to_owned(), |p| p.subject.to_string());
            Ok::<_, Infallible>(Response::new(who))
        }));
        svc.oneshot(req).await.unwrap()
    }

    fn kind(r: &Response<String>) -> Option<&AuthErrorKind> {
        r.extensions().get::<AuthError>().map(AuthError::kind)
    }

    #[tokio::test]
    async fn principal_reaches_the_inner_service() {
        let calls = Arc::new(AtomicUsize::new(0));
        let req = Request::post("/mcp")
            .header("authorization", "Bearer good")
            .body(())
            .unwrap();
        let r = send(layer(calls.clone()), req).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.body(), "alice");
    }

    #[tokio::test]
    async fn missing_and_bad_credentials_are_401() {
        let calls = Arc::new(AtomicUsize::new(0));
        let r = send(
            layer(calls.clone()),
            Request::post("/mcp").body(()).unwrap(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(kind(&r), Some(&AuthErrorKind::MissingCredentials));
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(r.body(), "");

        let req = Request::post("/mcp")
            .header("authorization", "Bearer bad")
            .body(())
            .unwrap();
        let r = send(layer(calls), req).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(matches!(kind(&r), Some(AuthErrorKind::InvalidToken { .. })));
    }

    #[tokio::test]
    async fn preflight_passes_without_credentials() {
        let calls = Arc::new(AtomicUsize::new(0));
        let req = Request::options("/mcp")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .body(())
            .unwrap();
        let r = send(layer(calls.clone()), req).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.body(), "nobody");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn query_string_tokens_are_refused_unread() {
        let calls = Arc::new(AtomicUsize::new(0));
        for uri in [
            "/mcp?access_token=good",
            "/mcp?foo=1&Access_Token=good",
            "/mcp?api_key=good",
        ] {
            // Even with a good header token: the query token is refused, never read.
            let req = Request::post(uri)
                .header("authorization", "Bearer good")
                .body(())
                .unwrap();
            let r = send(layer(calls.clone()), req).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert!(
                matches!(kind(&r), Some(AuthErrorKind::InvalidRequest { .. })),
                "{uri}"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // Other query parameters are fine.
        let req = Request::post("/messages?sessionId=abc")
            .header("authorization", "Bearer good")
            .body(())
            .unwrap();
        assert_eq!(send(layer(calls), req).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn repeated_authorization_is_a_bad_request() {
        let calls = Arc::new(AtomicUsize::new(0));
        let req = Request::post("/mcp")
            .header("authorization", "Bearer good")
            .header("authorization", "Bearer other")
            .body(())
            .unwrap();
        let r = send(layer(calls.clone()), req).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
