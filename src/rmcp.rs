//! Serve a server written with [rmcp](https://docs.rs/rmcp), the official Rust MCP SDK, inside
//! the stack.
//!
//! [`RmcpService`] is a [`MakeMcpService`]: per session (or per 2026-07-28 request) it builds the
//! rmcp server (anything implementing rmcp's `ServerHandler`, e.g. a `#[tool_router]` tool
//! server) and runs it on an in-process transport, a pair of bounded channels. The
//! [`RmcpServer`] it builds relays both directions, so an rmcp server gets this crate's CORS,
//! origin checks, auth, sessions, resumable SSE, legacy SSE and 2026-07-28 handling:
//!
//! - client requests go to rmcp under ids of the adapter's own (concurrent requests never clash
//!   whatever the client's ids), and rmcp's answers come back to the waiting handler call;
//!   client notifications go to rmcp (a `notifications/cancelled` names rmcp's id);
//! - rmcp's notifications go to the client: `notifications/progress` to the stream of the
//!   request that owns the progress token, `notifications/message` to the newest request still
//!   running, the rest (`list_changed`, ...) to the session's standalone GET stream;
//! - rmcp's requests to the client (`peer.create_message`, `peer.elicit`, `peer.list_roots`, ...)
//!   go out on the stream of the newest request still running, through
//!   [`RequestContext::ask`](crate::RequestContext::ask) for sampling, elicitation and roots
//!   (so the client's declared capabilities are checked and tasks are honoured), else through
//!   [`Peer::request`]; the client's answer (or the error) goes back to rmcp under its id.
//!
//! The authenticated [`Principal`](crate::Principal), if an auth layer found one, is in the
//! extensions of every request rmcp sees (`context.extensions.get::<Principal>()`).
//!
//! A handler that panics answers `-32603`; when the rmcp service has ended, waiting and later
//! requests fail with `-32603` and the session ends (the client gets 404 and re-initializes).
//! [`McpService::close`] (the session's end) stops the rmcp service.
//!
//! # Protocol revisions
//!
//! rmcp negotiates the revision of a 2025 session itself (`initialize` from a 2025-11-25,
//! 2025-06-18 or 2025-03-26 client is answered with that revision), as the transport does.
//! rmcp (3.x) also speaks 2026-07-28: a sessionless request reaches a fresh rmcp service with
//! its `_meta` intact, and rmcp answers `server/discover` itself (the endpoint serves that
//! answer). In 2026-07-28 rmcp refuses server→client requests (`create_message` fails in the
//! handler); a tool that needs input there returns rmcp's own `InputRequiredResult`.
//!
//! The rmcp version must be the one this crate depends on (3.x), so the `ServerHandler` you
//! implement is the trait this adapter serves.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::McpStack;
//! use mcp_tower_http::rmcp::RmcpService;
//! use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
//! use rmcp::model::{ServerCapabilities, ServerInfo};
//! use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
//!
//! #[derive(Clone)]
//! struct Greeter {
//!     tool_router: ToolRouter<Self>,
//! }
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct GreetArgs {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! #[tool_router]
//! impl Greeter {
//!     fn new() -> Self {
//!         Self { tool_router: Self::tool_router() }
//!     }
//!
//!     #[tool(description = "Say hello")]
//!     fn greet(&self, Parameters(GreetArgs { name }): Parameters<GreetArgs>) -> String {
//!         format!("Hello, {name}!")
//!     }
//! }
//!
//! #[tool_handler]
//! impl ServerHandler for Greeter {
//!     fn get_info(&self) -> ServerInfo {
//!         ServerInfo::new(ServerCapabilities::builder().enable_tools().build())
//!     }
//! }
//!
//! let service = McpStack::new(RmcpService::new(Greeter::new))
//!     .endpoint_path("/mcp")
//!     .into_service();
//! # let _ = service;
//! ```

use crate::input::InputRequest;
use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message, Notification, Request};
use crate::service::{
    MakeMcpService, McpService, NotificationContext, Peer, RequestContext, SessionContext,
};
use crate::session::SessionCloser;
use crate::sync::lock;
use ::rmcp::model::{
    ClientJsonRpcMessage, ClientNotification, ClientRequest, GetExtensions, ProtocolVersion,
    ServerConfig, ServerJsonRpcMessage, ServerResult,
};
use ::rmcp::service::{
    NotificationContext as RmcpNotificationContext, RequestContext as RmcpRequestContext,
    RoleServer, Service,
};
use ::rmcp::{ErrorData, serve_server};
use futures_util::FutureExt;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How many messages may wait in each direction between the relay and rmcp.
const CHANNEL_CAPACITY: usize = 64;

/// How long [`McpService::close`] waits for rmcp to wind down before stopping it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Builds an rmcp server per session and serves it; see the [module docs](crate::rmcp).
pub struct RmcpService<F> {
    make: F,
}

impl<F> fmt::Debug for RmcpService<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RmcpService").finish_non_exhaustive()
    }
}

impl<F, S> RmcpService<F>
where
    F: Fn() -> S + Send + Sync + 'static,
    S: Service<RoleServer>,
{
    /// Serves the rmcp server `make` builds, one per session (e.g. `RmcpService::new(Counter::new)`).
    pub fn new(make: F) -> Self {
        Self { make }
    }
}

impl<F, S> MakeMcpService for RmcpService<F>
where
    F: Fn() -> S + Send + Sync + 'static,
    S: Service<RoleServer>,
{
    type Service = RmcpServer;

    fn make_service(
        &self,
        cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<RmcpServer, ErrorObject>> + Send {
        std::future::ready(Ok(RmcpServer::start((self.make)(), cx.session_closer())))
    }
}

/// A client request rmcp is working on.
struct Running {
    rmcp_id: i64,
    client_id: Id,
    progress_token: Option<Value>,
    cx: RequestContext,
}

/// State shared by the service and its relay task.
struct Shared {
    /// To rmcp; taken when the service ends, which ends rmcp's input.
    inbound: Mutex<Option<mpsc::Sender<ClientJsonRpcMessage>>>,
    /// Requests sent to rmcp, by the id rmcp sees.
    pending: Mutex<HashMap<i64, oneshot::Sender<Result<Value, ErrorObject>>>>,
    /// Client requests in flight, oldest first, for routing rmcp's messages.
    running: Mutex<Vec<Running>>,
    /// The session's standalone stream, once any request has been seen.
    standalone: Mutex<Option<Peer>>,
    next_id: AtomicI64,
    ended: AtomicBool,
    closer: Option<SessionCloser>,
}

fn ended() -> ErrorObject {
    ErrorObject::new(ErrorCode::INTERNAL_ERROR, "the rmcp service has ended")
}

impl Shared {
    async fn send(&self, message: ClientJsonRpcMessage) -> Result<(), ErrorObject> {
        let inbound = lock(&self.inbound).clone();
        match inbound {
            Some(tx) => tx.send(message).await.map_err(|_| ended()),
            None => Err(ended()),
        }
    }

    /// rmcp is gone (or the session ended): fail every waiter, refuse what comes next.
    fn end(&self) {
        if self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.inbound).take();
        for (_, waiter) in lock(&self.pending).drain() {
            let _ = waiter.send(Err(ended()));
        }
    }

    /// Where a notification of rmcp goes.
    fn route(&self, notification: &Notification) -> Option<Peer> {
        let running = lock(&self.running);
        let owner = match notification.method.as_str() {
            "notifications/progress" => {
                let token = notification
                    .params
                    .as_ref()
                    .and_then(|p| p.get("progressToken"));
                running
                    .iter()
                    .find(|r| r.progress_token.is_some() && r.progress_token.as_ref() == token)
            }
            "notifications/message" => running.last(),
            _ => None,
        };
        owner
            .map(|r| r.cx.peer().clone())
            .or_else(|| lock(&self.standalone).clone())
    }
}

/// Converts through JSON: the two crates' messages are the same JSON-RPC on the wire.
fn to_rmcp(message: &Message) -> Result<ClientJsonRpcMessage, ErrorObject> {
    let value = serde_json::to_value(message).map_err(|_| ErrorObject::internal())?;
    serde_json::from_value(value).map_err(|e| ErrorObject::invalid_params(e.to_string()))
}

fn from_rmcp(message: &ServerJsonRpcMessage) -> Option<Message> {
    let value = serde_json::to_value(message).ok()?;
    Message::from_value(value).ok()
}

/// One session's rmcp service; see the [module docs](crate::rmcp).
pub struct RmcpServer {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for RmcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RmcpServer")
            .field("ended", &self.shared.ended.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RmcpServer {
    /// Starts `server` on an in-process transport (it then waits for `initialize`, or a
    /// 2026-07-28 request). `closer` ends the session when the service ends by itself.
    pub fn start<S: Service<RoleServer>>(server: S, closer: Option<SessionCloser>) -> Self {
        let (in_tx, in_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (out_tx, out_rx) = mpsc::channel(CHANNEL_CAPACITY);
        let shared = Arc::new(Shared {
            inbound: Mutex::new(Some(in_tx)),
            pending: Mutex::new(HashMap::new()),
            running: Mutex::new(Vec::new()),
            standalone: Mutex::new(None),
            next_id: AtomicI64::new(1),
            ended: AtomicBool::new(false),
            closer,
        });
        let transport = Channels {
            rx: in_rx,
            tx: out_tx,
        };
        let driver = tokio::spawn(async move {
            match serve_server(Guarded(server), transport).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(e) => tracing::debug!(error = %e, "rmcp service did not start"),
            }
        });
        tokio::spawn(relay(out_rx, Arc::downgrade(&shared)));
        Self {
            shared,
            driver: Mutex::new(Some(driver)),
        }
    }
}

impl Drop for RmcpServer {
    fn drop(&mut self) {
        self.shared.end();
        if let Some(driver) = lock(&self.driver).take() {
            driver.abort();
        }
    }
}

/// Removes a finished request from the routing tables, even if its future is dropped; a request
/// abandoned before its answer is cancelled at rmcp too.
struct RunningGuard<'a> {
    shared: &'a Arc<Shared>,
    rmcp_id: i64,
    answered: bool,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.running).retain(|r| r.rmcp_id != self.rmcp_id);
        lock(&self.shared.pending).remove(&self.rmcp_id);
        if self.answered || self.shared.ended.load(Ordering::Acquire) {
            return;
        }
        let cancel = Message::notification(
            "notifications/cancelled",
            Some(
                json!({ "requestId": self.rmcp_id, "reason": "the client's request was abandoned" }),
            ),
        );
        let (Ok(cancel), Some(tx)) = (to_rmcp(&cancel), lock(&self.shared.inbound).clone()) else {
            return;
        };
        // Not awaited (this is a destructor): dropped if rmcp's queue is full.
        let _ = tx.try_send(cancel);
    }
}

impl McpService for RmcpServer {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let shared = &self.shared;
        if shared.ended.load(Ordering::Acquire) {
            return Err(ended());
        }
        lock(&shared.standalone).get_or_insert_with(|| cx.peer().standalone());
        let rmcp_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let forwarded = Message::request(Id::Number(rmcp_id), request.method, request.params);
        let mut forwarded = to_rmcp(&forwarded)?;
        if let (ClientJsonRpcMessage::Request(r), Some(principal)) =
            (&mut forwarded, cx.principal())
        {
            r.request.extensions_mut().insert(principal.clone());
        }
        let (tx, rx) = oneshot::channel();
        lock(&shared.pending).insert(rmcp_id, tx);
        lock(&shared.running).push(Running {
            rmcp_id,
            client_id: request.id,
            progress_token: cx.progress_token().cloned(),
            cx,
        });
        let mut guard = RunningGuard {
            shared,
            rmcp_id,
            answered: false,
        };
        shared.send(forwarded).await?;
        let answer = rx.await.unwrap_or_else(|_| Err(ended()));
        guard.answered = true;
        answer
    }

    async fn handle_notification(&self, notification: Notification, _cx: NotificationContext) {
        let mut notification = notification;
        if notification.method == "notifications/cancelled" {
            // rmcp knows the request under the id the adapter gave it.
            let rmcp_id = {
                let client_id = notification
                    .params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .and_then(|id| Id::from_value(id.clone()));
                lock(&self.shared.running)
                    .iter()
                    .find(|r| Some(&r.client_id) == client_id.as_ref())
                    .map(|r| r.rmcp_id)
            };
            match (rmcp_id, notification.params.as_mut()) {
                (Some(id), Some(Value::Object(params))) => {
                    params.insert("requestId".into(), id.into());
                }
                _ => return,
            }
        }
        match to_rmcp(&Message::Notification(notification)) {
            Ok(message) => {
                if self.shared.send(message).await.is_err() {
                    tracing::debug!("notification for an ended rmcp service dropped");
                }
            }
            Err(e) => tracing::debug!(error = %e.message, "notification rmcp cannot read dropped"),
        }
    }

    async fn close(&self) {
        // Closing rmcp's input ends its service loop.
        self.shared.end();
        lock(&self.shared.standalone).take();
        lock(&self.shared.running).clear();
        let Some(mut driver) = lock(&self.driver).take() else {
            return;
        };
        if tokio::time::timeout(CLOSE_GRACE, &mut driver)
            .await
            .is_err()
        {
            tracing::debug!("rmcp service did not stop in time; aborting it");
            driver.abort();
        }
    }
}

/// Takes rmcp's output until it ends, then ends the service.
async fn relay(mut rx: mpsc::Receiver<ServerJsonRpcMessage>, shared: Weak<Shared>) {
    while let Some(message) = rx.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match from_rmcp(&message) {
            Some(message) => deliver(&shared, message).await,
            None => tracing::warn!("dropped a message of the rmcp service that is not JSON-RPC"),
        }
    }
    if let Some(shared) = shared.upgrade() {
        shared.end();
        if let Some(closer) = &shared.closer {
            closer.close();
        }
    }
}

/// Sends one message of rmcp where it belongs.
async fn deliver(shared: &Arc<Shared>, message: Message) {
    match message {
        Message::Response(response) => {
            if let Id::Number(id) = response.id
                && let Some(waiter) = lock(&shared.pending).remove(&id)
            {
                let _ = waiter.send(Ok(response.result));
            }
        }
        Message::Error(error) => {
            if let Some(Id::Number(id)) = error.id
                && let Some(waiter) = lock(&shared.pending).remove(&id)
            {
                let _ = waiter.send(Err(error.error));
            }
        }
        Message::Notification(notification) => {
            let Some(peer) = shared.route(&notification) else {
                tracing::debug!(method = %notification.method, "no client stream for an rmcp notification");
                return;
            };
            // Awaited, not spawned: order matters, and a slow stream holds rmcp up (bounded by
            // the SSE stall timeout).
            let _ = peer.send(Message::Notification(notification)).await;
        }
        Message::Request(request) => {
            let asker = lock(&shared.running).last().map(|r| r.cx.clone());
            let standalone = lock(&shared.standalone).clone();
            let shared = Arc::downgrade(shared);
            tokio::spawn(async move {
                let answer = ask_client(asker, standalone, &request).await;
                let reply = match answer {
                    Ok(result) => Message::result(request.id, result),
                    Err(error) => Message::error(Some(request.id), error),
                };
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                match to_rmcp(&reply) {
                    Ok(reply) => {
                        let _ = shared.send(reply).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.message, "rmcp cannot read the client's answer")
                    }
                }
            });
        }
    }
}

/// Asks the client what rmcp asked, on the stream of the request rmcp is working on.
async fn ask_client(
    asker: Option<RequestContext>,
    standalone: Option<Peer>,
    request: &Request,
) -> Result<Value, ErrorObject> {
    let params = request.params.clone().unwrap_or_else(|| json!({}));
    let input = match request.method.as_str() {
        "sampling/createMessage" => Some(InputRequest::sampling(params.clone())),
        "elicitation/create" => Some(InputRequest::elicitation_params(params.clone())),
        "roots/list" => Some(InputRequest::list_roots()),
        _ => None,
    };
    match (asker, input) {
        (Some(cx), Some(input)) => cx.ask(&format!("rmcp-{}", request.id), input).await,
        (Some(cx), None) => cx.peer().request(&request.method, Some(params)).await,
        (None, _) => match standalone {
            Some(peer) => peer.request(&request.method, Some(params)).await,
            None => Err(ErrorObject::new(
                ErrorCode::SERVER_ERROR,
                "no client stream to send the request on",
            )),
        },
    }
}

/// The in-process transport: rmcp reads the client's messages from one bounded channel and
/// writes its own to another.
struct Channels {
    rx: mpsc::Receiver<ClientJsonRpcMessage>,
    tx: mpsc::Sender<ServerJsonRpcMessage>,
}

/// The relay stopped taking rmcp's messages.
#[derive(Debug)]
struct RelayClosed;

impl fmt::Display for RelayClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the HTTP relay has stopped")
    }
}

impl std::error::Error for RelayClosed {}

impl ::rmcp::transport::Transport<RoleServer> for Channels {
    type Error = RelayClosed;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), RelayClosed>> + Send + 'static {
        let tx = self.tx.clone();
        async move { tx.send(item).await.map_err(|_| RelayClosed) }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ClientJsonRpcMessage>> + Send {
        self.rx.recv()
    }

    async fn close(&mut self) -> Result<(), RelayClosed> {
        self.rx.close();
        Ok(())
    }
}

/// The user's server, with panics of its handlers turned into `-32603` answers (rmcp runs each
/// handler in a task of its own, whose panic would leave the request unanswered).
struct Guarded<S>(S);

fn panicked() -> ErrorData {
    ErrorData::internal_error("the rmcp handler panicked", None)
}

impl<S: Service<RoleServer>> Service<RoleServer> for Guarded<S> {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RmcpRequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        AssertUnwindSafe(self.0.handle_request(request, context))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!("rmcp handler panicked");
                Err(panicked())
            })
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: RmcpNotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        AssertUnwindSafe(self.0.handle_notification(notification, context))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!("rmcp notification handler panicked");
                Err(panicked())
            })
    }

    fn get_info(&self) -> ServerConfig {
        self.0.get_info()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.0.supported_protocol_versions()
    }
}
