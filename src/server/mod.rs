//! A ready-made MCP server: describe tools, resources and prompts, register typed async
//! handlers, and the server answers the rest of the protocol itself.
//!
//! [`McpServer::builder`] collects the description; the built [`McpServer`] is an
//! [`McpService`] and a [`MakeMcpService`] (each session gets its own state; the handlers are
//! shared behind an `Arc`), so it goes straight into [`McpStack::new`](crate::McpStack::new). It
//! answers:
//!
//! | method | answer |
//! |---|---|
//! | `initialize` | the negotiated revision, `serverInfo`, `instructions`, and capabilities derived from what is registered |
//! | `ping`, `logging/setLevel` | `{}` (the level filters [`ServerContext::log`]) |
//! | `tools/list`, `tools/call` | the registered tools; arguments deserialized with serde into the handler's type |
//! | `resources/list`, `resources/templates/list`, `resources/read` | fixed resources, then templates in order |
//! | `resources/subscribe`, `resources/unsubscribe` | with [`McpServerBuilder::on_subscribe`] |
//! | `prompts/list`, `prompts/get` | the registered prompts; required arguments checked |
//! | `completion/complete` | with [`McpServerBuilder::completion`], for a known prompt or resource |
//! | `notifications/initialized` | runs [`McpServerBuilder::on_initialized`] once per session |
//! | anything else (and a kind with nothing registered) | `-32601` |
//!
//! Malformed params answer `-32602`; so do an unknown tool, prompt or resource (with the URI in
//! `data`). Tool arguments that do not deserialize into the handler's type are a tool error
//! (`isError: true`, so the model can correct itself) from 2025-11-25 on, and `-32602` before,
//! as each revision's specification says. On 2026-07-28 requests the endpoint builds
//! `server/discover` from the `initialize` answer.
//!
//! Handlers get a [`ServerContext`]: the request's [`RequestContext`] (progress, the client's
//! capabilities, [`ask`](RequestContext::ask) for sampling and elicitation in every revision,
//! [`run_as_task`](RequestContext::run_as_task)) plus this session's [`SessionHandle`] (log
//! level, subscriptions, background tasks, enabling items at run time).
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::McpStack;
//! use mcp_tower_http::server::{CallToolResult, Implementation, McpServer, ServerContext, Tool};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Deserialize)]
//! struct AddArgs {
//!     a: f64,
//!     b: f64,
//! }
//!
//! let server = McpServer::builder(Implementation::new("calculator", "1.0.0"))
//!     .instructions("Adds numbers.")
//!     .tool(
//!         Tool::new("add", "Adds two numbers").input_schema(json!({
//!             "type": "object",
//!             "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
//!             "required": ["a", "b"],
//!         })),
//!         |args: AddArgs, _cx: ServerContext| async move {
//!             Ok(CallToolResult::text((args.a + args.b).to_string()))
//!         },
//!     )
//!     .build();
//! let service = McpStack::new(server).into_service();
//! # let _ = service;
//! ```

mod context;
mod template;
mod types;

pub use self::context::{ServerContext, SessionHandle};
pub use self::types::{
    CallToolResult, CompleteRequest, CompleteResult, CompletionArgument, CompletionRef, Content,
    GetPromptResult, Implementation, Prompt, PromptArgument, PromptMessage, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, Role, Tool,
};

use self::context::SessionState;
use self::template::UriTemplate;
use crate::jsonrpc::{ErrorObject, Notification, Request};
use crate::protocol::{LogLevel, ProtocolVersion};
use crate::service::{
    MakeMcpService, McpService, NotificationContext, RequestContext, SessionContext,
};
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// A tool's arguments when it takes none (any object, `{}` or absent).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct NoArgs {}

/// The variables a resource template matched, by name.
pub type TemplateVariables = HashMap<String, String>;

type Handled<T> = BoxFuture<'static, Result<T, ErrorObject>>;
type ToolFn = Arc<
    dyn Fn(Value, ServerContext) -> Result<Handled<CallToolResult>, serde_json::Error>
        + Send
        + Sync,
>;
type ResourceFn = Arc<dyn Fn(String, ServerContext) -> Handled<ReadResourceResult> + Send + Sync>;
type TemplateFn = Arc<
    dyn Fn(String, TemplateVariables, ServerContext) -> Handled<ReadResourceResult> + Send + Sync,
>;
type PromptFn = Arc<
    dyn Fn(Value, ServerContext) -> Result<Handled<GetPromptResult>, serde_json::Error>
        + Send
        + Sync,
>;
type CompleteFn =
    Arc<dyn Fn(CompleteRequest, ServerContext) -> Handled<CompleteResult> + Send + Sync>;
type SessionFn = Arc<dyn Fn(&SessionHandle) + Send + Sync>;
type SubscribeFn = Arc<dyn Fn(&str, &SessionHandle) + Send + Sync>;

/// A registered item: its `*/list` entry (serialized once) and its handler.
struct Entry<H> {
    key: String,
    listed: Value,
    disabled: bool,
    handler: H,
}

/// Entries in registration order, found by key.
struct Table<H> {
    entries: Vec<Entry<H>>,
    index: HashMap<String, usize>,
}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<H> Table<H> {
    /// Adds an entry; one with the same key replaces the earlier one in place.
    fn insert(&mut self, key: String, listed: &impl Serialize, disabled: bool, handler: H) {
        let listed = serde_json::to_value(listed).unwrap_or(Value::Null);
        let entry = Entry {
            key: key.clone(),
            listed,
            disabled,
            handler,
        };
        match self.index.get(&key) {
            Some(&i) => self.entries[i] = entry,
            None => {
                self.index.insert(key, self.entries.len());
                self.entries.push(entry);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&Entry<H>> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn any_disabled(&self) -> bool {
        self.entries.iter().any(|e| e.disabled)
    }
}

/// Kinds of items a session can enable and disable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Tool,
    Resource,
    Prompt,
}

impl Kind {
    pub(crate) fn list_changed(self) -> &'static str {
        match self {
            Kind::Tool => "notifications/tools/list_changed",
            Kind::Resource => "notifications/resources/list_changed",
            Kind::Prompt => "notifications/prompts/list_changed",
        }
    }
}

/// Everything the builder collected; shared by every session.
pub(crate) struct Registry {
    info: Implementation,
    instructions: Option<String>,
    tools: Table<ToolFn>,
    resources: Table<ResourceFn>,
    templates: Vec<(UriTemplate, Value, String, TemplateFn)>,
    prompts: Table<(Vec<PromptArgument>, PromptFn)>,
    completion: Option<CompleteFn>,
    on_initialized: Option<SessionFn>,
    on_subscribe: Option<SubscribeFn>,
    page_size: Option<usize>,
    list_changed: bool,
    capabilities: Value,
}

impl Registry {
    pub(crate) fn disabled_initially(&self, kind: Kind, key: &str) -> Option<bool> {
        match kind {
            Kind::Tool => self.tools.get(key).map(|e| e.disabled),
            Kind::Resource => self.resources.get(key).map(|e| e.disabled),
            Kind::Prompt => self.prompts.get(key).map(|e| e.disabled),
        }
    }

    fn capabilities(&self) -> Value {
        let list_changed = |disabled: bool| {
            if self.list_changed || disabled {
                json!({ "listChanged": true })
            } else {
                json!({})
            }
        };
        let mut caps = Map::new();
        caps.insert("logging".into(), json!({}));
        if !self.tools.is_empty() {
            caps.insert("tools".into(), list_changed(self.tools.any_disabled()));
        }
        if !self.resources.is_empty() || !self.templates.is_empty() {
            let mut resources = list_changed(self.resources.any_disabled());
            if self.on_subscribe.is_some() {
                resources["subscribe"] = true.into();
            }
            caps.insert("resources".into(), resources);
        }
        if !self.prompts.is_empty() {
            caps.insert("prompts".into(), list_changed(self.prompts.any_disabled()));
        }
        if self.completion.is_some() {
            caps.insert("completions".into(), json!({}));
        }
        Value::Object(caps)
    }
}

/// Collects a server's description and handlers; [`build`](Self::build) makes the [`McpServer`].
pub struct McpServerBuilder {
    registry: Registry,
}

impl McpServerBuilder {
    /// Sets the `instructions` sent in `initialize` (how to use this server, for the model).
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.registry.instructions = Some(instructions.into());
        self
    }

    /// Registers a tool. The handler gets the call's `arguments` deserialized into `A` (use
    /// [`NoArgs`] or `serde_json::Value` for none) and returns the result, or a JSON-RPC error
    /// (an error from [`RequestContext::ask`] or [`RequestContext::run_as_task`] is passed on
    /// with `?`). A tool registered under the same name replaces the earlier one.
    pub fn tool<A, F, Fut>(mut self, tool: Tool, handler: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(A, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CallToolResult, ErrorObject>> + Send + 'static,
    {
        let erased: ToolFn = Arc::new(move |arguments, cx| {
            let args = serde_json::from_value(arguments)?;
            Ok(Box::pin(handler(args, cx)))
        });
        self.registry
            .tools
            .insert(tool.name.clone(), &tool, tool.disabled, erased);
        self
    }

    /// Registers a resource at a fixed URI; the handler gets the URI.
    pub fn resource<F, Fut>(mut self, resource: Resource, handler: F) -> Self
    where
        F: Fn(String, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ReadResourceResult, ErrorObject>> + Send + 'static,
    {
        let erased: ResourceFn = Arc::new(move |uri, cx| Box::pin(handler(uri, cx)));
        self.registry
            .resources
            .insert(resource.uri.clone(), &resource, resource.disabled, erased);
        self
    }

    /// Registers a resource template; the handler gets the URI read and the variables it
    /// matched. Templates are tried in registration order, after the fixed resources.
    pub fn resource_template<F, Fut>(mut self, template: ResourceTemplate, handler: F) -> Self
    where
        F: Fn(String, TemplateVariables, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ReadResourceResult, ErrorObject>> + Send + 'static,
    {
        let erased: TemplateFn = Arc::new(move |uri, vars, cx| Box::pin(handler(uri, vars, cx)));
        let listed = serde_json::to_value(&template).unwrap_or(Value::Null);
        self.registry.templates.push((
            UriTemplate::parse(&template.uri_template),
            listed,
            template.uri_template,
            erased,
        ));
        self
    }

    /// Registers a prompt. The handler gets the `arguments` (a map of strings) deserialized
    /// into `A` (e.g. a struct, or `HashMap<String, String>`), after the required ones were
    /// checked.
    pub fn prompt<A, F, Fut>(mut self, prompt: Prompt, handler: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        F: Fn(A, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<GetPromptResult, ErrorObject>> + Send + 'static,
    {
        let erased: PromptFn = Arc::new(move |arguments, cx| {
            let args = serde_json::from_value(arguments)?;
            Ok(Box::pin(handler(args, cx)))
        });
        let arguments = prompt.arguments.clone();
        self.registry.prompts.insert(
            prompt.name.clone(),
            &prompt,
            prompt.disabled,
            (arguments, erased),
        );
        self
    }

    /// Answers `completion/complete` for the registered prompts and resource templates (a
    /// reference to anything else is refused with `-32602` before the handler runs).
    pub fn completion<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(CompleteRequest, ServerContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CompleteResult, ErrorObject>> + Send + 'static,
    {
        self.registry.completion =
            Some(Arc::new(move |request, cx| Box::pin(handler(request, cx))));
        self
    }

    /// Runs once per session, when the client sends `notifications/initialized` (spawn
    /// background work with [`SessionHandle::spawn`]).
    pub fn on_initialized(mut self, hook: impl Fn(&SessionHandle) + Send + Sync + 'static) -> Self {
        self.registry.on_initialized = Some(Arc::new(hook));
        self
    }

    /// Accepts `resources/subscribe` (advertising `resources.subscribe`) and runs `hook` for each
    /// new subscription of a session; announce changes with [`SessionHandle::resource_updated`].
    pub fn on_subscribe(
        mut self,
        hook: impl Fn(&str, &SessionHandle) + Send + Sync + 'static,
    ) -> Self {
        self.registry.on_subscribe = Some(Arc::new(hook));
        self
    }

    /// Advertises `listChanged` for every kind (it is advertised anyway for a kind with a
    /// disabled item): set it when handlers send `notifications/*/list_changed` themselves.
    pub fn list_changed(mut self, list_changed: bool) -> Self {
        self.registry.list_changed = list_changed;
        self
    }

    /// Pages `*/list` answers by `size` items (`nextCursor`); by default everything is one page.
    pub fn page_size(mut self, size: usize) -> Self {
        self.registry.page_size = Some(size.max(1));
        self
    }

    /// The server.
    pub fn build(mut self) -> McpServer {
        self.registry.capabilities = self.registry.capabilities();
        McpServer {
            registry: Arc::new(self.registry),
            state: Arc::default(),
        }
    }
}

/// A server built by [`McpServer::builder`]: an [`McpService`] for one session, and a
/// [`MakeMcpService`] giving each new session a fresh state over the same handlers.
///
/// `Clone` shares the session state too; a new session comes from
/// [`new_session`](Self::new_session) (what [`MakeMcpService`] calls).
#[derive(Clone)]
pub struct McpServer {
    registry: Arc<Registry>,
    state: Arc<SessionState>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("server_info", &self.registry.info)
            .field("tools", &self.registry.tools.entries.len())
            .field("resources", &self.registry.resources.entries.len())
            .field("resource_templates", &self.registry.templates.len())
            .field("prompts", &self.registry.prompts.entries.len())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitializeParams {
    #[serde(default)]
    protocol_version: Option<String>,
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default)]
    cursor: Option<String>,
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
struct GetPromptParams {
    name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct SetLevelParams {
    level: LogLevel,
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

fn to_result(value: &impl Serialize) -> Result<Value, ErrorObject> {
    serde_json::to_value(value).map_err(|_| ErrorObject::internal())
}

impl McpServer {
    /// Starts describing a server.
    pub fn builder(info: Implementation) -> McpServerBuilder {
        McpServerBuilder {
            registry: Registry {
                info,
                instructions: None,
                tools: Table::default(),
                resources: Table::default(),
                templates: Vec::new(),
                prompts: Table::default(),
                completion: None,
                on_initialized: None,
                on_subscribe: None,
                page_size: None,
                list_changed: false,
                capabilities: Value::Null,
            },
        }
    }

    /// The same handlers with a fresh session state (log level, subscriptions, enabled items).
    pub fn new_session(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            state: Arc::default(),
        }
    }

    /// The capabilities `initialize` advertises.
    pub fn capabilities(&self) -> &Value {
        &self.registry.capabilities
    }

    fn context(&self, cx: RequestContext) -> ServerContext {
        let session = self.session(cx.peer().standalone());
        ServerContext::new(cx, session)
    }

    pub(crate) fn session(&self, peer: crate::Peer) -> SessionHandle {
        SessionHandle::new(self.registry.clone(), self.state.clone(), peer)
    }

    fn initialize(&self, params: Option<Value>) -> Result<Value, ErrorObject> {
        let params: InitializeParams = parse_params(params)?;
        let version = ProtocolVersion::negotiate(params.protocol_version.as_deref());
        let mut result = json!({
            "protocolVersion": version.as_str(),
            "capabilities": self.registry.capabilities,
            "serverInfo": self.registry.info,
        });
        if let Some(instructions) = &self.registry.instructions {
            result["instructions"] = instructions.as_str().into();
        }
        Ok(result)
    }

    /// One page of the enabled entries of a list.
    fn page<'a>(
        &self,
        params: Option<Value>,
        key: &str,
        items: impl Iterator<Item = &'a Value>,
    ) -> Result<Value, ErrorObject> {
        let ListParams { cursor } = parse_params(params)?;
        let start = match cursor {
            None => 0,
            Some(cursor) => cursor
                .parse::<usize>()
                .map_err(|_| ErrorObject::invalid_params(format!("Invalid cursor: {cursor}")))?,
        };
        let size = self.registry.page_size.unwrap_or(usize::MAX);
        let mut items = items.skip(start);
        let page: Vec<Value> = items.by_ref().take(size).cloned().collect();
        let mut result = json!({ key: page });
        if items.next().is_some() {
            result["nextCursor"] = start.saturating_add(size).to_string().into();
        }
        Ok(result)
    }

    fn enabled<'a, H>(
        &'a self,
        kind: Kind,
        table: &'a Table<H>,
    ) -> impl Iterator<Item = &'a Entry<H>> + 'a {
        table
            .entries
            .iter()
            .filter(move |e| self.state.is_enabled(kind, &e.key, e.disabled))
    }

    async fn call_tool(
        &self,
        params: Option<Value>,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let CallToolParams { name, arguments } = parse_params(params)?;
        let tool = self
            .registry
            .tools
            .get(&name)
            .filter(|e| self.state.is_enabled(Kind::Tool, &e.key, e.disabled))
            .ok_or_else(|| ErrorObject::invalid_params(format!("Unknown tool: {name}")))?;
        let version = cx.protocol_version();
        let arguments = Value::Object(arguments.unwrap_or_default());
        let call = match (tool.handler)(arguments, self.context(cx)) {
            Ok(call) => call,
            Err(e) => {
                let message = format!("Invalid arguments for tool {name}: {e}");
                // SEP-1303 (2025-11-25): a tool error the model can act on; before, -32602.
                if version >= ProtocolVersion::V2025_11_25 {
                    return Ok(CallToolResult::error(message).into_value());
                }
                return Err(ErrorObject::invalid_params(message));
            }
        };
        Ok(call.await?.into_value())
    }

    async fn read_resource(
        &self,
        params: Option<Value>,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let UriParams { uri } = parse_params(params)?;
        if let Some(resource) = self
            .registry
            .resources
            .get(&uri)
            .filter(|e| self.state.is_enabled(Kind::Resource, &e.key, e.disabled))
        {
            return to_result(&(resource.handler)(uri, self.context(cx)).await?);
        }
        for (template, _, _, handler) in &self.registry.templates {
            if let Some(vars) = template.matches(&uri) {
                return to_result(&handler(uri, vars, self.context(cx)).await?);
            }
        }
        // SEP-2164: -32602 with the URI in `data`.
        Err(
            ErrorObject::invalid_params(format!("Resource not found: {uri}"))
                .with_data(json!({ "uri": uri })),
        )
    }

    async fn get_prompt(
        &self,
        params: Option<Value>,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let GetPromptParams { name, arguments } = parse_params(params)?;
        let prompt = self
            .registry
            .prompts
            .get(&name)
            .filter(|e| self.state.is_enabled(Kind::Prompt, &e.key, e.disabled))
            .ok_or_else(|| ErrorObject::invalid_params(format!("Unknown prompt: {name}")))?;
        let (declared, handler) = &prompt.handler;
        let arguments = arguments.unwrap_or_default();
        if let Some(missing) = declared
            .iter()
            .find(|a| a.required && !arguments.contains_key(&a.name))
        {
            return Err(ErrorObject::invalid_params(format!(
                "Missing required argument: {}",
                missing.name
            )));
        }
        let get = handler(Value::Object(arguments), self.context(cx)).map_err(|e| {
            ErrorObject::invalid_params(format!("Invalid arguments for prompt {name}: {e}"))
        })?;
        to_result(&get.await?)
    }

    async fn complete(
        &self,
        handler: &CompleteFn,
        params: Option<Value>,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let request: CompleteRequest = parse_params(params)?;
        match &request.reference {
            CompletionRef::Prompt { name } if self.registry.prompts.get(name).is_none() => {
                return Err(ErrorObject::invalid_params(format!(
                    "Unknown prompt: {name}"
                )));
            }
            CompletionRef::Resource { uri }
                if self.registry.resources.get(uri).is_none()
                    && !self.registry.templates.iter().any(|(_, _, t, _)| t == uri) =>
            {
                return Err(ErrorObject::invalid_params(format!(
                    "Unknown resource template: {uri}"
                )));
            }
            _ => {}
        }
        let result = handler(request, self.context(cx)).await?;
        Ok(json!({ "completion": to_result(&result)? }))
    }

    fn subscribe(
        &self,
        params: Option<Value>,
        cx: &RequestContext,
        hook: &SubscribeFn,
    ) -> Result<Value, ErrorObject> {
        let UriParams { uri } = parse_params(params)?;
        if self.state.subscribe(&uri)? {
            hook(&uri, &self.session(cx.peer().standalone()));
        }
        Ok(json!({}))
    }
}

impl McpService for McpServer {
    async fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        let Request { method, params, .. } = request;
        let registry = &*self.registry;
        let not_found = || Err(ErrorObject::method_not_found(&method));
        match method.as_str() {
            "initialize" => self.initialize(params),
            "ping" => Ok(json!({})),
            "logging/setLevel" => {
                let SetLevelParams { level } = parse_params(params)?;
                self.state.set_log_level(level);
                Ok(json!({}))
            }
            "tools/list" if !registry.tools.is_empty() => {
                let items = self.enabled(Kind::Tool, &registry.tools).map(|e| &e.listed);
                self.page(params, "tools", items)
            }
            "tools/call" if !registry.tools.is_empty() => self.call_tool(params, cx).await,
            "resources/list"
                if !registry.resources.is_empty() || !registry.templates.is_empty() =>
            {
                let items = self
                    .enabled(Kind::Resource, &registry.resources)
                    .map(|e| &e.listed);
                self.page(params, "resources", items)
            }
            "resources/templates/list"
                if !registry.resources.is_empty() || !registry.templates.is_empty() =>
            {
                let items = registry.templates.iter().map(|(_, listed, ..)| listed);
                self.page(params, "resourceTemplates", items)
            }
            "resources/read"
                if !registry.resources.is_empty() || !registry.templates.is_empty() =>
            {
                self.read_resource(params, cx).await
            }
            "resources/subscribe" => match &registry.on_subscribe {
                Some(hook) => self.subscribe(params, &cx, hook),
                None => not_found(),
            },
            "resources/unsubscribe" if registry.on_subscribe.is_some() => {
                let UriParams { uri } = parse_params(params)?;
                self.state.unsubscribe(&uri);
                Ok(json!({}))
            }
            "prompts/list" if !registry.prompts.is_empty() => {
                let items = self
                    .enabled(Kind::Prompt, &registry.prompts)
                    .map(|e| &e.listed);
                self.page(params, "prompts", items)
            }
            "prompts/get" if !registry.prompts.is_empty() => self.get_prompt(params, cx).await,
            "completion/complete" => match &registry.completion {
                Some(handler) => self.complete(handler, params, cx).await,
                None => not_found(),
            },
            _ => not_found(),
        }
    }

    async fn handle_notification(&self, notification: Notification, cx: NotificationContext) {
        if notification.method == "notifications/initialized"
            && let Some(hook) = &self.registry.on_initialized
            && self.state.mark_initialized()
        {
            hook(&self.session(cx.peer().clone()));
        }
    }

    async fn close(&self) {
        self.state.abort_tasks();
    }
}

impl MakeMcpService for McpServer {
    type Service = McpServer;

    fn make_service(
        &self,
        _cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<McpServer, ErrorObject>> + Send {
        std::future::ready(Ok(self.new_session()))
    }

    /// A session's state is what `initialize` and later requests set up on one instance; a
    /// rebuilt session starts from its `initialize` again (subscriptions and the log level are
    /// not carried over).
    fn rebuildable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
