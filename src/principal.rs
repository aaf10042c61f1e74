//! The authenticated caller, as authentication layers place it in request extensions.

use serde_json::Value;
use std::sync::Arc;

/// Who is making a request.
///
/// An authentication layer inserts a `Principal` into the request extensions; the session layer
/// binds each session to the principal that created it (another principal presenting the session
/// id gets 404, as if the session did not exist), and the [`McpService`](crate::McpService) can
/// read it from its context.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// A stable identifier of the caller (token `sub`, API key label, ...).
    pub subject: Arc<str>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Raw claims, when the credential had any.
    pub claims: Value,
}

impl Principal {
    /// A principal with a subject and no scopes or claims.
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        Self {
            subject: subject.into(),
            scopes: Vec::new(),
            claims: Value::Null,
        }
    }

    /// `true` when `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}
