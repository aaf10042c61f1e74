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
//!   JSON answer into a bare 408 without a JSON-RPC body. The bound is the library's
//!   `mcp_tower_http::timeout::RequestTimeoutLayer` around every session's server.
//! - `--connection-timeout` (`--connectionTimeout`) bounds `initialize`, the handshake with the
//!   MCP server (npm: the initial connection to the server).
//! - `--keep-alive-timeout` (`--keepAliveTimeout`) closes connections with no request in flight
//!   for that long (idle HTTP/1 keep-alive, HTTP/2 with no open stream); the slow arrival of a
//!   request head is bounded separately by `--header-read-timeout`. Neither ever cuts a
//!   streaming response. See "Connections" below.
//! - `--ssl-ca` turns on client-certificate verification (mutual TLS): a client must present a
//!   certificate signed by that CA. The npm proxy accepts the CA but never verifies.
//! - SIGHUP reloads `--ssl-cert`, `--ssl-key` and `--ssl-ca` from their files: new connections
//!   get the new certificate, open ones keep theirs; files that do not load are logged and the
//!   current certificate stays. (Without TLS, SIGHUP keeps its default: the process ends.)
//! - `--rate-limit`, `--rate-limit-burst` and `--concurrency-limit` are per caller: the
//!   authenticated principal, or the client's IP address without authentication (429 with
//!   `Retry-After` and a JSON-RPC error body). With `--tool-scope`, `tools/list` shows each
//!   principal only the tools it may call (the library's `rate_limit` and
//!   `auth::ToolVisibilityLayer`).
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

mod cli;
mod config;
mod conn;
mod drain;
mod limits;
mod managed;
mod named;
mod ops;
mod serve;
mod shutdown;
mod stdio;
mod tls;
mod traces;

use crate::cli::parse_args;
use crate::config::Config;
use crate::serve::serve;
use crate::stdio::serve_stdio;
use crate::tls::load_tls;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::stdio::StdioCommand;
use std::process::ExitCode;
use std::time::Duration;

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
    // Dropped last: flushes the exported spans.
    let _telemetry = match traces::init(&config.log_filter, &config.traces) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
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
            let mut command = command;
            for (key, value) in &config.child_env {
                command = command.env(key, value);
            }
            if let Some(cwd) = &config.cwd {
                command = command.current_dir(cwd);
            }
            // The grace period, the process cap, the pool and --pass-header/--pass-claim.
            let command = crate::named::stdio_settings(&config, command);
            let pool = command.pool();
            tracing::info!(command = %command.display(), "serving a stdio MCP server");
            runtime.block_on(serve(&config, tls, command, Some(pool)))
        }
        // Its own maker: a server per session, rebuildable on another instance of a cluster.
        None => runtime.block_on(serve(&config, tls, EverythingServer::new(), None)),
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
