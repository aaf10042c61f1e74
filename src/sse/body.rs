use super::StreamEvent;
use super::event::{KEEP_ALIVE, encode_message};
use super::pump;
use crate::session::AttachGuard;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval};

pin_project! {
    /// Response body of [`SseService`](super::SseService): the inner body untouched, an encoded
    /// answer, or a live event stream.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
        Stream { stream: Box<EventStream> },
        // Another instance's answer, streamed through (feature `redis`).
        Forwarded { body: ForwardedBody },
    }
}

/// A response body relayed from another instance of a cluster.
pub(crate) type ForwardedBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full { data: Some(data) },
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn forwarded(body: ForwardedBody) -> Self {
        Self {
            kind: Kind::Forwarded { body },
        }
    }

    pub(crate) fn stream(stream: EventStream) -> Self {
        Self {
            kind: Kind::Stream {
                stream: Box::new(stream),
            },
        }
    }
}

impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Stream { stream } => {
                stream.poll_next(cx).map(|c| c.map(|d| Ok(Frame::data(d))))
            }
            KindProj::Forwarded { body } => match ready!(Pin::new(body).poll_frame(cx)) {
                Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
                Some(Err(never)) => match never {},
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Stream { .. } => false,
            Kind::Forwarded { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { .. } => SizeHint::default(),
            Kind::Forwarded { body } => body.size_hint(),
        }
    }
}

/// Where a live stream's frames come from.
#[derive(Debug)]
pub(crate) enum Source {
    /// Events straight from the handler, encoded here (no event store: nothing to resume).
    Events(mpsc::Receiver<StreamEvent>),
    /// Frames from the stream's pump; frames up to `skip_through` were already replayed.
    Frames {
        rx: mpsc::Receiver<pump::Frame>,
        skip_through: Option<u64>,
    },
}

/// Encodes or forwards SSE frames as they arrive, with keep-alive comments in between.
pub(crate) struct EventStream {
    prefix: Option<Bytes>,
    source: Option<Source>,
    keep_alive: Option<Interval>,
    // The session cannot expire while this stream is attached.
    guard: Option<AttachGuard>,
    /// A standalone stream read directly gives its receiver back to the session when it ends.
    returns_standalone: bool,
    /// Whatever must live exactly as long as the connection (a legacy session).
    #[cfg(feature = "legacy-sse")]
    owner: Option<Box<dyn std::any::Any + Send>>,
}

impl EventStream {
    pub(crate) fn new(
        source: Source,
        prefix: Option<Bytes>,
        keep_alive: Option<Duration>,
        guard: Option<AttachGuard>,
    ) -> Self {
        let keep_alive = keep_alive.filter(|d| !d.is_zero()).map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        Self {
            prefix: prefix.filter(|p| !p.is_empty()),
            source: Some(source),
            keep_alive,
            guard,
            returns_standalone: false,
            #[cfg(feature = "legacy-sse")]
            owner: None,
        }
    }

    #[cfg(feature = "legacy-sse")]
    /// Keeps `owner` alive until the connection ends, then drops it.
    pub(crate) fn owned_by(mut self, owner: impl Send + 'static) -> Self {
        self.owner = Some(Box::new(owner));
        self
    }

    /// Marks a standalone stream read without a pump: its receiver goes back to the session.
    pub(crate) fn returning_standalone(mut self) -> Self {
        self.returns_standalone = true;
        self
    }

    fn poll_source(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            let Some(source) = &mut self.source else {
                return Poll::Ready(None);
            };
            match source {
                Source::Events(rx) => {
                    let Some(event) = ready!(rx.poll_recv(cx)) else {
                        return Poll::Ready(None);
                    };
                    let StreamEvent::Message(message) = event else {
                        // Closing the connection only makes sense when the client can resume.
                        continue;
                    };
                    let mut buf = BytesMut::with_capacity(128);
                    encode_message(&mut buf, None, &message);
                    // Drain what is already queued into the same frame: fewer, larger writes.
                    while buf.len() < 16 * 1024 {
                        match rx.try_recv() {
                            Ok(StreamEvent::Message(message)) => {
                                encode_message(&mut buf, None, &message)
                            }
                            Ok(StreamEvent::CloseConnection { .. }) => {}
                            Err(_) => break,
                        }
                    }
                    return Poll::Ready(Some(buf.freeze()));
                }
                Source::Frames { rx, skip_through } => {
                    let Some(frame) = ready!(rx.poll_recv(cx)) else {
                        return Poll::Ready(None);
                    };
                    if let (Some(seq), Some(skip)) = (frame.seq, *skip_through)
                        && seq <= skip
                    {
                        continue;
                    }
                    return Poll::Ready(Some(frame.bytes));
                }
            }
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(prefix));
        }
        match self.poll_source(cx) {
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => match self.keep_alive.as_mut().map(|i| i.poll_tick(cx)) {
                Some(Poll::Ready(_)) => Poll::Ready(Some(Bytes::from_static(KEEP_ALIVE))),
                _ => Poll::Pending,
            },
        }
    }
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        if !self.returns_standalone {
            return;
        }
        if let (Some(Source::Events(rx)), Some(guard)) = (self.source.take(), &self.guard) {
            guard.session().return_standalone(rx);
        }
    }
}
