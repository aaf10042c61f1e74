//! `subscriptions/listen` (2026-07-28): long-lived streams of change notifications.
//!
//! A listen request names the notifications it wants (`toolsListChanged`,
//! `promptsListChanged`, `resourcesListChanged`, `resourceSubscriptions: [uri]`, and with the
//! tasks extension `taskIds: [id]` for `notifications/tasks`). The endpoint
//! answers with an SSE stream whose first message is `notifications/subscriptions/acknowledged`
//! carrying the honoured subset; every later notification carries the subscription id (the
//! listen request's id) in `_meta`. Handlers publish with
//! [`Peer::standalone`](crate::Peer::standalone) — the same call that reaches a 2025 session's
//! GET stream — and the [`ListenHub`] hands each notification to the open listen streams of the
//! same principal that asked for its kind.
//!
//! Bounds: at most [`DEFAULT_MAX_LISTENERS`] open streams (more get an in-band `-32603` before any
//! acknowledgement); each stream queues at most [`LISTENER_CAPACITY`] messages, and a listener that
//! lets its queue fill is closed (it listens again) rather than making publishers wait.

use crate::jsonrpc::{Id, Message};
use crate::modern::META_SUBSCRIPTION_ID;
use crate::sse::StreamEvent;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The default bound on open listen streams.
pub const DEFAULT_MAX_LISTENERS: usize = 1024;

/// Messages queued for one listen stream before it is closed as stalled.
pub const LISTENER_CAPACITY: usize = 64;

/// Which notifications a listen stream wants.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Filter {
    tools: bool,
    prompts: bool,
    resources: bool,
    resource_uris: HashSet<String>,
    /// `notifications/tasks` of these tasks (tasks extension).
    task_ids: HashSet<String>,
}

impl Filter {
    /// What the client asked for, restricted to what the server's capabilities offer.
    fn honoured(requested: Option<&Value>, capabilities: &Value) -> Self {
        let wants = |key: &str| {
            requested
                .and_then(|r| r.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let offers = |capability: &str, flag: &str| {
            capabilities
                .get(capability)
                .and_then(|c| c.get(flag))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let strings = |key: &str| -> HashSet<String> {
            requested
                .and_then(|r| r.get(key))
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(Value::as_str)
                        .take(1024)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let resource_uris = if offers("resources", "subscribe") {
            strings("resourceSubscriptions")
        } else {
            HashSet::new()
        };
        let task_ids = if crate::tasks::declared(capabilities) {
            strings("taskIds")
        } else {
            HashSet::new()
        };
        Self {
            tools: wants("toolsListChanged") && offers("tools", "listChanged"),
            prompts: wants("promptsListChanged") && offers("prompts", "listChanged"),
            resources: wants("resourcesListChanged") && offers("resources", "listChanged"),
            resource_uris,
            task_ids,
        }
    }

    fn to_value(&self) -> Value {
        let mut honoured = Map::new();
        if self.tools {
            honoured.insert("toolsListChanged".into(), true.into());
        }
        if self.prompts {
            honoured.insert("promptsListChanged".into(), true.into());
        }
        if self.resources {
            honoured.insert("resourcesListChanged".into(), true.into());
        }
        if !self.resource_uris.is_empty() {
            let mut uris: Vec<&String> = self.resource_uris.iter().collect();
            uris.sort();
            honoured.insert("resourceSubscriptions".into(), json!(uris));
        }
        if !self.task_ids.is_empty() {
            let mut ids: Vec<&String> = self.task_ids.iter().collect();
            ids.sort();
            honoured.insert("taskIds".into(), json!(ids));
        }
        Value::Object(honoured)
    }

    fn wants(&self, method: &str, params: Option<&Value>) -> bool {
        match method {
            "notifications/tools/list_changed" => self.tools,
            "notifications/prompts/list_changed" => self.prompts,
            "notifications/resources/list_changed" => self.resources,
            "notifications/resources/updated" => params
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
                .is_some_and(|uri| self.resource_uris.contains(uri)),
            "notifications/tasks" => params
                .and_then(|p| p.get("taskId"))
                .and_then(Value::as_str)
                .is_some_and(|id| self.task_ids.contains(id)),
            _ => false,
        }
    }
}

struct Listener {
    principal: Option<Arc<str>>,
    subscription_id: Value,
    filter: Filter,
    tx: mpsc::Sender<StreamEvent>,
}

/// The open listen streams of one endpoint; see the [module docs](crate::subscriptions).
pub struct ListenHub {
    listeners: Mutex<Vec<Listener>>,
    max: usize,
}

impl std::fmt::Debug for ListenHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenHub")
            .field("open", &self.len())
            .field("max", &self.max)
            .finish()
    }
}

impl Default for ListenHub {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LISTENERS)
    }
}

/// A listen stream was refused: the bound on open streams is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyListeners;

fn tag(params: Option<&Value>, subscription_id: &Value) -> Value {
    let mut params = match params {
        Some(Value::Object(p)) => p.clone(),
        _ => Map::new(),
    };
    let meta = params
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Value::Object(meta) = meta {
        meta.insert(META_SUBSCRIPTION_ID.into(), subscription_id.clone());
    }
    Value::Object(params)
}

impl ListenHub {
    /// A hub allowing `max` open listen streams.
    pub fn new(max: usize) -> Self {
        Self {
            listeners: Mutex::new(Vec::new()),
            max,
        }
    }

    /// The number of open listen streams.
    pub fn len(&self) -> usize {
        let mut listeners = crate::sync::lock(&self.listeners);
        listeners.retain(|l| !l.tx.is_closed());
        listeners.len()
    }

    /// `true` when no listen stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens a listen stream for request `id` of `principal`: the acknowledgement is queued first.
    pub(crate) fn open(
        &self,
        principal: Option<Arc<str>>,
        id: &Id,
        requested: Option<&Value>,
        capabilities: &Value,
    ) -> Result<mpsc::Receiver<StreamEvent>, TooManyListeners> {
        let filter = Filter::honoured(requested, capabilities);
        let subscription_id = id.to_value();
        let (tx, rx) = mpsc::channel(LISTENER_CAPACITY);
        let ack = Message::notification(
            "notifications/subscriptions/acknowledged",
            Some(json!({
                "notifications": filter.to_value(),
                "_meta": { META_SUBSCRIPTION_ID: subscription_id },
            })),
        );
        // A fresh channel has room for the acknowledgement.
        let _ = tx.try_send(StreamEvent::Message(ack));
        let mut listeners = crate::sync::lock(&self.listeners);
        listeners.retain(|l| !l.tx.is_closed());
        if listeners.len() >= self.max {
            return Err(TooManyListeners);
        }
        listeners.push(Listener {
            principal,
            subscription_id,
            filter,
            tx,
        });
        Ok(rx)
    }

    /// Hands a notification to every open stream of `principal` that asked for its kind, tagged
    /// with that stream's subscription id. Returns how many streams took it.
    pub(crate) fn publish(&self, principal: Option<&str>, message: &Message) -> usize {
        let Message::Notification(notification) = message else {
            return 0;
        };
        let mut delivered = 0;
        let mut listeners = crate::sync::lock(&self.listeners);
        listeners.retain(|listener| {
            if listener.principal.as_deref() != principal
                || !listener
                    .filter
                    .wants(&notification.method, notification.params.as_ref())
            {
                return !listener.tx.is_closed();
            }
            let tagged = Message::notification(
                notification.method.clone(),
                Some(tag(notification.params.as_ref(), &listener.subscription_id)),
            );
            match listener.tx.try_send(StreamEvent::Message(tagged)) {
                Ok(()) => {
                    delivered += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!("listen stream is not reading; closing it");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        delivered
    }

    /// Ends every listen stream gracefully: each gets its final result, then closes.
    pub fn close_all(&self) {
        let listeners = std::mem::take(&mut *crate::sync::lock(&self.listeners));
        for listener in listeners {
            let id = Id::from_value(listener.subscription_id.clone());
            if let Some(id) = id {
                let done = Message::result(
                    id,
                    json!({
                        "resultType": "complete",
                        "_meta": { META_SUBSCRIPTION_ID: listener.subscription_id },
                    }),
                );
                let _ = listener.tx.try_send(StreamEvent::Message(done));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Value {
        json!({"tools": {"listChanged": true}, "prompts": {"listChanged": true},
               "resources": {"subscribe": true}})
    }

    fn method(event: StreamEvent) -> (String, Value) {
        match event {
            StreamEvent::Message(Message::Notification(n)) => (n.method, n.params.unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn acknowledges_first_then_delivers_only_what_was_asked_tagged() {
        let hub = ListenHub::new(8);
        let asked = json!({"toolsListChanged": true, "resourcesListChanged": true,
                           "resourceSubscriptions": ["test://a"]});
        let mut rx = hub
            .open(None, &Id::Number(7), Some(&asked), &caps())
            .unwrap();
        let (m, p) = method(rx.recv().await.unwrap());
        assert_eq!(m, "notifications/subscriptions/acknowledged");
        // resources/list_changed is not offered by these capabilities.
        assert_eq!(
            p["notifications"],
            json!({"toolsListChanged": true, "resourceSubscriptions": ["test://a"]})
        );
        assert_eq!(p["_meta"][META_SUBSCRIPTION_ID], 7);
        for n in [
            Message::notification("notifications/prompts/list_changed", None),
            Message::notification(
                "notifications/resources/updated",
                Some(json!({"uri": "test://b"})),
            ),
            Message::notification("notifications/message", Some(json!({"level": "info"}))),
            Message::notification("notifications/tools/list_changed", None),
            Message::notification(
                "notifications/resources/updated",
                Some(json!({"uri": "test://a"})),
            ),
        ] {
            hub.publish(None, &n);
        }
        let (m, p) = method(rx.recv().await.unwrap());
        assert_eq!(m, "notifications/tools/list_changed");
        assert_eq!(p["_meta"][META_SUBSCRIPTION_ID], 7);
        let (m, p) = method(rx.recv().await.unwrap());
        assert_eq!(m, "notifications/resources/updated");
        assert_eq!(p["uri"], "test://a");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn principals_are_kept_apart_and_the_count_is_bounded() {
        let hub = ListenHub::new(2);
        let asked = json!({"toolsListChanged": true});
        let mut alice = hub
            .open(Some("alice".into()), &Id::Number(1), Some(&asked), &caps())
            .unwrap();
        let mut bob = hub
            .open(Some("bob".into()), &Id::Number(1), Some(&asked), &caps())
            .unwrap();
        assert!(
            hub.open(None, &Id::Number(3), Some(&asked), &caps())
                .is_err()
        );
        let changed = Message::notification("notifications/tools/list_changed", None);
        assert_eq!(hub.publish(Some("alice"), &changed), 1);
        alice.recv().await.unwrap();
        alice.recv().await.unwrap();
        bob.recv().await.unwrap();
        assert!(bob.try_recv().is_err());
        // A closed stream frees its place.
        drop(bob);
        assert!(
            hub.open(None, &Id::Number(4), Some(&asked), &caps())
                .is_ok()
        );
    }

    #[tokio::test]
    async fn close_all_sends_the_final_result() {
        let hub = ListenHub::new(2);
        let mut rx = hub.open(None, &Id::from("s"), None, &caps()).unwrap();
        rx.recv().await.unwrap();
        hub.close_all();
        match rx.recv().await.unwrap() {
            StreamEvent::Message(Message::Response(r)) => {
                assert_eq!(r.result["resultType"], "complete");
                assert_eq!(r.result["_meta"][META_SUBSCRIPTION_ID], "s");
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.recv().await.is_none());
    }
}
