//! Graceful shutdown (see the crate docs) and the signals that start it.

use crate::drain::InFlight;
use mcp_tower_http::cluster::Cluster;
use mcp_tower_http::session::SessionRegistry;
use mcp_tower_http::stdio::{DEFAULT_GRACE, StdioPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the shutdown acts on.
pub(crate) struct Teardown {
    /// The open connections.
    pub(crate) connections: InFlight,
    /// Tells every connection to shut down gracefully.
    pub(crate) drain: watch::Sender<bool>,
    pub(crate) in_flight: InFlight,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) sessions: Arc<SessionRegistry>,
    pub(crate) legacy_sessions: Arc<SessionRegistry>,
    pub(crate) closing: InFlight,
    /// The children serving 2026-07-28 requests, with a COMMAND.
    pub(crate) pool: Option<StdioPool>,
    /// With --redis: sessions that other instances can rebuild are left to them.
    pub(crate) cluster: Option<Cluster>,
    /// The named servers' sessions and pools.
    pub(crate) named: crate::named::NamedTeardown,
}

/// The part of the grace period kept for closing sessions and children.
pub(crate) fn teardown_budget(grace: Duration) -> Duration {
    (grace / 2).min(Duration::from_secs(1))
}

/// The wait between a child's stdin EOF and SIGTERM, and between SIGTERM and SIGKILL: short
/// enough that both fit in the teardown budget of a shutdown.
pub(crate) fn child_grace(grace: Duration) -> Duration {
    (teardown_budget(grace) / 3).clamp(Duration::from_millis(50), DEFAULT_GRACE)
}

/// Runs the graceful shutdown described in the module docs.
pub(crate) async fn shutdown(
    signal: &'static str,
    grace: Duration,
    teardown: Teardown,
    signals: &mut Signals,
) {
    let Teardown {
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
    } = teardown;
    let deadline = Instant::now() + grace;
    tracing::info!(
        signal,
        grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        in_flight = in_flight.count(),
        sessions = sessions.len() + legacy_sessions.len() + named.sessions(),
        "shutting down"
    );
    // Idle connections close now; busy ones after their current response (no keep-alive).
    drain.send_replace(true);

    let mut forced = false;
    tokio::select! {
        () = in_flight.idle() => {}
        () = tokio::time::sleep_until(deadline - teardown_budget(grace)) => {
            tracing::warn!(in_flight = in_flight.count(), "requests still running at the end of the grace period; failing them");
        }
        signal = signals.recv() => {
            tracing::warn!(signal, "second signal: exiting now");
            forced = true;
        }
    }

    // Requests still running answer "shutting down"; closing the sessions ends every SSE stream
    // and starts closing every child (stdin EOF, then SIGTERM, then SIGKILL) in the background.
    // This runs even when forced: a child whose close has started is killed when the process
    // exits, one whose session was never closed might not be.
    stop.send_replace(true);
    if let Some(cluster) = &cluster {
        cluster.leave();
    }
    tokio::join!(sessions.close_all(), legacy_sessions.close_all());
    named.close(&closing).await;
    if let Some(pool) = pool {
        let guard = closing.enter();
        tokio::spawn(async move {
            pool.close().await;
            drop(guard);
        });
    }
    let closed = !forced
        && tokio::select! {
            () = closing.idle() => true,
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(processes = closing.count(), "MCP servers still closing at the end of the grace period; killing them");
                false
            }
            signal = signals.recv() => {
                tracing::warn!(signal, "second signal: exiting now");
                false
            }
        };
    if !closed {
        // Long enough for the close tasks to take hold of their children, which are then
        // killed as the runtime drops the tasks.
        let _ = tokio::time::timeout(Duration::from_millis(100), closing.idle()).await;
        return;
    }

    tokio::select! {
        () = connections.idle() => tracing::info!("all connections closed"),
        () = tokio::time::sleep_until(deadline.max(Instant::now() + Duration::from_millis(100))) => {
            tracing::warn!("connections still open at the end of the grace period; closing them");
        }
        signal = signals.recv() => tracing::warn!(signal, "second signal: exiting now"),
    }
}

/// SIGINT and SIGTERM, receivable more than once.
pub(crate) struct Signals {
    #[cfg(unix)]
    pub(crate) interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    pub(crate) terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let register = |kind: SignalKind, name: &str| {
                signal(kind)
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot listen for {name}"))
                    .ok()
            };
            Self {
                interrupt: register(SignalKind::interrupt(), "SIGINT"),
                terminate: register(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    pub(crate) async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        if signal.recv().await.is_none() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                () = next(&mut self.interrupt) => "SIGINT",
                () = next(&mut self.terminate) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}
