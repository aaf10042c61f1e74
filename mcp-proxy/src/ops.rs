//! Operating the proxy: Prometheus metrics on a listener of their own (`--metrics-port`), and
//! liveness/readiness endpoints.
//!
//! - `GET /healthz` (alias `/livez`): 200 while the process serves.
//! - `GET /readyz`: 200 when it should get traffic; 503 from the first shutdown signal on, and
//!   while Redis does not answer a `PING` with `--redis`.
//!
//! Both are open (no authentication, no `Origin` check) like `/ping`, on the MCP port and on
//! the metrics listener. The metrics listener also serves `GET /metrics` (Prometheus text)
//! and, unlike the MCP listener, stays open during graceful shutdown: that is where an
//! orchestrator sees readiness turn to 503 while the last requests finish. `/metrics` is never
//! served on the MCP port.

use bytes::Bytes;
use clap::ArgMatches;
use clap::parser::ValueSource;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcp_tower_http::cluster::Cluster;
use mcp_tower_http::metrics::{Metrics, MetricsLayer, RpcMetricsLayer};
use mcp_tower_http::sse::InMemoryEventStore;
use mcp_tower_http::stack::StackBody;
use mcp_tower_http::stdio::StdioPool;
use mcp_tower_http::{MakeMcpService, McpHttpService};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections the metrics listener serves at once (scrapers and probes are few).
const MAX_METRICS_CONNECTIONS: usize = 64;
/// How long a metrics connection may take to send a request head.
const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a metrics connection may stay open: a scrape is one small request, so a stalled
/// peer cannot hold a slot.
const METRICS_CONNECTION_LIMIT: Duration = Duration::from_secs(30);

/// `--metrics-host/--metrics-port` resolved.
pub(crate) fn metrics_address(
    port: Option<u16>,
    host: IpAddr,
    mcp_port: u16,
    matches: &ArgMatches,
) -> Result<Option<SocketAddr>, String> {
    let Some(port) = port else {
        if matches.value_source("metrics_host") == Some(ValueSource::CommandLine) {
            return Err("--metrics-host needs --metrics-port".to_owned());
        }
        return Ok(None);
    };
    if port != 0 && port == mcp_port {
        return Err(format!(
            "--metrics-port {port} is the MCP port: metrics need a listener of their own"
        ));
    }
    Ok(Some(SocketAddr::new(host, port)))
}

/// Metrics (when `--metrics-port` is set) and readiness, shared by the MCP stack and the
/// metrics listener.
#[derive(Clone)]
pub(crate) struct Ops {
    metrics: Option<Metrics>,
    readiness: Readiness,
}

/// What `/readyz` answers from.
#[derive(Clone)]
struct Readiness {
    shutting_down: Arc<AtomicBool>,
    cluster: Option<Cluster>,
}

impl Readiness {
    /// `Err(why)` when the proxy should not get traffic.
    async fn check(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down");
        }
        if let Some(cluster) = &self.cluster
            && !cluster.is_reachable().await
        {
            return Err("redis unreachable");
        }
        Ok(())
    }
}

impl Ops {
    pub(crate) fn new(metrics: bool, cluster: Option<Cluster>) -> Self {
        Self {
            metrics: metrics.then(Metrics::new),
            readiness: Readiness {
                shutting_down: Arc::new(AtomicBool::new(false)),
                cluster,
            },
        }
    }

    /// The layer measuring JSON-RPC requests (a pass-through without metrics).
    pub(crate) fn rpc_layer(&self) -> RpcMetricsLayer {
        self.metrics
            .as_ref()
            .map_or_else(RpcMetricsLayer::disabled, Metrics::rpc_layer)
    }

    /// Reports the bytes `store` holds.
    pub(crate) fn track_event_store(&self, store: &InMemoryEventStore) {
        if let Some(metrics) = &self.metrics {
            metrics.track_event_store(store.clone());
        }
    }

    /// Reports a stack's sessions and its command's children at scrape time.
    pub(crate) fn track<M, L>(&self, service: &McpHttpService<M, L>, pool: Option<&StdioPool>)
    where
        M: MakeMcpService,
        L: tower::Layer<mcp_tower_http::stack::McpCore<M>>,
    {
        if let Some(metrics) = &self.metrics {
            metrics.track_stack(service);
            if let Some(pool) = pool {
                metrics.track_stdio(pool.stats());
            }
        }
    }

    /// Puts the health endpoints and the HTTP measurements in front of `service` (every
    /// server's stack, behind the path dispatcher).
    pub(crate) fn wrap<S>(&self, service: S) -> mcp_tower_http::metrics::MetricsService<Health<S>> {
        let layer = self
            .metrics
            .as_ref()
            .map_or_else(MetricsLayer::disabled, Metrics::http_layer);
        tower::Layer::layer(
            &layer,
            Health {
                inner: service,
                readiness: self.readiness.clone(),
            },
        )
    }

    /// From now on `/readyz` answers 503.
    pub(crate) fn shutting_down(&self) {
        self.readiness.shutting_down.store(true, Ordering::Release);
    }

    /// Binds the metrics listener, when there is one.
    pub(crate) async fn bind(address: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
        match address {
            Some(address) => TcpListener::bind(address).await.map(Some).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("--metrics-port: cannot bind {address}: {e}"),
                )
            }),
            None => Ok(None),
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the process exits.
    pub(crate) fn serve_metrics(&self, listener: Option<TcpListener>) -> std::io::Result<()> {
        let (Some(listener), Some(metrics)) = (listener, self.metrics.clone()) else {
            return Ok(());
        };
        let local = listener.local_addr()?;
        println!("mcp-proxy metrics at http://{local}/metrics");
        let readiness = self.readiness.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(MAX_METRICS_CONNECTIONS));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let stream = match listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (metrics, readiness) = (metrics.clone(), readiness.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (metrics, readiness) = (metrics.clone(), readiness.clone());
                        async move {
                            Ok::<_, Infallible>(answer_metrics(&req, &metrics, &readiness).await)
                        }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(METRICS_HEADER_TIMEOUT)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service);
                    if let Ok(Err(e)) =
                        tokio::time::timeout(METRICS_CONNECTION_LIMIT, connection).await
                    {
                        tracing::debug!(error = %e, "metrics connection failed");
                    }
                    drop(permit);
                });
            }
        });
        Ok(())
    }
}

/// The metrics listener's answer.
async fn answer_metrics(
    req: &Request<Incoming>,
    metrics: &Metrics,
    readiness: &Readiness,
) -> Response<String> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "");
    }
    match req.uri().path() {
        "/metrics" => {
            let mut response = Response::new(metrics.encode());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(mcp_tower_http::metrics::CONTENT_TYPE),
            );
            response
        }
        "/healthz" | "/livez" => text(StatusCode::OK, "ok"),
        "/readyz" => match readiness.check().await {
            Ok(()) => text(StatusCode::OK, "ready"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
        },
        _ => text(StatusCode::NOT_FOUND, ""),
    }
}

fn text(status: StatusCode, body: &str) -> Response<String> {
    let mut response = Response::new(body.to_owned());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The health endpoints in front of the MCP stack, open like `/ping`.
#[derive(Clone)]
pub(crate) struct Health<S> {
    inner: S,
    readiness: Readiness,
}

/// Which health endpoint a request is for.
fn health_path<B>(req: &Request<B>) -> Option<bool> {
    if req.method() != Method::GET {
        return None;
    }
    match req.uri().path() {
        "/healthz" | "/livez" => Some(false),
        "/readyz" => Some(true),
        _ => None,
    }
}

fn stack_text(status: StatusCode, body: &'static str) -> Response<StackBody> {
    let mut response = Response::new(StackBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl<S, B> tower::Service<Request<B>> for Health<S>
where
    S: tower::Service<Request<B>, Response = Response<StackBody>, Error = Infallible>,
{
    type Response = Response<StackBody>;
    type Error = Infallible;
    type Future = HealthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match health_path(&req) {
            None => HealthFuture::Inner {
                future: self.inner.call(req),
            },
            Some(false) => HealthFuture::Ready {
                response: Some(stack_text(StatusCode::OK, "ok")),
            },
            Some(true) => {
                let readiness = self.readiness.clone();
                HealthFuture::Check {
                    future: Box::pin(async move {
                        match readiness.check().await {
                            Ok(()) => stack_text(StatusCode::OK, "ready"),
                            Err(why) => stack_text(StatusCode::SERVICE_UNAVAILABLE, why),
                        }
                    }),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Health`].
    #[project = HealthProj]
    pub(crate) enum HealthFuture<F> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<StackBody>> },
        Check { future: Pin<Box<dyn Future<Output = Response<StackBody>> + Send>> },
    }
}

impl<F> Future for HealthFuture<F>
where
    F: Future<Output = Result<Response<StackBody>, Infallible>>,
{
    type Output = Result<Response<StackBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HealthProj::Inner { future } => future.poll(cx),
            HealthProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            HealthProj::Check { future } => future.as_mut().poll(cx).map(Ok),
        }
    }
}
