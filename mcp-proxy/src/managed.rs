//! Per-session servers: each request failed at once when the proxy stops, and `close` run in
//! the background. The time bound is the library's `RequestTimeoutLayer`, applied in `serve`.

use crate::drain::InFlight;
use mcp_tower_http::jsonrpc::{ErrorCode, ErrorObject, Notification, Request as RpcRequest};
use mcp_tower_http::{
    MakeMcpService, McpService, NotificationContext, RequestContext, SessionContext,
};
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;

/// Shared by the proxy and every session's server.
#[derive(Clone, Debug)]
pub(crate) struct Lifecycle {
    /// Turns `true` when shutdown tears sessions down: requests still running fail at once.
    pub(crate) stopping: watch::Receiver<bool>,
    /// Servers whose `close` (for a stdio child: EOF, SIGTERM, SIGKILL) has not finished.
    pub(crate) closing: InFlight,
}

/// Wraps every session's server (already bounded in time by the library's
/// [`RequestTimeoutLayer`](mcp_tower_http::timeout::RequestTimeoutLayer)): a request fails when
/// the proxy stops, and `close` runs in the background (so closing many sessions is concurrent
/// and a DELETE need not wait for the child to exit).
pub(crate) struct Managed<M> {
    pub(crate) inner: M,
    pub(crate) lifecycle: Lifecycle,
}

impl<M: MakeMcpService> MakeMcpService for Managed<M> {
    type Service = ManagedService<M::Service>;

    fn make_service(
        &self,
        cx: &SessionContext<'_>,
    ) -> impl Future<Output = Result<Self::Service, ErrorObject>> + Send {
        let made = self.inner.make_service(cx);
        let lifecycle = self.lifecycle.clone();
        async move {
            Ok(ManagedService {
                inner: Arc::new(made.await?),
                lifecycle,
            })
        }
    }

    fn rebuildable(&self) -> bool {
        self.inner.rebuildable()
    }
}

pub(crate) struct ManagedService<S> {
    inner: Arc<S>,
    lifecycle: Lifecycle,
}

impl<S: McpService> McpService for ManagedService<S> {
    async fn handle_request(
        &self,
        request: RpcRequest,
        cx: RequestContext,
    ) -> Result<Value, ErrorObject> {
        tracing::debug!(method = %request.method, id = %request.id, "MCP request");
        let mut stopping = self.lifecycle.stopping.clone();
        let stopped = async move {
            if stopping.wait_for(|stop| *stop).await.is_err() {
                // The proxy is gone without stopping: nothing will ever stop us.
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            answer = self.inner.handle_request(request, cx) => answer,
            () = stopped => Err(ErrorObject::new(ErrorCode::SERVER_ERROR, "mcp-proxy is shutting down")),
        }
    }

    fn handle_notification(
        &self,
        notification: Notification,
        cx: NotificationContext,
    ) -> impl Future<Output = ()> + Send {
        self.inner.handle_notification(notification, cx)
    }

    async fn close(&self) {
        let inner = self.inner.clone();
        let guard = self.lifecycle.closing.enter();
        let close = async move {
            inner.close().await;
            drop(guard);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(close);
            }
            Err(_) => close.await,
        }
    }
}
