use super::future::ResponseFuture;
use super::registry::{AttachGuard, Session, SessionLimit, SessionRegistry};
use super::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::error::{TransportError, TransportErrorKind};
use crate::jsonrpc::{Id, Payload};
use crate::jsonrpc_body::ParsedBody;
use crate::modern::RequestMeta;
use crate::principal::Principal;
use crate::protocol::ProtocolVersion;
use http::{Method, Request, Response};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Layer, Service};

/// The default idle timeout: 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The default handshake timeout: a session whose client sends nothing after the `initialize`
/// answer ends after 60 seconds instead of the idle timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default `Retry-After` of a 503 at the session limit, in seconds.
pub(crate) const DEFAULT_RETRY_AFTER_SECS: u32 = 5;

/// Routes requests to sessions; see the [module docs](crate::session).
#[derive(Clone, Debug)]
pub struct SessionLayer {
    registry: Arc<SessionRegistry>,
    stateless: bool,
    max_sessions: Option<usize>,
    /// A cap shared with other layers, replacing `max_sessions`.
    shared_limit: Option<Arc<SessionLimit>>,
    idle_timeout: Option<Duration>,
    handshake_timeout: Option<Duration>,
    retry_after_secs: u32,
}

impl Default for SessionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionLayer {
    /// Stateful sessions, 30 min idle timeout, 60 s handshake timeout, no session limit.
    pub fn new() -> Self {
        Self {
            stateless: false,
            max_sessions: None,
            shared_limit: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            registry: Arc::new(SessionRegistry::new(
                SessionLimit::new(None),
                Some(DEFAULT_IDLE_TIMEOUT),
                Some(DEFAULT_HANDSHAKE_TIMEOUT),
            )),
        }
    }

    fn rebuild(mut self) -> Self {
        let limit = match &self.shared_limit {
            Some(limit) => limit.clone(),
            None => SessionLimit::new(self.max_sessions),
        };
        self.registry = Arc::new(SessionRegistry::new(
            limit,
            self.idle_timeout,
            self.handshake_timeout,
        ));
        self
    }

    /// Serves without sessions: no id is minted, a sent id is ignored, GET and DELETE get
    /// 405 `Allow: POST`.
    pub fn stateless(mut self, stateless: bool) -> Self {
        self.stateless = stateless;
        self
    }

    /// `true` when serving without sessions.
    pub fn is_stateless(&self) -> bool {
        self.stateless
    }

    /// Closes sessions idle for longer than `timeout` with no stream attached; `None` keeps
    /// them until DELETE.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into().filter(|t| !t.is_zero());
        self.rebuild()
    }

    /// Ends a session whose client sends nothing after the `initialize` answer (not even
    /// `notifications/initialized`) within `timeout` (default 60 s), so clients that drop the
    /// handshake do not hold a session for the whole idle timeout; `None` leaves only the idle
    /// timeout.
    pub fn handshake_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.handshake_timeout = timeout.into().filter(|t| !t.is_zero());
        self.rebuild()
    }

    /// Refuses `initialize` with 503 once `max` sessions are live. The legacy HTTP+SSE
    /// transport of an [`McpStack`](crate::McpStack) counts against the same limit.
    pub fn max_sessions(mut self, max: impl Into<Option<usize>>) -> Self {
        self.max_sessions = max.into();
        self.rebuild()
    }

    /// Counts sessions against `limit`, which other layers may share (several servers under
    /// one cap, made with [`SessionLimit::new`]); replaces [`max_sessions`](Self::max_sessions).
    pub fn session_limit(mut self, limit: Arc<SessionLimit>) -> Self {
        self.shared_limit = Some(limit);
        self.rebuild()
    }

    /// The `Retry-After` seconds sent with a 503 at the session limit (default 5).
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = secs;
        self
    }

    /// The session table shared by the services this layer makes (for shutdown and metrics).
    /// Read it after the builder calls: `idle_timeout`, `handshake_timeout` and `max_sessions`
    /// make a new table.
    pub fn registry(&self) -> &Arc<SessionRegistry> {
        &self.registry
    }

    /// The header phase of this layer, to put in front of the body layers (after
    /// authentication): it looks the `Mcp-Session-Id` session up for the request's principal and
    /// keeps it busy while the body is read, so a slow upload cannot let the idle sweep end it.
    /// This layer then uses that lookup instead of its own: one lookup per request.
    pub fn lookup(&self) -> SessionLookupLayer {
        SessionLookupLayer {
            registry: self.registry.clone(),
            stateless: self.stateless,
        }
    }
}

/// The header phase of [`SessionLayer`], made by [`SessionLayer::lookup`].
#[derive(Clone, Debug)]
pub struct SessionLookupLayer {
    registry: Arc<SessionRegistry>,
    stateless: bool,
}

impl<S> Layer<S> for SessionLookupLayer {
    type Service = SessionLookup<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionLookup {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SessionLookupLayer`].
#[derive(Clone, Debug)]
pub struct SessionLookup<S> {
    inner: S,
    layer: SessionLookupLayer,
}

impl<S> SessionLookup<S> {
    crate::macros::define_inner_service_accessors!();
}

/// The session [`SessionLookup`] found, for [`SessionService`] to take instead of looking again.
#[derive(Clone)]
struct LookedUp(Arc<Session>);

/// `true` if [`SessionLookup`] found the request's session here.
#[cfg(feature = "redis")]
pub(crate) fn was_looked_up<B>(req: &Request<B>) -> bool {
    req.extensions().get::<LookedUp>().is_some()
}

impl<S, ReqBody> Service<Request<ReqBody>> for SessionLookup<S>
where
    S: Service<Request<ReqBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = LookupFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let found = match req.headers().get(MCP_SESSION_ID) {
            Some(id) if !self.layer.stateless => {
                let subject = req.extensions().get::<Principal>().map(|p| &*p.subject);
                id.to_str()
                    .ok()
                    .and_then(|id| self.layer.registry.get_for(id, subject))
            }
            _ => None,
        };
        // Unknown ids are not refused here: a 2026-07-28 request ignores the header, and only
        // the body tells. `SessionService` refuses them (404) after the body is read.
        let guard = found.map(|session| {
            let guard = session.attach();
            req.extensions_mut().insert(LookedUp(session));
            guard
        });
        LookupFuture {
            future: self.inner.call(req),
            guard,
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`SessionLookup`]: keeps the session busy until the answer's head.
    pub struct LookupFuture<F> {
        #[pin]
        future: F,
        guard: Option<AttachGuard>,
    }
}

impl<F: std::future::Future> std::future::Future for LookupFuture<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        this.guard.take();
        Poll::Ready(output)
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S> SessionService<S> {
    crate::macros::define_inner_service_accessors!();

    /// The session table.
    pub fn registry(&self) -> &Arc<SessionRegistry> {
        &self.layer.registry
    }
}

/// Reads `MCP-Protocol-Version`: `Ok(None)` when absent.
fn header_version<B>(req: &Request<B>) -> Result<Option<ProtocolVersion>, TransportError> {
    match req.headers().get(MCP_PROTOCOL_VERSION) {
        None => Ok(None),
        Some(value) => {
            let text = value.to_str().unwrap_or("");
            ProtocolVersion::parse(text)
                .map(Some)
                .ok_or_else(|| TransportError::unsupported_protocol_version(text))
        }
    }
}

fn check_batch(payload: Option<&Payload>, version: ProtocolVersion) -> Result<(), TransportError> {
    match payload {
        Some(Payload::Batch(_)) if !version.allows_batches() => Err(TransportError::new(
            TransportErrorKind::InvalidRequest,
        )
        .with_message(format!(
            "Invalid Request: batches are not supported at protocol revision {version}"
        ))),
        _ => Ok(()),
    }
}

impl<S, ResBody> Service<Request<ParsedBody>> for SessionService<S>
where
    S: Service<Request<ParsedBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ParsedBody>) -> Self::Future {
        // 2026-07-28 requests (placed by `ModernLayer`) have no session: never looked up, never
        // minted, whatever `Mcp-Session-Id` says.
        if req.extensions().get::<Arc<RequestMeta>>().is_some() {
            return ResponseFuture::inner(self.inner.call(req), None, None);
        }
        self.layer.registry.start_sweeper();
        // Found by `SessionLookup` in front of the body (and kept busy there), or looked up below.
        let looked_up = req.extensions_mut().remove::<LookedUp>();
        let payload = req.extensions().get::<Payload>();
        let request_id: Option<Id> = payload.and_then(Payload::first_request_id).cloned();
        let reject = |e: TransportError| ResponseFuture::reject(e.with_id(request_id.clone()));

        if self.layer.stateless {
            if req.method() != Method::POST {
                return reject(TransportError::method_not_allowed("POST"));
            }
            let version = match header_version(&req) {
                Ok(v) => v.unwrap_or(ProtocolVersion::FALLBACK),
                Err(e) => return reject(e),
            };
            if let Err(e) = check_batch(payload, version) {
                return reject(e);
            }
            req.extensions_mut().insert(version);
            return ResponseFuture::inner(self.inner.call(req), None, None);
        }

        let session_header = req
            .headers()
            .get(MCP_SESSION_ID)
            .map(|v| v.to_str().unwrap_or(""));
        let subject = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.subject.clone());

        if req.method() == Method::POST && session_header.is_none() {
            let Some(payload) = payload else {
                return reject(TransportError::new(TransportErrorKind::MissingSessionId));
            };
            if payload.contains_initialize() {
                let Some(init) = payload.as_initialize() else {
                    return reject(
                        TransportError::new(TransportErrorKind::InvalidRequest).with_message(
                            "Invalid Request: initialize must be sent alone, not in a batch",
                        ),
                    );
                };
                let requested = init
                    .params
                    .as_ref()
                    .and_then(|p| p.get("protocolVersion"))
                    .and_then(|v| v.as_str());
                let version = ProtocolVersion::negotiate(requested);
                let Some(reservation) = self.layer.registry.reserve() else {
                    return reject(TransportError::too_many_sessions(
                        self.layer.retry_after_secs,
                    ));
                };
                let session = Arc::new(Session::new(subject, version));
                req.extensions_mut().insert(version);
                req.extensions_mut().insert(session.clone());
                let pending = (session, reservation, self.layer.registry.clone());
                return ResponseFuture::inner(self.inner.call(req), Some(pending), None);
            }
            return reject(TransportError::new(TransportErrorKind::MissingSessionId));
        }

        let Some(id) = session_header else {
            // GET (or another method) without a session.
            return match *req.method() {
                Method::GET | Method::DELETE => {
                    reject(TransportError::new(TransportErrorKind::MissingSessionId))
                }
                _ => ResponseFuture::inner(self.inner.call(req), None, None),
            };
        };
        let (session, guard) = match looked_up {
            Some(LookedUp(session)) => (session, None),
            None => match self.layer.registry.get_for(id, subject.as_deref()) {
                Some(session) => {
                    let guard = session.attach();
                    (session, Some(guard))
                }
                None => return reject(TransportError::new(TransportErrorKind::SessionNotFound)),
            },
        };
        session.establish();
        if let Err(e) = header_version(&req) {
            return reject(e);
        }
        if let Some(payload) = payload {
            if payload.contains_initialize() {
                return reject(
                    TransportError::new(TransportErrorKind::InvalidRequest)
                        .with_message("Invalid Request: Server already initialized"),
                );
            }
            if let Err(e) = check_batch(Some(payload), session.protocol_version()) {
                return reject(e);
            }
        }
        if req.method() == Method::DELETE {
            let registry = self.layer.registry.clone();
            let id = session.id().clone();
            return ResponseFuture::terminate(Box::pin(async move {
                registry.terminate(&id).await;
            }));
        }
        req.extensions_mut().insert(session.protocol_version());
        req.extensions_mut().insert(session);
        ResponseFuture::inner(self.inner.call(req), None, guard)
    }
}
