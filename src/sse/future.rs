use super::body::ResponseBody;
use super::layer::Framing;
use crate::error::TransportError;
use http::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

pin_project! {
    /// Response future of [`SseService`](super::SseService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner {
            #[pin]
            future: F,
            framing: Option<Framing>,
        },
        Ready {
            response: Option<Response<ResponseBody<B>>>,
        },
        Boxed {
            future: Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn inner(future: F, framing: Framing) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                framing: Some(framing),
            },
        }
    }

    pub(super) fn ready(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    pub(super) fn boxed(
        future: Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>>,
    ) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }

    pub(super) fn reject(error: TransportError) -> Self {
        Self::ready(error.into_response())
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, framing } => {
                let response = ready!(future.poll(cx))?;
                match framing.take() {
                    Some(framing) => Poll::Ready(Ok(framing.frame(response))),
                    None => Poll::Pending,
                }
            }
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            KindProj::Boxed { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}
