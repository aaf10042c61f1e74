//! Serve a stdio MCP server (a child process speaking newline-delimited JSON-RPC) over HTTP.
//!
//! [`StdioCommand`] is a [`MakeMcpService`]: every session spawns its own child (no shell), and
//! the [`StdioServer`] it builds relays both directions:
//!
//! - client requests and notifications go to the child's stdin, with ids renumbered so answers
//!   route back to the right waiter whatever the client's ids;
//! - the child's responses answer those requests; its notifications and requests (sampling,
//!   elicitation, roots) go to the client: `notifications/progress` to the stream of the request
//!   that owns the progress token, logging and requests to the stream of the newest request still
//!   running (else the session's standalone GET stream), everything else to the standalone stream;
//!   the client's answers to the child's requests go back to the child under the child's ids;
//! - the child's stderr goes to the log, prefixed with the session id.
//!
//! When the child exits by itself, waiting requests fail with `-32603` and the session ends (the
//! client gets 404 and re-initializes). When the session ends, the child's stdin is closed, then
//! it gets SIGTERM after a grace period, then SIGKILL.
//!
//! A line from the child longer than 16 MiB is not relayed. Its `id` is read while the line is
//! skipped (wherever it sits in the line, in constant memory), so the request it answers fails
//! at once with `-32603` (`data.limit` names the limit) instead of waiting for its timeout; an
//! oversized request of the child gets an error answer, an oversized notification is dropped
//! and logged.
//!
//! [`StdioCommand::max_processes`] caps the sessions' children alive at once (pooled children,
//! below, have a bound of their own).
//!
//! 2026-07-28 requests, which have no session, are served by a pool of children (below).
//!
//! # 2026-07-28 clients and a 2025 child
//!
//! Almost every stdio server speaks a 2025 revision: `initialize` first, and requests of its own
//! (sampling, elicitation, roots) that it expects the client to answer. A 2026-07-28 request has
//! no session, and its server may not send requests. The pool ([`StdioPool`]) bridges the two:
//!
//! - **One request per child at a time.** Over stdio, a child's requests and log messages carry
//!   no link to the client request that caused them; with one request per child the link is
//!   unambiguous. Children are started on demand, initialized once by the pool (protocol
//!   2025-11-25) and reused: a Python or Node server takes ~100 ms to start, too long for every
//!   request, and a long-lived child keeps its state and can announce its changes.
//! - **Per principal and declared capabilities.** A child serves one authenticated subject (its
//!   state and notifications stay theirs) and declares in its `initialize` the `sampling`,
//!   `elicitation` and `roots` capabilities of the clients it serves: a 2025 server checks them
//!   before asking, and some offer tools only to clients that can answer them.
//! - **Bounded.** At most [`max_pooled`](StdioCommand::max_pooled) children (default 16) across
//!   principals, besides the sessions' children. When all are busy, a request waits up to [`pool_wait`](StdioCommand::pool_wait)
//!   (30 s) for one, closing an idle child of another kind to make room, then fails with
//!   `-32000`. Children idle for [`pool_idle_timeout`](StdioCommand::pool_idle_timeout) (60 s)
//!   are closed like a session's child (stdin EOF, SIGTERM, SIGKILL) and reaped.
//! - **Discovery.** The endpoint builds `server/discover` from the child's `initialize` answer
//!   (capabilities, server info, instructions; `ttlMs` and `cacheScope` are stamped by the
//!   endpoint). A 2025 child gets requests without the 2026-07-28 `_meta` keys. A child that
//!   answers `server/discover` itself speaks 2026-07-28: it gets requests unchanged.
//! - **Input.** A child's `sampling/createMessage`, `elicitation/create` or `roots/list` ends
//!   the round with an `input_required` result (with a sealed `requestState`, as
//!   [`RequestContext::ask`](crate::RequestContext::ask) does); the call waits in the pool with
//!   its child. The client's retry, a new HTTP request, carries the answers: they go back to the
//!   waiting child request and the call goes on, perhaps to another round. A client that does not
//!   retry within [`input_timeout`](StdioCommand::input_timeout) (10 min, the lifetime of the
//!   `requestState`) releases the call: the child's request gets an error, the call is cancelled
//!   at the child (`notifications/cancelled`) and the child is free again. Other requests of the
//!   child get an error (`ping` is answered).
//! - **Notifications.** Progress (under the progress token of the request now waiting) and log
//!   messages (at the level the request's `_meta` asks for; the pool sets the child's level with
//!   `logging/setLevel`) go to the request's stream; `list_changed` and `resources/updated`, from
//!   a working or an idle child, go to the principal's `subscriptions/listen` streams.
//! - **Cancellation.** A client that closes its stream cancels the call at the child
//!   (`notifications/cancelled`), and the child goes back to the pool.
//!
//! Limits: a child that ignores cancellation may still be finishing the old call when it serves
//! the next; a 2025 child sends `resources/updated` only for resources subscribed in its own
//! session, and the pool does not subscribe on behalf of listen streams; the `input_required`
//! rounds of a 2026-07-28 child of its own cannot be relayed (the endpoint seals and checks
//! `requestState`). Sessions of the 2025 revisions are served as before, one child each.
//!
//! # Example
//!
//! ```no_run
//! use mcp_tower_http::McpStack;
//! use mcp_tower_http::stdio::StdioCommand;
//!
//! let command = StdioCommand::new("npx")
//!     .args(["-y", "@modelcontextprotocol/server-everything"])
//!     .env("LOG_LEVEL", "info");
//! let service = McpStack::new(command).endpoint_path("/mcp").into_service();
//! # let _ = service;
//! ```

mod pool;

pub use self::pool::{
    DEFAULT_INPUT_TIMEOUT, DEFAULT_MAX_POOLED, DEFAULT_POOL_IDLE_TIMEOUT, DEFAULT_POOL_WAIT,
    PooledServer, StdioPool, StdioService,
};

use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message, Notification, Payload, Request};
use crate::service::{
    MakeMcpService, McpService, NotificationContext, Peer, RequestContext, SessionContext,
};
use crate::session::{SessionCloser, SessionId};
use crate::sync::lock;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// The default grace period between closing stdin, SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The longest line accepted from a child: 16 MiB. Longer lines are not relayed; see the
/// [module docs](crate::stdio).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// How many messages may wait for the child's stdin.
const STDIN_CAPACITY: usize = 64;

/// How to start a stdio MCP server; one child per session. See the [module docs](crate::stdio).
#[derive(Clone, Debug)]
pub struct StdioCommand {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: Option<PathBuf>,
    grace: Duration,
    /// Room for the children alive at once, when capped.
    slots: Option<Arc<Semaphore>>,
    /// Environment taken from the request that opens a session.
    env_from_request: Option<EnvFromRequest>,
    /// 2026-07-28 requests: the pool settings, and the pool once started.
    pool: pool::PoolConfig,
    /// Children alive, spawned and crashed, shared by clones (for metrics).
    stats: StdioStats,
}

/// Counts of a [`StdioCommand`]'s children (its sessions' and its pool's), shared by its
/// clones: a cheap handle, read e.g. by `Metrics::track_stdio` (feature `metrics`).
#[derive(Clone, Debug, Default)]
pub struct StdioStats(Arc<StatCounts>);

#[derive(Debug, Default)]
struct StatCounts {
    alive: AtomicUsize,
    spawned: AtomicU64,
    crashed: AtomicU64,
}

impl StdioStats {
    /// Children running now (spawned, and neither seen to exit nor closed).
    pub fn alive(&self) -> usize {
        self.0.alive.load(Ordering::Relaxed)
    }

    /// Children started so far.
    pub fn spawned(&self) -> u64 {
        self.0.spawned.load(Ordering::Relaxed)
    }

    /// Children that exited by themselves (closed their output) before the proxy closed them.
    pub fn crashed(&self) -> u64 {
        self.0.crashed.load(Ordering::Relaxed)
    }
}

/// One child counted as alive until it is seen to exit, is closed, or its handle is dropped.
#[derive(Debug)]
struct AliveChild {
    stats: StdioStats,
    gone: AtomicBool,
}

impl AliveChild {
    fn new(stats: &StdioStats) -> Self {
        stats.0.spawned.fetch_add(1, Ordering::Relaxed);
        stats.0.alive.fetch_add(1, Ordering::Relaxed);
        Self {
            stats: stats.clone(),
            gone: AtomicBool::new(false),
        }
    }

    fn gone(&self) {
        if !self.gone.swap(true, Ordering::AcqRel) {
            self.stats.0.alive.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for AliveChild {
    fn drop(&mut self) {
        self.gone();
    }
}

/// Variables to set (`Some`) or remove (`None`) in one child's environment; see
/// [`StdioCommand::env_from_request`].
pub type ChildEnv = Vec<(OsString, Option<OsString>)>;

/// The signature of [`StdioCommand::env_from_request`]'s function.
type EnvFn = dyn Fn(&http::request::Parts) -> Result<ChildEnv, ErrorObject> + Send + Sync;

/// The function of [`StdioCommand::env_from_request`].
#[derive(Clone)]
struct EnvFromRequest(Arc<EnvFn>);

impl std::fmt::Debug for EnvFromRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvFromRequest(..)")
    }
}

impl StdioCommand {
    /// Runs `program` (looked up in `PATH`, no shell).
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            grace: DEFAULT_GRACE,
            slots: None,
            env_from_request: None,
            pool: pool::PoolConfig::default(),
            stats: StdioStats::default(),
        }
    }

    /// Runs `command_line` through the system shell, as Node's `spawn(..., {shell: true})`
    /// (and so npm `mcp-proxy --shell`) does: `/bin/sh -c COMMAND_LINE` (on Windows
    /// `cmd.exe /d /s /c COMMAND_LINE`). Pipes, variables and quoting are the shell's.
    pub fn shell(command_line: impl Into<OsString>) -> Self {
        #[cfg(windows)]
        let command = Self::new("cmd.exe").args(["/d", "/s", "/c"]);
        #[cfg(not(windows))]
        let command = Self::new("/bin/sh").arg("-c");
        command.arg(command_line)
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, A>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the child (on top of the proxy's environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Derives part of each session's child environment from the request that opens the
    /// session (its headers, or the [`Principal`](crate::Principal) in its extensions), applied
    /// on top of [`env`](Self::env): `Some` sets a variable, `None` removes it (so a variable
    /// the proxy itself has does not pass for one the request lacked). An error refuses the
    /// session (`initialize` fails with it) and starts no child.
    ///
    /// Pooled children (2026-07-28 requests) are shared by many requests and cannot take one
    /// request's environment: with this set, such requests fail with `-32600`; serve only the
    /// 2025 revisions (`McpStack::modern(false)`).
    ///
    /// ```
    /// use mcp_tower_http::stdio::StdioCommand;
    ///
    /// // The tenant header of the request that opens the session, or nothing.
    /// let command = StdioCommand::new("my-server").env_from_request(|parts| {
    ///     let tenant = parts.headers.get("x-tenant").map(|v| v.as_bytes().to_vec());
    ///     let tenant = tenant.map(|v| String::from_utf8_lossy(&v).into_owned().into());
    ///     Ok(vec![("TENANT".into(), tenant)])
    /// });
    /// # let _ = command;
    /// ```
    pub fn env_from_request<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Result<ChildEnv, ErrorObject> + Send + Sync + 'static,
    {
        self.env_from_request = Some(EnvFromRequest(Arc::new(f)));
        self
    }

    /// Runs the child in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// The wait after closing stdin before SIGTERM, and after SIGTERM before SIGKILL.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// At most `max` children alive at once (`None`: no cap). A session that would start one
    /// more waits for a child to exit, up to twice the grace period plus a second (how long a
    /// closing child may take), and then fails `initialize` with `-32000`. Clones share the cap.
    pub fn max_processes(mut self, max: impl Into<Option<usize>>) -> Self {
        self.slots = max
            .into()
            .map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))));
        self
    }

    /// The counts of this command's children (its clones share them).
    pub fn stats(&self) -> StdioStats {
        self.stats.clone()
    }

    /// The program and arguments, for logs.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Spawns the child and starts relaying (outside the [`max_processes`](Self::max_processes)
    /// cap, which `make_service` applies).
    pub fn spawn(
        &self,
        session: Option<&SessionId>,
        closer: Option<SessionCloser>,
    ) -> std::io::Result<StdioServer> {
        let label: Arc<str> = session.map_or_else(|| "-".into(), |s| s.as_str().into());
        self.spawn_as(label, closer, &[])
    }

    /// Spawns the child with `request_env` on top of its environment, its stderr logged under
    /// `label`.
    fn spawn_as(
        &self,
        label: Arc<str>,
        closer: Option<SessionCloser>,
        request_env: &[(OsString, Option<OsString>)],
    ) -> std::io::Result<StdioServer> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        for (key, value) in request_env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("child stdio was not captured"));
        };
        let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_CAPACITY);
        let shared = Arc::new(Shared {
            label: label.clone(),
            stdin: Mutex::new(Some(stdin_tx)),
            pending: Mutex::new(HashMap::new()),
            running: Mutex::new(Vec::new()),
            standalone: Mutex::new(None),
            next_id: AtomicI64::new(1),
            exited: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            alive: AliveChild::new(&self.stats),
            closer,
            inbox: Mutex::new(None),
        });
        tokio::spawn(write_stdin(stdin, stdin_rx, label.clone()));
        tokio::spawn(log_stderr(stderr, label));
        tokio::spawn(read_stdout(stdout, Arc::downgrade(&shared)));
        let child = Arc::new(tokio::sync::Mutex::new(Some(child)));
        Ok(StdioServer {
            shared,
            child,
            grace: self.grace,
            slot: Mutex::new(None),
        })
    }

    /// Waits for room for one more child under [`max_processes`](Self::max_processes).
    async fn slot(&self) -> Result<Option<OwnedSemaphorePermit>, ErrorObject> {
        let Some(slots) = &self.slots else {
            return Ok(None);
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let wait = self.grace * 2 + Duration::from_secs(1);
        match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => {
                tracing::warn!(command = %self.display(), "too many MCP server processes; refusing another");
                Err(ErrorObject::new(
                    ErrorCode::SERVER_ERROR,
                    "too many MCP server processes are running; retry later",
                ))
            }
        }
    }
}

impl MakeMcpService for StdioCommand {
    type Service = StdioService;

    fn make_service(
        &self,
        cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<StdioService, ErrorObject>> + Send {
        let sessionless = cx.protocol_version().is_sessionless();
        // Pooled children are shared: they cannot take one request's environment.
        let request_env = match (&self.env_from_request, sessionless) {
            (None, _) => Ok(Vec::new()),
            (Some(_), true) => Err(ErrorObject::new(
                ErrorCode::INVALID_REQUEST,
                "this server takes its environment from a session's request: use a 2025 revision with initialize",
            )),
            (Some(EnvFromRequest(f)), false) => f(cx.request_parts()),
        };
        // 2026-07-28 requests share pooled children (see the module docs).
        let pooled =
            (sessionless && self.env_from_request.is_none()).then(|| pool::handle(self, cx));
        let label: Arc<str> = cx
            .session_id()
            .map_or_else(|| "-".into(), |s| s.as_str().into());
        let closer = cx.session_closer();
        async move {
            if let Some(pooled) = pooled {
                return Ok(StdioService::Pooled(pooled));
            }
            let request_env = request_env?;
            let slot = self.slot().await?;
            let server = self.spawn_as(label, closer, &request_env).map_err(|e| {
                tracing::error!(command = %self.display(), error = %e, "cannot start the MCP server");
                ErrorObject::new(ErrorCode::INTERNAL_ERROR, "cannot start the MCP server process")
            })?;
            *lock(&server.slot) = slot;
            Ok(StdioService::Session(server))
        }
    }
}

/// A request of the client that the child is working on.
struct Running {
    child_id: Id,
    client_id: Id,
    progress_token: Option<Value>,
    peer: Peer,
}

/// State shared by the service and its relay tasks.
struct Shared {
    label: Arc<str>,
    stdin: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Requests sent to the child, by the id the child sees.
    pending: Mutex<HashMap<Id, oneshot::Sender<Result<Value, ErrorObject>>>>,
    /// Client requests in flight, oldest first, for routing the child's messages.
    running: Mutex<Vec<Running>>,
    /// A handle to the session's standalone stream, once any request has been seen.
    standalone: Mutex<Option<Peer>>,
    next_id: AtomicI64,
    exited: AtomicBool,
    /// The proxy is closing the child: its exit is not a crash.
    closing: AtomicBool,
    alive: AliveChild,
    closer: Option<SessionCloser>,
    /// A pooled child's messages for the 2026-07-28 call it works on (see `pool`).
    inbox: Mutex<Option<mpsc::Sender<Message>>>,
}

impl Shared {
    async fn write(&self, message: &Message) -> Result<(), ErrorObject> {
        let mut line = BytesMut::from(&message.to_bytes()[..]);
        line.extend_from_slice(b"\n");
        let stdin = lock(&self.stdin).clone();
        match stdin {
            Some(tx) => tx.send(line.freeze()).await.map_err(|_| exited()),
            None => Err(exited()),
        }
    }

    /// Where a message from the child goes.
    fn route(&self, message: &Message) -> Option<Peer> {
        let running = lock(&self.running);
        let by_token = match message {
            Message::Notification(n) if n.method == "notifications/progress" => {
                let token = n.params.as_ref().and_then(|p| p.get("progressToken"));
                running
                    .iter()
                    .find(|r| r.progress_token.is_some() && r.progress_token.as_ref() == token)
            }
            _ => None,
        };
        let related = match message {
            Message::Request(_) => true,
            Message::Notification(n) => n.method == "notifications/message",
            _ => false,
        };
        by_token
            .or_else(|| running.last().filter(|_| related))
            .map(|r| r.peer.clone())
            .or_else(|| lock(&self.standalone).clone())
    }

    /// The child is gone: fail every waiter and end the session.
    fn on_exit(&self) {
        if self.exited.swap(true, Ordering::AcqRel) {
            return;
        }
        if !self.closing.load(Ordering::Acquire) {
            self.alive.stats.0.crashed.fetch_add(1, Ordering::Relaxed);
        }
        self.alive.gone();
        lock(&self.stdin).take();
        for (_, waiter) in lock(&self.pending).drain() {
            let _ = waiter.send(Err(exited()));
        }
        if let Some(closer) = &self.closer {
            closer.close();
        }
    }
}

fn exited() -> ErrorObject {
    ErrorObject::new(ErrorCode::INTERNAL_ERROR, "the MCP server process exited")
}

/// The error for a message of the child that is over [`MAX_LINE`].
fn too_long(what: &str) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::INTERNAL_ERROR,
        format!(
            "the MCP server's {what} is over the proxy's limit of {MAX_LINE} bytes per message"
        ),
    )
    .with_data(serde_json::json!({ "limit": MAX_LINE }))
}

impl Shared {
    /// Answers what an oversized line from the child can still be answered: the request it
    /// answers fails now, a request of the child gets an error back.
    async fn on_overlong(&self, messages: &[Skipped]) {
        if messages.is_empty() {
            tracing::warn!(session = %self.label, "dropped a line over {MAX_LINE} bytes from the child (no JSON-RPC id in it)");
        }
        for skipped in messages {
            match (&skipped.id, skipped.has_method) {
                (Some(id), false) => {
                    tracing::warn!(session = %self.label, %id, "the child's answer is over {MAX_LINE} bytes; failing the request");
                    if let Some(waiter) = lock(&self.pending).remove(id) {
                        let _ = waiter.send(Err(too_long("answer")));
                    }
                }
                (Some(id), true) => {
                    tracing::warn!(session = %self.label, %id, "the child's request is over {MAX_LINE} bytes; answering it with an error");
                    let reply = Message::error(Some(id.clone()), too_long("request"));
                    let _ = self.write(&reply).await;
                }
                (None, _) => {
                    tracing::warn!(session = %self.label, "dropped a message over {MAX_LINE} bytes from the child");
                }
            }
        }
    }
}

/// Feeds the child's stdin from a bounded queue; ends (closing stdin) when the queue closes.
async fn write_stdin(mut stdin: ChildStdin, mut rx: mpsc::Receiver<Bytes>, label: Arc<str>) {
    while let Some(line) = rx.recv().await {
        if let Err(e) = stdin.write_all(&line).await {
            tracing::debug!(session = %label, error = %e, "child stdin closed");
            return;
        }
        if rx.is_empty()
            && let Err(e) = stdin.flush().await
        {
            tracing::debug!(session = %label, error = %e, "child stdin closed");
            return;
        }
    }
}

/// Logs the child's stderr, line by line, prefixed with the session.
async fn log_stderr(stderr: impl AsyncRead + Unpin, label: Arc<str>) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(Some(Line::Complete)) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(target: "mcp_proxy::child", "[{label}] {}", text.trim_end());
            }
            Ok(Some(Line::Overlong(_))) => {
                tracing::info!(target: "mcp_proxy::child", "[{label}] (a line over {MAX_LINE} bytes, not shown)");
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// What [`read_line`] read.
#[derive(Debug, PartialEq)]
enum Line {
    /// A line of at most [`MAX_LINE`] bytes, in the buffer.
    Complete,
    /// A longer line, skipped: the messages found in it, without their content.
    Overlong(Vec<Skipped>),
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes into `line` (without the
/// newline); `None` at end of input. A longer line is skipped to its end (the buffer is left
/// empty) and only scanned for the ids of its messages.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Line>> {
    let mut overlong: Option<IdScanner> = None;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match overlong {
                Some(scanner) => Some(Line::Overlong(scanner.finish())),
                None if line.is_empty() => None,
                None => Some(Line::Complete),
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1),
            None => (available, available.len()),
        };
        match &mut overlong {
            Some(scanner) => scanner.feed(chunk),
            None if line.len() + chunk.len() > MAX_LINE => {
                let mut scanner = IdScanner::default();
                scanner.feed(line);
                scanner.feed(chunk);
                line.clear();
                // Give the memory back: the next lines are usually small.
                line.shrink_to(64 * 1024);
                overlong = Some(scanner);
            }
            None => line.extend_from_slice(chunk),
        }
        let found_newline = done > chunk.len();
        reader.consume(done);
        if found_newline {
            return Ok(Some(match overlong {
                Some(scanner) => Line::Overlong(scanner.finish()),
                None => Line::Complete,
            }));
        }
    }
}

/// A message found in a skipped line: its `id`, and whether it has a `method` (a request or a
/// notification) or not (an answer).
#[derive(Debug, PartialEq)]
struct Skipped {
    id: Option<Id>,
    has_method: bool,
}

/// The most messages of one skipped batch line that are answered.
const MAX_SKIPPED: usize = 1024;

/// The longest `id` value kept while scanning (longer ones are not ids a proxy minted or a
/// server would use).
const MAX_ID_LEN: usize = 256;

/// Finds the `id` and `method` members of the JSON-RPC message (or batch of messages) in a
/// line, fed in pieces, in constant memory: it follows strings and nesting, and keeps only the
/// member names and `id` values at the level of the messages.
#[derive(Debug, Default)]
struct IdScanner {
    /// Containers open: the messages' members sit at depth 1 (a single message) or 2 (a batch).
    depth: usize,
    batch: bool,
    in_string: bool,
    escaped: bool,
    /// Where a member of a message is in its `name: value` course.
    member: Member,
    /// The current member name, if it is short enough to be `id` or `method`.
    name: Vec<u8>,
    name_overflow: bool,
    /// The raw `id` value being read.
    id_value: Option<Vec<u8>>,
    /// The message being read.
    id: Option<Id>,
    has_method: bool,
    found: Vec<Skipped>,
    /// Bytes that are not JSON where a message should start: nothing is reported.
    invalid: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Member {
    /// Before a member name (after `{` or `,`).
    #[default]
    Name,
    /// In or after the name, before `:`.
    AfterName,
    /// In the value.
    Value,
}

impl IdScanner {
    fn message_depth(&self) -> usize {
        if self.batch { 2 } else { 1 }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.invalid {
            return;
        }
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        let at_members = self.depth == self.message_depth();
        if self.in_string {
            if at_members && self.member == Member::AfterName {
                self.push_name(b);
            }
            self.push_id(b);
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return;
        }
        match b {
            b' ' | b'\t' | b'\r' => {}
            b'"' => {
                self.in_string = true;
                if at_members && self.member == Member::Name {
                    self.member = Member::AfterName;
                    self.name.clear();
                    self.name.push(b);
                    self.name_overflow = false;
                } else {
                    self.push_id(b);
                }
            }
            b'{' | b'[' => {
                if self.depth == 0 {
                    if b == b'[' {
                        self.batch = true;
                    }
                } else if self.depth == 1 && self.batch && b == b'{' {
                    self.start_message();
                }
                self.push_id(b);
                self.depth += 1;
                if self.depth == 1 && !self.batch {
                    self.start_message();
                }
            }
            b'}' | b']' => {
                if at_members {
                    self.end_value();
                    self.end_message();
                }
                self.depth = self.depth.saturating_sub(1);
                self.push_id(b);
            }
            b':' if at_members && self.member == Member::AfterName => {
                self.member = Member::Value;
                if !self.name_overflow {
                    match &self.name[..] {
                        b"\"id\"" => self.id_value = Some(Vec::new()),
                        b"\"method\"" => self.has_method = true,
                        _ => {}
                    }
                }
            }
            b',' if at_members => {
                self.end_value();
                self.member = Member::Name;
            }
            _ => {
                if self.depth == 0 {
                    self.invalid = true;
                    return;
                }
                self.push_id(b);
            }
        }
    }

    fn push_name(&mut self, b: u8) {
        if self.name.len() < 16 {
            self.name.push(b);
        } else {
            self.name_overflow = true;
        }
    }

    fn push_id(&mut self, b: u8) {
        if let Some(value) = &mut self.id_value {
            if value.len() < MAX_ID_LEN {
                value.push(b);
            } else {
                // Too long to be an id worth reading: forget it.
                self.id_value = None;
            }
        }
    }

    fn start_message(&mut self) {
        self.member = Member::Name;
        self.id = None;
        self.has_method = false;
        self.id_value = None;
    }

    fn end_value(&mut self) {
        if let Some(raw) = self.id_value.take() {
            self.id = serde_json::from_slice(&raw).ok().and_then(Id::from_value);
        }
    }

    fn end_message(&mut self) {
        if self.found.len() < MAX_SKIPPED {
            self.found.push(Skipped {
                id: self.id.take(),
                has_method: self.has_method,
            });
        }
    }

    fn finish(self) -> Vec<Skipped> {
        if self.invalid { Vec::new() } else { self.found }
    }
}

/// Relays the child's stdout until it closes.
async fn read_stdout(stdout: impl AsyncRead + Unpin, shared: std::sync::Weak<Shared>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = read_line(&mut reader, &mut line).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        match read {
            Ok(Some(Line::Complete)) => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match Payload::parse(&line) {
                    Ok(payload) => {
                        let messages = match payload {
                            Payload::Single(m) => vec![m],
                            Payload::Batch(ms) => ms,
                        };
                        for message in messages {
                            dispatch(&shared, message).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(session = %shared.label, error = %e, "child wrote a line that is not JSON-RPC")
                    }
                }
            }
            Ok(Some(Line::Overlong(skipped))) => shared.on_overlong(&skipped).await,
            Ok(None) | Err(_) => {
                tracing::info!(session = %shared.label, "MCP server process closed its output");
                shared.on_exit();
                return;
            }
        }
    }
}

/// Handles one message from the child, in the order the child wrote them: a notification is
/// queued on its client stream before the next line (perhaps the answer it precedes) is read.
async fn dispatch(shared: &Arc<Shared>, message: Message) {
    let Some(message) = pool::divert(shared, message).await else {
        return;
    };
    match message {
        Message::Response(response) => {
            if let Some(waiter) = lock(&shared.pending).remove(&response.id) {
                let _ = waiter.send(Ok(response.result));
            }
        }
        Message::Error(error) => {
            let waiter = error
                .id
                .as_ref()
                .and_then(|id| lock(&shared.pending).remove(id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(Err(error.error));
            }
        }
        Message::Notification(_) => {
            let Some(peer) = shared.route(&message) else {
                tracing::debug!(session = %shared.label, "no client stream for a child notification");
                return;
            };
            // Awaited, not spawned: order matters, and a stream that waits for its reader holds
            // up the child's output (backpressure, bounded by the SSE stall timeout).
            let _ = peer.send(message).await;
        }
        Message::Request(request) => {
            let peer = shared.route(&Message::Request(request.clone()));
            let shared = shared.clone();
            tokio::spawn(async move {
                let answer = match peer {
                    Some(peer) => peer.request(&request.method, request.params).await,
                    None => Err(ErrorObject::new(
                        ErrorCode::SERVER_ERROR,
                        "no client stream to forward the request to",
                    )),
                };
                let reply = match answer {
                    Ok(result) => Message::result(request.id, result),
                    Err(error) => Message::error(Some(request.id), error),
                };
                let _ = shared.write(&reply).await;
            });
        }
    }
}

/// One session's child process; see the [module docs](crate::stdio).
pub struct StdioServer {
    shared: Arc<Shared>,
    child: Arc<tokio::sync::Mutex<Option<Child>>>,
    grace: Duration,
    /// This child's room under [`StdioCommand::max_processes`], given back once it has exited.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl std::fmt::Debug for StdioServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioServer")
            .field("session", &self.shared.label)
            .finish_non_exhaustive()
    }
}

impl StdioServer {
    /// The child's process id, while it runs.
    pub async fn pid(&self) -> Option<u32> {
        self.child.lock().await.as_ref().and_then(Child::id)
    }
}

/// Removes a finished request from the routing table, even if its future is dropped; a request
/// abandoned before its answer (cancelled, timed out) is cancelled at the child too.
struct RunningGuard<'a> {
    shared: &'a Arc<Shared>,
    child_id: Id,
    answered: bool,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.running).retain(|r| r.child_id != self.child_id);
        lock(&self.shared.pending).remove(&self.child_id);
        if self.answered || self.shared.exited.load(Ordering::Acquire) {
            return;
        }
        let params = serde_json::json!({
            "requestId": self.child_id.to_value(),
            "reason": "the client's request was abandoned",
        });
        let cancel = Message::notification("notifications/cancelled", Some(params));
        let shared = self.shared.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = shared.write(&cancel).await;
            });
        }
    }
}

impl McpService for StdioServer {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        if self.shared.exited.load(Ordering::Acquire) {
            return Err(exited());
        }
        lock(&self.shared.standalone).get_or_insert_with(|| cx.peer().standalone());
        let child_id = Id::Number(self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.pending).insert(child_id.clone(), tx);
        lock(&self.shared.running).push(Running {
            child_id: child_id.clone(),
            client_id: request.id.clone(),
            progress_token: cx.progress_token().cloned(),
            peer: cx.peer().clone(),
        });
        let mut guard = RunningGuard {
            shared: &self.shared,
            child_id: child_id.clone(),
            answered: false,
        };
        let forwarded = Message::request(child_id, request.method, request.params);
        self.shared.write(&forwarded).await?;
        let answer = rx.await.unwrap_or_else(|_| Err(exited()));
        guard.answered = true;
        answer
    }

    async fn handle_notification(&self, notification: Notification, _cx: NotificationContext) {
        let mut notification = notification;
        if notification.method == "notifications/cancelled" {
            // The child knows the request under the id we gave it.
            let child_id = {
                let client_id = notification
                    .params
                    .as_ref()
                    .and_then(|p| p.get("requestId"))
                    .cloned();
                let running = lock(&self.shared.running);
                running
                    .iter()
                    .find(|r| Some(r.client_id.to_value()) == client_id)
                    .map(|r| r.child_id.to_value())
            };
            match (child_id, notification.params.as_mut()) {
                (Some(id), Some(Value::Object(params))) => {
                    params.insert("requestId".into(), id);
                }
                _ => return,
            }
        }
        let message = Message::Notification(notification);
        if self.shared.write(&message).await.is_err() {
            tracing::debug!(session = %self.shared.label, "notification for an exited child dropped");
        }
    }

    async fn close(&self) {
        // Held until the child has exited (or been killed), at every return below.
        let _slot = lock(&self.slot).take();
        self.shared.closing.store(true, Ordering::Release);
        // Counted as gone once it has exited (or been killed), at every return below.
        let _alive = Gone(&self.shared.alive);
        // Closing stdin asks a well-behaved server to exit.
        lock(&self.shared.stdin).take();
        lock(&self.shared.standalone).take();
        lock(&self.shared.running).clear();
        let Some(mut child) = self.child.lock().await.take() else {
            return;
        };
        if tokio::time::timeout(self.grace, child.wait()).await.is_ok() {
            return;
        }
        #[cfg(unix)]
        if let Some(pid) = child.id() {
            terminate(pid);
            if tokio::time::timeout(self.grace, child.wait()).await.is_ok() {
                return;
            }
        }
        tracing::warn!(session = %self.shared.label, "MCP server process did not exit; killing it");
        let _ = child.kill().await;
    }
}

/// Marks a child gone when dropped.
struct Gone<'a>(&'a AliveChild);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        self.0.gone();
    }
}

/// Sends SIGTERM.
#[cfg(unix)]
#[allow(unsafe_code)]
fn terminate(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a pid we spawned and have not reaped (the Child is still held, so
    // the pid cannot have been reused) and a valid signal number has no memory effects.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_bounded_lines() {
        let input: &[u8] = b"{\"a\":1}\n\n  \nlast";
        let mut reader = BufReader::new(input);
        let mut line = Vec::new();
        let mut lines = Vec::new();
        while let Some(read) = read_line(&mut reader, &mut line).await.unwrap() {
            assert_eq!(read, Line::Complete);
            lines.push(String::from_utf8(std::mem::take(&mut line)).unwrap());
        }
        assert_eq!(lines, ["{\"a\":1}", "", "  ", "last"]);
    }

    #[tokio::test]
    async fn overlong_lines_are_skipped_whole() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nok\n");
        let mut reader = BufReader::new(&input[..]);
        let mut line = Vec::new();
        let read = read_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(read, Some(Line::Overlong(Vec::new())));
        assert!(line.is_empty());
        read_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(line, b"ok");
    }

    /// The ids of an oversized line, whether the id comes before or after the bulk.
    #[tokio::test]
    async fn overlong_lines_yield_their_ids() {
        let bulk = "y".repeat(MAX_LINE);
        let head = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{{\"text\":\"{bulk}\",\"id\":99}}}}"
        );
        let tail = format!(
            "{{\"result\":{{\"text\":\"{bulk} \\\"id\\\":5\"}},\"jsonrpc\":\"2.0\", \"id\" : \"abc\"}}"
        );
        let input = format!("{head}\n{tail}\n{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{}}}}\n");
        let mut reader = BufReader::new(input.as_bytes());
        let mut line = Vec::new();
        let first = read_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(
            first,
            Some(Line::Overlong(vec![Skipped {
                id: Some(Id::Number(7)),
                has_method: false
            }]))
        );
        let second = read_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(
            second,
            Some(Line::Overlong(vec![Skipped {
                id: Some(Id::String("abc".into())),
                has_method: false
            }]))
        );
        assert_eq!(
            read_line(&mut reader, &mut line).await.unwrap(),
            Some(Line::Complete)
        );
    }

    fn scan(line: &str) -> Vec<Skipped> {
        let mut scanner = IdScanner::default();
        // Fed in small pieces: state carries across them.
        for piece in line.as_bytes().chunks(3) {
            scanner.feed(piece);
        }
        scanner.finish()
    }

    #[test]
    fn scanner_reads_ids_of_messages_and_batches() {
        assert_eq!(
            scan(
                r#"{"jsonrpc":"2.0","method":"sampling/createMessage","id":"srv-1","params":{"id":3}}"#
            ),
            [Skipped {
                id: Some(Id::String("srv-1".into())),
                has_method: true
            }]
        );
        assert_eq!(
            scan(
                r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"x":[1,{"id":2}]}}"#
            ),
            [Skipped {
                id: None,
                has_method: true
            }]
        );
        assert_eq!(
            scan(r#"[{"id":1,"result":{}},{"result":{"a":"}{]["},"id":2},{"method":"m"}]"#),
            [
                Skipped {
                    id: Some(Id::Number(1)),
                    has_method: false
                },
                Skipped {
                    id: Some(Id::Number(2)),
                    has_method: false
                },
                Skipped {
                    id: None,
                    has_method: true
                },
            ]
        );
        // Escaped quotes inside strings neither end them nor fake a member.
        assert_eq!(
            scan(r#"{"result":{"t":"\"id\":4, \\"},"id":5}"#),
            [Skipped {
                id: Some(Id::Number(5)),
                has_method: false
            }]
        );
        // Not JSON: nothing to answer.
        assert_eq!(scan("plain text, not JSON"), []);
    }
}
