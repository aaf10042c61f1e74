//! What a server describes and answers: tool, resource and prompt descriptors, content blocks,
//! and the results handlers return. Plain serde structs; every field is the wire name in
//! camelCase.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The `serverInfo` of an `initialize` answer (and of `server/discover`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Implementation {
    /// The server's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl Implementation {
    /// A name and version (e.g. `env!("CARGO_PKG_NAME")`, `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            title: None,
        }
    }
}

/// A `tools/list` entry. The input schema defaults to an object with no properties.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tool {
    /// The name clients call it by.
    pub name: String,
    /// A display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What it does, for the model.
    pub description: String,
    /// The JSON Schema of its `arguments` (an object schema).
    pub input_schema: Value,
    /// The JSON Schema of its `structuredContent`, if it returns any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Hints (`readOnlyHint`, `destructiveHint`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    #[serde(skip)]
    pub(crate) disabled: bool,
}

impl Tool {
    /// A tool taking no arguments until [`Tool::input_schema`] says otherwise.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            title: None,
            description: description.into(),
            input_schema: json!({ "type": "object", "properties": {} }),
            output_schema: None,
            annotations: None,
            disabled: false,
        }
    }

    /// Sets the JSON Schema of the arguments.
    pub fn input_schema(mut self, schema: Value) -> Self {
        self.input_schema = schema;
        self
    }

    /// Sets the JSON Schema of the structured result.
    pub fn output_schema(mut self, schema: Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// Sets the display name.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the annotations object.
    pub fn annotations(mut self, annotations: Value) -> Self {
        self.annotations = Some(annotations);
        self
    }

    /// Hidden from each session until it calls
    /// [`SessionHandle::set_tool_enabled`](super::SessionHandle::set_tool_enabled).
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }
}

/// A `resources/list` entry: a resource at a fixed URI.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Its URI.
    pub uri: String,
    /// A short name.
    pub name: String,
    /// A display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(skip)]
    pub(crate) disabled: bool,
}

impl Resource {
    /// A resource at `uri` named `name`.
    pub fn new(uri: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            name: name.into(),
            title: None,
            description: None,
            mime_type: None,
            disabled: false,
        }
    }

    /// Sets the display name.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the MIME type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// Hidden from each session until it calls
    /// [`SessionHandle::set_resource_enabled`](super::SessionHandle::set_resource_enabled).
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }
}

/// A `resources/templates/list` entry: resources whose URIs match an RFC 6570 template.
///
/// Matching supports `{name}` (one or more characters other than `/`) and `{+name}` (any
/// characters, `/` included); values are not percent-decoded.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceTemplate {
    /// The template, e.g. `file:///{path}`.
    pub uri_template: String,
    /// A short name.
    pub name: String,
    /// A display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What its resources hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Their MIME type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

impl ResourceTemplate {
    /// A template named `name`.
    pub fn new(uri_template: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            uri_template: uri_template.into(),
            name: name.into(),
            title: None,
            description: None,
            mime_type: None,
        }
    }

    /// Sets the display name.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the MIME type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }
}

/// A `prompts/list` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Prompt {
    /// The name clients get it by.
    pub name: String,
    /// A display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// What it is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Its arguments (all strings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<PromptArgument>,
    #[serde(skip)]
    pub(crate) disabled: bool,
}

impl Prompt {
    /// A prompt without arguments.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            title: None,
            description: Some(description.into()),
            arguments: Vec::new(),
            disabled: false,
        }
    }

    /// Adds an argument; `prompts/get` without a required one answers `-32602`.
    pub fn argument(mut self, argument: PromptArgument) -> Self {
        self.arguments.push(argument);
        self
    }

    /// Sets the display name.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Hidden from each session until it calls
    /// [`SessionHandle::set_prompt_enabled`](super::SessionHandle::set_prompt_enabled).
    pub fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }
}

/// One argument of a [`Prompt`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PromptArgument {
    /// Its name.
    pub name: String,
    /// What it means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Whether `prompts/get` must carry it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

impl PromptArgument {
    /// A required argument.
    pub fn required(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: Some(description.into()),
            required: true,
        }
    }

    /// An optional argument.
    pub fn optional(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            required: false,
            ..Self::required(name, description)
        }
    }
}

/// A content block of a tool result or prompt message (`text`, `image`, `audio`, `resource`, or
/// any other shape as a JSON value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Content(Value);

impl Content {
    /// `{"type": "text", "text": ...}`.
    pub fn text(text: impl Into<String>) -> Self {
        Self(json!({ "type": "text", "text": text.into() }))
    }

    /// An image, base64-encoded.
    pub fn image(data: impl Into<String>, mime_type: impl Into<String>) -> Self {
        Self(json!({ "type": "image", "data": data.into(), "mimeType": mime_type.into() }))
    }

    /// Audio, base64-encoded.
    pub fn audio(data: impl Into<String>, mime_type: impl Into<String>) -> Self {
        Self(json!({ "type": "audio", "data": data.into(), "mimeType": mime_type.into() }))
    }

    /// An embedded resource.
    pub fn resource(contents: ResourceContents) -> Self {
        Self(json!({ "type": "resource", "resource": contents }))
    }

    /// The block as JSON.
    pub fn as_value(&self) -> &Value {
        &self.0
    }
}

impl From<Value> for Content {
    fn from(value: Value) -> Self {
        Self(value)
    }
}

/// The contents of a resource: text or a base64 blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceContents {
    /// The resource's URI.
    pub uri: String,
    /// Its MIME type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Text contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Binary contents, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

impl ResourceContents {
    /// Text contents.
    pub fn text(uri: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            mime_type: None,
            text: Some(text.into()),
            blob: None,
        }
    }

    /// Binary contents, already base64-encoded.
    pub fn blob(uri: impl Into<String>, base64: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            mime_type: None,
            text: None,
            blob: Some(base64.into()),
        }
    }

    /// Sets the MIME type.
    pub fn mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }
}

/// What a tool handler returns: content for the model, optionally structured, optionally
/// flagged as a tool-level error (which the model sees, unlike a JSON-RPC error).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallToolResult {
    /// The content blocks.
    pub content: Vec<Content>,
    /// A JSON value matching the tool's output schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_content: Option<Value>,
    /// `true` when the tool failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
}

impl CallToolResult {
    /// A successful result with these blocks.
    pub fn new(content: impl IntoIterator<Item = Content>) -> Self {
        Self {
            content: content.into_iter().collect(),
            structured_content: None,
            is_error: false,
        }
    }

    /// A successful result with one text block.
    pub fn text(text: impl Into<String>) -> Self {
        Self::new([Content::text(text)])
    }

    /// A tool-level failure with one text block (`isError: true`).
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            is_error: true,
            ..Self::text(message)
        }
    }

    /// Adds `structuredContent`.
    pub fn structured(mut self, value: Value) -> Self {
        self.structured_content = Some(value);
        self
    }

    /// The result as the JSON value sent, moving the content blocks (the same value
    /// `serde_json::to_value` gives, without copying every block through a serializer).
    pub fn into_value(self) -> Value {
        let mut result = serde_json::Map::new();
        let content = self.content.into_iter().map(|block| block.0).collect();
        result.insert("content".to_owned(), Value::Array(content));
        if let Some(structured) = self.structured_content {
            result.insert("structuredContent".to_owned(), structured);
        }
        if self.is_error {
            result.insert("isError".to_owned(), Value::Bool(true));
        }
        Value::Object(result)
    }
}

/// What a resource handler returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResourceResult {
    /// The contents (one per resource read; a directory-like resource may return several).
    pub contents: Vec<ResourceContents>,
}

impl ReadResourceResult {
    /// These contents.
    pub fn new(contents: impl IntoIterator<Item = ResourceContents>) -> Self {
        Self {
            contents: contents.into_iter().collect(),
        }
    }
}

/// Who says a prompt message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user.
    User,
    /// The assistant.
    Assistant,
}

/// One message of a prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PromptMessage {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: Content,
}

impl PromptMessage {
    /// A message from the user.
    pub fn user(content: Content) -> Self {
        Self {
            role: Role::User,
            content,
        }
    }

    /// A message from the assistant.
    pub fn assistant(content: Content) -> Self {
        Self {
            role: Role::Assistant,
            content,
        }
    }
}

/// What a prompt handler returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetPromptResult {
    /// A description of this rendering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The messages.
    pub messages: Vec<PromptMessage>,
}

impl GetPromptResult {
    /// These messages, with a description.
    pub fn new(
        description: impl Into<String>,
        messages: impl IntoIterator<Item = PromptMessage>,
    ) -> Self {
        Self {
            description: Some(description.into()),
            messages: messages.into_iter().collect(),
        }
    }
}

/// A `completion/complete` request: which argument of which prompt or resource template, and
/// what the user typed so far.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CompleteRequest {
    /// The prompt or resource template.
    #[serde(rename = "ref")]
    pub reference: CompletionRef,
    /// The argument being completed.
    pub argument: CompletionArgument,
    /// Arguments already resolved (`context.arguments`), if the client sent them.
    #[serde(default)]
    pub context: Option<Value>,
}

/// What a completion refers to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type")]
pub enum CompletionRef {
    /// A prompt, by name.
    #[serde(rename = "ref/prompt")]
    Prompt {
        /// The prompt's name.
        name: String,
    },
    /// A resource template (or resource), by URI.
    #[serde(rename = "ref/resource")]
    Resource {
        /// The template or URI.
        uri: String,
    },
}

/// The argument being completed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CompletionArgument {
    /// Its name.
    pub name: String,
    /// What the user typed so far.
    pub value: String,
}

/// What a completion handler returns (sent as `{"completion": {...}}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompleteResult {
    /// The suggestions (at most 100).
    pub values: Vec<String>,
    /// How many there are in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    /// Whether there are more than `values`.
    pub has_more: bool,
}

impl CompleteResult {
    /// The most the protocol allows in `values`.
    pub const MAX_VALUES: usize = 100;

    /// The candidates starting with `prefix`, in order (the first 100, with `total` and
    /// `hasMore` telling the rest).
    pub fn matching<I, S>(candidates: I, prefix: &str) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut values: Vec<String> = candidates
            .into_iter()
            .map(Into::into)
            .filter(|c| c.starts_with(prefix))
            .collect();
        let total = values.len();
        values.truncate(Self::MAX_VALUES);
        Self {
            has_more: total > values.len(),
            values,
            total: Some(total),
        }
    }
}
