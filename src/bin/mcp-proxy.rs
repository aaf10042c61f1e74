//! `mcp-proxy`: serve an MCP server over Streamable HTTP.
//!
//! With no command it serves the built-in "everything" server; a stdio command after `--` is
//! bridged in a later release.

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::origin::OriginLayer;
use mcp_tower_http::stdio::StdioCommand;
use mcp_tower_http::{MakeMcpService, McpStack, SessionContext};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serve an MCP server over Streamable HTTP.
///
/// With no COMMAND, serves the built-in "everything" server (tools, resources, prompts,
/// completions, logging, plus `echo` and `add`).
#[derive(Debug, Parser)]
#[command(name = "mcp-proxy", version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "MCP_PROXY_HOST", default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to listen on; 0 picks any free port.
    #[arg(long, env = "MCP_PROXY_PORT", default_value_t = 8080)]
    port: u16,

    /// Serve without sessions (GET and DELETE answer 405).
    #[arg(long, env = "MCP_PROXY_STATELESS")]
    stateless: bool,

    /// Answer POSTs with one JSON body instead of an SSE stream.
    #[arg(long, env = "MCP_PROXY_JSON_RESPONSE")]
    json_response: bool,

    /// Which transports to serve: Streamable HTTP, legacy HTTP+SSE, or both.
    #[arg(long, env = "MCP_PROXY_SERVER", value_enum, default_value_t = Transports::Both)]
    server: Transports,

    /// Path of the legacy SSE stream (clients POST to /messages).
    #[arg(long, env = "MCP_PROXY_SSE_ENDPOINT", default_value = "/sse")]
    sse_endpoint: String,

    /// Path of the Streamable HTTP endpoint.
    #[arg(long, env = "MCP_PROXY_STREAM_ENDPOINT", default_value = "/mcp")]
    stream_endpoint: String,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MCP_PROXY_MAX_BODY_SIZE", default_value_t = 10_485_760)]
    max_body_size: usize,

    /// Close sessions idle for this many seconds (0: never).
    #[arg(
        long,
        env = "MCP_PROXY_SESSION_IDLE_TIMEOUT",
        default_value_t = 1800,
        value_name = "SECS"
    )]
    session_idle_timeout: u64,

    /// Refuse new sessions (503) beyond this many.
    #[arg(long, env = "MCP_PROXY_MAX_SESSIONS")]
    max_sessions: Option<usize>,

    /// Seconds between SSE keep-alive comments (0: none).
    #[arg(
        long,
        env = "MCP_PROXY_KEEP_ALIVE",
        default_value_t = 15,
        value_name = "SECS"
    )]
    keep_alive: u64,

    /// Also accept browser requests from this origin (repeatable). Loopback origins are always
    /// accepted; requests without Origin (non-browser clients) too.
    #[arg(
        long = "allowed-origin",
        env = "MCP_PROXY_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,

    /// Only accept these Host names (repeatable; loopback names always). Default: any Host.
    #[arg(
        long = "allowed-host",
        env = "MCP_PROXY_ALLOWED_HOST",
        value_name = "HOST",
        value_delimiter = ','
    )]
    allowed_hosts: Vec<String>,

    /// A stdio MCP server to serve instead of the built-in one.
    #[arg(last = true, value_name = "COMMAND [ARGS]...")]
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

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if !args.stream_endpoint.starts_with('/') || !args.sse_endpoint.starts_with('/') {
        eprintln!("mcp-proxy: --stream-endpoint and --sse-endpoint must start with '/'");
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
    let served = match args.command.split_first() {
        Some((program, rest)) => {
            let command = StdioCommand::new(program).args(rest);
            tracing::info!(command = %command.display(), "serving a stdio MCP server");
            runtime.block_on(serve(args, command))
        }
        None => runtime.block_on(serve(args, |_: &SessionContext<'_>| {
            EverythingServer::new()
        })),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve<M: MakeMcpService>(args: Args, make: M) -> std::io::Result<()> {
    let mut origin = OriginLayer::localhost();
    for allowed in &args.allowed_origins {
        origin = origin.allow_origin(allowed);
    }
    if !args.allowed_hosts.is_empty() {
        origin = origin.allow_hosts(&args.allowed_hosts);
    }
    let mut stack = McpStack::new(make)
        .endpoint_path(args.stream_endpoint.clone())
        .streamable_http(args.server != Transports::Sse);
    if args.server != Transports::Stream {
        stack = stack.legacy_sse(args.sse_endpoint.clone(), "/messages");
    }
    let service = stack
        .origin(origin)
        .stateless(args.stateless)
        .json_response(args.json_response)
        .max_body_size(args.max_body_size)
        .session_idle_timeout(Duration::from_secs(args.session_idle_timeout))
        .max_sessions(args.max_sessions)
        .keep_alive(Duration::from_secs(args.keep_alive))
        .into_service();
    let sessions = service.sessions().clone();
    let legacy_sessions = service.legacy_sessions().clone();

    let listener = TcpListener::bind(SocketAddr::new(args.host, args.port)).await?;
    let local = listener.local_addr()?;
    let path = match args.server {
        Transports::Sse => &args.sse_endpoint,
        _ => &args.stream_endpoint,
    };
    println!("mcp-proxy listening on http://{local}{path}");
    if args.server == Transports::Both {
        tracing::info!("legacy HTTP+SSE at http://{local}{}", args.sse_endpoint);
    }

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
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
                let service = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    if let Err(e) = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down");
    sessions.close_all().await;
    legacy_sessions.close_all().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
