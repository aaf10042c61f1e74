//! [`ToolVisibilityLayer`]: each principal sees in `tools/list` only the tools it may call.

use super::ScopePolicy;
use crate::ProtocolVersion;
use crate::jsonrpc::{ErrorObject, Notification, Request};
use crate::service::{
    MakeMcpService, McpService, NotificationContext, RequestContext, SessionContext,
};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use tower::Layer;

/// Filters the `tools/list` answers of the wrapped [`McpService`] (or of every service a
/// [`MakeMcpService`] makes) by a [`ScopePolicy`]: a tool whose scopes
/// ([`ScopePolicy::tool`]) the request's [`Principal`](crate::Principal) lacks is left out, so a
/// client is not shown tools that [`ScopeLayer`](super::ScopeLayer) would refuse.
///
/// It works on answers, so it covers both eras (2025 sessions and sessionless 2026-07-28
/// requests) and any server: built in, written with rmcp, or a stdio child
/// ([`StdioCommand`](crate::stdio::StdioCommand)). A `notifications/tools/list_changed` passes
/// as it is: the list the client then fetches is filtered. A filtered 2026-07-28 list is marked
/// `cacheScope: private`, since it depends on the principal. Without tool scopes it passes
/// everything untouched.
///
/// ```
/// use mcp_tower_http::auth::{ScopePolicy, ToolVisibilityLayer};
/// use mcp_tower_http::everything::EverythingServer;
/// use mcp_tower_http::{McpStack, SessionContext};
/// use tower::Layer;
///
/// let policy = ScopePolicy::new().tool("add", ["math"]);
/// let visible = ToolVisibilityLayer::new(policy.clone());
/// let _stack = McpStack::new(visible.layer(|_: &SessionContext<'_>| EverythingServer::new()))
///     .scopes(policy)
///     .into_service();
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ToolVisibilityLayer {
    policy: Option<Arc<ScopePolicy>>,
}

impl ToolVisibilityLayer {
    /// Shows each principal the tools `policy` lets it call.
    pub fn new(policy: ScopePolicy) -> Self {
        Self {
            policy: policy.has_tool_scopes().then(|| Arc::new(policy)),
        }
    }
}

impl<T> Layer<T> for ToolVisibilityLayer {
    type Service = ToolVisibility<T>;

    fn layer(&self, inner: T) -> Self::Service {
        ToolVisibility {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// An [`McpService`] (or [`MakeMcpService`]) whose `tools/list` answers are filtered; made by
/// [`ToolVisibilityLayer`].
#[derive(Clone, Debug)]
pub struct ToolVisibility<T> {
    inner: T,
    policy: Option<Arc<ScopePolicy>>,
}

impl<T> ToolVisibility<T> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<S: McpService> McpService for ToolVisibility<S> {
    fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send {
        let filter = self
            .policy
            .clone()
            .filter(|_| request.method == "tools/list")
            .map(|policy| {
                let sessionless = ProtocolVersion::SESSIONLESS.contains(&cx.protocol_version());
                (policy, cx.principal().cloned(), sessionless)
            });
        let answer = self.inner.handle_request(request, cx);
        async move {
            let mut result = answer.await?;
            if let Some((policy, principal, sessionless)) = filter
                && let Some(Value::Array(tools)) = result.get_mut("tools")
            {
                tools.retain(|tool| {
                    // A tool without a name is the server's problem; leave it.
                    tool.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(|name| policy.allows_tool(principal.as_ref(), name))
                });
                // The list now depends on who asked: no shared cache may keep it (2026-07-28).
                if sessionless {
                    result["cacheScope"] = Value::from("private");
                }
            }
            Ok(result)
        }
    }

    fn handle_notification(
        &self,
        notification: Notification,
        cx: NotificationContext,
    ) -> impl Future<Output = ()> + Send {
        self.inner.handle_notification(notification, cx)
    }

    fn close(&self) -> impl Future<Output = ()> + Send {
        self.inner.close()
    }
}

crate::macros::wrapping_make_service!(ToolVisibility { policy });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Principal;
    use crate::jsonrpc::Id;
    use serde_json::json;

    struct Lister;

    impl McpService for Lister {
        async fn handle_request(
            &self,
            request: Request,
            _: RequestContext,
        ) -> Result<Value, ErrorObject> {
            Ok(json!({
                "method": request.method,
                "tools": [{ "name": "echo" }, { "name": "add" }, { "name": "delete" }],
                "nextCursor": "c"
            }))
        }
    }

    async fn list(service: &impl McpService, method: &str, scopes: Option<&[&str]>) -> Value {
        let (mut cx, _rx) = RequestContext::detached(Id::Number(1), None, 1);
        if let Some(scopes) = scopes {
            let mut principal = Principal::new("p");
            principal.scopes = scopes.iter().map(|s| s.to_string()).collect();
            let mut extensions = http::Extensions::new();
            extensions.insert(principal);
            cx.common.extensions = Arc::new(extensions);
        }
        let request = Request {
            id: Id::Number(1),
            method: method.into(),
            params: None,
        };
        service.handle_request(request, cx).await.unwrap()
    }

    fn names(result: &Value) -> Vec<&str> {
        result["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn each_principal_sees_the_tools_it_may_call() {
        let policy = ScopePolicy::new()
            .require(["mcp"])
            .tool("add", ["math"])
            .tool("delete", ["files:write", "admin"]);
        let service = ToolVisibilityLayer::new(policy).layer(Lister);
        let all = list(
            &service,
            "tools/list",
            Some(&["math", "files:write", "admin"]),
        )
        .await;
        assert_eq!(names(&all), ["echo", "add", "delete"]);
        assert_eq!(all["nextCursor"], "c");
        let some = list(&service, "tools/list", Some(&["math", "files:write"])).await;
        assert_eq!(names(&some), ["echo", "add"]);
        let none = list(&service, "tools/list", None).await;
        assert_eq!(names(&none), ["echo"]);
        // Other methods pass untouched.
        let other = list(&service, "resources/list", None).await;
        assert_eq!(names(&other), ["echo", "add", "delete"]);
        // Without tool scopes nothing is filtered.
        let open = ToolVisibilityLayer::new(ScopePolicy::new().require(["mcp"])).layer(Lister);
        assert_eq!(names(&list(&open, "tools/list", None).await).len(), 3);
    }
}
