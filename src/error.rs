//! The typed transport error every layer rejects with, and its one HTTP mapping.
//!
//! Layers keep `Error = S::Error`: a rejection is a [`Response`] whose status comes from
//! [`TransportErrorKind::status`] and whose extensions carry the [`TransportError`] (the pattern of
//! tower-http's csrf layer). [`JsonRpcErrorLayer`](crate::error_map::JsonRpcErrorLayer) renders
//! it as a JSON-RPC error body. Used alone, a layer still answers with the right status and headers.

use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message};
use crate::protocol::ProtocolVersion;
use http::{HeaderValue, Response, StatusCode, header};
use std::borrow::Cow;
use std::fmt;

/// Why the transport refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The body is not JSON.
    ParseError,
    /// The body is JSON but not a JSON-RPC message the transport accepts (wrong shape, batch at a
    /// revision without batches, `initialize` in a batch or on a live session).
    InvalidRequest,
    /// `Content-Type` is not `application/json`.
    UnsupportedMediaType,
    /// `Accept` does not list the media types the response needs.
    NotAcceptable,
    /// The body exceeds the size limit.
    PayloadTooLarge,
    /// A non-`initialize` request came without `Mcp-Session-Id`.
    MissingSessionId,
    /// The session id is unknown, ended, or belongs to another principal.
    SessionNotFound,
    /// `MCP-Protocol-Version` names an unsupported revision.
    UnsupportedProtocolVersion,
    /// The session limit is reached.
    TooManySessions,
    /// A second standalone GET stream was opened on one session.
    StreamConflict,
    /// The HTTP method is not served here.
    MethodNotAllowed,
    /// `Last-Event-ID` names no event this server can replay.
    UnknownEventId,
    /// The request's `Origin` or `Host` is not allowed (DNS-rebinding protection).
    Forbidden,
    /// Something failed inside the server; details are logged, never sent.
    Internal,
    /// 2026-07-28: a routing header (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`,
    /// `Mcp-Param-*`) is missing, malformed or disagrees with the body (`-32020`).
    HeaderMismatch,
    /// 2026-07-28: the request's `_meta` claims a revision this server does not serve
    /// (`-32022`, with `data.supported` and `data.requested`).
    UnsupportedVersion,
    /// 2026-07-28: the request's `_meta` lacks a required field (`-32602`).
    InvalidParams,
    /// 2026-07-28: answering needs a client capability the request did not declare (`-32021`,
    /// with `data.requiredCapabilities`).
    MissingCapability,
    /// 2026-07-28: the method is not served (removed, unknown, or its capability is not
    /// advertised): HTTP 404 with `-32601`.
    MethodNotFound,
    /// Authentication is required or failed (an auth layer's `AuthError` maps here).
    Unauthorized,
    /// A dependency needed to answer is down, e.g. the JWKS or introspection endpoint that
    /// checks credentials.
    Unavailable,
    /// The caller sent too many requests (a rate limit of the host's own, e.g. one inserted
    /// with [`McpStack::layer`](crate::McpStack::layer)).
    TooManyRequests,
    /// The server did not answer a request in time
    /// ([`RequestTimeoutLayer`](crate::timeout::RequestTimeoutLayer)): `-32001`, HTTP 504.
    RequestTimeout,
}

impl TransportErrorKind {
    /// The HTTP status for this kind: the single place where rejections meet HTTP (auth errors
    /// map to a kind too, with `AuthErrorKind::transport_kind`).
    pub fn status(self) -> StatusCode {
        use TransportErrorKind::*;
        match self {
            ParseError
            | InvalidRequest
            | MissingSessionId
            | UnsupportedProtocolVersion
            | UnknownEventId
            | HeaderMismatch
            | UnsupportedVersion
            | InvalidParams
            | MissingCapability => StatusCode::BAD_REQUEST,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SessionNotFound | MethodNotFound => StatusCode::NOT_FOUND,
            Unauthorized => StatusCode::UNAUTHORIZED,
            TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Forbidden => StatusCode::FORBIDDEN,
            TooManySessions | Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            StreamConflict => StatusCode::CONFLICT,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The JSON-RPC error code of the body.
    pub fn code(self) -> ErrorCode {
        use TransportErrorKind::*;
        match self {
            ParseError => ErrorCode::PARSE_ERROR,
            InvalidRequest => ErrorCode::INVALID_REQUEST,
            SessionNotFound => ErrorCode::SESSION_NOT_FOUND,
            Internal => ErrorCode::INTERNAL_ERROR,
            HeaderMismatch => ErrorCode::HEADER_MISMATCH,
            UnsupportedVersion => ErrorCode::UNSUPPORTED_PROTOCOL_VERSION,
            InvalidParams => ErrorCode::INVALID_PARAMS,
            MissingCapability => ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
            MethodNotFound => ErrorCode::METHOD_NOT_FOUND,
            RequestTimeout => ErrorCode::REQUEST_TIMEOUT,
            _ => ErrorCode::SERVER_ERROR,
        }
    }

    /// The default message, as the official SDKs word it.
    fn default_message(self) -> &'static str {
        use TransportErrorKind::*;
        match self {
            ParseError => "Parse error: body is not valid JSON",
            InvalidRequest => "Invalid Request",
            UnsupportedMediaType => "Unsupported Media Type: Content-Type must be application/json",
            NotAcceptable => {
                "Not Acceptable: Client must accept both application/json and text/event-stream"
            }
            PayloadTooLarge => "Payload Too Large",
            MissingSessionId => "Bad Request: Mcp-Session-Id header is required",
            SessionNotFound => "Session not found",
            UnsupportedProtocolVersion => "Bad Request: Unsupported protocol version",
            TooManySessions => "Service Unavailable: too many sessions",
            StreamConflict => "Conflict: Only one SSE stream is allowed per session",
            MethodNotAllowed => "Method Not Allowed",
            UnknownEventId => "Bad Request: unknown Last-Event-ID",
            Forbidden => "Forbidden",
            Internal => "Internal error",
            HeaderMismatch => "Bad Request: routing headers do not match the request",
            UnsupportedVersion => "Unsupported protocol version",
            InvalidParams => "Invalid params",
            MissingCapability => "Missing required client capability",
            MethodNotFound => "Method not found",
            Unauthorized => "Unauthorized",
            Unavailable => "Service Unavailable",
            TooManyRequests => "Too Many Requests",
            RequestTimeout => "Request timed out",
        }
    }
}

/// A transport-level rejection, carried in the extensions of the response that reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct TransportError {
    kind: TransportErrorKind,
    id: Option<Id>,
    message: Cow<'static, str>,
    data: Option<serde_json::Value>,
    allow: Option<&'static str>,
    retry_after_secs: Option<u32>,
}

impl TransportError {
    /// An error of `kind` with its default message.
    pub fn new(kind: TransportErrorKind) -> Self {
        Self {
            kind,
            id: None,
            message: Cow::Borrowed(kind.default_message()),
            data: None,
            allow: None,
            retry_after_secs: None,
        }
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }

    /// Sets the error's `data` member.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// A rejection of `kind` carrying a handler's error as it is (message and data), e.g. a
    /// `-32601` that 2026-07-28 answers with HTTP 404.
    pub fn from_error_object(kind: TransportErrorKind, error: ErrorObject) -> Self {
        let mut e = Self::new(kind).with_message(error.message);
        e.data = error.data;
        e
    }

    /// `400 -32022` for a sessionless request claiming a revision not served, listing the
    /// sessionless revisions that are.
    pub fn unsupported_version(requested: &str) -> Self {
        let supported: Vec<&str> = ProtocolVersion::SESSIONLESS
            .map(ProtocolVersion::as_str)
            .into();
        Self::new(TransportErrorKind::UnsupportedVersion)
            .with_message(format!(
                "Unsupported protocol version (supported versions: {})",
                supported.join(", ")
            ))
            .with_data(serde_json::json!({ "supported": supported, "requested": requested }))
    }

    /// Sets the id of the request being refused, echoed in the body.
    pub fn with_id(mut self, id: Option<Id>) -> Self {
        self.id = id;
        self
    }

    /// `405` with an `Allow` header.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut e = Self::new(TransportErrorKind::MethodNotAllowed);
        e.allow = Some(allow);
        e
    }

    /// `503` with a `Retry-After` header.
    pub fn too_many_sessions(retry_after_secs: u32) -> Self {
        let mut e = Self::new(TransportErrorKind::TooManySessions);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// `429` with a `Retry-After` header, for a host's rate limit.
    pub fn too_many_requests(retry_after_secs: u32) -> Self {
        let mut e = Self::new(TransportErrorKind::TooManyRequests);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// `413` naming the limit.
    pub fn payload_too_large(limit: Option<usize>) -> Self {
        let e = Self::new(TransportErrorKind::PayloadTooLarge);
        match limit {
            Some(limit) => e.with_message(format!(
                "Payload Too Large: request body exceeds {limit} bytes"
            )),
            None => e,
        }
    }

    /// `400` for an `MCP-Protocol-Version` outside [`ProtocolVersion::SUPPORTED`].
    pub fn unsupported_protocol_version(got: &str) -> Self {
        // The client's value is only echoed when it is short printable ASCII.
        let shown = if got.len() <= 64 && got.bytes().all(|b| b.is_ascii_graphic()) {
            got
        } else {
            "(invalid)"
        };
        Self::new(TransportErrorKind::UnsupportedProtocolVersion).with_message(format!(
            "Bad Request: Unsupported protocol version: {shown} (supported versions: {})",
            ProtocolVersion::supported_list()
        ))
    }

    /// `406` for a GET whose `Accept` lacks `text/event-stream`.
    pub fn not_acceptable_event_stream() -> Self {
        Self::new(TransportErrorKind::NotAcceptable)
            .with_message("Not Acceptable: Client must accept text/event-stream")
    }

    /// The kind.
    pub fn kind(&self) -> TransportErrorKind {
        self.kind
    }

    /// The id of the refused request, if known.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON-RPC error response for the body.
    pub fn to_message(&self) -> Message {
        Message::error(self.id.clone(), self.to_error_object())
    }

    /// The JSON-RPC error object (code, message, data), e.g. for a handler's answer.
    pub fn to_error_object(&self) -> ErrorObject {
        let mut error = ErrorObject::new(self.kind.code(), self.message.clone().into_owned());
        error.data = self.data.clone();
        error
    }

    /// A rejection response: status and headers set, empty body, this error in the extensions
    /// for [`JsonRpcErrorLayer`](crate::error_map::JsonRpcErrorLayer) (or any other layer) to render.
    pub fn into_response<B: Default>(self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.kind.status();
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// The 500 of a miscomposed stack: `layer` needs `missing` in front of it. Logged as an error
/// (it is a bug in the host, not the client's fault); the message names both layers so the
/// mistake is found from the first failing request.
pub(crate) fn missing_layer(layer: &'static str, missing: &'static str) -> TransportError {
    tracing::error!(
        layer,
        missing,
        "misconfigured stack: {layer} needs {missing} in front of it"
    );
    TransportError::new(TransportErrorKind::Internal).with_message(format!(
        "Internal error: misconfigured server: {layer} needs {missing} in front of it"
    ))
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TransportError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_carries_status_headers_and_error() {
        let r: Response<String> = TransportError::method_not_allowed("POST").into_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "POST");
        assert_eq!(
            r.extensions().get::<TransportError>().map(|e| e.kind()),
            Some(TransportErrorKind::MethodNotAllowed)
        );
        let r: Response<String> = TransportError::too_many_sessions(5).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn unsupported_version_lists_supported_and_hides_garbage() {
        let e = TransportError::unsupported_protocol_version("1999-01-01");
        assert!(e.message().contains("1999-01-01"));
        assert!(e.message().contains("2025-11-25, 2025-06-18, 2025-03-26"));
        assert_eq!(e.to_message().id(), None);
        let e = TransportError::unsupported_protocol_version("a\u{7f}b");
        assert!(e.message().contains("(invalid)"));
    }

    #[test]
    fn codes() {
        assert_eq!(
            TransportErrorKind::ParseError.code(),
            ErrorCode::PARSE_ERROR
        );
        assert_eq!(
            TransportErrorKind::SessionNotFound.code(),
            ErrorCode(-32001)
        );
        assert_eq!(TransportErrorKind::NotAcceptable.code(), ErrorCode(-32000));
        assert_eq!(
            TransportErrorKind::Internal.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
