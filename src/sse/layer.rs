use super::body::{EventStream, ResponseBody, Source};
use super::event::{
    EventId, EventStore, encode_data, encode_json_batch, encode_message, encode_priming,
};
use super::future::ResponseFuture;
use super::pump::{DEFAULT_STALL_TIMEOUT, Streams};
use super::store::InMemoryEventStore;
use super::{DEFAULT_KEEP_ALIVE, Outgoing, ResponseMode};
use crate::error::{TransportError, TransportErrorKind};
use crate::protocol::ProtocolVersion;
use crate::session::Session;
use bytes::BytesMut;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tower::{Layer, Service};

/// Frames MCP answers as SSE or JSON; see the [module docs](crate::sse).
#[derive(Clone, Debug)]
pub struct SseLayer {
    json_response: bool,
    keep_alive: Option<Duration>,
    connection_capacity: usize,
    stall_timeout: Duration,
    streams: Option<Arc<Streams>>,
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SseLayer {
    /// SSE responses with keep-alive comments every 15 s, resumable from an
    /// [`InMemoryEventStore`] with its default bounds.
    pub fn new() -> Self {
        Self {
            json_response: false,
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            connection_capacity: DEFAULT_CONNECTION_CAPACITY,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            streams: None,
        }
        .event_store(InMemoryEventStore::new())
    }

    /// Stores events in `store` so clients can resume streams with `Last-Event-ID`.
    pub fn event_store(mut self, store: impl EventStore) -> Self {
        self.streams = Some(Arc::new(Streams::new(
            Arc::new(store),
            self.connection_capacity,
            self.stall_timeout,
        )));
        self
    }

    /// Serves without resumability: no event ids, no priming events, `Last-Event-ID` gets 400,
    /// and a slow reader makes the handler wait instead of being disconnected.
    pub fn without_event_store(mut self) -> Self {
        self.streams = None;
        self
    }

    /// How many frames may queue for one client connection before the stream waits for it
    /// (and, with an event store, how many more are stored while its client is away).
    pub fn connection_capacity(mut self, capacity: usize) -> Self {
        self.connection_capacity = capacity.max(1);
        if let Some(streams) = &self.streams {
            self.streams = Some(Arc::new(Streams::new(
                streams.store.clone(),
                self.connection_capacity,
                self.stall_timeout,
            )));
        }
        self
    }

    /// How long a resumable stream waits for its client (default 30 s): a connection that takes
    /// nothing from its full queue for this long is closed (the client resumes with
    /// `Last-Event-ID`), and a client away for a queue's worth of events is waited for this long
    /// before its stream goes on without it. Meanwhile the handler waits in `Peer::send`.
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        if let Some(streams) = &self.streams {
            self.streams = Some(Arc::new(Streams::new(
                streams.store.clone(),
                self.connection_capacity,
                self.stall_timeout,
            )));
        }
        self
    }

    /// Answers POSTs with one `application/json` body instead of an SSE stream. Messages a
    /// handler sends to the client meanwhile go to the session's standalone GET stream.
    pub fn json_response(mut self, json: bool) -> Self {
        self.json_response = json;
        self
    }

    /// The interval of `: keepalive` comments on idle streams; `None` or zero disables them.
    pub fn keep_alive(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keep_alive = interval.into().filter(|d| !d.is_zero());
        self
    }

    /// The keep-alive interval in force.
    pub fn keep_alive_interval(&self) -> Option<Duration> {
        self.keep_alive
    }

    fn mode(&self) -> ResponseMode {
        if self.json_response {
            ResponseMode::Json
        } else {
            ResponseMode::Sse
        }
    }
}

impl<S> Layer<S> for SseLayer {
    type Service = SseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SseService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SseLayer`].
#[derive(Clone, Debug)]
pub struct SseService<S> {
    inner: S,
    layer: SseLayer,
}

impl<S> SseService<S> {
    crate::macros::define_inner_service_accessors!();
}

/// What an `Accept` header allows of the two media types MCP answers with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Accepted {
    json: bool,
    event_stream: bool,
}

/// Reads every `Accept` header in one pass over its bytes (this runs on every request).
fn accepted(headers: &HeaderMap) -> Accepted {
    let mut accepted = Accepted::default();
    for value in headers.get_all(header::ACCEPT) {
        // What MCP clients send, as the spec words it: no need to split it.
        if value.as_bytes() == b"application/json, text/event-stream" {
            return Accepted {
                json: true,
                event_stream: true,
            };
        }
        for range in value.as_bytes().split(|&b| b == b',') {
            let range = range
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            let matches = |wanted: &[u8], wanted_type: &[u8]| {
                range.eq_ignore_ascii_case(wanted)
                    || range == b"*/*"
                    || range
                        .strip_suffix(b"/*")
                        .is_some_and(|t| t.eq_ignore_ascii_case(wanted_type))
            };
            accepted.json |= matches(b"application/json", b"application");
            accepted.event_stream |= matches(b"text/event-stream", b"text");
        }
    }
    accepted
}

/// Tells nginx not to buffer the stream (a constant: parsing the name costs on every response).
const X_ACCEL_BUFFERING: http::HeaderName = http::HeaderName::from_static("x-accel-buffering");

pub(crate) fn sse_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

pub(super) fn json_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
}

/// What the response future needs to frame the endpoint's answer.
#[derive(Debug)]
pub(super) struct Framing {
    mode: ResponseMode,
    session: Option<Arc<Session>>,
    version: ProtocolVersion,
    keep_alive: Option<Duration>,
    streams: Option<Arc<Streams>>,
}

impl Framing {
    /// Turns the endpoint's answer into the response body.
    pub(super) fn frame<B>(self, response: Response<B>) -> Response<ResponseBody<B>> {
        let (mut parts, body) = response.into_parts();
        let Some(outgoing) = parts.extensions.remove::<Outgoing>() else {
            return Response::from_parts(parts, ResponseBody::inner(body));
        };
        let json = match (self.mode, outgoing) {
            // 2026-07-28: one answer is one JSON body; anything more is that request's stream.
            (_, Outgoing::One(message)) if self.version.is_sessionless() => message.to_bytes(),
            (_, outgoing) if self.version.is_sessionless() => {
                return self.frame_sse(parts, outgoing);
            }
            (ResponseMode::Json, Outgoing::One(message)) => message.to_bytes(),
            (ResponseMode::Json, Outgoing::Batch(messages)) => encode_json_batch(&messages),
            // A stream cannot be one JSON body: it goes out as SSE whatever the mode.
            (_, outgoing) => return self.frame_sse(parts, outgoing),
        };
        json_headers(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, ResponseBody::full(json))
    }

    fn frame_sse<B>(
        self,
        mut parts: http::response::Parts,
        outgoing: Outgoing,
    ) -> Response<ResponseBody<B>> {
        sse_headers(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        let rx = match outgoing {
            Outgoing::Stream(stream) => match stream.take() {
                Some(rx) => rx,
                None => return TransportError::new(TransportErrorKind::Internal).into_response(),
            },
            complete => {
                let messages = match complete {
                    Outgoing::One(message) => vec![message],
                    Outgoing::Batch(messages) => messages,
                    Outgoing::Stream(_) => Vec::new(),
                };
                let body = match (&self.streams, &self.session) {
                    (Some(streams), Some(session)) => {
                        let priming = self.version.sends_priming_event();
                        streams.store_complete(session, &messages, priming)
                    }
                    _ => {
                        // Nothing to resume: one chunk, no ids.
                        let mut buf = BytesMut::with_capacity(messages.len() * 160);
                        for message in &messages {
                            encode_message(&mut buf, None, message);
                        }
                        buf.freeze()
                    }
                };
                return Response::from_parts(parts, ResponseBody::full(body));
            }
        };
        let body = match (&self.streams, &self.session) {
            (Some(streams), Some(session)) => {
                let priming = self.version.sends_priming_event();
                let first = streams.start(session, session.next_stream_id(), rx, priming);
                let source = Source::Frames {
                    rx: first,
                    skip_through: None,
                };
                EventStream::new(source, None, self.keep_alive, Some(session.attach()))
            }
            _ => EventStream::new(
                Source::Events(rx),
                None,
                self.keep_alive,
                self.session.as_ref().map(Session::attach),
            ),
        };
        Response::from_parts(parts, ResponseBody::stream(body))
    }
}

/// The default number of frames queued for one client connection.
pub(crate) const DEFAULT_CONNECTION_CAPACITY: usize = 64;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let session = req.extensions().get::<Arc<Session>>().cloned();
        let version = req
            .extensions()
            .get::<ProtocolVersion>()
            .copied()
            .unwrap_or(ProtocolVersion::FALLBACK);

        if req.method() == Method::GET
            && let Some(session) = session
        {
            return self.get_stream(&req, session, version);
        }
        if req.method() == Method::POST
            && accepted(req.headers())
                != (Accepted {
                    json: true,
                    event_stream: true,
                })
        {
            let id = req
                .extensions()
                .get::<crate::jsonrpc::Payload>()
                .and_then(|p| p.first_request_id().cloned());
            return ResponseFuture::reject(
                TransportError::new(TransportErrorKind::NotAcceptable).with_id(id),
            );
        }
        let mode = self.layer.mode();
        req.extensions_mut().insert(mode);
        let framing = Framing {
            mode,
            session,
            version,
            keep_alive: self.layer.keep_alive,
            streams: self.layer.streams.clone(),
        };
        ResponseFuture::inner(self.inner.call(req), framing)
    }
}

impl<S> SseService<S> {
    /// A GET on a session: the standalone stream, or a resumed stream with `Last-Event-ID`.
    fn get_stream<ReqBody, ResBody>(
        &self,
        req: &Request<ReqBody>,
        session: Arc<Session>,
        version: ProtocolVersion,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
        ResBody: Send + 'static,
    {
        if !accepted(req.headers()).event_stream {
            return ResponseFuture::reject(TransportError::not_acceptable_event_stream());
        }
        let last_event_id = req.headers().get("last-event-id").map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<EventId>().ok())
        });
        let keep_alive = self.layer.keep_alive;
        let Some(streams) = self.layer.streams.clone() else {
            if last_event_id.is_some() {
                // Without an event store no id can be replayed.
                return ResponseFuture::reject(TransportError::new(
                    TransportErrorKind::UnknownEventId,
                ));
            }
            let Some(rx) = session.take_standalone() else {
                return ResponseFuture::reject(TransportError::new(
                    TransportErrorKind::StreamConflict,
                ));
            };
            let guard = Some(session.attach());
            let stream = EventStream::new(Source::Events(rx), None, keep_alive, guard)
                .returning_standalone();
            return ResponseFuture::ready(sse_response(stream));
        };
        let resume_from = match last_event_id {
            Some(Some(id)) => (id, false),
            Some(None) => {
                return ResponseFuture::reject(TransportError::new(
                    TransportErrorKind::UnknownEventId,
                ));
            }
            None => match streams.slot(session.id(), EventId::STANDALONE_STREAM) {
                Some(slot) if slot.is_attached() => {
                    return ResponseFuture::reject(TransportError::new(
                        TransportErrorKind::StreamConflict,
                    ));
                }
                // Reattach to the standalone stream: deliver what was stored since the last
                // connection went away.
                Some(slot) => {
                    let position = EventId {
                        stream: EventId::STANDALONE_STREAM,
                        seq: slot.delivered(),
                    };
                    (position, version.sends_priming_event())
                }
                None => {
                    let Some(rx) = session.take_standalone() else {
                        return ResponseFuture::reject(TransportError::new(
                            TransportErrorKind::StreamConflict,
                        ));
                    };
                    let priming = version.sends_priming_event();
                    let first = streams.start(&session, EventId::STANDALONE_STREAM, rx, priming);
                    let source = Source::Frames {
                        rx: first,
                        skip_through: None,
                    };
                    let stream = EventStream::new(source, None, keep_alive, Some(session.attach()));
                    return ResponseFuture::ready(sse_response(stream));
                }
            },
        };
        let (after, priming) = resume_from;
        ResponseFuture::boxed(Box::pin(resume(
            streams, session, after, priming, keep_alive,
        )))
    }
}

fn sse_response<B>(stream: EventStream) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::stream(stream));
    sse_headers(response.headers_mut());
    response
}

/// Replays the events of a stream after `after`, then follows the stream live if its pump still
/// runs. See the ordering argument in `pump.rs`: attach first, then read the store. A fresh
/// connection (`priming`) first gets `after` as its resume point.
async fn resume<B>(
    streams: Arc<Streams>,
    session: Arc<Session>,
    after: EventId,
    priming: bool,
    keep_alive: Option<Duration>,
) -> Response<ResponseBody<B>> {
    let slot = streams.slot(session.id(), after.stream);
    let known = |events: Option<Vec<_>>| match events {
        Some(events) => Some(events),
        None if slot.as_ref().is_some_and(|s| s.just_started(after.seq)) => Some(Vec::new()),
        None => None,
    };
    // Check the id before touching the stream: a refused resume must not disturb the live
    // connection.
    if known(streams.store.replay_after(session.id(), after).await).is_none() {
        return TransportError::new(TransportErrorKind::UnknownEventId).into_response();
    }
    let (tx, rx) = mpsc::channel(streams.connection_capacity);
    // A client resuming has lost its previous connection; this one takes over. Attach first,
    // then read the store: see the ordering argument in pump.rs.
    let previous = slot.as_ref().map(|slot| slot.swap(tx.clone()));
    let Some(events) = known(streams.store.replay_after(session.id(), after).await) else {
        // Evicted between the two reads: give the stream back and refuse.
        if let (Some(slot), Some(previous)) = (&slot, previous) {
            slot.restore(&tx, previous);
        }
        return TransportError::new(TransportErrorKind::UnknownEventId).into_response();
    };
    drop(previous);
    drop(tx);
    let mut replayed = BytesMut::new();
    if priming {
        encode_priming(&mut replayed, after);
    }
    let mut last = after.seq;
    for (id, data) in &events {
        last = id.seq;
        // Empty data marks a stream's start (or a priming event): nothing to re-send.
        if !data.is_empty() {
            encode_data(&mut replayed, Some(*id), data);
        }
    }
    // A standalone stream stored by another process (a session adopted from a dead instance
    // of a cluster) goes on live here after what it stored.
    let rx = match slot {
        None if after.stream == EventId::STANDALONE_STREAM => match session.take_standalone() {
            Some(standalone) => streams.start_at(
                &session,
                EventId::STANDALONE_STREAM,
                standalone,
                false,
                last + 1,
            ),
            None => rx,
        },
        _ => rx,
    };
    let source = Source::Frames {
        rx,
        skip_through: Some(last),
    };
    let stream = EventStream::new(
        source,
        Some(replayed.freeze()),
        keep_alive,
        Some(session.attach()),
    );
    sse_response(stream)
}
