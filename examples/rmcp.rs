//! An rmcp (official Rust MCP SDK) tool server, served by mcp-tower-http's whole stack: sessions,
//! resumable SSE, CORS, origin checks and the 2026-07-28 revision come from the stack, the tools
//! from rmcp's `#[tool_router]`.
//!
//! ```sh
//! cargo run --example rmcp --features rmcp
//! npx @modelcontextprotocol/inspector --cli http://127.0.0.1:3000/mcp --method tools/list
//! npx @modelcontextprotocol/inspector --cli http://127.0.0.1:3000/mcp --method tools/call \
//!     --tool-name increment --tool-arg by=5
//! ```
//!
//! Each session gets its own `Counter` (the factory runs per session).

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use mcp_tower_http::McpStack;
use mcp_tower_http::rmcp::RmcpService;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Clone)]
struct Counter {
    value: Arc<AtomicI64>,
    tools: ToolRouter<Self>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct IncrementArgs {
    /// How much to add (default 1).
    by: Option<i64>,
}

#[tool_router]
impl Counter {
    fn new() -> Self {
        Self {
            value: Arc::new(AtomicI64::new(0)),
            tools: Self::tool_router(),
        }
    }

    #[tool(description = "Add to this session's counter and return the new value")]
    fn increment(&self, Parameters(IncrementArgs { by }): Parameters<IncrementArgs>) -> String {
        let by = by.unwrap_or(1);
        (self.value.fetch_add(by, Ordering::Relaxed) + by).to_string()
    }

    #[tool(description = "This session's counter")]
    fn get(&self) -> String {
        self.value.load(Ordering::Relaxed).to_string()
    }
}

#[tool_handler(router = self.tools)]
impl ServerHandler for Counter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "rmcp-counter",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("A counter per session: call `increment`, then `get`.")
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let service = McpStack::new(RmcpService::new(Counter::new))
        .endpoint_path("/mcp")
        .into_service();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("rmcp counter on http://127.0.0.1:3000/mcp");
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
