//! The settings resolved from the command line and environment: npm names and units,
//! precedence, defaults, authentication and TLS files.

use crate::cli::{Args, PoolArgs, Transports, nonzero};
use clap::ArgMatches;
use clap::parser::ValueSource;
use mcp_tower_http::auth::{
    ApiKeys, BoxAuthenticator, Either, IntrospectionAuthenticator, JwksSource, JwtAuthenticator,
    ProtectedResourceMetadata, ScopePolicy,
};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The settings after resolving npm names, units and precedence.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) host: IpAddr,
    pub(crate) port: u16,
    pub(crate) server: Transports,
    pub(crate) stream_endpoint: String,
    pub(crate) sse_endpoint: String,
    pub(crate) stateless: bool,
    pub(crate) modern: bool,
    pub(crate) json_response: bool,
    pub(crate) event_store: bool,
    pub(crate) event_store_max_events: usize,
    pub(crate) max_body_size: usize,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) session_idle_timeout: Option<Duration>,
    pub(crate) session_handshake_timeout: Option<Duration>,
    pub(crate) max_sessions: Option<usize>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) connection_timeout: Option<Duration>,
    pub(crate) connections: ConnConfig,
    pub(crate) graceful_shutdown_timeout: Duration,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) cors_allow_headers: Vec<String>,
    pub(crate) auth: AuthConfig,
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) child_env: Vec<(String, String)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) shell: bool,
    pub(crate) pool: PoolArgs,
    pub(crate) command: Vec<String>,
    pub(crate) log_filter: LogFilter,
    pub(crate) cluster: Option<ClusterArgs>,
    /// `--named-server`, `--named-server-config`, `--pass-header`, `--pass-claim`.
    pub(crate) named: crate::named::NamedConfig,
    pub(crate) traces: crate::traces::TraceArgs,
    /// `--metrics-host/--metrics-port`: where `/metrics` is served, when it is.
    pub(crate) metrics: Option<SocketAddr>,
    /// Per-caller limits.
    pub(crate) limits: crate::limits::LimitArgs,
}

/// `--redis` and its companions.
#[derive(Clone)]
pub(crate) struct ClusterArgs {
    pub(crate) redis_url: String,
    pub(crate) secret: String,
    /// `None`: the address the listener is bound to.
    pub(crate) address: Option<String>,
}

impl std::fmt::Debug for ClusterArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password and the secret is one.
        f.debug_struct("ClusterArgs")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// The connection flags; see "Connections" in the module docs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnConfig {
    pub(crate) header_read_timeout: Option<Duration>,
    pub(crate) keep_alive_timeout: Option<Duration>,
    pub(crate) max_header_size: u32,
    pub(crate) max_connections: Option<usize>,
    pub(crate) http2_keep_alive_interval: Option<Duration>,
    pub(crate) http2_keep_alive_timeout: Duration,
}

/// Where the log filter comes from.
#[derive(Debug)]
pub(crate) enum LogFilter {
    /// `--log-level`, or `debug` for `--debug`.
    Given(String),
    /// `RUST_LOG`, else `info`.
    Environment,
}

/// The session cap with the built-in server: an idle session is ~0.5 KB of state, ~2 KB of RSS.
pub(crate) const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// The session cap with a COMMAND: each session is a child process.
pub(crate) const DEFAULT_MAX_SESSIONS_COMMAND: usize = 100;
/// The connection cap when the open-file limit is high (or unknown).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// What `--debug` logs.
pub(crate) const DEBUG_FILTER: &str = "mcp_proxy=debug,mcp_tower_http=debug,info";

/// The default connection cap: 10,000, or half the open-file limit, leaving the other half for
/// child pipes, the listener and files.
pub(crate) fn default_max_connections() -> usize {
    open_file_limit().map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
        usize::try_from(limit / 2)
            .unwrap_or(usize::MAX)
            .clamp(1, DEFAULT_MAX_CONNECTIONS)
    })
}

/// The soft `RLIMIT_NOFILE`, if there is one.
#[cfg(unix)]
#[allow(unsafe_code)]
pub(crate) fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the one `rlimit` it is given a pointer to.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    #[allow(clippy::useless_conversion)] // rlim_t is u64 on most targets, not all
    (read && limit.rlim_cur != libc::RLIM_INFINITY).then(|| u64::from(limit.rlim_cur))
}

#[cfg(not(unix))]
pub(crate) fn open_file_limit() -> Option<u64> {
    None
}

/// The authentication flags.
#[derive(Debug, Default)]
pub(crate) struct AuthConfig {
    pub(crate) api_keys: Vec<String>,
    pub(crate) resource: Option<String>,
    pub(crate) authorization_servers: Vec<String>,
    pub(crate) jwt_secret: Option<String>,
    pub(crate) jwks: Option<String>,
    pub(crate) introspection_url: Option<String>,
    pub(crate) required_scopes: Vec<String>,
    pub(crate) tool_scopes: Vec<(String, String)>,
}

/// What the authentication flags configure on the stack.
pub(crate) struct AuthSetup {
    pub(crate) authenticator: Option<BoxAuthenticator>,
    pub(crate) metadata: Option<ProtectedResourceMetadata>,
    pub(crate) scopes: ScopePolicy,
}

impl AuthConfig {
    /// Builds the authenticator (API keys, JWT and introspection accepted together), the
    /// protected-resource metadata and the scope policy; errors are configuration mistakes.
    pub(crate) fn build(&self) -> Result<AuthSetup, String> {
        let oauth = self.jwt_secret.is_some()
            || self.jwks.is_some()
            || self.introspection_url.is_some()
            || !self.authorization_servers.is_empty();
        if oauth && self.resource.is_none() {
            return Err("--jwt-secret, --jwks, --introspection-url and --authorization-server need --resource (the audience tokens must carry)".into());
        }
        let mut authenticators = Vec::new();
        if !self.api_keys.is_empty() {
            let keys = self
                .api_keys
                .iter()
                .filter(|k| !k.is_empty())
                .fold(ApiKeys::new(), |keys, key| keys.key(key));
            authenticators.push(BoxAuthenticator::new(keys));
        }
        if let Some(resource) = &self.resource {
            if self.jwt_secret.is_some() || self.jwks.is_some() {
                let mut jwt = JwtAuthenticator::new(resource.clone());
                if let Some(secret) = &self.jwt_secret {
                    jwt = jwt.hs256_secret(secret);
                }
                if let Some(jwks) = &self.jwks {
                    let source = if jwks.starts_with("http://") || jwks.starts_with("https://") {
                        JwksSource::url(jwks)
                    } else {
                        JwksSource::file(jwks)
                    };
                    jwt = jwt.jwks(source.map_err(|e| format!("--jwks: {e}"))?);
                }
                authenticators.push(BoxAuthenticator::new(jwt));
            }
            if let Some(url) = &self.introspection_url {
                let introspection = IntrospectionAuthenticator::new(url, resource.clone())
                    .map_err(|e| format!("--introspection-url: {e}"))?;
                authenticators.push(BoxAuthenticator::new(introspection));
            }
        }
        let authenticator = authenticators
            .into_iter()
            .reduce(|accepted, next| BoxAuthenticator::new(Either::new(accepted, next)));
        if authenticator.is_none()
            && (!self.required_scopes.is_empty() || !self.tool_scopes.is_empty())
        {
            return Err("--required-scope and --tool-scope need an authentication option".into());
        }
        let metadata = match &self.resource {
            Some(resource) => {
                let metadata = ProtectedResourceMetadata::new(resource.clone())
                    .map_err(|e| format!("--resource: {e}"))?
                    .scopes_supported(self.required_scopes.iter().cloned());
                Some(
                    self.authorization_servers
                        .iter()
                        .fold(metadata, |m, server| m.authorization_server(server.clone())),
                )
            }
            None => None,
        };
        let mut scopes = ScopePolicy::new().require(self.required_scopes.iter().cloned());
        for (tool, scope) in &self.tool_scopes {
            scopes = scopes.tool(tool.clone(), [scope.clone()]);
        }
        Ok(AuthSetup {
            authenticator,
            metadata,
            scopes,
        })
    }
}

#[derive(Debug)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) ca: Option<PathBuf>,
}

/// Picks between our option (`ours`, a duration) and the npm one (`npm`, milliseconds): the
/// one given on the command line wins over the environment, which wins over our default.
pub(crate) fn pick_duration(
    matches: &ArgMatches,
    (ours_id, ours_flag, ours): (&str, &str, Duration),
    (npm_id, npm_flag, npm): (&str, &str, Option<u64>),
) -> Result<Duration, String> {
    let Some(ms) = npm else {
        return Ok(ours);
    };
    let ours_source = matches.value_source(ours_id);
    let npm_source = matches.value_source(npm_id);
    if ours_source == npm_source {
        let how = match npm_source {
            Some(ValueSource::EnvVariable) => "environment variables",
            _ => "options",
        };
        return Err(format!(
            "--{ours_flag} (seconds) and --{npm_flag} (milliseconds) set the same thing; give only one of these {how}"
        ));
    }
    if ours_source > npm_source {
        Ok(ours)
    } else {
        Ok(Duration::from_millis(ms))
    }
}

impl Config {
    pub(crate) fn resolve(args: Args, matches: &ArgMatches) -> Result<Self, String> {
        let named = crate::named::NamedConfig::resolve(&args)?;
        let session_idle_timeout = pick_duration(
            matches,
            (
                "session_idle_timeout",
                "session-idle-timeout",
                args.session_idle_timeout,
            ),
            (
                "session_idle_timeout_ms",
                "sessionIdleTimeout",
                args.session_idle_timeout_ms,
            ),
        )?;
        let request_timeout = pick_duration(
            matches,
            ("request_timeout", "request-timeout", args.request_timeout),
            (
                "request_timeout_ms",
                "requestTimeout",
                args.request_timeout_ms,
            ),
        )?;
        let connection_timeout = pick_duration(
            matches,
            (
                "connection_timeout",
                "connection-timeout",
                args.connection_timeout,
            ),
            (
                "connection_timeout_ms",
                "connectionTimeout",
                args.connection_timeout_ms,
            ),
        )?;
        let keep_alive_timeout = pick_duration(
            matches,
            (
                "keep_alive_timeout",
                "keep-alive-timeout",
                args.keep_alive_timeout,
            ),
            (
                "keep_alive_timeout_ms",
                "keepAliveTimeout",
                args.keep_alive_timeout_ms,
            ),
        )?;
        let graceful_shutdown_timeout = pick_duration(
            matches,
            (
                "graceful_shutdown_timeout",
                "graceful-shutdown-timeout",
                args.graceful_shutdown_timeout,
            ),
            (
                "graceful_shutdown_timeout_ms",
                "gracefulShutdownTimeout",
                args.graceful_shutdown_timeout_ms,
            ),
        )?;

        // npm: --endpoint names the path of the single transport chosen with --server.
        let stream_endpoint = args
            .stream_endpoint
            .or_else(|| {
                args.endpoint
                    .clone()
                    .filter(|_| args.server != Transports::Sse)
            })
            .unwrap_or_else(|| "/mcp".to_owned());
        let sse_endpoint = args
            .sse_endpoint
            .or_else(|| args.endpoint.filter(|_| args.server == Transports::Sse))
            .unwrap_or_else(|| "/sse".to_owned());
        for (flag, path) in [
            ("--stream-endpoint", &stream_endpoint),
            ("--sse-endpoint", &sse_endpoint),
        ] {
            if !path.starts_with('/') {
                return Err(format!("{flag} must start with '/' (got `{path}`)"));
            }
        }
        if args.server == Transports::Both && stream_endpoint == sse_endpoint {
            return Err(format!(
                "the Streamable HTTP and SSE endpoints are both `{stream_endpoint}`; give them different paths or pick one with --server"
            ));
        }

        let tls = match (args.ssl_cert, args.ssl_key, args.ssl_ca) {
            (None, None, None) => None,
            (Some(cert), Some(key), ca) => Some(TlsFiles { cert, key, ca }),
            _ => return Err("TLS needs both --ssl-cert and --ssl-key".to_owned()),
        };

        let shell = args.shell.unwrap_or(false);
        let no_command = args.command.is_empty() && named.servers.is_empty();
        if no_command && (!args.child_env.is_empty() || args.cwd.is_some() || shell) {
            return Err(
                "--env, --cwd and --shell apply to a COMMAND, and none was given".to_owned(),
            );
        }
        let max_sessions = match args.max_sessions {
            None if no_command => Some(DEFAULT_MAX_SESSIONS),
            None => Some(DEFAULT_MAX_SESSIONS_COMMAND),
            Some(0) => None,
            Some(n) => Some(n),
        };
        let log_filter = match (args.log_level, args.debug) {
            (Some(filter), _) => LogFilter::Given(filter),
            (None, Some(true)) => LogFilter::Given(DEBUG_FILTER.to_owned()),
            _ => LogFilter::Environment,
        };

        if let Some(tunnel) = &args.tunnel
            && !matches!(
                tunnel.to_ascii_lowercase().as_str(),
                "" | "false" | "0" | "no" | "off" | "n" | "f"
            )
        {
            return Err(
                "--tunnel is not supported: run a tunnel (cloudflared, ngrok, ...) or a reverse proxy in front of mcp-proxy"
                    .to_owned(),
            );
        }
        let cluster = match (args.redis_url, args.cluster_secret) {
            (None, _) => {
                if args.cluster_address.is_some() {
                    return Err("--cluster-address needs --redis".to_owned());
                }
                None
            }
            (Some(_), None) => {
                return Err("--redis needs --cluster-secret (shared by every instance)".to_owned());
            }
            (Some(_), Some(secret)) if secret.is_empty() || secret.contains(['\r', '\n']) => {
                return Err("--cluster-secret must be one non-empty line".to_owned());
            }
            (Some(_), Some(_)) if args.stateless => {
                return Err("--redis shares sessions; --stateless has none".to_owned());
            }
            (Some(redis_url), Some(secret)) => {
                if args.cluster_address.is_none() && args.host.is_unspecified() {
                    return Err(format!(
                        "--host {} is not an address other instances can reach: set --cluster-address",
                        args.host
                    ));
                }
                Some(ClusterArgs {
                    redis_url,
                    secret,
                    address: args.cluster_address,
                })
            }
        };
        let modern = !args.no_modern && args.modern.unwrap_or(true);
        named.check(
            no_command,
            modern,
            !args.api_keys.is_empty() || args.resource.is_some(),
            cluster.is_some(),
        )?;
        let metrics =
            crate::ops::metrics_address(args.metrics_port, args.metrics_host, args.port, matches)?;
        Ok(Self {
            host: args.host,
            port: args.port,
            server: args.server,
            stream_endpoint,
            sse_endpoint,
            stateless: args.stateless,
            modern,
            json_response: args.json_response,
            event_store: !args.no_event_store && args.event_store.unwrap_or(true),
            event_store_max_events: args.event_store_max_events,
            max_body_size: match args.max_body_size {
                0 => usize::MAX,
                n => n,
            },
            keep_alive: nonzero(args.keep_alive),
            session_idle_timeout: nonzero(session_idle_timeout),
            session_handshake_timeout: nonzero(args.session_handshake_timeout),
            max_sessions,
            request_timeout: nonzero(request_timeout),
            connection_timeout: nonzero(connection_timeout),
            connections: ConnConfig {
                header_read_timeout: nonzero(args.header_read_timeout),
                keep_alive_timeout: nonzero(keep_alive_timeout),
                max_header_size: args.max_header_size,
                max_connections: match args.max_connections {
                    None => Some(default_max_connections()),
                    Some(0) => None,
                    Some(n) => Some(n),
                },
                http2_keep_alive_interval: nonzero(args.http2_keep_alive_interval),
                http2_keep_alive_timeout: args.http2_keep_alive_timeout,
            },
            graceful_shutdown_timeout,
            allowed_origins: args.allowed_origins,
            allowed_hosts: args.allowed_hosts,
            cors_allow_headers: args.cors_allow_headers,
            auth: AuthConfig {
                api_keys: args.api_keys,
                resource: args.resource,
                authorization_servers: args.authorization_servers,
                jwt_secret: args.jwt_secret,
                jwks: args.jwks,
                introspection_url: args.introspection_url,
                required_scopes: args.required_scopes,
                tool_scopes: args.tool_scopes,
            },
            tls,
            child_env: args.child_env,
            cwd: args.cwd,
            shell,
            pool: args.pool,
            command: args.command,
            log_filter,
            cluster,
            named,
            traces: args.traces,
            metrics,
            limits: args.limits,
        })
    }
}
