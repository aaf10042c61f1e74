//! What handlers of an [`McpServer`](super::McpServer) get: the request's context and the
//! session's state.

use super::{Kind, Registry};
use crate::jsonrpc::ErrorObject;
use crate::protocol::LogLevel;
use crate::service::{Peer, RequestContext, SendError};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::AbortHandle;

/// The most URIs one session may subscribe to.
const MAX_SUBSCRIPTIONS: usize = 1024;

/// One session's state.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    /// The minimum [`LogLevel`] sent, as its `u8` discriminant.
    log_level: AtomicU8,
    initialized: AtomicBool,
    subscriptions: Mutex<HashSet<String>>,
    /// Items whose enabled state differs from their registration (bounded by the registry).
    toggled: Mutex<HashSet<(Kind, String)>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl SessionState {
    pub(crate) fn set_log_level(&self, level: LogLevel) {
        self.log_level.store(level as u8, Ordering::Relaxed);
    }

    fn log_level(&self) -> LogLevel {
        LogLevel::from_u8(self.log_level.load(Ordering::Relaxed))
    }

    /// `true` the first time.
    pub(crate) fn mark_initialized(&self) -> bool {
        !self.initialized.swap(true, Ordering::AcqRel)
    }

    /// `true` when the URI was not subscribed yet.
    pub(crate) fn subscribe(&self, uri: &str) -> Result<bool, ErrorObject> {
        let mut subscriptions = crate::sync::lock(&self.subscriptions);
        if subscriptions.contains(uri) {
            return Ok(false);
        }
        if subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(ErrorObject::invalid_params(format!(
                "Too many subscriptions (at most {MAX_SUBSCRIPTIONS})"
            )));
        }
        Ok(subscriptions.insert(uri.to_owned()))
    }

    pub(crate) fn unsubscribe(&self, uri: &str) {
        crate::sync::lock(&self.subscriptions).remove(uri);
    }

    fn is_subscribed(&self, uri: &str) -> bool {
        crate::sync::lock(&self.subscriptions).contains(uri)
    }

    pub(crate) fn is_enabled(&self, kind: Kind, key: &str, disabled: bool) -> bool {
        let toggled = crate::sync::lock(&self.toggled);
        // Avoids an allocation for the common case of nothing toggled.
        let flipped = !toggled.is_empty() && toggled.contains(&(kind, key.to_owned()));
        disabled == flipped
    }

    /// Returns whether the state changed.
    fn set_enabled(&self, kind: Kind, key: &str, disabled: bool, enabled: bool) -> bool {
        let mut toggled = crate::sync::lock(&self.toggled);
        let item = (kind, key.to_owned());
        if enabled == disabled {
            toggled.insert(item)
        } else {
            toggled.remove(&item)
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = crate::sync::lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    pub(crate) fn abort_tasks(&self) {
        let tasks = std::mem::take(&mut *crate::sync::lock(&self.tasks));
        for task in tasks {
            task.abort();
        }
    }
}

/// A handle to one session of an [`McpServer`](super::McpServer), for handlers and the work they
/// leave running: its log level, subscriptions and enabled items, and notifications outside any
/// request.
#[derive(Clone)]
pub struct SessionHandle {
    registry: Arc<Registry>,
    state: Arc<SessionState>,
    peer: Peer,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl SessionHandle {
    pub(crate) fn new(registry: Arc<Registry>, state: Arc<SessionState>, peer: Peer) -> Self {
        Self {
            registry,
            state,
            peer,
        }
    }

    /// Sends messages outside any request (the session's GET stream; on 2026-07-28 the
    /// `subscriptions/listen` streams).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The level `logging/setLevel` set (debug until then).
    pub fn log_level(&self) -> LogLevel {
        self.state.log_level()
    }

    /// Whether the client subscribed to `uri`.
    pub fn is_subscribed(&self, uri: &str) -> bool {
        self.state.is_subscribed(uri)
    }

    /// Sends `notifications/resources/updated` for `uri` if the client subscribed to it.
    pub async fn resource_updated(&self, uri: &str) -> Result<(), SendError> {
        if !self.is_subscribed(uri) {
            return Ok(());
        }
        let params = json!({ "uri": uri });
        self.peer
            .notify("notifications/resources/updated", Some(params))
            .await
    }

    /// Runs `task` until it ends or the session does.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.state.spawn(task);
    }

    /// Shows or hides a registered tool in this session, telling the client with
    /// `notifications/tools/list_changed` when that changed anything. `Ok(false)`: nothing
    /// changed (or no such tool).
    pub async fn set_tool_enabled(&self, name: &str, enabled: bool) -> Result<bool, SendError> {
        self.set_enabled(Kind::Tool, name, enabled).await
    }

    /// [`set_tool_enabled`](Self::set_tool_enabled) for a resource, by URI.
    pub async fn set_resource_enabled(&self, uri: &str, enabled: bool) -> Result<bool, SendError> {
        self.set_enabled(Kind::Resource, uri, enabled).await
    }

    /// [`set_tool_enabled`](Self::set_tool_enabled) for a prompt.
    pub async fn set_prompt_enabled(&self, name: &str, enabled: bool) -> Result<bool, SendError> {
        self.set_enabled(Kind::Prompt, name, enabled).await
    }

    async fn set_enabled(&self, kind: Kind, key: &str, enabled: bool) -> Result<bool, SendError> {
        let Some(disabled) = self.registry.disabled_initially(kind, key) else {
            return Ok(false);
        };
        if !self.state.set_enabled(kind, key, disabled, enabled) {
            return Ok(false);
        }
        self.peer.notify(kind.list_changed(), None).await?;
        Ok(true)
    }
}

/// What a handler knows: the request's [`RequestContext`] (through `Deref`: progress, client
/// capabilities, [`ask`](RequestContext::ask), [`run_as_task`](RequestContext::run_as_task)) and
/// the [`SessionHandle`].
#[derive(Clone, Debug)]
pub struct ServerContext {
    request: RequestContext,
    session: SessionHandle,
}

impl ServerContext {
    pub(crate) fn new(request: RequestContext, session: SessionHandle) -> Self {
        Self { request, session }
    }

    /// The request's context.
    pub fn request(&self) -> &RequestContext {
        &self.request
    }

    /// The session's handle.
    pub fn session(&self) -> &SessionHandle {
        &self.session
    }

    /// Sends `notifications/message` on this request's stream when `level` passes the level set
    /// by `logging/setLevel` (on 2026-07-28 the transport applies the request's `logLevel`).
    /// Logging is advisory: delivery failures are ignored.
    pub async fn log(&self, level: LogLevel, logger: &str, data: impl Into<Value>) {
        if level < self.session.log_level() {
            return;
        }
        let params = json!({ "level": level, "logger": logger, "data": data.into() });
        let _ = self
            .request
            .peer()
            .notify("notifications/message", Some(params))
            .await;
    }
}

impl Deref for ServerContext {
    type Target = RequestContext;

    fn deref(&self) -> &RequestContext {
        &self.request
    }
}
