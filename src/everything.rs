//! The built-in "everything" MCP server.
//!
//! [`EverythingServer`] implements the fixture server of the MCP conformance suite
//! (`modelcontextprotocol/conformance`, `examples/servers/typescript/everything-server.ts`): every
//! tool, resource, prompt and utility the suite's server scenarios call, with the same names,
//! schemas and content shapes, plus two small tools of its own, `echo` and `add`.
//!
//! It is what `mcp-proxy` serves when no upstream server is configured, and it is built with
//! [`McpServer::builder`](crate::server::McpServer::builder) like any server of this crate: one
//! typed handler per tool, resource and prompt. The handlers are built once and shared; each
//! session gets its own state (log level, subscriptions, the items that appear 2 s after
//! `notifications/initialized`), so build one instance per session.
//!
//! # Example
//!
//! Driving the server directly, outside any transport:
//!
//! ```
//! use mcp_tower_http::everything::EverythingServer;
//! use mcp_tower_http::jsonrpc::{Id, Request};
//! use mcp_tower_http::{McpService, RequestContext};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = EverythingServer::new();
//! let (cx, _client) = RequestContext::detached(Id::Number(1), None, 8);
//! let request = Request {
//!     id: Id::Number(1),
//!     method: "tools/call".into(),
//!     params: Some(json!({ "name": "add", "arguments": { "a": 2, "b": 3 } })),
//! };
//! let result = server.handle_request(request, cx).await.unwrap();
//! assert_eq!(result, json!({ "content": [{ "type": "text", "text": "5" }] }));
//! # }
//! ```
//!
//! Served over HTTP, a closure builds one instance per session:
//! `|_: &SessionContext<'_>| EverythingServer::new()` implements
//! [`MakeMcpService`](crate::service::MakeMcpService).

mod inputs;
mod tasks;

use crate::input::{InputRequest, is_input_required};
use crate::jsonrpc::{ErrorObject, Notification, Request};
use crate::protocol::{LogLevel, ProtocolVersion};
use crate::server::{
    CallToolResult, CompleteRequest, CompleteResult, CompletionRef, Content, GetPromptResult,
    Implementation, McpServer, McpServerBuilder, NoArgs, Prompt, PromptArgument, PromptMessage,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerContext, SessionHandle,
    TemplateVariables, Tool,
};
use crate::service::{McpService, NotificationContext, RequestContext, SendError};
use serde::Deserialize;
use serde_json::{Map, Number, Value, json};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

/// How long a client waits before resuming after `test_reconnection` closes its connection.
const RECONNECT_RETRY: Duration = Duration::from_millis(500);

/// The `serverInfo.name` this server reports.
pub const SERVER_NAME: &str = "mcp-tower-http-everything";

/// The `logger` name on the log messages this server sends.
const LOGGER: &str = "everything";

/// A 1x1 red PNG (the fixture's image).
const TEST_IMAGE_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

/// A minimal WAV file (the fixture's audio).
const TEST_AUDIO_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";

/// Pause between the notifications of the logging and progress tools, as in the fixture.
const STEP: Duration = Duration::from_millis(50);

/// After `notifications/initialized`, the dynamic tool, resource and prompt appear this late
/// (with `list_changed` notifications), as in the fixture.
const DYNAMIC_AFTER: Duration = Duration::from_secs(2);

/// A subscribed `test://watched-resource` announces an update this often.
const WATCH_EVERY: Duration = Duration::from_secs(3);

const DYNAMIC_TOOL: &str = "test_dynamic_tool";
const DYNAMIC_URI: &str = "test://dynamic-resource";
const DYNAMIC_PROMPT: &str = "test_dynamic_prompt";

/// The MCP conformance "everything" server, plus `echo` and `add`.
///
/// One instance per session: it remembers the session's log level and resource subscriptions.
#[derive(Debug)]
pub struct EverythingServer(McpServer);

/// The handlers, built once.
static SERVER: LazyLock<McpServer> = LazyLock::new(build);

impl EverythingServer {
    /// A server that sends log messages of every level until the client sets one.
    pub fn new() -> Self {
        Self(SERVER.new_session())
    }
}

/// Also its own [`MakeMcpService`](crate::service::MakeMcpService): a fresh server per session,
/// rebuildable on another instance of a cluster (its state is set up by `initialize`).
impl crate::service::MakeMcpService for EverythingServer {
    type Service = EverythingServer;

    fn make_service(
        &self,
        _cx: &crate::service::SessionContext<'_>,
    ) -> impl std::future::Future<Output = Result<EverythingServer, ErrorObject>> + Send {
        std::future::ready(Ok(EverythingServer::new()))
    }

    fn rebuildable(&self) -> bool {
        true
    }
}

impl Default for EverythingServer {
    fn default() -> Self {
        Self::new()
    }
}

impl McpService for EverythingServer {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        self.0.handle_request(request, cx).await
    }

    async fn handle_notification(&self, notification: Notification, cx: NotificationContext) {
        self.0.handle_notification(notification, cx).await
    }

    async fn close(&self) {
        self.0.close().await
    }
}

type Answer = Result<CallToolResult, ErrorObject>;

fn reply(text: impl Into<String>) -> Answer {
    Ok(CallToolResult::text(text))
}

fn embedded(uri: &str, mime_type: &str, text: &str) -> Content {
    Content::resource(ResourceContents::text(uri, text).mime_type(mime_type))
}

/// A prompt argument (required ones were checked before the handler runs).
fn arg<'a>(args: &'a HashMap<String, String>, name: &str) -> &'a str {
    args.get(name).map_or("", String::as_str)
}

fn image() -> Content {
    Content::image(TEST_IMAGE_BASE64, "image/png")
}

#[derive(Deserialize)]
struct EchoArgs {
    text: String,
}

#[derive(Deserialize)]
struct AddArgs {
    a: Number,
    b: Number,
}

#[derive(Deserialize)]
struct PromptArgs {
    prompt: String,
}

#[derive(Deserialize)]
struct MessageArgs {
    message: String,
}

fn build() -> McpServer {
    let builder = McpServer::builder(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
        .instructions("The MCP conformance \"everything\" server, plus the tools echo and add.");
    let builder = tasks::register(inputs::register(resources(prompts(tools(builder)))));
    // The items that appear after `notifications/initialized`, last in their lists.
    builder
        .tool(
            Tool::new(
                DYNAMIC_TOOL,
                "A tool added dynamically after the session started",
            )
            .disabled(),
            |_: NoArgs, _| async { reply("This is a dynamically added tool") },
        )
        .resource(
            Resource::new(DYNAMIC_URI, "Dynamic Resource")
                .description("A resource added dynamically after the session started")
                .mime_type("text/plain")
                .disabled(),
            |uri, _| async move {
                let text = "This is a dynamically added resource";
                Ok(ReadResourceResult::new([
                    ResourceContents::text(uri, text).mime_type("text/plain")
                ]))
            },
        )
        .prompt(
            Prompt::new(
                DYNAMIC_PROMPT,
                "A prompt added dynamically after the session started",
            )
            .disabled(),
            |_: NoArgs, _| async {
                let message =
                    PromptMessage::user(Content::text("This is a dynamically added prompt"));
                Ok(GetPromptResult::new(
                    "A prompt added dynamically after the session started",
                    [message],
                ))
            },
        )
        .on_initialized(|session| session.spawn(add_dynamic_items(session.clone())))
        .on_subscribe(|uri, session| {
            if uri == WATCHED_URI {
                session.spawn(watch_resource(session.clone()));
            }
        })
        .build()
}

fn tools(builder: McpServerBuilder) -> McpServerBuilder {
    let simple = |name: &str, description: &str| Tool::new(name, description);
    builder
        .tool(simple("test_simple_text", "Tests simple text content response"), |_: NoArgs, _| async {
            reply("This is a simple text response for testing.")
        })
        .tool(simple("test_image_content", "Tests image content response"), |_: NoArgs, _| async {
            Ok(CallToolResult::new([image()]))
        })
        .tool(simple("test_audio_content", "Tests audio content response"), |_: NoArgs, _| async {
            Ok(CallToolResult::new([Content::audio(TEST_AUDIO_BASE64, "audio/wav")]))
        })
        .tool(
            simple("test_embedded_resource", "Tests embedded resource content response"),
            |_: NoArgs, _| async {
                let text = "This is an embedded resource content.";
                Ok(CallToolResult::new([embedded("test://embedded-resource", "text/plain", text)]))
            },
        )
        .tool(
            simple(
                "test_multiple_content_types",
                "Tests response with multiple content types (text, image, resource)",
            ),
            |_: NoArgs, _| async {
                let json = r#"{"test":"data","value":123}"#;
                Ok(CallToolResult::new([
                    Content::text("Multiple content types test:"),
                    image(),
                    embedded("test://mixed-content-resource", "application/json", json),
                ]))
            },
        )
        .tool(
            simple("test_tool_with_logging", "Tests tool that emits log messages during execution"),
            |_: NoArgs, cx: ServerContext| async move {
                cx.log(LogLevel::Info, LOGGER, "Tool execution started").await;
                tokio::time::sleep(STEP).await;
                cx.log(LogLevel::Info, LOGGER, "Tool processing data").await;
                tokio::time::sleep(STEP).await;
                cx.log(LogLevel::Info, LOGGER, "Tool execution completed").await;
                reply("Tool with logging executed successfully")
            },
        )
        .tool(
            simple("test_tool_with_progress", "Tests tool that reports progress notifications"),
            |_: NoArgs, cx: ServerContext| async move {
                for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(STEP).await;
                    }
                    let message = format!("Completed step {progress} of 100");
                    cx.notify_progress(progress, Some(100.0), Some(&message)).await;
                }
                // The fixture answers with the progress token it was given.
                reply(match cx.progress_token() {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "0".to_owned(),
                })
            },
        )
        .tool(simple("test_error_handling", "Tests error response handling"), |_: NoArgs, _| async {
            Ok(CallToolResult::error("This tool intentionally returns an error for testing"))
        })
        .tool(
            simple(
                "test_reconnection",
                "Tests SSE stream disconnection and client reconnection (SEP-1699). Server will close the stream \
                 mid-call and send the result after client reconnects.",
            ),
            |_: NoArgs, cx: ServerContext| async move {
                // SEP-1699 polling: drop the client's connection mid-call; the result is stored and
                // the client gets it by resuming with Last-Event-ID.
                cx.peer().close_sse_stream(RECONNECT_RETRY).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                reply(
                    "Reconnection test completed successfully. If you received this, the client properly \
                     reconnected after stream closure.",
                )
            },
        )
        .tool(
            simple("test_sampling", "Tests server-initiated sampling (LLM completion request)")
                .input_schema(object_schema(&[("prompt", "string", "The prompt to send to the LLM")])),
            |PromptArgs { prompt }, cx: ServerContext| async move { reply(sample(&cx, &prompt).await?) },
        )
        .tool(
            simple("test_elicitation", "Tests server-initiated elicitation (user input request)")
                .input_schema(object_schema(&[("message", "string", "The message to show the user")])),
            |MessageArgs { message }, cx: ServerContext| async move {
                let schema = json!({
                    "type": "object",
                    "properties": { "response": { "type": "string", "description": "User's response" } },
                    "required": ["response"],
                });
                reply(elicit(&cx, &message, schema, "User response").await?)
            },
        )
        .tool(
            simple("test_elicitation_sep1034_defaults", "Tests elicitation with default values per SEP-1034"),
            |_: NoArgs, cx: ServerContext| async move {
                let message = "Please review and update the form fields with defaults";
                let schema = ELICITATION_DEFAULTS_SCHEMA.clone();
                reply(elicit(&cx, message, schema, "Elicitation completed").await?)
            },
        )
        .tool(
            simple("test_elicitation_sep1330_enums", "Tests elicitation with enum schema improvements per SEP-1330"),
            |_: NoArgs, cx: ServerContext| async move {
                let message = "Please select options from the enum fields";
                let schema = ELICITATION_ENUMS_SCHEMA.clone();
                reply(elicit(&cx, message, schema, "Elicitation completed").await?)
            },
        )
        .tool(
            simple(
                "json_schema_2020_12_tool",
                "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
            )
            .input_schema(JSON_SCHEMA_2020_12.clone()),
            |arguments: Value, _| async move {
                reply(format!("JSON Schema 2020-12 tool called with: {arguments}"))
            },
        )
        .tool(
            simple("echo", "Echoes back the input text")
                .input_schema(object_schema(&[("text", "string", "The text to echo")])),
            |EchoArgs { text }, _| async move { reply(text) },
        )
        .tool(
            simple("add", "Adds two numbers").input_schema(object_schema(&[
                ("a", "number", "The first number"),
                ("b", "number", "The second number"),
            ])),
            |AddArgs { a, b }, _| async move {
                Ok(match add(&a, &b) {
                    Some(sum) => CallToolResult::text(sum),
                    None => CallToolResult::error("The sum is not a finite number"),
                })
            },
        )
}

fn resources(builder: McpServerBuilder) -> McpServerBuilder {
    let text = |uri: String, mime_type: &str, text: &str| {
        Ok(ReadResourceResult::new([
            ResourceContents::text(uri, text).mime_type(mime_type)
        ]))
    };
    builder
        .resource(
            Resource::new(STATIC_TEXT_URI, "static-text")
                .title("Static Text Resource")
                .description("A static text resource for testing")
                .mime_type("text/plain"),
            move |uri, _| async move {
                text(
                    uri,
                    "text/plain",
                    "This is the content of the static text resource.",
                )
            },
        )
        .resource(
            Resource::new(STATIC_BINARY_URI, "static-binary")
                .title("Static Binary Resource")
                .description("A static binary resource (image) for testing")
                .mime_type("image/png"),
            |uri, _| async move {
                Ok(ReadResourceResult::new([ResourceContents::blob(
                    uri,
                    TEST_IMAGE_BASE64,
                )
                .mime_type("image/png")]))
            },
        )
        .resource(
            Resource::new(WATCHED_URI, "watched-resource")
                .title("Watched Resource")
                .description("A resource that auto-updates every 3 seconds")
                .mime_type("text/plain"),
            move |uri, _| async move { text(uri, "text/plain", "Watched resource content") },
        )
        .resource_template(
            ResourceTemplate::new(TEMPLATE_URI, "template")
                .title("Resource Template")
                .description("A resource template with parameter substitution")
                .mime_type("application/json"),
            move |uri, vars: TemplateVariables, _| async move {
                let id = vars.get("id").map(String::as_str).unwrap_or_default();
                // Written out rather than via `json!` to keep the fixture's key order.
                let (id_json, data_json) =
                    (Value::from(id), Value::from(format!("Data for ID: {id}")));
                let json = format!(r#"{{"id":{id_json},"templateTest":true,"data":{data_json}}}"#);
                text(uri, "application/json", &json)
            },
        )
}

fn prompts(builder: McpServerBuilder) -> McpServerBuilder {
    let user_text = |text: String| PromptMessage::user(Content::text(text));
    builder
        .prompt(
            Prompt::new("test_simple_prompt", "A simple prompt without arguments")
                .title("Simple Test Prompt"),
            move |_: NoArgs, _| async move {
                let message = user_text("This is a simple prompt for testing.".into());
                Ok(GetPromptResult::new(
                    "A simple prompt without arguments",
                    [message],
                ))
            },
        )
        .prompt(
            Prompt::new(
                "test_prompt_with_arguments",
                "A prompt with required arguments",
            )
            .title("Prompt With Arguments")
            .argument(PromptArgument::required("arg1", "First test argument"))
            .argument(PromptArgument::required("arg2", "Second test argument")),
            move |args: HashMap<String, String>, _| async move {
                let (arg1, arg2) = (arg(&args, "arg1"), arg(&args, "arg2"));
                let message = user_text(format!(
                    "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
                ));
                Ok(GetPromptResult::new(
                    "A prompt with required arguments",
                    [message],
                ))
            },
        )
        .prompt(
            Prompt::new(
                "test_prompt_with_embedded_resource",
                "A prompt that includes an embedded resource",
            )
            .title("Prompt With Embedded Resource")
            .argument(PromptArgument::required(
                "resourceUri",
                "URI of the resource to embed",
            )),
            move |args: HashMap<String, String>, _| async move {
                let uri = arg(&args, "resourceUri");
                let resource =
                    embedded(uri, "text/plain", "Embedded resource content for testing.");
                Ok(GetPromptResult::new(
                    "A prompt that includes an embedded resource",
                    [
                        PromptMessage::user(resource),
                        user_text("Please process the embedded resource above.".into()),
                    ],
                ))
            },
        )
        .prompt(
            Prompt::new(
                "test_prompt_with_image",
                "A prompt that includes image content",
            )
            .title("Prompt With Image"),
            move |_: NoArgs, _| async move {
                Ok(GetPromptResult::new(
                    "A prompt that includes image content",
                    [
                        PromptMessage::user(image()),
                        user_text("Please analyze the image above.".into()),
                    ],
                ))
            },
        )
        .completion(|request: CompleteRequest, _| async move {
            let candidates: &[&str] = match (&request.reference, request.argument.name.as_str()) {
                (CompletionRef::Prompt { name }, "arg1" | "arg2")
                    if name == "test_prompt_with_arguments" =>
                {
                    &["testValue1", "testValue2", "example", "sample"]
                }
                (CompletionRef::Prompt { name }, "resourceUri")
                    if name == "test_prompt_with_embedded_resource" =>
                {
                    &[STATIC_TEXT_URI, STATIC_BINARY_URI, WATCHED_URI]
                }
                (CompletionRef::Resource { uri }, "id") if uri == TEMPLATE_URI => {
                    &["1", "2", "3", "123"]
                }
                _ => &[],
            };
            Ok(CompleteResult::matching(
                candidates.iter().copied(),
                &request.argument.value,
            ))
        })
}

/// Makes the dynamic tool, resource and prompt appear after [`DYNAMIC_AFTER`], telling the client.
async fn add_dynamic_items(session: SessionHandle) {
    tokio::time::sleep(DYNAMIC_AFTER).await;
    add_dynamic_items_now(session).await;
}

async fn add_dynamic_items_now(session: SessionHandle) {
    // Each appears even if the client is not listening (it sees them in the next list).
    let _ = session.set_tool_enabled(DYNAMIC_TOOL, true).await;
    let _ = session.set_resource_enabled(DYNAMIC_URI, true).await;
    let _ = session.set_prompt_enabled(DYNAMIC_PROMPT, true).await;
}

/// Announces updates of the watched resource while it stays subscribed.
async fn watch_resource(session: SessionHandle) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + WATCH_EVERY, WATCH_EVERY);
    loop {
        tick.tick().await;
        if !session.is_subscribed(WATCHED_URI) {
            return;
        }
        if let Err(SendError::Closed | SendError::NoStream) =
            session.resource_updated(WATCHED_URI).await
        {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// `a + b`, printed the way JSON prints numbers (`5`, not `5.0`); `None` when it overflows `f64`.
fn add(a: &Number, b: &Number) -> Option<String> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64())
        && let Some(sum) = a.checked_add(b)
    {
        return Some(sum.to_string());
    }
    let sum = a.as_f64()? + b.as_f64()?;
    // `f64`'s `Display` prints integral values without a fraction.
    sum.is_finite().then(|| sum.to_string())
}

// ---------------------------------------------------------------------------------------------
// Requests to the client

/// Asks the client's model to answer `prompt`; the text says what happened either way, as the
/// fixture's does.
async fn sample(cx: &RequestContext, prompt: &str) -> Result<String, ErrorObject> {
    let params = json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": 100,
    });
    match cx.ask("sampling", InputRequest::sampling(params)).await {
        Ok(result) => {
            let reply = sampled_text(&result).unwrap_or("No response");
            Ok(format!("LLM response: {reply}"))
        }
        Err(e) if passes_on(cx, &e) => Err(e),
        Err(e) => Ok(format!("Sampling not supported or error: {}", e.message)),
    }
}

/// Errors an input request returns that the handler must pass on: the end of a 2026-07-28
/// round, and (in 2026-07-28, where it is an HTTP 400) a missing client capability.
fn passes_on(cx: &RequestContext, e: &ErrorObject) -> bool {
    is_input_required(e)
        || (cx.protocol_version().is_sessionless()
            && e.code == crate::jsonrpc::ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY)
}

/// The text of a `CreateMessageResult`: `content` is one block, or (2025-11-25) a list of them.
fn sampled_text(result: &Value) -> Option<&str> {
    let content = result.get("content")?;
    let block = match content {
        Value::Array(blocks) => blocks
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) == Some("text"))?,
        block => block,
    };
    block
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
}

/// Asks the client for form input; `label` starts the text describing the answer.
async fn elicit(
    cx: &RequestContext,
    message: &str,
    requested_schema: Value,
    label: &str,
) -> Result<String, ErrorObject> {
    let mut params = json!({ "message": message, "requestedSchema": requested_schema });
    // `mode` arrived with URL elicitation in 2025-11-25.
    if cx.protocol_version() >= ProtocolVersion::V2025_11_25 {
        params["mode"] = json!("form");
    }
    let request = InputRequest::elicitation_params(params);
    match cx.ask("elicitation", request).await {
        Ok(result) => Ok(match result.get("action").and_then(Value::as_str) {
            Some(action) => {
                let content = result
                    .get("content")
                    .filter(|c| !c.is_null())
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                format!("{label}: action={action}, content={content}")
            }
            None => "Elicitation not supported or error: the result has no action".to_owned(),
        }),
        Err(e) if passes_on(cx, &e) => Err(e),
        Err(e) => Ok(format!("Elicitation not supported or error: {}", e.message)),
    }
}

/// An object schema whose properties `(name, type, description)` are all required.
fn object_schema(properties: &[(&str, &str, &str)]) -> Value {
    let required: Vec<&str> = properties.iter().map(|(name, ..)| *name).collect();
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, ty, description)| {
            (
                (*name).to_owned(),
                json!({ "type": ty, "description": description }),
            )
        })
        .collect();
    json!({ "type": "object", "properties": properties, "required": required })
}

/// The input schema of `json_schema_2020_12_tool`, verbatim: SEP-1613 (`$schema`, `$defs`,
/// `additionalProperties`) and SEP-2106 (`$anchor`, `allOf`/`anyOf`, `if`/`then`/`else`) keywords.
static JSON_SCHEMA_2020_12: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } },
            },
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" },
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false,
    })
});

/// SEP-1034: a default for every primitive type.
static ELICITATION_DEFAULTS_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true },
        },
        "required": [],
    })
});

/// SEP-1330: the five enum shapes.
static ELICITATION_ENUMS_SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" },
                ],
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" },
                    ],
                },
            },
        },
        "required": [],
    })
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::{ErrorCode, Id, Message};
    use crate::sse::StreamEvent;
    use tokio::sync::mpsc;

    fn request(method: &str, params: Value) -> Request {
        Request {
            id: Id::Number(1),
            method: method.into(),
            params: Some(params),
        }
    }

    /// Sends one request on a detached context; returns the answer and what reached the client.
    async fn call_with(
        server: &EverythingServer,
        method: &str,
        params: Value,
        progress_token: Option<Value>,
    ) -> (Result<Value, ErrorObject>, Vec<Message>) {
        let (cx, mut rx): (_, mpsc::Receiver<StreamEvent>) =
            RequestContext::detached(Id::Number(1), progress_token, 32);
        let answer = server.handle_request(request(method, params), cx).await;
        let mut sent = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let StreamEvent::Message(message) = event {
                sent.push(message);
            }
        }
        (answer, sent)
    }

    async fn call(method: &str, params: Value) -> Result<Value, ErrorObject> {
        call_with(&EverythingServer::new(), method, params, None)
            .await
            .0
    }

    #[tokio::test]
    async fn dynamic_items_are_listed_and_served_once_they_appear() {
        let server = EverythingServer::new();
        let tools = call_with(&server, "tools/list", json!({}), None)
            .await
            .0
            .unwrap();
        assert!(!tools.to_string().contains(DYNAMIC_TOOL));
        let unknown = call_with(
            &server,
            "tools/call",
            json!({"name": DYNAMIC_TOOL, "arguments": {}}),
            None,
        )
        .await
        .0;
        assert!(unknown.is_err(), "not there yet: {unknown:?}");

        // What `notifications/initialized` starts, without the 2 s wait.
        let (cx, mut rx) = RequestContext::detached(Id::Number(1), None, 8);
        add_dynamic_items_now(server.0.session(cx.peer().clone())).await;
        let mut announced = Vec::new();
        while let Ok(StreamEvent::Message(Message::Notification(n))) = rx.try_recv() {
            announced.push(n.method);
        }
        assert_eq!(
            announced,
            [
                "notifications/tools/list_changed",
                "notifications/resources/list_changed",
                "notifications/prompts/list_changed",
            ]
        );
        for (method, key, name) in [
            ("tools/list", "tools", DYNAMIC_TOOL),
            ("prompts/list", "prompts", DYNAMIC_PROMPT),
        ] {
            let list = call_with(&server, method, json!({}), None).await.0.unwrap();
            assert!(
                list[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["name"] == name),
                "{list}"
            );
        }
        let resources = call_with(&server, "resources/list", json!({}), None)
            .await
            .0
            .unwrap();
        assert!(
            resources["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["uri"] == DYNAMIC_URI)
        );
        let called = call_with(
            &server,
            "tools/call",
            json!({"name": DYNAMIC_TOOL, "arguments": {}}),
            None,
        )
        .await
        .0
        .unwrap();
        assert_eq!(first_text(&called), "This is a dynamically added tool");
        let read = call_with(&server, "resources/read", json!({"uri": DYNAMIC_URI}), None)
            .await
            .0
            .unwrap();
        assert_eq!(
            read["contents"][0]["text"],
            "This is a dynamically added resource"
        );
    }

    async fn call_tool(name: &str, arguments: Value) -> Result<Value, ErrorObject> {
        call(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
    }

    fn first_text(result: &Value) -> &str {
        result["content"][0]["text"].as_str().unwrap_or_default()
    }

    fn notifications<'a>(sent: &'a [Message], method: &str) -> Vec<&'a Value> {
        sent.iter()
            .filter_map(|m| match m {
                Message::Notification(n) if n.method == method => n.params.as_ref(),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn initialize_negotiates_the_version() {
        let result = call("initialize", json!({ "protocolVersion": "2025-06-18" }))
            .await
            .unwrap();
        assert_eq!(result["protocolVersion"], "2025-06-18");
        assert_eq!(result["serverInfo"]["name"], SERVER_NAME);
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(result["capabilities"]["resources"]["subscribe"], true);
        assert_eq!(result["capabilities"]["completions"], json!({}));

        let result = call("initialize", json!({ "protocolVersion": "1999-01-01" }))
            .await
            .unwrap();
        assert_eq!(result["protocolVersion"], ProtocolVersion::LATEST.as_str());

        let err = call("initialize", json!({ "protocolVersion": 7 }))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
    }

    #[tokio::test]
    async fn tools_list_names_and_shapes() {
        let result = call("tools/list", json!({})).await.unwrap();
        let tools = result["tools"].as_array().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "test_simple_text",
                "test_image_content",
                "test_audio_content",
                "test_embedded_resource",
                "test_multiple_content_types",
                "test_tool_with_logging",
                "test_tool_with_progress",
                "test_error_handling",
                "test_reconnection",
                "test_sampling",
                "test_elicitation",
                "test_elicitation_sep1034_defaults",
                "test_elicitation_sep1330_enums",
                "json_schema_2020_12_tool",
                "echo",
                "add",
                "test_missing_capability",
                "test_input_required_result_elicitation",
                "test_input_required_result_sampling",
                "test_input_required_result_list_roots",
                "test_input_required_result_request_state",
                "test_input_required_result_multiple_inputs",
                "test_input_required_result_multi_round",
                "test_input_required_result_tampered_state",
                "test_input_required_result_capabilities",
                "test_streaming_elicitation",
                "test_logging_tool",
                "test_trigger_tool_change",
                "test_trigger_prompt_change",
                "test_trigger_resource_change",
                "test_routing_header",
                "greet",
                "slow_compute",
                "failing_job",
                "protocol_error_job",
                "confirm_delete",
                "multi_input",
                "test_tool_with_task",
            ]
        );
        for tool in tools {
            assert!(tool["description"].is_string(), "{tool}");
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        }
        let schema = &tools[13]["inputSchema"];
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert!(schema["$defs"]["address"].is_object());
        assert_eq!(schema["additionalProperties"], false);
    }

    #[tokio::test]
    async fn every_listed_tool_is_callable() {
        let result = call("tools/list", json!({})).await.unwrap();
        for tool in result["tools"].as_array().unwrap() {
            let name = tool["name"].as_str().unwrap();
            let arguments = match name {
                "test_sampling" => json!({ "prompt": "hi" }),
                "test_elicitation" => json!({ "message": "hi" }),
                "echo" => json!({ "text": "hi" }),
                "add" => json!({ "a": 1, "b": 2 }),
                "test_routing_header" => json!({ "region": "eu" }),
                "greet" => json!({ "name": "Ada" }),
                "slow_compute" => json!({ "seconds": 0 }),
                "confirm_delete" => json!({ "filename": "f" }),
                _ => json!({}),
            };
            let result = call_tool(name, arguments).await;
            // Tools that ask the client for input need a client: outside a transport they fail.
            let asks = (name.starts_with("test_input_required_result_")
                && name != "test_input_required_result_capabilities")
                || name == "test_missing_capability"
                // Outside a transport: asks without a client, or needs tasks, or fails on purpose.
                || matches!(
                    name,
                    "confirm_delete"
                        | "multi_input"
                        | "failing_job"
                        | "protocol_error_job"
                        | "test_tool_with_task"
                );
            if asks {
                assert!(result.is_err(), "{name}: {result:?}");
                continue;
            }
            let result = result.unwrap();
            assert!(
                result["content"].as_array().is_some_and(|c| !c.is_empty()),
                "{name}: {result}"
            );
        }
    }

    #[tokio::test]
    async fn echo_returns_its_text() {
        let result = call_tool("echo", json!({ "text": "hello there" }))
            .await
            .unwrap();
        assert_eq!(
            result,
            json!({ "content": [{ "type": "text", "text": "hello there" }] })
        );
    }

    #[tokio::test]
    async fn add_prints_numbers_like_json() {
        let sum = |a: Value, b: Value| async move {
            first_text(&call_tool("add", json!({ "a": a, "b": b })).await.unwrap()).to_owned()
        };
        assert_eq!(sum(json!(2), json!(3)).await, "5");
        assert_eq!(sum(json!(2.5), json!(0.5)).await, "3");
        assert_eq!(sum(json!(2.5), json!(0.25)).await, "2.75");
        assert_eq!(sum(json!(-4), json!(1)).await, "-3");
        // Past i64, f64 as in JavaScript.
        assert_eq!(sum(json!(i64::MAX), json!(1)).await, "9223372036854776000");

        let overflow = call_tool("add", json!({ "a": f64::MAX, "b": f64::MAX }))
            .await
            .unwrap();
        assert_eq!(overflow["isError"], true);
    }

    #[tokio::test]
    async fn unknown_tool_is_a_jsonrpc_error() {
        let err = call_tool("nope", json!({})).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_PARAMS);
        assert_eq!(err.message, "Unknown tool: nope");
    }

    #[tokio::test]
    async fn invalid_params_are_rejected() {
        for (method, params) in [
            ("tools/call", json!({})),
            ("tools/call", json!("echo")),
            ("tools/call", json!({ "name": "nope" })),
            ("resources/read", json!({})),
            ("resources/read", json!({ "uri": "test://nowhere" })),
            (
                "prompts/get",
                json!({ "name": "test_prompt_with_arguments", "arguments": { "arg1": "x" } }),
            ),
            ("prompts/get", json!({ "name": "nope" })),
            (
                "completion/complete",
                json!({ "ref": { "type": "ref/nope" }, "argument": { "name": "a", "value": "" } }),
            ),
            ("logging/setLevel", json!({ "level": "loud" })),
        ] {
            let err = call(method, params.clone()).await.unwrap_err();
            assert_eq!(
                err.code,
                ErrorCode::INVALID_PARAMS,
                "{method} {params}: {err}"
            );
        }
        let err = call("resources/read", json!({ "uri": "test://nowhere" }))
            .await
            .unwrap_err();
        assert_eq!(err.data, Some(json!({ "uri": "test://nowhere" })));
    }

    #[tokio::test]
    async fn invalid_tool_arguments_are_tool_errors() {
        // 2025-11-25 (SEP-1303): the model sees what was wrong.
        for (name, arguments) in [
            ("echo", json!({ "text": 5 })),
            ("add", json!({ "a": "2", "b": 3 })),
            ("test_sampling", json!({})),
            ("test_routing_header", json!({})),
        ] {
            let result = call_tool(name, arguments).await.unwrap();
            assert_eq!(result["isError"], true, "{name}: {result}");
            let text = first_text(&result);
            assert!(
                text.starts_with(&format!("Invalid arguments for tool {name}: ")),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_method_is_method_not_found() {
        let err = call("tools/destroy", json!({})).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::METHOD_NOT_FOUND);
    }

    #[tokio::test]
    async fn progress_notifications_arrive() {
        let server = EverythingServer::new();
        let params = json!({ "name": "test_tool_with_progress", "arguments": {} });
        let (result, sent) = call_with(&server, "tools/call", params, Some(json!("tok-1"))).await;
        assert_eq!(first_text(&result.unwrap()), "tok-1");

        let progress = notifications(&sent, "notifications/progress");
        assert_eq!(progress.len(), 3);
        let values: Vec<f64> = progress
            .iter()
            .map(|p| p["progress"].as_f64().unwrap())
            .collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
        assert!(
            progress
                .iter()
                .all(|p| p["progressToken"] == "tok-1" && p["total"] == 100.0)
        );
    }

    #[tokio::test]
    async fn logging_respects_the_level() {
        let server = EverythingServer::new();
        let params = json!({ "name": "test_tool_with_logging" });
        let (_, sent) = call_with(&server, "tools/call", params.clone(), None).await;
        let logs = notifications(&sent, "notifications/message");
        assert_eq!(logs.len(), 3);
        assert_eq!(logs[0]["level"], "info");
        assert_eq!(logs[0]["data"], "Tool execution started");

        let (answer, _) = call_with(
            &server,
            "logging/setLevel",
            json!({ "level": "warning" }),
            None,
        )
        .await;
        assert_eq!(answer.unwrap(), json!({}));
        let (_, sent) = call_with(&server, "tools/call", params, None).await;
        assert!(notifications(&sent, "notifications/message").is_empty());
    }

    #[tokio::test]
    async fn client_requests_fail_soft_without_a_session() {
        let result = call_tool("test_sampling", json!({ "prompt": "hi" }))
            .await
            .unwrap();
        assert!(first_text(&result).starts_with("Sampling not supported or error: "));
        let result = call_tool("test_elicitation", json!({ "message": "hi" }))
            .await
            .unwrap();
        assert!(first_text(&result).starts_with("Elicitation not supported or error: "));
    }

    #[test]
    fn sampled_text_reads_both_content_shapes() {
        let single = json!({ "role": "assistant", "content": { "type": "text", "text": "hi" } });
        let list = json!({ "role": "assistant", "content": [{ "type": "image" }, { "type": "text", "text": "yo" }] });
        assert_eq!(sampled_text(&single), Some("hi"));
        assert_eq!(sampled_text(&list), Some("yo"));
        assert_eq!(sampled_text(&json!({})), None);
    }

    #[tokio::test]
    async fn resources_read() {
        let result = call("resources/read", json!({ "uri": STATIC_BINARY_URI }))
            .await
            .unwrap();
        assert_eq!(result["contents"][0]["blob"], TEST_IMAGE_BASE64);

        let result = call(
            "resources/read",
            json!({ "uri": "test://template/123/data" }),
        )
        .await
        .unwrap();
        let contents = &result["contents"][0];
        assert_eq!(contents["uri"], "test://template/123/data");
        let text: Value = serde_json::from_str(contents["text"].as_str().unwrap()).unwrap();
        assert_eq!(
            text,
            json!({ "id": "123", "templateTest": true, "data": "Data for ID: 123" })
        );
    }

    #[tokio::test]
    async fn prompts_and_completion() {
        let args = json!({ "name": "test_prompt_with_arguments", "arguments": { "arg1": "a1", "arg2": "b2" } });
        let result = call("prompts/get", args).await.unwrap();
        assert_eq!(
            result["messages"][0]["content"]["text"],
            "Prompt with arguments: arg1='a1', arg2='b2'"
        );

        let params = json!({
            "ref": { "type": "ref/prompt", "name": "test_prompt_with_arguments" },
            "argument": { "name": "arg1", "value": "test" },
        });
        let result = call("completion/complete", params).await.unwrap();
        assert_eq!(
            result["completion"]["values"],
            json!(["testValue1", "testValue2"])
        );
    }
}
