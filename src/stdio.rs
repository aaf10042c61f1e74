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
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

/// The default grace period between closing stdin, SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The longest line accepted from a child: 16 MiB. Longer lines are dropped and logged.
const MAX_LINE: usize = 16 * 1024 * 1024;

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
        }
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

    /// The program and arguments, for logs.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Spawns the child and starts relaying.
    pub fn spawn(
        &self,
        session: Option<&SessionId>,
        closer: Option<SessionCloser>,
    ) -> std::io::Result<StdioServer> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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
        let label: Arc<str> = session.map_or_else(|| "-".into(), |s| s.as_str().into());
        let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_CAPACITY);
        let shared = Arc::new(Shared {
            label: label.clone(),
            stdin: Mutex::new(Some(stdin_tx)),
            pending: Mutex::new(HashMap::new()),
            running: Mutex::new(Vec::new()),
            standalone: Mutex::new(None),
            next_id: AtomicI64::new(1),
            exited: AtomicBool::new(false),
            closer,
        });
        tokio::spawn(write_stdin(stdin, stdin_rx, label.clone()));
        tokio::spawn(log_stderr(stderr, label));
        tokio::spawn(read_stdout(stdout, Arc::downgrade(&shared)));
        let child = Arc::new(tokio::sync::Mutex::new(Some(child)));
        Ok(StdioServer {
            shared,
            child,
            grace: self.grace,
        })
    }
}

impl MakeMcpService for StdioCommand {
    type Service = StdioServer;

    fn make_service(
        &self,
        cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<StdioServer, ErrorObject>> + Send {
        let spawned = self
            .spawn(cx.session_id(), cx.session_closer())
            .map_err(|e| {
                tracing::error!(command = %self.display(), error = %e, "cannot start the MCP server");
                ErrorObject::new(ErrorCode::INTERNAL_ERROR, "cannot start the MCP server process")
            });
        std::future::ready(spawned)
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
    closer: Option<SessionCloser>,
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
            Ok(Some(())) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(target: "mcp_proxy::child", "[{label}] {}", text.trim_end());
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes into `line` (without the
/// newline); `None` at end of input. A longer line is skipped to its end and reported as empty.
async fn read_line<R: AsyncBufReadExt + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    let mut overlong = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if line.is_empty() && !overlong {
                None
            } else {
                Some(())
            });
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1),
            None => (available, available.len()),
        };
        if !overlong {
            if line.len() + chunk.len() > MAX_LINE {
                overlong = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let found_newline = done > chunk.len();
        reader.consume(done);
        if found_newline {
            if overlong {
                tracing::warn!("dropped a line over {MAX_LINE} bytes from the child");
            }
            return Ok(Some(()));
        }
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
            Ok(Some(())) => {
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
        while let Some(()) = read_line(&mut reader, &mut line).await.unwrap() {
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
        read_line(&mut reader, &mut line).await.unwrap();
        assert!(line.is_empty());
        read_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(line, b"ok");
    }
}
