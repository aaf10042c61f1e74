//! [`ScopeLayer`]: scopes every request needs, and scopes per tool (MCP step-up authorization).

use super::AuthError;
use crate::jsonrpc::{Id, Message, Payload};
use crate::jsonrpc_body::ParsedBody;
use crate::principal::Principal;
use http::{Method, Request, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

use crate::future::ResponseFuture;

/// Which scopes a request needs: some for every request, more for `tools/call` of given tools.
///
/// ```
/// use mcp_tower_http::auth::ScopePolicy;
///
/// let policy = ScopePolicy::new()
///     .require(["mcp"])
///     .tool("delete_file", ["files:write"]);
/// assert!(!policy.is_empty());
/// ```
#[derive(Clone, Debug, Default)]
pub struct ScopePolicy {
    required: Vec<String>,
    tools: HashMap<String, Vec<String>>,
}

impl ScopePolicy {
    /// Requires nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `scopes` for every request (added to those already required).
    pub fn require<I, T>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        push_unique(&mut self.required, scopes);
        self
    }

    /// Requires `scopes` (besides the global ones) to call the tool `name`.
    pub fn tool<I, T>(mut self, name: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        push_unique(self.tools.entry(name.into()).or_default(), scopes);
        self
    }

    /// `true` when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.required.is_empty() && self.tools.values().all(Vec::is_empty)
    }

    /// `true` when `principal` may call the tool `name`: it holds every scope
    /// [`tool`](Self::tool) gave it (the global scopes are checked for every request anyway).
    pub fn allows_tool(&self, principal: Option<&Principal>, name: &str) -> bool {
        match self.tools.get(name) {
            None => true,
            Some(scopes) if scopes.is_empty() => true,
            Some(scopes) => principal.is_some_and(|p| scopes.iter().all(|s| p.has_scope(s))),
        }
    }

    /// `true` when some tool needs a scope of its own (so lists of tools may need filtering).
    pub fn has_tool_scopes(&self) -> bool {
        self.tools.values().any(|s| !s.is_empty())
    }

    /// Every scope a request with `payload` needs: the global ones, then those of each tool
    /// called, without duplicates.
    pub fn required_for(&self, payload: Option<&Payload>) -> Vec<String> {
        let mut required = self.required.clone();
        for tool in payload.into_iter().flat_map(tool_calls) {
            if let Some(scopes) = self.tools.get(tool.1) {
                push_unique(&mut required, scopes.iter().cloned());
            }
        }
        required
    }

    /// Checks `principal` against the scopes a request with `payload` needs: `Ok`, `401`
    /// without a principal, or `403 insufficient_scope` naming every scope needed (those granted
    /// included, as MCP step-up asks).
    pub fn check(
        &self,
        principal: Option<&Principal>,
        payload: Option<&Payload>,
    ) -> Result<(), AuthError> {
        let required = self.required_for(payload);
        if required.is_empty() {
            return Ok(());
        }
        let id = payload.and_then(|p| {
            tool_calls(p)
                .find(|(_, name)| self.tools.get(*name).is_some_and(|s| !s.is_empty()))
                .map(|(id, _)| id)
                .or_else(|| p.first_request_id())
                .cloned()
        });
        let Some(principal) = principal else {
            return Err(AuthError::missing_credentials().with_id(id));
        };
        if required.iter().all(|s| principal.has_scope(s)) {
            Ok(())
        } else {
            Err(AuthError::insufficient_scope(required).with_id(id))
        }
    }
}

fn push_unique<I, T>(into: &mut Vec<String>, scopes: I)
where
    I: IntoIterator<Item = T>,
    T: Into<String>,
{
    for scope in scopes {
        let scope = scope.into();
        if !scope.is_empty() && !into.contains(&scope) {
            into.push(scope);
        }
    }
}

/// The `(id, tool name)` of every `tools/call` request in `payload`.
fn tool_calls(payload: &Payload) -> impl Iterator<Item = (&Id, &str)> {
    payload.messages().iter().filter_map(|m| match m {
        Message::Request(r) if r.method == "tools/call" => r
            .params
            .as_ref()
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .map(|name| (&r.id, name)),
        _ => None,
    })
}

/// Enforces a [`ScopePolicy`] with the [`Principal`] and parsed [`Payload`] in the request
/// extensions; place it after [`AuthLayer`](super::AuthLayer) and
/// [`JsonRpcBodyLayer`](crate::jsonrpc_body::JsonRpcBodyLayer).
///
/// `OPTIONS` passes. Refusals are [`AuthError`] responses (`403 insufficient_scope`, or `401`
/// when no principal is there) that [`ChallengeLayer`](super::ChallengeLayer) renders. To also
/// hide from `tools/list` the tools a principal may not call, wrap the server in a
/// [`ToolVisibilityLayer`](super::ToolVisibilityLayer) with the same policy.
///
/// # Example
///
/// ```
/// use mcp_tower_http::auth::{ScopeLayer, ScopePolicy};
/// use mcp_tower_http::jsonrpc_body::{JsonRpcBodyLayer, ParsedBody};
/// use mcp_tower_http::Principal;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use std::convert::Infallible;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // The scope layer takes only parsed bodies: the body layer goes in front of it.
/// let service = ServiceBuilder::new()
///     .layer(JsonRpcBodyLayer::new())
///     .layer(ScopeLayer::new(ScopePolicy::new().tool("delete_file", ["files:write"])))
///     .service_fn(|_req: Request<ParsedBody>| async { Ok::<_, Infallible>(Response::new(())) });
///
/// let mut principal = Principal::new("alice");
/// principal.scopes = vec!["files:read".into()];
/// let mut request = Request::post("/mcp")
///     .header("content-type", "application/json")
///     .body(Full::<Bytes>::from(
///         r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}}"#,
///     ))
///     .unwrap();
/// request.extensions_mut().insert(principal);
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// # }
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct ScopeLayer {
    policy: Arc<ScopePolicy>,
}

impl ScopeLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: ScopePolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &ScopePolicy {
        &self.policy
    }
}

impl<S> Layer<S> for ScopeLayer {
    type Service = Scope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Scope {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service made by [`ScopeLayer`].
#[derive(Clone, Debug)]
pub struct Scope<S> {
    inner: S,
    policy: Arc<ScopePolicy>,
}

impl<S> Scope<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, ResBody> Service<Request<ParsedBody>> for Scope<S>
where
    S: Service<Request<ParsedBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ParsedBody>) -> Self::Future {
        let checked = if req.method() == Method::OPTIONS {
            Ok(())
        } else {
            self.policy.check(
                req.extensions().get::<Principal>(),
                req.extensions().get::<Payload>(),
            )
        };
        match checked {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(error) => ResponseFuture::reject(error.into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthErrorKind;
    use http::StatusCode;
    use std::convert::Infallible;
    use tower::ServiceExt;

    fn principal(scopes: &[&str]) -> Principal {
        let mut p = Principal::new("alice");
        p.scopes = scopes.iter().map(|s| s.to_string()).collect();
        p
    }

    fn call(tool: &str) -> Payload {
        Payload::parse(
            format!(
                r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn policy() -> ScopePolicy {
        ScopePolicy::new()
            .require(["mcp"])
            .tool("delete", ["files:write", "files:read"])
            .tool("read", ["files:read"])
    }

    #[test]
    fn required_scopes_are_the_union() {
        let p = policy();
        assert_eq!(p.required_for(None), ["mcp"]);
        assert_eq!(
            p.required_for(Some(&call("delete"))),
            ["mcp", "files:write", "files:read"]
        );
        let batch = Payload::parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read"}},
                {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete"}}]"#,
        )
        .unwrap();
        assert_eq!(
            p.required_for(Some(&batch)),
            ["mcp", "files:read", "files:write"]
        );
        assert!(
            ScopePolicy::new()
                .tool("x", Vec::<String>::new())
                .is_empty()
        );
    }

    #[test]
    fn insufficient_scope_lists_every_needed_scope() {
        let p = policy();
        let e = p
            .check(
                Some(&principal(&["mcp", "files:read"])),
                Some(&call("delete")),
            )
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            e.kind(),
            &AuthErrorKind::InsufficientScope {
                required: vec!["mcp".into(), "files:write".into(), "files:read".into()]
            }
        );
        assert_eq!(e.id(), Some(&Id::Number(9)));
        assert!(
            p.check(
                Some(&principal(&["mcp", "files:read", "files:write"])),
                Some(&call("delete"))
            )
            .is_ok()
        );
        // Global scopes apply to every request, with or without a payload.
        let e = p.check(Some(&principal(&[])), None).unwrap_err();
        assert!(
            matches!(e.kind(), AuthErrorKind::InsufficientScope { required } if required == &["mcp"])
        );
        assert!(
            p.check(Some(&principal(&["mcp"])), Some(&call("unlisted")))
                .is_ok()
        );
        // No principal: authenticate first.
        let e = p.check(None, None).unwrap_err();
        assert_eq!(e.kind(), &AuthErrorKind::MissingCredentials);
        assert!(
            ScopePolicy::new()
                .check(None, Some(&call("delete")))
                .is_ok()
        );
    }

    #[tokio::test]
    async fn the_layer_refuses_and_passes() {
        let svc =
            ScopeLayer::new(policy()).layer(tower::service_fn(|_: Request<ParsedBody>| async {
                Ok::<_, Infallible>(Response::new("ok"))
            }));
        let mut req = Request::post("/mcp").body(ParsedBody::default()).unwrap();
        req.extensions_mut().insert(principal(&["mcp"]));
        req.extensions_mut().insert(call("delete"));
        let r = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.extensions().get::<AuthError>().is_some());

        let mut req = Request::post("/mcp").body(ParsedBody::default()).unwrap();
        req.extensions_mut().insert(principal(&["mcp"]));
        req.extensions_mut().insert(call("other"));
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap().status(),
            StatusCode::OK
        );

        let req = Request::options("/mcp")
            .body(ParsedBody::default())
            .unwrap();
        assert_eq!(svc.oneshot(req).await.unwrap().status(), StatusCode::OK);
    }
}
