//! [`RpcMetricsLayer`]: JSON-RPC requests by method and tool, their latency and error codes.

use super::{Metrics, method_label};
use crate::jsonrpc::{ErrorObject, Notification, Request};
use crate::service::{
    MakeMcpService, McpService, NotificationContext, RequestContext, SessionContext,
};
use serde_json::Value;
use std::future::Future;
use std::time::Instant;
use tower::Layer;

/// Records every request of the wrapped [`McpService`] (or of each service a
/// [`MakeMcpService`] makes) into [`Metrics`]; see the [module docs](crate::metrics). Put it
/// outside a [`RequestTimeoutLayer`](crate::timeout::RequestTimeoutLayer), so that timeouts
/// are counted with their code (`-32001`).
#[derive(Clone, Debug)]
pub struct RpcMetricsLayer {
    metrics: Option<Metrics>,
}

impl RpcMetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics: Some(metrics),
        }
    }

    /// Records nothing (the same service type, for a host where metrics are optional).
    pub fn disabled() -> Self {
        Self { metrics: None }
    }
}

impl<T> Layer<T> for RpcMetricsLayer {
    type Service = RpcMetrics<T>;

    fn layer(&self, inner: T) -> Self::Service {
        RpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// An [`McpService`] (or [`MakeMcpService`]) whose requests are measured; made by
/// [`RpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct RpcMetrics<T> {
    inner: T,
    metrics: Option<Metrics>,
}

impl<T> RpcMetrics<T> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<S: McpService> McpService for RpcMetrics<S> {
    fn handle_request(
        &self,
        request: Request,
        cx: RequestContext,
    ) -> impl Future<Output = Result<Value, ErrorObject>> + Send {
        let recording = self.metrics.as_ref().map(|metrics| {
            let method = method_label(&request.method);
            // A known tool's label is shared; an unknown name is kept until the call succeeds.
            let (known, name) = match tool_name(method, &request) {
                Some(name) => match metrics.known_tool(name) {
                    Some(known) => (Some(known), None),
                    None => (None, Some(name.to_owned())),
                },
                None => (None, None),
            };
            (metrics, method, known, name, Instant::now())
        });
        let answer = self.inner.handle_request(request, cx);
        async move {
            let answer = answer.await;
            let Some((metrics, method, known, name, started)) = recording else {
                return answer;
            };
            let seconds = started.elapsed().as_secs_f64();
            // A tool that reported its own failure (`isError`) does not vouch for its name.
            let ok = answer
                .as_ref()
                .is_ok_and(|result| result.get("isError") != Some(&Value::Bool(true)));
            let tool = metrics.tool_label(known, name, ok);
            let code = answer.as_ref().err().map(|e| e.code);
            metrics.record_rpc(method, tool, seconds, code);
            answer
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

/// The `name` of a `tools/call`.
fn tool_name<'r>(method: &str, request: &'r Request) -> Option<&'r str> {
    if method != "tools/call" {
        return None;
    }
    request.params.as_ref()?.get("name")?.as_str()
}

crate::macros::wrapping_make_service!(RpcMetrics { metrics });
