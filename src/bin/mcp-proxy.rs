//! `mcp-proxy`: serve an MCP server over Streamable HTTP (and the legacy HTTP+SSE transport).
//!
//! With no command it serves the built-in "everything" server; with a command (after `--`, or
//! as the first positional argument as with the npm `mcp-proxy`) each session gets its own child
//! process speaking stdio.
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
//! - `--keep-alive-timeout` (`--keepAliveTimeout`) is hyper's HTTP/1 header-read timeout: its
//!   timer starts when the connection waits for the next request's head, so it closes idle
//!   keep-alive connections (and slow-loris headers). It never cuts a streaming response.
//! - `--ssl-ca` turns on client-certificate verification (mutual TLS): a client must present a
//!   certificate signed by that CA. The npm proxy accepts the CA but never verifies.
//!
//! - Environment variables named after npm options carry npm's units, so an npm set-up keeps
//!   working: `MCP_PROXY_SESSION_IDLE_TIMEOUT`, `MCP_PROXY_REQUEST_TIMEOUT`, ... are in
//!   milliseconds; our seconds options read `MCP_PROXY_..._SECS`. A command line option wins
//!   over an environment variable; the two spellings of one option on the same level are an
//!   error.
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

use clap::builder::BoolishValueParser;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
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
use mcp_tower_http::stdio::{DEFAULT_GRACE, StdioCommand};
use mcp_tower_http::stdio_server::StdioServerConfig;
use mcp_tower_http::{
    MakeMcpService, McpService, McpStack, NotificationContext, RequestContext, SessionContext,
};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
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
timeout (a zero grace period shuts down at once).";

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

    /// Refuse new sessions (503) beyond this many.
    #[arg(
        long,
        env = "MCP_PROXY_MAX_SESSIONS",
        value_name = "N",
        help_heading = "Sessions"
    )]
    max_sessions: Option<usize>,

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

    /// Close HTTP/1 connections that send no request (or no complete request head) for this
    /// long.
    #[arg(
        long,
        env = "MCP_PROXY_KEEP_ALIVE_TIMEOUT_SECS",
        default_value = "300",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Timeouts"
    )]
    keep_alive_timeout: Duration,

    #[arg(
        long = "keepAliveTimeout",
        env = "MCP_PROXY_KEEP_ALIVE_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    keep_alive_timeout_ms: Option<u64>,

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

    /// A stdio MCP server to serve instead of the built-in one (one child per session).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
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
    max_sessions: Option<usize>,
    request_timeout: Option<Duration>,
    connection_timeout: Option<Duration>,
    keep_alive_timeout: Option<Duration>,
    graceful_shutdown_timeout: Duration,
    allowed_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    cors_allow_headers: Vec<String>,
    auth: AuthConfig,
    tls: Option<TlsFiles>,
    child_env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    command: Vec<String>,
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

        if args.command.is_empty() && (!args.child_env.is_empty() || args.cwd.is_some()) {
            return Err("--env and --cwd apply to a COMMAND, and none was given".to_owned());
        }

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
            max_sessions: args.max_sessions,
            request_timeout: nonzero(request_timeout),
            connection_timeout: nonzero(connection_timeout),
            keep_alive_timeout: nonzero(keep_alive_timeout),
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
            command: args.command,
        })
    }
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
            let mut command = StdioCommand::new(program)
                .args(rest)
                .grace_period(child_grace(config.graceful_shutdown_timeout));
            for (key, value) in &config.child_env {
                command = command.env(key, value);
            }
            if let Some(cwd) = &config.cwd {
                command = command.current_dir(cwd);
            }
            tracing::info!(command = %command.display(), "serving a stdio MCP server");
            runtime.block_on(serve(&config, tls, command))
        }
        None => runtime.block_on(serve(&config, tls, |_: &SessionContext<'_>| {
            EverythingServer::new()
        })),
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

/// The stack with in-flight accounting around it.
#[derive(Clone, Debug)]
struct Tracked<S> {
    inner: S,
    in_flight: InFlight,
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
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|inner| TrackedBody { inner, guard }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts as in flight until it ends or is dropped.
    struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlightGuard>,
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

// ----- Serving -----

async fn serve<M: MakeMcpService>(
    config: &Config,
    tls: Option<TlsAcceptor>,
    make: M,
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
        .max_sessions(config.max_sessions)
        .keep_alive(config.keep_alive)
        .into_service();
    let sessions = service.sessions().clone();
    let legacy_sessions = service.legacy_sessions().clone();
    let in_flight = InFlight::new();
    let service = Tracked {
        inner: service,
        in_flight: in_flight.clone(),
    };

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.keep_alive_timeout);

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

    let graceful = GracefulShutdown::new();
    let signal = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // SSE frames are small writes: without NODELAY, Nagle + delayed ACK add ~40 ms.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "set_nodelay failed");
                }
                let watcher = graceful.watcher();
                let service = service.clone();
                let builder = builder.clone();
                match &tls {
                    None => {
                        tokio::spawn(serve_connection(stream, peer, service, builder, watcher));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    serve_connection(stream, peer, service, builder, watcher).await;
                                }
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            signal = signals.recv() => break signal,
        }
    };
    drop(listener);
    shutdown(
        signal,
        config.graceful_shutdown_timeout,
        Teardown {
            connections: graceful,
            in_flight,
            stop,
            sessions,
            legacy_sessions,
            closing,
        },
        &mut signals,
    )
    .await;
    Ok(())
}

async fn serve_connection<I, S, B>(
    io: I,
    peer: SocketAddr,
    service: S,
    builder: Builder<TokioExecutor>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// What the shutdown acts on.
struct Teardown {
    connections: GracefulShutdown,
    in_flight: InFlight,
    stop: watch::Sender<bool>,
    sessions: Arc<SessionRegistry>,
    legacy_sessions: Arc<SessionRegistry>,
    closing: InFlight,
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
        in_flight,
        stop,
        sessions,
        legacy_sessions,
        closing,
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
    let connections = tokio::spawn(connections.shutdown());

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
        _ = connections => tracing::info!("all connections closed"),
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
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
