use super::event::{EventId, KEEP_ALIVE, encode_message, encode_priming};
use crate::jsonrpc::Message;
use crate::session::AttachGuard;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};
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
    }
}

impl<B> ResponseBody<B> {
    pub(super) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(super) fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full { data: Some(data) },
        }
    }

    pub(super) fn stream(stream: EventStream) -> Self {
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
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Full { data } => data.is_none(),
            Kind::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { .. } => SizeHint::default(),
        }
    }
}

/// Numbers the events of one stream.
#[derive(Debug)]
pub(crate) struct EventIds {
    stream: u64,
    next_seq: u64,
}

impl EventIds {
    pub(crate) fn new(stream: u64) -> Self {
        Self {
            stream,
            next_seq: 0,
        }
    }

    pub(crate) fn next_id(&mut self) -> EventId {
        let id = EventId {
            stream: self.stream,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        id
    }
}

/// Encodes messages as SSE frames as they arrive, with keep-alive comments in between.
#[derive(Debug)]
pub(crate) struct EventStream {
    rx: mpsc::Receiver<Message>,
    ids: Option<EventIds>,
    first: Option<Bytes>,
    keep_alive: Option<Interval>,
    // The session cannot expire while this stream is attached.
    _guard: Option<AttachGuard>,
}

impl EventStream {
    pub(crate) fn new(
        rx: mpsc::Receiver<Message>,
        mut ids: Option<EventIds>,
        priming: bool,
        keep_alive: Option<Duration>,
        guard: Option<AttachGuard>,
    ) -> Self {
        let first = match (&mut ids, priming) {
            (Some(ids), true) => {
                let mut buf = BytesMut::with_capacity(32);
                encode_priming(&mut buf, ids.next_id());
                Some(buf.freeze())
            }
            _ => None,
        };
        let keep_alive = keep_alive.filter(|d| !d.is_zero()).map(|period| {
            let mut interval = tokio::time::interval_at(Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        Self {
            rx,
            ids,
            first,
            keep_alive,
            _guard: guard,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(message)) => {
                let mut buf = BytesMut::with_capacity(128);
                let id = self.ids.as_mut().map(EventIds::next_id);
                encode_message(&mut buf, id, &message);
                // Drain what is already queued into the same frame: fewer, larger writes.
                while buf.len() < 16 * 1024 {
                    let Ok(message) = self.rx.try_recv() else {
                        break;
                    };
                    let id = self.ids.as_mut().map(EventIds::next_id);
                    encode_message(&mut buf, id, &message);
                }
                Poll::Ready(Some(buf.freeze()))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.keep_alive.as_mut().map(|i| i.poll_tick(cx)) {
                Some(Poll::Ready(_)) => Poll::Ready(Some(Bytes::from_static(KEEP_ALIVE))),
                _ => Poll::Pending,
            },
        }
    }
}
