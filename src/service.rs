//! The inner MCP server the layers compose around.
//!
//! [`McpService`] handles JSON-RPC requests and notifications. [`MakeMcpService`] builds one
//! instance per session (or per request when serving statelessly), the way tower's `MakeService`
//! builds one service per connection. Sessions stay out of the handling trait: a handler sees a
//! [`RequestContext`] that may or may not name a session, so a sessionless revision (2026-07-28)
//! can drive the same trait, building an instance per request and closing it afterwards.
//!
//! # Generic, not boxed
//!
//! Both traits use `async fn`-style methods returning `impl Future + Send` and are consumed
//! generically: the endpoint is `McpEndpoint<M: MakeMcpService>`, so a handler call is a direct,
//! inlinable call with no `dyn` dispatch per message. The price is that these traits are not
//! object-safe; a host that needs to pick a server at run time wraps its choices in an enum (one
//! match per call) instead of a `Box<dyn McpService>`. Per session the instance is stored behind
//! an `Arc` in the session table.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc::{ErrorObject, Request};
//! use mcp_tower_http::{McpService, RequestContext};
//! use serde_json::{Value, json};
//!
//! struct Hello;
//!
//! impl McpService for Hello {
//!     async fn handle_request(&self, request: Request, cx: RequestContext) -> Result<Value, ErrorObject> {
//!         match request.method.as_str() {
//!             "ping" => Ok(json!({})),
//!             "tools/call" => {
//!                 // Tell the client how far along we are, on this request's stream.
//!                 cx.notify_progress(1.0, Some(1.0), None).await;
//!                 Ok(json!({ "content": [{ "type": "text", "text": "hello" }] }))
//!             }
//!             other => Err(ErrorObject::method_not_found(other)),
//!         }
//!     }
//! }
//! ```

use crate::input::{InputRequest, InputRound, input_required_error, missing_capability};
use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message, Notification, Request};
use crate::modern::RequestMeta;
use crate::principal::Principal;
use crate::protocol::{LogLevel, ProtocolVersion};
use crate::session::{Session, SessionCloser, SessionId};
use crate::sse::StreamEvent;
use crate::subscriptions::ListenHub;
use crate::sync::lock;
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// An MCP server: answers requests and takes notifications from one client.
pub trait McpService: Send + Sync + 'static {
    /// Answers one request with a result or a JSON-RPC error.
    fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send;

    /// Takes one notification. The default ignores it.
    fn handle_notification(
        &self,
        notification: Notification,
        cx: NotificationContext,
    ) -> impl Future<Output = ()> + Send {
        let _ = (notification, cx);
        async {}
    }

    /// Called once when the session (or the stateless request) this instance served has ended:
    /// release resources here (child processes, subscriptions). The default does nothing.
    fn close(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

impl<S: McpService> McpService for Arc<S> {
    fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send {
        (**self).handle_request(request, cx)
    }

    fn handle_notification(
        &self,
        notification: Notification,
        cx: NotificationContext,
    ) -> impl Future<Output = ()> + Send {
        (**self).handle_notification(notification, cx)
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        (**self).close()
    }
}

/// Builds an [`McpService`] for a new session, from the HTTP request that opened it.
///
/// Closures `Fn(&SessionContext) -> S` implement it.
pub trait MakeMcpService: Send + Sync + 'static {
    /// The service built.
    type Service: McpService;

    /// Builds the service; an error is sent to the client as the `initialize` error.
    fn make_service(
        &self,
        cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<Self::Service, ErrorObject>> + Send;

    /// Whether a session's server can be rebuilt on another instance of a cluster from what
    /// its `initialize` said (feature `redis`): `true` for servers whose per-session state is
    /// only what `initialize` sets up, such as [`McpServer`](crate::server::McpServer). A
    /// session whose server cannot move (a child process) ends with its instance. Default
    /// `false`.
    fn rebuildable(&self) -> bool {
        false
    }
}

impl<F, S> MakeMcpService for F
where
    F: Fn(&SessionContext<'_>) -> S + Send + Sync + 'static,
    S: McpService,
{
    type Service = S;

    fn make_service(
        &self,
        cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<S, ErrorObject>> + Send {
        std::future::ready(Ok(self(cx)))
    }
}

/// What a [`MakeMcpService`] knows about the session it builds a service for.
#[derive(Debug)]
pub struct SessionContext<'a> {
    pub(crate) session: Option<&'a Arc<Session>>,
    pub(crate) parts: &'a http::request::Parts,
    pub(crate) protocol_version: ProtocolVersion,
}

impl<'a> SessionContext<'a> {
    /// The new session's id; `None` when serving statelessly.
    pub fn session_id(&self) -> Option<&'a SessionId> {
        self.session.map(|s| s.id())
    }

    /// A handle with which the service can end its own session later (e.g. when the process
    /// behind it died): clients then get 404 and re-initialize. `None` when serving statelessly.
    pub fn session_closer(&self) -> Option<SessionCloser> {
        self.session.map(SessionCloser::new)
    }

    /// The HTTP request that opened the session (method, URI, headers, extensions).
    pub fn request_parts(&self) -> &'a http::request::Parts {
        self.parts
    }

    /// The authenticated principal an auth layer placed in the request extensions.
    pub fn principal(&self) -> Option<&'a Principal> {
        self.parts.extensions.get::<Principal>()
    }

    /// The protocol revision the transport would negotiate for this `initialize` (or assumes
    /// for a stateless request).
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.protocol_version
    }
}

/// Where messages a handler sends to the client go.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// The SSE stream of the HTTP request being answered.
    Stream(mpsc::Sender<StreamEvent>),
    /// The same, with the channel opened only when a message is sent or the answer has to
    /// wait: most handlers answer at once and send nothing, and then need no channel.
    LazyStream(Arc<LazyStream>),
    /// The session's standalone GET stream, if one is attached (JSON-response mode, or messages
    /// not related to a request).
    Standalone,
}

/// A request's stream channel, opened on first use.
#[derive(Debug)]
pub(crate) struct LazyStream {
    capacity: usize,
    state: Mutex<StreamState>,
}

#[derive(Debug)]
enum StreamState {
    Unopened,
    Open {
        tx: mpsc::Sender<StreamEvent>,
        rx: Option<mpsc::Receiver<StreamEvent>>,
    },
    /// Answered without a stream: nothing sent later can reach the client.
    Closed,
}

impl LazyStream {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            state: Mutex::new(StreamState::Unopened),
        }
    }

    /// The sending end, opening the channel if needed; `None` once the request was answered
    /// without one.
    pub(crate) fn sender(&self) -> Option<mpsc::Sender<StreamEvent>> {
        let mut state = lock(&self.state);
        match &*state {
            StreamState::Unopened => {
                let (tx, rx) = mpsc::channel(self.capacity);
                *state = StreamState::Open {
                    tx: tx.clone(),
                    rx: Some(rx),
                };
                Some(tx)
            }
            StreamState::Open { tx, .. } => Some(tx.clone()),
            StreamState::Closed => None,
        }
    }

    /// The receiving end, opening the channel if needed (the response becomes a stream).
    pub(crate) fn take_receiver(&self) -> Option<mpsc::Receiver<StreamEvent>> {
        self.sender();
        match &mut *lock(&self.state) {
            StreamState::Open { rx, .. } => rx.take(),
            _ => None,
        }
    }

    /// The request is answered in one piece: the receiver, if anything was sent, and from now
    /// on sending fails.
    pub(crate) fn finish(&self) -> Option<mpsc::Receiver<StreamEvent>> {
        let mut state = lock(&self.state);
        match &mut *state {
            StreamState::Unopened => {
                *state = StreamState::Closed;
                None
            }
            StreamState::Open { rx, .. } => rx.take(),
            StreamState::Closed => None,
        }
    }
}

/// A handle to the client for sending notifications and requests.
#[derive(Clone, Debug)]
pub struct Peer {
    route: Route,
    /// Weak: a server may keep a `Peer` for later (notifications outside any request), and the
    /// session owns the server, so a strong reference would keep both alive forever.
    session: Option<Weak<Session>>,
    request_timeout: Duration,
    /// Set on 2026-07-28 requests, which have no session.
    sessionless: Option<Arc<Sessionless>>,
}

/// What a 2026-07-28 request's peer needs: where unrelated notifications go, and which log
/// messages the client asked for.
#[derive(Debug)]
pub(crate) struct Sessionless {
    pub(crate) hub: Arc<ListenHub>,
    pub(crate) principal: Option<Arc<str>>,
    pub(crate) log_level: Option<LogLevel>,
}

impl Sessionless {
    /// A `notifications/message` goes out only at or above the level the request's `_meta`
    /// asked for; without one, none does.
    fn drops(&self, message: &Message) -> bool {
        let Message::Notification(n) = message else {
            return false;
        };
        if n.method != "notifications/message" {
            return false;
        }
        let level = n
            .params
            .as_ref()
            .and_then(|p| p.get("level"))
            .and_then(Value::as_str)
            .and_then(LogLevel::parse);
        match (self.log_level, level) {
            (Some(min), Some(level)) => level < min,
            (Some(_), None) => false,
            (None, _) => true,
        }
    }
}

/// Why a message could not be delivered to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The stream the message belongs to is gone (client disconnected, session ended).
    Closed,
    /// There is no stream to send it on (serving without a session).
    NoStream,
    /// The session's buffer for the standalone stream is full; the message was dropped.
    Full,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Closed => "the client stream is closed",
            SendError::NoStream => "no client stream to send on",
            SendError::Full => "the client's message buffer is full",
        })
    }
}

impl std::error::Error for SendError {}

impl Peer {
    pub(crate) fn new(route: Route, session: Option<Arc<Session>>, timeout: Duration) -> Self {
        Self {
            route,
            session: session.as_ref().map(Arc::downgrade),
            request_timeout: timeout,
            sessionless: None,
        }
    }

    pub(crate) fn sessionless(route: Route, sessionless: Arc<Sessionless>) -> Self {
        Self {
            route,
            session: None,
            request_timeout: Duration::ZERO,
            sessionless: Some(sessionless),
        }
    }

    /// Sends a message to the client: on the request's stream (waiting while its bounded queue
    /// is full), else on the session's standalone stream (dropping the message if that stream's
    /// buffer is full, see [`SendError::Full`]).
    ///
    /// On 2026-07-28 requests, messages unrelated to the request go to the open
    /// `subscriptions/listen` streams of the same principal that asked for them; requests cannot
    /// be sent ([`SendError::NoStream`]: use [`RequestContext::ask`]); log messages go out only
    /// at or above the `logLevel` the request's `_meta` asked for.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        if let Some(sessionless) = &self.sessionless {
            if message.is_request() {
                return Err(SendError::NoStream);
            }
            if sessionless.drops(&message) {
                return Ok(());
            }
            if let Route::Standalone = self.route {
                sessionless
                    .hub
                    .publish(sessionless.principal.as_deref(), &message);
                return Ok(());
            }
        }
        match &self.route {
            Route::Stream(tx) => tx
                .send(StreamEvent::Message(message))
                .await
                .map_err(|_| SendError::Closed),
            Route::LazyStream(stream) => match stream.sender() {
                Some(tx) => tx
                    .send(StreamEvent::Message(message))
                    .await
                    .map_err(|_| SendError::Closed),
                None => Err(SendError::Closed),
            },
            Route::Standalone => match &self.session {
                Some(session) => match session.upgrade() {
                    Some(session) => session.send_standalone(message),
                    None => Err(SendError::Closed),
                },
                None => Err(SendError::NoStream),
            },
        }
    }

    /// A handle for messages not related to the current request: they go to the session's
    /// standalone GET stream (e.g. `notifications/tools/list_changed`).
    pub fn standalone(&self) -> Peer {
        Peer {
            route: Route::Standalone,
            session: self.session.clone(),
            request_timeout: self.request_timeout,
            sessionless: self.sessionless.clone(),
        }
    }

    /// Closes the client's connection of the current request's SSE stream after telling it to
    /// reconnect in `retry`; the stream goes on and the client resumes it with `Last-Event-ID`
    /// (2025-11-25 polling). Does nothing outside an SSE response or without an event store.
    pub async fn close_sse_stream(&self, retry: Duration) {
        let tx = match &self.route {
            Route::Stream(tx) => tx.clone(),
            Route::LazyStream(stream) => match stream.sender() {
                Some(tx) => tx,
                None => return,
            },
            Route::Standalone => return,
        };
        let _ = tx.send(StreamEvent::CloseConnection { retry }).await;
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), SendError> {
        self.send(Message::notification(method, params)).await
    }

    /// Sends a request to the client (e.g. `sampling/createMessage`) and waits for its answer,
    /// which the client POSTs back as a JSON-RPC response. Fails with `-32001` after the peer's
    /// request timeout, and with `-32000` when the transport has no session to route the answer.
    ///
    /// 2026-07-28 has no server→client requests: ask for input with [`RequestContext::ask`],
    /// which works in every revision.
    pub async fn request(&self, method: &str, params: Option<Value>) -> Result<Value, ErrorObject> {
        if self.sessionless.is_some() {
            return Err(ErrorObject::new(
                ErrorCode::INTERNAL_ERROR,
                "protocol 2026-07-28 has no server-to-client requests: use RequestContext::ask",
            ));
        }
        let Some(session) = &self.session else {
            return Err(ErrorObject::new(
                ErrorCode::SERVER_ERROR,
                "server-to-client requests need a session",
            ));
        };
        let Some(session) = session.upgrade() else {
            return Err(ErrorObject::new(ErrorCode::SERVER_ERROR, "session ended"));
        };
        let (id, answer) = session.expect_client_response();
        let sent = self
            .send(Message::request(id.clone(), method, params))
            .await;
        if sent.is_err() {
            session.forget_client_request(&id);
            return Err(ErrorObject::new(
                ErrorCode::SERVER_ERROR,
                "the client stream is closed",
            ));
        }
        match tokio::time::timeout(self.request_timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ErrorObject::new(ErrorCode::SERVER_ERROR, "session ended")),
            Err(_) => {
                session.forget_client_request(&id);
                Err(ErrorObject::new(
                    ErrorCode::REQUEST_TIMEOUT,
                    format!("the client did not answer {method} in time"),
                ))
            }
        }
    }
}

/// Everything a handler knows about the request it is answering.
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub(crate) id: Id,
    pub(crate) progress_token: Option<Value>,
    pub(crate) common: Context,
    /// 2026-07-28: the answers to input requests so far, and what the handler asks for now.
    pub(crate) input: Option<Arc<InputRound>>,
}

/// Everything a handler knows about a notification.
#[derive(Clone, Debug)]
pub struct NotificationContext {
    pub(crate) common: Context,
}

/// What request and notification contexts share.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    pub(crate) session_id: Option<SessionId>,
    pub(crate) protocol_version: ProtocolVersion,
    pub(crate) extensions: Arc<http::Extensions>,
    pub(crate) peer: Peer,
    /// The client's capabilities and info: the request's `_meta` (2026-07-28) or the session's
    /// `initialize`.
    pub(crate) client: Option<Arc<RequestMeta>>,
}

impl Context {
    pub(crate) fn new(
        session: Option<&Arc<Session>>,
        protocol_version: ProtocolVersion,
        extensions: Arc<http::Extensions>,
        peer: Peer,
    ) -> Self {
        let client = extensions
            .get::<Arc<RequestMeta>>()
            .cloned()
            .or_else(|| session.and_then(|s| s.client()));
        Self {
            session_id: session.map(|s| s.id().clone()),
            protocol_version,
            extensions,
            peer,
            client,
        }
    }
}

macro_rules! context_accessors {
    () => {
        /// The session id; `None` when serving statelessly.
        pub fn session_id(&self) -> Option<&SessionId> {
            self.common.session_id.as_ref()
        }

        /// The negotiated protocol revision.
        pub fn protocol_version(&self) -> ProtocolVersion {
            self.common.protocol_version
        }

        /// The HTTP request extensions (e.g. values placed by outer layers).
        pub fn extensions(&self) -> &http::Extensions {
            &self.common.extensions
        }

        /// The authenticated principal, if an auth layer placed one.
        pub fn principal(&self) -> Option<&Principal> {
            self.common.extensions.get::<Principal>()
        }

        /// The handle for sending messages to the client.
        pub fn peer(&self) -> &Peer {
            &self.common.peer
        }

        /// The capabilities the client declared (2026-07-28: in the request's `_meta`; 2025:
        /// in `initialize`). `None` outside a transport.
        pub fn client_capabilities(&self) -> Option<&Value> {
            self.common
                .client
                .as_deref()
                .map(|c| &c.client_capabilities)
        }

        /// The client's `{name, version}`, if it sent one.
        pub fn client_info(&self) -> Option<&Value> {
            self.common.client.as_deref()?.client_info.as_ref()
        }

        /// The minimum log level the client asked for on this request (2026-07-28 `_meta`
        /// `logLevel`; messages below it are dropped by the transport). In 2025 revisions the
        /// server tracks `logging/setLevel` itself and this is `None`.
        pub fn log_level(&self) -> Option<LogLevel> {
            self.common.client.as_deref()?.log_level
        }
    };
}

impl RequestContext {
    context_accessors!();

    /// A context outside any transport, for testing an [`McpService`] directly: messages the
    /// handler sends to the client arrive on the returned receiver (bounded by `capacity`).
    /// There is no session, so [`Peer::request`] fails.
    pub fn detached(
        id: Id,
        progress_token: Option<Value>,
        capacity: usize,
    ) -> (Self, mpsc::Receiver<StreamEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let peer = Peer::new(Route::Stream(tx), None, Duration::from_secs(60));
        let common = Context::new(
            None,
            ProtocolVersion::LATEST,
            Arc::new(http::Extensions::new()),
            peer,
        );
        (
            Self {
                id,
                progress_token,
                common,
                input: None,
            },
            rx,
        )
    }

    /// Asks the client for input and returns its answer (the client's result object, e.g.
    /// `{"action": "accept", "content": {...}}` for an elicitation). See [`crate::input`]: in
    /// 2025 revisions this is a request on the response stream; in 2026-07-28 the first call
    /// returns an error that ends the round with `input_required` — pass it on with `?` — and the
    /// retried call gets the answer. Keys name the answers: use a distinct key for each
    /// question of one call.
    pub async fn ask(&self, key: &str, request: InputRequest) -> Result<Value, ErrorObject> {
        let mut answers = self.ask_all([(key.to_owned(), request)]).await?;
        answers.remove(key).ok_or_else(ErrorObject::internal)
    }

    /// Asks several questions at once (one `input_required` round in 2026-07-28; concurrent
    /// server→client requests in 2025 revisions) and returns the answers by key.
    pub async fn ask_all(
        &self,
        requests: impl IntoIterator<Item = (String, InputRequest)>,
    ) -> Result<Map<String, Value>, ErrorObject> {
        let requests: Vec<(String, InputRequest)> = requests.into_iter().collect();
        if let Some(client) = self.common.client.as_deref()
            && let Some((_, refused)) = requests
                .iter()
                .find(|(_, r)| !client.has_capability(r.capability()))
        {
            return Err(missing_capability(refused.capability()));
        }
        // A call running as a task asks through the task (`tasks/get`, `tasks/update`).
        if let Some(task) = crate::tasks::running_task(self) {
            return task.ask(requests).await;
        }
        let mut answers = Map::new();
        if self.common.protocol_version.is_sessionless() {
            let Some(round) = &self.input else {
                return Err(ErrorObject::internal());
            };
            let mut missing = Vec::new();
            for (key, request) in requests {
                match round.answers.get(&key) {
                    Some(answer) => {
                        answers.insert(key, answer.clone());
                    }
                    None => missing.push((key, request)),
                }
            }
            if missing.is_empty() {
                return Ok(answers);
            }
            crate::sync::lock(&round.pending).extend(missing);
            return Err(input_required_error());
        }
        // All at once, as one 2026-07-28 round would ask them (a relay in front of this server
        // then turns them into one `input_required` round too).
        let asked = requests.into_iter().map(|(key, request)| async move {
            let mut params = request.params().clone();
            if let Value::Object(params) = &mut params
                && let Value::Object(meta) = params
                    .entry("_meta")
                    .or_insert_with(|| Value::Object(Map::new()))
            {
                meta.insert(crate::input::META_INPUT_KEY.into(), key.clone().into());
            }
            let answer = self
                .common
                .peer
                .request(request.method(), Some(params))
                .await?;
            Ok::<_, ErrorObject>((key, answer))
        });
        for (key, answer) in futures_util::future::try_join_all(asked).await? {
            answers.insert(key, answer);
        }
        Ok(answers)
    }

    /// The id of the request being answered.
    pub fn request_id(&self) -> &Id {
        &self.id
    }

    /// The client's `params._meta.progressToken`, if it asked for progress.
    pub fn progress_token(&self) -> Option<&Value> {
        self.progress_token.as_ref()
    }

    /// Sends `notifications/progress` when the client asked for progress; otherwise does nothing.
    /// Delivery failures are ignored: progress is advisory.
    pub async fn notify_progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut params = serde_json::Map::new();
        params.insert("progressToken".into(), token.clone());
        params.insert("progress".into(), progress.into());
        if let Some(total) = total {
            params.insert("total".into(), total.into());
        }
        if let Some(message) = message {
            params.insert("message".into(), message.into());
        }
        let _ = self
            .common
            .peer
            .notify("notifications/progress", Some(Value::Object(params)))
            .await;
    }
}

impl NotificationContext {
    context_accessors!();
}

#[cfg(test)]
mod lazy_stream_tests {
    use super::*;

    #[tokio::test]
    async fn a_stream_opens_on_first_send_and_refuses_sends_once_answered_without_one() {
        let stream = LazyStream::new(4);
        let tx = stream.sender().unwrap();
        tx.send(StreamEvent::Message(Message::notification("a", None)))
            .await
            .unwrap();
        let mut rx = stream.finish().unwrap();
        assert!(matches!(rx.try_recv(), Ok(StreamEvent::Message(_))));

        let unopened = LazyStream::new(4);
        assert!(unopened.finish().is_none());
        assert!(unopened.sender().is_none());
        assert!(unopened.take_receiver().is_none());
    }
}
