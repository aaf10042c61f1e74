//! Serve an [`McpService`] over stdio: newline-delimited JSON-RPC on stdin and stdout, the way
//! MCP clients run local servers as child processes (`mcp-proxy --stdio`).
//!
//! This is the other direction from [`crate::stdio`], which *spawns* stdio servers and puts them
//! on HTTP. [`serve`] reads any [`AsyncRead`] and writes any [`AsyncWrite`] (tests use in-memory
//! pipes) and runs one 2025-era session for the life of the connection, on the same
//! [`Session`] the HTTP transport uses, so a handler sees the same [`RequestContext`]: progress
//! and log notifications, [`Peer::request`] and [`RequestContext::ask`] (a server→client request
//! answered on stdin), [`Peer::standalone`] messages, cancellation.
//!
//! | input line | what happens |
//! |---|---|
//! | blank | ignored |
//! | not JSON | `-32700`, `"id": null` |
//! | JSON, not a JSON-RPC message | `-32600`, with the id when it can be read |
//! | a batch (array) | `-32600`: the official SDKs' stdio transports take single messages only |
//! | longer than the line limit ([`DEFAULT_MAX_LINE`]) | skipped to its end; `-32600`, `"id": null` |
//! | `initialize` | builds the service ([`MakeMcpService`]) and answers; the session starts if it succeeds |
//! | `initialize` again | `-32600` |
//! | `ping` before `initialize` | `{}` |
//! | another request before `initialize` | `-32000` |
//! | a request | runs concurrently with the others; its messages and its answer go out as they come |
//! | a notification | handed to the service in order; `notifications/cancelled` first stops the request (no answer) |
//! | a response or error | answers the server's waiting request |
//!
//! Every outgoing message is serialized once and written as one line by a single writer task,
//! in the order it was queued. Messages not related to a request (`list_changed`, resource
//! updates) go out as they come.
//!
//! # Limits
//!
//! At most [`DEFAULT_MAX_CONCURRENT_REQUESTS`] handlers run at once; later requests wait for a
//! slot. At most [`DEFAULT_MAX_PENDING_REQUESTS`] requests may be read and not yet answered;
//! at that bound reading pauses (the pipe fills and the client waits). Responses and
//! cancellations are read while requests wait, so handlers waiting for the client's answer
//! cannot block them.
//!
//! # End
//!
//! End of input ends the session: waiting server→client requests fail, the service's
//! [`close`](McpService::close) runs, running requests get a grace period to finish (default
//! [`DEFAULT_SHUTDOWN_GRACE`], then they are dropped), queued output is written, and [`serve`]
//! returns. It ends the same way, without waiting for end of input, when the service ends its
//! own session ([`SessionContext::session_closer`]) or when the output fails.
//!
//! # Example
//!
//! ```no_run
//! use mcp_tower_http::SessionContext;
//! use mcp_tower_http::everything::EverythingServer;
//!
//! # #[tokio::main]
//! # async fn main() -> std::io::Result<()> {
//! // Needs tokio's `io-std` feature for stdin and stdout.
//! let make = |_: &SessionContext<'_>| EverythingServer::new();
//! mcp_tower_http::stdio_server::serve(make, tokio::io::stdin(), tokio::io::stdout()).await
//! # }
//! ```

use crate::endpoint::{cancelled_request, client_of_initialize, close_erased};
use crate::jsonrpc::{
    ErrorCode, ErrorObject, Id, Message, Notification, ParseError, Payload, Request,
};
use crate::modern::RequestMeta;
use crate::protocol::ProtocolVersion;
use crate::service::{
    Context, MakeMcpService, McpService, NotificationContext, Peer, RequestContext, Route,
    SessionContext,
};
use crate::session::Session;
use crate::sse::StreamEvent;
use futures_util::FutureExt;
use futures_util::future::{Either, select};
use serde_json::{Value, json};
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::{JoinError, JoinHandle, JoinSet};

/// The longest input line accepted: 16 MiB. A longer line is skipped and answered with `-32600`.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// How many request handlers run at once.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 64;

/// How many requests may be read and not yet answered before reading pauses.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 1024;

/// How long running requests may finish after the session ends.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How many outgoing messages may wait for the writer before handlers wait.
const OUTPUT_CAPACITY: usize = 64;

const BUFFER: usize = 64 * 1024;

/// Serves one session of `make`'s service on `reader` and `writer` with the default settings;
/// see the [module docs](crate::stdio_server) and [`StdioServerConfig::serve`].
pub async fn serve<M, R, W>(make: M, reader: R, writer: W) -> io::Result<()>
where
    M: MakeMcpService,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    StdioServerConfig::new().serve(make, reader, writer).await
}

/// Settings of a stdio server; [`serve`](StdioServerConfig::serve) runs it.
#[derive(Clone, Debug)]
pub struct StdioServerConfig {
    max_line: usize,
    max_concurrent: usize,
    max_pending: usize,
    client_request_timeout: Duration,
    shutdown_grace: Duration,
}

impl Default for StdioServerConfig {
    fn default() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            max_concurrent: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_pending: DEFAULT_MAX_PENDING_REQUESTS,
            client_request_timeout: crate::endpoint::DEFAULT_CLIENT_REQUEST_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

impl StdioServerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest input line accepted, in bytes (default 16 MiB).
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line = bytes.max(1);
        self
    }

    /// How many request handlers run at once (default 64).
    pub fn max_concurrent_requests(mut self, n: usize) -> Self {
        self.max_concurrent = n.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How many requests may be read and not yet answered before reading pauses (default 1024).
    pub fn max_pending_requests(mut self, n: usize) -> Self {
        self.max_pending = n.clamp(1, Semaphore::MAX_PERMITS);
        self
    }

    /// How long a server→client request waits for the client's answer (default 60 s).
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.client_request_timeout = timeout;
        self
    }

    /// How long running requests may finish after the session ends, and queued output may
    /// drain (default 5 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Serves one session until end of input (or until the service ends its session, or the
    /// output fails), then closes it; see the [module docs](crate::stdio_server). `Ok` after a
    /// clean end; an error when reading or writing failed.
    pub async fn serve<M, R, W>(&self, make: M, reader: R, writer: W) -> io::Result<()>
    where
        M: MakeMcpService,
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, events) = mpsc::channel(OUTPUT_CAPACITY);
        let (stop, stopped) = oneshot::channel();
        let mut writer = tokio::spawn(write_lines(writer, events, stopped));
        let mut connection = Connection::new(self.clone(), make, out);
        let mut lines = Lines::new(reader, self.max_line);
        let end = connection.read(&mut lines, &mut writer).await;
        match &end {
            End::Eof => tracing::debug!("stdio: end of input"),
            End::Closed => tracing::debug!("stdio: the service ended its session"),
            End::Input(e) => tracing::warn!(error = %e, "stdio: reading the input failed"),
            End::Output(_) => {}
        }
        connection.shutdown().await;
        drop(connection);
        let (read, written) = match end {
            End::Output(e) => (Ok(()), Err(e)),
            End::Input(e) => (Err(e), self.drain(stop, writer).await),
            End::Eof | End::Closed => (Ok(()), self.drain(stop, writer).await),
        };
        if let Err(e) = &written {
            tracing::warn!(error = %e, "stdio: writing the output failed");
        }
        read.and(written)
    }

    /// Stops the writer once what is queued has been written, within the grace period.
    async fn drain(
        &self,
        stop: oneshot::Sender<()>,
        mut writer: JoinHandle<io::Result<()>>,
    ) -> io::Result<()> {
        let _ = stop.send(());
        match tokio::time::timeout(self.shutdown_grace, &mut writer).await {
            Ok(written) => joined(written),
            Err(_) => {
                writer.abort();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the output did not drain within the shutdown grace period",
                ))
            }
        }
    }
}

/// What woke the read loop.
enum Event {
    Input(io::Result<Next>),
    Output(Result<io::Result<()>, JoinError>),
    Closed,
}

/// Why reading stopped.
enum End {
    Eof,
    /// The service ended its own session.
    Closed,
    Input(io::Error),
    /// The writer stopped early: the output failed.
    Output(io::Error),
}

fn joined(result: Result<io::Result<()>, JoinError>) -> io::Result<()> {
    result.unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// The one session of a stdio connection.
struct Connection<M: MakeMcpService> {
    config: StdioServerConfig,
    make: M,
    /// What a [`SessionContext`] shows of "the request that opened the session": an empty one.
    parts: http::request::Parts,
    extensions: Arc<http::Extensions>,
    session: Arc<Session>,
    service: Option<Arc<M::Service>>,
    out: mpsc::Sender<StreamEvent>,
    /// Signalled when a session closes (checked against the current one).
    closed: Arc<Notify>,
    running: Arc<Semaphore>,
    pending: Arc<Semaphore>,
    /// Request handlers and the standalone relay.
    tasks: JoinSet<()>,
}

impl<M: MakeMcpService> Connection<M> {
    fn new(config: StdioServerConfig, make: M, out: mpsc::Sender<StreamEvent>) -> Self {
        let closed = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        let session = open_session(&out, &closed, &mut tasks);
        Self {
            running: Arc::new(Semaphore::new(config.max_concurrent)),
            pending: Arc::new(Semaphore::new(config.max_pending)),
            config,
            make,
            parts: http::Request::new(()).into_parts().0,
            extensions: Arc::new(http::Extensions::new()),
            session,
            service: None,
            out,
            closed,
            tasks,
        }
    }

    /// Reads and dispatches lines until the input ends, the session ends or the output fails.
    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        lines: &mut Lines<R>,
        writer: &mut JoinHandle<io::Result<()>>,
    ) -> End {
        loop {
            while self.tasks.try_join_next().is_some() {}
            // No tokio macros: the library builds without them.
            let event = {
                let mut next = pin!(lines.next());
                let mut closed = pin!(self.closed.notified());
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(written) = Pin::new(&mut *writer).poll(cx) {
                        return Poll::Ready(Event::Output(written));
                    }
                    if closed.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::Closed);
                    }
                    next.as_mut().poll(cx).map(Event::Input)
                })
                .await
            };
            let next = match event {
                Event::Input(next) => next,
                Event::Output(written) => {
                    // The writer stops early only when the output failed.
                    let error = joined(written)
                        .err()
                        .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into());
                    return End::Output(error);
                }
                Event::Closed if self.session.is_closed() => return End::Closed,
                // An earlier session (of a failed initialize) closed.
                Event::Closed => continue,
            };
            match next {
                Ok(Next::Line(line)) => self.line(&line).await,
                Ok(Next::TooLong) => {
                    let message = format!(
                        "Invalid Request: message longer than {} bytes",
                        self.config.max_line
                    );
                    self.reject(None, ErrorCode::INVALID_REQUEST, message).await;
                }
                Ok(Next::Eof) => return End::Eof,
                Err(e) => return End::Input(e),
            }
        }
    }

    async fn line(&mut self, line: &[u8]) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match Payload::parse(line) {
            Ok(Payload::Single(message)) => self.dispatch(message).await,
            Ok(Payload::Batch(_)) => {
                let message = "Invalid Request: batches are not supported over stdio";
                self.reject(None, ErrorCode::INVALID_REQUEST, message).await;
            }
            Err(ParseError::Syntax) => {
                let message = "Parse error: the line is not valid JSON";
                self.reject(None, ErrorCode::PARSE_ERROR, message).await;
            }
            Err(ParseError::Shape(e)) => {
                let message = format!("Invalid Request: {}", e.reason);
                self.reject(e.id, ErrorCode::INVALID_REQUEST, message).await;
            }
        }
    }

    async fn dispatch(&mut self, message: Message) {
        match message {
            Message::Request(request) if request.method == "initialize" => {
                self.initialize(request).await;
            }
            Message::Request(request) => match self.service.clone() {
                Some(service) => self.spawn_request(service, request).await,
                None if request.method == "ping" => {
                    self.write(Message::result(request.id, json!({}))).await;
                }
                None => {
                    let message = "Bad Request: Server not initialized";
                    self.reject(Some(request.id), ErrorCode::SERVER_ERROR, message)
                        .await;
                }
            },
            Message::Notification(notification) => self.notification(notification).await,
            Message::Response(response) => self.route_answer(response.id, Ok(response.result)),
            Message::Error(error) => match error.id {
                Some(id) => self.route_answer(id, Err(error.error)),
                None => {
                    tracing::debug!(error = %error.error, "stdio: client sent an error without id")
                }
            },
        }
    }

    /// Builds the service and runs `initialize` inline: nothing else of the session can run
    /// before it.
    async fn initialize(&mut self, request: Request) {
        if self.service.is_some() {
            let message = "Invalid Request: the session is already initialized";
            self.reject(Some(request.id), ErrorCode::INVALID_REQUEST, message)
                .await;
            return;
        }
        let requested = request
            .params
            .as_ref()
            .and_then(|p| p.get("protocolVersion"))
            .and_then(Value::as_str);
        let version = ProtocolVersion::negotiate(requested);
        let made = {
            let cx = SessionContext {
                session: Some(&self.session),
                parts: &self.parts,
                protocol_version: version,
            };
            self.make.make_service(&cx).await
        };
        let service = match made {
            Ok(service) => Arc::new(service),
            Err(error) => {
                self.write(Message::error(Some(request.id), error)).await;
                return;
            }
        };
        let client = client_of_initialize(request.params.as_ref(), version);
        let id = request.id.clone();
        let cx = self.request_context(&request, version);
        let handled = AssertUnwindSafe(service.handle_request(request, cx))
            .catch_unwind()
            .await;
        let answer = match handled {
            Ok(Ok(result)) => {
                // The server's answer decides the revision, as over HTTP.
                let version = result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .and_then(ProtocolVersion::parse)
                    .unwrap_or(version);
                self.session.set_client(RequestMeta {
                    protocol_version: version,
                    ..client
                });
                self.session
                    .initialize(version, service.clone(), close_erased::<M::Service>);
                self.service = Some(service);
                Message::result(id, result)
            }
            failed => {
                let error = match failed {
                    Ok(Err(error)) => error,
                    _ => {
                        tracing::error!(request = %id, "MCP initialize handler panicked");
                        ErrorObject::internal()
                    }
                };
                service.close().await;
                // The failed service may still end the session it was given (a child process
                // exiting, say): the next `initialize` gets a fresh one.
                let fresh = open_session(&self.out, &self.closed, &mut self.tasks);
                std::mem::replace(&mut self.session, fresh).close().await;
                Message::error(Some(id), error)
            }
        };
        self.write(answer).await;
    }

    async fn spawn_request(&mut self, service: Arc<M::Service>, request: Request) {
        // Never fails: the semaphore is not closed.
        let Ok(pending) = self.pending.clone().acquire_owned().await else {
            return;
        };
        let cx = self.request_context(&request, self.session.protocol_version());
        // Registered before the task runs, so a cancellation read next finds it.
        let cancelled = self.session.register_running(&request.id);
        let session = self.session.clone();
        let running = self.running.clone();
        let out = self.out.clone();
        self.tasks.spawn(async move {
            let answer = answer(&*service, request, cx, cancelled, &session, running).await;
            if let Some(answer) = answer {
                let _ = out.send(StreamEvent::Message(answer)).await;
            }
            drop::<OwnedSemaphorePermit>(pending);
        });
    }

    /// Handles a notification inline, so the next line sees its effect (`initialized` first).
    async fn notification(&mut self, notification: Notification) {
        let Some(service) = self.service.clone() else {
            tracing::debug!(method = %notification.method, "stdio: notification before initialize ignored");
            return;
        };
        if let Some(id) = cancelled_request(&notification) {
            self.session.cancel_running(&id);
        }
        let peer = Peer::new(
            Route::Standalone,
            Some(self.session.clone()),
            self.config.client_request_timeout,
        );
        let cx = NotificationContext {
            common: Context::new(
                Some(&self.session),
                self.session.protocol_version(),
                self.extensions.clone(),
                peer,
            ),
        };
        let handled = AssertUnwindSafe(service.handle_notification(notification, cx))
            .catch_unwind()
            .await;
        if handled.is_err() {
            tracing::error!("MCP notification handler panicked");
        }
    }

    fn route_answer(&self, id: Id, answer: Result<Value, ErrorObject>) {
        if !self.session.complete_client_request(&id, answer) {
            tracing::debug!(%id, "stdio: client answered a request nobody is waiting for");
        }
    }

    /// A handler's context: what it sends goes to the output in order with its answer.
    fn request_context(&self, request: &Request, version: ProtocolVersion) -> RequestContext {
        let peer = Peer::new(
            Route::Stream(self.out.clone()),
            Some(self.session.clone()),
            self.config.client_request_timeout,
        );
        RequestContext {
            id: request.id.clone(),
            progress_token: crate::jsonrpc::progress_token(request.params.as_ref()).cloned(),
            common: Context::new(Some(&self.session), version, self.extensions.clone(), peer),
            input: None,
        }
    }

    async fn reject(&self, id: Option<Id>, code: ErrorCode, message: impl Into<String>) {
        self.write(Message::error(id, ErrorObject::new(code, message)))
            .await;
    }

    async fn write(&self, message: Message) {
        // Fails only once the writer has stopped, which the read loop notices.
        let _ = self.out.send(StreamEvent::Message(message)).await;
    }

    /// Ends the session (waiting server→client requests fail, the service closes), then gives
    /// running requests the grace period to finish.
    async fn shutdown(&mut self) {
        self.session.close().await;
        let tasks = &mut self.tasks;
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                running = self.tasks.len(),
                "stdio: requests still running after the shutdown grace period are dropped"
            );
            self.tasks.shutdown().await;
        }
    }
}

/// A session whose standalone messages ([`Peer::standalone`]) go to the output, and whose end
/// signals `closed`.
fn open_session(
    out: &mpsc::Sender<StreamEvent>,
    closed: &Arc<Notify>,
    tasks: &mut JoinSet<()>,
) -> Arc<Session> {
    let session = Arc::new(Session::new(None, ProtocolVersion::LATEST));
    // Over HTTP these wait for a GET stream; here the output is always there. The channel
    // stays bounded (full: dropped, as over HTTP) and ends when the session closes.
    if let Some(mut standalone) = session.take_standalone() {
        let out = out.clone();
        tasks.spawn(async move {
            while let Some(event) = standalone.recv().await {
                if out.send(event).await.is_err() {
                    return;
                }
            }
        });
    }
    let closed = closed.clone();
    session.on_close(Box::new(move || {
        Box::pin(async move { closed.notify_one() }) as Pin<Box<dyn Future<Output = ()> + Send>>
    }));
    session
}

/// Runs one request when a slot is free, containing a panicking handler as `-32603`. `None`
/// when the client cancelled it (waiting or running): no answer is owed.
async fn answer<S: McpService>(
    service: &S,
    request: Request,
    cx: RequestContext,
    cancelled: oneshot::Receiver<()>,
    session: &Session,
    running: Arc<Semaphore>,
) -> Option<Message> {
    let id = request.id.clone();
    let work = async move {
        let _slot = running.acquire_owned().await;
        AssertUnwindSafe(service.handle_request(request, cx))
            .catch_unwind()
            .await
    };
    // The cancellation is looked at first: a request cancelled while it waited for a slot must
    // not start when the slot and the cancellation arrive together.
    let outcome = match select(cancelled, pin!(work)).await {
        Either::Left((Ok(()), _)) => None,
        // The session ended: nobody can cancel any more; finish the work.
        Either::Left((Err(_), work)) => Some(work.await),
        Either::Right((outcome, _)) => Some(outcome),
    };
    session.finish_running(&id);
    Some(match outcome? {
        Ok(Ok(result)) => Message::result(id, result),
        Ok(Err(error)) => Message::error(Some(id), error),
        Err(_) => {
            tracing::error!(request = %id, "MCP handler panicked");
            Message::error(Some(id), ErrorObject::internal())
        }
    })
}

/// Writes each queued message as one line, flushing when the queue is empty, until `stop`;
/// then writes what was queued by then.
async fn write_lines<W: AsyncWrite + Unpin>(
    writer: W,
    mut events: mpsc::Receiver<StreamEvent>,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<()> {
    let mut writer = BufWriter::with_capacity(BUFFER, writer);
    loop {
        let event = std::future::poll_fn(|cx| {
            if Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            events.poll_recv(cx)
        })
        .await;
        let Some(event) = event else { break };
        write_event(&mut writer, event).await?;
        if events.is_empty() {
            writer.flush().await?;
        }
    }
    // Bounded: a sender kept alive elsewhere cannot hold the writer open.
    for _ in 0..events.len() {
        match events.try_recv() {
            Ok(event) => write_event(&mut writer, event).await?,
            Err(_) => break,
        }
    }
    writer.flush().await
}

async fn write_event<W: AsyncWrite + Unpin>(writer: &mut W, event: StreamEvent) -> io::Result<()> {
    match event {
        StreamEvent::Message(message) => {
            // Compact JSON escapes newlines: one message, one line.
            let bytes = message.to_bytes();
            if bytes.is_empty() {
                return Ok(());
            }
            writer.write_all(&bytes).await?;
            writer.write_all(b"\n").await
        }
        // SSE polling has no meaning on a pipe.
        StreamEvent::CloseConnection { .. } => Ok(()),
    }
}

/// What [`Lines::next`] read.
enum Next {
    Line(Vec<u8>),
    /// A line over the limit, skipped to its end.
    TooLong,
    Eof,
}

/// `\n`-terminated lines of at most `max` bytes.
struct Lines<R> {
    input: BufReader<R>,
    line: Vec<u8>,
    overlong: bool,
    max: usize,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(input: R, max: usize) -> Self {
        Self {
            input: BufReader::with_capacity(BUFFER, input),
            line: Vec::new(),
            overlong: false,
            max,
        }
    }

    /// The next line (without its newline; the last one may lack it). Cancel-safe: a partly
    /// read line stays here for the next call.
    async fn next(&mut self) -> io::Result<Next> {
        loop {
            let available = self.input.fill_buf().await?;
            if available.is_empty() {
                if std::mem::take(&mut self.overlong) {
                    return Ok(Next::TooLong);
                }
                if self.line.is_empty() {
                    return Ok(Next::Eof);
                }
                return Ok(Next::Line(std::mem::take(&mut self.line)));
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            if !self.overlong {
                if self.line.len() + chunk.len() > self.max {
                    self.overlong = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let used = newline.map_or(available.len(), |i| i + 1);
            self.input.consume(used);
            if newline.is_some() {
                if std::mem::take(&mut self.overlong) {
                    return Ok(Next::TooLong);
                }
                return Ok(Next::Line(std::mem::take(&mut self.line)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::everything::EverythingServer;
    use crate::session::SessionCloser;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, DuplexStream};

    /// The bound on every wait of these tests.
    const WAIT: Duration = Duration::from_secs(5);

    /// The client end of a served pipe pair.
    struct Client {
        input: Option<DuplexStream>,
        output: tokio::io::Lines<BufReader<DuplexStream>>,
        served: JoinHandle<io::Result<()>>,
        /// Messages read while looking for another one.
        skipped: Vec<Value>,
    }

    fn start<M: MakeMcpService>(config: StdioServerConfig, make: M) -> Client {
        let (input, server_in) = tokio::io::duplex(BUFFER);
        let (server_out, output) = tokio::io::duplex(BUFFER);
        let served = tokio::spawn(async move { config.serve(make, server_in, server_out).await });
        Client {
            input: Some(input),
            output: BufReader::new(output).lines(),
            served,
            skipped: Vec::new(),
        }
    }

    fn everything() -> Client {
        start(StdioServerConfig::new(), |_: &SessionContext<'_>| {
            EverythingServer::new()
        })
    }

    impl Client {
        async fn send_raw(&mut self, bytes: &[u8]) {
            let input = self.input.as_mut().expect("input open");
            tokio::time::timeout(WAIT, input.write_all(bytes))
                .await
                .expect("write in time")
                .expect("write");
        }

        async fn send(&mut self, message: Value) {
            self.send_raw(format!("{message}\n").as_bytes()).await;
        }

        async fn request(&mut self, id: i64, method: &str, params: Value) {
            let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
            self.send(message).await;
        }

        async fn initialize(&mut self, version: &str) -> Value {
            let params = json!({
                "protocolVersion": version,
                "capabilities": { "sampling": {}, "roots": {} },
                "clientInfo": { "name": "stdio-test", "version": "0" },
            });
            self.request(1, "initialize", params).await;
            let answer = self.answer(1).await;
            self.send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
                .await;
            answer
        }

        /// The next line, as JSON.
        async fn recv(&mut self) -> Value {
            let line = tokio::time::timeout(WAIT, self.output.next_line())
                .await
                .expect("a line in time")
                .expect("read")
                .expect("a line before the end of output");
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        }

        /// The answer to `id`, keeping the messages before it in `skipped`.
        async fn answer(&mut self, id: impl Into<Value>) -> Value {
            let id = id.into();
            loop {
                let message = self.recv().await;
                if message["id"] == id && message.get("method").is_none() {
                    return message;
                }
                self.skipped.push(message);
            }
        }

        /// Closes the input; the rest of the output and how `serve` ended.
        async fn finish(mut self) -> (Vec<Value>, io::Result<()>) {
            self.input = None;
            self.rest().await
        }

        /// The rest of the output and how `serve` ended, with the input left as it is.
        async fn rest(mut self) -> (Vec<Value>, io::Result<()>) {
            let mut rest = Vec::new();
            loop {
                let line = tokio::time::timeout(WAIT, self.output.next_line())
                    .await
                    .expect("the output ends in time")
                    .expect("read");
                match line {
                    Some(line) => rest.push(serde_json::from_str(&line).expect("JSON line")),
                    None => break,
                }
            }
            let served = tokio::time::timeout(WAIT, self.served)
                .await
                .expect("serve returns in time")
                .expect("serve does not panic");
            (rest, served)
        }
    }

    /// What the probe service records.
    #[derive(Clone)]
    struct Probe {
        closed: Arc<AtomicBool>,
        dropped: Arc<AtomicUsize>,
        active: Arc<AtomicUsize>,
        max_active: Arc<AtomicUsize>,
        started: Arc<Mutex<Vec<Id>>>,
        gate: Arc<Semaphore>,
    }

    impl Default for Probe {
        fn default() -> Self {
            Self {
                closed: Arc::default(),
                dropped: Arc::default(),
                active: Arc::default(),
                max_active: Arc::default(),
                started: Arc::default(),
                gate: Arc::new(Semaphore::new(0)),
            }
        }
    }

    impl Probe {
        fn make(&self) -> impl MakeMcpService + use<> {
            let probe = self.clone();
            move |cx: &SessionContext<'_>| ProbeService {
                probe: probe.clone(),
                closer: cx.session_closer(),
            }
        }

        fn started(&self) -> Vec<Id> {
            self.started.lock().unwrap().clone()
        }
    }

    struct ProbeService {
        probe: Probe,
        closer: Option<SessionCloser>,
    }

    /// Counts a handler future dropped before it finished.
    struct DropCount(Arc<AtomicUsize>);

    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl McpService for ProbeService {
        async fn handle_request(
            &self,
            request: Request,
            cx: RequestContext,
        ) -> Result<Value, ErrorObject> {
            let probe = &self.probe;
            probe.started.lock().unwrap().push(request.id.clone());
            match request.method.as_str() {
                "initialize" => Ok(json!({
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "serverInfo": { "name": "probe", "version": "0" },
                })),
                "ping" => Ok(json!({})),
                "hang" => {
                    let _count = DropCount(probe.dropped.clone());
                    std::future::pending().await
                }
                "gated" => {
                    let now = probe.active.fetch_add(1, Ordering::SeqCst) + 1;
                    probe.max_active.fetch_max(now, Ordering::SeqCst);
                    if let Ok(permit) = probe.gate.acquire().await {
                        permit.forget();
                    }
                    probe.active.fetch_sub(1, Ordering::SeqCst);
                    Ok(json!({}))
                }
                "roots" => cx.peer().request("roots/list", None).await,
                "quit" => {
                    if let Some(closer) = &self.closer {
                        closer.close();
                    }
                    Ok(json!({}))
                }
                "panic" => panic!("this handler panics on purpose"),
                other => Err(ErrorObject::method_not_found(other)),
            }
        }

        async fn close(&self) {
            self.probe.closed.store(true, Ordering::SeqCst);
        }
    }

    async fn eventually(what: &str, condition: impl Fn() -> bool) {
        let waited = tokio::time::timeout(WAIT, async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "not within {WAIT:?}: {what}");
    }

    #[tokio::test]
    async fn initialize_then_tools_call_echo() {
        let mut client = everything();
        let init = client.initialize("2025-11-25").await;
        assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
        assert_eq!(
            init["result"]["serverInfo"]["name"],
            crate::everything::SERVER_NAME
        );
        client.request(2, "tools/list", json!({})).await;
        let tools = client.answer(2).await;
        let names: Vec<&str> = tools["result"]["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(names.contains(&"echo"), "{tools}");
        let params = json!({ "name": "echo", "arguments": { "text": "hello\nthere" } });
        client.request(3, "tools/call", params).await;
        let echoed = client.answer(3).await;
        assert_eq!(
            echoed["result"]["content"][0]["text"], "hello\nthere",
            "{echoed}"
        );
        let (_, served) = client.finish().await;
        served.expect("a clean end");
    }

    #[tokio::test]
    async fn only_ping_before_initialize_and_initialize_once() {
        let mut client = start(StdioServerConfig::new(), Probe::default().make());
        client.request(1, "ping", json!({})).await;
        assert_eq!(
            client.recv().await,
            json!({ "jsonrpc": "2.0", "id": 1, "result": {} })
        );
        client.request(2, "tools/list", json!({})).await;
        let refused = client.recv().await;
        assert_eq!(refused["id"], 2, "{refused}");
        assert_eq!(refused["error"]["code"], -32000, "{refused}");
        // A notification or a stray answer before initialize gets nothing back.
        client
            .send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        client
            .send(json!({ "jsonrpc": "2.0", "id": "srv-9", "result": {} }))
            .await;
        let init = client.initialize("2025-06-18").await;
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "{init}");
        client.request(3, "initialize", json!({})).await;
        let again = client.recv().await;
        assert_eq!(again["id"], 3, "{again}");
        assert_eq!(again["error"]["code"], -32600, "{again}");
        let (rest, served) = client.finish().await;
        assert_eq!(
            rest,
            Vec::<Value>::new(),
            "nothing answers the notifications"
        );
        served.expect("a clean end");
    }

    #[tokio::test]
    async fn sampling_round_trip_server_to_client_to_server() {
        let mut client = everything();
        client.initialize("2025-11-25").await;
        let params = json!({ "name": "test_sampling", "arguments": { "prompt": "say hi" } });
        client.request(7, "tools/call", params).await;
        let request = loop {
            let message = client.recv().await;
            if message.get("method").is_some() && message.get("id").is_some() {
                break message;
            }
        };
        assert_eq!(request["method"], "sampling/createMessage", "{request}");
        let answer = json!({
            "jsonrpc": "2.0",
            "id": request["id"],
            "result": { "role": "assistant", "model": "test", "content": { "type": "text", "text": "hi there" } },
        });
        client.send(answer).await;
        let result = client.answer(7).await;
        assert_eq!(
            result["result"]["content"][0]["text"], "LLM response: hi there",
            "{result}"
        );
        client.finish().await.1.expect("a clean end");
    }

    #[tokio::test]
    async fn progress_notifications_precede_the_answer() {
        let mut client = everything();
        client.initialize("2025-11-25").await;
        let params = json!({ "name": "test_tool_with_progress", "arguments": {}, "_meta": { "progressToken": "p1" } });
        client.request(4, "tools/call", params).await;
        let result = client.answer(4).await;
        assert_eq!(result["result"]["content"][0]["text"], "p1", "{result}");
        let progress: Vec<f64> = client
            .skipped
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .inspect(|m| assert_eq!(m["params"]["progressToken"], "p1", "{m}"))
            .filter_map(|m| m["params"]["progress"].as_f64())
            .collect();
        assert_eq!(progress, [0.0, 50.0, 100.0]);
        client.finish().await.1.expect("a clean end");
    }

    #[tokio::test]
    async fn messages_unrelated_to_requests_go_out() {
        let mut client = everything();
        client.initialize("2025-11-25").await;
        // The everything server adds a tool a moment after `initialized`, and says so.
        let changed = loop {
            let message = client.recv().await;
            if message.get("id").is_none() {
                break message;
            }
        };
        assert_eq!(
            changed["method"], "notifications/tools/list_changed",
            "{changed}"
        );
        client.finish().await.1.expect("a clean end");
    }

    #[tokio::test]
    async fn cancelled_request_stops_and_gets_no_answer() {
        let probe = Probe::default();
        let mut client = start(StdioServerConfig::new(), probe.make());
        client.initialize("2025-06-18").await;
        client.request(5, "hang", json!({})).await;
        eventually("the request runs", || {
            probe.started().contains(&Id::Number(5))
        })
        .await;
        let cancel = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": 5, "reason": "changed my mind" },
        });
        client.send(cancel).await;
        eventually("the handler is dropped", || {
            probe.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
        client.request(6, "ping", json!({})).await;
        assert_eq!(client.recv().await["id"], 6);
        let (rest, served) = client.finish().await;
        assert_eq!(
            rest,
            Vec::<Value>::new(),
            "no answer to the cancelled request"
        );
        served.expect("a clean end");
    }

    #[tokio::test]
    async fn malformed_lines_are_answered_and_skipped() {
        let mut client = start(
            StdioServerConfig::new().max_line_bytes(256),
            Probe::default().make(),
        );
        let long = format!("{}\n", "x".repeat(1000));
        let cases: [(&[u8], Value, i64); 7] = [
            (b"not json\n", Value::Null, -32700),
            (b"{\"jsonrpc\":\"2.0\",\"id\":\n", Value::Null, -32700),
            (b"\xff\xfe{}\n", Value::Null, -32700),
            (b"{\"jsonrpc\":\"2.0\",\"id\":3}\n", json!(3), -32600),
            (b"{\"id\":4,\"method\":\"ping\"}\n", json!(4), -32600),
            (
                b"[{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"ping\"}]\n",
                Value::Null,
                -32600,
            ),
            (long.as_bytes(), Value::Null, -32600),
        ];
        for (line, id, code) in cases {
            // Blank lines between them are ignored.
            client.send_raw(b"\n  \r\n").await;
            client.send_raw(line).await;
            let error = client.recv().await;
            let shown = String::from_utf8_lossy(line);
            assert_eq!(error["error"]["code"], code, "{shown}: {error}");
            assert_eq!(error["id"], id, "{shown}: {error}");
            assert!(error.get("result").is_none(), "{error}");
        }
        // Still in step: the next line is read whole.
        client.request(10, "ping", json!({})).await;
        assert_eq!(client.recv().await["id"], 10);
        // A line over the limit that ends the input (no newline) is refused too.
        client.send_raw(&[b'y'; 300]).await;
        let (rest, served) = client.finish().await;
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[0]["error"]["code"], -32600, "{rest:?}");
        served.expect("a clean end");
    }

    #[tokio::test]
    async fn panicking_handler_answers_internal_error() {
        let mut client = start(StdioServerConfig::new(), Probe::default().make());
        client.initialize("2025-06-18").await;
        client.request(2, "panic", json!({})).await;
        let error = client.answer(2).await;
        assert_eq!(error["error"]["code"], -32603, "{error}");
        client.request(3, "ping", json!({})).await;
        assert_eq!(client.answer(3).await["result"], json!({}));
        client.finish().await.1.expect("a clean end");
    }

    #[tokio::test]
    async fn end_of_input_fails_waiting_client_requests_and_closes_the_service() {
        let probe = Probe::default();
        let mut client = start(StdioServerConfig::new(), probe.make());
        client.initialize("2025-06-18").await;
        client.request(2, "roots", json!({})).await;
        let request = client.recv().await;
        assert_eq!(request["method"], "roots/list", "{request}");
        assert!(!probe.closed.load(Ordering::SeqCst));
        // The client goes away without answering: the handler's wait ends at once, not after
        // the 60 s client request timeout.
        let (rest, served) = client.finish().await;
        served.expect("a clean end");
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[0]["id"], 2, "{rest:?}");
        assert_eq!(rest[0]["error"]["code"], -32000, "{rest:?}");
        assert!(probe.closed.load(Ordering::SeqCst), "close() ran");
    }

    #[tokio::test]
    async fn a_service_ending_its_session_ends_serve() {
        let probe = Probe::default();
        let mut client = start(StdioServerConfig::new(), probe.make());
        client.initialize("2025-06-18").await;
        client.request(2, "quit", json!({})).await;
        // The input stays open: `serve` ends on its own.
        let input = client.input.take();
        let (rest, served) = client.rest().await;
        drop(input);
        served.expect("a clean end");
        assert_eq!(rest.len(), 1, "{rest:?}");
        assert_eq!(rest[0]["id"], 2, "{rest:?}");
        assert!(probe.closed.load(Ordering::SeqCst), "close() ran");
    }

    #[tokio::test]
    async fn a_failed_output_ends_serve_with_an_error() {
        let probe = Probe::default();
        let mut client = start(StdioServerConfig::new(), probe.make());
        client.initialize("2025-06-18").await;
        // The reader of the output goes away; the input stays open.
        let Client {
            input,
            output,
            served,
            ..
        } = client;
        drop(output);
        let mut input = input.expect("input open");
        input
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n")
            .await
            .expect("write");
        let served = tokio::time::timeout(WAIT, served)
            .await
            .expect("serve returns in time")
            .expect("serve does not panic");
        let error = served.expect_err("the output failed");
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe, "{error}");
        assert!(probe.closed.load(Ordering::SeqCst), "close() ran");
    }

    #[tokio::test]
    async fn concurrency_is_bounded_and_waiting_requests_can_be_cancelled() {
        let probe = Probe::default();
        let config = StdioServerConfig::new().max_concurrent_requests(2);
        let mut client = start(config, probe.make());
        client.initialize("2025-06-18").await;
        for id in 2..=5 {
            client.request(id, "gated", json!({})).await;
        }
        eventually("two handlers run", || {
            probe.active.load(Ordering::SeqCst) == 2
        })
        .await;
        // One of the two waiting is cancelled before it starts.
        let waiting = (2..=5)
            .find(|id| !probe.started().contains(&Id::Number(*id)))
            .expect("a waiting request");
        let cancel = json!({
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": { "requestId": waiting },
        });
        client.send(cancel).await;
        // Reading goes on while all slots are taken.
        client
            .send(json!({ "jsonrpc": "2.0", "id": "srv-1", "result": {} }))
            .await;
        probe.gate.add_permits(3);
        let mut answered = Vec::new();
        for _ in 0..3 {
            let answer = client.recv().await;
            answered.push(answer["id"].as_i64().expect("an id"));
        }
        answered.sort_unstable();
        let expected: Vec<i64> = (2..=5).filter(|id| *id != waiting).collect();
        assert_eq!(answered, expected);
        assert_eq!(probe.max_active.load(Ordering::SeqCst), 2);
        assert!(!probe.started().contains(&Id::Number(waiting)));
        let (rest, served) = client.finish().await;
        assert_eq!(rest, Vec::<Value>::new());
        served.expect("a clean end");
    }

    #[tokio::test]
    async fn a_failed_initialize_can_be_retried() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let counted = attempts.clone();
        let make = move |_: &SessionContext<'_>| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            FailFirst(n == 0)
        };
        struct FailFirst(bool);
        impl McpService for FailFirst {
            async fn handle_request(
                &self,
                request: Request,
                _cx: RequestContext,
            ) -> Result<Value, ErrorObject> {
                match request.method.as_str() {
                    "initialize" if self.0 => {
                        Err(ErrorObject::new(ErrorCode::INTERNAL_ERROR, "not ready"))
                    }
                    "initialize" => Ok(
                        json!({ "protocolVersion": "2025-03-26", "capabilities": {}, "serverInfo": { "name": "f", "version": "0" } }),
                    ),
                    _ => Ok(json!({ "ok": true })),
                }
            }
        }
        let mut client = start(StdioServerConfig::new(), make);
        let failed = client.initialize("2025-03-26").await;
        assert_eq!(failed["error"]["message"], "not ready", "{failed}");
        let init = client.initialize("2025-03-26").await;
        assert_eq!(init["result"]["protocolVersion"], "2025-03-26", "{init}");
        client.request(2, "anything", json!({})).await;
        assert_eq!(client.answer(2).await["result"]["ok"], true);
        assert_eq!(attempts.load(Ordering::SeqCst), 2);
        client.finish().await.1.expect("a clean end");
    }

    #[tokio::test]
    async fn lines_are_bounded_and_cancel_safe() {
        let input: &[u8] = b"{\"a\":1}\r\n\nxxxxxxxxxxxx\nok\nlast";
        let mut lines = Lines::new(input, 8);
        let mut seen = Vec::new();
        loop {
            match lines.next().await.unwrap() {
                Next::Line(line) => seen.push(String::from_utf8(line).unwrap()),
                Next::TooLong => seen.push("<too long>".to_owned()),
                Next::Eof => break,
            }
        }
        assert_eq!(seen, ["{\"a\":1}\r", "", "<too long>", "ok", "last"]);
    }
}
