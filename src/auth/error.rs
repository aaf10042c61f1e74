//! [`AuthError`]: the typed rejection of every auth layer, and its one HTTP mapping.

use super::challenge::BearerChallenge;
use crate::error::TransportErrorKind;
use crate::jsonrpc::{ErrorCode, ErrorObject, Id, Message};
use http::{Response, StatusCode, header};
use serde_json::json;
use std::borrow::Cow;
use std::fmt;

/// Why a request was refused by authentication or authorization.
///
/// Its status comes from the crate's one status table, through
/// [`AuthErrorKind::transport_kind`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// No credentials were sent (`401`, challenge without an `error` parameter, RFC 6750 §3.1).
    MissingCredentials,
    /// The request is malformed: a token in the query string, two `Authorization` headers, a
    /// header that is not ASCII (`400`, `error="invalid_request"`).
    InvalidRequest {
        /// Sent as `error_description`.
        description: Cow<'static, str>,
    },
    /// The credential is unknown, expired, badly signed or issued for another resource (`401`,
    /// `error="invalid_token"`).
    InvalidToken {
        /// Sent as `error_description`.
        description: Cow<'static, str>,
    },
    /// The caller is authenticated but lacks scopes (`403`, `error="insufficient_scope"`).
    InsufficientScope {
        /// Every scope the request needs, including those already granted (MCP step-up).
        required: Vec<String>,
    },
    /// The credential could not be checked: the JWKS or introspection endpoint failed (`503`,
    /// no challenge). Details are logged, never sent.
    Unavailable,
}

impl AuthErrorKind {
    /// The HTTP status for this kind, from the crate's one status table
    /// ([`TransportErrorKind::status`]).
    pub fn status(&self) -> StatusCode {
        self.transport_kind().status()
    }

    /// The transport kind this error is reported as.
    pub fn transport_kind(&self) -> TransportErrorKind {
        match self {
            AuthErrorKind::MissingCredentials | AuthErrorKind::InvalidToken { .. } => {
                TransportErrorKind::Unauthorized
            }
            AuthErrorKind::InvalidRequest { .. } => TransportErrorKind::InvalidRequest,
            AuthErrorKind::InsufficientScope { .. } => TransportErrorKind::Forbidden,
            AuthErrorKind::Unavailable => TransportErrorKind::Unavailable,
        }
    }

    /// The RFC 6750 `error` code, when the challenge carries one.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthErrorKind::MissingCredentials | AuthErrorKind::Unavailable => None,
            AuthErrorKind::InvalidRequest { .. } => Some("invalid_request"),
            AuthErrorKind::InvalidToken { .. } => Some("invalid_token"),
            AuthErrorKind::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }

    /// The `error_description` of the challenge, when it carries one.
    pub fn description(&self) -> Option<&str> {
        match self {
            AuthErrorKind::MissingCredentials | AuthErrorKind::Unavailable => None,
            AuthErrorKind::InvalidRequest { description }
            | AuthErrorKind::InvalidToken { description } => Some(description),
            AuthErrorKind::InsufficientScope { .. } => Some("Insufficient scope"),
        }
    }

    /// Whether a `WWW-Authenticate` challenge goes with this error (not for `503`).
    pub(crate) fn has_challenge(&self) -> bool {
        !matches!(self, AuthErrorKind::Unavailable)
    }

    /// How much an error says about the credential, for [`Either`](super::Either): an error
    /// from an authenticator that recognised the credential beats "no credentials".
    pub(crate) fn rank(&self) -> u8 {
        match self {
            AuthErrorKind::MissingCredentials => 0,
            AuthErrorKind::InvalidToken { .. } => 1,
            AuthErrorKind::InvalidRequest { .. } | AuthErrorKind::InsufficientScope { .. } => 2,
            AuthErrorKind::Unavailable => 3,
        }
    }
}

/// An authentication or authorization rejection, carried in the extensions of the response that
/// reports it (as [`TransportError`](crate::TransportError) is).
///
/// Any layer, or the [`McpService`](crate::McpService)'s HTTP endpoint, rejects with
/// [`AuthError::into_response`]; [`ChallengeLayer`](super::ChallengeLayer) then renders the
/// `WWW-Authenticate` challenge with the configured `resource_metadata`, `realm` and `scope`, and
/// a JSON-RPC error body.
///
/// ```
/// use mcp_tower_http::auth::{AuthError, AuthErrorKind};
///
/// let e = AuthError::insufficient_scope(["mcp:read", "mcp:write"]);
/// assert_eq!(e.status(), 403);
/// assert!(matches!(e.kind(), AuthErrorKind::InsufficientScope { required } if required.len() == 2));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthError {
    kind: AuthErrorKind,
    id: Option<Id>,
}

impl AuthError {
    /// An error of `kind`.
    pub fn new(kind: AuthErrorKind) -> Self {
        Self { kind, id: None }
    }

    /// `401` without an `error` parameter: no credentials were sent.
    pub fn missing_credentials() -> Self {
        Self::new(AuthErrorKind::MissingCredentials)
    }

    /// `401 error="invalid_token"` with a description.
    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidToken {
            description: description.into(),
        })
    }

    /// `400 error="invalid_request"` with a description.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidRequest {
            description: description.into(),
        })
    }

    /// `403 error="insufficient_scope"`; `required` is every scope the request needs.
    pub fn insufficient_scope<I, T>(required: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self::new(AuthErrorKind::InsufficientScope {
            required: required.into_iter().map(Into::into).collect(),
        })
    }

    /// `503`: the credential could not be checked.
    pub fn unavailable() -> Self {
        Self::new(AuthErrorKind::Unavailable)
    }

    /// Sets the id of the refused JSON-RPC request, echoed in the body.
    pub fn with_id(mut self, id: Option<Id>) -> Self {
        self.id = id;
        self
    }

    /// The kind.
    pub fn kind(&self) -> &AuthErrorKind {
        &self.kind
    }

    /// The HTTP status; see [`AuthErrorKind::status`].
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The id of the refused request, if known.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// The message of the JSON-RPC error body.
    pub fn message(&self) -> String {
        match &self.kind {
            AuthErrorKind::MissingCredentials => "Unauthorized: authentication required".into(),
            AuthErrorKind::InvalidRequest { description } => format!("Bad Request: {description}"),
            AuthErrorKind::InvalidToken { description } => format!("Unauthorized: {description}"),
            AuthErrorKind::InsufficientScope { .. } => "Forbidden: insufficient scope".into(),
            AuthErrorKind::Unavailable => {
                "Service Unavailable: the credentials could not be verified".into()
            }
        }
    }

    /// The JSON-RPC error response for the body: code `-32000` (generic server error; `-32001`
    /// means "session not found" to MCP clients), `data.error` the RFC 6750 code and, for
    /// insufficient scope, `data.required_scopes`.
    pub fn to_message(&self) -> Message {
        let mut error = ErrorObject::new(ErrorCode::SERVER_ERROR, self.message());
        match &self.kind {
            AuthErrorKind::InsufficientScope { required } => {
                error = error.with_data(
                    json!({ "error": "insufficient_scope", "required_scopes": required }),
                );
            }
            kind => {
                if let Some(code) = kind.error_code() {
                    error = error.with_data(json!({ "error": code }));
                }
            }
        }
        Message::error(self.id.clone(), error)
    }

    /// The bare challenge for this error: `Bearer` plus `error`, `error_description` and, for
    /// insufficient scope, `scope`. [`ChallengeLayer`](super::ChallengeLayer) adds `realm`,
    /// `resource_metadata` and the configured `scope`.
    pub fn challenge(&self) -> BearerChallenge {
        let mut challenge = BearerChallenge::new();
        if let Some(code) = self.kind.error_code() {
            challenge = challenge.error(code);
        }
        if let Some(description) = self.kind.description() {
            challenge = challenge.error_description(description);
        }
        if let AuthErrorKind::InsufficientScope { required } = &self.kind {
            challenge = challenge.scope(required);
        }
        challenge
    }

    /// A rejection response: the status, the bare `WWW-Authenticate` challenge (so the layer is
    /// correct used alone), an empty body, and this error in the extensions for
    /// [`ChallengeLayer`](super::ChallengeLayer) to render.
    pub fn into_response<B: Default>(self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.status();
        if self.kind.has_challenge() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, self.challenge().to_header_value());
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for AuthError {}

/// A configuration mistake found while building an auth component (a bad URL, an unreadable or
/// empty JWKS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_codes_and_bodies() {
        let cases: [(AuthError, u16, Option<&str>); 5] = [
            (AuthError::missing_credentials(), 401, None),
            (
                AuthError::invalid_token("expired"),
                401,
                Some("invalid_token"),
            ),
            (
                AuthError::invalid_request("query"),
                400,
                Some("invalid_request"),
            ),
            (
                AuthError::insufficient_scope(["a"]),
                403,
                Some("insufficient_scope"),
            ),
            (AuthError::unavailable(), 503, None),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.kind().error_code(), code, "{e:?}");
        }
        let body = AuthError::insufficient_scope(["a", "b"])
            .with_id(Some(Id::Number(7)))
            .to_message()
            .to_bytes();
        assert_eq!(
            &body[..],
            br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32000,"message":"Forbidden: insufficient scope","data":{"error":"insufficient_scope","required_scopes":["a","b"]}}}"#
        );
        let body = AuthError::missing_credentials().to_message().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Unauthorized: authentication required"}}"#
        );
    }

    #[test]
    fn rejection_carries_status_bare_challenge_and_error() {
        let r: Response<()> = AuthError::invalid_token("The access token expired").into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token", error_description="The access token expired""#
        );
        assert!(r.extensions().get::<AuthError>().is_some());
        let r: Response<()> = AuthError::missing_credentials().into_response();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let r: Response<()> = AuthError::unavailable().into_response();
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
