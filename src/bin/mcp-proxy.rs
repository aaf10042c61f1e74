//! `mcp-proxy`: serve an MCP server over Streamable HTTP (and the legacy HTTP+SSE transport).
//!
//! With no command it serves the built-in "everything" server; with a command (after `--`, or
//! as the first positional argument as with the npm `mcp-proxy`) each session gets its own child
//! process speaking stdio, and 2026-07-28 requests share a pool of children (`--max-pooled`; see
//! the `stdio` module docs).
//!
//! Every option of the npm `mcp-proxy` CLI is accepted under its npm name too (auth and CORS
//! options are added separately), with npm's units where they differ (milliseconds).
//!
//! # Decisions
//!
//! - `--host` defaults to `127.0.0.1`, not npm's `::`: a proxy that can start arbitrary
//!   commands should not be reachable from the network unless asked to.
//! - `--request-timeout` (`--requestTimeout`) bounds each JSON-RPC request forwarded to the MCP
//!   server, as the npm proxy's `requestTimeout` bounds its upstream requests; the client gets a
//!   JSON-RPC error `-32001 Request timed out`. An HTTP-level timeout (tower-http's
//!   `TimeoutLayer`) would not bound SSE answers, whose headers go out at once, and would turn a
//!   JSON answer into a bare 408 without a JSON-RPC body.
//! - `--connection-timeout` (`--connectionTimeout`) bounds `initialize`, the handshake with the
//!   MCP server (npm: the initial connection to the server).
//! - `--keep-alive-timeout` (`--keepAliveTimeout`) closes connections with no request in flight
//!   for that long (idle HTTP/1 keep-alive, HTTP/2 with no open stream); the slow arrival of a
//!   request head is bounded separately by `--header-read-timeout`. Neither ever cuts a
//!   streaming response. See "Connections" below.
//! - `--ssl-ca` turns on client-certificate verification (mutual TLS): a client must present a
//!   certificate signed by that CA. The npm proxy accepts the CA but never verifies.
//!
//! - Environment variables named after npm options carry npm's units, so an npm set-up keeps
//!   working: `MCP_PROXY_SESSION_IDLE_TIMEOUT`, `MCP_PROXY_REQUEST_TIMEOUT`, ... are in
//!   milliseconds; our seconds options read `MCP_PROXY_..._SECS`. A command line option wins
//!   over an environment variable; the two spellings of one option on the same level are an
//!   error.
//!
//! - `--max-sessions` defaults to 10,000 with the built-in server (an idle session costs about
//!   0.5 KB of state and ~2 KB of RSS, so ~20 MB at the cap) and to 100 with a COMMAND, where
//!   every session is a child process (tens of MB each for a Node or Python server). Streamable
//!   HTTP and legacy SSE sessions count against the same cap, and with a COMMAND it is also the
//!   cap on child processes (stateless requests included). `0` means no cap.
//! - A session whose client sends nothing after the `initialize` answer ends after
//!   `--session-handshake-timeout` (60 s), not the 30-minute idle timeout; a legacy SSE stream
//!   whose client has not done so within it is closed.
//!
//! # Connections
//!
//! Every connection is watched from the moment it is accepted (after the TLS handshake, which
//! has 10 s):
//!
//! - its first request must have arrived, head complete, within `--header-read-timeout`
//!   (default 30 s): this closes sockets that send nothing, that drip the HTTP/2 preface or an
//!   HTTP/1 head, and HTTP/2 connections that open no stream;
//! - between requests, an HTTP/1 connection closes after `--keep-alive-timeout` (default 300 s,
//!   npm's) without a new request, and once the first byte of the next head has arrived, the
//!   head must be complete within `--header-read-timeout`;
//! - an HTTP/2 connection with no open stream for `--keep-alive-timeout` is closed with GOAWAY;
//!   while open it is pinged every `--http2-keep-alive-interval` (30 s) and closed if a ping
//!   is not answered within `--http2-keep-alive-timeout` (20 s), so a vanished peer does not
//!   hold an SSE stream forever;
//! - a request head (request line and headers; for HTTP/2 the decoded header list) over
//!   `--max-header-size` (32 KiB) gets 431 and the connection closes;
//! - at most `--max-connections` connections are open at once (default 10,000, or half the
//!   open-file limit if lower). At the limit the proxy stops accepting (new connections wait
//!   in the kernel's accept queue) and logs `connection limit reached` at most once a minute.
//!
//! A request's body and response are not timed here: the body is bounded by
//! `--max-body-size`, the answer by `--request-timeout`, SSE streams by keep-alive comments.
//! Cleartext HTTP/2 (h2c with prior knowledge) stays on, as before: it is what reverse proxies
//! speak to a backend, and the rules above bound it as tightly as HTTP/1. Behind TLS, HTTP/2 is
//! chosen by ALPN.
//!
//! # Graceful shutdown (SIGINT, SIGTERM)
//!
//! Within the grace period (`--graceful-shutdown-timeout`, default 5 s):
//!
//! 1. stop accepting connections and tell every connection to shut down gracefully (HTTP/1:
//!    no more keep-alive; HTTP/2: GOAWAY);
//! 2. wait for in-flight non-GET requests (POST answers, including SSE answer streams, and
//!    DELETEs) to finish, until `grace - min(grace / 2, 1 s)` (the rest is for step 3);
//! 3. fail the requests still running (JSON-RPC `-32000 mcp-proxy is shutting down`), close
//!    every session (their SSE streams end) and close every server concurrently: each stdio
//!    child gets EOF on stdin, then SIGTERM, then SIGKILL, a third of the teardown budget
//!    apart (`--graceful-shutdown-timeout 5` gives the children 333 ms per step; the same
//!    steps apply when a session ends by DELETE or expiry);
//! 4. wait for the connections to close, until the grace period ends; exit 0.
//!
//! Children still running when the process exits are killed (SIGKILL). A second signal skips
//! the waiting. Legacy HTTP+SSE requests are answered over their session's stream, not their
//! POST, so step 2 does not wait for them.

use bytes::Bytes;
use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use mcp_tower_http::auth::{
    ApiKeys, BoxAuthenticator, ChallengeLayer, Either, IntrospectionAuthenticator, JwksSource,
    JwtAuthenticator, ProtectedResourceMetadata, ScopePolicy,
};
use mcp_tower_http::cors::McpCors;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::jsonrpc::{ErrorCode, ErrorObject, Notification, Request as RpcRequest};
use mcp_tower_http::origin::OriginLayer;
use mcp_tower_http::session::SessionRegistry;
use mcp_tower_http::sse::{InMemoryEventStore, SseLayer};
use mcp_tower_http::stdio::{DEFAULT_GRACE, DEFAULT_MAX_POOLED, StdioCommand, StdioPool};
use mcp_tower_http::stdio_server::StdioServerConfig;
use mcp_tower_http::{
    MakeMcpService, McpService, McpStack, NotificationContext, RequestContext, SessionContext,
};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const NPM_NAMES: &str = "\
npm mcp-proxy option names (accepted too; milliseconds where npm uses them):
  --sseEndpoint, --streamEndpoint, --eventStore, --no-eventStore, --eventStoreMaxEvents,
  --maxBodySize (0: unlimited), --sslCert, --sslKey, --sslCa
  --sessionIdleTimeout MS     (MCP_PROXY_SESSION_IDLE_TIMEOUT, ms)
  --requestTimeout MS         (MCP_PROXY_REQUEST_TIMEOUT, ms)
  --connectionTimeout MS      (MCP_PROXY_CONNECTION_TIMEOUT, ms)
  --keepAliveTimeout MS       (MCP_PROXY_KEEP_ALIVE_TIMEOUT, ms)
  --gracefulShutdownTimeout MS (MCP_PROXY_GRACEFUL_SHUTDOWN_TIMEOUT, ms)
A command line option wins over an environment variable.

Durations: a number of seconds (1.5), or with a unit: 500ms, 30s, 5m, 1h. 0 disables a
timeout (a zero grace period shuts down at once).

Logging goes to stderr, without colours unless stderr is a terminal (and NO_COLOR is unset).
Its filter is --log-level, else --debug, else the RUST_LOG environment variable (same
syntax: `debug`, `mcp_tower_http=trace,info`, ...), else `info`.

A COMMAND starts at the first argument that is not an option; everything after it is passed
to the command. Put it after `--` when it starts with `-` or to make that plain:
  mcp-proxy --port 8080 -- npx -y @modelcontextprotocol/server-everything";

/// Serve an MCP server over Streamable HTTP and the legacy HTTP+SSE transport.
///
/// With no COMMAND, serves the built-in "everything" server (tools, resources, prompts,
/// completions, logging, plus `echo` and `add`). With a COMMAND, every session runs its own
/// child process speaking MCP over stdio.
#[derive(Debug, Parser)]
#[command(
    name = "mcp-proxy",
    version,
    after_help = NPM_NAMES,
    override_usage = "mcp-proxy [OPTIONS] [--] [COMMAND [ARGS]...]"
)]
struct Args {
    // ----- Server -----
    /// Address to listen on. The npm proxy listens on `::` (every interface); this one only on
    /// loopback unless told otherwise.
    #[arg(long, env = "MCP_PROXY_HOST", default_value = "127.0.0.1", value_parser = parse_host, help_heading = "Server")]
    host: IpAddr,

    /// Port to listen on; 0 picks any free port.
    #[arg(
        long,
        env = "MCP_PROXY_PORT",
        default_value_t = 8080,
        help_heading = "Server"
    )]
    port: u16,

    /// Which transports to serve: Streamable HTTP, legacy HTTP+SSE, or both.
    #[arg(long, env = "MCP_PROXY_SERVER", value_enum, default_value_t = Transports::Both, help_heading = "Server")]
    server: Transports,

    /// Path of the Streamable HTTP endpoint [default: /mcp].
    #[arg(
        long,
        alias = "streamEndpoint",
        env = "MCP_PROXY_STREAM_ENDPOINT",
        value_name = "PATH",
        help_heading = "Server"
    )]
    stream_endpoint: Option<String>,

    /// Path of the legacy SSE stream; clients POST to /messages [default: /sse].
    #[arg(
        long,
        alias = "sseEndpoint",
        env = "MCP_PROXY_SSE_ENDPOINT",
        value_name = "PATH",
        help_heading = "Server"
    )]
    sse_endpoint: Option<String>,

    /// The path of the one transport chosen with --server (of Streamable HTTP with both);
    /// --stream-endpoint and --sse-endpoint take precedence.
    #[arg(
        long,
        env = "MCP_PROXY_ENDPOINT",
        value_name = "PATH",
        help_heading = "Server"
    )]
    endpoint: Option<String>,

    // ----- TLS -----
    /// Serve HTTPS with this certificate chain (PEM); needs --ssl-key.
    #[arg(
        long,
        alias = "sslCert",
        env = "MCP_PROXY_SSL_CERT",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    ssl_cert: Option<PathBuf>,

    /// The private key of --ssl-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        alias = "sslKey",
        env = "MCP_PROXY_SSL_KEY",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    ssl_key: Option<PathBuf>,

    /// Require client certificates signed by these CA certificates (PEM): mutual TLS.
    #[arg(
        long,
        alias = "sslCa",
        env = "MCP_PROXY_SSL_CA",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    ssl_ca: Option<PathBuf>,

    // ----- Streamable HTTP -----
    /// Serve without sessions (GET and DELETE answer 405).
    #[arg(long, env = "MCP_PROXY_STATELESS", value_parser = BoolishValueParser::new(), help_heading = "Streamable HTTP")]
    stateless: bool,

    /// Answer POSTs with one JSON body instead of an SSE stream.
    #[arg(
        long,
        env = "MCP_PROXY_JSON_RESPONSE",
        value_parser = BoolishValueParser::new(),
        help_heading = "Streamable HTTP"
    )]
    json_response: bool,

    /// Keep sent events so clients can resume streams with Last-Event-ID (default: on).
    #[arg(
        long,
        alias = "eventStore",
        env = "MCP_PROXY_EVENT_STORE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        overrides_with = "no_event_store",
        help_heading = "Streamable HTTP"
    )]
    event_store: Option<bool>,

    /// Keep no events: no resumption, no event ids.
    #[arg(
        long,
        alias = "no-eventStore",
        overrides_with = "event_store",
        help_heading = "Streamable HTTP"
    )]
    no_event_store: bool,

    /// Events kept per session for resumption (oldest dropped first).
    #[arg(
        long,
        alias = "eventStoreMaxEvents",
        env = "MCP_PROXY_EVENT_STORE_MAX_EVENTS",
        default_value_t = 1000,
        value_name = "N",
        help_heading = "Streamable HTTP"
    )]
    event_store_max_events: usize,

    /// Largest accepted request body, in bytes; 0: unlimited.
    #[arg(
        long,
        alias = "maxBodySize",
        env = "MCP_PROXY_MAX_BODY_SIZE",
        default_value_t = 10_485_760,
        value_name = "BYTES",
        help_heading = "Streamable HTTP"
    )]
    max_body_size: usize,

    /// Interval of SSE keep-alive comments.
    #[arg(
        long,
        env = "MCP_PROXY_KEEP_ALIVE",
        default_value = "15",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Streamable HTTP"
    )]
    keep_alive: Duration,

    // ----- Sessions -----
    /// Close sessions idle (no request, no open stream) for this long.
    #[arg(
        long,
        env = "MCP_PROXY_SESSION_IDLE_TIMEOUT_SECS",
        default_value = "1800",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Sessions"
    )]
    session_idle_timeout: Duration,

    #[arg(
        long = "sessionIdleTimeout",
        env = "MCP_PROXY_SESSION_IDLE_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    session_idle_timeout_ms: Option<u64>,

    /// Refuse new sessions (503 + Retry-After) beyond this many, Streamable HTTP and legacy SSE
    /// together; with a COMMAND also the cap on child processes. 0: no cap. [default: 10000;
    /// 100 with a COMMAND]
    #[arg(
        long,
        env = "MCP_PROXY_MAX_SESSIONS",
        value_name = "N",
        help_heading = "Sessions"
    )]
    max_sessions: Option<usize>,

    /// End a session whose client sends nothing after the `initialize` answer (not even
    /// notifications/initialized) within this long; close a legacy SSE stream that has not
    /// got that far.
    #[arg(
        long,
        env = "MCP_PROXY_SESSION_HANDSHAKE_TIMEOUT_SECS",
        default_value = "60",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Sessions"
    )]
    session_handshake_timeout: Duration,

    // ----- Timeouts -----
    /// Longest wait for the MCP server's answer to one request; the client then gets
    /// JSON-RPC error -32001.
    #[arg(
        long,
        env = "MCP_PROXY_REQUEST_TIMEOUT_SECS",
        default_value = "300",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Timeouts"
    )]
    request_timeout: Duration,

    #[arg(
        long = "requestTimeout",
        env = "MCP_PROXY_REQUEST_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    request_timeout_ms: Option<u64>,

    /// Longest wait for the MCP server's answer to `initialize`.
    #[arg(
        long,
        env = "MCP_PROXY_CONNECTION_TIMEOUT_SECS",
        default_value = "60",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Timeouts"
    )]
    connection_timeout: Duration,

    #[arg(
        long = "connectionTimeout",
        env = "MCP_PROXY_CONNECTION_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    connection_timeout_ms: Option<u64>,

    /// Close a connection with no request in flight for this long (HTTP/1 keep-alive, HTTP/2
    /// with no open stream).
    #[arg(
        long,
        env = "MCP_PROXY_KEEP_ALIVE_TIMEOUT_SECS",
        default_value = "300",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Connections"
    )]
    keep_alive_timeout: Duration,

    #[arg(
        long = "keepAliveTimeout",
        env = "MCP_PROXY_KEEP_ALIVE_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    keep_alive_timeout_ms: Option<u64>,

    /// Close a connection whose first request has not fully arrived (head complete) this long
    /// after it was accepted (silent sockets, a dripped HTTP/2 preface, HTTP/2 without a
    /// stream), and an HTTP/1 connection whose next request head takes this long to arrive.
    #[arg(
        long,
        env = "MCP_PROXY_HEADER_READ_TIMEOUT_SECS",
        default_value = "30",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Connections"
    )]
    header_read_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger gets 431.
    #[arg(
        long,
        env = "MCP_PROXY_MAX_HEADER_SIZE",
        default_value_t = 32 * 1024,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u32).range(8192..),
        help_heading = "Connections"
    )]
    max_header_size: u32,

    /// Connections open at once; beyond, new ones wait to be accepted. 0: no cap. [default:
    /// 10000, or half the open-file limit if lower]
    #[arg(
        long,
        env = "MCP_PROXY_MAX_CONNECTIONS",
        value_name = "N",
        help_heading = "Connections"
    )]
    max_connections: Option<usize>,

    /// Interval of HTTP/2 PING frames on each connection; 0: no pings.
    #[arg(
        long,
        env = "MCP_PROXY_HTTP2_KEEP_ALIVE_INTERVAL_SECS",
        default_value = "30",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Connections"
    )]
    http2_keep_alive_interval: Duration,

    /// Close an HTTP/2 connection whose peer does not answer a PING within this long.
    #[arg(
        long,
        env = "MCP_PROXY_HTTP2_KEEP_ALIVE_TIMEOUT_SECS",
        default_value = "20",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Connections"
    )]
    http2_keep_alive_timeout: Duration,

    /// On SIGINT/SIGTERM, how long in-flight requests may finish before sessions, streams
    /// and child processes are closed and the process exits.
    #[arg(
        long,
        env = "MCP_PROXY_GRACEFUL_SHUTDOWN_TIMEOUT_SECS",
        default_value = "5",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Timeouts"
    )]
    graceful_shutdown_timeout: Duration,

    #[arg(
        long = "gracefulShutdownTimeout",
        env = "MCP_PROXY_GRACEFUL_SHUTDOWN_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    graceful_shutdown_timeout_ms: Option<u64>,

    // ----- Browser security -----
    /// Also accept browser requests from this origin (repeatable). Loopback origins are always
    /// accepted; requests without Origin (non-browser clients) too.
    #[arg(
        long = "allowed-origin",
        env = "MCP_PROXY_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ',',
        help_heading = "Browser security"
    )]
    allowed_origins: Vec<String>,

    /// Only accept these Host names (repeatable; loopback names always). Default: any Host.
    #[arg(
        long = "allowed-host",
        env = "MCP_PROXY_ALLOWED_HOST",
        value_name = "HOST",
        value_delimiter = ',',
        help_heading = "Browser security"
    )]
    allowed_hosts: Vec<String>,

    /// Also allow this request header in CORS preflights (repeatable), e.g. a custom auth
    /// header of a browser client. npm: --corsAddAllowedHeader.
    #[arg(
        long = "cors-allow-header",
        alias = "corsAddAllowedHeader",
        env = "MCP_PROXY_CORS_ALLOW_HEADER",
        value_name = "HEADER",
        value_delimiter = ',',
        help_heading = "Browser security"
    )]
    cors_allow_headers: Vec<String>,

    // ----- Authentication -----
    /// Require this API key (repeatable), in `X-API-Key` or `Authorization: Bearer`. npm: --apiKey.
    #[arg(
        long = "api-key",
        alias = "apiKey",
        env = "MCP_PROXY_API_KEY",
        value_name = "KEY",
        value_delimiter = ',',
        hide_env_values = true,
        help_heading = "Authentication"
    )]
    api_keys: Vec<String>,

    /// This server's resource identifier (its public MCP URL, such as `https://mcp.example.com/mcp`):
    /// the audience tokens must carry, and where the protected-resource metadata is served
    /// (/.well-known/oauth-protected-resource/PATH). Needed by the OAuth options.
    #[arg(
        long,
        env = "MCP_PROXY_RESOURCE",
        value_name = "URL",
        help_heading = "Authentication"
    )]
    resource: Option<String>,

    /// An OAuth authorization server that issues tokens for this resource (repeatable), listed in
    /// the protected-resource metadata.
    #[arg(
        long = "authorization-server",
        env = "MCP_PROXY_AUTHORIZATION_SERVER",
        value_name = "URL",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    authorization_servers: Vec<String>,

    /// Accept JWT access tokens signed with this HS256 secret.
    #[arg(
        long,
        env = "MCP_PROXY_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        help_heading = "Authentication"
    )]
    jwt_secret: Option<String>,

    /// Accept JWT access tokens signed (RS256/ES256) by a key of this JWKS, a file or an
    /// http(s) URL (cached, refetched on an unknown key id).
    #[arg(
        long,
        env = "MCP_PROXY_JWKS",
        value_name = "FILE_OR_URL",
        help_heading = "Authentication"
    )]
    jwks: Option<String>,

    /// Accept opaque access tokens that this RFC 7662 introspection endpoint says are active and
    /// issued for --resource (answers cached briefly).
    #[arg(
        long,
        env = "MCP_PROXY_INTROSPECTION_URL",
        value_name = "URL",
        help_heading = "Authentication"
    )]
    introspection_url: Option<String>,

    /// Every request needs this scope (repeatable); missing → 403 insufficient_scope.
    #[arg(
        long = "required-scope",
        env = "MCP_PROXY_REQUIRED_SCOPE",
        value_name = "SCOPE",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    required_scopes: Vec<String>,

    /// `tools/call` of TOOL needs SCOPE (repeatable); missing → 403 insufficient_scope.
    #[arg(
        long = "tool-scope",
        value_name = "TOOL=SCOPE",
        value_parser = parse_env_pair,
        help_heading = "Authentication"
    )]
    tool_scopes: Vec<(String, String)>,

    // ----- Child process -----
    /// Set an environment variable for the child, on top of the proxy's own (repeatable).
    #[arg(
        long = "env",
        value_name = "KEY=VALUE",
        value_parser = parse_env_pair,
        help_heading = "Child process"
    )]
    child_env: Vec<(String, String)>,

    /// Working directory of the child.
    #[arg(
        long,
        env = "MCP_PROXY_CWD",
        value_name = "DIR",
        help_heading = "Child process"
    )]
    cwd: Option<PathBuf>,

    /// Run the COMMAND through the shell, as npm mcp-proxy --shell does: the command and its
    /// arguments are joined with spaces and run by `/bin/sh -c` (pipes, variables and quoting
    /// are the shell's).
    #[arg(
        long,
        env = "MCP_PROXY_SHELL",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        help_heading = "Child process"
    )]
    shell: Option<bool>,

    // ----- Logging -----
    /// The log filter: a level (error, warn, info, debug, trace) or RUST_LOG directives such
    /// as `mcp_tower_http=debug,info`. Wins over --debug and RUST_LOG. [default: RUST_LOG,
    /// else info]
    #[arg(
        long,
        env = "MCP_PROXY_LOG_LEVEL",
        value_name = "FILTER",
        help_heading = "Logging"
    )]
    log_level: Option<String>,

    /// Verbose logs (npm mcp-proxy's --debug): debug level for the proxy, info for libraries.
    #[arg(
        long,
        env = "MCP_PROXY_DEBUG",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        help_heading = "Logging"
    )]
    debug: Option<bool>,

    #[command(flatten)]
    pool: PoolArgs,

    /// Serve the sessionless 2026-07-28 revision beside the 2025 ones on the same endpoint
    /// (default: on).
    #[arg(
        long,
        env = "MCP_PROXY_MODERN",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
        overrides_with = "no_modern",
        help_heading = "Streamable HTTP"
    )]
    modern: Option<bool>,

    /// Serve only the 2025 revisions: 2026-07-28 requests get 400 and dual-era clients fall back
    /// to `initialize`.
    #[arg(long, overrides_with = "modern", help_heading = "Streamable HTTP")]
    no_modern: bool,

    // ----- npm options that are not supported -----
    /// Not supported: tunnels are out of scope; put a tunnel or reverse proxy in front.
    #[arg(
        long,
        env = "MCP_PROXY_TUNNEL",
        value_name = "VALUE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        help_heading = "Unsupported npm options"
    )]
    tunnel: Option<String>,

    /// Serve the built-in server on stdin/stdout (newline-delimited JSON-RPC) instead of HTTP:
    /// one session, logs on stderr, exit when stdin closes. HTTP options are ignored.
    #[arg(long, help_heading = "Server")]
    stdio: bool,

    /// A stdio MCP server to serve instead of the built-in one (one child per session; 2026-07-28
    /// requests share a pool of children). It starts at the first argument that is not an
    /// option; everything after it is its own.
    // No `allow_hyphen_values`: an unknown option before the command is an error, not the
    // command (`mcp-proxy --debgu --port 0` must not run `--debgu`).
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    command: Vec<String>,
}

/// The transports `mcp-proxy` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Transports {
    /// Streamable HTTP only.
    Stream,
    /// Legacy HTTP+SSE only.
    Sse,
    /// Both.
    Both,
}

/// Parses `--host`: an IP address, or `localhost`.
fn parse_host(s: &str) -> Result<IpAddr, String> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().map_err(|_| {
        format!("`{s}` is not an IP address (names other than localhost are not resolved)")
    })
}

/// Parses a duration: seconds (`30`, `1.5`) or a number with a unit (`500ms`, `30s`, `5m`, `1h`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 30, 1.5, 500ms, 30s, 5m, 1h)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

/// How a COMMAND serves 2026-07-28 clients: a pool of children, one request per child at a
/// time (see the README's proxy section).
#[derive(clap::Args, Clone, Debug)]
struct PoolArgs {
    /// 2026-07-28 clients share a pool of children, one request per child at a time: at most
    /// this many children (across principals; sessions of 2025 clients have their own).
    #[arg(
        long,
        env = "MCP_PROXY_MAX_POOLED",
        default_value_t = DEFAULT_MAX_POOLED,
        value_name = "N",
        help_heading = "Child process"
    )]
    max_pooled: usize,

    /// Close a pooled child idle for this long.
    #[arg(
        long,
        env = "MCP_PROXY_POOL_IDLE_TIMEOUT_SECS",
        default_value = "60",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Child process"
    )]
    pool_idle_timeout: Duration,

    /// How long a pooled child's sampling, elicitation or roots request waits for the
    /// 2026-07-28 client to retry with its answer; then the child's request fails.
    #[arg(
        long,
        env = "MCP_PROXY_INPUT_TIMEOUT_SECS",
        default_value = "600",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Child process"
    )]
    input_timeout: Duration,

    /// How long a 2026-07-28 request waits for a free pooled child when all are busy.
    #[arg(
        long,
        env = "MCP_PROXY_POOL_WAIT_SECS",
        default_value = "30",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Child process"
    )]
    pool_wait: Duration,
}

impl PoolArgs {
    fn apply(&self, command: StdioCommand) -> StdioCommand {
        command
            .max_pooled(self.max_pooled)
            .pool_idle_timeout(self.pool_idle_timeout)
            .input_timeout(self.input_timeout)
            .pool_wait(self.pool_wait)
    }
}

/// Parses `--env KEY=VALUE`.
fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `None` for a zero duration (meaning "never").
fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// The settings after resolving npm names, units and precedence.
#[derive(Debug)]
struct Config {
    host: IpAddr,
    port: u16,
    server: Transports,
    stream_endpoint: String,
    sse_endpoint: String,
    stateless: bool,
    modern: bool,
    json_response: bool,
    event_store: bool,
    event_store_max_events: usize,
    max_body_size: usize,
    keep_alive: Option<Duration>,
    session_idle_timeout: Option<Duration>,
    session_handshake_timeout: Option<Duration>,
    max_sessions: Option<usize>,
    request_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
    connections: ConnConfig,
    graceful_shutdown_timeout: Duration,
    allowed_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    cors_allow_headers: Vec<String>,
    auth: AuthConfig,
    tls: Option<TlsFiles>,
    child_env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    shell: bool,
    pool: PoolArgs,
    command: Vec<String>,
    log_filter: LogFilter,
}

/// The connection flags; see "Connections" in the module docs.
#[derive(Clone, Copy, Debug)]
struct ConnConfig {
    header_read_timeout: Option<Duration>,
    keep_alive_timeout: Option<Duration>,
    max_header_size: u32,
    max_connections: Option<usize>,
    http2_keep_alive_interval: Option<Duration>,
    http2_keep_alive_timeout: Duration,
}

/// Where the log filter comes from.
#[derive(Debug)]
enum LogFilter {
    /// `--log-level`, or `debug` for `--debug`.
    Given(String),
    /// `RUST_LOG`, else `info`.
    Environment,
}

/// The session cap with the built-in server: an idle session is ~0.5 KB of state, ~2 KB of RSS.
const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// The session cap with a COMMAND: each session is a child process.
const DEFAULT_MAX_SESSIONS_COMMAND: usize = 100;
/// The connection cap when the open-file limit is high (or unknown).
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// What `--debug` logs.
const DEBUG_FILTER: &str = "mcp_proxy=debug,mcp_tower_http=debug,info";

/// The default connection cap: 10,000, or half the open-file limit, leaving the other half for
/// child pipes, the listener and files.
fn default_max_connections() -> usize {
    open_file_limit().map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
        usize::try_from(limit / 2)
            .unwrap_or(usize::MAX)
            .clamp(1, DEFAULT_MAX_CONNECTIONS)
    })
}

/// The soft `RLIMIT_NOFILE`, if there is one.
#[cfg(unix)]
#[allow(unsafe_code)]
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the one `rlimit` it is given a pointer to.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on most targets, not all
    (read && limit.rlim_cur != libc::RLIM_INFINITY).then(|| u64::from(limit.rlim_cur))
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// The authentication flags.
#[derive(Debug, Default)]
struct AuthConfig {
    api_keys: Vec<String>,
    resource: Option<String>,
    authorization_servers: Vec<String>,
    jwt_secret: Option<String>,
    jwks: Option<String>,
    introspection_url: Option<String>,
    required_scopes: Vec<String>,
    tool_scopes: Vec<(String, String)>,
}

/// What the authentication flags configure on the stack.
struct AuthSetup {
    authenticator: Option<BoxAuthenticator>,
    metadata: Option<ProtectedResourceMetadata>,
    scopes: ScopePolicy,
}

impl AuthConfig {
    /// Builds the authenticator (API keys, JWT and introspection accepted together), the
    /// protected-resource metadata and the scope policy; errors are configuration mistakes.
    fn build(&self) -> Result<AuthSetup, String> {
        let oauth = self.jwt_secret.is_some()
            || self.jwks.is_some()
            || self.introspection_url.is_some()
            || !self.authorization_servers.is_empty();
        if oauth && self.resource.is_none() {
            return Err("--jwt-secret, --jwks, --introspection-url and --authorization-server need --resource (the audience tokens must carry)".into());
        }
        let mut authenticators = Vec::new();
        if !self.api_keys.is_empty() {
            let keys = self
                .api_keys
                .iter()
                .filter(|k| !k.is_empty())
                .fold(ApiKeys::new(), |keys, key| keys.key(key));
            authenticators.push(BoxAuthenticator::new(keys));
        }
        if let Some(resource) = &self.resource {
            if self.jwt_secret.is_some() || self.jwks.is_some() {
                let mut jwt = JwtAuthenticator::new(resource.clone());
                if let Some(secret) = &self.jwt_secret {
                    jwt = jwt.hs256_secret(secret);
                }
                if let Some(jwks) = &self.jwks {
                    let source = if jwks.starts_with("http://") || jwks.starts_with("https://") {
                        JwksSource::url(jwks)
                    } else {
                        JwksSource::file(jwks)
                    };
                    jwt = jwt.jwks(source.map_err(|e| format!("--jwks: {e}"))?);
                }
                authenticators.push(BoxAuthenticator::new(jwt));
            }
            if let Some(url) = &self.introspection_url {
                let introspection = IntrospectionAuthenticator::new(url, resource.clone())
                    .map_err(|e| format!("--introspection-url: {e}"))?;
                authenticators.push(BoxAuthenticator::new(introspection));
            }
        }
        let authenticator = authenticators
            .into_iter()
            .reduce(|accepted, next| BoxAuthenticator::new(Either::new(accepted, next)));
        if authenticator.is_none()
            && (!self.required_scopes.is_empty() || !self.tool_scopes.is_empty())
        {
            return Err("--required-scope and --tool-scope need an authentication option".into());
        }
        let metadata = match &self.resource {
            Some(resource) => {
                let metadata = ProtectedResourceMetadata::new(resource.clone())
                    .map_err(|e| format!("--resource: {e}"))?
                    .scopes_supported(self.required_scopes.iter().cloned());
                Some(
                    self.authorization_servers
                        .iter()
                        .fold(metadata, |m, server| m.authorization_server(server.clone())),
                )
            }
            None => None,
        };
        let mut scopes = ScopePolicy::new().require(self.required_scopes.iter().cloned());
        for (tool, scope) in &self.tool_scopes {
            scopes = scopes.tool(tool.clone(), [scope.clone()]);
        }
        Ok(AuthSetup {
            authenticator,
            metadata,
            scopes,
        })
    }
}

#[derive(Debug)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: Option<PathBuf>,
}

/// Picks between our option (`ours`, a duration) and the npm one (`npm`, milliseconds): the
/// one given on the command line wins over the environment, which wins over our default.
fn pick_duration(
    matches: &ArgMatches,
    (ours_id, ours_flag, ours): (&str, &str, Duration),
    (npm_id, npm_flag, npm): (&str, &str, Option<u64>),
) -> Result<Duration, String> {
    let Some(ms) = npm else {
        return Ok(ours);
    };
    let ours_source = matches.value_source(ours_id);
    let npm_source = matches.value_source(npm_id);
    if ours_source == npm_source {
        let how = match npm_source {
            Some(ValueSource::EnvVariable) => "environment variables",
            _ => "options",
        };
        return Err(format!(
            "--{ours_flag} (seconds) and --{npm_flag} (milliseconds) set the same thing; give only one of these {how}"
        ));
    }
    if ours_source > npm_source {
        Ok(ours)
    } else {
        Ok(Duration::from_millis(ms))
    }
}

impl Config {
    fn resolve(args: Args, matches: &ArgMatches) -> Result<Self, String> {
        let session_idle_timeout = pick_duration(
            matches,
            (
                "session_idle_timeout",
                "session-idle-timeout",
                args.session_idle_timeout,
            ),
            (
                "session_idle_timeout_ms",
                "sessionIdleTimeout",
                args.session_idle_timeout_ms,
            ),
        )?;
        let request_timeout = pick_duration(
            matches,
            ("request_timeout", "request-timeout", args.request_timeout),
            (
                "request_timeout_ms",
                "requestTimeout",
                args.request_timeout_ms,
            ),
        )?;
        let connection_timeout = pick_duration(
            matches,
            (
                "connection_timeout",
                "connection-timeout",
                args.connection_timeout,
            ),
            (
                "connection_timeout_ms",
                "connectionTimeout",
                args.connection_timeout_ms,
            ),
        )?;
        let keep_alive_timeout = pick_duration(
            matches,
            (
                "keep_alive_timeout",
                "keep-alive-timeout",
                args.keep_alive_timeout,
            ),
            (
                "keep_alive_timeout_ms",
                "keepAliveTimeout",
                args.keep_alive_timeout_ms,
            ),
        )?;
        let graceful_shutdown_timeout = pick_duration(
            matches,
            (
                "graceful_shutdown_timeout",
                "graceful-shutdown-timeout",
                args.graceful_shutdown_timeout,
            ),
            (
                "graceful_shutdown_timeout_ms",
                "gracefulShutdownTimeout",
                args.graceful_shutdown_timeout_ms,
            ),
        )?;

        // npm: --endpoint names the path of the single transport chosen with --server.
        let stream_endpoint = args
            .stream_endpoint
            .or_else(|| {
                args.endpoint
                    .clone()
                    .filter(|_| args.server != Transports::Sse)
            })
            .unwrap_or_else(|| "/mcp".to_owned());
        let sse_endpoint = args
            .sse_endpoint
            .or_else(|| args.endpoint.filter(|_| args.server == Transports::Sse))
            .unwrap_or_else(|| "/sse".to_owned());
        for (flag, path) in [
            ("--stream-endpoint", &stream_endpoint),
            ("--sse-endpoint", &sse_endpoint),
        ] {
            if !path.starts_with('/') {
                return Err(format!("{flag} must start with '/' (got `{path}`)"));
            }
        }
        if args.server == Transports::Both && stream_endpoint == sse_endpoint {
            return Err(format!(
                "the Streamable HTTP and SSE endpoints are both `{stream_endpoint}`; give them different paths or pick one with --server"
            ));
        }

        let tls = match (args.ssl_cert, args.ssl_key, args.ssl_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), ca) => Some(TlsFiles { cert, key, ca }),
            _ => return Err("TLS needs both --ssl-cert and --ssl-key".to_owned()),
        };

        let shell = args.shell.unwrap_or(false);
        if args.command.is_empty() && (!args.child_env.is_empty() || args.cwd.is_some() || shell) {
            return Err(
                "--env, --cwd and --shell apply to a COMMAND, and none was given".to_owned(),
            );
        }
        let max_sessions = match args.max_sessions {
            None if args.command.is_empty() => Some(DEFAULT_MAX_SESSIONS),
            None => Some(DEFAULT_MAX_SESSIONS_COMMAND),
            Some(0) => None,
            Some(n) => Some(n),
        };
        let log_filter = match (args.log_level, args.debug) {
            (Some(filter), _) => LogFilter::Given(filter),
            (None, Some(true)) => LogFilter::Given(DEBUG_FILTER.to_owned()),
            _ => LogFilter::Environment,
        };

        if let Some(tunnel) = &args.tunnel
            && !matches!(
                tunnel.to_ascii_lowercase().as_str(),
                "" | "false" | "0" | "no" | "off" | "n" | "f"
            )
        {
            return Err(
                "--tunnel is not supported: run a tunnel (cloudflared, ngrok, ...) or a reverse proxy in front of mcp-proxy"
                    .to_owned(),
            );
        }
        Ok(Self {
            host: args.host,
            port: args.port,
            server: args.server,
            stream_endpoint,
            sse_endpoint,
            stateless: args.stateless,
            modern: !args.no_modern && args.modern.unwrap_or(true),
            json_response: args.json_response,
            event_store: !args.no_event_store && args.event_store.unwrap_or(true),
            event_store_max_events: args.event_store_max_events,
            max_body_size: match args.max_body_size {
                0 => usize::MAX,
                n => n,
            },
            keep_alive: nonzero(args.keep_alive),
            session_idle_timeout: nonzero(session_idle_timeout),
            session_handshake_timeout: nonzero(args.session_handshake_timeout),
            max_sessions,
            request_timeout: nonzero(request_timeout),
            connection_timeout: nonzero(connection_timeout),
            connections: ConnConfig {
                header_read_timeout: nonzero(args.header_read_timeout),
                keep_alive_timeout: nonzero(keep_alive_timeout),
                max_header_size: args.max_header_size,
                max_connections: match args.max_connections {
                    None => Some(default_max_connections()),
                    Some(0) => None,
                    Some(n) => Some(n),
                },
                http2_keep_alive_interval: nonzero(args.http2_keep_alive_interval),
                http2_keep_alive_timeout: args.http2_keep_alive_timeout,
            },
            graceful_shutdown_timeout,
            allowed_origins: args.allowed_origins,
            allowed_hosts: args.allowed_hosts,
            cors_allow_headers: args.cors_allow_headers,
            auth: AuthConfig {
                api_keys: args.api_keys,
                resource: args.resource,
                authorization_servers: args.authorization_servers,
                jwt_secret: args.jwt_secret,
                jwks: args.jwks,
                introspection_url: args.introspection_url,
                required_scopes: args.required_scopes,
                tool_scopes: args.tool_scopes,
            },
            tls,
            child_env: args.child_env,
            cwd: args.cwd,
            shell,
            pool: args.pool,
            command: args.command,
            log_filter,
        })
    }
}

/// Parses the command line; an unknown option is an error naming it, with the hint that a
/// command goes after `--` (exit 2).
fn parse_args() -> (Args, ArgMatches) {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let matches = match Args::command().try_get_matches() {
        Ok(matches) => matches,
        Err(mut e) => {
            if e.kind() == ErrorKind::UnknownArgument {
                let tip = match e.get(ContextKind::SuggestedArg) {
                    // clap found a close match: that is the likelier fix.
                    Some(_) => None,
                    None => Some(
                        "to run a command that takes this option, put the command after `--`: \
                         mcp-proxy [OPTIONS] -- COMMAND [ARGS]..."
                            .to_owned(),
                    ),
                };
                if let Some(tip) = tip {
                    e.insert(
                        ContextKind::Suggested,
                        ContextValue::StyledStrs(vec![tip.into()]),
                    );
                }
            }
            // Exit code 2 for usage errors, 0 for --help and --version.
            e.exit();
        }
    };
    match Args::from_arg_matches(&matches) {
        Ok(args) => (args, matches),
        Err(e) => e.exit(),
    }
}

/// Logs to stderr, in colour only on a terminal.
fn init_logging(filter: &LogFilter) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        LogFilter::Given(directives) => EnvFilter::builder()
            .parse(directives)
            .map_err(|e| format!("--log-level `{directives}`: {e}"))?,
        LogFilter::Environment => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        }
    };
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .init();
    Ok(())
}

fn main() -> ExitCode {
    let (args, matches) = parse_args();
    if args.stdio {
        return serve_stdio(&args);
    }
    let config = match Config::resolve(args, &matches) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config.log_filter) {
        eprintln!("mcp-proxy: {e}");
        return ExitCode::from(2);
    }
    let tls = match config.tls.as_ref().map(load_tls).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mcp-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = match config.command.split_first() {
        Some((program, rest)) => {
            let command = if config.shell {
                // As Node's spawn with `shell: true`: joined with spaces, no quoting.
                StdioCommand::shell(config.command.join(" "))
            } else {
                StdioCommand::new(program).args(rest)
            };
            let mut command = command
                .grace_period(child_grace(config.graceful_shutdown_timeout))
                // One child per session: the session cap is the process cap (stateless
                // requests, which get a child each, included; 2026-07-28 requests share the
                // pool, bounded by --max-pooled).
                .max_processes(config.max_sessions);
            for (key, value) in &config.child_env {
                command = command.env(key, value);
            }
            if let Some(cwd) = &config.cwd {
                command = command.current_dir(cwd);
            }
            let command = config.pool.apply(command);
            let pool = command.pool();
            tracing::info!(command = %command.display(), "serving a stdio MCP server");
            runtime.block_on(serve(&config, tls, command, Some(pool)))
        }
        None => runtime.block_on(serve(
            &config,
            tls,
            |_: &SessionContext<'_>| EverythingServer::new(),
            None,
        )),
    };
    // Tasks still running (connections, relays) are dropped here; children still alive get
    // SIGKILL as their handles drop.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

// ----- TLS -----

/// Reads the certificate, key and optional client CA into a rustls acceptor.
fn load_tls(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read {what} file '{}': {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "no PEM certificate in {what} file '{}'",
                path.display()
            ));
        }
        Ok(certs)
    }

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("cannot read key file '{}': {e}", files.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match &files.ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca, "CA")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in '{}': {e}", ca.display()))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("cannot use CA file '{}': {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

// ----- Per-session servers: timeouts, shutdown, closing -----

/// Shared by the proxy and every session's server.
#[derive(Clone, Debug)]
struct Lifecycle {
    /// Turns `true` when shutdown tears sessions down: requests still running fail at once.
    stopping: watch::Receiver<bool>,
    /// Servers whose `close` (for a stdio child: EOF, SIGTERM, SIGKILL) has not finished.
    closing: InFlight,
}

/// Wraps every session's server: each request is bounded in time, fails when the proxy stops,
/// and `close` runs in the background (so closing many sessions is concurrent and a DELETE
/// need not wait for the child to exit).
struct Managed<M> {
    inner: M,
    request: Option<Duration>,
    initialize: Option<Duration>,
    lifecycle: Lifecycle,
}

impl<M: MakeMcpService> MakeMcpService for Managed<M> {
    type Service = ManagedService<M::Service>;

    fn make_service(
        &self,
        cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<Self::Service, ErrorObject>> + Send {
        let made = self.inner.make_service(cx);
        let (request, initialize) = (self.request, self.initialize);
        let lifecycle = self.lifecycle.clone();
        async move {
            Ok(ManagedService {
                inner: Arc::new(made.await?),
                request,
                initialize,
                lifecycle,
            })
        }
    }
}

struct ManagedService<S> {
    inner: Arc<S>,
    request: Option<Duration>,
    initialize: Option<Duration>,
    lifecycle: Lifecycle,
}

impl<S: McpService> ManagedService<S> {
    async fn bounded(&self, request: RpcRequest, cx: RequestContext) -> Result<Value, ErrorObject> {
        tracing::debug!(method = %request.method, id = %request.id, "MCP request");
        let limit = if request.method == "initialize" {
            self.initialize
        } else {
            self.request
        };
        let Some(limit) = limit else {
            return self.inner.handle_request(request, cx).await;
        };
        let method = request.method.clone();
        match tokio::time::timeout(limit, self.inner.handle_request(request, cx)).await {
            Ok(answer) => answer,
            Err(_) => {
                let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(%method, timeout_ms = ms, "request to the MCP server timed out");
                Err(
                    ErrorObject::new(ErrorCode::REQUEST_TIMEOUT, "Request timed out")
                        .with_data(serde_json::json!({ "timeout": ms })),
                )
            }
        }
    }
}

impl<S: McpService> McpService for ManagedService<S> {
    async fn handle_request(
        &self,
        request: RpcRequest,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let mut stopping = self.lifecycle.stopping.clone();
        let stopped = async move {
            if stopping.wait_for(|stop| *stop).await.is_err() {
                // The proxy is gone without stopping: nothing will ever stop us.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            answer = self.bounded(request, cx) => answer,
            () = stopped => Err(ErrorObject::new(ErrorCode::SERVER_ERROR, "mcp-proxy is shutting down")),
        }
    }

    fn handle_notification(
        &self,
        notification: Notification,
        cx: NotificationContext,
    ) -> impl Future<Output = ()> + Send {
        self.inner.handle_notification(notification, cx)
    }

    async fn close(&self) {
        let inner = self.inner.clone();
        let guard = self.lifecycle.closing.enter();
        let close = async move {
            inner.close().await;
            drop(guard);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(close);
            }
            Err(_) => close.await,
        }
    }
}

// ----- In-flight requests, for graceful shutdown -----

/// Counts requests whose work is not done: every non-GET request until its response body has
/// ended (an SSE answer stream ends with the answer). GETs (standalone and legacy SSE streams,
/// `/ping`) are not counted: they only end when their session does.
#[derive(Clone, Debug)]
struct InFlight(Arc<InFlightState>);

/// A counter that only wakes anyone once shutdown waits for it to drain: the per-request cost is
/// two atomic operations.
#[derive(Debug, Default)]
struct InFlightState {
    count: AtomicUsize,
    draining: AtomicBool,
    idle: Notify,
}

impl InFlight {
    fn new() -> Self {
        Self(Arc::default())
    }

    fn enter(&self) -> InFlightGuard {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.0.clone())
    }

    fn count(&self) -> usize {
        self.0.count.load(Ordering::Acquire)
    }

    async fn idle(&self) {
        self.0.draining.store(true, Ordering::Release);
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a guard dropped in between still wakes us.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct InFlightGuard(Arc<InFlightState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let was = self.0.count.fetch_sub(1, Ordering::AcqRel);
        if was == 1 && self.0.draining.load(Ordering::Acquire) {
            self.0.idle.notify_waiters();
        }
    }
}

/// The stack with in-flight accounting around it: the process-wide count of requests for
/// graceful shutdown, and the requests of one connection for its idle rules.
#[derive(Clone, Debug)]
struct Tracked<S> {
    inner: S,
    in_flight: InFlight,
    /// The connection this clone serves (`None` on the shared template).
    connection: Option<Arc<Activity>>,
}

impl<S: Clone> Tracked<S> {
    /// A clone that also counts the requests of one connection.
    fn for_connection(&self, activity: Arc<Activity>) -> Self {
        Self {
            inner: self.inner.clone(),
            in_flight: self.in_flight.clone(),
            connection: Some(activity),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<Request<Incoming>> for Tracked<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let guard = (req.method() != Method::GET).then(|| self.in_flight.enter());
        let request = self.connection.as_ref().map(Activity::begin);
        // The request log of --debug; nothing is copied unless it is on.
        let logged = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            if let Some((method, path)) = logged {
                tracing::debug!(%method, path, status = response.status().as_u16(), "HTTP request");
            }
            Ok(response.map(|inner| TrackedBody {
                inner,
                guard,
                request,
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts as in flight until it ends or is dropped.
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlightGuard>,
        request: Option<RequestGuard>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard.take();
            this.request.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ----- Connections: the rules of "Connections" in the module docs -----

/// The HTTP/2 connection preface, which a cleartext HTTP/2 client sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How an HTTP/2 connection closed for idleness may take to send GOAWAY and close.
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// How connections are served and when they are closed.
#[derive(Debug)]
struct ConnSettings {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    header_read_timeout: Option<Duration>,
    keep_alive_timeout: Option<Duration>,
}

impl ConnSettings {
    fn new(config: &ConnConfig) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            // hyper's timer starts when the connection goes idle, so it cannot tell keep-alive
            // from a slow head; the watchdog below times both.
            .header_read_timeout(None)
            .max_header_size(config.max_header_size as usize);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(config.max_header_size)
            .keep_alive_interval(config.http2_keep_alive_interval)
            .keep_alive_timeout(config.http2_keep_alive_timeout);
        Self {
            http1,
            http2,
            header_read_timeout: config.header_read_timeout,
            keep_alive_timeout: config.keep_alive_timeout,
        }
    }
}

/// The cap on open connections: a permit per connection, waited for before `accept`.
struct ConnectionLimit {
    slots: Option<Arc<Semaphore>>,
    max: usize,
    last_warning: Option<Instant>,
}

impl ConnectionLimit {
    fn new(max: Option<usize>) -> Self {
        Self {
            slots: max.map(|n| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS)))),
            max: max.unwrap_or(usize::MAX),
            last_warning: None,
        }
    }

    /// Room for one more connection (`None` without a cap); at the cap, waits for a connection
    /// to close, saying so in the log at most once a minute.
    async fn acquire(&mut self) -> Option<OwnedSemaphorePermit> {
        let slots = self.slots.as_ref()?;
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self
            .last_warning
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
        {
            tracing::warn!(
                max_connections = self.max,
                "connection limit reached: new connections wait until one closes (--max-connections)"
            );
            self.last_warning = Some(Instant::now());
        }
        slots.clone().acquire_owned().await.ok()
    }
}

/// Why a connection is closed by its watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// No complete first request within the header-read timeout.
    FirstRequest,
    /// An HTTP/1 request head took longer than the header-read timeout.
    Header,
    /// No request in flight for the keep-alive timeout.
    Idle,
}

impl Expiry {
    fn reason(self) -> &'static str {
        match self {
            Self::FirstRequest => "no complete request within the header-read timeout",
            Self::Header => "request head not complete within the header-read timeout",
            Self::Idle => "idle for the keep-alive timeout",
        }
    }
}

/// No HTTP/1 head has started arriving since the connection went idle.
const NO_HEAD: u64 = u64::MAX;

/// What one connection is doing, shared by its reader, its requests and its watchdog. Times are
/// milliseconds since the connection was accepted.
#[derive(Debug)]
struct Activity {
    accepted: Instant,
    /// Requests whose response has not ended.
    in_flight: AtomicUsize,
    /// A first request has arrived.
    started: AtomicBool,
    http2: AtomicBool,
    /// When the last response ended.
    idle_since: AtomicU64,
    /// When the first bytes of the next HTTP/1 head arrived, or [`NO_HEAD`].
    head_started: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NO_HEAD),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Bytes arrived: on an idle HTTP/1 connection they start the next head.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && !self.http2.load(Ordering::Relaxed)
            && self.head_started.load(Ordering::Relaxed) == NO_HEAD
        {
            self.head_started.store(self.now(), Ordering::Release);
        }
    }

    /// A request arrived (its head is complete).
    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if !self.started.load(Ordering::Relaxed) {
            self.started.store(true, Ordering::Release);
        }
        self.head_started.store(NO_HEAD, Ordering::Release);
        RequestGuard(self.clone())
    }

    /// When the connection is due to close and why; `None` while a request is in flight.
    fn deadline(&self, settings: &ConnSettings) -> Option<(u64, Expiry)> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = if !self.started.load(Ordering::Acquire) {
            Some((0, Expiry::FirstRequest))
        } else if self.http2.load(Ordering::Relaxed) {
            None
        } else {
            match self.head_started.load(Ordering::Acquire) {
                NO_HEAD => None,
                at => Some((at, Expiry::Header)),
            }
        };
        if let (Some((from, why)), Some(limit)) = (head, settings.header_read_timeout) {
            return Some((from.saturating_add(ms(limit)), why));
        }
        let idle_since = self.idle_since.load(Ordering::Acquire);
        settings
            .keep_alive_timeout
            .map(|limit| (idle_since.saturating_add(ms(limit)), Expiry::Idle))
    }
}

/// A request of a connection, until its response ends.
#[derive(Debug)]
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        // Stamped before the count drops, so a watchdog that sees no request in flight sees
        // when the last one ended.
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when the connection is due to close. It re-reads the connection's state at its
/// deadline, and at least every `min(header-read, keep-alive)` timeout, so requests need not
/// wake it: closing on time costs them a few atomic operations.
async fn watchdog(activity: &Activity, settings: &ConnSettings) -> Expiry {
    let period = [settings.header_read_timeout, settings.keep_alive_timeout]
        .into_iter()
        .flatten()
        .min();
    let Some(period) = period else {
        return std::future::pending().await;
    };
    let period = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    loop {
        let now = activity.now();
        let wake = match activity.deadline(settings) {
            Some((at, why)) if at <= now => return why,
            Some((at, _)) => at.min(now.saturating_add(period)),
            None => now.saturating_add(period),
        };
        tokio::time::sleep_until(activity.accepted + Duration::from_millis(wake)).await;
    }
}

/// One accepted connection and what it needs to be served.
struct Connection<S> {
    peer: SocketAddr,
    service: Tracked<S>,
    settings: Arc<ConnSettings>,
    /// Turns `true` when the proxy shuts down.
    draining: watch::Receiver<bool>,
    _counted: InFlightGuard,
    /// Its room under `--max-connections`.
    _permit: Option<OwnedSemaphorePermit>,
}

impl<S, B> Connection<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Detects the protocol and serves the connection until it ends or its watchdog closes it.
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            service,
            settings,
            mut draining,
            ..
        } = self;
        let activity = Arc::new(Activity::new());
        let mut io = Watched {
            io,
            activity: activity.clone(),
        };
        let detected = tokio::select! {
            detected = detect(&mut io) => detected,
            expiry = watchdog(&activity, &settings) => {
                tracing::debug!(%peer, "closing connection: {}", expiry.reason());
                return;
            }
            () = drained(&mut draining) => return,
        };
        let (http2, prefix) = match detected {
            Ok(Some(detected)) => detected,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection failed before its first request");
                return;
            }
        };
        activity.http2.store(http2, Ordering::Release);
        let io = TokioIo::new(Prefixed { prefix, io });
        let service = TowerToHyperService::new(service.for_connection(activity.clone()));
        let ended = if http2 {
            let connection = settings.http2.serve_connection(io, service);
            drive(connection, &activity, &settings, draining, |c| {
                c.graceful_shutdown()
            })
            .await
        } else {
            let connection = settings.http1.serve_connection(io, service);
            drive(connection, &activity, &settings, draining, |c| {
                c.graceful_shutdown()
            })
            .await
        };
        match ended {
            Ok(Some(expiry)) => {
                tracing::debug!(%peer, "closing connection: {}", expiry.reason());
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        }
    }
}

/// Runs a hyper connection: shuts it down gracefully when the proxy drains, closes it when its
/// watchdog says so (HTTP/2 first sends GOAWAY). `Some` names why the watchdog closed it.
async fn drive<C, E>(
    connection: C,
    activity: &Activity,
    settings: &ConnSettings,
    mut draining: watch::Receiver<bool>,
    graceful: impl Fn(Pin<&mut C>),
) -> Result<Option<Expiry>, E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            ended = connection.as_mut() => return ended.map(|()| None),
            expiry = watchdog(activity, settings) => {
                // No stream is open: HTTP/2 says goodbye (GOAWAY) and closes at once. An
                // HTTP/1 connection is dropped: it is idle or has half a head, nothing to finish.
                if activity.http2.load(Ordering::Relaxed) {
                    graceful(connection.as_mut());
                    let _ = tokio::time::timeout(GOAWAY_GRACE, connection.as_mut()).await;
                }
                return Ok(Some(expiry));
            }
            () = drained(&mut draining), if !shutting_down => {
                shutting_down = true;
                graceful(connection.as_mut());
            }
        }
    }
}

/// Resolves once the proxy drains its connections (or is gone).
async fn drained(draining: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, not held across an await.
    let _ = draining.wait_for(|stop| *stop).await;
}

/// Reads the first bytes, as far as they can be the HTTP/2 preface: `(true, preface)` for
/// cleartext HTTP/2, `(false, bytes)` for HTTP/1, `None` if the peer closed without a byte.
async fn detect<I: AsyncRead + Unpin>(io: &mut I) -> std::io::Result<Option<(bool, Bytes)>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < buf.len() {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok((filled > 0).then(|| (false, Bytes::copy_from_slice(&buf[..filled]))));
        }
        filled += n;
        if buf[..filled] != H2_PREFACE[..filled] {
            return Ok(Some((false, Bytes::copy_from_slice(&buf[..filled]))));
        }
    }
    Ok(Some((true, Bytes::copy_from_slice(&buf))))
}

pin_project_lite::pin_project! {
    /// A connection's stream with the bytes read during protocol detection put back in front.
    struct Prefixed<I> {
        prefix: Bytes,
        #[pin]
        io: I,
    }
}

impl<I: AsyncRead> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

pin_project_lite::pin_project! {
    /// A connection's stream that tells its [`Activity`] when bytes arrive.
    struct Watched<I> {
        #[pin]
        io: I,
        activity: Arc<Activity>,
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        polled
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

// ----- Serving -----

async fn serve<M: MakeMcpService>(
    config: &Config,
    tls: Option<TlsAcceptor>,
    make: M,
    pool: Option<StdioPool>,
) -> std::io::Result<()> {
    // Signal handlers first, so a signal during start-up is not lost.
    let mut signals = Signals::new();

    let mut origin = OriginLayer::localhost();
    for allowed in &config.allowed_origins {
        origin = origin.allow_origin(allowed);
    }
    if !config.allowed_hosts.is_empty() {
        origin = origin.allow_hosts(&config.allowed_hosts);
    }
    let sse = if config.event_store {
        SseLayer::new().event_store(
            InMemoryEventStore::new().max_events_per_session(config.event_store_max_events),
        )
    } else {
        SseLayer::new().without_event_store()
    };
    let (stop, stopping) = watch::channel(false);
    let closing = InFlight::new();
    let make = Managed {
        inner: make,
        request: config.request_timeout,
        initialize: config.connection_timeout,
        lifecycle: Lifecycle {
            stopping,
            closing: closing.clone(),
        },
    };
    let mut cors = McpCors::new();
    for allowed in &config.allowed_origins {
        cors = cors.allow_origin(allowed);
    }
    for header in &config.cors_allow_headers {
        cors = cors.allow_header(header);
    }
    let auth = config.auth.build().map_err(std::io::Error::other)?;
    let mut stack = McpStack::new(make)
        .endpoint_path(config.stream_endpoint.clone())
        .streamable_http(config.server != Transports::Sse)
        .cors(cors)
        .scopes(auth.scopes);
    if let Some(authenticator) = auth.authenticator {
        stack = stack.authenticate(authenticator);
    }
    if let Some(metadata) = auth.metadata {
        tracing::info!(
            url = metadata.metadata_url(),
            "serving protected-resource metadata"
        );
        // The 401 challenge names the scopes every request needs (spec: SHOULD).
        let challenge = ChallengeLayer::for_metadata(&metadata)
            .scope(config.auth.required_scopes.iter().cloned());
        stack = stack.protected_resource(metadata).challenge(challenge);
    }
    if config.server != Transports::Stream {
        stack = stack.legacy_sse(config.sse_endpoint.clone(), "/messages");
    }
    // `sse` before the JSON mode and keep-alive, which it would otherwise reset.
    let service = stack
        .origin(origin)
        .sse(sse)
        .stateless(config.stateless)
        .modern(config.modern)
        .json_response(config.json_response)
        .max_body_size(config.max_body_size)
        .session_idle_timeout(config.session_idle_timeout)
        .session_handshake_timeout(config.session_handshake_timeout)
        .max_sessions(config.max_sessions)
        .keep_alive(config.keep_alive)
        .into_service();
    let sessions = service.sessions().clone();
    let legacy_sessions = service.legacy_sessions().clone();
    let in_flight = InFlight::new();
    let service = Tracked {
        inner: service,
        in_flight: in_flight.clone(),
        connection: None,
    };
    let settings = Arc::new(ConnSettings::new(&config.connections));
    let mut limit = ConnectionLimit::new(config.connections.max_connections);
    let connections = InFlight::new();
    let (drain, draining) = watch::channel(false);

    let listener = TcpListener::bind(SocketAddr::new(config.host, config.port)).await?;
    let local = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let path = match config.server {
        Transports::Sse => &config.sse_endpoint,
        _ => &config.stream_endpoint,
    };
    // SocketAddr prints IPv6 hosts in brackets: http://[::1]:8080/mcp.
    println!("mcp-proxy listening on {scheme}://{local}{path}");
    if config.server == Transports::Both {
        tracing::info!(
            "legacy HTTP+SSE at {scheme}://{local}{}",
            config.sse_endpoint
        );
    }

    let signal = loop {
        // Room for one more connection first: at the limit, connections wait in the backlog.
        let permit = tokio::select! {
            permit = limit.acquire() => permit,
            signal = signals.recv() => break signal,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            signal = signals.recv() => break signal,
        };
        // SSE frames are small writes: without NODELAY, Nagle + delayed ACK add ~40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let connection = Connection {
            peer,
            service: service.clone(),
            settings: settings.clone(),
            draining: draining.clone(),
            _counted: connections.enter(),
            _permit: permit,
        };
        match &tls {
            None => {
                tokio::spawn(connection.serve(stream));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    };
    drop(listener);
    shutdown(
        signal,
        config.graceful_shutdown_timeout,
        Teardown {
            connections,
            drain,
            in_flight,
            stop,
            sessions,
            legacy_sessions,
            closing,
            pool,
        },
        &mut signals,
    )
    .await;
    Ok(())
}

/// What the shutdown acts on.
struct Teardown {
    /// The open connections.
    connections: InFlight,
    /// Tells every connection to shut down gracefully.
    drain: watch::Sender<bool>,
    in_flight: InFlight,
    stop: watch::Sender<bool>,
    sessions: Arc<SessionRegistry>,
    legacy_sessions: Arc<SessionRegistry>,
    closing: InFlight,
    /// The children serving 2026-07-28 requests, with a COMMAND.
    pool: Option<StdioPool>,
}

/// The part of the grace period kept for closing sessions and children.
fn teardown_budget(grace: Duration) -> Duration {
    (grace / 2).min(Duration::from_secs(1))
}

/// The wait between a child's stdin EOF and SIGTERM, and between SIGTERM and SIGKILL: short
/// enough that both fit in the teardown budget of a shutdown.
fn child_grace(grace: Duration) -> Duration {
    (teardown_budget(grace) / 3).clamp(Duration::from_millis(50), DEFAULT_GRACE)
}

/// Runs the graceful shutdown described in the module docs.
async fn shutdown(
    signal: &'static str,
    grace: Duration,
    teardown: Teardown,
    signals: &mut Signals,
) {
    let Teardown {
        connections,
        drain,
        in_flight,
        stop,
        sessions,
        legacy_sessions,
        closing,
        pool,
    } = teardown;
    let deadline = Instant::now() + grace;
    tracing::info!(
        signal,
        grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        in_flight = in_flight.count(),
        sessions = sessions.len() + legacy_sessions.len(),
        "shutting down"
    );
    // Idle connections close now; busy ones after their current response (no keep-alive).
    drain.send_replace(true);

    let mut forced = false;
    tokio::select! {
        () = in_flight.idle() => {}
        () = tokio::time::sleep_until(deadline - teardown_budget(grace)) => {
            tracing::warn!(in_flight = in_flight.count(), "requests still running at the end of the grace period; failing them");
        }
        signal = signals.recv() => {
            tracing::warn!(signal, "second signal: exiting now");
            forced = true;
        }
    }

    // Requests still running answer "shutting down"; closing the sessions ends every SSE stream
    // and starts closing every child (stdin EOF, then SIGTERM, then SIGKILL) in the background.
    // This runs even when forced: a child whose close has started is killed when the process
    // exits, one whose session was never closed might not be.
    stop.send_replace(true);
    tokio::join!(sessions.close_all(), legacy_sessions.close_all());
    if let Some(pool) = pool {
        let guard = closing.enter();
        tokio::spawn(async move {
            pool.close().await;
            drop(guard);
        });
    }
    let closed = !forced
        && tokio::select! {
            () = closing.idle() => true,
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(processes = closing.count(), "MCP servers still closing at the end of the grace period; killing them");
                false
            }
            signal = signals.recv() => {
                tracing::warn!(signal, "second signal: exiting now");
                false
            }
        };
    if !closed {
        // Long enough for the close tasks to take hold of their children, which are then
        // killed as the runtime drops the tasks.
        let _ = tokio::time::timeout(Duration::from_millis(100), closing.idle()).await;
        return;
    }

    tokio::select! {
        () = connections.idle() => tracing::info!("all connections closed"),
        () = tokio::time::sleep_until(deadline.max(Instant::now() + Duration::from_millis(100))) => {
            tracing::warn!("connections still open at the end of the grace period; closing them");
        }
        signal = signals.recv() => tracing::warn!(signal, "second signal: exiting now"),
    }
}

/// SIGINT and SIGTERM, receivable more than once.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let register = |kind: SignalKind, name: &str| {
                signal(kind)
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for {name}"))
                    .ok()
            };
            Self {
                interrupt: register(SignalKind::interrupt(), "SIGINT"),
                terminate: register(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        if signal.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.interrupt) => "SIGINT",
                () = next(&mut self.terminate) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

// ----- --stdio -----

/// `mcp-proxy --stdio`: the built-in server for one client on stdin/stdout, with no HTTP
/// listener. stdout carries only the protocol; logs go to stderr. Exits 0 when stdin closes.
fn serve_stdio(args: &Args) -> ExitCode {
    if !args.command.is_empty() {
        eprintln!(
            "mcp-proxy: --stdio serves the built-in server and takes no COMMAND (drop --stdio to put a stdio server on HTTP)"
        );
        return ExitCode::from(2);
    }
    // The same filter rules as the HTTP mode (--log-level, --debug, RUST_LOG).
    let filter = match (&args.log_level, args.debug) {
        (Some(filter), _) => LogFilter::Given(filter.clone()),
        (None, Some(true)) => LogFilter::Given(DEBUG_FILTER.to_owned()),
        _ => LogFilter::Environment,
    };
    if let Err(e) = init_logging(&filter) {
        eprintln!("mcp-proxy: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mcp-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let make = |_: &SessionContext<'_>| EverythingServer::new();
    let served = runtime.block_on(StdioServerConfig::new().serve(
        make,
        tokio::io::stdin(),
        tokio::io::stdout(),
    ));
    // A stdin read still blocked in its thread (the session ended first) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
