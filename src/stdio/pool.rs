//! 2026-07-28 requests through stdio children: a pool of initialized children, one request per
//! child at a time. See the [module docs](super#2026-07-28-clients-and-a-2025-child).

use super::{Shared, StdioCommand, StdioServer, exited};
use crate::input::{DEFAULT_STATE_TTL, InputRequest, META_INPUT_KEY, is_input_required};
use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message, Notification, Request};
use crate::modern::{
    META_CLIENT_CAPABILITIES, META_CLIENT_INFO, META_LOG_LEVEL, META_PROTOCOL_VERSION, RequestMeta,
};
use crate::protocol::{LogLevel, ProtocolVersion};
use crate::service::{McpService, NotificationContext, RequestContext, SessionContext};
use crate::sync::lock;
use bytes::BytesMut;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

/// The default bound on pooled children, across principals.
pub const DEFAULT_MAX_POOLED: usize = 16;

/// How long a pooled child may stay idle before it is closed, by default.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a child's input request (sampling, elicitation, roots) waits for the client to
/// retry with its answer, by default: as long as the sealed `requestState` of the round lives.
pub const DEFAULT_INPUT_TIMEOUT: Duration = DEFAULT_STATE_TTL;

/// How long a request waits for a free child when the pool is full, by default.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(30);

/// The bound on starting a child and its `initialize` handshake.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The bound on a `logging/setLevel` the pool sends a child.
const SET_LEVEL_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages of a leased child (its requests, progress, logs) queued for the call it works on.
const INBOX_CAPACITY: usize = 64;

/// A child's requests that follow one another within this gap are asked in one round...
const GATHER_GAP: Duration = Duration::from_millis(5);

/// ...for at most this long.
const GATHER_MAX: Duration = Duration::from_millis(50);

/// The pool settings of a [`StdioCommand`], and the pool its clones share once started.
#[derive(Clone, Debug)]
pub(super) struct PoolConfig {
    max: usize,
    idle_timeout: Duration,
    input_timeout: Duration,
    wait: Duration,
    cell: Arc<OnceLock<Arc<Pool>>>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max: DEFAULT_MAX_POOLED,
            idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            input_timeout: DEFAULT_INPUT_TIMEOUT,
            wait: DEFAULT_POOL_WAIT,
            cell: Arc::default(),
        }
    }
}

impl PoolConfig {
    /// A changed setting belongs to a pool of its own.
    fn changed(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self.cell = Arc::default();
        self
    }
}

impl StdioCommand {
    /// 2026-07-28: at most `max` pooled children alive at once, across principals (default
    /// [`DEFAULT_MAX_POOLED`]; at least 1). Sessions of the 2025 revisions have their own
    /// children, outside this bound. Clones share one pool: configure before cloning.
    pub fn max_pooled(mut self, max: usize) -> Self {
        self.pool = self.pool.changed(|p| p.max = max.max(1));
        self
    }

    /// 2026-07-28: how long a pooled child may stay idle before it is closed (default
    /// [`DEFAULT_POOL_IDLE_TIMEOUT`]).
    pub fn pool_idle_timeout(mut self, idle: Duration) -> Self {
        self.pool = self.pool.changed(|p| p.idle_timeout = idle);
        self
    }

    /// 2026-07-28: how long a child's sampling, elicitation or roots request waits for the
    /// client to retry with its answer (default [`DEFAULT_INPUT_TIMEOUT`]). Then the child's
    /// request gets an error, the call is cancelled at the child and the child is free again.
    pub fn input_timeout(mut self, timeout: Duration) -> Self {
        self.pool = self.pool.changed(|p| p.input_timeout = timeout);
        self
    }

    /// 2026-07-28: how long a request waits for a free child when [`max_pooled`](Self::max_pooled)
    /// children are busy (default [`DEFAULT_POOL_WAIT`]); then it fails with `-32000`.
    pub fn pool_wait(mut self, wait: Duration) -> Self {
        self.pool = self.pool.changed(|p| p.wait = wait);
        self
    }

    /// A handle to the pool of children serving 2026-07-28 requests (to watch it, and to close
    /// it at shutdown).
    pub fn pool(&self) -> StdioPool {
        StdioPool {
            cell: self.pool.cell.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// A handle to a [`StdioCommand`]'s pool of 2026-07-28 children; see the
/// [module docs](super#2026-07-28-clients-and-a-2025-child). Before the first 2026-07-28
/// request there is no pool: counts are 0 and closing does nothing.
#[derive(Clone, Debug)]
pub struct StdioPool {
    cell: Arc<OnceLock<Arc<Pool>>>,
    stats: super::StdioStats,
}

impl StdioPool {
    /// The counts of every child of its command, the sessions' included (the same as
    /// [`StdioCommand::stats`](super::StdioCommand::stats)).
    pub fn stats(&self) -> super::StdioStats {
        self.stats.clone()
    }

    /// Children alive: idle, working, starting or closing.
    pub fn children(&self) -> usize {
        self.cell.get().map_or(0, |p| lock(&p.state).live)
    }

    /// Idle children.
    pub fn idle(&self) -> usize {
        self.cell.get().map_or(0, |p| lock(&p.state).idle.len())
    }

    /// Calls waiting for a client to retry with the answers to their children's requests.
    pub fn waiting_for_input(&self) -> usize {
        self.cell.get().map_or(0, |p| lock(&p.parked).len())
    }

    /// Closes the pool: no new leases; idle children and those of waiting calls are closed
    /// (stdin EOF, SIGTERM, SIGKILL, as for a session's child), working ones when their request
    /// ends. Returns once every child has exited.
    pub async fn close(&self) {
        if let Some(pool) = self.cell.get() {
            pool.close().await;
        }
    }
}

/// What a pooled child is for: one principal, and the input capabilities its `initialize`
/// declared (those of the clients it serves, so it asks only for what they can answer).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Key {
    principal: Option<Arc<str>>,
    /// The `sampling`, `elicitation` and `roots` the clients declared, as a JSON object.
    capabilities: Arc<str>,
}

impl Key {
    fn new(principal: Option<Arc<str>>, meta: Option<&RequestMeta>) -> Self {
        let mut declared = Map::new();
        if let Some(meta) = meta {
            for name in ["sampling", "elicitation", "roots"] {
                if let Some(capability) = meta.client_capabilities.get(name)
                    && !capability.is_null()
                {
                    // A 2026-07-28 client has no way to send roots/list_changed.
                    let capability = if name == "roots" {
                        json!({})
                    } else {
                        capability.clone()
                    };
                    declared.insert(name.into(), capability);
                }
            }
        }
        Self {
            principal,
            capabilities: Value::Object(declared).to_string().into(),
        }
    }
}

/// The 2026-07-28 server of one request: a handle to the pool. Cheap to make.
pub struct PooledServer {
    pool: Arc<Pool>,
    key: Key,
}

impl std::fmt::Debug for PooledServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledServer")
            .field("principal", &self.key.principal)
            .field("capabilities", &self.key.capabilities)
            .finish_non_exhaustive()
    }
}

/// The handle for one 2026-07-28 request (the pool starts with the first one).
pub(super) fn handle(command: &StdioCommand, cx: &SessionContext<'_>) -> PooledServer {
    let pool = command.pool.cell.get_or_init(|| Pool::new(command)).clone();
    let principal = cx.principal().map(|p| p.subject.clone());
    let meta = cx
        .request_parts()
        .extensions
        .get::<Arc<RequestMeta>>()
        .map(Arc::as_ref);
    PooledServer {
        pool,
        key: Key::new(principal, meta),
    }
}

/// What [`StdioCommand`] serves with: a 2025 session's own child, or a 2026-07-28 request's
/// handle to the pool.
#[derive(Debug)]
pub enum StdioService {
    /// A session's child (2025 revisions, and stateless 2025 requests).
    Session(StdioServer),
    /// A 2026-07-28 request, served by a pooled child.
    Pooled(PooledServer),
}

impl McpService for StdioService {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        match self {
            StdioService::Session(server) => server.handle_request(request, cx).await,
            StdioService::Pooled(server) => server.handle(request, &cx).await,
        }
    }

    async fn handle_notification(&self, notification: Notification, cx: NotificationContext) {
        // 2026-07-28 notifications never reach a server (the endpoint accepts and drops them).
        if let StdioService::Session(server) = self {
            server.handle_notification(notification, cx).await;
        }
    }

    async fn close(&self) {
        // A pooled child outlives the request; the pool closes it.
        if let StdioService::Session(server) = self {
            server.close().await;
        }
    }
}

impl PooledServer {
    async fn handle(&self, request: Request, cx: &RequestContext) -> Result<Value, ErrorObject> {
        let pool = &self.pool;
        match request.method.as_str() {
            // The endpoint describes the server from its `initialize` answer.
            "initialize" => return pool.initialize_result(&self.key).await,
            "server/discover" => return pool.discover(&self.key, request, cx).await,
            _ => {}
        }
        // A retry answering a waiting call continues it, on the child that holds it.
        if let Some(round) = cx.input.as_deref()
            && let Some(found) = pool.unpark(&round.answers, &round.binding)
        {
            let mut call = found?;
            call.deliver(&round.answers).await;
            let owed = !call.waiting.is_empty();
            return call.drive(cx, owed).await;
        }
        let lease = pool.acquire(&self.key).await?;
        let legacy = !pool.passthrough.load(Ordering::Acquire);
        Call::start(lease, request, cx, legacy)
            .await?
            .drive(cx, false)
            .await
    }
}

/// A child alive in the pool, idle or leased.
struct Pooled {
    server: StdioServer,
    key: Key,
    idle_since: Instant,
    /// The child offers `logging` (its `initialize` answer says so).
    logging: bool,
    /// The level last set with `logging/setLevel`.
    log_level: Option<LogLevel>,
    _slot: Slot,
}

impl Pooled {
    fn shared(&self) -> &Arc<Shared> {
        &self.server.shared
    }

    fn exited(&self) -> bool {
        self.shared().exited.load(Ordering::Acquire)
    }
}

/// One child's place under the pool's bound, given back when the child is gone.
struct Slot(Weak<Pool>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(pool) = self.0.upgrade() {
            {
                let mut state = lock(&pool.state);
                state.live = state.live.saturating_sub(1);
            }
            pool.changed.notify_waiters();
        }
    }
}

#[derive(Default)]
struct State {
    idle: Vec<Pooled>,
    /// Children alive (idle, leased, starting or closing): never more than the bound.
    live: usize,
    closed: bool,
}

/// A call waiting for the client's retry.
struct Parked {
    call: Call,
    deadline: Instant,
}

/// The pooled children of one [`StdioCommand`].
pub(super) struct Pool {
    /// The command as it was when the pool started (its own pool cell unused).
    command: StdioCommand,
    max: usize,
    idle_timeout: Duration,
    input_timeout: Duration,
    wait: Duration,
    state: Mutex<State>,
    /// A child was freed, started, closed, or the pool closed.
    changed: Notify,
    /// Calls waiting for the client's retry, by their park id; at most one per child.
    parked: Mutex<HashMap<u128, Parked>>,
    /// The first `initialize` answer of a child: the endpoint's `server/discover` is built
    /// from it.
    initialized: OnceLock<Value>,
    /// A child answered `server/discover`: it speaks 2026-07-28 and gets requests unchanged.
    passthrough: AtomicBool,
    started: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max", &self.max)
            .field("live", &lock(&self.state).live)
            .finish_non_exhaustive()
    }
}

impl Pool {
    fn new(command: &StdioCommand) -> Arc<Self> {
        let config = command.pool.clone();
        let mut snapshot = command.clone();
        // The snapshot must not hold the cell that holds this pool.
        snapshot.pool.cell = Arc::default();
        let pool = Arc::new(Self {
            command: snapshot,
            max: config.max,
            idle_timeout: config.idle_timeout,
            input_timeout: config.input_timeout,
            wait: config.wait,
            state: Mutex::default(),
            changed: Notify::new(),
            parked: Mutex::default(),
            initialized: OnceLock::new(),
            passthrough: AtomicBool::new(false),
            started: AtomicU64::new(1),
        });
        let every = (config.idle_timeout.min(config.input_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(maintain(Arc::downgrade(&pool), every));
        }
        pool
    }

    /// A lease on an idle child of `key`, a new child if the bound allows, or the next one
    /// freed within the pool's wait.
    async fn acquire(self: &Arc<Self>, key: &Key) -> Result<Lease, ErrorObject> {
        let deadline = Instant::now() + self.wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (found, exited, evicted, spawn) = {
                let mut state = lock(&self.state);
                if state.closed {
                    return Err(closing());
                }
                let exited: Vec<Pooled> = state.idle.extract_if(.., |c| c.exited()).collect();
                // The most recently used child of this kind: its process is warm.
                let found = state
                    .idle
                    .iter()
                    .rposition(|c| &c.key == key)
                    .map(|i| state.idle.remove(i));
                let mut spawn = false;
                let mut evicted = None;
                if found.is_none() {
                    if state.live < self.max {
                        state.live += 1;
                        spawn = true;
                    } else if !state.idle.is_empty() {
                        // Full of idle children of other kinds: make room (the longest idle
                        // goes); its slot frees when it has exited.
                        evicted = Some(state.idle.remove(0));
                    }
                }
                (found, exited, evicted, spawn)
            };
            for child in exited {
                close_child(child);
            }
            if let Some(child) = found {
                return Ok(Lease::new(self.clone(), child));
            }
            if spawn {
                return self
                    .spawn_child(key)
                    .await
                    .map(|c| Lease::new(self.clone(), c));
            }
            if let Some(child) = evicted {
                close_child(child);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                tracing::warn!(max = self.max, "every pooled MCP server process is busy");
                return Err(ErrorObject::new(
                    ErrorCode::SERVER_ERROR,
                    format!(
                        "all {} MCP server processes are busy; retry later",
                        self.max
                    ),
                )
                .with_data(json!({ "maxProcesses": self.max })));
            }
        }
    }

    /// Starts and initializes a child in a task of its own, so a request that gives up meanwhile
    /// leaves a ready child in the pool rather than a half-started one.
    async fn spawn_child(self: &Arc<Self>, key: &Key) -> Result<Pooled, ErrorObject> {
        // Counted in `live` by the caller: the slot gives it back if starting fails.
        let slot = Slot(Arc::downgrade(self));
        let (tx, rx) = oneshot::channel();
        let pool = self.clone();
        let key = key.clone();
        let start = async move {
            let started = pool.start(key, slot).await;
            if let Err(Ok(child)) = tx.send(started) {
                pool.put_back(child);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(start);
            }
            Err(_) => start.await,
        }
        rx.await.unwrap_or_else(|_| Err(ErrorObject::internal()))
    }

    async fn start(&self, key: Key, slot: Slot) -> Result<Pooled, ErrorObject> {
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        let server = self
            .command
            .spawn_as(format!("pool-{n}").into(), None, &[])
            .map_err(|e| {
                tracing::error!(command = %self.command.display(), error = %e, "cannot start the MCP server");
                ErrorObject::new(ErrorCode::INTERNAL_ERROR, "cannot start the MCP server process")
            })?;
        let mut child = Pooled {
            server,
            key,
            idle_since: Instant::now(),
            logging: false,
            log_level: None,
            _slot: slot,
        };
        let capabilities: Value =
            serde_json::from_str(&child.key.capabilities).unwrap_or_else(|_| json!({}));
        let params = json!({
            "protocolVersion": ProtocolVersion::LATEST.as_str(),
            "capabilities": capabilities,
            "clientInfo": { "name": "mcp-tower-http", "version": env!("CARGO_PKG_VERSION") },
        });
        let shared = child.shared().clone();
        match ask_child(&shared, "initialize", params, START_TIMEOUT).await {
            Ok(result) => {
                child.logging = result
                    .get("capabilities")
                    .and_then(|c| c.get("logging"))
                    .is_some_and(|l| !l.is_null());
                let _ = self.initialized.set(result);
                let initialized = Message::notification("notifications/initialized", None);
                if let Err(e) = shared.write(&initialized).await {
                    close_child(child);
                    return Err(e);
                }
            }
            // A server of 2026-07-28 only has no handshake.
            Err(e) if e.code == ErrorCode::METHOD_NOT_FOUND => {}
            Err(e) => {
                tracing::warn!(process = %shared.label, error = %e, "the MCP server process did not initialize");
                close_child(child);
                return Err(ErrorObject::new(
                    ErrorCode::INTERNAL_ERROR,
                    format!("the MCP server process did not initialize: {}", e.message),
                ));
            }
        }
        Ok(child)
    }

    /// Returns a child after a call: idle again, or closed if it exited or the pool closed.
    fn put_back(&self, mut child: Pooled) {
        lock(&child.shared().inbox).take();
        {
            let mut state = lock(&self.state);
            if !state.closed && !child.exited() {
                child.idle_since = Instant::now();
                state.idle.push(child);
                drop(state);
                self.changed.notify_waiters();
                return;
            }
        }
        close_child(child);
    }

    async fn initialize_result(self: &Arc<Self>, key: &Key) -> Result<Value, ErrorObject> {
        if let Some(result) = self.initialized.get() {
            return Ok(result.clone());
        }
        // Starting a child initializes it.
        drop(self.acquire(key).await?);
        self.initialized
            .get()
            .cloned()
            .ok_or_else(|| ErrorObject::method_not_found("initialize"))
    }

    /// Asks a child; one that answers speaks 2026-07-28 and gets requests unchanged from now
    /// on. Any error means a 2025 server: the endpoint then describes it from `initialize`.
    async fn discover(
        self: &Arc<Self>,
        key: &Key,
        request: Request,
        cx: &RequestContext,
    ) -> Result<Value, ErrorObject> {
        let lease = self.acquire(key).await?;
        let call = Call::start(lease, request, cx, false).await?;
        match call.drive(cx, false).await {
            Ok(result) => {
                self.passthrough.store(true, Ordering::Release);
                Ok(result)
            }
            Err(_) => Err(ErrorObject::method_not_found("server/discover")),
        }
    }

    fn park(&self, call: Call, park_id: u128) {
        if lock(&self.state).closed {
            return;
        }
        let deadline = Instant::now() + self.input_timeout;
        lock(&self.parked).insert(park_id, Parked { call, deadline });
    }

    /// The call a retry's answers belong to: `None` when they name no waiting call (a fresh
    /// call), an error when they name one that is gone or was another call (`binding`: the
    /// principal, method and params a sealed `requestState` binds to).
    fn unpark(
        &self,
        answers: &Map<String, Value>,
        binding: &[u8],
    ) -> Option<Result<Call, ErrorObject>> {
        let mut ids: Vec<u128> = answers.keys().filter_map(|k| park_id(k)).collect();
        if ids.is_empty() {
            // Keys the child named: the waiting call of this very call (same principal, method
            // and params) whose questions these answers answer.
            let mut parked = lock(&self.parked);
            let found = parked
                .iter()
                .find(|(_, p)| {
                    p.call.binding == binding
                        && !p.call.waiting.is_empty()
                        && p.call
                            .waiting
                            .iter()
                            .all(|(k, _, _)| answers.contains_key(k))
                })
                .map(|(id, _)| *id)?;
            return parked.remove(&found).map(|p| Ok(p.call));
        }
        ids.dedup();
        let mut parked = lock(&self.parked);
        for id in ids {
            let fits = parked.get(&id).is_some_and(|p| p.call.binding == binding);
            if fits && let Some(found) = parked.remove(&id) {
                return Some(Ok(found.call));
            }
        }
        Some(Err(ErrorObject::invalid_params(
            "inputResponses answer a request the MCP server is no longer waiting for (it timed \
             out, was answered already, or its process exited); call again without \
             inputResponses and requestState",
        )))
    }

    /// Closes children idle too long or exited; releases calls whose client did not retry in
    /// time or whose child exited.
    fn reap(&self) {
        let now = Instant::now();
        let stale: Vec<Pooled> = lock(&self.state)
            .idle
            .extract_if(.., |c| {
                c.exited() || now.duration_since(c.idle_since) >= self.idle_timeout
            })
            .collect();
        for child in stale {
            tracing::debug!(process = %child.shared().label, "closing an idle MCP server process");
            close_child(child);
        }
        let expired: Vec<Parked> = lock(&self.parked)
            .extract_if(|_, p| {
                p.deadline <= now || p.call.lease.shared.exited.load(Ordering::Acquire)
            })
            .map(|(_, p)| p)
            .collect();
        for parked in expired {
            let mut call = parked.call;
            tracing::info!(process = %call.lease.shared.label, "the client did not answer the MCP server's request in time; releasing it");
            call.unanswered = ErrorObject::new(
                ErrorCode::REQUEST_TIMEOUT,
                "the client did not answer in time",
            );
        }
    }

    async fn close(&self) {
        let idle = {
            let mut state = lock(&self.state);
            state.closed = true;
            std::mem::take(&mut state.idle)
        };
        let parked: Vec<Parked> = lock(&self.parked).drain().map(|(_, p)| p).collect();
        for parked in parked {
            let mut call = parked.call;
            call.unanswered = closing();
        }
        self.changed.notify_waiters();
        futures_util::future::join_all(idle.into_iter().map(|child| async move {
            child.server.close().await;
            drop(child);
        }))
        .await;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if lock(&self.state).live == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// Reaps the pool every `every` until it is gone or closed.
async fn maintain(pool: Weak<Pool>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if lock(&pool.state).closed {
            return;
        }
        pool.reap();
    }
}

/// Closes a child in the background (stdin EOF, SIGTERM, SIGKILL); its slot frees once it has
/// exited.
fn close_child(child: Pooled) {
    let close = async move {
        child.server.close().await;
        drop(child);
    };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(close);
    }
    // Without a runtime the child is dropped here: killed on drop.
}

fn closing() -> ErrorObject {
    ErrorObject::new(
        ErrorCode::SERVER_ERROR,
        "the MCP server processes are shutting down",
    )
}

/// A child taken from the pool; given back when dropped.
struct Lease {
    pool: Arc<Pool>,
    shared: Arc<Shared>,
    child: Option<Pooled>,
}

impl Lease {
    fn new(pool: Arc<Pool>, child: Pooled) -> Self {
        Self {
            pool,
            shared: child.shared().clone(),
            child: Some(child),
        }
    }

    /// Gets the child's log messages down to `level` (a 2025 server sends what its
    /// `logging/setLevel` allows; the endpoint then drops what the request did not ask for).
    async fn set_log_level(&mut self, level: Option<LogLevel>) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let Some(level) = level.filter(|l| child.logging && child.log_level != Some(*l)) else {
            return;
        };
        let params = json!({ "level": level.as_str() });
        match ask_child(&self.shared, "logging/setLevel", params, SET_LEVEL_TIMEOUT).await {
            Ok(_) => child.log_level = Some(level),
            Err(e) => {
                tracing::debug!(process = %self.shared.label, error = %e, "logging/setLevel failed")
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            self.pool.put_back(child);
        }
    }
}

/// A request the child works on for a 2026-07-28 call, across the call's `input_required`
/// rounds. Dropped unanswered (the client went away, did not retry in time, the pool closed),
/// it answers the child's waiting requests with an error, cancels the request at the child
/// and gives the child back.
struct Call {
    lease: Lease,
    /// The request's id at the child.
    child_id: Id,
    answer: oneshot::Receiver<Result<Value, ErrorObject>>,
    /// The child's requests, progress and log messages while it works on this call.
    inbox: mpsc::Receiver<Message>,
    answered: bool,
    /// The child's requests the client was asked to answer: key, id at the child, request.
    waiting: Vec<(String, Id, InputRequest)>,
    park_id: Option<u128>,
    next_key: u64,
    method: String,
    /// What a retry must match to continue this call: its principal, method and params.
    binding: Vec<u8>,
    /// The error the child's waiting requests get if the call ends without their answers.
    unanswered: ErrorObject,
}

enum Event {
    Child(Message),
    Answer(Result<Value, ErrorObject>),
}

/// How asking the client went.
enum Round {
    /// The answers were there already (the retry carried them): the child goes on.
    Answered,
    /// The round ends with `input_required`; the call waits for the retry.
    Park(ErrorObject),
    /// The client cannot answer (e.g. `-32021`, a capability it did not declare).
    Fail(ErrorObject),
}

impl Call {
    /// Forwards `request` to the leased child (for a 2025 child, `legacy`: without the
    /// 2026-07-28 `_meta` keys and retry fields).
    async fn start(
        mut lease: Lease,
        request: Request,
        cx: &RequestContext,
        legacy: bool,
    ) -> Result<Call, ErrorObject> {
        let shared = lease.shared.clone();
        if cx.protocol_version().is_sessionless() {
            // The child's list_changed and resource updates go to this principal's listen
            // streams (the child serves one principal).
            lock(&shared.standalone).get_or_insert_with(|| cx.peer().standalone());
        }
        lease.set_log_level(cx.log_level()).await;
        let (tx, inbox) = mpsc::channel(INBOX_CAPACITY);
        *lock(&shared.inbox) = Some(tx);
        let child_id = Id::Number(shared.next_id.fetch_add(1, Ordering::Relaxed));
        let (answer_tx, answer) = oneshot::channel();
        lock(&shared.pending).insert(child_id.clone(), answer_tx);
        let mut call = Call {
            lease,
            child_id: child_id.clone(),
            answer,
            inbox,
            answered: false,
            waiting: Vec::new(),
            park_id: None,
            next_key: 0,
            method: request.method.clone(),
            // Only calls that can ask (tools/call, prompts/get, resources/read) have one.
            binding: cx
                .input
                .as_ref()
                .map(|round| round.binding.clone())
                .unwrap_or_default(),
            unanswered: ErrorObject::new(
                ErrorCode::INTERNAL_ERROR,
                "the client's request ended before it answered",
            ),
        };
        if shared.exited.load(Ordering::Acquire) {
            // Exited before the waiter was in place: nothing would ever answer it.
            call.answered = true;
            return Err(exited());
        }
        let params = if legacy {
            for_legacy_child(request.params)
        } else {
            request.params
        };
        if let Err(e) = shared
            .write(&Message::request(child_id, request.method, params))
            .await
        {
            call.answered = true;
            return Err(e);
        }
        Ok(call)
    }

    /// Waits for the child's answer, relaying its progress and logs to the request's stream;
    /// a request of the child ends the round with `input_required` (the call waits in the
    /// pool for the client's retry). `ask_first`: the client still owes answers.
    async fn drive(
        mut self,
        cx: &RequestContext,
        mut ask_first: bool,
    ) -> Result<Value, ErrorObject> {
        loop {
            if ask_first {
                ask_first = false;
                match self.ask(cx).await {
                    Round::Answered => {}
                    Round::Park(e) => {
                        if let Some(park) = self.park_id {
                            let pool = self.lease.pool.clone();
                            pool.park(self, park);
                        }
                        return Err(e);
                    }
                    Round::Fail(e) => {
                        self.unanswered = e.clone();
                        return Err(e);
                    }
                }
            }
            let event = tokio::select! {
                biased;
                Some(message) = self.inbox.recv() => Event::Child(message),
                answer = &mut self.answer => Event::Answer(answer.unwrap_or_else(|_| Err(exited()))),
            };
            match event {
                Event::Answer(answer) => {
                    self.answered = true;
                    // What the child wrote before its answer goes first.
                    while let Ok(message) = self.inbox.try_recv() {
                        match message {
                            Message::Request(request) => self.refuse(request, "the call is over"),
                            Message::Notification(n) => relay(n, cx).await,
                            _ => {}
                        }
                    }
                    return answer;
                }
                Event::Child(Message::Notification(n)) => relay(n, cx).await,
                Event::Child(Message::Request(request)) => {
                    // Requests written together are asked together, in one round: take those
                    // that follow closely.
                    let mut requests = vec![request];
                    let until = Instant::now() + GATHER_MAX;
                    while let Ok(Some(message)) =
                        tokio::time::timeout(GATHER_GAP, self.inbox.recv()).await
                    {
                        match message {
                            Message::Request(request) => requests.push(request),
                            Message::Notification(n) => relay(n, cx).await,
                            _ => {}
                        }
                        if Instant::now() >= until {
                            break;
                        }
                    }
                    ask_first = self.take_requests(requests, cx);
                }
                Event::Child(_) => {}
            }
        }
    }

    /// Sorts the child's requests: input requests wait for the client; `true` when there are
    /// any. Others are answered here.
    fn take_requests(&mut self, requests: Vec<Request>, cx: &RequestContext) -> bool {
        for request in requests {
            if request.method == "ping" {
                write_now(&self.lease.shared, Message::result(request.id, json!({})));
                continue;
            }
            let Some(input) = input_request(&request) else {
                self.refuse(request, "not a request the client can be asked");
                continue;
            };
            if cx.input.is_none() {
                // Only tools/call, prompts/get and resources/read can ask (input_required).
                let why = format!(
                    "the client cannot be asked for input during {}",
                    self.method
                );
                self.refuse(request, &why);
                continue;
            }
            let park = *self.park_id.get_or_insert_with(rand::random::<u128>);
            // The key the child's handler asked under, when it says (a server of this crate
            // does); else one naming this call. A retry finds the call by its binding either way.
            let answered =
                |k: &String| cx.input.as_ref().is_some_and(|r| r.answers.contains_key(k));
            let key = input_key(&request)
                .filter(|k| !answered(k) && !self.waiting.iter().any(|(w, _, _)| w == k))
                .unwrap_or_else(|| format!("{park:032x}:{}", self.next_key));
            self.next_key += 1;
            self.waiting.push((key, request.id, input));
        }
        !self.waiting.is_empty()
    }

    /// Asks the client for the answers still missing.
    async fn ask(&mut self, cx: &RequestContext) -> Round {
        let questions: Vec<(String, InputRequest)> = self
            .waiting
            .iter()
            .map(|(key, _, input)| (key.clone(), input.clone()))
            .collect();
        match cx.ask_all(questions).await {
            Ok(answers) => {
                self.deliver(&answers).await;
                Round::Answered
            }
            Err(e) if is_input_required(&e) => Round::Park(e),
            Err(e) => Round::Fail(e),
        }
    }

    /// Writes the client's answers back to the child's waiting requests.
    async fn deliver(&mut self, answers: &Map<String, Value>) {
        let mut still = Vec::with_capacity(self.waiting.len());
        for (key, id, input) in std::mem::take(&mut self.waiting) {
            match answers.get(&key) {
                Some(answer) => {
                    let reply = Message::result(id, answer.clone());
                    if self.lease.shared.write(&reply).await.is_err() {
                        tracing::debug!(process = %self.lease.shared.label, "answer for an exited child dropped");
                    }
                }
                None => still.push((key, id, input)),
            }
        }
        self.waiting = still;
    }

    fn refuse(&self, request: Request, why: &str) {
        tracing::debug!(process = %self.lease.shared.label, method = %request.method, "{why}");
        let error = ErrorObject::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!("{}: {why}", request.method),
        );
        write_now(&self.lease.shared, Message::error(Some(request.id), error));
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let shared = self.lease.shared.clone();
        lock(&shared.inbox).take();
        while let Ok(message) = self.inbox.try_recv() {
            if let Message::Request(request) = message {
                self.refuse(request, "the call is over");
            }
        }
        for (_, id, _) in self.waiting.drain(..) {
            write_now(&shared, Message::error(Some(id), self.unanswered.clone()));
        }
        if self.answered {
            return;
        }
        lock(&shared.pending).remove(&self.child_id);
        if !shared.exited.load(Ordering::Acquire) {
            let params = json!({
                "requestId": self.child_id.to_value(),
                "reason": "the client's request was abandoned",
            });
            write_now(
                &shared,
                Message::notification("notifications/cancelled", Some(params)),
            );
        }
        // The lease (a field) gives the child back after this.
    }
}

/// Sends a child's progress (under the token of the request now waiting, which may differ
/// from the one the child knows after a retry) or log message to the request's stream.
async fn relay(mut notification: Notification, cx: &RequestContext) {
    if !cx.protocol_version().is_sessionless() {
        // The endpoint describing the server (a detached context): nobody reads its stream.
        return;
    }
    if notification.method == "notifications/progress" {
        let Some(token) = cx.progress_token() else {
            return;
        };
        match notification.params.as_mut() {
            Some(Value::Object(params)) => {
                params.insert("progressToken".into(), token.clone());
            }
            _ => return,
        }
    }
    let _ = cx.peer().send(Message::Notification(notification)).await;
}

/// Takes a leased child's requests, progress and log messages for the call it works on;
/// everything else (and everything of an idle child) takes the usual route.
pub(super) async fn divert(shared: &Shared, message: Message) -> Option<Message> {
    let related = match &message {
        Message::Request(_) => true,
        Message::Notification(n) => {
            n.method == "notifications/progress" || n.method == "notifications/message"
        }
        _ => false,
    };
    if !related {
        return Some(message);
    }
    let Some(tx) = lock(&shared.inbox).clone() else {
        return Some(message);
    };
    // Awaited, as on a session's stream: a burst of progress or logs is delayed, not lost (the
    // call drains its queue while it runs, and drops it when it ends).
    match tx.send(message).await {
        Ok(()) => None,
        // The call is over: a request still needs an answer, which the usual route gives.
        Err(mpsc::error::SendError(message)) => message.is_request().then_some(message),
    }
}

/// Queues a message for the child's stdin without waiting (in order with what is queued);
/// from a task when the queue is full.
fn write_now(shared: &Arc<Shared>, message: Message) {
    let Some(tx) = lock(&shared.stdin).clone() else {
        return;
    };
    let mut line = BytesMut::from(&message.to_bytes()[..]);
    line.extend_from_slice(b"\n");
    if let Err(mpsc::error::TrySendError::Full(line)) = tx.try_send(line.freeze())
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        runtime.spawn(async move {
            let _ = tx.send(line).await;
        });
    }
}

/// Sends a request of the pool's own to a child and waits (bounded) for its answer.
async fn ask_child(
    shared: &Arc<Shared>,
    method: &str,
    params: Value,
    limit: Duration,
) -> Result<Value, ErrorObject> {
    let id = Id::Number(shared.next_id.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(id.clone(), tx);
    let answer = if shared.exited.load(Ordering::Acquire) {
        Err(exited())
    } else {
        match shared
            .write(&Message::request(id.clone(), method, Some(params)))
            .await
        {
            Ok(()) => match tokio::time::timeout(limit, rx).await {
                Ok(answer) => answer.unwrap_or_else(|_| Err(exited())),
                Err(_) => Err(ErrorObject::new(
                    ErrorCode::REQUEST_TIMEOUT,
                    format!("the MCP server process did not answer {method} in time"),
                )),
            },
            Err(e) => Err(e),
        }
    };
    lock(&shared.pending).remove(&id);
    answer
}

/// The key a child named its input request with (`_meta` [`META_INPUT_KEY`]), if it is a
/// short, plain one.
fn input_key(request: &Request) -> Option<String> {
    let key = request
        .params
        .as_ref()?
        .get("_meta")?
        .get(META_INPUT_KEY)?
        .as_str()?;
    let plain = !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    plain.then(|| key.to_owned())
}

/// The input request a child's request asks the client for, if it is one (without the key hint,
/// which is for this relay only).
fn input_request(request: &Request) -> Option<InputRequest> {
    let params = || {
        let mut params = request.params.clone().unwrap_or_else(|| json!({}));
        if let Some(Value::Object(meta)) = params.get_mut("_meta") {
            meta.remove(META_INPUT_KEY);
            if meta.is_empty()
                && let Value::Object(params) = &mut params
            {
                params.remove("_meta");
            }
        }
        params
    };
    match request.method.as_str() {
        "sampling/createMessage" => Some(InputRequest::sampling(params())),
        "elicitation/create" => Some(InputRequest::elicitation_params(params())),
        "roots/list" => Some(InputRequest::list_roots()),
        _ => None,
    }
}

/// The park id of an input-request key this pool made (`<32 hex digits>:<n>`).
fn park_id(key: &str) -> Option<u128> {
    let (id, n) = key.split_once(':')?;
    if id.len() != 32 || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    u128::from_str_radix(id, 16).ok()
}

/// A 2026-07-28 request's params as a 2025 child expects them: without the per-request
/// `_meta` keys that replace `initialize` (the child was initialized by the pool) and without
/// the retry fields (the pool answers the child's requests itself).
fn for_legacy_child(params: Option<Value>) -> Option<Value> {
    let Some(Value::Object(mut params)) = params else {
        return params;
    };
    params.remove("inputResponses");
    params.remove("requestState");
    if let Some(Value::Object(meta)) = params.get_mut("_meta") {
        for key in [
            META_PROTOCOL_VERSION,
            META_CLIENT_CAPABILITIES,
            META_CLIENT_INFO,
            META_LOG_LEVEL,
        ] {
            meta.remove(key);
        }
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    Some(Value::Object(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_kept_for_the_input_capabilities_of_its_clients() {
        let meta = |caps: Value| RequestMeta {
            protocol_version: ProtocolVersion::V2026_07_28,
            client_capabilities: caps,
            client_info: None,
            log_level: None,
        };
        let both = Key::new(
            None,
            Some(&meta(
                json!({"elicitation": {"form": {}}, "sampling": {}, "experimental": {}}),
            )),
        );
        assert_eq!(
            &*both.capabilities,
            r#"{"elicitation":{"form":{}},"sampling":{}}"#
        );
        let reordered = Key::new(
            None,
            Some(&meta(json!({"sampling": {}, "elicitation": {"form": {}}}))),
        );
        assert_eq!(both, reordered);
        let roots = Key::new(
            Some("alice".into()),
            Some(&meta(
                json!({"roots": {"listChanged": true}, "sampling": null}),
            )),
        );
        assert_eq!(&*roots.capabilities, r#"{"roots":{}}"#);
        assert_ne!(roots, Key::new(None, Some(&meta(json!({"roots": {}})))));
        assert_eq!(&*Key::new(None, None).capabilities, "{}");
    }

    #[test]
    fn park_ids_are_read_only_from_keys_the_pool_made() {
        let id: u128 = 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef;
        assert_eq!(park_id(&format!("{id:032x}:0")), Some(id));
        assert_eq!(park_id(&format!("{id:032x}:17")), Some(id));
        for other in [
            "user_name",
            "abc:1",
            &format!("{id:032x}"),
            &format!("{id:032x}:"),
            &format!("{id:032x}:x"),
            &format!("{id:031x}z:1"),
        ] {
            assert_eq!(park_id(other), None, "{other}");
        }
    }

    #[test]
    fn a_2025_child_gets_no_2026_meta() {
        let params = json!({
            "name": "echo",
            "arguments": {"text": "hi"},
            "inputResponses": {"k": {}},
            "requestState": "s",
            "_meta": {
                META_PROTOCOL_VERSION: "2026-07-28",
                META_CLIENT_CAPABILITIES: {},
                META_CLIENT_INFO: {"name": "c"},
                META_LOG_LEVEL: "info",
                "progressToken": 7,
            },
        });
        assert_eq!(
            for_legacy_child(Some(params)),
            Some(
                json!({"name": "echo", "arguments": {"text": "hi"}, "_meta": {"progressToken": 7}})
            )
        );
        let bare = json!({"_meta": {META_PROTOCOL_VERSION: "2026-07-28"}});
        assert_eq!(for_legacy_child(Some(bare)), Some(json!({})));
        assert_eq!(for_legacy_child(None), None);
    }

    #[test]
    fn input_requests_of_a_child() {
        let request = |method: &str| Request {
            id: Id::Number(1),
            method: method.into(),
            params: Some(json!({"message": "m"})),
        };
        assert_eq!(
            input_request(&request("sampling/createMessage")).map(|r| r.capability()),
            Some("sampling")
        );
        assert_eq!(
            input_request(&request("elicitation/create")).map(|r| r.params().clone()),
            Some(json!({"message": "m"}))
        );
        assert_eq!(
            input_request(&request("roots/list")).map(|r| r.method()),
            Some("roots/list")
        );
        assert!(input_request(&request("tools/call")).is_none());
    }
}
