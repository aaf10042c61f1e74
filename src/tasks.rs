//! The tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) on 2026-07-28 requests:
//! long-running tool calls answered with a task handle that the client polls.
//!
//! A client opts in per request, with `extensions: {"io.modelcontextprotocol/tasks": {}}` in its
//! `_meta` client capabilities; the endpoint advertises the extension in `server/discover`. A
//! handler decides, per call, whether the call becomes a task: it calls
//! [`RequestContext::run_as_task`] and goes on as before. When the client accepts tasks, the
//! transport answers the `tools/call` at once with a `CreateTaskResult` (`resultType: "task"`,
//! `taskId`, `status: "working"`, timestamps, `ttlMs`, `pollIntervalMs`) and the rest of the
//! handler runs in the background; its outcome becomes the task's `result` (`completed`, tool
//! errors with `isError` included) or its `error` (`failed`, a JSON-RPC error). When the client
//! does not accept tasks, the call simply goes on in line, or, with [`TaskSupport::Required`],
//! fails with `-32021` naming the extension.
//!
//! | method | answer |
//! |---|---|
//! | `tasks/get {taskId}` | the task: status, and its `result`, `error` or pending `inputRequests` |
//! | `tasks/update {taskId, inputResponses}` | empty ack; the answers resume the handler's [`RequestContext::ask`] |
//! | `tasks/cancel {taskId}` | empty ack; a running task is `cancelled` and its handler dropped |
//! | `tasks/result`, `tasks/list` | 404 `-32601` (removed by the extension) |
//! | any of them from a client that did not declare the extension | 400 `-32021` |
//! | an unknown (or another principal's) `taskId` | `-32602` |
//!
//! Inside a task, [`RequestContext::ask`] parks the task in `input_required` with the request in
//! `inputRequests` (keyed by the handler's key) until `tasks/update` brings the answer; several
//! asks may be pending at once and are answered one by one. Before `run_as_task`, `ask` works as
//! everywhere in 2026-07-28 (an `input_required` round), so a handler can gather input first and
//! then go on as a task. Status changes are also published as `notifications/tasks` to the
//! `subscriptions/listen` streams of the same principal that asked for the task's id.
//!
//! Tasks are kept in a [`TaskStore`] (by default the bounded [`InMemoryTaskStore`]): a task is
//! visible only to the principal that created it, expires `ttlMs` after its creation, and task
//! ids are 128 bits from the CSPRNG. The handlers of running tasks live in the process that runs
//! them, so `tasks/update` and `tasks/cancel` must reach that instance (route on `Mcp-Name`,
//! which carries the task id); `tasks/get` works from any instance sharing the store.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::jsonrpc::{ErrorObject, Request};
//! use mcp_tower_http::tasks::TaskSupport;
//! use mcp_tower_http::{McpService, RequestContext};
//! use serde_json::{Value, json};
//! use std::time::Duration;
//!
//! struct Reports;
//!
//! impl McpService for Reports {
//!     async fn handle_request(&self, request: Request, cx: RequestContext) -> Result<Value, ErrorObject> {
//!         // For a client that accepts tasks, the call is answered here with a task handle and
//!         // what follows runs in the background; for any other client it runs in line.
//!         cx.run_as_task(TaskSupport::Optional).await?;
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!         Ok(json!({ "content": [{ "type": "text", "text": "report ready" }] }))
//!     }
//! }
//! ```
//!
//! A store shared by several instances implements [`TaskStore`] and is plugged in with
//! [`McpStack::tasks`](crate::McpStack::tasks) (`Tasks::new(store)`).

use crate::BoxError;
use crate::input::InputRequest;
use crate::jsonrpc::{ErrorCode, ErrorObject, Message};
use crate::service::RequestContext;
use crate::subscriptions::ListenHub;
use base64::Engine;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, oneshot, watch};

/// The extension's identifier, in client and server capabilities.
pub const EXTENSION_ID: &str = "io.modelcontextprotocol/tasks";

/// How long a task stays available after its creation (`ttlMs`): 30 minutes. A task still
/// running then is stopped and marked `failed`.
pub const DEFAULT_TASK_TTL: Duration = Duration::from_secs(30 * 60);

/// The polling interval suggested to clients (`pollIntervalMs`): 1 second.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The default bound on tasks an [`InMemoryTaskStore`] keeps, and on tasks running at once.
pub const DEFAULT_MAX_TASKS: usize = 4096;

/// The default bound on the tasks of one principal in an [`InMemoryTaskStore`].
pub const DEFAULT_MAX_TASKS_PER_PRINCIPAL: usize = 256;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// The handler is running.
    Working,
    /// The handler waits for answers to its `inputRequests`.
    InputRequired,
    /// The handler returned a result (tool errors with `isError` included).
    Completed,
    /// The handler returned a JSON-RPC error, panicked, or outlived the task's TTL.
    Failed,
    /// The client cancelled the task.
    Cancelled,
}

impl TaskStatus {
    /// The wire name (`working`, `input_required`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Working => "working",
            TaskStatus::InputRequired => "input_required",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// `true` for `completed`, `failed` and `cancelled`: nothing changes the task any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// Whether a call can do without a task; see [`RequestContext::run_as_task`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskSupport {
    /// Run as a task when the client accepts tasks, in line otherwise.
    Optional,
    /// Run as a task; a client that does not accept tasks gets `-32021`.
    Required,
}

/// A task as stored: what `tasks/get` reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task's id: 128 random bits, URL-safe base64.
    pub task_id: String,
    /// The subject of the principal that created the task (`None` without authentication).
    pub owner: Option<String>,
    /// The current status.
    pub status: TaskStatus,
    /// An optional human-readable note on the status.
    pub status_message: Option<String>,
    /// When the task was created.
    pub created_at: SystemTime,
    /// When the task last changed.
    pub last_updated_at: SystemTime,
    /// How long after `created_at` the task may be discarded.
    pub ttl: Duration,
    /// The polling interval suggested to the client.
    pub poll_interval: Option<Duration>,
    /// The handler's result, once `completed`.
    pub result: Option<Value>,
    /// The handler's error, once `failed`.
    pub error: Option<ErrorObject>,
    /// Input requests waiting for the client's answers, by key (`input_required`).
    pub input_requests: Map<String, Value>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl TaskRecord {
    /// `true` once `ttl` has passed since `created_at`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.created_at
            .checked_add(self.ttl)
            .is_some_and(|end| end <= now)
    }

    /// The `Task` fields every shape shares.
    fn task_fields(&self) -> Map<String, Value> {
        let mut task = Map::new();
        task.insert("taskId".into(), self.task_id.clone().into());
        task.insert("status".into(), self.status.as_str().into());
        if let Some(message) = &self.status_message {
            task.insert("statusMessage".into(), message.clone().into());
        }
        task.insert("createdAt".into(), iso8601(self.created_at).into());
        task.insert("lastUpdatedAt".into(), iso8601(self.last_updated_at).into());
        task.insert("ttlMs".into(), millis(self.ttl).into());
        if let Some(interval) = self.poll_interval {
            task.insert("pollIntervalMs".into(), millis(interval).max(1).into());
        }
        task
    }

    /// The `CreateTaskResult` answering the call that created the task.
    pub fn to_create_result(&self) -> Value {
        let mut task = self.task_fields();
        task.insert("resultType".into(), "task".into());
        Value::Object(task)
    }

    /// The `DetailedTask` of `tasks/get` and `notifications/tasks`: the task with its `result`,
    /// `error` or `inputRequests` inlined by status.
    pub fn to_detailed(&self) -> Value {
        let mut task = self.task_fields();
        match self.status {
            TaskStatus::InputRequired => {
                task.insert(
                    "inputRequests".into(),
                    Value::Object(self.input_requests.clone()),
                );
            }
            TaskStatus::Completed => {
                let result = self.result.clone().unwrap_or_else(|| json!({}));
                task.insert("result".into(), result);
            }
            TaskStatus::Failed => {
                let error = self.error.clone().unwrap_or_else(ErrorObject::internal);
                task.insert("error".into(), json!(error));
            }
            TaskStatus::Working | TaskStatus::Cancelled => {}
        }
        Value::Object(task)
    }
}

/// Formats `t` as ISO 8601 in UTC with milliseconds (`2026-07-28T12:00:00.000Z`).
fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let of_day = secs % 86_400;
    // Days to a civil date (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms").
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// A fresh task id: 128 bits from the thread-local CSPRNG.
fn new_task_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a [`TaskStore`] refused.
#[derive(Debug)]
pub enum TaskStoreError {
    /// The store holds as many tasks as it may, in total or for this principal.
    Full,
    /// The backend failed.
    Backend(BoxError),
}

impl fmt::Display for TaskStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskStoreError::Full => f.write_str("the task store is full"),
            TaskStoreError::Backend(e) => write!(f, "task store: {e}"),
        }
    }
}

impl std::error::Error for TaskStoreError {}

/// Where tasks are kept. Async, so that a shared store (Redis, a database) can implement it;
/// [`InMemoryTaskStore`] is the default.
///
/// A store keeps each task until its TTL has passed (`created_at + ttl`) and never shows a task
/// to another principal than its `owner`.
pub trait TaskStore: Send + Sync + 'static {
    /// Stores a new task. Must be visible to [`get`](Self::get) once this returns (a client
    /// polls right after the `CreateTaskResult`). Refuses with [`TaskStoreError::Full`] at the
    /// store's bound.
    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<(), TaskStoreError>>;

    /// The task `task_id` if it is stored, has not expired and belongs to `owner`.
    fn get<'a>(
        &'a self,
        task_id: &'a str,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>, TaskStoreError>>;

    /// Replaces the state of a stored task (same id and owner). A task no longer stored stays
    /// gone.
    fn update(&self, record: TaskRecord) -> BoxFuture<'_, Result<(), TaskStoreError>>;
}

/// The default [`TaskStore`]: a map in memory, bounded in total and per principal. Expired tasks
/// are dropped when a new one is created; a full store refuses new tasks rather than dropping
/// tasks before their TTL.
#[derive(Debug)]
pub struct InMemoryTaskStore {
    tasks: Mutex<HashMap<String, TaskRecord>>,
    max: usize,
    max_per_owner: usize,
}

impl Default for InMemoryTaskStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_TASKS, DEFAULT_MAX_TASKS_PER_PRINCIPAL)
    }
}

impl InMemoryTaskStore {
    /// A store keeping at most `max` tasks, and `max_per_principal` of any one principal.
    pub fn new(max: usize, max_per_principal: usize) -> Self {
        Self {
            tasks: Mutex::new(HashMap::new()),
            max,
            max_per_owner: max_per_principal,
        }
    }

    /// The number of tasks held (expired ones included until the next creation).
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.tasks).len()
    }

    /// `true` when no task is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, record: TaskRecord) -> Result<(), TaskStoreError> {
        let now = SystemTime::now();
        let mut tasks = crate::sync::lock(&self.tasks);
        tasks.retain(|_, t| !t.is_expired(now));
        let owned = tasks.values().filter(|t| t.owner == record.owner).count();
        if tasks.len() >= self.max || owned >= self.max_per_owner {
            return Err(TaskStoreError::Full);
        }
        tasks.insert(record.task_id.clone(), record);
        Ok(())
    }

    fn lookup(&self, task_id: &str, owner: Option<&str>) -> Option<TaskRecord> {
        let tasks = crate::sync::lock(&self.tasks);
        tasks
            .get(task_id)
            .filter(|t| t.owner.as_deref() == owner && !t.is_expired(SystemTime::now()))
            .cloned()
    }

    fn replace(&self, record: TaskRecord) {
        let mut tasks = crate::sync::lock(&self.tasks);
        if let Some(stored) = tasks.get_mut(&record.task_id)
            && stored.owner == record.owner
        {
            *stored = record;
        }
    }
}

impl TaskStore for InMemoryTaskStore {
    fn create(&self, record: TaskRecord) -> BoxFuture<'_, Result<(), TaskStoreError>> {
        Box::pin(std::future::ready(self.insert(record)))
    }

    fn get<'a>(
        &'a self,
        task_id: &'a str,
        owner: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<TaskRecord>, TaskStoreError>> {
        Box::pin(std::future::ready(Ok(self.lookup(task_id, owner))))
    }

    fn update(&self, record: TaskRecord) -> BoxFuture<'_, Result<(), TaskStoreError>> {
        self.replace(record);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// How an endpoint runs tasks: the store, the TTL and polling interval it announces, and the
/// bound on tasks running at once in this process.
#[derive(Clone)]
pub struct Tasks {
    store: Arc<dyn TaskStore>,
    ttl: Duration,
    poll_interval: Duration,
    max_running: usize,
}

impl fmt::Debug for Tasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tasks")
            .field("ttl", &self.ttl)
            .field("poll_interval", &self.poll_interval)
            .field("max_running", &self.max_running)
            .finish_non_exhaustive()
    }
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new(InMemoryTaskStore::default())
    }
}

impl Tasks {
    /// Tasks kept in `store`, with the default TTL, polling interval and bound.
    pub fn new(store: impl TaskStore) -> Self {
        Self {
            store: Arc::new(store),
            ttl: DEFAULT_TASK_TTL,
            poll_interval: DEFAULT_POLL_INTERVAL,
            max_running: DEFAULT_MAX_TASKS,
        }
    }

    /// How long a task stays available after its creation (default 30 min); a task still
    /// running then is stopped and marked `failed`.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The polling interval suggested to clients (default 1 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The bound on tasks running at once in this process (default 4096). Past it, calls with
    /// [`TaskSupport::Optional`] run in line and those with `Required` fail.
    pub fn max_running(mut self, max: usize) -> Self {
        self.max_running = max;
        self
    }
}

/// The `-32021` error of a call that needs the tasks extension the client did not declare.
pub fn tasks_required() -> ErrorObject {
    ErrorObject::new(
        ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
        format!("Missing required client capability: extension {EXTENSION_ID}"),
    )
    .with_data(json!({ "requiredCapabilities": { "extensions": { EXTENSION_ID: {} } } }))
}

/// `true` when client capabilities declare the extension.
pub(crate) fn declared(capabilities: &Value) -> bool {
    capabilities
        .get("extensions")
        .and_then(|e| e.get(EXTENSION_ID))
        .is_some_and(|t| !t.is_null())
}

fn store_error(e: &TaskStoreError) -> ErrorObject {
    tracing::warn!(error = %e, "task store");
    ErrorObject::new(ErrorCode::INTERNAL_ERROR, "the task store is unavailable")
}

/// The running tasks of one endpoint, and its task settings.
pub(crate) struct TaskRuntime {
    config: Tasks,
    hub: Arc<ListenHub>,
    running: Mutex<HashMap<String, Arc<LiveTask>>>,
}

impl fmt::Debug for TaskRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRuntime")
            .field("config", &self.config)
            .field("running", &crate::sync::lock(&self.running).len())
            .finish()
    }
}

impl TaskRuntime {
    pub(crate) fn new(config: Tasks, hub: Arc<ListenHub>) -> Self {
        Self {
            config,
            hub,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The same settings with another hub (and no running task: builder time only).
    pub(crate) fn rehomed(&self, hub: Arc<ListenHub>) -> Self {
        Self::new(self.config.clone(), hub)
    }

    /// Creates a task for `owner`, stored before this returns.
    async fn create(&self, owner: Option<&str>) -> Result<Arc<LiveTask>, TaskStoreError> {
        if crate::sync::lock(&self.running).len() >= self.config.max_running {
            return Err(TaskStoreError::Full);
        }
        let now = SystemTime::now();
        let record = TaskRecord {
            task_id: new_task_id(),
            owner: owner.map(str::to_owned),
            status: TaskStatus::Working,
            status_message: None,
            created_at: now,
            last_updated_at: now,
            ttl: self.config.ttl,
            poll_interval: Some(self.config.poll_interval),
            result: None,
            error: None,
            input_requests: Map::new(),
        };
        self.config.store.create(record.clone()).await?;
        let live = Arc::new(LiveTask::new(
            record,
            self.config.store.clone(),
            self.hub.clone(),
        ));
        crate::sync::lock(&self.running).insert(live.task_id.clone(), live.clone());
        Ok(live)
    }

    fn live(&self, task_id: &str, owner: Option<&str>) -> Option<Arc<LiveTask>> {
        crate::sync::lock(&self.running)
            .get(task_id)
            .filter(|live| live.owner.as_deref() == owner)
            .cloned()
    }

    /// Forgets a task whose handler has ended.
    pub(crate) fn finished(&self, task_id: &str) {
        crate::sync::lock(&self.running).remove(task_id);
    }

    /// `tasks/get`.
    pub(crate) async fn get(
        &self,
        task_id: &str,
        owner: Option<&str>,
    ) -> Result<Option<TaskRecord>, ErrorObject> {
        self.config
            .store
            .get(task_id, owner)
            .await
            .map_err(|e| store_error(&e))
    }

    /// `tasks/update`: hands the answers to the running handler. `Ok(false)` for an unknown task.
    pub(crate) async fn update(
        &self,
        task_id: &str,
        owner: Option<&str>,
        responses: &Map<String, Value>,
    ) -> Result<bool, ErrorObject> {
        if let Some(live) = self.live(task_id, owner) {
            live.deliver(responses).await;
            return Ok(true);
        }
        Ok(self.get(task_id, owner).await?.is_some())
    }

    /// `tasks/cancel`: marks a running task cancelled and stops its handler. `Ok(false)` for an
    /// unknown task; a finished one is left as it is.
    pub(crate) async fn cancel(
        &self,
        task_id: &str,
        owner: Option<&str>,
    ) -> Result<bool, ErrorObject> {
        if let Some(live) = self.live(task_id, owner) {
            live.cancel().await;
            return Ok(true);
        }
        Ok(self.get(task_id, owner).await?.is_some())
    }

    #[cfg(test)]
    fn running(&self) -> usize {
        crate::sync::lock(&self.running).len()
    }
}

/// A task whose handler runs in this process: the authoritative state, written through to the
/// store on every change.
pub(crate) struct LiveTask {
    task_id: String,
    owner: Option<String>,
    state: tokio::sync::Mutex<LiveState>,
    /// Bumped on every change, for handlers waiting on answers.
    changed: watch::Sender<u64>,
    cancelled: Notify,
    store: Arc<dyn TaskStore>,
    hub: Arc<ListenHub>,
}

struct LiveState {
    record: TaskRecord,
    /// Answers the client gave, by key (the keys of `inputRequests` move here).
    answers: Map<String, Value>,
}

impl LiveTask {
    fn new(record: TaskRecord, store: Arc<dyn TaskStore>, hub: Arc<ListenHub>) -> Self {
        Self {
            task_id: record.task_id.clone(),
            owner: record.owner.clone(),
            state: tokio::sync::Mutex::new(LiveState {
                record,
                answers: Map::new(),
            }),
            changed: watch::Sender::new(0),
            cancelled: Notify::new(),
            store,
            hub,
        }
    }

    pub(crate) fn task_id(&self) -> &str {
        &self.task_id
    }

    /// The current state.
    pub(crate) async fn snapshot(&self) -> TaskRecord {
        self.state.lock().await.record.clone()
    }

    /// How long the handler may still run: until the TTL ends.
    pub(crate) async fn remaining(&self) -> Duration {
        let state = self.state.lock().await;
        let end = state.record.created_at + state.record.ttl;
        end.duration_since(SystemTime::now()).unwrap_or_default()
    }

    /// Resolves once the client has cancelled the task.
    pub(crate) async fn cancelled(&self) {
        self.cancelled.notified().await;
    }

    /// Applies `change` to a task that is not finished; when it reports a change, stamps the
    /// time, writes the task to the store and tells waiting handlers and listeners.
    async fn transition(&self, change: impl FnOnce(&mut LiveState) -> bool) -> bool {
        let mut state = self.state.lock().await;
        if state.record.status.is_terminal() || !change(&mut state) {
            return false;
        }
        state.record.last_updated_at = SystemTime::now();
        let record = state.record.clone();
        // Written under the lock, so the store sees the changes in order.
        if let Err(e) = self.store.update(record.clone()).await {
            tracing::warn!(task = %self.task_id, error = %e, "task store update failed");
        }
        drop(state);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        let notification = Message::notification("notifications/tasks", Some(record.to_detailed()));
        self.hub.publish(self.owner.as_deref(), &notification);
        true
    }

    /// Records the handler's outcome: `completed` with its result, or `failed` with its error.
    pub(crate) async fn finish(&self, outcome: Result<Value, ErrorObject>) {
        self.transition(|s| {
            match outcome {
                Ok(result) => {
                    s.record.status = TaskStatus::Completed;
                    s.record.result = Some(result);
                }
                Err(error) => {
                    s.record.status = TaskStatus::Failed;
                    s.record.error = Some(error);
                }
            }
            s.record.input_requests.clear();
            true
        })
        .await;
    }

    async fn cancel(&self) {
        self.transition(|s| {
            s.record.status = TaskStatus::Cancelled;
            s.record.status_message = Some("Cancelled by the client".into());
            s.record.input_requests.clear();
            true
        })
        .await;
        // A stored permit: the runner sees it even if it is not waiting yet.
        self.cancelled.notify_one();
    }

    /// Takes the answers to pending input requests; other keys are ignored.
    async fn deliver(&self, responses: &Map<String, Value>) {
        self.transition(|s| {
            let mut taken = false;
            for (key, answer) in responses {
                if answer.is_object() && s.record.input_requests.remove(key).is_some() {
                    s.answers.insert(key.clone(), answer.clone());
                    taken = true;
                }
            }
            if taken
                && s.record.input_requests.is_empty()
                && s.record.status == TaskStatus::InputRequired
            {
                s.record.status = TaskStatus::Working;
            }
            taken
        })
        .await;
    }

    /// Asks the client through the task: the requests join `inputRequests` (status
    /// `input_required`) until `tasks/update` answers every one of them. A key answered before
    /// returns its answer again.
    pub(crate) async fn ask(
        &self,
        requests: Vec<(String, InputRequest)>,
    ) -> Result<Map<String, Value>, ErrorObject> {
        let mut changed = self.changed.subscribe();
        let keys: Vec<String> = requests.iter().map(|(key, _)| key.clone()).collect();
        self.transition(|s| {
            let mut asked = false;
            for (key, request) in requests {
                if !s.answers.contains_key(&key) && !s.record.input_requests.contains_key(&key) {
                    s.record.input_requests.insert(key, request.to_value());
                    asked = true;
                }
            }
            if asked {
                s.record.status = TaskStatus::InputRequired;
            }
            asked
        })
        .await;
        loop {
            {
                let state = self.state.lock().await;
                if state.record.status.is_terminal() {
                    return Err(ErrorObject::new(
                        ErrorCode::INTERNAL_ERROR,
                        "the task has ended",
                    ));
                }
                if keys.iter().all(|key| state.answers.contains_key(key)) {
                    return Ok(keys
                        .iter()
                        .filter_map(|key| Some((key.clone(), state.answers.get(key)?.clone())))
                        .collect());
                }
            }
            if changed.changed().await.is_err() {
                return Err(ErrorObject::internal());
            }
        }
    }
}

/// What a 2026-07-28 `tools/call` carries in its extensions so that its handler can become a
/// task.
pub(crate) struct TaskHook {
    runtime: Arc<TaskRuntime>,
    /// The client declared the extension on this request.
    accepts: bool,
    owner: Option<String>,
    /// Tells the transport to answer with the task, once.
    signal: Mutex<Option<oneshot::Sender<Arc<LiveTask>>>>,
    live: OnceLock<Arc<LiveTask>>,
}

impl TaskHook {
    pub(crate) fn new(
        runtime: Arc<TaskRuntime>,
        accepts: bool,
        owner: Option<String>,
        signal: oneshot::Sender<Arc<LiveTask>>,
    ) -> Self {
        Self {
            runtime,
            accepts,
            owner,
            signal: Mutex::new(Some(signal)),
            live: OnceLock::new(),
        }
    }
}

/// The task a handler runs as, once it has become one.
pub(crate) fn running_task(cx: &RequestContext) -> Option<Arc<LiveTask>> {
    cx.extensions().get::<Arc<TaskHook>>()?.live.get().cloned()
}

impl RequestContext {
    /// `true` when this call may become a task: a 2026-07-28 `tools/call` whose client declared
    /// the tasks extension, on an endpoint that runs tasks.
    pub fn accepts_tasks(&self) -> bool {
        self.extensions()
            .get::<Arc<TaskHook>>()
            .is_some_and(|hook| hook.accepts)
    }

    /// Lets the rest of this call run as a task; see [`crate::tasks`]. `Ok(true)`: the client has
    /// been answered with the task, and what the handler returns becomes the task's outcome.
    /// `Ok(false)`: the call goes on in line (the client does not accept tasks, another
    /// revision, or the task bound is reached). With [`TaskSupport::Required`], a client that does
    /// not accept tasks gets `-32021` ([`tasks_required`]) and a full store `-32603`.
    pub async fn run_as_task(&self, support: TaskSupport) -> Result<bool, ErrorObject> {
        let hook = self
            .extensions()
            .get::<Arc<TaskHook>>()
            .filter(|h| h.accepts);
        let Some(hook) = hook else {
            return match support {
                TaskSupport::Optional => Ok(false),
                TaskSupport::Required => Err(tasks_required()),
            };
        };
        if hook.live.get().is_some() {
            return Ok(true);
        }
        let Some(signal) = crate::sync::lock(&hook.signal).take() else {
            return Ok(false);
        };
        let live = match hook.runtime.create(hook.owner.as_deref()).await {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %e, "no task for this call");
                return match support {
                    TaskSupport::Optional => Ok(false),
                    TaskSupport::Required => Err(ErrorObject::new(
                        ErrorCode::INTERNAL_ERROR,
                        "no task can be created now",
                    )),
                };
            }
        };
        let _ = hook.live.set(live.clone());
        if signal.send(live.clone()).is_err() {
            // The request ended (its client left) before it could be answered with the task.
            live.finish(Err(ErrorObject::new(
                ErrorCode::INTERNAL_ERROR,
                "the request ended before the task started",
            )))
            .await;
            hook.runtime.finished(live.task_id());
            return Err(ErrorObject::internal());
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, owner: Option<&str>, ttl: Duration) -> TaskRecord {
        let now = SystemTime::now();
        TaskRecord {
            task_id: id.into(),
            owner: owner.map(str::to_owned),
            status: TaskStatus::Working,
            status_message: None,
            created_at: now,
            last_updated_at: now,
            ttl,
            poll_interval: None,
            result: None,
            error: None,
            input_requests: Map::new(),
        }
    }

    #[test]
    fn timestamps_are_iso8601_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_millis(951_827_696_789);
        assert_eq!(iso8601(leap), "2000-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(iso8601(t), "2023-11-14T22:13:20.000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(iso8601(t), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn task_ids_are_long_and_distinct() {
        let a = new_task_id();
        assert_eq!(a.len(), 22);
        assert_ne!(a, new_task_id());
    }

    #[test]
    fn wire_shapes_follow_the_status() {
        let mut task = record("t1", None, Duration::from_secs(60));
        task.poll_interval = Some(Duration::from_millis(500));
        let created = task.to_create_result();
        assert_eq!(created["resultType"], "task");
        assert_eq!(created["status"], "working");
        assert_eq!(created["ttlMs"], 60_000);
        assert_eq!(created["pollIntervalMs"], 500);
        for absent in [
            "result",
            "error",
            "inputRequests",
            "requestState",
            "ttl",
            "task",
        ] {
            assert!(created.get(absent).is_none(), "{absent}");
        }
        task.status = TaskStatus::Completed;
        task.result = Some(json!({"content": []}));
        let done = task.to_detailed();
        assert_eq!(done["result"], json!({"content": []}));
        assert!(done.get("resultType").is_none());
        task.status = TaskStatus::Failed;
        task.error = Some(ErrorObject::new(ErrorCode::INTERNAL_ERROR, "boom"));
        let failed = task.to_detailed();
        assert_eq!(failed["error"]["code"], -32603);
        assert!(failed.get("result").is_none());
    }

    #[tokio::test]
    async fn the_store_scopes_by_owner_bounds_and_expires() {
        let store = InMemoryTaskStore::new(3, 2);
        let hour = Duration::from_secs(3600);
        store
            .create(record("a1", Some("alice"), hour))
            .await
            .unwrap();
        store
            .create(record("a2", Some("alice"), hour))
            .await
            .unwrap();
        // Per principal.
        assert!(matches!(
            store.create(record("a3", Some("alice"), hour)).await,
            Err(TaskStoreError::Full)
        ));
        store.create(record("b1", Some("bob"), hour)).await.unwrap();
        // In total.
        assert!(matches!(
            store.create(record("n1", None, hour)).await,
            Err(TaskStoreError::Full)
        ));
        assert!(store.get("a1", Some("alice")).await.unwrap().is_some());
        assert!(store.get("a1", Some("bob")).await.unwrap().is_none());
        assert!(store.get("a1", None).await.unwrap().is_none());
        // Another principal cannot overwrite it either.
        let mut stolen = record("a1", Some("bob"), hour);
        stolen.status = TaskStatus::Cancelled;
        store.update(stolen).await.unwrap();
        let a1 = store.get("a1", Some("alice")).await.unwrap().unwrap();
        assert_eq!(a1.status, TaskStatus::Working);

        // Expired tasks vanish and make room.
        let store = InMemoryTaskStore::new(1, 1);
        store
            .create(record("old", None, Duration::ZERO))
            .await
            .unwrap();
        assert!(store.get("old", None).await.unwrap().is_none());
        store.create(record("new", None, hour)).await.unwrap();
        assert_eq!(store.len(), 1);
    }

    fn runtime(config: Tasks) -> Arc<TaskRuntime> {
        Arc::new(TaskRuntime::new(config, Arc::new(ListenHub::default())))
    }

    #[tokio::test]
    async fn answers_resume_the_handler_one_key_at_a_time() {
        let runtime = runtime(Tasks::default());
        let live = runtime.create(Some("alice")).await.unwrap();
        let id = live.task_id().to_owned();
        let asking = tokio::spawn({
            let live = live.clone();
            async move {
                live.ask(vec![
                    ("a".into(), InputRequest::list_roots()),
                    ("b".into(), InputRequest::list_roots()),
                ])
                .await
            }
        });
        let pending = loop {
            let task = runtime.get(&id, Some("alice")).await.unwrap().unwrap();
            if task.input_requests.len() == 2 {
                break task;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(pending.status, TaskStatus::InputRequired);
        // Another principal's answers do not reach it.
        let answer = json!({"roots": []});
        let mut first = Map::new();
        first.insert("a".into(), answer.clone());
        first.insert("unknown".into(), answer.clone());
        assert!(!runtime.update(&id, Some("bob"), &first).await.unwrap());
        assert!(runtime.update(&id, Some("alice"), &first).await.unwrap());
        let task = runtime.get(&id, Some("alice")).await.unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::InputRequired);
        assert_eq!(task.input_requests.keys().collect::<Vec<_>>(), ["b"]);
        let mut second = Map::new();
        second.insert("b".into(), answer.clone());
        runtime.update(&id, Some("alice"), &second).await.unwrap();
        let answers = asking.await.unwrap().unwrap();
        assert_eq!(answers.len(), 2);
        let task = runtime.get(&id, Some("alice")).await.unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Working);
    }

    #[tokio::test]
    async fn cancel_is_final_and_wakes_the_runner() {
        let runtime = runtime(Tasks::default());
        let live = runtime.create(None).await.unwrap();
        let id = live.task_id().to_owned();
        assert!(runtime.cancel(&id, None).await.unwrap());
        // The permit is kept for a runner that starts waiting later.
        bounded(live.cancelled()).await;
        live.finish(Ok(json!({"content": []}))).await;
        let task = runtime.get(&id, None).await.unwrap().unwrap();
        assert_eq!(task.status, TaskStatus::Cancelled);
        runtime.finished(&id);
        assert_eq!(runtime.running(), 0);
        // Still known, so cancelling again is acknowledged; unknown ids are not.
        assert!(runtime.cancel(&id, None).await.unwrap());
        assert!(!runtime.cancel("nope", None).await.unwrap());
    }

    #[tokio::test]
    async fn the_running_bound_refuses_new_tasks() {
        let runtime = runtime(Tasks::default().max_running(1));
        let _live = runtime.create(None).await.unwrap();
        assert!(matches!(
            runtime.create(None).await,
            Err(TaskStoreError::Full)
        ));
    }

    async fn bounded<F: std::future::Future>(f: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(5), f)
            .await
            .expect("timed out")
    }
}
