//! Prometheus metrics (feature `metrics`): [`Metrics`], the registry, and the two layers that
//! feed it.
//!
//! - [`MetricsLayer`] goes around the whole HTTP service (outside [`McpStack`](crate::McpStack)):
//!   HTTP requests by method and status, authentication failures by reason, rate-limited
//!   requests (every 429), and the SSE streams open right now.
//! - [`RpcMetricsLayer`] goes around the [`MakeMcpService`](crate::MakeMcpService) given to the
//!   stack, as [`RequestTimeoutLayer`](crate::timeout::RequestTimeoutLayer) does: JSON-RPC
//!   requests by method and tool, a latency histogram, and error codes. It times the handler
//!   itself, so an answer streamed over SSE is timed to the answer, not to the response head.
//!   Requests the endpoint answers without the server (2026-07-28 `server/discover`,
//!   `subscriptions/listen`, tasks) are not counted here; their HTTP requests are.
//!
//! What the stack already keeps is read when Prometheus scrapes, not counted in the hot path:
//! active sessions by transport ([`Metrics::track_stack`], [`Metrics::track_sessions`]), the
//! bytes held by an [`InMemoryEventStore`] ([`Metrics::track_event_store`]) and, with the
//! `stdio` feature, the children of a `StdioCommand` alive, spawned and crashed
//! ([`Metrics::track_stdio`]).
//!
//! Label values are bounded: HTTP methods and JSON-RPC methods outside the ones MCP defines are
//! `other`; a tool name becomes a label only once a call of it has succeeded (so a client
//! cannot mint labels by calling made-up tools), and at most [`Metrics::max_tool_labels`]
//! names (default 256) are kept, later ones being `other`; likewise at most 32 distinct
//! JSON-RPC error codes. Session ids and principals are never labels.
//!
//! [`Metrics::encode`] writes the Prometheus text format (version 0.0.4), encoded by
//! `prometheus-client`, the official Prometheus Rust client; serve it with
//! [`CONTENT_TYPE`] on a listener of its own, not on the MCP port.
//!
//! # Example
//!
//! ```
//! use mcp_tower_http::metrics::{Metrics, MetricsLayer};
//! use mcp_tower_http::{McpStack, SessionContext, everything::EverythingServer};
//! use tower::Layer;
//!
//! let metrics = Metrics::new();
//! let make = metrics.rpc_layer().layer(|_: &SessionContext<'_>| EverythingServer::new());
//! let mcp = McpStack::new(make).endpoint_path("/mcp").into_service();
//! metrics.track_stack(&mcp);
//! let service = MetricsLayer::new(metrics.clone()).layer(mcp);
//! # let _ = service;
//!
//! // What `GET /metrics` on a separate listener answers, with `CONTENT_TYPE`:
//! let text = metrics.encode();
//! assert!(text.contains("# TYPE mcp_sessions_active gauge"));
//! ```

mod http;
mod rpc;

pub use self::http::{MetricsBody, MetricsLayer, MetricsService, ResponseFuture};
pub use self::rpc::{RpcMetrics, RpcMetricsLayer};

use crate::session::SessionRegistry;
use crate::sse::InMemoryEventStore;
use crate::sync::{lock, read, write};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock, Weak};

/// The `Content-Type` of [`Metrics::encode`]'s text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The default bound on distinct tool-name labels.
pub const DEFAULT_MAX_TOOL_LABELS: usize = 256;

/// The bound on distinct JSON-RPC error-code labels.
const MAX_CODE_LABELS: usize = 32;

/// The label value of everything past a bound.
const OTHER: &str = "other";

/// Latency buckets, in seconds: 1 ms to a minute.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// The methods MCP defines (both directions, every revision): anything else is `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "server/discover",
    "subscriptions/listen",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
];

/// `method` as a bounded label value.
fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or(OTHER)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    tool: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcErrorLabels {
    method: &'static str,
    tool: Arc<str>,
    code: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The measurements of one MCP server: a cheap handle, shared by the layers that record and
/// the endpoint that serves them. See the [module docs](crate::metrics).
#[derive(Clone, Debug)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    rate_limited: Counter,
    sse_streams: Gauge,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    rpc_errors: Family<RpcErrorLabels, Counter>,
    tools: Bounded<Arc<str>>,
    codes: Bounded<i32>,
    sources: Arc<Mutex<Sources>>,
}

/// A set of label values that stops growing at its bound.
#[derive(Debug)]
struct Bounded<T> {
    values: RwLock<HashSet<T>>,
    max: usize,
}

impl<T: std::hash::Hash + Eq> Bounded<T> {
    fn new(max: usize) -> Self {
        Self {
            values: RwLock::new(HashSet::new()),
            max,
        }
    }

    /// The kept value equal to `value`, if any.
    fn get<Q>(&self, value: &Q) -> Option<T>
    where
        T: std::borrow::Borrow<Q> + Clone,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        read(&self.values).get(value).cloned()
    }

    /// Keeps `value` if there is room; `false` when the bound is reached.
    fn admit(&self, value: T) -> bool {
        let mut values = write(&self.values);
        if values.contains(&value) {
            return true;
        }
        if values.len() >= self.max {
            return false;
        }
        values.insert(value);
        true
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty measurements, with the default label bounds.
    pub fn new() -> Self {
        Self::with_max_tool_labels(DEFAULT_MAX_TOOL_LABELS)
    }

    /// Empty measurements keeping at most `max` distinct tool names as labels (calls of other
    /// tools are counted under `tool="other"`).
    pub fn with_max_tool_labels(max: usize) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "mcp_http_requests",
            "HTTP requests answered, by method and status",
            http_requests.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "mcp_auth_failures",
            "Requests refused by authentication or authorization, by reason",
            auth_failures.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "mcp_rate_limited_requests",
            "Requests refused with 429 Too Many Requests",
            rate_limited.clone(),
        );
        let sse_streams = Gauge::default();
        registry.register(
            "mcp_sse_streams_open",
            "Server-Sent Events responses open now",
            sse_streams.clone(),
        );
        let rpc_requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "mcp_rpc_requests",
            "JSON-RPC requests answered by the MCP server, by method and tool",
            rpc_requests.clone(),
        );
        let rpc_duration = Family::<RpcLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "mcp_rpc_request_duration_seconds",
            "Time the MCP server took to answer a JSON-RPC request, by method and tool",
            rpc_duration.clone(),
        );
        let rpc_errors = Family::<RpcErrorLabels, Counter>::default();
        registry.register(
            "mcp_rpc_errors",
            "JSON-RPC requests answered with an error, by method, tool and error code",
            rpc_errors.clone(),
        );
        let sources = Arc::new(Mutex::new(Sources::default()));
        registry.register_collector(Box::new(ScrapeTime(sources.clone())));
        Self(Arc::new(Inner {
            registry,
            http_requests,
            auth_failures,
            rate_limited,
            sse_streams,
            rpc_requests,
            rpc_duration,
            rpc_errors,
            tools: Bounded::new(max),
            codes: Bounded::new(MAX_CODE_LABELS),
            sources,
        }))
    }

    /// The bound on distinct tool-name labels.
    pub fn max_tool_labels(&self) -> usize {
        self.0.tools.max
    }

    /// The layer recording JSON-RPC requests, for the server given to the stack.
    pub fn rpc_layer(&self) -> RpcMetricsLayer {
        RpcMetricsLayer::new(self.clone())
    }

    /// The layer recording HTTP requests, for around the whole service.
    pub fn http_layer(&self) -> MetricsLayer {
        MetricsLayer::new(self.clone())
    }

    /// Every measurement in the Prometheus text format (version 0.0.4); serve it with
    /// [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String does not fail; an error could only come from a label value, and
        // every label value here is a plain string or number.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.0.registry)
        {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        text
    }

    /// Reports the sessions of `registry` as `mcp_sessions_active{transport="..."}` at each
    /// scrape (`transport`: e.g. `streamable_http`, `legacy_sse`). The registry is not kept
    /// alive by this.
    pub fn track_sessions(&self, transport: &'static str, registry: &Arc<SessionRegistry>) {
        lock(&self.0.sources)
            .sessions
            .push((transport, Arc::downgrade(registry)));
    }

    /// Reports the sessions of both transports of a stack
    /// ([`track_sessions`](Self::track_sessions) with `streamable_http` and `legacy_sse`).
    pub fn track_stack<M, L>(&self, service: &crate::McpHttpService<M, L>)
    where
        L: tower::Layer<crate::stack::McpCore<M>>,
    {
        self.track_sessions("streamable_http", service.sessions());
        #[cfg(feature = "legacy-sse")]
        self.track_sessions("legacy_sse", service.legacy_sessions());
    }

    /// Reports the bytes `store` holds as `mcp_event_store_bytes` at each scrape.
    pub fn track_event_store(&self, store: InMemoryEventStore) {
        lock(&self.0.sources).event_stores.push(store);
    }

    /// Reports a `StdioCommand`'s children (alive, spawned, crashed) at each scrape.
    #[cfg(feature = "stdio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "stdio")))]
    pub fn track_stdio(&self, stats: crate::stdio::StdioStats) {
        lock(&self.0.sources).stdio.push(stats);
    }

    fn record_http(&self, method: &::http::Method, status: ::http::StatusCode) {
        let method = match *method {
            ::http::Method::GET => "GET",
            ::http::Method::POST => "POST",
            ::http::Method::DELETE => "DELETE",
            ::http::Method::OPTIONS => "OPTIONS",
            ::http::Method::HEAD => "HEAD",
            ::http::Method::PUT => "PUT",
            ::http::Method::PATCH => "PATCH",
            _ => OTHER,
        };
        self.0
            .http_requests
            .get_or_create(&HttpLabels {
                method,
                status: status.as_u16(),
            })
            .inc();
        if status == ::http::StatusCode::TOO_MANY_REQUESTS {
            self.0.rate_limited.inc();
        }
    }

    fn record_auth_failure(&self, reason: &'static str) {
        self.0
            .auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The label of a known tool, without allocating.
    fn known_tool(&self, name: &str) -> Option<Arc<str>> {
        self.0.tools.get(name)
    }

    /// The label for a tool call's outcome: a name is admitted once a call of it succeeded.
    fn tool_label(&self, known: Option<Arc<str>>, name: Option<String>, ok: bool) -> Arc<str> {
        if let Some(known) = known {
            return known;
        }
        match name {
            Some(name) if ok => {
                let name: Arc<str> = name.into();
                if self.0.tools.admit(name.clone()) {
                    name
                } else {
                    Arc::from(OTHER)
                }
            }
            Some(_) => Arc::from(OTHER),
            None => Arc::from(""),
        }
    }

    fn record_rpc(
        &self,
        method: &'static str,
        tool: Arc<str>,
        seconds: f64,
        error: Option<crate::jsonrpc::ErrorCode>,
    ) {
        let labels = RpcLabels { method, tool };
        self.0.rpc_requests.get_or_create(&labels).inc();
        self.0.rpc_duration.get_or_create(&labels).observe(seconds);
        if let Some(code) = error {
            let code: Arc<str> = if self.0.codes.admit(code.0) {
                code.0.to_string().into()
            } else {
                Arc::from(OTHER)
            };
            self.0
                .rpc_errors
                .get_or_create(&RpcErrorLabels {
                    method,
                    tool: labels.tool,
                    code,
                })
                .inc();
        }
    }
}

/// What is read at scrape time.
#[derive(Debug, Default)]
struct Sources {
    sessions: Vec<(&'static str, Weak<SessionRegistry>)>,
    event_stores: Vec<InMemoryEventStore>,
    #[cfg(feature = "stdio")]
    stdio: Vec<crate::stdio::StdioStats>,
}

/// The collector reading [`Sources`] when the registry is encoded.
#[derive(Debug)]
struct ScrapeTime(Arc<Mutex<Sources>>);

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(&[(&str, &str)], i64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in values {
        let family = metric.encode_family(labels)?;
        ConstGauge::new(*value).encode(family)?;
    }
    Ok(())
}

#[cfg(feature = "stdio")]
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    prometheus_client::metrics::counter::ConstCounter::new(value).encode(metric)
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // Read first, encode after: the sources' own locks are not held while writing.
        let (sessions, event_bytes, stdio) = {
            let sources = lock(&self.0);
            let mut sessions: Vec<(&'static str, usize)> = Vec::new();
            for (transport, registry) in &sources.sessions {
                let Some(registry) = registry.upgrade() else {
                    continue;
                };
                match sessions.iter_mut().find(|(t, _)| t == transport) {
                    Some((_, n)) => *n += registry.len(),
                    None => sessions.push((transport, registry.len())),
                }
            }
            let event_bytes: usize = sources
                .event_stores
                .iter()
                .map(InMemoryEventStore::total_bytes)
                .sum();
            #[cfg(feature = "stdio")]
            let stdio = (!sources.stdio.is_empty()).then(|| {
                sources.stdio.iter().fold((0, 0, 0), |(a, s, c), stats| {
                    (a + stats.alive(), s + stats.spawned(), c + stats.crashed())
                })
            });
            #[cfg(not(feature = "stdio"))]
            let stdio: Option<(usize, u64, u64)> = None;
            (sessions, event_bytes, stdio)
        };
        let labels: Vec<[(&str, &str); 1]> =
            sessions.iter().map(|(t, _)| [("transport", *t)]).collect();
        let values: Vec<(&[(&str, &str)], i64)> = labels
            .iter()
            .zip(&sessions)
            .map(|(l, (_, n))| (&l[..], as_i64(*n)))
            .collect();
        gauge(
            &mut encoder,
            "mcp_sessions_active",
            "Sessions open now, by transport",
            &values,
        )?;
        gauge(
            &mut encoder,
            "mcp_event_store_bytes",
            "Bytes of SSE events kept for resumption",
            &[(&[], as_i64(event_bytes))],
        )?;
        #[cfg(feature = "stdio")]
        if let Some((alive, spawned, crashed)) = stdio {
            gauge(
                &mut encoder,
                "mcp_stdio_children_alive",
                "Stdio MCP server processes running now",
                &[(&[], as_i64(alive))],
            )?;
            counter(
                &mut encoder,
                "mcp_stdio_children_spawned",
                "Stdio MCP server processes started",
                spawned,
            )?;
            counter(
                &mut encoder,
                "mcp_stdio_children_crashed",
                "Stdio MCP server processes that exited by themselves while in use",
                crashed,
            )?;
        }
        #[cfg(not(feature = "stdio"))]
        let _ = stdio;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
