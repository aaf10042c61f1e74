//! The built-in "everything" MCP server.
//!
//! [`EverythingServer`] is an ordinary [`McpService`] implementing the fixture server of the MCP
//! conformance suite (`modelcontextprotocol/conformance`,
//! `examples/servers/typescript/everything-server.ts`): every tool, resource, prompt and utility
//! the suite's server scenarios call, with the same names, schemas and content shapes, plus two
//! small tools of its own, `echo` and `add`.
//!
//! It is what `mcp-proxy` serves when no upstream server is configured, and it doubles as the
//! example to copy when writing a server for this crate: one `match` on the method, `serde`
//! structs for the parameters (malformed parameters answer `-32602`), small helpers that build
//! content blocks, and static tables for the listings. It keeps per-session state (the log level
//! set by `logging/setLevel`, resource subscriptions) in the struct, so build one per session.
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
use crate::service::{McpService, NotificationContext, Peer, RequestContext, SendError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::task::AbortHandle;

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
#[derive(Debug, Default)]
pub struct EverythingServer {
    /// The minimum [`LogLevel`] sent, as its `u8` discriminant.
    min_log_level: AtomicU8,
    /// What background tasks share with the handlers.
    shared: Arc<Shared>,
    /// The session's background tasks (dynamic items, resource updates), ended by `close`.
    tasks: Mutex<Vec<AbortHandle>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// URIs subscribed with `resources/subscribe`.
    subscriptions: Mutex<HashSet<String>>,
    /// Whether the dynamic tool, resource and prompt have appeared.
    dynamic: AtomicBool,
}

impl Shared {
    fn subscriptions(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        crate::sync::lock(&self.subscriptions)
    }

    fn dynamic(&self) -> bool {
        self.dynamic.load(Ordering::Acquire)
    }
}

impl EverythingServer {
    /// A server that sends log messages of every level until the client sets one.
    pub fn new() -> Self {
        Self::default()
    }

    fn min_log_level(&self) -> LogLevel {
        LogLevel::from_u8(self.min_log_level.load(Ordering::Relaxed))
    }

    fn set_min_log_level(&self, level: LogLevel) {
        self.min_log_level.store(level as u8, Ordering::Relaxed);
    }

    /// Sends `notifications/message` when `level` passes the level set by `logging/setLevel`.
    async fn log(&self, cx: &RequestContext, level: LogLevel, data: &str) {
        if level < self.min_log_level() {
            return;
        }
        let params = json!({ "level": level, "logger": LOGGER, "data": data });
        // Logging is advisory: a client that went away just misses it.
        let _ = cx
            .peer()
            .notify("notifications/message", Some(params))
            .await;
    }

    fn initialize(&self, params: Option<Value>) -> Result<Value, ErrorObject> {
        let params: InitializeParams = parse_params(params)?;
        let version = ProtocolVersion::negotiate(params.protocol_version.as_deref());
        Ok(json!({
            "protocolVersion": version.as_str(),
            "capabilities": CAPABILITIES.clone(),
            "serverInfo": { "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION") },
            "instructions": "The MCP conformance \"everything\" server, plus the tools echo and add.",
        }))
    }

    async fn call_tool(
        &self,
        params: CallToolParams,
        cx: &RequestContext,
    ) -> Result<Value, ErrorObject> {
        let name = params.name.as_str();
        let arguments = Value::Object(params.arguments.unwrap_or_default());
        match name {
            DYNAMIC_TOOL if self.shared.dynamic() => {
                Ok(tool_result([text("This is a dynamically added tool")]))
            }
            "test_simple_text" => Ok(tool_result([text(
                "This is a simple text response for testing.",
            )])),
            "test_image_content" => Ok(tool_result([image(TEST_IMAGE_BASE64, "image/png")])),
            "test_audio_content" => Ok(tool_result([audio(TEST_AUDIO_BASE64, "audio/wav")])),
            "test_embedded_resource" => Ok(tool_result([embedded_resource(
                "test://embedded-resource",
                "text/plain",
                "This is an embedded resource content.",
            )])),
            "test_multiple_content_types" => Ok(tool_result([
                text("Multiple content types test:"),
                image(TEST_IMAGE_BASE64, "image/png"),
                embedded_resource(
                    "test://mixed-content-resource",
                    "application/json",
                    r#"{"test":"data","value":123}"#,
                ),
            ])),
            "test_tool_with_logging" => {
                self.log(cx, LogLevel::Info, "Tool execution started").await;
                tokio::time::sleep(STEP).await;
                self.log(cx, LogLevel::Info, "Tool processing data").await;
                tokio::time::sleep(STEP).await;
                self.log(cx, LogLevel::Info, "Tool execution completed")
                    .await;
                Ok(tool_result([text(
                    "Tool with logging executed successfully",
                )]))
            }
            "test_tool_with_progress" => {
                for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                    if i > 0 {
                        tokio::time::sleep(STEP).await;
                    }
                    let message = format!("Completed step {progress} of 100");
                    cx.notify_progress(progress, Some(100.0), Some(&message))
                        .await;
                }
                // The fixture answers with the progress token it was given.
                let token = match cx.progress_token() {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "0".to_owned(),
                };
                Ok(tool_result([text(token)]))
            }
            "test_error_handling" => Ok(tool_error(
                "This tool intentionally returns an error for testing",
            )),
            "test_reconnection" => {
                // SEP-1699 polling: drop the client's connection mid-call; the result is stored and
                // the client gets it by resuming with Last-Event-ID.
                cx.peer().close_sse_stream(RECONNECT_RETRY).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(tool_result([text(
                    "Reconnection test completed successfully. If you received this, the client properly \
                     reconnected after stream closure.",
                )]))
            }
            "test_sampling" => {
                let PromptArgs { prompt } = tool_args(name, arguments)?;
                Ok(tool_result([text(sample(cx, &prompt).await?)]))
            }
            "test_elicitation" => {
                let MessageArgs { message } = tool_args(name, arguments)?;
                let schema = json!({
                    "type": "object",
                    "properties": { "response": { "type": "string", "description": "User's response" } },
                    "required": ["response"],
                });
                Ok(tool_result([text(
                    elicit(cx, &message, schema, "User response").await?,
                )]))
            }
            "test_elicitation_sep1034_defaults" => {
                let message = "Please review and update the form fields with defaults";
                let schema = ELICITATION_DEFAULTS_SCHEMA.clone();
                Ok(tool_result([text(
                    elicit(cx, message, schema, "Elicitation completed").await?,
                )]))
            }
            "test_elicitation_sep1330_enums" => {
                let message = "Please select options from the enum fields";
                let schema = ELICITATION_ENUMS_SCHEMA.clone();
                Ok(tool_result([text(
                    elicit(cx, message, schema, "Elicitation completed").await?,
                )]))
            }
            "json_schema_2020_12_tool" => Ok(tool_result([text(format!(
                "JSON Schema 2020-12 tool called with: {arguments}"
            ))])),
            "echo" => {
                let EchoArgs { text: echoed } = tool_args(name, arguments)?;
                Ok(tool_result([text(echoed)]))
            }
            "add" => {
                let AddArgs { a, b } = tool_args(name, arguments)?;
                Ok(match add(&a, &b) {
                    Some(sum) => tool_result([text(sum)]),
                    None => tool_error("The sum is not a finite number"),
                })
            }
            name if inputs::TOOLS.contains(&name) => inputs::call(name, &arguments, cx).await,
            name if tasks::TOOLS.contains(&name) => tasks::call(name, arguments, cx).await,
            other => Err(ErrorObject::invalid_params(format!(
                "Unknown tool: {other}"
            ))),
        }
    }

    /// Runs `task` for as long as the session lives.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = crate::sync::lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    /// A list with the dynamic item appended once it has appeared.
    fn list(&self, list: &Value, key: &str, dynamic: impl FnOnce() -> Value) -> Value {
        let mut list = list.clone();
        if self.shared.dynamic()
            && let Some(items) = list.get_mut(key).and_then(Value::as_array_mut)
        {
            items.push(dynamic());
        }
        list
    }
}

/// Makes the dynamic tool, resource and prompt appear after [`DYNAMIC_AFTER`], telling the client.
async fn add_dynamic_items(shared: Arc<Shared>, peer: Peer) {
    tokio::time::sleep(DYNAMIC_AFTER).await;
    shared.dynamic.store(true, Ordering::Release);
    for method in [
        "notifications/tools/list_changed",
        "notifications/resources/list_changed",
        "notifications/prompts/list_changed",
    ] {
        if let Err(SendError::Closed | SendError::NoStream) = peer.notify(method, None).await {
            return;
        }
    }
}

/// Announces updates of the watched resource while it stays subscribed.
async fn watch_resource(shared: Arc<Shared>, peer: Peer) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + WATCH_EVERY, WATCH_EVERY);
    loop {
        tick.tick().await;
        if !shared.subscriptions().contains(WATCHED_URI) {
            return;
        }
        let params = json!({ "uri": WATCHED_URI });
        let sent = peer
            .notify("notifications/resources/updated", Some(params))
            .await;
        if let Err(SendError::Closed | SendError::NoStream) = sent {
            return;
        }
    }
}

impl McpService for EverythingServer {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let Request { method, params, .. } = request;
        match method.as_str() {
            "initialize" => self.initialize(params),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(self.list(&TOOLS, "tools", || {
                json!({
                    "name": DYNAMIC_TOOL,
                    "description": "A tool added dynamically after the session started",
                    "inputSchema": { "type": "object", "properties": {} },
                })
            })),
            "tools/call" => self.call_tool(parse_params(params)?, &cx).await,
            "resources/list" => Ok(self.list(&RESOURCES, "resources", || {
                json!({
                    "uri": DYNAMIC_URI,
                    "name": "Dynamic Resource",
                    "description": "A resource added dynamically after the session started",
                    "mimeType": "text/plain",
                })
            })),
            "resources/templates/list" => Ok(RESOURCE_TEMPLATES.clone()),
            "resources/read" => {
                let UriParams { uri } = parse_params(params)?;
                if uri == DYNAMIC_URI && self.shared.dynamic() {
                    let content = json!({ "uri": uri, "mimeType": "text/plain", "text": "This is a dynamically added resource" });
                    return Ok(json!({ "contents": [content] }));
                }
                read_resource(&uri)
            }
            "resources/subscribe" => {
                let UriParams { uri } = parse_params(params)?;
                let watched = uri == WATCHED_URI;
                if self.shared.subscriptions().insert(uri) && watched {
                    let peer = cx.peer().standalone();
                    self.spawn(watch_resource(self.shared.clone(), peer));
                }
                Ok(json!({}))
            }
            "resources/unsubscribe" => {
                let UriParams { uri } = parse_params(params)?;
                self.shared.subscriptions().remove(&uri);
                Ok(json!({}))
            }
            "prompts/list" => Ok(self.list(&PROMPTS, "prompts", || {
                json!({
                    "name": DYNAMIC_PROMPT,
                    "description": "A prompt added dynamically after the session started",
                })
            })),
            "prompts/get" => {
                let params: GetPromptParams = parse_params(params)?;
                if params.name == inputs::PROMPT {
                    return inputs::get_prompt(&cx).await;
                }
                if params.name == DYNAMIC_PROMPT && self.shared.dynamic() {
                    return Ok(json!({
                        "description": "A prompt added dynamically after the session started",
                        "messages": [user_message(text("This is a dynamically added prompt"))],
                    }));
                }
                get_prompt(params)
            }
            "completion/complete" => complete(parse_params(params)?),
            "logging/setLevel" => {
                let SetLevelParams { level } = parse_params(params)?;
                self.set_min_log_level(level);
                Ok(json!({}))
            }
            other => Err(ErrorObject::method_not_found(other)),
        }
    }

    async fn handle_notification(&self, notification: Notification, cx: NotificationContext) {
        if notification.method == "notifications/initialized" && !self.shared.dynamic() {
            self.spawn(add_dynamic_items(self.shared.clone(), cx.peer().clone()));
        }
    }

    async fn close(&self) {
        let tasks = std::mem::take(&mut *crate::sync::lock(&self.tasks));
        for task in tasks {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parameters

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitializeParams {
    #[serde(default)]
    protocol_version: Option<String>,
}

#[derive(Deserialize)]
struct CallToolParams {
    name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct UriParams {
    uri: String,
}

#[derive(Deserialize)]
struct SetLevelParams {
    level: LogLevel,
}

#[derive(Deserialize)]
struct GetPromptParams {
    name: String,
    #[serde(default)]
    arguments: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct CompleteParams {
    #[serde(rename = "ref")]
    reference: CompletionRef,
    argument: CompletionArgument,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum CompletionRef {
    #[serde(rename = "ref/prompt")]
    Prompt { name: String },
    #[serde(rename = "ref/resource")]
    Resource { uri: String },
}

#[derive(Deserialize)]
struct CompletionArgument {
    name: String,
    value: String,
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

/// Reads a method's params; absent or `null` params read as `{}`.
fn parse_params<T: DeserializeOwned>(params: Option<Value>) -> Result<T, ErrorObject> {
    let params = match params {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(params) => params,
    };
    serde_json::from_value(params)
        .map_err(|e| ErrorObject::invalid_params(format!("Invalid params: {e}")))
}

/// Reads a tool's arguments.
fn tool_args<T: DeserializeOwned>(tool: &str, arguments: Value) -> Result<T, ErrorObject> {
    serde_json::from_value(arguments)
        .map_err(|e| ErrorObject::invalid_params(format!("Invalid arguments for tool {tool}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Content blocks and results

fn text(text: impl Into<String>) -> Value {
    json!({ "type": "text", "text": text.into() })
}

fn image(data: &str, mime_type: &str) -> Value {
    json!({ "type": "image", "data": data, "mimeType": mime_type })
}

fn audio(data: &str, mime_type: &str) -> Value {
    json!({ "type": "audio", "data": data, "mimeType": mime_type })
}

fn embedded_resource(uri: &str, mime_type: &str, text: &str) -> Value {
    json!({ "type": "resource", "resource": { "uri": uri, "mimeType": mime_type, "text": text } })
}

/// A successful `tools/call` result.
fn tool_result(content: impl IntoIterator<Item = Value>) -> Value {
    json!({ "content": Value::Array(content.into_iter().collect()) })
}

/// A `tools/call` result reporting a tool-level failure (`isError: true`), which the model sees.
fn tool_error(message: &str) -> Value {
    json!({ "content": [text(message)], "isError": true })
}

/// A prompt message from the user.
fn user_message(content: Value) -> Value {
    json!({ "role": "user", "content": content })
}

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

// ---------------------------------------------------------------------------------------------
// Resources, prompts, completion

fn read_resource(uri: &str) -> Result<Value, ErrorObject> {
    let contents = match uri {
        STATIC_TEXT_URI => json!({
            "uri": uri,
            "mimeType": "text/plain",
            "text": "This is the content of the static text resource.",
        }),
        STATIC_BINARY_URI => {
            json!({ "uri": uri, "mimeType": "image/png", "blob": TEST_IMAGE_BASE64 })
        }
        WATCHED_URI => {
            json!({ "uri": uri, "mimeType": "text/plain", "text": "Watched resource content" })
        }
        _ => {
            let id = template_id(uri).ok_or_else(|| {
                // SEP-2164: -32602 with the URI in `data` (what the TypeScript SDK sends too).
                ErrorObject::invalid_params(format!("Resource not found: {uri}"))
                    .with_data(json!({ "uri": uri }))
            })?;
            // Written out rather than via `json!` to keep the fixture's key order.
            let (id_json, data_json) = (Value::from(id), Value::from(format!("Data for ID: {id}")));
            json!({
                "uri": uri,
                "mimeType": "application/json",
                "text": format!(r#"{{"id":{id_json},"templateTest":true,"data":{data_json}}}"#),
            })
        }
    };
    Ok(json!({ "contents": [contents] }))
}

/// The `{id}` of `test://template/{id}/data`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn get_prompt(params: GetPromptParams) -> Result<Value, ErrorObject> {
    let arguments = params.arguments.unwrap_or_default();
    let argument = |name: &str| {
        arguments.get(name).map(String::as_str).ok_or_else(|| {
            ErrorObject::invalid_params(format!("Missing required argument: {name}"))
        })
    };
    let (description, messages) = match params.name.as_str() {
        "test_simple_prompt" => (
            "A simple prompt without arguments",
            vec![user_message(text("This is a simple prompt for testing."))],
        ),
        "test_prompt_with_arguments" => {
            let (arg1, arg2) = (argument("arg1")?, argument("arg2")?);
            (
                "A prompt with required arguments",
                vec![user_message(text(format!(
                    "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
                )))],
            )
        }
        "test_prompt_with_embedded_resource" => {
            let uri = argument("resourceUri")?;
            (
                "A prompt that includes an embedded resource",
                vec![
                    user_message(embedded_resource(
                        uri,
                        "text/plain",
                        "Embedded resource content for testing.",
                    )),
                    user_message(text("Please process the embedded resource above.")),
                ],
            )
        }
        "test_prompt_with_image" => (
            "A prompt that includes image content",
            vec![
                user_message(image(TEST_IMAGE_BASE64, "image/png")),
                user_message(text("Please analyze the image above.")),
            ],
        ),
        other => {
            return Err(ErrorObject::invalid_params(format!(
                "Unknown prompt: {other}"
            )));
        }
    };
    Ok(json!({ "description": description, "messages": messages }))
}

fn complete(params: CompleteParams) -> Result<Value, ErrorObject> {
    let candidates: &[&str] = match &params.reference {
        CompletionRef::Prompt { name } => match (name.as_str(), params.argument.name.as_str()) {
            ("test_prompt_with_arguments", "arg1" | "arg2") => {
                &["testValue1", "testValue2", "example", "sample"]
            }
            ("test_prompt_with_embedded_resource", "resourceUri") => {
                &[STATIC_TEXT_URI, STATIC_BINARY_URI, WATCHED_URI]
            }
            (
                "test_simple_prompt"
                | "test_prompt_with_arguments"
                | "test_prompt_with_embedded_resource"
                | "test_prompt_with_image",
                _,
            ) => &[],
            (other, _) => {
                return Err(ErrorObject::invalid_params(format!(
                    "Unknown prompt: {other}"
                )));
            }
        },
        CompletionRef::Resource { uri } => match uri.as_str() {
            TEMPLATE_URI if params.argument.name == "id" => &["1", "2", "3", "123"],
            TEMPLATE_URI | STATIC_TEXT_URI | STATIC_BINARY_URI | WATCHED_URI => &[],
            other => {
                return Err(ErrorObject::invalid_params(format!(
                    "Unknown resource template: {other}"
                )));
            }
        },
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(&params.argument.value))
        .collect();
    Ok(json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }))
}

// ---------------------------------------------------------------------------------------------
// Static tables

static CAPABILITIES: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "tools": { "listChanged": true },
        "resources": { "subscribe": true, "listChanged": true },
        "prompts": { "listChanged": true },
        "logging": {},
        "completions": {},
    })
});

/// The `tools/list` result.
static TOOLS: LazyLock<Value> = LazyLock::new(|| {
    let no_args = || json!({ "type": "object", "properties": {} });
    let mut tools = json!({ "tools": [
        tool("test_simple_text", "Tests simple text content response", no_args()),
        tool("test_image_content", "Tests image content response", no_args()),
        tool("test_audio_content", "Tests audio content response", no_args()),
        tool("test_embedded_resource", "Tests embedded resource content response", no_args()),
        tool(
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
            no_args(),
        ),
        tool("test_tool_with_logging", "Tests tool that emits log messages during execution", no_args()),
        tool("test_tool_with_progress", "Tests tool that reports progress notifications", no_args()),
        tool("test_error_handling", "Tests error response handling", no_args()),
        tool(
            "test_reconnection",
            "Tests SSE stream disconnection and client reconnection (SEP-1699). Server will close the stream \
             mid-call and send the result after client reconnects.",
            no_args(),
        ),
        tool(
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            object_schema(&[("prompt", "string", "The prompt to send to the LLM")]),
        ),
        tool(
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            object_schema(&[("message", "string", "The message to show the user")]),
        ),
        tool("test_elicitation_sep1034_defaults", "Tests elicitation with default values per SEP-1034", no_args()),
        tool(
            "test_elicitation_sep1330_enums",
            "Tests elicitation with enum schema improvements per SEP-1330",
            no_args(),
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
            JSON_SCHEMA_2020_12.clone(),
        ),
        tool("echo", "Echoes back the input text", object_schema(&[("text", "string", "The text to echo")])),
        tool(
            "add",
            "Adds two numbers",
            object_schema(&[("a", "number", "The first number"), ("b", "number", "The second number")]),
        ),
    ]});
    if let Some(list) = tools["tools"].as_array_mut() {
        list.extend(inputs::tool_entries());
        list.extend(tasks::tool_entries());
    }
    tools
});

fn tool(name: &str, description: &str, input_schema: Value) -> Value {
    json!({ "name": name, "description": description, "inputSchema": input_schema })
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

/// The `resources/list` result (the template is listed by `resources/templates/list`).
static RESOURCES: LazyLock<Value> = LazyLock::new(|| {
    json!({ "resources": [
        {
            "uri": STATIC_TEXT_URI,
            "name": "static-text",
            "title": "Static Text Resource",
            "description": "A static text resource for testing",
            "mimeType": "text/plain",
        },
        {
            "uri": STATIC_BINARY_URI,
            "name": "static-binary",
            "title": "Static Binary Resource",
            "description": "A static binary resource (image) for testing",
            "mimeType": "image/png",
        },
        {
            "uri": WATCHED_URI,
            "name": "watched-resource",
            "title": "Watched Resource",
            "description": "A resource that auto-updates every 3 seconds",
            "mimeType": "text/plain",
        },
    ]})
});

/// The `resources/templates/list` result.
static RESOURCE_TEMPLATES: LazyLock<Value> = LazyLock::new(|| {
    json!({ "resourceTemplates": [{
        "uriTemplate": TEMPLATE_URI,
        "name": "template",
        "title": "Resource Template",
        "description": "A resource template with parameter substitution",
        "mimeType": "application/json",
    }]})
});

/// The `prompts/list` result.
static PROMPTS: LazyLock<Value> = LazyLock::new(|| {
    let required = |name: &str, description: &str| json!({ "name": name, "description": description, "required": true });
    json!({ "prompts": [
        {
            "name": "test_simple_prompt",
            "title": "Simple Test Prompt",
            "description": "A simple prompt without arguments",
        },
        {
            "name": "test_prompt_with_arguments",
            "title": "Prompt With Arguments",
            "description": "A prompt with required arguments",
            "arguments": [
                required("arg1", "First test argument"),
                required("arg2", "Second test argument"),
            ],
        },
        {
            "name": "test_prompt_with_embedded_resource",
            "title": "Prompt With Embedded Resource",
            "description": "A prompt that includes an embedded resource",
            "arguments": [required("resourceUri", "URI of the resource to embed")],
        },
        {
            "name": "test_prompt_with_image",
            "title": "Prompt With Image",
            "description": "A prompt that includes image content",
        },
        inputs::prompt_entry(),
    ]})
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

        server.shared.dynamic.store(true, Ordering::Release);
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
            ]
            .into_iter()
            .chain(inputs::TOOLS)
            .chain(tasks::TOOLS)
            .collect::<Vec<_>>()
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
            (
                "tools/call",
                json!({ "name": "echo", "arguments": { "text": 5 } }),
            ),
            (
                "tools/call",
                json!({ "name": "add", "arguments": { "a": "2", "b": 3 } }),
            ),
            ("tools/call", json!({ "name": "test_sampling" })),
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
