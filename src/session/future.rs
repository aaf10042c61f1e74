use super::MCP_SESSION_ID;
use super::registry::{AttachGuard, Reservation, Session, SessionRegistry};
use crate::error::TransportError;
use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

type Pending = (Arc<Session>, Reservation, Arc<SessionRegistry>);

pin_project! {
    /// Response future of [`SessionService`](super::SessionService).
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
            // An `initialize` whose session is registered only if it succeeds.
            pending: Option<Pending>,
            // Keeps the session from expiring while the request runs.
            guard: Option<AttachGuard>,
        },
        Terminate {
            future: Pin<Box<dyn Future<Output = ()> + Send>>,
        },
        Reject {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn inner(future: F, pending: Option<Pending>, guard: Option<AttachGuard>) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                pending,
                guard,
            },
        }
    }

    pub(super) fn terminate(future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Self {
        Self {
            kind: Kind::Terminate { future },
        }
    }

    pub(super) fn reject(error: TransportError) -> Self
    where
        B: Default,
    {
        Self {
            kind: Kind::Reject {
                response: Some(error.into_response()),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner {
                future,
                pending,
                guard,
            } => {
                let mut response = ready!(future.poll(cx))?;
                guard.take();
                if let Some((session, reservation, registry)) = pending.take()
                    && session.is_initialized()
                    && response.status().is_success()
                {
                    if let Ok(value) = HeaderValue::from_str(session.id()) {
                        response.headers_mut().insert(MCP_SESSION_ID, value);
                    }
                    registry.insert(reservation, session);
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Terminate { future } => {
                ready!(future.as_mut().poll(cx));
                let mut response = Response::new(B::default());
                *response.status_mut() = StatusCode::OK;
                Poll::Ready(Ok(response))
            }
            KindProj::Reject { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
        }
    }
}
