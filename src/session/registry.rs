use crate::jsonrpc::{ErrorObject, Id, Message};
use crate::modern::RequestMeta;
use crate::protocol::ProtocolVersion;
use crate::service::SendError;
use crate::sse::StreamEvent;
use crate::sync::lock;
use serde_json::Value;
use std::any::Any;
use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A session id: 122 random bits in UUID v4 form, visible ASCII only.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Mints a fresh id from the thread-local CSPRNG.
    pub fn random() -> Self {
        let bits: u128 = rand::random();
        // UUID v4: version nibble 4, variant bits 10; the other 122 bits are random.
        let v = (bits & !(0xF000u128 << 64) & !(0xC000u128 << 48))
            | (0x4000u128 << 64)
            | (0x8000u128 << 48);
        let hex = format!("{v:032x}");
        Self(
            format!(
                "{}-{}-{}-{}-{}",
                &hex[0..8],
                &hex[8..12],
                &hex[12..16],
                &hex[16..20],
                &hex[20..32]
            )
            .into(),
        )
    }

    /// An id received from a client or another instance.
    #[cfg(any(test, feature = "redis"))]
    pub(crate) fn from_raw(s: &str) -> Self {
        Self(s.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}

/// Milliseconds since a process-wide epoch, for cheap atomic activity stamps.
fn now_millis() -> u64 {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    Instant::now().saturating_duration_since(*EPOCH).as_millis() as u64
}

/// The per-session server instance, type-erased so the session layer need not know the
/// [`McpService`](crate::McpService) type.
struct ServiceSlot {
    instance: Arc<dyn Any + Send + Sync>,
    close: fn(Arc<dyn Any + Send + Sync>) -> BoxFuture,
}

type ClientAnswer = oneshot::Sender<Result<Value, ErrorObject>>;

/// Work to do when a session ends (freeing its stored events, ...).
pub(crate) type CloseHook = Box<dyn FnOnce() -> BoxFuture + Send>;

/// How many messages unrelated to a request may wait for the standalone GET stream. When full,
/// new messages are dropped (and logged): a client without a GET stream must not make the
/// server's handlers wait or its memory grow.
pub(crate) const STANDALONE_CAPACITY: usize = 64;

/// The standalone GET stream's channel, created on first use.
#[derive(Debug, Default)]
struct Standalone {
    tx: Option<mpsc::Sender<StreamEvent>>,
    rx: Option<mpsc::Receiver<StreamEvent>>,
}

impl Standalone {
    /// The sending end, creating the channel on first use.
    fn sender(&mut self) -> &mpsc::Sender<StreamEvent> {
        let rx = &mut self.rx;
        self.tx.get_or_insert_with(|| {
            let (tx, receiver) = mpsc::channel(STANDALONE_CAPACITY);
            *rx = Some(receiver);
            tx
        })
    }
}

/// One Streamable HTTP session.
pub struct Session {
    id: SessionId,
    principal: Option<Arc<str>>,
    protocol_version: AtomicU8,
    last_activity: AtomicU64,
    attached: AtomicUsize,
    closed: AtomicBool,
    initialized: AtomicBool,
    established: AtomicBool,
    standalone: Mutex<Standalone>,
    client_requests: Mutex<HashMap<Id, ClientAnswer>>,
    running: Mutex<HashMap<Id, oneshot::Sender<()>>>,
    close_hooks: Mutex<Vec<CloseHook>>,
    events_stored: AtomicBool,
    next_client_request: AtomicI64,
    next_stream: AtomicU64,
    service: OnceLock<ServiceSlot>,
    /// The client's capabilities and info from `initialize`.
    client: OnceLock<Arc<RequestMeta>>,
    /// The `initialize` params, kept so another instance can rebuild the session.
    init_params: OnceLock<Arc<Value>>,
    /// Whether the server may be rebuilt on another instance from `init_params`.
    rebuildable: AtomicBool,
    /// Set once an adopted session's server has been rebuilt (or failed to be).
    rebuilt: tokio::sync::OnceCell<bool>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("protocol_version", &self.protocol_version())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(principal: Option<Arc<str>>, protocol_version: ProtocolVersion) -> Self {
        Self {
            id: SessionId::random(),
            principal,
            protocol_version: AtomicU8::new(protocol_version.to_u8()),
            last_activity: AtomicU64::new(now_millis()),
            attached: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            initialized: AtomicBool::new(false),
            established: AtomicBool::new(false),
            standalone: Mutex::new(Standalone::default()),
            client_requests: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            close_hooks: Mutex::new(Vec::new()),
            events_stored: AtomicBool::new(false),
            next_client_request: AtomicI64::new(0),
            next_stream: AtomicU64::new(1),
            service: OnceLock::new(),
            client: OnceLock::new(),
            init_params: OnceLock::new(),
            rebuildable: AtomicBool::new(false),
            rebuilt: tokio::sync::OnceCell::new(),
        }
    }

    /// A session another instance created, taken over here: its server is rebuilt from
    /// `init_params` on the first request that needs it. POST streams number from
    /// `first_stream`, past those of the previous owners.
    #[cfg(feature = "redis")]
    pub(crate) fn adopted(
        id: SessionId,
        principal: Option<Arc<str>>,
        protocol_version: ProtocolVersion,
        client: RequestMeta,
        init_params: Value,
        first_stream: u64,
    ) -> Self {
        let session = Self {
            id,
            next_stream: AtomicU64::new(first_stream.max(1)),
            ..Self::new(principal, protocol_version)
        };
        session.established.store(true, Ordering::Relaxed);
        session.rebuildable.store(true, Ordering::Relaxed);
        let _ = session.client.set(Arc::new(client));
        let _ = session.init_params.set(Arc::new(init_params));
        session
    }

    /// Records what another instance needs to rebuild this session's server.
    pub(crate) fn set_rebuild(&self, init_params: Option<Value>, rebuildable: bool) {
        if let Some(params) = init_params {
            let _ = self.init_params.set(Arc::new(params));
        }
        self.rebuildable.store(rebuildable, Ordering::Relaxed);
    }

    /// The `initialize` params this session was created with, if kept.
    pub(crate) fn init_params(&self) -> Option<&Arc<Value>> {
        self.init_params.get()
    }

    /// Whether another instance may rebuild this session's server.
    #[cfg(feature = "redis")]
    pub(crate) fn is_rebuildable(&self) -> bool {
        self.rebuildable.load(Ordering::Relaxed)
    }

    /// An adopted session whose server has not been rebuilt yet.
    pub(crate) fn needs_rebuild(&self) -> bool {
        !self.is_initialized() && self.init_params.get().is_some()
    }

    /// Runs `rebuild` once for an adopted session; later callers wait for its outcome.
    pub(crate) async fn rebuild_once<F>(&self, rebuild: F) -> bool
    where
        F: Future<Output = bool>,
    {
        *self.rebuilt.get_or_init(|| rebuild).await
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The subject of the principal that created the session, if it was authenticated.
    pub fn principal_subject(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The negotiated protocol revision.
    pub fn protocol_version(&self) -> ProtocolVersion {
        ProtocolVersion::from_u8(self.protocol_version.load(Ordering::Relaxed))
    }

    /// `true` once the session has been terminated or expired.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Records the outcome of `initialize`: the revision the server answered with and the server
    /// instance that will handle the session. Only an initialized session is registered.
    pub(crate) fn initialize<S: Send + Sync + 'static>(
        &self,
        version: ProtocolVersion,
        instance: Arc<S>,
        close: fn(Arc<dyn Any + Send + Sync>) -> BoxFuture,
    ) {
        self.protocol_version
            .store(version.to_u8(), Ordering::Relaxed);
        let _ = self.service.set(ServiceSlot { instance, close });
        self.initialized.store(true, Ordering::Release);
    }

    /// The client's capabilities and info, as its `initialize` declared them.
    pub(crate) fn client(&self) -> Option<Arc<RequestMeta>> {
        self.client.get().cloned()
    }

    pub(crate) fn set_client(&self, client: RequestMeta) {
        let _ = self.client.set(Arc::new(client));
    }

    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.load(Ordering::Acquire)
    }

    /// Records that the client used the session after `initialize`: from now on only the idle
    /// timeout ends it, not the handshake timeout.
    pub(crate) fn establish(&self) {
        // A load first: most requests find it set, and a load does not dirty the cache line.
        if !self.established.load(Ordering::Relaxed) {
            self.established.store(true, Ordering::Relaxed);
        }
    }

    fn is_established(&self) -> bool {
        self.established.load(Ordering::Relaxed)
    }

    /// The server instance of this session, if it is of type `S`.
    pub(crate) fn service<S: Send + Sync + 'static>(&self) -> Option<Arc<S>> {
        self.service
            .get()
            .and_then(|slot| slot.instance.clone().downcast::<S>().ok())
    }

    /// Numbers a new POST response stream (0 is the standalone GET stream).
    pub(crate) fn next_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn touch(&self) {
        self.last_activity.store(now_millis(), Ordering::Relaxed);
    }

    fn idle_for(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.last_activity.load(Ordering::Relaxed)))
    }

    /// Marks a request or stream as attached; the session cannot expire until the guard drops.
    pub(crate) fn attach(self: &Arc<Self>) -> AttachGuard {
        self.attached.fetch_add(1, Ordering::AcqRel);
        self.touch();
        AttachGuard(self.clone())
    }

    /// Takes the receiving end of the standalone stream (creating it on first use); `None` while
    /// another connection or pump holds it, or once the session has ended.
    pub(crate) fn take_standalone(&self) -> Option<mpsc::Receiver<StreamEvent>> {
        if self.is_closed() {
            return None;
        }
        let mut standalone = lock(&self.standalone);
        standalone.sender();
        standalone.rx.take()
    }

    /// Gives the standalone receiver back when its connection ends, keeping what is queued.
    pub(crate) fn return_standalone(&self, rx: mpsc::Receiver<StreamEvent>) {
        let mut standalone = lock(&self.standalone);
        if standalone.tx.is_some() {
            standalone.rx = Some(rx);
        }
    }

    /// Queues a message for the standalone stream without waiting; see [`STANDALONE_CAPACITY`].
    pub(crate) fn send_standalone(&self, message: Message) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let mut standalone = lock(&self.standalone);
        match standalone.sender().try_send(StreamEvent::Message(message)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!(session = %self.id, "standalone stream buffer full; message dropped");
                Err(SendError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    #[cfg(feature = "legacy-sse")]
    /// A sender for the standalone stream (the legacy transport's only stream). Holding it keeps
    /// the stream open after the session ends, until what it carries has been sent.
    pub(crate) fn standalone_sender(&self) -> Option<mpsc::Sender<StreamEvent>> {
        lock(&self.standalone).tx.clone()
    }

    /// Registers a running request so `notifications/cancelled` can stop it.
    pub(crate) fn register_running(&self, id: &Id) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        lock(&self.running).insert(id.clone(), tx);
        rx
    }

    pub(crate) fn finish_running(&self, id: &Id) {
        lock(&self.running).remove(id);
    }

    /// Cancels a running request; `false` if none runs with that id.
    pub(crate) fn cancel_running(&self, id: &Id) -> bool {
        let handle = lock(&self.running).remove(id);
        handle.is_some_and(|tx| tx.send(()).is_ok())
    }

    /// `true` the first time it is called: the caller then arranges to free stored events.
    pub(crate) fn mark_events_stored(&self) -> bool {
        !self.events_stored.swap(true, Ordering::AcqRel)
    }

    /// Runs `hook` when the session ends (at once if it has ended).
    pub(crate) fn on_close(&self, hook: CloseHook) {
        if self.is_closed() {
            tokio::spawn(hook());
            return;
        }
        lock(&self.close_hooks).push(hook);
    }

    /// Allocates an id for a server→client request and the receiver of its answer.
    pub(crate) fn expect_client_response(
        &self,
    ) -> (Id, oneshot::Receiver<Result<Value, ErrorObject>>) {
        let n = self.next_client_request.fetch_add(1, Ordering::Relaxed);
        // A string id cannot collide with the client's own numeric ids in logs.
        let id = Id::String(format!("srv-{n}").into());
        let (tx, rx) = oneshot::channel();
        lock(&self.client_requests).insert(id.clone(), tx);
        (id, rx)
    }

    pub(crate) fn forget_client_request(&self, id: &Id) {
        lock(&self.client_requests).remove(id);
    }

    /// Routes a client's answer to the server's waiting request; `false` if nobody waits for it.
    pub(crate) fn complete_client_request(
        &self,
        id: &Id,
        answer: Result<Value, ErrorObject>,
    ) -> bool {
        let waiter = lock(&self.client_requests).remove(id);
        match waiter {
            Some(tx) => tx.send(answer).is_ok(),
            None => false,
        }
    }

    /// Ends the session: closes its streams, fails waiting server→client requests and closes the
    /// server instance. Idempotent.
    pub(crate) async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        *lock(&self.standalone) = Standalone::default();
        lock(&self.client_requests).clear();
        lock(&self.running).clear();
        if let Some(slot) = self.service.get() {
            (slot.close)(slot.instance.clone()).await;
        }
        let hooks = std::mem::take(&mut *lock(&self.close_hooks));
        for hook in hooks {
            hook().await;
        }
    }
}

/// Lets a server end its own session, e.g. when the process behind it has died; later requests
/// with the session id get 404 and the client re-initializes.
#[derive(Clone, Debug)]
pub struct SessionCloser(Weak<Session>);

impl SessionCloser {
    pub(crate) fn new(session: &Arc<Session>) -> Self {
        Self(Arc::downgrade(session))
    }

    /// Ends the session (in the background: its server's `close` runs too).
    pub fn close(&self) {
        let Some(session) = self.0.upgrade() else {
            return;
        };
        if session.is_closed() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { session.close().await });
            }
            Err(_) => session.closed.store(true, Ordering::Release),
        }
    }
}

/// Keeps a session from expiring while a request or stream is attached.
#[derive(Debug)]
pub(crate) struct AttachGuard(Arc<Session>);

impl AttachGuard {
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.0
    }
}

impl Drop for AttachGuard {
    fn drop(&mut self) {
        // The idle countdown starts when the last stream detaches.
        self.0.touch();
        self.0.attached.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The cap on live sessions, shared by every registry that counts against it: the Streamable
/// HTTP and the legacy HTTP+SSE tables of one stack hold the same limit, so one number bounds
/// both (and, with one server process per session, the processes too).
#[derive(Debug, Default)]
pub struct SessionLimit {
    /// Live sessions plus sessions being initialized.
    count: AtomicUsize,
    max: Option<usize>,
}

impl SessionLimit {
    /// A limit of `max` sessions; `None` counts without limiting.
    pub fn new(max: impl Into<Option<usize>>) -> Arc<Self> {
        Arc::new(Self {
            count: AtomicUsize::new(0),
            max: max.into(),
        })
    }

    /// The limit, if any.
    pub fn max(&self) -> Option<usize> {
        self.max
    }

    /// Sessions counted now: live ones plus those being initialized.
    pub fn in_use(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Reserves room for one more session; `None` at the limit.
    fn reserve(self: &Arc<Self>) -> Option<Reservation> {
        let reserved = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max.is_some_and(|max| reserved > max) {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Reservation {
            limit: self.clone(),
            used: false,
        })
    }

    fn release(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The table of live sessions, shared by every clone of a [`SessionLayer`](super::SessionLayer).
#[derive(Debug)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
    limit: Arc<SessionLimit>,
    idle_timeout: Option<Duration>,
    handshake_timeout: Option<Duration>,
    sweeper_started: AtomicBool,
}

impl SessionRegistry {
    pub(crate) fn new(
        limit: Arc<SessionLimit>,
        idle_timeout: Option<Duration>,
        handshake_timeout: Option<Duration>,
    ) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            limit,
            idle_timeout,
            handshake_timeout,
            sweeper_started: AtomicBool::new(false),
        }
    }

    /// The number of live sessions.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// `true` when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session cap this table counts against (perhaps shared with another table).
    pub fn limit(&self) -> &Arc<SessionLimit> {
        &self.limit
    }

    /// How long a session may go without a message after its `initialize`; see
    /// [`SessionLayer::handshake_timeout`](super::SessionLayer::handshake_timeout).
    pub fn handshake_timeout(&self) -> Option<Duration> {
        self.handshake_timeout
    }

    /// The ids of the live sessions.
    #[cfg(feature = "redis")]
    pub(crate) fn ids(&self) -> Vec<SessionId> {
        lock(&self.sessions).keys().cloned().collect()
    }

    /// Looks up a live session.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// The live session `id`, if `subject` (the request's principal, if any) created it. A
    /// session is bound to its creator: anyone else is told it does not exist.
    pub fn get_for(&self, id: &str, subject: Option<&str>) -> Option<Arc<Session>> {
        self.get(id)
            .filter(|s| !s.is_closed() && s.principal_subject() == subject)
    }

    /// Reserves room for one more session; `None` at the limit.
    pub(crate) fn reserve(&self) -> Option<Reservation> {
        self.limit.reserve()
    }

    /// Registers a session, using up its reservation. Its handshake countdown starts now.
    pub(crate) fn insert(&self, mut reservation: Reservation, session: Arc<Session>) {
        reservation.used = true;
        session.touch();
        lock(&self.sessions).insert(session.id().clone(), session);
    }

    /// Registers a session taken over from another instance, unless one with its id is live
    /// here already (then that one is returned). `None` at the session limit.
    #[cfg(feature = "redis")]
    pub(crate) fn adopt(&self, session: Session) -> Option<Arc<Session>> {
        let mut reservation = self.reserve()?;
        let mut map = lock(&self.sessions);
        if let Some(existing) = map.get(session.id()) {
            return Some(existing.clone());
        }
        reservation.used = true;
        session.touch();
        let session = Arc::new(session);
        map.insert(session.id().clone(), session.clone());
        Some(session)
    }

    /// Removes and closes a session; `false` if it was not live.
    pub async fn terminate(&self, id: &str) -> bool {
        let removed = lock(&self.sessions).remove(id);
        match removed {
            Some(session) => {
                self.limit.release(1);
                session.close().await;
                true
            }
            None => false,
        }
    }

    /// Closes every session (graceful shutdown).
    pub async fn close_all(&self) {
        let all: Vec<_> = {
            let mut map = lock(&self.sessions);
            map.drain().map(|(_, s)| s).collect()
        };
        self.limit.release(all.len());
        // Concurrently: each may wait out a child process's grace period.
        futures_util::future::join_all(all.iter().map(|session| session.close())).await;
    }

    /// `true` if `session` has ended, has been idle too long with nothing attached, or never
    /// got past its handshake in time.
    fn expired(&self, session: &Session, now: u64) -> bool {
        if session.is_closed() {
            return true;
        }
        if session.attached.load(Ordering::Acquire) != 0 {
            return false;
        }
        let idle = session.idle_for(now);
        self.idle_timeout.is_some_and(|timeout| idle > timeout)
            || (!session.is_established()
                && self.handshake_timeout.is_some_and(|timeout| idle > timeout))
    }

    /// Removes sessions that ended on their own and closes sessions idle for longer than the
    /// idle timeout with nothing attached, or that sent nothing after `initialize` within the
    /// handshake timeout.
    pub async fn sweep_idle(&self) -> usize {
        let now = now_millis();
        let expired: Vec<_> = {
            let mut map = lock(&self.sessions);
            let ids: Vec<SessionId> = map
                .values()
                .filter(|s| self.expired(s, now))
                .map(|s| s.id().clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        self.limit.release(expired.len());
        let n = expired.len();
        for session in expired {
            if session.is_established() {
                tracing::debug!(session = %session.id(), "session expired");
            } else {
                tracing::debug!(session = %session.id(), "session expired: no message after initialize");
            }
            session.close().await;
        }
        n
    }

    /// Starts the background idle sweep once, on the current tokio runtime. The task holds only
    /// a weak reference and stops when the registry is dropped.
    pub(crate) fn start_sweeper(self: &Arc<Self>) {
        // Without a timeout the sweep still removes sessions that ended on their own.
        let timeout = [self.idle_timeout, self.handshake_timeout]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(120));
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.sweeper_started.store(false, Ordering::Release);
            return;
        };
        let period = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(60));
        let registry: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                registry.sweep_idle().await;
            }
        });
    }
}

/// Room for one session, given back if the session never gets registered.
#[derive(Debug)]
pub(crate) struct Reservation {
    limit: Arc<SessionLimit>,
    used: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.used {
            self.limit.release(1);
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    fn add(registry: &SessionRegistry) -> Option<Arc<Session>> {
        let reservation = registry.reserve()?;
        let session = Arc::new(Session::new(None, ProtocolVersion::FALLBACK));
        registry.insert(reservation, session.clone());
        Some(session)
    }

    #[tokio::test]
    async fn registries_sharing_a_limit_count_together() {
        let limit = SessionLimit::new(3);
        let a = SessionRegistry::new(limit.clone(), None, None);
        let b = SessionRegistry::new(limit.clone(), None, None);
        let first = add(&a).unwrap();
        add(&b).unwrap();
        // A reservation that is never used is given back.
        drop(b.reserve().unwrap());
        add(&b).unwrap();
        assert!(add(&a).is_none() && add(&b).is_none());
        assert_eq!(limit.in_use(), 3);
        assert!(a.terminate(first.id()).await);
        assert_eq!(limit.in_use(), 2);
        assert!(add(&b).is_some());
    }

    #[tokio::test]
    async fn sessions_silent_after_initialize_expire_after_the_handshake_timeout() {
        let handshake = Duration::from_millis(50);
        let registry = SessionRegistry::new(
            SessionLimit::new(None),
            Some(Duration::from_secs(3600)),
            Some(handshake),
        );
        let silent = add(&registry).unwrap();
        let established = add(&registry).unwrap();
        established.establish();
        let busy = add(&registry).unwrap();
        let guard = busy.attach();
        tokio::time::sleep(handshake * 3).await;
        assert_eq!(registry.sweep_idle().await, 1);
        assert!(registry.get(silent.id()).is_none() && silent.is_closed());
        assert!(registry.get(established.id()).is_some());
        // Attached (a slow `initialize` of a legacy session): not expired while it runs.
        assert!(registry.get(busy.id()).is_some());
        drop(guard);
        tokio::time::sleep(handshake * 3).await;
        assert_eq!(registry.sweep_idle().await, 1);
        assert_eq!(registry.limit().in_use(), 1);
    }
}
