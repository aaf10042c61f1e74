//! Asking the client for input (sampling, elicitation, roots) in every protocol era.
//!
//! A handler calls [`RequestContext::ask`](crate::RequestContext::ask) (or
//! [`ask_all`](crate::RequestContext::ask_all)) and gets the client's answer:
//!
//! - **2025 revisions**: the request goes to the client on the response stream (a server→client
//!   JSON-RPC request) and `ask` waits for the answer the client POSTs back.
//! - **2026-07-28**: servers may not send requests. `ask` ends the round instead: it returns an
//!   error the handler passes on with `?`, and the transport answers the call with an
//!   `input_required` result listing what it needs and a sealed `requestState`. The client
//!   retries the call with `inputResponses`; the transport runs the handler again from the top,
//!   and this time `ask` finds the answer and returns it. Answers of earlier rounds travel inside
//!   the sealed state, so a handler that asks several times in a row is written exactly as it
//!   would be for 2025: straight-line code, each `ask` with its own key.
//!
//! A handler must not ask for a capability the client did not declare: `ask` refuses with
//! `-32021` and `data.requiredCapabilities` (HTTP 400 on 2026-07-28).
//!
//! `requestState` is sealed with XChaCha20-Poly1305 under a per-process random key (set one
//! shared key for every instance behind a load balancer with
//! [`McpStack::request_state_key`](crate::McpStack::request_state_key)). It is bound to the
//! principal, the method and the request's params (without `_meta`, `inputResponses` and
//! `requestState`) and expires ([`DEFAULT_STATE_TTL`]); a tampered, expired or foreign state is
//! refused with `-32602`.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::input::InputRequest;
//! use mcp_tower_http::jsonrpc::{ErrorObject, Request};
//! use mcp_tower_http::{McpService, RequestContext};
//! use serde_json::{Value, json};
//!
//! struct Greeter;
//!
//! impl McpService for Greeter {
//!     async fn handle_request(&self, request: Request, cx: RequestContext) -> Result<Value, ErrorObject> {
//!         let schema = json!({ "type": "object", "properties": { "name": { "type": "string" } } });
//!         // 2025: a request on the stream, answered by the client. 2026-07-28: an
//!         // `input_required` round trip. The same line either way.
//!         let answer = cx.ask("name", InputRequest::elicitation("Your name?", schema)).await?;
//!         let name = answer["content"]["name"].as_str().unwrap_or("stranger").to_owned();
//!         Ok(json!({ "content": [{ "type": "text", "text": format!("Hello, {name}!") }] }))
//!     }
//! }
//! ```

use crate::jsonrpc::{ErrorCode, ErrorObject};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value, json};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a sealed `requestState` stays valid: 10 minutes.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(600);

/// The `_meta` key under which a server→client input request (2025 revisions) carries the key
/// the server's handler asked it under. A relay in front of that server (the `mcp-proxy` stdio
/// bridge) uses it as the `inputRequests` key when it turns the request into a 2026-07-28
/// `input_required` round; other clients ignore it.
pub const META_INPUT_KEY: &str = "mcp-tower-http/inputKey";

/// The methods whose results may be `input_required` (2026-07-28).
pub(crate) const INPUT_METHODS: [&str; 3] = ["tools/call", "prompts/get", "resources/read"];

/// A request for input from the client.
#[derive(Clone, Debug, PartialEq)]
pub struct InputRequest {
    method: &'static str,
    capability: &'static str,
    params: Value,
}

impl InputRequest {
    /// `elicitation/create` in form mode: a message and the JSON schema of the answer.
    pub fn elicitation(message: impl Into<String>, requested_schema: Value) -> Self {
        Self::elicitation_params(json!({
            "message": message.into(),
            "requestedSchema": requested_schema,
        }))
    }

    /// `elicitation/create` with the whole params object.
    pub fn elicitation_params(params: Value) -> Self {
        Self {
            method: "elicitation/create",
            capability: "elicitation",
            params,
        }
    }

    /// `sampling/createMessage` with its params (`messages`, `maxTokens`, ...).
    pub fn sampling(params: Value) -> Self {
        Self {
            method: "sampling/createMessage",
            capability: "sampling",
            params,
        }
    }

    /// `roots/list`.
    pub fn list_roots() -> Self {
        Self {
            method: "roots/list",
            capability: "roots",
            params: json!({}),
        }
    }

    /// The JSON-RPC method the client answers.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The client capability it needs (`sampling`, `elicitation`, `roots`).
    pub fn capability(&self) -> &'static str {
        self.capability
    }

    /// The request's params.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// The form of an `inputRequests` entry: `{method, params}`.
    pub(crate) fn to_value(&self) -> Value {
        json!({ "method": self.method, "params": self.params })
    }
}

/// The `-32021` error of an input request whose capability the client did not declare.
pub(crate) fn missing_capability(capability: &str) -> ErrorObject {
    ErrorObject::new(
        ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!("Missing required client capability: {capability}"),
    )
    .with_data(json!({ "requiredCapabilities": { capability: {} } }))
}

/// The code of the error `ask` returns to end a 2026-07-28 round. Never sent: the transport
/// turns it into an `input_required` result.
const INPUT_REQUIRED_CODE: ErrorCode = ErrorCode(i32::MIN);

/// `true` for the error [`RequestContext::ask`](crate::RequestContext::ask) returns to end a
/// 2026-07-28 round; pass it on unchanged.
pub fn is_input_required(error: &ErrorObject) -> bool {
    error.code == INPUT_REQUIRED_CODE
}

pub(crate) fn input_required_error() -> ErrorObject {
    ErrorObject::new(INPUT_REQUIRED_CODE, "input required")
}

/// One 2026-07-28 call's input: the answers the client has given so far (earlier rounds from the
/// sealed state, this round from `inputResponses`), and what the handler asks for now.
#[derive(Debug, Default)]
pub(crate) struct InputRound {
    /// What a state sealed for this call binds to (see [`binding`]).
    pub(crate) binding: Vec<u8>,
    pub(crate) answers: Map<String, Value>,
    /// Requests the handler made that have no answer yet, in the order asked.
    pub(crate) pending: Mutex<Vec<(String, InputRequest)>>,
}

impl InputRound {
    pub(crate) fn new(binding: Vec<u8>, answers: Map<String, Value>) -> Arc<Self> {
        Arc::new(Self {
            binding,
            answers,
            pending: Mutex::new(Vec::new()),
        })
    }
}

/// Why a `requestState` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// Not sealed by this server's key for this principal, method and params, or altered since.
    Invalid,
    /// Older than the state's lifetime.
    Expired,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateError::Invalid => "requestState integrity check failed",
            StateError::Expired => "requestState has expired",
        })
    }
}

impl From<StateError> for ErrorObject {
    fn from(e: StateError) -> Self {
        ErrorObject::invalid_params(e.to_string())
    }
}

/// Seals and opens `requestState` values; see the [module docs](crate::input).
#[derive(Clone)]
pub struct StateSealer {
    cipher: Arc<XChaCha20Poly1305>,
    ttl: Duration,
}

impl fmt::Debug for StateSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSealer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Default for StateSealer {
    fn default() -> Self {
        Self::new(rand::random())
    }
}

/// What a sealed state binds to: the principal, the method and the params without `_meta`,
/// `inputResponses` and `requestState`, serialized once per call (serde_json's map is ordered by
/// key, so equal params serialize equally). The `requestState` of one call is useless for another.
pub(crate) fn binding(principal: Option<&str>, method: &str, params: Option<&Value>) -> Vec<u8> {
    /// The params' members that identify the call, serialized without copying them.
    struct Bound<'a>(&'a Map<String, Value>);

    impl serde::Serialize for Bound<'_> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut map = serializer.serialize_map(None)?;
            for (k, v) in self.0 {
                if !matches!(k.as_str(), "_meta" | "inputResponses" | "requestState") {
                    map.serialize_entry(k, v)?;
                }
            }
            map.end()
        }
    }

    let mut aad = Vec::with_capacity(128);
    aad.extend_from_slice(principal.unwrap_or("").as_bytes());
    aad.push(0);
    aad.extend_from_slice(method.as_bytes());
    aad.push(0);
    if let Some(Value::Object(params)) = params {
        // Writing a tree of strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut aad, &Bound(params));
    }
    aad
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const NONCE_LEN: usize = 24;

impl StateSealer {
    /// A sealer with a 32-byte key and [`DEFAULT_STATE_TTL`].
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            cipher: Arc::new(XChaCha20Poly1305::new(&key.into())),
            ttl: DEFAULT_STATE_TTL,
        }
    }

    /// How long a sealed state stays valid.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Seals `answers` for a retry of the call `aad` describes (see [`binding`]).
    pub(crate) fn seal(&self, aad: &[u8], answers: &Map<String, Value>) -> String {
        let plain =
            json!({ "exp": now_secs() + self.ttl.as_secs(), "answers": answers }).to_string();
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let payload = AeadPayload {
            msg: plain.as_bytes(),
            aad,
        };
        // Encryption only fails for messages beyond the cipher's limit (256 GiB).
        let sealed = self.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a state sealed by [`Self::seal`] for the same call (`aad`, see [`binding`]).
    pub(crate) fn open(&self, state: &str, aad: &[u8]) -> Result<Map<String, Value>, StateError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(state)
            .map_err(|_| StateError::Invalid)?;
        if bytes.len() <= NONCE_LEN {
            return Err(StateError::Invalid);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| StateError::Invalid)?;
        let payload = AeadPayload { msg: sealed, aad };
        // Tampered with, sealed by another key, or bound to another principal, method or
        // params: all fail authentication alike.
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| StateError::Invalid)?;
        let plain: Value = serde_json::from_slice(&plain).map_err(|_| StateError::Invalid)?;
        let exp = plain.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if exp < now_secs() {
            return Err(StateError::Expired);
        }
        match plain.get("answers") {
            Some(Value::Object(answers)) => Ok(answers.clone()),
            _ => Err(StateError::Invalid),
        }
    }
}

/// Reads a retry's `inputResponses` and `requestState` into the answers known so far. `Ok(None)`
/// for a first call (neither present).
pub(crate) fn retry_answers(
    sealer: &StateSealer,
    aad: &[u8],
    params: Option<&Value>,
) -> Result<Option<Map<String, Value>>, ErrorObject> {
    let responses = params.and_then(|p| p.get("inputResponses"));
    let state = params.and_then(|p| p.get("requestState"));
    if responses.is_none() && state.is_none() {
        return Ok(None);
    }
    let mut answers = match state {
        None | Some(Value::Null) => Map::new(),
        Some(Value::String(state)) => sealer.open(state, aad)?,
        Some(_) => return Err(ErrorObject::invalid_params("requestState must be a string")),
    };
    match responses {
        None => {}
        Some(Value::Object(responses)) => {
            for (key, answer) in responses {
                if !answer.is_object() {
                    return Err(ErrorObject::invalid_params(format!(
                        "inputResponses.{key} must be an object (the client's result)"
                    )));
                }
                answers.insert(key.clone(), answer.clone());
            }
        }
        Some(_) => {
            return Err(ErrorObject::invalid_params(
                "inputResponses must be an object keyed by input request",
            ));
        }
    }
    Ok(Some(answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Map<String, Value> {
        let mut m = Map::new();
        m.insert(
            "name".into(),
            json!({"action": "accept", "content": {"name": "Ada"}}),
        );
        m
    }

    #[test]
    fn a_sealed_state_opens_only_for_its_own_request() {
        let sealer = StateSealer::default();
        let params = json!({"name": "t", "arguments": {"a": 1}, "_meta": {"x": 1}});
        let state = sealer.seal(
            &binding(Some("alice"), "tools/call", Some(&params)),
            &answers(),
        );
        // `_meta` and the retry fields are not part of the binding.
        let retry = json!({"name": "t", "arguments": {"a": 1}, "requestState": state, "inputResponses": {}});
        assert_eq!(
            sealer.open(&state, &binding(Some("alice"), "tools/call", Some(&retry))),
            Ok(answers())
        );
        assert_eq!(
            sealer.open(
                &state,
                &binding(Some("mallory"), "tools/call", Some(&params))
            ),
            Err(StateError::Invalid)
        );
        assert!(
            sealer
                .open(
                    &state,
                    &binding(Some("alice"), "prompts/get", Some(&params))
                )
                .is_err()
        );
        let other = json!({"name": "t", "arguments": {"a": 2}});
        assert!(
            sealer
                .open(&state, &binding(Some("alice"), "tools/call", Some(&other)))
                .is_err()
        );
        // Any flipped character fails.
        let mut tampered = state.clone().into_bytes();
        let i = tampered.len() / 2;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(
            sealer
                .open(
                    &tampered,
                    &binding(Some("alice"), "tools/call", Some(&params))
                )
                .is_err()
        );
        // Another key (another process without a shared key) cannot open it.
        assert!(
            StateSealer::default()
                .open(&state, &binding(Some("alice"), "tools/call", Some(&params)))
                .is_err()
        );
        assert!(sealer.open("", &binding(None, "tools/call", None)).is_err());
        assert!(
            sealer
                .open("!!!", &binding(None, "tools/call", None))
                .is_err()
        );
    }

    #[test]
    fn an_expired_state_is_refused() {
        let sealer = StateSealer::default().ttl(Duration::ZERO);
        let state = sealer.seal(&binding(None, "tools/call", None), &answers());
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            sealer.open(&state, &binding(None, "tools/call", None)),
            Err(StateError::Expired)
        );
    }

    #[test]
    fn retry_answers_merge_state_and_responses() {
        let sealer = StateSealer::default();
        assert_eq!(
            retry_answers(
                &sealer,
                &binding(None, "tools/call", None),
                Some(&json!({}))
            ),
            Ok(None)
        );
        let state = sealer.seal(
            &binding(None, "tools/call", Some(&json!({"name": "t"}))),
            &answers(),
        );
        let params = json!({"name": "t", "requestState": state,
            "inputResponses": {"color": {"action": "accept", "content": {"color": "blue"}}}});
        let aad = binding(None, "tools/call", Some(&params));
        let merged = retry_answers(&sealer, &aad, Some(&params))
            .unwrap()
            .unwrap();
        assert_eq!(merged.len(), 2);
        for bad in [
            json!({"inputResponses": null}),
            json!({"inputResponses": {"x": 12345}}),
            json!({"inputResponses": []}),
            json!({"requestState": 5}),
        ] {
            let e =
                retry_answers(&sealer, &binding(None, "tools/call", None), Some(&bad)).unwrap_err();
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{bad}");
        }
    }
}
