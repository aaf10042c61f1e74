// MCP inside an existing axum app: the app's own routes and state, and an MCP endpoint at /mcp
// whose tool reads the same state. `cargo run --example axum` (PORT as for `hello`).
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use mcp_tower_http::McpStack;
use mcp_tower_http::server::{CallToolResult, Implementation, McpServer, ServerContext, Tool};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The app's state, shared by its routes and the MCP tool.
#[derive(Clone, Default)]
struct AppState {
    visits: Arc<AtomicU64>,
}

#[derive(Deserialize)]
struct GreetArgs {
    name: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let state = AppState::default();

    let visits = state.visits.clone();
    let server = McpServer::builder(Implementation::new("my-app", "0.1.0"))
        .tool(
            Tool::new("greet", "Greets someone and counts the visit").input_schema(json!({
                "type": "object",
                "properties": { "name": { "type": "string" } },
                "required": ["name"],
            })),
            move |args: GreetArgs, _cx: ServerContext| {
                let visits = visits.clone();
                async move {
                    let n = visits.fetch_add(1, Ordering::Relaxed) + 1;
                    Ok(CallToolResult::text(format!(
                        "Hello, {}! (visit {n})",
                        args.name
                    )))
                }
            },
        )
        .build();

    let app = Router::new()
        .route("/", get(|| async { "my app" }))
        .route(
            "/visits",
            get(|State(state): State<AppState>| async move {
                state.visits.load(Ordering::Relaxed).to_string()
            }),
        )
        .with_state(state)
        // The MCP endpoint: sessions, SSE, CORS and the rest come with the stack.
        .route_service("/mcp", McpStack::new(server).into_service());

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
