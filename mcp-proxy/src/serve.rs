//! The accept loop: binds, builds the stack, serves connections until a signal.

use crate::cli::Transports;
use crate::config::{AuthSetup, ClusterArgs, Config};
use crate::conn::{ConnSettings, Connection, ConnectionLimit};
use crate::drain::{InFlight, Tracked};
use crate::managed::{Lifecycle, Managed};
use crate::ops::Ops;
use crate::shutdown::{Signals, Teardown, shutdown};
use crate::tls::{TLS_HANDSHAKE_TIMEOUT, Tls};
use mcp_tower_http::auth::ChallengeLayer;
use mcp_tower_http::auth::{ToolVisibility, ToolVisibilityLayer};
use mcp_tower_http::cluster::{Cluster, ClusterConfig};
use mcp_tower_http::cors::McpCors;
use mcp_tower_http::metrics::{RpcMetrics, RpcMetricsLayer};
use mcp_tower_http::origin::OriginLayer;
use mcp_tower_http::session::SessionLimit;
use mcp_tower_http::sse::{InMemoryEventStore, SseLayer};
use mcp_tower_http::stack::McpHttpService;
use mcp_tower_http::stdio::StdioPool;
use mcp_tower_http::timeout::{RequestTimeout, RequestTimeoutLayer};
use mcp_tower_http::{MakeMcpService, McpStack};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Layer;

pub(crate) async fn serve<M: MakeMcpService>(
    config: &Config,
    tls: Option<Tls>,
    make: M,
    pool: Option<StdioPool>,
) -> std::io::Result<()> {
    // Signal handlers first, so a signal during start-up is not lost.
    let mut signals = Signals::new();

    let mut origin = OriginLayer::localhost();
    for allowed in &config.allowed_origins {
        origin = origin.allow_origin(allowed);
    }
    if !config.allowed_hosts.is_empty() {
        origin = origin.allow_hosts(&config.allowed_hosts);
    }
    // Bound first: a cluster advertises the port actually bound.
    let listener = TcpListener::bind(SocketAddr::new(config.host, config.port)).await?;
    let local = listener.local_addr()?;
    let cluster = match &config.cluster {
        Some(args) => Some(join_cluster(config, args, local).await?),
        None => None,
    };
    let ops = Ops::new(config.metrics.is_some(), cluster.clone());
    let metrics_listener = Ops::bind(config.metrics).await?;
    let sse = if config.event_store {
        let store = InMemoryEventStore::new().max_events_per_session(config.event_store_max_events);
        ops.track_event_store(&store);
        SseLayer::new().event_store(store)
    } else {
        SseLayer::new().without_event_store()
    };
    let (stop, stopping) = watch::channel(false);
    let closing = InFlight::new();
    let mut cors = McpCors::new();
    for allowed in &config.allowed_origins {
        cors = cors.allow_origin(allowed);
    }
    for header in &config.cors_allow_headers {
        cors = cors.allow_header(header);
    }
    let auth = config.auth.build().map_err(std::io::Error::other)?;
    let visibility = crate::limits::tool_visibility(&auth.scopes);
    if let Some(metadata) = &auth.metadata {
        tracing::info!(
            url = metadata.metadata_url(),
            "serving protected-resource metadata"
        );
    }
    let parts = StackParts {
        origin,
        sse,
        cors,
        auth,
        cluster: cluster.clone(),
        lifecycle: Lifecycle {
            stopping,
            closing: closing.clone(),
        },
        // One cap for the sessions of every server.
        session_limit: SessionLimit::new(config.max_sessions),
        rpc_metrics: ops.rpc_layer(),
        visibility,
    };
    let paths = StackPaths {
        stream: config.stream_endpoint.clone(),
        sse: config.sse_endpoint.clone(),
        messages: "/messages".to_owned(),
    };
    let service = mcp_stack(config, &parts, make, &paths);
    let sessions = service.sessions().clone();
    let legacy_sessions = service.legacy_sessions().clone();
    ops.track(&service, pool.as_ref());
    if let Some(tls) = &tls {
        tls.reload_on_sighup();
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (service, named) =
        crate::named::mount(config, &parts, service, &format!("{scheme}://{local}"));
    // Health endpoints and HTTP measurements in front of every server.
    let service = ops.wrap(service);
    // Traces: a span per request, outermost so rejections have one too.
    let service = mcp_tower_http::trace::McpTraceLayer::new().layer(service);
    let in_flight = InFlight::new();
    let service = Tracked {
        inner: service,
        in_flight: in_flight.clone(),
        connection: None,
    };
    let settings = Arc::new(ConnSettings::new(&config.connections));
    let mut limit = ConnectionLimit::new(config.connections.max_connections);
    let connections = InFlight::new();
    let (drain, draining) = watch::channel(false);

    let path = match config.server {
        Transports::Sse => &config.sse_endpoint,
        _ => &config.stream_endpoint,
    };
    // SocketAddr prints IPv6 hosts in brackets: http://[::1]:8080/mcp.
    println!("mcp-proxy listening on {scheme}://{local}{path}");
    if config.server == Transports::Both {
        tracing::info!(
            "legacy HTTP+SSE at {scheme}://{local}{}",
            config.sse_endpoint
        );
    }
    ops.serve_metrics(metrics_listener)?;

    let signal = loop {
        // Room for one more connection first: at the limit, connections wait in the backlog.
        let permit = tokio::select! {
            permit = limit.acquire() => permit,
            signal = signals.recv() => break signal,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            signal = signals.recv() => break signal,
        };
        // SSE frames are small writes: without NODELAY, Nagle + delayed ACK add ~40 ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let connection = Connection {
            peer,
            service: service.clone(),
            settings: settings.clone(),
            draining: draining.clone(),
            _counted: connections.enter(),
            _permit: permit,
        };
        match &tls {
            None => {
                tokio::spawn(connection.serve(stream));
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
    };
    drop(listener);
    ops.shutting_down();
    shutdown(
        signal,
        config.graceful_shutdown_timeout,
        Teardown {
            connections,
            drain,
            in_flight,
            stop,
            sessions,
            legacy_sessions,
            closing,
            pool,
            cluster,
            named,
        },
        &mut signals,
    )
    .await;
    Ok(())
}

/// What the stacks of every server share.
pub(crate) struct StackParts {
    pub(crate) origin: OriginLayer,
    pub(crate) sse: SseLayer,
    pub(crate) cors: McpCors,
    pub(crate) auth: AuthSetup,
    pub(crate) cluster: Option<Cluster>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) session_limit: Arc<SessionLimit>,
    /// JSON-RPC measurements around each server (a pass-through without --metrics-port).
    pub(crate) rpc_metrics: RpcMetricsLayer,
    /// `tools/list` filtered by the caller's scopes (a pass-through without --tool-scope).
    pub(crate) visibility: ToolVisibilityLayer,
}

/// Where one server's transports are served.
pub(crate) struct StackPaths {
    pub(crate) stream: String,
    pub(crate) sse: String,
    pub(crate) messages: String,
}

/// The stack of one server made by `M`.
pub(crate) type McpService<M> =
    McpHttpService<Managed<RpcMetrics<ToolVisibility<RequestTimeout<M>>>>>;

/// One server's stack, with every flag applied, served at `paths`.
pub(crate) fn mcp_stack<M: MakeMcpService>(
    config: &Config,
    parts: &StackParts,
    make: M,
    paths: &StackPaths,
) -> McpService<M> {
    // --request-timeout bounds each JSON-RPC request, --connection-timeout `initialize`.
    let timeout = RequestTimeoutLayer::new(config.request_timeout)
        .initialize_timeout(config.connection_timeout);
    let make = Managed {
        inner: parts
            .rpc_metrics
            .layer(parts.visibility.layer(timeout.layer(make))),
        lifecycle: parts.lifecycle.clone(),
    };
    let auth = &parts.auth;
    let mut stack = McpStack::new(make)
        .endpoint_path(paths.stream.clone())
        .streamable_http(config.server != Transports::Sse)
        .cors(parts.cors.clone())
        .scopes(auth.scopes.clone())
        .principal_limits(config.limits.layer());
    if let Some(authenticator) = auth.authenticator.clone() {
        stack = stack.authenticate(authenticator);
    }
    if let Some(metadata) = auth.metadata.clone() {
        // The 401 challenge names the scopes every request needs (spec: SHOULD).
        let challenge = ChallengeLayer::for_metadata(&metadata)
            .scope(config.auth.required_scopes.iter().cloned());
        stack = stack.protected_resource(metadata).challenge(challenge);
    }
    if config.server != Transports::Stream {
        stack = stack.legacy_sse(paths.sse.clone(), paths.messages.clone());
    }
    if let Some(cluster) = &parts.cluster {
        stack = stack.cluster(cluster.clone());
    }
    // `sse` before the JSON mode and keep-alive, which it would otherwise reset.
    stack
        .origin(parts.origin.clone())
        .sse(parts.sse.clone())
        .stateless(config.stateless)
        .modern(config.modern)
        .json_response(config.json_response)
        .max_body_size(config.max_body_size)
        .session_idle_timeout(config.session_idle_timeout)
        .session_handshake_timeout(config.session_handshake_timeout)
        .session_limit(parts.session_limit.clone())
        .keep_alive(config.keep_alive)
        .into_service()
}

/// Connects to the cluster's Redis. Records live a minute past the idle timeout (an hour
/// without one), so a dead instance's sessions can still be adopted until they would have
/// expired anyway.
async fn join_cluster(
    config: &Config,
    args: &ClusterArgs,
    local: SocketAddr,
) -> std::io::Result<Cluster> {
    let address = args.address.clone().unwrap_or_else(|| local.to_string());
    let ttl = config
        .session_idle_timeout
        .map_or(Duration::from_secs(3600), |idle| {
            idle + Duration::from_secs(60)
        });
    let cluster_config = ClusterConfig::new(&args.redis_url, &address, &args.secret)
        .session_ttl(ttl)
        .max_events_per_session(config.event_store_max_events);
    let cluster = Cluster::connect(cluster_config)
        .await
        .map_err(std::io::Error::other)?;
    tracing::info!(
        %address,
        instance = cluster.instance_id(),
        "joined the cluster"
    );
    Ok(cluster)
}
