//! JSON-RPC 2.0 messages as MCP uses them.
//!
//! A body is parsed once ([`Payload::parse`]) into typed [`Message`]s and each outgoing message is
//! serialized once into [`Bytes`] ([`Message::to_bytes`]). Parsing tells a syntax error
//! ([`ErrorCode::PARSE_ERROR`], `-32700`) from valid JSON of the wrong shape
//! ([`ErrorCode::INVALID_REQUEST`], `-32600`) so the transport can answer each correctly.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc::{Message, Payload, Id};
//!
//! let payload = Payload::parse(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).unwrap();
//! let Payload::Single(Message::Request(request)) = payload else { panic!() };
//! assert_eq!(request.id, Id::Number(7));
//! assert_eq!(request.method, "ping");
//!
//! let reply = Message::result(request.id, serde_json::json!({}));
//! assert_eq!(&reply.to_bytes()[..], br#"{"jsonrpc":"2.0","id":7,"result":{}}"#);
//! ```

mod error;

pub use self::error::{ErrorCode, ErrorObject};

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// A JSON-RPC request id: a number or a string.
///
/// MCP forbids `null` ids on requests; `null` only appears on error responses to a request whose id
/// could not be read, which [`ErrorResponse`] models as `id: None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    String(Arc<str>),
}

impl Id {
    /// Reads an id: an integer or a string; anything else is not an id.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_i64().map(Id::Number),
            Value::String(s) => Some(Id::String(s.into())),
            _ => None,
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => Value::from(*n),
            Id::String(s) => Value::from(&**s),
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Id::Number(n) => serializer.serialize_i64(*n),
            Id::String(s) => serializer.serialize_str(s),
        }
    }
}

impl From<i64> for Id {
    fn from(value: i64) -> Self {
        Id::Number(value)
    }
}

impl From<&str> for Id {
    fn from(value: &str) -> Self {
        Id::String(value.into())
    }
}

/// A request: expects a response with the same id.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The request id.
    pub id: Id,
    /// The method name, e.g. `tools/call`.
    pub method: String,
    /// The parameters, if any.
    pub params: Option<Value>,
}

/// A notification: a request without an id, never answered.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// The method name, e.g. `notifications/initialized`.
    pub method: String,
    /// The parameters, if any.
    pub params: Option<Value>,
}

/// A successful response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The id of the request this answers.
    pub id: Id,
    /// The result.
    pub result: Value,
}

/// An error response.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorResponse {
    /// The id of the request this answers; `None` (serialized as `null`) when it could not be read.
    pub id: Option<Id>,
    /// The error.
    pub error: ErrorObject,
}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A notification.
    Notification(Notification),
    /// A successful response.
    Response(Response),
    /// An error response.
    Error(ErrorResponse),
}

impl Message {
    /// A successful response to `id`.
    pub fn result(id: Id, result: Value) -> Self {
        Message::Response(Response { id, result })
    }

    /// An error response to `id` (`None` serializes as `"id": null`).
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Message::Error(ErrorResponse { id, error })
    }

    /// A notification.
    pub fn notification(method: impl Into<String>, params: Option<Value>) -> Self {
        Message::Notification(Notification {
            method: method.into(),
            params,
        })
    }

    /// A request.
    pub fn request(id: Id, method: impl Into<String>, params: Option<Value>) -> Self {
        Message::Request(Request {
            id,
            method: method.into(),
            params,
        })
    }

    /// `true` for requests, which expect an answer.
    pub fn is_request(&self) -> bool {
        matches!(self, Message::Request(_))
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request(r) => Some(&r.method),
            Message::Notification(n) => Some(&n.method),
            _ => None,
        }
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&Id> {
        match self {
            Message::Request(r) => Some(&r.id),
            Message::Response(r) => Some(&r.id),
            Message::Error(e) => e.id.as_ref(),
            Message::Notification(_) => None,
        }
    }

    /// Serializes the message once into shareable bytes.
    pub fn to_bytes(&self) -> Bytes {
        // Most messages fit: one allocation instead of a Vec doubling from 8 bytes.
        let mut buf = Vec::with_capacity(256);
        // Serializing a `Value` tree into a Vec cannot fail: keys are strings and numbers are finite.
        match serde_json::to_writer(&mut buf, self) {
            Ok(()) => Bytes::from(buf),
            Err(_) => Bytes::new(),
        }
    }

    /// Classifies one JSON value as a message.
    pub fn from_value(value: Value) -> Result<Self, ShapeError> {
        let Value::Object(mut object) = value else {
            return Err(ShapeError::new(None, "message is not a JSON object"));
        };
        let id = object.remove("id");
        let id_for_error = id.clone().and_then(Id::from_value);
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(ShapeError::new(id_for_error, "\"jsonrpc\" must be \"2.0\""));
        }
        if let Some(method) = object.remove("method") {
            let Value::String(method) = method else {
                return Err(ShapeError::new(id_for_error, "\"method\" must be a string"));
            };
            let params = object.remove("params");
            if let Some(p) = &params
                && !(p.is_object() || p.is_array())
            {
                return Err(ShapeError::new(
                    id_for_error,
                    "\"params\" must be an object or an array",
                ));
            }
            return match id {
                None => Ok(Message::Notification(Notification { method, params })),
                Some(id) => match Id::from_value(id) {
                    Some(id) => Ok(Message::Request(Request { id, method, params })),
                    None => Err(ShapeError::new(
                        None,
                        "\"id\" must be a string or an integer",
                    )),
                },
            };
        }
        if let Some(result) = object.remove("result") {
            return match id.and_then(Id::from_value) {
                Some(id) => Ok(Message::Response(Response { id, result })),
                None => Err(ShapeError::new(
                    None,
                    "a response needs a string or integer \"id\"",
                )),
            };
        }
        if let Some(error) = object.remove("error") {
            // JSON-RPC: "error" is an object (serde would also read the positional form).
            let error: ErrorObject = Some(error)
                .filter(Value::is_object)
                .and_then(|error| serde_json::from_value(error).ok())
                .ok_or(())
                .map_err(|_| {
                    ShapeError::new(
                        id_for_error.clone(),
                        "\"error\" must have a code and a message",
                    )
                })?;
            return Ok(Message::Error(ErrorResponse {
                id: id_for_error,
                error,
            }));
        }
        Err(ShapeError::new(
            id_for_error,
            "message has neither \"method\", \"result\" nor \"error\"",
        ))
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Message::Request(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("method", &r.method)?;
                if let Some(params) = &r.params {
                    map.serialize_entry("params", params)?;
                }
            }
            Message::Notification(n) => {
                map.serialize_entry("method", &n.method)?;
                if let Some(params) = &n.params {
                    map.serialize_entry("params", params)?;
                }
            }
            Message::Response(r) => {
                map.serialize_entry("id", &r.id)?;
                map.serialize_entry("result", &r.result)?;
            }
            Message::Error(e) => {
                map.serialize_entry("id", &e.id)?;
                map.serialize_entry("error", &e.error)?;
            }
        }
        map.end()
    }
}

/// A parsed POST body: one message or a batch (batches are only legal at protocol 2025-03-26).
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// A single message.
    Single(Message),
    /// A JSON array of messages.
    Batch(Vec<Message>),
}

impl Payload {
    /// Parses a body once: a syntax error is [`ParseError::Syntax`] (`-32700`), well-formed JSON
    /// that is not JSON-RPC is [`ParseError::Shape`] (`-32600`).
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        // Fast path: straight into the envelope's fields, no intermediate tree for it. Anything
        // it refuses goes the exact way below, which tells a syntax error from a wrong shape.
        let first = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .filter(|_| fast_path_checks_everything(body));
        let fast = match first {
            Some(b'{') => serde_json::from_slice::<Envelope<'_>>(body)
                .ok()
                .and_then(Envelope::into_message)
                .map(Payload::Single),
            Some(b'[') => serde_json::from_slice::<Vec<Envelope<'_>>>(body)
                .ok()
                .filter(|items| !items.is_empty())
                .and_then(|items| {
                    items
                        .into_iter()
                        .map(Envelope::into_message)
                        .collect::<Option<Vec<_>>>()
                })
                .map(Payload::Batch),
            _ => None,
        };
        match fast {
            Some(payload) => Ok(payload),
            None => Self::parse_exact(body),
        }
    }

    /// Parses through a JSON tree, reporting exactly what is wrong.
    ///
    /// (The fast path skips the text of members it does not read without checking it.)
    fn parse_exact(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::Syntax)?;
        match value {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(ParseError::Shape(ShapeError::new(None, "empty batch")));
                }
                items
                    .into_iter()
                    .map(Message::from_value)
                    .collect::<Result<Vec<_>, _>>()
                    .map(Payload::Batch)
                    .map_err(ParseError::Shape)
            }
            other => Message::from_value(other)
                .map(Payload::Single)
                .map_err(ParseError::Shape),
        }
    }

    /// The messages in order.
    pub fn messages(&self) -> &[Message] {
        match self {
            Payload::Single(m) => std::slice::from_ref(m),
            Payload::Batch(ms) => ms,
        }
    }

    /// `true` when at least one message is a request (the POST then gets a response body).
    pub fn has_requests(&self) -> bool {
        self.messages().iter().any(Message::is_request)
    }

    /// The `initialize` request when the payload is exactly that one request.
    pub fn as_initialize(&self) -> Option<&Request> {
        match self {
            Payload::Single(Message::Request(r)) if r.method == "initialize" => Some(r),
            _ => None,
        }
    }

    /// `true` when any message of the payload is an `initialize` request.
    pub fn contains_initialize(&self) -> bool {
        self.messages()
            .iter()
            .any(|m| matches!(m, Message::Request(r) if r.method == "initialize"))
    }

    /// The id of the first request, for echoing in transport-level errors.
    pub fn first_request_id(&self) -> Option<&Id> {
        self.messages().iter().find_map(|m| match m {
            Message::Request(r) => Some(&r.id),
            _ => None,
        })
    }
}

/// `true` when the fast path, which skips unknown members unchecked, cannot accept a body the
/// exact path would refuse: the body is UTF-8 and has no `\uD800`-`\uDFFF` escape (a lone
/// surrogate is no character; pairs, which are fine, are rare enough to take the exact path).
fn fast_path_checks_everything(body: &[u8]) -> bool {
    // ASCII (nearly every body) is checked a word at a time, UTF-8 only when needed.
    if !body.is_ascii() && std::str::from_utf8(body).is_err() {
        return false;
    }
    // `contains` is a word-at-a-time memchr: most bodies have no escape at all.
    if !body.contains(&b'\\') {
        return true;
    }
    let mut rest = body;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        let escape = &rest[at..];
        if let [_, b'u', d, hex, ..] = escape
            && d.eq_ignore_ascii_case(&b'd')
            && matches!(hex.to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f')
        {
            return false;
        }
        // Skip the escaped character too (so `\\u` is not read as an escape).
        rest = rest.get(at + 2..).unwrap_or_default();
    }
    true
}

/// A JSON-RPC message's members, read without building a tree for the envelope.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    /// Borrowed from the body unless escaped: no allocation for `"2.0"`.
    #[serde(borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    /// `Some(Value::Null)` for `"id": null`, `None` when absent.
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    /// A `null` method is not an absent one: it fails here and goes the exact way.
    #[serde(default, deserialize_with = "present")]
    method: Option<String>,
    #[serde(default, deserialize_with = "present")]
    params: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    /// A tree only here: error responses are rare, and it must be checked to be an object.
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
}

/// Deserializes a member that is present, `null` included, as `Some`.
fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

impl Envelope<'_> {
    /// The message, when the envelope is unambiguously valid; `None` sends the body down the
    /// exact path (which reports what is wrong).
    fn into_message(self) -> Option<Message> {
        if self.jsonrpc.as_deref() != Some("2.0") {
            return None;
        }
        let id = match self.id {
            None => None,
            Some(id) => Some(Id::from_value(id)?),
        };
        match (self.method, self.result, self.error) {
            (Some(method), None, None) => {
                if self
                    .params
                    .as_ref()
                    .is_some_and(|p| !(p.is_object() || p.is_array()))
                {
                    return None;
                }
                let params = self.params;
                Some(match id {
                    Some(id) => Message::Request(Request { id, method, params }),
                    None => Message::Notification(Notification { method, params }),
                })
            }
            (None, Some(result), None) => Some(Message::Response(Response { id: id?, result })),
            (None, None, Some(error)) if error.is_object() => {
                let error = serde_json::from_value(error).ok()?;
                Some(Message::Error(ErrorResponse { id, error }))
            }
            _ => None,
        }
    }
}

/// Why a body is not a JSON-RPC payload.
#[derive(Clone, Debug, PartialEq)]
pub enum ParseError {
    /// Not JSON at all (`-32700`).
    Syntax,
    /// JSON, but not a JSON-RPC message or batch (`-32600`).
    Shape(ShapeError),
}

/// Well-formed JSON that is not a JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeError {
    /// The request id, when one could be read.
    pub id: Option<Id>,
    /// What is wrong, for the error message.
    pub reason: &'static str,
}

impl ShapeError {
    fn new(id: Option<Id>, reason: &'static str) -> Self {
        Self { id, reason }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Syntax => f.write_str("Parse error: body is not valid JSON"),
            ParseError::Shape(e) => write!(f, "Invalid Request: {}", e.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// Reads `params._meta.progressToken` of a request, if the client asked for progress.
pub fn progress_token(params: Option<&Value>) -> Option<&Value> {
    params?.get("_meta")?.get("progressToken")
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
