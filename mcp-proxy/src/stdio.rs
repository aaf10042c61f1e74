//! `mcp-proxy --stdio`: the built-in server on stdin/stdout.

use crate::cli::Args;
use crate::config::{DEBUG_FILTER, LogFilter};
use crate::traces;
use mcp_tower_http::SessionContext;
use mcp_tower_http::everything::EverythingServer;
use mcp_tower_http::stdio_server::StdioServerConfig;
use std::process::ExitCode;
use std::time::Duration;

/// `mcp-proxy --stdio`: the built-in server for one client on stdin/stdout, with no HTTP
/// listener. stdout carries only the protocol; logs go to stderr. Exits 0 when stdin closes.
pub(crate) fn serve_stdio(args: &Args) -> ExitCode {
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
    let _telemetry = match traces::init(&filter, &args.traces) {
        Ok(telemetry) => telemetry,
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
