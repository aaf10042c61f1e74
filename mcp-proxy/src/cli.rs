//! The command line: options (with their npm `mcp-proxy` spellings) and parsing.

use clap::builder::BoolishValueParser;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use mcp_tower_http::stdio::{DEFAULT_MAX_POOLED, StdioCommand};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

pub(crate) const NPM_NAMES: &str = "\
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
pub(crate) struct Args {
    // ----- Server -----
    /// Address to listen on. The npm proxy listens on `::` (every interface); this one only on
    /// loopback unless told otherwise.
    #[arg(long, env = "MCP_PROXY_HOST", default_value = "127.0.0.1", value_parser = parse_host, help_heading = "Server")]
    pub(crate) host: IpAddr,

    /// Port to listen on; 0 picks any free port.
    #[arg(
        long,
        env = "MCP_PROXY_PORT",
        default_value_t = 8080,
        help_heading = "Server"
    )]
    pub(crate) port: u16,

    /// Which transports to serve: Streamable HTTP, legacy HTTP+SSE, or both.
    #[arg(long, env = "MCP_PROXY_SERVER", value_enum, default_value_t = Transports::Both, help_heading = "Server")]
    pub(crate) server: Transports,

    /// Path of the Streamable HTTP endpoint [default: /mcp].
    #[arg(
        long,
        alias = "streamEndpoint",
        env = "MCP_PROXY_STREAM_ENDPOINT",
        value_name = "PATH",
        help_heading = "Server"
    )]
    pub(crate) stream_endpoint: Option<String>,

    /// Path of the legacy SSE stream; clients POST to /messages [default: /sse].
    #[arg(
        long,
        alias = "sseEndpoint",
        env = "MCP_PROXY_SSE_ENDPOINT",
        value_name = "PATH",
        help_heading = "Server"
    )]
    pub(crate) sse_endpoint: Option<String>,

    /// The path of the one transport chosen with --server (of Streamable HTTP with both);
    /// --stream-endpoint and --sse-endpoint take precedence.
    #[arg(
        long,
        env = "MCP_PROXY_ENDPOINT",
        value_name = "PATH",
        help_heading = "Server"
    )]
    pub(crate) endpoint: Option<String>,

    // ----- TLS -----
    /// Serve HTTPS with this certificate chain (PEM); needs --ssl-key.
    #[arg(
        long,
        alias = "sslCert",
        env = "MCP_PROXY_SSL_CERT",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    pub(crate) ssl_cert: Option<PathBuf>,

    /// The private key of --ssl-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        alias = "sslKey",
        env = "MCP_PROXY_SSL_KEY",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    pub(crate) ssl_key: Option<PathBuf>,

    /// Require client certificates signed by these CA certificates (PEM): mutual TLS.
    #[arg(
        long,
        alias = "sslCa",
        env = "MCP_PROXY_SSL_CA",
        value_name = "FILE",
        help_heading = "TLS"
    )]
    pub(crate) ssl_ca: Option<PathBuf>,

    // ----- Streamable HTTP -----
    /// Serve without sessions (GET and DELETE answer 405).
    #[arg(long, env = "MCP_PROXY_STATELESS", value_parser = BoolishValueParser::new(), help_heading = "Streamable HTTP")]
    pub(crate) stateless: bool,

    /// Answer POSTs with one JSON body instead of an SSE stream.
    #[arg(
        long,
        env = "MCP_PROXY_JSON_RESPONSE",
        value_parser = BoolishValueParser::new(),
        help_heading = "Streamable HTTP"
    )]
    pub(crate) json_response: bool,

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
    pub(crate) event_store: Option<bool>,

    /// Keep no events: no resumption, no event ids.
    #[arg(
        long,
        alias = "no-eventStore",
        overrides_with = "event_store",
        help_heading = "Streamable HTTP"
    )]
    pub(crate) no_event_store: bool,

    /// Events kept per session for resumption (oldest dropped first).
    #[arg(
        long,
        alias = "eventStoreMaxEvents",
        env = "MCP_PROXY_EVENT_STORE_MAX_EVENTS",
        default_value_t = 1000,
        value_name = "N",
        help_heading = "Streamable HTTP"
    )]
    pub(crate) event_store_max_events: usize,

    /// Largest accepted request body, in bytes; 0: unlimited.
    #[arg(
        long,
        alias = "maxBodySize",
        env = "MCP_PROXY_MAX_BODY_SIZE",
        default_value_t = 10_485_760,
        value_name = "BYTES",
        help_heading = "Streamable HTTP"
    )]
    pub(crate) max_body_size: usize,

    /// Interval of SSE keep-alive comments.
    #[arg(
        long,
        env = "MCP_PROXY_KEEP_ALIVE",
        default_value = "15",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Streamable HTTP"
    )]
    pub(crate) keep_alive: Duration,

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
    pub(crate) session_idle_timeout: Duration,

    #[arg(
        long = "sessionIdleTimeout",
        env = "MCP_PROXY_SESSION_IDLE_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    pub(crate) session_idle_timeout_ms: Option<u64>,

    /// Refuse new sessions (503 + Retry-After) beyond this many, Streamable HTTP and legacy SSE
    /// together; with a COMMAND also the cap on child processes. 0: no cap. [default: 10000;
    /// 100 with a COMMAND]
    #[arg(
        long,
        env = "MCP_PROXY_MAX_SESSIONS",
        value_name = "N",
        help_heading = "Sessions"
    )]
    pub(crate) max_sessions: Option<usize>,

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
    pub(crate) session_handshake_timeout: Duration,

    // ----- Cluster -----
    /// Share sessions, SSE events and input state with other instances through this Redis
    /// (`redis://[:PASSWORD@]HOST:PORT[/DB]`): any instance then serves any session, without
    /// sticky load balancing. Needs --cluster-secret.
    #[arg(
        long = "redis",
        env = "MCP_PROXY_REDIS_URL",
        value_name = "URL",
        hide_env_values = true,
        help_heading = "Cluster"
    )]
    pub(crate) redis_url: Option<String>,

    /// The secret shared by the instances of a cluster; a request forwarded between instances
    /// carries it.
    #[arg(
        long,
        env = "MCP_PROXY_CLUSTER_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        help_heading = "Cluster"
    )]
    pub(crate) cluster_secret: Option<String>,

    /// `HOST:PORT` at which the other instances reach this one (plain HTTP). Default: the
    /// address it listens on, when --host is a specific address.
    #[arg(
        long,
        env = "MCP_PROXY_CLUSTER_ADDRESS",
        value_name = "HOST:PORT",
        help_heading = "Cluster"
    )]
    pub(crate) cluster_address: Option<String>,

    // ----- Metrics and health -----
    /// Serve Prometheus metrics at `/metrics` (and `/healthz`, `/readyz`) on this port, a
    /// listener of its own, never the MCP port; `0` picks a free port. [default: off]
    #[arg(
        long,
        env = "MCP_PROXY_METRICS_PORT",
        value_name = "PORT",
        help_heading = "Metrics and health"
    )]
    pub(crate) metrics_port: Option<u16>,

    /// The address the metrics listener binds (needs --metrics-port).
    #[arg(
        long,
        env = "MCP_PROXY_METRICS_HOST",
        value_name = "HOST",
        default_value = "127.0.0.1",
        value_parser = parse_host,
        help_heading = "Metrics and health"
    )]
    pub(crate) metrics_host: IpAddr,

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
    pub(crate) request_timeout: Duration,

    #[arg(
        long = "requestTimeout",
        env = "MCP_PROXY_REQUEST_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    pub(crate) request_timeout_ms: Option<u64>,

    /// Longest wait for the MCP server's answer to `initialize`.
    #[arg(
        long,
        env = "MCP_PROXY_CONNECTION_TIMEOUT_SECS",
        default_value = "60",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Timeouts"
    )]
    pub(crate) connection_timeout: Duration,

    #[arg(
        long = "connectionTimeout",
        env = "MCP_PROXY_CONNECTION_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    pub(crate) connection_timeout_ms: Option<u64>,

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
    pub(crate) keep_alive_timeout: Duration,

    #[arg(
        long = "keepAliveTimeout",
        env = "MCP_PROXY_KEEP_ALIVE_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    pub(crate) keep_alive_timeout_ms: Option<u64>,

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
    pub(crate) header_read_timeout: Duration,

    /// Largest request head (request line and headers) in bytes; larger gets 431.
    #[arg(
        long,
        env = "MCP_PROXY_MAX_HEADER_SIZE",
        default_value_t = 32 * 1024,
        value_name = "BYTES",
        value_parser = clap::value_parser!(u32).range(8192..),
        help_heading = "Connections"
    )]
    pub(crate) max_header_size: u32,

    /// Connections open at once; beyond, new ones wait to be accepted. 0: no cap. [default:
    /// 10000, or half the open-file limit if lower]
    #[arg(
        long,
        env = "MCP_PROXY_MAX_CONNECTIONS",
        value_name = "N",
        help_heading = "Connections"
    )]
    pub(crate) max_connections: Option<usize>,

    /// Interval of HTTP/2 PING frames on each connection; 0: no pings.
    #[arg(
        long,
        env = "MCP_PROXY_HTTP2_KEEP_ALIVE_INTERVAL_SECS",
        default_value = "30",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Connections"
    )]
    pub(crate) http2_keep_alive_interval: Duration,

    /// Close an HTTP/2 connection whose peer does not answer a PING within this long.
    #[arg(
        long,
        env = "MCP_PROXY_HTTP2_KEEP_ALIVE_TIMEOUT_SECS",
        default_value = "20",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Connections"
    )]
    pub(crate) http2_keep_alive_timeout: Duration,

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
    pub(crate) graceful_shutdown_timeout: Duration,

    #[arg(
        long = "gracefulShutdownTimeout",
        env = "MCP_PROXY_GRACEFUL_SHUTDOWN_TIMEOUT",
        value_name = "MS",
        hide = true
    )]
    pub(crate) graceful_shutdown_timeout_ms: Option<u64>,

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
    pub(crate) allowed_origins: Vec<String>,

    /// Only accept these Host names (repeatable; loopback names always). Default: any Host.
    #[arg(
        long = "allowed-host",
        env = "MCP_PROXY_ALLOWED_HOST",
        value_name = "HOST",
        value_delimiter = ',',
        help_heading = "Browser security"
    )]
    pub(crate) allowed_hosts: Vec<String>,

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
    pub(crate) cors_allow_headers: Vec<String>,

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
    pub(crate) api_keys: Vec<String>,

    /// This server's resource identifier (its public MCP URL, such as `https://mcp.example.com/mcp`):
    /// the audience tokens must carry, and where the protected-resource metadata is served
    /// (/.well-known/oauth-protected-resource/PATH). Needed by the OAuth options.
    #[arg(
        long,
        env = "MCP_PROXY_RESOURCE",
        value_name = "URL",
        help_heading = "Authentication"
    )]
    pub(crate) resource: Option<String>,

    /// An OAuth authorization server that issues tokens for this resource (repeatable), listed in
    /// the protected-resource metadata.
    #[arg(
        long = "authorization-server",
        env = "MCP_PROXY_AUTHORIZATION_SERVER",
        value_name = "URL",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    pub(crate) authorization_servers: Vec<String>,

    /// Accept JWT access tokens signed with this HS256 secret.
    #[arg(
        long,
        env = "MCP_PROXY_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        help_heading = "Authentication"
    )]
    pub(crate) jwt_secret: Option<String>,

    /// Accept JWT access tokens signed (RS256/ES256) by a key of this JWKS, a file or an
    /// http(s) URL (cached, refetched on an unknown key id).
    #[arg(
        long,
        env = "MCP_PROXY_JWKS",
        value_name = "FILE_OR_URL",
        help_heading = "Authentication"
    )]
    pub(crate) jwks: Option<String>,

    /// Accept opaque access tokens that this RFC 7662 introspection endpoint says are active and
    /// issued for --resource (answers cached briefly).
    #[arg(
        long,
        env = "MCP_PROXY_INTROSPECTION_URL",
        value_name = "URL",
        help_heading = "Authentication"
    )]
    pub(crate) introspection_url: Option<String>,

    /// Every request needs this scope (repeatable); missing → 403 insufficient_scope.
    #[arg(
        long = "required-scope",
        env = "MCP_PROXY_REQUIRED_SCOPE",
        value_name = "SCOPE",
        value_delimiter = ',',
        help_heading = "Authentication"
    )]
    pub(crate) required_scopes: Vec<String>,

    /// `tools/call` of TOOL needs SCOPE (repeatable); missing → 403 insufficient_scope.
    #[arg(
        long = "tool-scope",
        value_name = "TOOL=SCOPE",
        value_parser = parse_env_pair,
        help_heading = "Authentication"
    )]
    pub(crate) tool_scopes: Vec<(String, String)>,

    // ----- Child process -----
    /// Set an environment variable for the child, on top of the proxy's own (repeatable).
    #[arg(
        long = "env",
        value_name = "KEY=VALUE",
        value_parser = parse_env_pair,
        help_heading = "Child process"
    )]
    pub(crate) child_env: Vec<(String, String)>,

    /// Working directory of the child.
    #[arg(
        long,
        env = "MCP_PROXY_CWD",
        value_name = "DIR",
        help_heading = "Child process"
    )]
    pub(crate) cwd: Option<PathBuf>,

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
    pub(crate) shell: Option<bool>,

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
    pub(crate) log_level: Option<String>,

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
    pub(crate) debug: Option<bool>,

    // ----- Named servers -----
    /// Also serve the stdio server COMMAND at /servers/NAME/mcp (and /servers/NAME/sse), with
    /// the same options as the default server (repeatable). COMMAND is one argument, split
    /// into words as a shell would (quotes, backslashes) but run without a shell.
    #[arg(
        long,
        num_args = 2,
        value_names = ["NAME", "COMMAND"],
        action = clap::ArgAction::Append,
        help_heading = "Named servers"
    )]
    pub(crate) named_server: Vec<String>,

    /// Also serve the stdio servers of this `mcpServers` JSON file (the format of desktop
    /// clients: command, args, env, cwd, disabled), each at /servers/NAME/mcp.
    #[arg(
        long,
        env = "MCP_PROXY_NAMED_SERVER_CONFIG",
        value_name = "FILE",
        help_heading = "Named servers"
    )]
    pub(crate) named_server_config: Option<PathBuf>,

    /// Set the child's variable ENV from this header of the request that opens its session
    /// (repeatable; unset when the request has none). Needs --no-modern.
    #[arg(
        long,
        value_name = "HEADER=ENV",
        value_parser = parse_env_pair,
        help_heading = "Child process"
    )]
    pub(crate) pass_header: Vec<(String, String)>,

    /// Set the child's variable ENV from this claim of the authenticated token (repeatable;
    /// strings as they are, other values as JSON; unset when absent). Needs --no-modern.
    #[arg(
        long,
        value_name = "CLAIM=ENV",
        value_parser = parse_env_pair,
        help_heading = "Child process"
    )]
    pub(crate) pass_claim: Vec<(String, String)>,

    // ----- Traces -----
    #[command(flatten)]
    pub(crate) traces: crate::traces::TraceArgs,

    #[command(flatten)]
    pub(crate) pool: PoolArgs,

    // ----- Limits (per caller) -----
    #[command(flatten)]
    pub(crate) limits: crate::limits::LimitArgs,

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
    pub(crate) modern: Option<bool>,

    /// Serve only the 2025 revisions: 2026-07-28 requests get 400 and dual-era clients fall back
    /// to `initialize`.
    #[arg(long, overrides_with = "modern", help_heading = "Streamable HTTP")]
    pub(crate) no_modern: bool,

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
    pub(crate) tunnel: Option<String>,

    /// Serve the built-in server on stdin/stdout (newline-delimited JSON-RPC) instead of HTTP:
    /// one session, logs on stderr, exit when stdin closes. HTTP options are ignored.
    #[arg(long, help_heading = "Server")]
    pub(crate) stdio: bool,

    /// A stdio MCP server to serve instead of the built-in one (one child per session; 2026-07-28
    /// requests share a pool of children). It starts at the first argument that is not an
    /// option; everything after it is its own.
    // No `allow_hyphen_values`: an unknown option before the command is an error, not the
    // command (`mcp-proxy --debgu --port 0` must not run `--debgu`).
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub(crate) command: Vec<String>,
}

/// The transports `mcp-proxy` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transports {
    /// Streamable HTTP only.
    Stream,
    /// Legacy HTTP+SSE only.
    Sse,
    /// Both.
    Both,
}

/// Parses `--host`: an IP address, or `localhost`.
pub(crate) fn parse_host(s: &str) -> Result<IpAddr, String> {
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
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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
pub(crate) struct PoolArgs {
    /// 2026-07-28 clients share a pool of children, one request per child at a time: at most
    /// this many children (across principals; sessions of 2025 clients have their own).
    #[arg(
        long,
        env = "MCP_PROXY_MAX_POOLED",
        default_value_t = DEFAULT_MAX_POOLED,
        value_name = "N",
        help_heading = "Child process"
    )]
    pub(crate) max_pooled: usize,

    /// Close a pooled child idle for this long.
    #[arg(
        long,
        env = "MCP_PROXY_POOL_IDLE_TIMEOUT_SECS",
        default_value = "60",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Child process"
    )]
    pub(crate) pool_idle_timeout: Duration,

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
    pub(crate) input_timeout: Duration,

    /// How long a 2026-07-28 request waits for a free pooled child when all are busy.
    #[arg(
        long,
        env = "MCP_PROXY_POOL_WAIT_SECS",
        default_value = "30",
        value_name = "SECS",
        value_parser = parse_duration,
        help_heading = "Child process"
    )]
    pub(crate) pool_wait: Duration,
}

impl PoolArgs {
    pub(crate) fn apply(&self, command: StdioCommand) -> StdioCommand {
        command
            .max_pooled(self.max_pooled)
            .pool_idle_timeout(self.pool_idle_timeout)
            .input_timeout(self.input_timeout)
            .pool_wait(self.pool_wait)
    }
}

/// Parses `--env KEY=VALUE`.
pub(crate) fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// `None` for a zero duration (meaning "never").
pub(crate) fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

/// Parses the command line; an unknown option is an error naming it, with the hint that a
/// command goes after `--` (exit 2).
pub(crate) fn parse_args() -> (Args, ArgMatches) {
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
