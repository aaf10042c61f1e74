//! The one place where typed rejections become HTTP responses with JSON-RPC error bodies.
//!
//! Every layer of this crate rejects with a response carrying a [`TransportError`] (or, from the
//! auth layers, an `AuthError`) in its extensions. [`JsonRpcErrorLayer`]
//! renders both: the status set from [`TransportErrorKind::status`], `Content-Type: application/json; charset=utf-8`, and a body
//! `{"jsonrpc":"2.0","id":<id or null>,"error":{"code":…,"message":…}}`. A bare 413 from
//! tower-http's [`RequestBodyLimitLayer`](tower_http::limit::RequestBodyLimitLayer) (a
//! `Content-Length` over the limit, answered before any MCP layer runs) is rendered the same way.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::error::{TransportError, TransportErrorKind};
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
//!     .layer(JsonRpcErrorLayer::new())
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         let rejection: Response<Full<Bytes>> =
//!             TransportError::new(TransportErrorKind::SessionNotFound).into_response();
//!         Ok::<_, Infallible>(rejection)
//!     });
//!
//! let response = service.oneshot(Request::new(Full::<Bytes>::default())).await.unwrap();
//! assert_eq!(response.status(), 404);
//! assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(
//!     &body[..],
//!     br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#
//! );
//! # }
//! ```

use crate::error::{TransportError, TransportErrorKind};
use http::{HeaderValue, Request, Response, StatusCode, header};
use pin_project_lite::pin_project;

pub use crate::body::ResponseBody;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// Renders rejections as JSON-RPC errors; see the [module docs](crate::error_map).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRpcErrorLayer {
    _priv: (),
}

impl JsonRpcErrorLayer {
    /// A new layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for JsonRpcErrorLayer {
    type Service = JsonRpcError<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JsonRpcError { inner }
    }
}

/// The service made by [`JsonRpcErrorLayer`].
#[derive(Clone, Debug)]
pub struct JsonRpcError<S> {
    inner: S,
}

impl<S> JsonRpcError<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JsonRpcError<S>
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
        ResponseFuture {
            future: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`JsonRpcError`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let response = ready!(self.project().future.poll(cx))?;
        Poll::Ready(Ok(render(response)))
    }
}

/// An auth layer's rejection, when the auth feature is built.
#[cfg(feature = "auth")]
fn auth_error<B>(response: &Response<B>) -> Option<(StatusCode, crate::jsonrpc::Message)> {
    let error = response.extensions().get::<crate::auth::AuthError>()?;
    Some((error.status(), error.to_message()))
}

#[cfg(not(feature = "auth"))]
fn auth_error<B>(_: &Response<B>) -> Option<(StatusCode, crate::jsonrpc::Message)> {
    None
}

/// The one renderer: a [`TransportError`] or `AuthError` in the
/// response's extensions (or a bare 413) becomes its status and a JSON-RPC error body. Other
/// headers (`Allow`, `Retry-After`, `WWW-Authenticate`) stay as the rejecting layer set them.
fn render<B>(response: Response<B>) -> Response<ResponseBody<B>> {
    let (status, message) = if let Some(error) = response.extensions().get::<TransportError>() {
        (error.kind().status(), error.to_message())
    } else if let Some(error) = auth_error(&response) {
        error
    } else if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
        let error = TransportError::new(TransportErrorKind::PayloadTooLarge);
        (error.kind().status(), error.to_message())
    } else {
        return response.map(ResponseBody::inner);
    };
    let (mut parts, _) = response.into_parts();
    parts.status = status;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The rest of an oversized body is not read; the connection cannot be reused.
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    Response::from_parts(parts, ResponseBody::full(message.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::Id;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::convert::Infallible;
    use tower::ServiceExt;

    async fn rendered(make: fn() -> Response<Full<Bytes>>) -> (Response<()>, String) {
        let svc =
            JsonRpcErrorLayer::new().layer(tower::service_fn(move |_: Request<()>| async move {
                Ok::<_, Infallible>(make())
            }));
        let (parts, body) = svc.oneshot(Request::new(())).await.unwrap().into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            Response::from_parts(parts, ()),
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn renders_typed_errors_with_the_request_id() {
        let (r, body) = rendered(|| {
            TransportError::new(TransportErrorKind::InvalidRequest)
                .with_id(Some(Id::Number(5)))
                .into_response()
        })
        .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(
            body,
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"Invalid Request"}}"#
        );
    }

    #[tokio::test]
    async fn renders_a_bare_413_and_passes_everything_else() {
        let (r, body) = rendered(|| {
            let mut bare = Response::new(Full::from("length limit exceeded"));
            *bare.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
            bare
        })
        .await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            body.contains("-32000") && body.contains("Payload Too Large"),
            "{body}"
        );
        assert_eq!(r.headers()["connection"], "close");

        let (r, body) = rendered(|| Response::new(Full::from("fine"))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body, "fine");
    }
}
