//! Reads a POST body once and parses it into a JSON-RPC [`Payload`] in the request extensions.
//!
//! | request | answer |
//! |---|---|
//! | POST, `Content-Type` not `application/json` | 415 `-32000` |
//! | POST, body over the limit of an outer [`RequestBodyLimitLayer`] | 413 `-32000` |
//! | POST, body not JSON | 400 `-32700` |
//! | POST, JSON but not JSON-RPC | 400 `-32600` |
//!
//! The inner service receives the request with the raw bytes as a [`ParsedBody`] (a proxy can
//! forward them untouched) and the parsed [`Payload`] in the extensions, so no layer parses twice.
//! Requests of other methods pass with an empty body.
//!
//! [`ParsedBody`] is the contract: the layers that need the payload (sessions, scopes, routing
//! headers, the 2026-07-28 `_meta` checks, the legacy transport, the endpoint) take only
//! `Request<ParsedBody>`, so composing one of them without this layer in front is a compile
//! error, never a silent pass. A scope check outside the body layer, which could not see which
//! tool is called, does not build:
//!
//! ```compile_fail
//! use mcp_tower_http::auth::{ScopeLayer, ScopePolicy};
//! use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn wrong_order() {
//! let service = ServiceBuilder::new()
//!     .layer(ScopeLayer::new(ScopePolicy::new().tool("delete_file", ["files:write"])))
//!     .layer(JsonRpcBodyLayer::new())
//!     .service_fn(|_req: Request<ParsedBody>| async { Ok::<_, Infallible>(Response::new(())) });
//! // error: `Scope<JsonRpcBody<…>>` is not a `Service<Request<Full<Bytes>>>`
//! let _ = service.oneshot(Request::new(Full::<Bytes>::default())).await;
//! # }
//! ```
//!
//! Nor does an endpoint without it:
//!
//! ```compile_fail
//! use mcp_tower_http::endpoint::McpEndpoint;
//! use mcp_tower_http::everything::EverythingServer;
//! use mcp_tower_http::session::SessionLayer;
//! use mcp_tower_http::sse::SseLayer;
//! use mcp_tower_http::SessionContext;
//! use bytes::Bytes;
//! use http::Request;
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn no_body_layer() {
//! let service = ServiceBuilder::new()
//!     .layer(SessionLayer::new())
//!     .layer(SseLayer::new())
//!     .service(McpEndpoint::new(|_: &SessionContext<'_>| EverythingServer::new()));
//! let _ = service.oneshot(Request::new(Full::<Bytes>::default())).await;
//! # }
//! ```
//!
//! [`RequestBodyLimitLayer`]: tower_http::limit::RequestBodyLimitLayer
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc::Payload;
//! use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use std::convert::Infallible;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http::limit::RequestBodyLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(RequestBodyLimitLayer::new(1024))
//!     .layer(JsonRpcBodyLayer::new())
//!     .service_fn(|req: Request<ParsedBody>| async move {
//!         let method = match req.extensions().get::<Payload>() {
//!             Some(payload) => payload.messages()[0].method().unwrap_or("").to_owned(),
//!             None => String::new(),
//!         };
//!         Ok::<_, Infallible>(Response::new(Full::<Bytes>::from(method)))
//!     });
//!
//! let request = Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .body(Full::<Bytes>::from(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#))
//!     .unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let request = Request::post("/mcp")
//!     .header("content-type", "text/plain")
//!     .body(Full::<Bytes>::from("hi"))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
//! # }
//! ```

use crate::BoxError;
use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::{ParseError, Payload};
use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt, LengthLimitError};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// The body of a request that went through [`JsonRpcBodyLayer`]: the raw bytes of a POST (empty
/// for other methods), with the parsed [`Payload`] in the request extensions.
///
/// Only this module makes one, so a service taking `Request<ParsedBody>` knows the body was read,
/// limited and parsed in front of it.
#[derive(Clone, Debug, Default)]
pub struct ParsedBody {
    bytes: Option<Bytes>,
}

impl ParsedBody {
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self {
            bytes: (!bytes.is_empty()).then_some(bytes),
        }
    }

    /// The raw bytes as received (empty for a request without a body).
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_deref().unwrap_or_default()
    }

    /// The raw bytes, owned.
    pub fn into_bytes(self) -> Bytes {
        self.bytes.unwrap_or_default()
    }
}

impl Body for ParsedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Poll::Ready(
            self.get_mut()
                .bytes
                .take()
                .map(|b| Ok(http_body::Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }
}

/// Parses JSON-RPC POST bodies; see the [module docs](crate::jsonrpc_body).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRpcBodyLayer {
    _priv: (),
}

impl JsonRpcBodyLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for JsonRpcBodyLayer {
    type Service = JsonRpcBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonRpcBody { inner }
    }
}

/// The service made by [`JsonRpcBodyLayer`].
#[derive(Clone, Debug)]
pub struct JsonRpcBody<S> {
    inner: S,
}

impl<S> JsonRpcBody<S> {
    crate::macros::define_inner_service_accessors!();
}

/// `true` when `Content-Type` is `application/json`, parameters allowed.
fn is_json(req: &http::request::Parts) -> bool {
    req.headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JsonRpcBody<S>
where
    S: Service<Request<ParsedBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<ReqBody, S, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (parts, body) = req.into_parts();
        if parts.method != Method::POST {
            let future = self
                .inner
                .call(Request::from_parts(parts, ParsedBody::default()));
            return ResponseFuture {
                kind: Kind::Calling { future },
            };
        }
        if !is_json(&parts) {
            return ResponseFuture::reject(TransportError::new(
                TransportErrorKind::UnsupportedMediaType,
            ));
        }
        // The ready service goes with the body; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            kind: Kind::Collecting {
                collect: body.collect(),
                parts: Some(parts),
                service: Some(service),
            },
        }
    }
}

pin_project! {
    /// Response future of [`JsonRpcBody`].
    pub struct ResponseFuture<B, S, ResBody>
    where
        B: Body,
        S: Service<Request<ParsedBody>>,
    {
        #[pin]
        kind: Kind<B, S, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, S, ResBody>
    where
        B: Body,
        S: Service<Request<ParsedBody>>,
    {
        Collecting {
            #[pin]
            collect: Collect<B>,
            parts: Option<http::request::Parts>,
            service: Option<S>,
        },
        Calling {
            #[pin]
            future: S::Future,
        },
        Reject {
            response: Option<Response<ResBody>>,
        },
    }
}

impl<B, S, ResBody> ResponseFuture<B, S, ResBody>
where
    B: Body,
    S: Service<Request<ParsedBody>>,
    ResBody: Default,
{
    fn reject(error: TransportError) -> Self {
        Self {
            kind: Kind::Reject {
                response: Some(error.into_response()),
            },
        }
    }
}

fn read_error(error: BoxError) -> TransportError {
    if error.downcast_ref::<LengthLimitError>().is_some() {
        TransportError::payload_too_large(None)
    } else {
        TransportError::new(TransportErrorKind::InvalidRequest)
            .with_message("Bad Request: could not read the request body")
    }
}

fn parse_error(error: ParseError) -> TransportError {
    match error {
        ParseError::Syntax => {
            TransportError::new(TransportErrorKind::ParseError).with_message(error.to_string())
        }
        ParseError::Shape(ref shape) => TransportError::new(TransportErrorKind::InvalidRequest)
            .with_message(error.to_string())
            .with_id(shape.id.clone()),
    }
}

impl<B, S, ResBody> Future for ResponseFuture<B, S, ResBody>
where
    B: Body,
    B::Error: Into<BoxError>,
    S: Service<Request<ParsedBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.kind.as_mut().project() {
                KindProj::Collecting {
                    collect,
                    parts,
                    service,
                } => {
                    let bytes = match ready!(collect.poll(cx)) {
                        Ok(collected) => collected.to_bytes(),
                        Err(e) => {
                            let response = read_error(e.into()).into_response();
                            return Poll::Ready(Ok(response));
                        }
                    };
                    let (Some(mut parts), Some(mut service)) = (parts.take(), service.take())
                    else {
                        return Poll::Pending;
                    };
                    match Payload::parse(&bytes) {
                        Ok(payload) => {
                            parts.extensions.insert(payload);
                            let request = Request::from_parts(parts, ParsedBody::new(bytes));
                            Kind::Calling {
                                future: service.call(request),
                            }
                        }
                        Err(e) => return Poll::Ready(Ok(parse_error(e).into_response())),
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
    use crate::jsonrpc::Message;
    use http_body_util::Full;
    use std::convert::Infallible;
    use tower::ServiceExt;
    use tower_http::limit::RequestBodyLimitLayer;

    fn echo_method() -> impl Service<
        Request<ParsedBody>,
        Response = Response<String>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(|req: Request<ParsedBody>| async move {
            let m = req
                .extensions()
                .get::<Payload>()
                .and_then(|p| {
                    p.messages()
                        .first()
                        .and_then(Message::method)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            Ok::<_, Infallible>(Response::new(m))
        })
    }

    fn post(content_type: &str, body: &'static str) -> Request<Full<Bytes>> {
        Request::post("/")
            .header("content-type", content_type)
            .body(Full::from(body))
            .unwrap()
    }

    fn kind(r: &Response<String>) -> Option<TransportErrorKind> {
        r.extensions().get::<TransportError>().map(|e| e.kind())
    }

    #[tokio::test]
    async fn parses_into_extensions() {
        let svc = JsonRpcBodyLayer::new().layer(echo_method());
        let r = svc
            .oneshot(post(
                "application/json; charset=utf-8",
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            ))
            .await
            .unwrap();
        assert_eq!(r.body(), "ping");
    }

    #[tokio::test]
    async fn rejects_wrong_media_type_bad_json_and_bad_shape() {
        let svc = JsonRpcBodyLayer::new().layer(echo_method());
        let r = svc.clone().oneshot(post("text/plain", "{}")).await.unwrap();
        assert_eq!(kind(&r), Some(TransportErrorKind::UnsupportedMediaType));
        let r = svc
            .clone()
            .oneshot(post("application/json", "{oops"))
            .await
            .unwrap();
        assert_eq!(kind(&r), Some(TransportErrorKind::ParseError));
        let r = svc
            .oneshot(post("application/json", r#"{"jsonrpc":"2.0","id":4}"#))
            .await
            .unwrap();
        assert_eq!(kind(&r), Some(TransportErrorKind::InvalidRequest));
        assert_eq!(
            r.extensions()
                .get::<TransportError>()
                .and_then(|e| e.id().cloned()),
            Some(crate::jsonrpc::Id::Number(4))
        );
    }

    #[tokio::test]
    async fn streamed_body_over_the_limit_is_413() {
        let svc = tower::ServiceBuilder::new()
            .layer(RequestBodyLimitLayer::new(8))
            .layer(JsonRpcBodyLayer::new())
            .service(echo_method());
        // A stream has no Content-Length, so the limit trips while reading.
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"{\"jsonrpc\""))),
            Ok(http_body::Frame::data(Bytes::from_static(b":\"2.0\"}"))),
        ]);
        let req = Request::post("/")
            .header("content-type", "application/json")
            .body(http_body_util::StreamBody::new(chunks))
            .unwrap();
        let r = svc.oneshot(req).await.unwrap();
        assert_eq!(r.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn other_methods_pass_with_an_empty_body() {
        let svc = JsonRpcBodyLayer::new().layer(echo_method());
        let r = svc
            .oneshot(Request::get("/").body(Full::<Bytes>::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), http::StatusCode::OK);
        assert_eq!(r.body(), "");
    }
}
