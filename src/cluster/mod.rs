//! Several instances behind one load balancer, sharing state through Redis (feature `redis`).
//!
//! Clients need no affinity: any instance serves any session.
//!
//! - **Sessions.** The instance that answers `initialize` owns the session and writes its
//!   record to Redis: owner address, principal, negotiated revision, the `initialize` params and
//!   whether its server can be rebuilt. A request for a session this instance does not hold costs
//!   one Redis read, then goes to the owner over HTTP ([`ClusterLayer`]), SSE streamed back: so a
//!   server→client request (sampling, elicitation) is answered whichever instance the client's
//!   answer reaches, and a GET stream's notifications reach it through whichever instance holds
//!   the connection. A request for a session the instance holds costs no Redis round trip.
//! - **Events.** Every SSE event is stored in Redis ([`RedisEventStore`]) before it is sent, so
//!   a client resumes with `Last-Event-ID` on any instance, even after its owner died.
//! - **Failure.** When the owner cannot be reached (killed, gone), a session whose server can be
//!   rebuilt ([`MakeMcpService::rebuildable`](crate::service::MakeMcpService::rebuildable): the
//!   built-in servers) is adopted by the instance that got the request: one instance wins the
//!   record, rebuilds the server from the stored `initialize`, and the session goes on. A session
//!   pinned to its instance (a stdio child) answers 404 at once, so the client re-initializes.
//!   When Redis is unreachable, requests that need it fail fast with 503 and a JSON-RPC error;
//!   the connection comes back by itself.
//! - **Security.** Session ids stay random (nothing in them); a record keeps the principal that
//!   created the session, checked before any forwarding; a forwarded request carries the
//!   cluster's shared secret (compared in constant time) and is authenticated again by the owner.
//! - **Memory.** Records and event logs expire with the session (its idle timeout plus a
//!   minute; the owner refreshes live ones in the background) and are deleted when it ends.
//!   Each session's event log is capped.
//!
//! The 2026-07-28 revision is sessionless: its requests are served where they land, and the key
//! that seals `requestState` is shared through Redis so an `input_required` round may continue
//! on any instance. Its tasks live in Redis ([`RedisTaskStore`]): `tasks/get` answers anywhere,
//! and `tasks/update` and `tasks/cancel` go to the instance running the task's handler.
//!
//! # Example
//!
//! ```no_run
//! use mcp_tower_http::cluster::{Cluster, ClusterConfig};
//! use mcp_tower_http::everything::EverythingServer;
//! use mcp_tower_http::McpStack;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClusterConfig::new("redis://127.0.0.1:6379", "10.0.0.5:8080", "shared secret");
//! let cluster = Cluster::connect(config).await?;
//! let service = McpStack::new(EverythingServer::new())
//!     .cluster(cluster)
//!     .into_service();
//! # let _ = service;
//! # Ok(())
//! # }
//! ```

mod events;
mod layer;
mod tasks;

pub use events::RedisEventStore;
pub use layer::{ClusterLayer, ClusterService};
pub use tasks::RedisTaskStore;

use crate::modern::RequestMeta;
use crate::protocol::ProtocolVersion;
use crate::session::{Session, SessionId, SessionRegistry};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The request header that marks a request forwarded by another instance; its value is the
/// cluster's shared secret.
pub const FORWARDED_HEADER: &str = "mcp-cluster-forwarded";

/// How a cluster instance is set up.
#[derive(Clone)]
pub struct ClusterConfig {
    redis_url: String,
    advertised_address: String,
    secret: String,
    key_prefix: String,
    session_ttl: Duration,
    redis_timeout: Duration,
    connect_timeout: Duration,
    max_events_per_session: usize,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("advertised_address", &self.advertised_address)
            .field("key_prefix", &self.key_prefix)
            .field("session_ttl", &self.session_ttl)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// An instance using the Redis at `redis_url` (`redis://[:password@]host:port[/db]`), reached
    /// by the other instances at `advertised_address` (`host:port`, plain HTTP), sharing
    /// `secret` with them. Defaults: key prefix `mcp:`, records kept 31 minutes past the last
    /// refresh, 2 s Redis timeout, 1 s connect timeout to another instance, 1,000 stored events
    /// per session.
    pub fn new(
        redis_url: impl Into<String>,
        advertised_address: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            redis_url: redis_url.into(),
            advertised_address: advertised_address.into(),
            secret: secret.into(),
            key_prefix: "mcp:".into(),
            session_ttl: Duration::from_secs(31 * 60),
            redis_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            max_events_per_session: 1_000,
        }
    }

    /// The prefix of every Redis key (default `mcp:`), to share one Redis between clusters.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long a session's record and events outlive the last refresh by their owner (default
    /// 31 minutes): set it a little above the session idle timeout.
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// How long one Redis command may take before the request fails with 503 (default 2 s).
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_timeout = timeout;
        self
    }

    /// How long connecting to another instance may take before it counts as gone (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How many SSE events of one session Redis keeps for resumption (default 1,000).
    pub fn max_events_per_session(mut self, max: usize) -> Self {
        self.max_events_per_session = max.max(1);
        self
    }
}

/// Why a cluster could not start.
#[derive(Debug)]
pub struct ClusterError(String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

/// One instance's handle on the cluster: its Redis connection, its identity and the client
/// that forwards requests to other instances. Cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Shared>);

struct Shared {
    redis: ConnectionManager,
    prefix: String,
    instance: String,
    address: String,
    secret: String,
    session_ttl: Duration,
    max_events_per_session: usize,
    request_state_key: [u8; 32],
    client: Client<HttpConnector, Full<Bytes>>,
    round_trips: AtomicU64,
    leaving: AtomicBool,
    refresher_started: AtomicBool,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.0.instance)
            .field("address", &self.0.address)
            .finish_non_exhaustive()
    }
}

/// What Redis keeps about a session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// `host:port` of the instance that holds the session.
    pub(crate) owner: String,
    /// That instance's random id: a restarted instance at the same address is another one.
    pub(crate) instance: String,
    pub(crate) principal: Option<String>,
    pub(crate) version: String,
    pub(crate) init: Option<Value>,
    pub(crate) rebuildable: bool,
    /// How many times the session moved: adopted POST streams number from `epoch << 32`.
    pub(crate) epoch: u64,
}

/// A record as read, with the exact text for a compare-and-set.
pub(crate) struct StoredRecord {
    pub(crate) raw: String,
    pub(crate) record: SessionRecord,
}

/// Sets `KEYS[1]` to `ARGV[2]` (expiring in `ARGV[3]` ms) only if it still holds `ARGV[1]`.
const CLAIM_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

impl Cluster {
    /// Connects to Redis and joins the cluster. Fails if Redis cannot be reached now; once
    /// running, an outage only fails the requests that need Redis until it is back.
    pub async fn connect(config: ClusterConfig) -> Result<Self, ClusterError> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| ClusterError(format!("bad Redis URL: {e}")))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis_timeout))
            .set_response_timeout(Some(config.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let mut redis = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(|e| ClusterError(format!("cannot connect to Redis: {e}")))?;
        let request_state_key = shared_key(&mut redis, &config.key_prefix)
            .await
            .map_err(|e| ClusterError(format!("cannot read the shared key from Redis: {e}")))?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self(Arc::new(Shared {
            redis,
            prefix: config.key_prefix,
            instance: random_hex(),
            address: config.advertised_address,
            secret: config.secret,
            session_ttl: config.session_ttl,
            max_events_per_session: config.max_events_per_session,
            request_state_key,
            client,
            round_trips: AtomicU64::new(0),
            leaving: AtomicBool::new(false),
            refresher_started: AtomicBool::new(false),
        })))
    }

    /// This instance's random id.
    pub fn instance_id(&self) -> &str {
        &self.0.instance
    }

    /// The address other instances reach this one at.
    pub fn advertised_address(&self) -> &str {
        &self.0.address
    }

    /// The event store shared by the cluster, for [`SseLayer::event_store`](crate::sse::SseLayer::event_store).
    pub fn event_store(&self) -> RedisEventStore {
        RedisEventStore::new(self.clone())
    }

    /// The task store shared by the cluster, for [`Tasks::new`](crate::tasks::Tasks::new).
    pub fn task_store(&self) -> RedisTaskStore {
        RedisTaskStore::new(self.clone())
    }

    /// The key sealing 2026-07-28 `requestState`, the same on every instance.
    pub fn request_state_key(&self) -> [u8; 32] {
        self.0.request_state_key
    }

    /// Redis round trips made by this instance so far (for benchmarks and metrics).
    pub fn redis_round_trips(&self) -> u64 {
        self.0.round_trips.load(Ordering::Relaxed)
    }

    /// Whether Redis answers a `PING` now (within the configured Redis timeout), for a
    /// readiness check. Not counted in [`redis_round_trips`](Self::redis_round_trips).
    pub async fn is_reachable(&self) -> bool {
        let mut redis = self.0.redis.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .is_ok()
    }

    /// Marks this instance as leaving (graceful shutdown): sessions it closes from now on whose
    /// servers can be rebuilt keep their records and events, so other instances adopt them;
    /// call it before closing the sessions.
    pub fn leave(&self) {
        self.0.leaving.store(true, Ordering::Release);
    }

    /// The layer that forwards and adopts sessions of this cluster for `registry`.
    pub fn layer(&self, registry: Arc<SessionRegistry>) -> ClusterLayer {
        ClusterLayer::new(self.clone(), registry)
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.0.prefix)
    }

    pub(crate) fn session_key(&self, id: &str) -> String {
        self.key("session", id)
    }

    pub(crate) fn events_key(&self, id: &str) -> String {
        self.key("events", id)
    }

    pub(crate) fn task_key(&self, id: &str) -> String {
        self.key("task", id)
    }

    /// Reads a task and the instance running it.
    pub(crate) async fn read_task(
        &self,
        id: &str,
    ) -> redis::RedisResult<Option<tasks::StoredTask>> {
        let raw: Option<String> = self.redis().get(self.task_key(id)).await?;
        Ok(raw.and_then(|raw| serde_json::from_str(&raw).ok()))
    }

    pub(crate) fn is_leaving(&self) -> bool {
        self.0.leaving.load(Ordering::Acquire)
    }

    pub(crate) fn ttl_millis(&self) -> u64 {
        self.0.session_ttl.as_millis() as u64
    }

    pub(crate) fn max_events_per_session(&self) -> usize {
        self.0.max_events_per_session
    }

    pub(crate) fn secret(&self) -> &str {
        &self.0.secret
    }

    pub(crate) fn client(&self) -> &Client<HttpConnector, Full<Bytes>> {
        &self.0.client
    }

    /// A connection handle for one exchange, counted as one round trip.
    pub(crate) fn redis(&self) -> ConnectionManager {
        self.0.round_trips.fetch_add(1, Ordering::Relaxed);
        self.0.redis.clone()
    }

    /// Writes the record of a session created here, and arranges for it to go when the session
    /// ends.
    pub(crate) async fn publish(&self, session: &Arc<Session>) -> redis::RedisResult<()> {
        let record = SessionRecord {
            owner: self.0.address.clone(),
            instance: self.0.instance.clone(),
            principal: session.principal_subject().map(str::to_owned),
            version: session.protocol_version().as_str().to_owned(),
            init: session.init_params().map(|p| (**p).clone()),
            rebuildable: session.is_rebuildable(),
            epoch: 0,
        };
        self.write(session.id(), &record).await?;
        self.on_close_forget(session);
        Ok(())
    }

    async fn write(&self, id: &SessionId, record: &SessionRecord) -> redis::RedisResult<()> {
        let json = serde_json::to_string(record).unwrap_or_default();
        let key = self.session_key(id);
        retry_once(|| {
            let mut redis = self.redis();
            let (key, json) = (key.clone(), json.clone());
            async move { redis.pset_ex(key, json, self.ttl_millis()).await }
        })
        .await
    }

    /// Deletes the record and events of a session that ended here, unless the instance is
    /// leaving and another may adopt the session.
    fn on_close_forget(&self, session: &Arc<Session>) {
        let cluster = self.clone();
        let id = session.id().clone();
        let rebuildable = session.is_rebuildable();
        session.on_close(Box::new(move || {
            Box::pin(async move {
                if rebuildable && cluster.is_leaving() {
                    return;
                }
                cluster.forget(&id).await;
            })
        }));
    }

    /// Deletes a session's record and events.
    pub(crate) async fn forget(&self, id: &str) {
        let keys = [self.session_key(id), self.events_key(id)];
        let deleted: redis::RedisResult<()> = self.redis().del(&keys).await;
        if let Err(error) = deleted {
            tracing::warn!(session = id, %error, "cannot delete a session's record from Redis");
        }
    }

    /// Reads a session's record.
    pub(crate) async fn read(&self, id: &str) -> redis::RedisResult<Option<StoredRecord>> {
        let key = self.session_key(id);
        let raw: Option<String> = retry_once(|| {
            let mut redis = self.redis();
            let key = key.clone();
            async move { redis.get(key).await }
        })
        .await?;
        Ok(raw.and_then(|raw| match serde_json::from_str(&raw) {
            Ok(record) => Some(StoredRecord { raw, record }),
            Err(error) => {
                tracing::warn!(session = id, %error, "unreadable session record in Redis");
                None
            }
        }))
    }

    /// Takes a session over from an instance that is gone: `Some(record)` if this instance won
    /// it, `None` if another instance changed the record first.
    pub(crate) async fn claim(
        &self,
        id: &str,
        stored: &StoredRecord,
    ) -> redis::RedisResult<Option<SessionRecord>> {
        let mut record = stored.record.clone();
        record.owner = self.0.address.clone();
        record.instance = self.0.instance.clone();
        record.epoch += 1;
        let json = serde_json::to_string(&record).unwrap_or_default();
        let won: i64 = redis::Script::new(CLAIM_SCRIPT)
            .key(self.session_key(id))
            .arg(&stored.raw)
            .arg(json)
            .arg(self.ttl_millis())
            .invoke_async(&mut self.redis())
            .await?;
        Ok((won == 1).then_some(record))
    }

    /// Builds the local session of a record this instance has claimed.
    pub(crate) fn adopted_session(&self, id: &str, record: &SessionRecord) -> Option<Session> {
        let version = ProtocolVersion::parse(&record.version)?;
        let init = record.init.clone()?;
        let client = crate::endpoint::client_of_initialize(Some(&init), version);
        Some(Session::adopted(
            SessionId::from_raw(id),
            record.principal.as_deref().map(Arc::from),
            version,
            RequestMeta {
                protocol_version: version,
                ..client
            },
            init,
            record.epoch << 32,
        ))
    }

    /// Registers the close hook of an adopted session.
    pub(crate) fn watch_adopted(&self, session: &Arc<Session>) {
        self.on_close_forget(session);
    }

    /// Starts refreshing the expiry of the records and events of `registry`'s sessions, once.
    pub(crate) fn start_refresher(&self, registry: &Arc<SessionRegistry>) {
        if self.0.refresher_started.load(Ordering::Acquire)
            || self.0.refresher_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.0.refresher_started.store(false, Ordering::Release);
            return;
        };
        let period =
            (self.0.session_ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let cluster = Arc::downgrade(&self.0);
        let registry = Arc::downgrade(registry);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(shared), Some(registry)) = (cluster.upgrade(), registry.upgrade()) else {
                    break;
                };
                Cluster(shared).refresh(&registry.ids()).await;
            }
        });
    }

    /// Pushes back the expiry of these sessions' keys: one pipelined round trip per 500.
    async fn refresh(&self, ids: &[SessionId]) {
        let ttl = self.ttl_millis();
        for chunk in ids.chunks(500) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.pexpire(self.session_key(id), ttl as i64).ignore();
                pipe.pexpire(self.events_key(id), ttl as i64).ignore();
            }
            let refreshed: redis::RedisResult<()> = pipe.query_async(&mut self.redis()).await;
            if let Err(error) = refreshed {
                tracing::warn!(%error, "cannot refresh session expiry in Redis");
                return;
            }
        }
    }
}

/// Runs a Redis command again once if the connection had dropped: the first command after an
/// outage finds the old connection broken and starts the reconnection the second one waits for.
async fn retry_once<T, F, Fut>(mut command: F) -> redis::RedisResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redis::RedisResult<T>>,
{
    match command().await {
        Err(error) if error.is_connection_dropped() || error.is_io_error() => command().await,
        result => result,
    }
}

/// The cluster-wide 32-byte key: set once by whichever instance comes first.
async fn shared_key(redis: &mut ConnectionManager, prefix: &str) -> redis::RedisResult<[u8; 32]> {
    let key = format!("{prefix}request-state-key");
    let fresh: [u8; 32] = rand::random();
    let _: bool = redis::cmd("SET")
        .arg(&key)
        .arg(&fresh[..])
        .arg("NX")
        .query_async::<Option<String>>(redis)
        .await
        .map(|set| set.is_some())?;
    let stored: Vec<u8> = redis.get(&key).await?;
    stored.try_into().map_err(|_| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the shared key in Redis is not 32 bytes",
        ))
    })
}

fn random_hex() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}
