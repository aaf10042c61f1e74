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
//! extensions of every request rmcp sees: take it in a `#[tool]` as
//! `Extension(principal): Extension<Principal>`.
//!
//! A handler that panics answers `-32603`; when the rmcp service has ended, waiting and later
//! requests fail with `-32603` and the session ends (the client gets 404 and re-initializes).
//! [`McpService::close`] (the session's end) cancels the rmcp service (its handlers'
//! cancellation tokens fire; rmcp waits up to 2 s for handlers that ignore them).
//!
//! Limits: rmcp's requests and log messages carry no link to the client request that caused
//! them, so with several calls running at once they go to the newest call's stream (progress is
//! exact: it names its token). A request whose params do not fit the method's shape is taken by
//! rmcp for a custom method and answered `-32601`.
//!
//! # Protocol revisions
//!
//! rmcp negotiates the revision of a 2025 session itself (`initialize` from a 2025-11-25,
//! 2025-06-18 or 2025-03-26 client is answered with that revision), as the transport does.
//!
//! A 2026-07-28 request (no session) gets a fresh rmcp service, served as the stdio bridge
//! serves a 2025 server: the adapter initializes it at 2025-11-25 with the capabilities and
//! client info of the request's `_meta`, and forwards the request without the 2026-07-28
//! `_meta` keys. rmcp speaks 2026-07-28 too, but there it refuses server→client requests; served
//! this way, a tool's `peer.elicit` (or sampling, or roots) ends the round with an
//! `input_required` result through [`RequestContext::ask`](crate::RequestContext::ask), and the
//! client's retry runs the tool again on a fresh service, whose same question (same rmcp request
//! id, the `inputRequests` key) now gets the client's answer. The endpoint builds
//! `server/discover` from rmcp's `initialize` answer (capabilities, server info, instructions).
//! A tool that asks must ask the same questions in the same order on the retry (deterministic
//! handlers do); rmcp's own `InputRequiredResult` is not used.
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
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = McpStack::new(RmcpService::new(Greeter::new))
//!     .endpoint_path("/mcp")
//!     .into_service();
//!
//! // Serve it with hyper or axum like any tower service; here one request, in process.
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//! let initialize = http::Request::post("/mcp")
//!     .header("content-type", "application/json")
//!     .header("accept", "application/json, text/event-stream")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"doc","version":"0"}}}"#,
//!     )))
//!     .unwrap();
//! let response = service.oneshot(initialize).await.unwrap();
//! assert_eq!(response.status(), 200);
//! assert!(response.headers().contains_key("mcp-session-id"));
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert!(String::from_utf8_lossy(&body).contains(r#""protocolVersion":"2025-11-25""#));
//! # }
//! ```

use crate::input::{InputRequest, is_input_required};
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
        let sessionless = cx.protocol_version().is_sessionless();
        std::future::ready(Ok(RmcpServer::start(
            (self.make)(),
            cx.session_closer(),
            sessionless,
        )))
    }
}

/// A client request rmcp is working on.
struct Running {
    rmcp_id: i64,
    client_id: Id,
    progress_token: Option<Value>,
    cx: RequestContext,
    /// Ends the call early with an error (a 2026-07-28 `input_required` round).
    interrupt: mpsc::Sender<ErrorObject>,
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
    /// Serving one 2026-07-28 request: rmcp is initialized at a 2025 revision by the adapter.
    sessionless: bool,
    /// The answer to that `initialize`.
    initialized: tokio::sync::OnceCell<Value>,
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

    /// rmcp is gone (or the session ended): fail every waiter, refuse what comes next. `false`
    /// if it had already ended (waiters that slipped in since are failed all the same).
    fn end(&self) -> bool {
        let first = !self.ended.swap(true, Ordering::AcqRel);
        lock(&self.inbound).take();
        self.fail_waiters();
        first
    }

    fn fail_waiters(&self) {
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
    /// Sent (or dropped) to cancel the rmcp service.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl fmt::Debug for RmcpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RmcpServer")
            .field("ended", &self.shared.ended.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RmcpServer {
    /// Starts `server` on an in-process transport (it then waits for `initialize`). `closer`
    /// ends the session when the service ends by itself; `sessionless`: it serves one
    /// 2026-07-28 request.
    fn start<S: Service<RoleServer>>(
        server: S,
        closer: Option<SessionCloser>,
        sessionless: bool,
    ) -> Self {
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
            sessionless,
            initialized: tokio::sync::OnceCell::new(),
        });
        let transport = Channels {
            rx: in_rx,
            tx: out_tx,
        };
        let (stop_tx, stop) = oneshot::channel();
        let driver = tokio::spawn(drive(Guarded(server), transport, stop));
        tokio::spawn(relay(out_rx, Arc::downgrade(&shared)));
        Self {
            shared,
            driver: Mutex::new(Some(driver)),
            stop: Mutex::new(Some(stop_tx)),
        }
    }
}

/// Runs the rmcp service until it ends by itself or `stop` fires; then cancels it (its handlers'
/// cancellation tokens fire) and waits for it to wind down.
async fn drive<S: Service<RoleServer>>(
    server: S,
    transport: Channels,
    mut stop: oneshot::Receiver<()>,
) {
    let running = tokio::select! {
        started = serve_server(server, transport) => match started {
            Ok(running) => running,
            Err(e) => {
                tracing::debug!(error = %e, "the rmcp service did not start");
                return;
            }
        },
        _ = &mut stop => return,
    };
    let cancel = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        _ = &mut waiting => return,
        _ = &mut stop => cancel.cancel(),
    }
    let _ = waiting.await;
}

impl RmcpServer {
    /// Sends one request to rmcp and waits for its answer.
    async fn call(&self, request: Request, cx: RequestContext) -> Result<Value, ErrorObject> {
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
        let (interrupt, mut interrupted) = mpsc::channel(1);
        lock(&shared.pending).insert(rmcp_id, tx);
        lock(&shared.running).push(Running {
            rmcp_id,
            client_id: request.id,
            progress_token: cx.progress_token().cloned(),
            cx,
            interrupt,
        });
        let mut guard = RunningGuard {
            shared,
            rmcp_id,
            answered: false,
        };
        shared.send(forwarded).await?;
        tokio::select! {
            answer = rx => {
                guard.answered = true;
                answer.unwrap_or_else(|_| Err(ended()))
            }
            // rmcp's call is cancelled when the guard drops.
            Some(error) = interrupted.recv() => Err(error),
        }
    }

    async fn notify_initialized(&self) -> Result<(), ErrorObject> {
        let initialized = Message::notification("notifications/initialized", None);
        self.shared.send(to_rmcp(&initialized)?).await
    }

    /// Initializes rmcp once, at 2025-11-25, with the capabilities and info the 2026-07-28
    /// request's `_meta` declares.
    async fn initialize_for(&self, cx: &RequestContext) -> Result<(), ErrorObject> {
        self.shared
            .initialized
            .get_or_try_init(|| async {
                let params = json!({
                    "protocolVersion": ProtocolVersion::V_2025_11_25.as_str(),
                    "capabilities": cx.client_capabilities().cloned().unwrap_or_else(|| json!({})),
                    "clientInfo": cx.client_info().cloned().unwrap_or_else(
                        || json!({ "name": "mcp-tower-http", "version": env!("CARGO_PKG_VERSION") }),
                    ),
                });
                let init = Request {
                    id: Id::from("mcp-tower-http-initialize"),
                    method: "initialize".into(),
                    params: Some(params),
                };
                let answer = self.call(init, cx.clone()).await?;
                self.notify_initialized().await?;
                Ok(answer)
            })
            .await
            .map(|_| ())
    }
}

/// Removes the 2026-07-28 keys (`io.modelcontextprotocol/...`) from a request's `_meta`: with
/// them rmcp would take the request for a 2026-07-28 one.
fn strip_modern_meta(params: Option<&mut Value>) {
    if let Some(Value::Object(meta)) = params.and_then(|p| p.get_mut("_meta")) {
        meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
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
        if !self.shared.sessionless {
            return self.call(request, cx).await;
        }
        // 2026-07-28: rmcp speaks it too, but refuses server→client requests there. Served as a
        // 2025 session instead, rmcp's requests become `input_required` rounds through
        // `RequestContext::ask`, and the endpoint answers `server/discover` from `initialize`.
        match request.method.as_str() {
            "server/discover" => Err(ErrorObject::method_not_found(&request.method)),
            // The endpoint's own, to describe the server.
            "initialize" => {
                let answer = self.call(request, cx).await?;
                let _ = self.shared.initialized.set(answer.clone());
                self.notify_initialized().await?;
                Ok(answer)
            }
            _ => {
                self.initialize_for(&cx).await?;
                let mut request = request;
                strip_modern_meta(request.params.as_mut());
                self.call(request, cx).await
            }
        }
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
        // Refuse new requests and fail waiting ones now; rmcp's input stays open until it has
        // been cancelled (closing it first would make rmcp wait longer for its handlers).
        self.shared.ended.store(true, Ordering::Release);
        self.shared.fail_waiters();
        lock(&self.shared.standalone).take();
        lock(&self.shared.running).clear();
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
        let driver = lock(&self.driver).take();
        if let Some(mut driver) = driver
            && tokio::time::timeout(CLOSE_GRACE, &mut driver)
                .await
                .is_err()
        {
            tracing::debug!("the rmcp service did not stop in time; aborting it");
            driver.abort();
        }
        self.shared.end();
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
    // rmcp stopped by itself (not through `close`): end the session, so the client re-initializes.
    if let Some(shared) = shared.upgrade()
        && shared.end()
        && let Some(closer) = &shared.closer
    {
        tracing::warn!("the rmcp service has stopped; ending its session");
        closer.close();
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
        // It names a request of rmcp's by rmcp's id, which the client never saw (the client
        // knows the relayed request by the transport's id), and the relay gives up on its
        // requests only when the request it served ends.
        Message::Notification(n) if n.method == "notifications/cancelled" => {}
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
            let asker = lock(&shared.running)
                .last()
                .map(|r| (r.cx.clone(), r.interrupt.clone()));
            let standalone = lock(&shared.standalone).clone();
            let shared = Arc::downgrade(shared);
            tokio::spawn(async move {
                let answer = ask_client(asker, standalone, &request).await;
                let reply = match answer {
                    Ok(result) => Message::result(request.id.clone(), result),
                    Err(error) => Message::error(Some(request.id.clone()), error),
                };
                // An answer rmcp cannot read still ends its wait, as an error.
                let reply = to_rmcp(&reply).or_else(|e| {
                    tracing::warn!(error = %e.message, "rmcp cannot read the client's answer");
                    to_rmcp(&Message::error(Some(request.id), e))
                });
                if let (Some(shared), Ok(reply)) = (shared.upgrade(), reply) {
                    let _ = shared.send(reply).await;
                }
            });
        }
    }
}

/// Asks the client what rmcp asked, on the stream of the request rmcp is working on. In
/// 2026-07-28 the first ask ends that request with an `input_required` round; the retry (a new
/// rmcp service, the same handler, the same question under the same id) finds the answer.
async fn ask_client(
    asker: Option<(RequestContext, mpsc::Sender<ErrorObject>)>,
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
        (Some((cx, interrupt)), Some(input)) => {
            let answer = cx.ask(&format!("rmcp-{}", request.id), input).await;
            if let Err(e) = &answer
                && is_input_required(e)
            {
                let _ = interrupt.try_send(e.clone());
            }
            answer
        }
        (Some((cx, _)), None) => cx.peer().request(&request.method, Some(params)).await,
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

#[cfg(test)]
mod tests {
    use super::*;
    use ::rmcp::ServerHandler;
    use ::rmcp::model::{CallToolRequestParams, CallToolResponse, ServerCapabilities};

    /// A server whose tool never answers.
    struct Stuck;

    impl ServerHandler for Stuck {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }

        async fn call_tool(
            &self,
            _request: CallToolRequestParams,
            _context: RmcpRequestContext<RoleServer>,
        ) -> Result<CallToolResponse, ErrorData> {
            std::future::pending().await
        }
    }

    fn request(id: i64, method: &str, params: Value) -> (Request, RequestContext) {
        let (cx, _stream) = RequestContext::detached(Id::Number(id), None, 16);
        let request = Request {
            id: Id::Number(id),
            method: method.into(),
            params: Some(params),
        };
        (request, cx)
    }

    async fn started() -> Arc<RmcpServer> {
        let server = Arc::new(RmcpServer::start(Stuck, None, false));
        let (init, cx) = request(
            1,
            "initialize",
            json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": { "name": "unit", "version": "0" } }),
        );
        let result = server.handle_request(init, cx).await.unwrap();
        assert_eq!(result["protocolVersion"], "2025-11-25");
        server
    }

    async fn bounded<F: Future>(future: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .expect("no answer within 10 s")
    }

    /// When rmcp dies, a request it was working on fails at once instead of hanging, and so
    /// does every later one.
    #[tokio::test]
    async fn a_dead_service_answers_errors() {
        let server = started().await;
        let (call, cx) = request(2, "tools/call", json!({ "name": "wait", "arguments": {} }));
        let waiting = tokio::spawn({
            let server = server.clone();
            async move { server.handle_request(call, cx).await }
        });
        // Let the call reach rmcp, then kill rmcp's service loop.
        while lock(&server.shared.pending).is_empty() {
            tokio::task::yield_now().await;
        }
        let driver = lock(&server.driver).take().unwrap();
        driver.abort();
        let error = bounded(waiting).await.unwrap().unwrap_err();
        assert_eq!(error.code, ErrorCode::INTERNAL_ERROR);
        let (ping, cx) = request(3, "ping", json!({}));
        let error = bounded(server.handle_request(ping, cx)).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::INTERNAL_ERROR);
    }

    /// `close` stops rmcp (its loop ends, nothing is left running) and fails a waiting call.
    #[tokio::test]
    async fn close_stops_the_service() {
        let server = started().await;
        let (call, cx) = request(2, "tools/call", json!({ "name": "wait", "arguments": {} }));
        let waiting = tokio::spawn({
            let server = server.clone();
            async move { server.handle_request(call, cx).await }
        });
        while lock(&server.shared.pending).is_empty() {
            tokio::task::yield_now().await;
        }
        bounded(server.close()).await;
        assert!(lock(&server.driver).is_none());
        assert!(bounded(waiting).await.unwrap().is_err());
        let (ping, cx) = request(3, "ping", json!({}));
        assert!(server.handle_request(ping, cx).await.is_err());
    }

    /// A request rmcp cannot read as what its method names is an error answer (rmcp takes it
    /// for a custom method: `-32601`), and rmcp goes on serving.
    #[tokio::test]
    async fn unreadable_params_are_an_error() {
        let server = started().await;
        let (call, cx) = request(2, "tools/call", json!({ "name": 7 }));
        let error = bounded(server.handle_request(call, cx)).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::METHOD_NOT_FOUND);
        let (ping, cx) = request(3, "ping", json!({}));
        assert_eq!(
            bounded(server.handle_request(ping, cx)).await.unwrap(),
            json!({})
        );
    }
}
