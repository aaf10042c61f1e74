use super::body::{EventIds, EventStream, ResponseBody};
use super::event::{EventId, encode_message, encode_priming};
use super::future::ResponseFuture;
use super::{DEFAULT_KEEP_ALIVE, Outgoing, ResponseMode};
use crate::error::{TransportError, TransportErrorKind};
use crate::protocol::ProtocolVersion;
use crate::session::Session;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// Frames MCP answers as SSE or JSON; see the [module docs](crate::sse).
#[derive(Clone, Copy, Debug)]
pub struct SseLayer {
    pub(super) json_response: bool,
    pub(super) keep_alive: Option<Duration>,
    pub(super) standalone_capacity: usize,
}

impl Default for SseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SseLayer {
    /// SSE responses with keep-alive comments every 15 s.
    pub fn new() -> Self {
        Self {
            json_response: false,
            keep_alive: Some(DEFAULT_KEEP_ALIVE),
            standalone_capacity: 64,
        }
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

    /// How many messages may queue for the standalone GET stream before senders wait.
    pub fn standalone_capacity(mut self, capacity: usize) -> Self {
        self.standalone_capacity = capacity.max(1);
        self
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
            layer: *self,
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

/// `true` when `Accept` lists a media range matching `wanted` (`type/subtype`).
fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    let (wanted_type, _) = wanted.split_once('/').unwrap_or((wanted, ""));
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|range| range.split(';').next().unwrap_or("").trim())
        .any(|range| {
            range.eq_ignore_ascii_case(wanted)
                || range == "*/*"
                || range
                    .strip_suffix("/*")
                    .is_some_and(|t| t.eq_ignore_ascii_case(wanted_type))
        })
}

pub(super) fn sse_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
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
    pub(super) mode: ResponseMode,
    pub(super) session: Option<Arc<Session>>,
    pub(super) version: ProtocolVersion,
    pub(super) keep_alive: Option<Duration>,
}

impl Framing {
    /// Turns the endpoint's answer into the response body.
    pub(super) fn frame<B>(self, response: Response<B>) -> Response<ResponseBody<B>> {
        let (mut parts, body) = response.into_parts();
        let Some(outgoing) = parts.extensions.remove::<Outgoing>() else {
            return Response::from_parts(parts, ResponseBody::inner(body));
        };
        let priming = self.session.is_some() && self.version.sends_priming_event();
        let body = match (outgoing, self.mode) {
            (Outgoing::One(message), ResponseMode::Json) => {
                json_headers(&mut parts.headers);
                ResponseBody::full(message.to_bytes())
            }
            (Outgoing::Batch(messages), ResponseMode::Json) => {
                json_headers(&mut parts.headers);
                ResponseBody::full(super::event::encode_json_batch(&messages))
            }
            (Outgoing::One(message), ResponseMode::Sse) => {
                sse_headers(&mut parts.headers);
                ResponseBody::full(self.encode_all(std::slice::from_ref(&message), priming))
            }
            (Outgoing::Batch(messages), ResponseMode::Sse) => {
                sse_headers(&mut parts.headers);
                ResponseBody::full(self.encode_all(&messages, priming))
            }
            (Outgoing::Stream(stream), _) => {
                let Some(rx) = stream.take() else {
                    let error = TransportError::new(TransportErrorKind::Internal);
                    return error.into_response();
                };
                sse_headers(&mut parts.headers);
                let ids = self
                    .session
                    .as_ref()
                    .map(|s| EventIds::new(s.next_stream_id()));
                let guard = self.session.as_ref().map(Session::attach);
                ResponseBody::stream(EventStream::new(rx, ids, priming, self.keep_alive, guard))
            }
        };
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, body)
    }

    /// Encodes a complete answer as one SSE chunk.
    fn encode_all(&self, messages: &[crate::jsonrpc::Message], priming: bool) -> Bytes {
        let mut ids = self
            .session
            .as_ref()
            .map(|s| EventIds::new(s.next_stream_id()));
        let mut buf = BytesMut::with_capacity(64 + messages.len() * 128);
        if let (Some(ids), true) = (&mut ids, priming) {
            encode_priming(&mut buf, ids.next_id());
        }
        for message in messages {
            let id: Option<EventId> = ids.as_mut().map(EventIds::next_id);
            encode_message(&mut buf, id, message);
        }
        buf.freeze()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SseService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
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

        if req.method() == Method::GET {
            if let Some(session) = session {
                return self.standalone_stream(&req, session, version);
            }
        }
        if req.method() == Method::POST
            && !(accepts(req.headers(), "application/json")
                && accepts(req.headers(), "text/event-stream"))
        {
            return ResponseFuture::reject(TransportError::new(TransportErrorKind::NotAcceptable));
        }
        let mode = self.layer.mode();
        req.extensions_mut().insert(mode);
        let framing = Framing {
            mode,
            session,
            version,
            keep_alive: self.layer.keep_alive,
        };
        ResponseFuture::inner(self.inner.call(req), framing)
    }
}

impl<S> SseService<S> {
    fn standalone_stream<ReqBody, ResBody>(
        &self,
        req: &Request<ReqBody>,
        session: Arc<Session>,
        version: ProtocolVersion,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        if !accepts(req.headers(), "text/event-stream") {
            return ResponseFuture::reject(TransportError::not_acceptable_event_stream());
        }
        if req.headers().contains_key("last-event-id") {
            // Resumption needs an event store; without one no id can be replayed.
            return ResponseFuture::reject(TransportError::new(TransportErrorKind::UnknownEventId));
        }
        let Some(rx) = session.open_standalone(self.layer.standalone_capacity) else {
            return ResponseFuture::reject(TransportError::new(TransportErrorKind::StreamConflict));
        };
        let ids = EventIds::new(EventId::STANDALONE_STREAM);
        let guard = session.attach();
        let stream = EventStream::new(
            rx,
            Some(ids),
            version.sends_priming_event(),
            self.layer.keep_alive,
            Some(guard),
        );
        let mut response = Response::new(ResponseBody::stream(stream));
        sse_headers(response.headers_mut());
        ResponseFuture::ready(response)
    }
}
