// A one-tool MCP server: `cargo run --example hello`, then point a client at the URL it prints
// (PORT=8000 picks another port, PORT=0 a free one).
use mcp_tower_http::McpStack;
use mcp_tower_http::server::{CallToolResult, Implementation, McpServer, ServerContext, Tool};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct AddArgs {
    a: f64,
    b: f64,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let server = McpServer::builder(Implementation::new("hello", "0.1.0"))
        .tool(
            Tool::new("add", "Adds two numbers").input_schema(json!({
                "type": "object",
                "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
                "required": ["a", "b"],
            })),
            |args: AddArgs, _cx: ServerContext| async move {
                Ok(CallToolResult::text((args.a + args.b).to_string()))
            },
        )
        .build();
    let app = axum::Router::new().route_service("/mcp", McpStack::new(server).into_service());

    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, app).await
}
