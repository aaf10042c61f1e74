//! 2026-07-28 requests at the endpoint: `server/discover`, `subscriptions/listen`, result
//! stamping, `input_required` rounds, and the HTTP status of errors.
//!
//! Each request gets a fresh server instance from the [`MakeMcpService`], closed after the
//! answer. The answer is one `application/json` body unless the handler sends a notification
//! first (progress, logs): then the response becomes an SSE stream of that request only. A client
//! that closes that stream cancels the handler. Before anything has been sent, a `-32601` from the
//! handler is answered with HTTP 404 and a `-32021` with 400, as the revision requires.
//!
//! Tasks (see [`crate::tasks`]): unless the server advertises the tasks extension itself (then it
//! answers `tasks/*` on its own), the endpoint advertises it, answers `tasks/*` from its
//! [`TaskRuntime`], and lets `tools/call` handlers become tasks. A handler that does is answered
//! with the `CreateTaskResult` at once (on its stream, if one is open) and goes on in the
//! background until it ends, is cancelled (`tasks/cancel` drops it) or outlives the task's TTL.

use super::{STREAM_CAPACITY, respond};
use crate::error::{TransportError, TransportErrorKind};
use crate::input::{
    INPUT_METHODS, InputRound, StateSealer, binding, is_input_required, retry_answers,
};
use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message, Payload, Request};
use crate::modern::{META_PROTOCOL_VERSION, META_SERVER_INFO, RequestMeta};
use crate::principal::Principal;
use crate::protocol::ProtocolVersion;
use crate::routing_headers::{ToolHeaders, UncheckedParams, check_params};
use crate::service::{
    Context, MakeMcpService, McpService, Peer, RequestContext, Route, SessionContext, Sessionless,
};
use crate::sse::{MessageStream, Outgoing, StreamEvent};
use crate::subscriptions::ListenHub;
use crate::tasks::{LiveTask, TaskHook, TaskRecord, TaskRuntime, Tasks};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Fuse;
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value, json};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{OnceCell, mpsc, oneshot};
use tracing::Instrument;

/// Methods of the 2025 revisions that 2026-07-28 removed: 404 `-32601`.
const REMOVED: [&str; 5] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// Results that carry caching hints (`ttlMs`, `cacheScope`).
const CACHEABLE: [&str; 6] = [
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
];

/// Who may reuse a cacheable result (`cacheScope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheScope {
    /// Only the client that asked (the default).
    Private,
    /// Any client, across tokens: only for results that are the same for everyone.
    Public,
}

impl CacheScope {
    fn as_str(self) -> &'static str {
        match self {
            CacheScope::Private => "private",
            CacheScope::Public => "public",
        }
    }
}

/// The capability a method needs the server to advertise, if any.
fn capability_of(method: &str) -> Option<&'static str> {
    match method.split_once('/').map(|(prefix, _)| prefix) {
        Some("tools") => Some("tools"),
        Some("prompts") => Some("prompts"),
        Some("resources") => Some("resources"),
        Some("completion") => Some("completions"),
        _ => None,
    }
}

/// What `server/discover` answers, learned once from the server.
#[derive(Debug)]
pub(crate) struct Discovery {
    /// The discover result, without the per-response stamps.
    result: Value,
    capabilities: Value,
    server_info: Option<Value>,
    /// The endpoint runs tasks for this server (it does not advertise the extension itself).
    tasks: bool,
}

impl Discovery {
    fn offers(&self, capability: &str) -> bool {
        self.capabilities
            .get(capability)
            .is_some_and(|c| !c.is_null())
    }
}

/// What every 2026-07-28 request of one endpoint shares.
#[derive(Debug)]
pub(crate) struct Shared {
    discovery: OnceCell<Arc<Discovery>>,
    pub(crate) hub: Arc<ListenHub>,
    pub(crate) sealer: StateSealer,
    pub(crate) tools: ToolHeaders,
    pub(crate) ttl_ms: u64,
    pub(crate) cache_scope: CacheScope,
    /// `None`: tasks are off.
    pub(crate) tasks: Option<Arc<TaskRuntime>>,
}

impl Default for Shared {
    fn default() -> Self {
        let hub = Arc::new(ListenHub::default());
        Self {
            discovery: OnceCell::new(),
            tasks: Some(Arc::new(TaskRuntime::new(Tasks::default(), hub.clone()))),
            hub,
            sealer: StateSealer::default(),
            tools: ToolHeaders::new(),
            ttl_ms: 0,
            cache_scope: CacheScope::Private,
        }
    }
}

impl Shared {
    /// A copy with the same settings and a fresh discovery cache (for builder methods).
    pub(crate) fn rebuilt(&self, change: impl FnOnce(&mut Self)) -> Self {
        let mut next = Self {
            discovery: OnceCell::new(),
            hub: self.hub.clone(),
            sealer: self.sealer.clone(),
            tools: self.tools.clone(),
            ttl_ms: self.ttl_ms,
            cache_scope: self.cache_scope,
            tasks: self.tasks.clone(),
        };
        change(&mut next);
        // Task notifications go to the (possibly new) hub.
        next.tasks = next
            .tasks
            .take()
            .map(|tasks| Arc::new(tasks.rehomed(next.hub.clone())));
        next
    }

    async fn discovery<M: MakeMcpService>(
        &self,
        make: &M,
        parts: &http::request::Parts,
    ) -> Result<Arc<Discovery>, ErrorObject> {
        self.discovery
            .get_or_try_init(|| async {
                let mut discovery = discover(make, parts, &self.tools).await?;
                if self.tasks.is_some() {
                    offer_tasks(&mut discovery);
                }
                Ok(Arc::new(discovery))
            })
            .await
            .cloned()
    }

    /// Adds `resultType`, `serverInfo` and, on cacheable methods, the caching hints, unless the
    /// server set them itself.
    fn stamp(&self, method: &str, result: &mut Value, discovery: &Discovery) {
        let Value::Object(map) = result else {
            return;
        };
        map.entry("resultType").or_insert_with(|| "complete".into());
        if let Some(info) = &discovery.server_info {
            let meta = map
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                meta.entry(META_SERVER_INFO).or_insert_with(|| info.clone());
            }
        }
        if CACHEABLE.contains(&method) {
            map.entry("ttlMs").or_insert_with(|| self.ttl_ms.into());
            map.entry("cacheScope")
                .or_insert_with(|| self.cache_scope.as_str().into());
        }
    }
}

/// Advertises the tasks extension the endpoint runs, unless the server advertises it itself
/// (then the server answers `tasks/*`).
fn offer_tasks(discovery: &mut Discovery) {
    if crate::tasks::declared(&discovery.capabilities) {
        return;
    }
    let advertise = |capabilities: &mut Value| {
        if !capabilities.is_object() {
            *capabilities = json!({});
        }
        let extensions = &mut capabilities["extensions"];
        if !extensions.is_object() {
            *extensions = json!({});
        }
        extensions[crate::tasks::EXTENSION_ID] = json!({});
    };
    advertise(&mut discovery.capabilities);
    if let Value::Object(result) = &mut discovery.result {
        advertise(result.entry("capabilities").or_insert_with(|| json!({})));
    }
    discovery.tasks = true;
}

/// Builds the discover result: the server's own answer to `server/discover`, or else one made
/// from its `initialize` answer (a 2025 server: capabilities, server info, instructions). Also
/// learns the tools' routing-header annotations.
async fn discover<M: MakeMcpService>(
    make: &M,
    parts: &http::request::Parts,
    tools: &ToolHeaders,
) -> Result<Discovery, ErrorObject> {
    let cx = SessionContext {
        session: None,
        parts,
        protocol_version: ProtocolVersion::V2026_07_28,
    };
    let service = make.make_service(&cx).await?;
    let outcome = discover_with(&service, tools).await;
    service.close().await;
    outcome
}

async fn ask_service<S: McpService>(
    service: &S,
    method: &str,
    params: Value,
) -> Result<Value, ErrorObject> {
    let id = Id::from("mcp-tower-http-discover");
    let (cx, _stream) = RequestContext::detached(id.clone(), None, STREAM_CAPACITY);
    let request = Request {
        id,
        method: method.into(),
        params: Some(params),
    };
    match AssertUnwindSafe(service.handle_request(request, cx))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(_) => Err(ErrorObject::internal()),
    }
}

async fn discover_with<S: McpService>(
    service: &S,
    tools: &ToolHeaders,
) -> Result<Discovery, ErrorObject> {
    let supported: Vec<&str> = ProtocolVersion::SESSIONLESS
        .map(ProtocolVersion::as_str)
        .into();
    let meta = json!({ "_meta": {
        META_PROTOCOL_VERSION: ProtocolVersion::V2026_07_28.as_str(),
        "io.modelcontextprotocol/clientCapabilities": {},
    }});
    let mut result = match ask_service(service, "server/discover", meta).await {
        Ok(result) => result,
        Err(e) if e.code == ErrorCode::METHOD_NOT_FOUND => {
            let init = ask_service(
                service,
                "initialize",
                json!({
                    "protocolVersion": ProtocolVersion::LATEST.as_str(),
                    "capabilities": {},
                    "clientInfo": { "name": "mcp-tower-http", "version": env!("CARGO_PKG_VERSION") },
                }),
            )
            .await?;
            let mut discover = json!({
                "supportedVersions": supported,
                "capabilities": init.get("capabilities").cloned().unwrap_or_else(|| json!({})),
            });
            if let Some(instructions) = init.get("instructions").filter(|i| i.is_string()) {
                discover["instructions"] = instructions.clone();
            }
            if let Some(info) = init.get("serverInfo") {
                discover["_meta"] = json!({ META_SERVER_INFO: info });
            }
            discover
        }
        Err(e) => return Err(e),
    };
    if let Value::Object(map) = &mut result {
        // Stamped per response.
        map.remove("resultType");
        map.remove("ttlMs");
        map.remove("cacheScope");
    }
    let capabilities = result
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let server_info = result
        .get("_meta")
        .and_then(|m| m.get(META_SERVER_INFO))
        .cloned();
    if capabilities.get("tools").is_some_and(|t| !t.is_null())
        && let Ok(list) = ask_service(service, "tools/list", json!({})).await
    {
        tools.learn_tools_list(&list);
    }
    Ok(Discovery {
        result,
        capabilities,
        server_info,
        tasks: false,
    })
}

/// The answer to a request, before it is framed.
enum Answer {
    Message(Message),
    /// An error that 2026-07-28 answers with an HTTP status of its own (while it still can).
    Reject(TransportError),
}

impl Answer {
    fn into_message(self) -> Message {
        match self {
            Answer::Message(message) => message,
            Answer::Reject(e) => e.to_message(),
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        match self {
            Answer::Message(message) => respond(StatusCode::OK, Some(Outgoing::One(message))),
            Answer::Reject(e) => e.into_response(),
        }
    }
}

fn in_band(id: Id, error: ErrorObject) -> Response<Full<Bytes>> {
    respond(
        StatusCode::OK,
        Some(Outgoing::One(Message::error(Some(id), error))),
    )
}

fn reject(kind: TransportErrorKind, id: &Id, error: ErrorObject) -> Response<Full<Bytes>> {
    TransportError::from_error_object(kind, error)
        .with_id(Some(id.clone()))
        .into_response()
}

/// Answers one 2026-07-28 POST.
pub(super) async fn run<M: MakeMcpService>(
    make: Arc<M>,
    shared: Arc<Shared>,
    mut parts: http::request::Parts,
    payload: Payload,
    meta: Arc<RequestMeta>,
) -> Response<Full<Bytes>> {
    // Notifications (a stray `notifications/cancelled` included) have nothing to act on without
    // a session: accepted and ignored.
    let Payload::Single(Message::Request(request)) = payload else {
        return respond(StatusCode::ACCEPTED, None);
    };
    let id = request.id.clone();
    let method = request.method.clone();
    if REMOVED.contains(&method.as_str()) {
        return reject(
            TransportErrorKind::MethodNotFound,
            &id,
            ErrorObject::method_not_found(&method)
                .with_data(json!({ "reason": "not part of protocol 2026-07-28" })),
        );
    }
    let discovery = match shared.discovery(&*make, &parts).await {
        Ok(discovery) => discovery,
        Err(e) => {
            tracing::warn!(error = %e, "server/discover: the server could not describe itself");
            return in_band(id, e);
        }
    };
    // The routing layer could not check `Mcp-Param-*` of a tool it had not learned yet;
    // describing the server has taught the table the tools, so check them now.
    if parts.extensions.get::<UncheckedParams>().is_some()
        && let Err(e) = check_params(&parts.headers, &request, &shared.tools)
    {
        return e.with_id(Some(id)).into_response();
    }
    let principal = parts
        .extensions
        .get::<Principal>()
        .map(|p| p.subject.clone());
    match method.as_str() {
        "server/discover" => {
            let mut result = discovery.result.clone();
            shared.stamp(&method, &mut result, &discovery);
            return respond(
                StatusCode::OK,
                Some(Outgoing::One(Message::result(id, result))),
            );
        }
        "subscriptions/listen" => {
            let requested = request.params.as_ref().and_then(|p| p.get("notifications"));
            let wants_tasks = requested
                .and_then(|r| r.get("taskIds"))
                .and_then(Value::as_array)
                .is_some_and(|ids| !ids.is_empty());
            if wants_tasks
                && crate::tasks::declared(&discovery.capabilities)
                && !crate::tasks::declared(&meta.client_capabilities)
            {
                let e = crate::tasks::tasks_required();
                return reject(TransportErrorKind::MissingCapability, &id, e);
            }
            return match shared
                .hub
                .open(principal, &id, requested, &discovery.capabilities)
            {
                Ok(rx) => respond(
                    StatusCode::OK,
                    Some(Outgoing::Stream(MessageStream::new(rx))),
                ),
                Err(_) => in_band(
                    id,
                    ErrorObject::new(
                        ErrorCode::INTERNAL_ERROR,
                        "too many open subscriptions/listen streams",
                    ),
                ),
            };
        }
        _ => {}
    }
    if discovery.tasks
        && let Some(runtime) = &shared.tasks
        && let Some(answer) = task_method(
            &shared,
            &discovery,
            runtime,
            &meta,
            principal.as_deref(),
            &request,
        )
        .await
    {
        return answer;
    }
    if let Some(capability) = capability_of(&method)
        && !discovery.offers(capability)
    {
        return reject(
            TransportErrorKind::MethodNotFound,
            &id,
            ErrorObject::method_not_found(&method)
                .with_data(json!({ "reason": format!("the server does not offer {capability}") })),
        );
    }
    let round = if INPUT_METHODS.contains(&method.as_str()) {
        let aad = binding(principal.as_deref(), &method, request.params.as_ref());
        match retry_answers(&shared.sealer, &aad, request.params.as_ref()) {
            Ok(answers) => Some(InputRound::new(aad, answers.unwrap_or_default())),
            Err(e) => return in_band(id, e),
        }
    } else {
        None
    };
    let cx = SessionContext {
        session: None,
        parts: &parts,
        protocol_version: meta.protocol_version,
    };
    let service = match make.make_service(&cx).await {
        Ok(service) => Arc::new(service),
        Err(e) => return in_band(id, e),
    };

    // A `tools/call` handler may become a task: it signals the runtime's task on this channel.
    let runtime = shared
        .tasks
        .clone()
        .filter(|_| discovery.tasks && method == "tools/call");
    let (signal_tx, signal_rx) = oneshot::channel();
    match &runtime {
        Some(runtime) => {
            let accepts = crate::tasks::declared(&meta.client_capabilities);
            let owner = principal.as_deref().map(str::to_owned);
            let hook = TaskHook::new(runtime.clone(), accepts, owner, signal_tx);
            parts.extensions.insert(Arc::new(hook));
        }
        None => drop(signal_tx),
    }
    let mut signal = signal_rx.fuse();

    let (tx, mut rx) = mpsc::channel(STREAM_CAPACITY);
    let peer = Peer::sessionless(
        Route::Stream(tx),
        Arc::new(Sessionless {
            hub: shared.hub.clone(),
            principal: principal.clone(),
            log_level: meta.log_level,
        }),
    );
    let progress_token = crate::jsonrpc::progress_token(request.params.as_ref()).cloned();
    let cx = RequestContext {
        id: id.clone(),
        progress_token,
        common: Context::new(
            None,
            meta.protocol_version,
            Arc::new(parts.extensions),
            peer,
        ),
        input: round.clone(),
    };
    let handling = {
        let service = service.clone();
        let id = id.clone();
        async move {
            AssertUnwindSafe(Box::pin(service.handle_request(request, cx)))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    tracing::error!(request = %id, "MCP handler panicked");
                    Err(ErrorObject::internal())
                })
        }
    };
    let finish = {
        let (shared, discovery, id) = (shared.clone(), discovery.clone(), id.clone());
        move |outcome| conclude(&shared, &discovery, &method, id, round, outcome)
    };
    let created = {
        let (shared, discovery, id) = (shared.clone(), discovery.clone(), id.clone());
        move |record: TaskRecord| {
            let mut result = record.to_create_result();
            shared.stamp("tools/call", &mut result, &discovery);
            Message::result(id, result)
        }
    };
    let mut handling = Box::pin(handling);
    tokio::select! {
        biased;
        Ok(task) = &mut signal => {
            let answer = created(task.snapshot().await);
            let events = drain(&mut rx);
            drop(rx);
            tokio::spawn(run_task(handling, task, runtime, service).in_current_span());
            answer_with(events, answer)
        }
        outcome = &mut handling => {
            service.close().await;
            // Notifications sent before the answer go first, on a stream.
            let events = drain(&mut rx);
            // It became a task and ended within one poll: the task has the outcome.
            if let Some(task) = announced(&mut signal) {
                settle(&task, outcome, runtime.as_deref()).await;
                return answer_with(events, created(task.snapshot().await));
            }
            let answer = finish(outcome);
            if events.is_empty() {
                return answer.into_response();
            }
            answer_with(events, answer.into_message())
        }
        Some(first) = rx.recv() => {
            let (out, out_rx) = mpsc::channel(STREAM_CAPACITY);
            let _ = out.try_send(first);
            tokio::spawn(async move {
                let (rt, signal) = (runtime.as_deref(), &mut signal);
                let task = stream(&mut handling, rx, &out, finish, signal, created, rt).await;
                drop(out);
                if let Some(task) = task {
                    return run_task(handling, task, runtime, service).await;
                }
                // A task its client left before hearing of it ends with the handler.
                if let Some(task) = announced(signal) {
                    let e = ErrorObject::new(ErrorCode::INTERNAL_ERROR, "the client left");
                    settle(&task, Err(e), runtime.as_deref()).await;
                }
                service.close().await;
            }.in_current_span());
            respond(StatusCode::OK, Some(Outgoing::Stream(MessageStream::new(out_rx))))
        }
    }
}

/// The task the handler became, if it signalled one that was not taken yet.
fn announced(signal: &mut Fuse<oneshot::Receiver<Arc<LiveTask>>>) -> Option<Arc<LiveTask>> {
    signal.now_or_never().and_then(Result::ok)
}

/// Records a task handler's outcome and forgets the running task.
async fn settle(
    task: &LiveTask,
    outcome: Result<Value, ErrorObject>,
    runtime: Option<&TaskRuntime>,
) {
    let outcome = match outcome {
        // `ask` inside a task waits for `tasks/update` instead of ending a round.
        Err(e) if is_input_required(&e) => Err(ErrorObject::internal()),
        outcome => outcome,
    };
    task.finish(outcome).await;
    if let Some(runtime) = runtime {
        runtime.finished(task.task_id());
    }
}

/// The messages a handler has queued so far.
fn drain(rx: &mut mpsc::Receiver<StreamEvent>) -> Vec<Message> {
    let mut events = Vec::new();
    while let Ok(StreamEvent::Message(message)) = rx.try_recv() {
        events.push(message);
    }
    events
}

/// The answer, after the notifications sent before it (then on a stream).
fn answer_with(mut events: Vec<Message>, answer: Message) -> Response<Full<Bytes>> {
    if events.is_empty() {
        return respond(StatusCode::OK, Some(Outgoing::One(answer)));
    }
    events.push(answer);
    respond(StatusCode::OK, Some(Outgoing::Batch(events)))
}

/// `tasks/*` on an endpoint that runs tasks (see [`crate::tasks`]); `None` for other methods.
async fn task_method(
    shared: &Shared,
    discovery: &Discovery,
    runtime: &TaskRuntime,
    meta: &RequestMeta,
    principal: Option<&str>,
    request: &Request,
) -> Option<Response<Full<Bytes>>> {
    let (id, method) = (&request.id, request.method.as_str());
    match method {
        "tasks/get" | "tasks/update" | "tasks/cancel" => {}
        "tasks/result" | "tasks/list" => {
            let reason = json!({ "reason": "removed by the tasks extension" });
            let e = ErrorObject::method_not_found(method).with_data(reason);
            return Some(reject(TransportErrorKind::MethodNotFound, id, e));
        }
        _ => return None,
    }
    if !crate::tasks::declared(&meta.client_capabilities) {
        let e = crate::tasks::tasks_required();
        return Some(reject(TransportErrorKind::MissingCapability, id, e));
    }
    let params = request.params.as_ref();
    let Some(task_id) = params.and_then(|p| p.get("taskId")).and_then(Value::as_str) else {
        return Some(in_band(
            id.clone(),
            ErrorObject::invalid_params("taskId must be a string"),
        ));
    };
    // Unknown and another principal's tasks look alike.
    let unknown = || ErrorObject::invalid_params(format!("Unknown task: {task_id}"));
    let ack = |found: bool| if found { Ok(json!({})) } else { Err(unknown()) };
    let outcome = match method {
        "tasks/get" => match runtime.get(task_id, principal).await {
            Ok(Some(task)) => Ok(task.to_detailed()),
            Ok(None) => Err(unknown()),
            Err(e) => Err(e),
        },
        "tasks/update" => match params.and_then(|p| p.get("inputResponses")) {
            Some(Value::Object(responses)) => runtime
                .update(task_id, principal, responses)
                .await
                .and_then(ack),
            _ => Err(ErrorObject::invalid_params(
                "inputResponses must be an object keyed by input request",
            )),
        },
        _ => runtime.cancel(task_id, principal).await.and_then(ack),
    };
    Some(match outcome {
        Ok(mut result) => {
            shared.stamp(method, &mut result, discovery);
            respond(
                StatusCode::OK,
                Some(Outgoing::One(Message::result(id.clone(), result))),
            )
        }
        Err(e) => in_band(id.clone(), e),
    })
}

/// Drives a handler that became a task to its end: its outcome is the task's, a `tasks/cancel`
/// drops it, and so does the end of the task's TTL (`failed`).
async fn run_task<S: McpService>(
    handling: Pin<Box<impl Future<Output = Result<Value, ErrorObject>>>>,
    task: Arc<LiveTask>,
    runtime: Option<Arc<TaskRuntime>>,
    service: Arc<S>,
) {
    let remaining = task.remaining().await;
    tokio::select! {
        biased;
        () = task.cancelled() => {
            tracing::debug!(task = %task.task_id(), "task cancelled: its handler is dropped");
        }
        // The running task is forgotten below, after the server is closed.
        outcome = handling => settle(&task, outcome, None).await,
        () = tokio::time::sleep(remaining) => {
            let e = ErrorObject::new(ErrorCode::INTERNAL_ERROR, "the task outlived its ttlMs");
            task.finish(Err(e)).await;
        }
    }
    service.close().await;
    if let Some(runtime) = runtime {
        runtime.finished(task.task_id());
    }
}

/// Forwards a handler's messages and then its answer to the client's stream. Returns early (and
/// so drops the handler: it is cancelled) when the client closes the stream, and with the task
/// when the handler becomes one (its `CreateTaskResult` is the stream's last message).
async fn stream<F>(
    handling: &mut Pin<Box<F>>,
    mut rx: mpsc::Receiver<StreamEvent>,
    out: &mpsc::Sender<StreamEvent>,
    finish: impl FnOnce(Result<Value, ErrorObject>) -> Answer,
    signal: &mut Fuse<oneshot::Receiver<Arc<LiveTask>>>,
    created: impl FnOnce(TaskRecord) -> Message,
    runtime: Option<&TaskRuntime>,
) -> Option<Arc<LiveTask>>
where
    F: Future<Output = Result<Value, ErrorObject>>,
{
    let outcome = loop {
        tokio::select! {
            biased;
            Ok(task) = &mut *signal => {
                let answer = created(task.snapshot().await);
                let _ = out.send(StreamEvent::Message(answer)).await;
                return Some(task);
            }
            event = rx.recv() => match event {
                Some(event) => {
                    if out.send(event).await.is_err() {
                        return None;
                    }
                }
                None => break (&mut *handling).await,
            },
            outcome = &mut *handling => {
                while let Ok(event) = rx.try_recv() {
                    if out.send(event).await.is_err() {
                        return None;
                    }
                }
                break outcome;
            }
            () = out.closed() => {
                tracing::debug!("client closed its stream: request cancelled");
                return None;
            }
        }
    };
    // It became a task and ended within one poll: the task has the outcome.
    if let Some(task) = announced(signal) {
        settle(&task, outcome, runtime).await;
        let _ = out
            .send(StreamEvent::Message(created(task.snapshot().await)))
            .await;
        return None;
    }
    let answer = finish(outcome).into_message();
    // The stream runs in the request's span (see `run`).
    crate::trace::record_answer(&tracing::Span::current(), &answer);
    let _ = out.send(StreamEvent::Message(answer)).await;
    None
}

/// Turns a handler's outcome into the answer: a stamped result, an `input_required` result with
/// its sealed state, or an error (HTTP 404 for `-32601`, 400 for `-32021`).
fn conclude(
    shared: &Shared,
    discovery: &Discovery,
    method: &str,
    id: Id,
    round: Option<Arc<InputRound>>,
    outcome: Result<Value, ErrorObject>,
) -> Answer {
    match outcome {
        Ok(mut result) => {
            shared.stamp(method, &mut result, discovery);
            if method == "tools/list" {
                shared.tools.learn_tools_list(&result);
            }
            Answer::Message(Message::result(id, result))
        }
        Err(e) if is_input_required(&e) => {
            let pending = round
                .as_ref()
                .map(|r| std::mem::take(&mut *crate::sync::lock(&r.pending)))
                .unwrap_or_default();
            let (Some(round), false) = (round, pending.is_empty()) else {
                tracing::error!(%method, "input requested outside tools/call, prompts/get or resources/read");
                return Answer::Message(Message::error(Some(id), ErrorObject::internal()));
            };
            let mut requests = Map::new();
            for (key, request) in &pending {
                requests.insert(key.clone(), request.to_value());
            }
            let state = shared.sealer.seal(&round.binding, &round.answers);
            let mut result = json!({
                "resultType": "input_required",
                "inputRequests": requests,
                "requestState": state,
            });
            shared.stamp(method, &mut result, discovery);
            Answer::Message(Message::result(id, result))
        }
        Err(e) if e.code == ErrorCode::METHOD_NOT_FOUND => Answer::Reject(
            TransportError::from_error_object(TransportErrorKind::MethodNotFound, e)
                .with_id(Some(id)),
        ),
        Err(e) if e.code == ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY => Answer::Reject(
            TransportError::from_error_object(TransportErrorKind::MissingCapability, e)
                .with_id(Some(id)),
        ),
        Err(e) => Answer::Message(Message::error(Some(id), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_of_methods() {
        assert_eq!(capability_of("tools/call"), Some("tools"));
        assert_eq!(capability_of("resources/templates/list"), Some("resources"));
        assert_eq!(capability_of("completion/complete"), Some("completions"));
        assert_eq!(capability_of("server/discover"), None);
        assert_eq!(capability_of("weird"), None);
    }

    #[test]
    fn stamps_fill_only_what_is_missing() {
        let shared = Shared::default();
        let discovery = Discovery {
            result: json!({}),
            capabilities: json!({}),
            server_info: Some(json!({"name": "s", "version": "1"})),
            tasks: false,
        };
        let mut result = json!({"tools": [], "ttlMs": 5});
        shared.stamp("tools/list", &mut result, &discovery);
        assert_eq!(result["resultType"], "complete");
        assert_eq!(result["ttlMs"], 5);
        assert_eq!(result["cacheScope"], "private");
        assert_eq!(result["_meta"][META_SERVER_INFO]["name"], "s");
        let mut call = json!({"content": []});
        shared.stamp("tools/call", &mut call, &discovery);
        assert!(call.get("ttlMs").is_none());
    }
}
