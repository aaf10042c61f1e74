//! Several MCP servers in one process, and per-session child environment.
//!
//! - `--named-server NAME 'COMMAND ARGS'` and `--named-server-config FILE` (the `mcpServers`
//!   JSON of desktop clients) add stdio servers served at `/servers/NAME/mcp` (Streamable HTTP)
//!   and `/servers/NAME/sse` + `/servers/NAME/messages` (legacy HTTP+SSE), each behind a stack
//!   of its own built like the default server's (auth, CORS, Origin, limits, timeouts). The
//!   default server (`-- COMMAND` or the built-in one) stays at `/mcp`. All servers share the
//!   `--max-sessions` cap and are closed together on shutdown.
//! - `--pass-header NAME=ENV` and `--pass-claim CLAIM=ENV` set a session's child variable ENV
//!   from the header, or the claim of the authenticated principal, of the request that opens
//!   the session (removed when absent); nothing goes through a shell.

use crate::cli::Args;
use crate::config::Config;
use crate::drain::InFlight;
use crate::serve::{StackParts, StackPaths, mcp_stack};
use bytes::Bytes;
use http::header::HeaderName;
use http::{Request, Response, StatusCode};
use mcp_tower_http::Principal;
use mcp_tower_http::body::ResponseBody;
use mcp_tower_http::jsonrpc::{ErrorCode, ErrorObject};
use mcp_tower_http::session::SessionRegistry;
use mcp_tower_http::stack::StackBody;
use mcp_tower_http::stdio::{ChildEnv, StdioCommand, StdioPool};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

/// The path prefix of the named servers.
const PREFIX: &str = "/servers/";

/// A stdio server served under `/servers/NAME/`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NamedServer {
    pub(crate) name: String,
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    /// On top of `--env`.
    pub(crate) env: Vec<(String, String)>,
    /// `None`: `--cwd`, else the proxy's.
    pub(crate) cwd: Option<PathBuf>,
}

/// `--pass-header` and `--pass-claim`.
#[derive(Clone, Debug, Default)]
pub(crate) struct PassEnv {
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) claims: Vec<(String, String)>,
}

/// What the named-server and pass-env flags resolve to.
#[derive(Debug, Default)]
pub(crate) struct NamedConfig {
    pub(crate) servers: Vec<NamedServer>,
    pub(crate) pass_env: PassEnv,
}

impl NamedConfig {
    /// Checks the flags and reads the config file; errors name the flag or the file.
    pub(crate) fn resolve(args: &Args) -> Result<Self, String> {
        let mut servers = Vec::new();
        for pair in args.named_server.chunks(2) {
            let [name, line] = pair else {
                return Err("--named-server takes NAME and 'COMMAND ARGS'".to_owned());
            };
            check_name(name).map_err(|e| format!("--named-server {e}"))?;
            let words = shlex::split(line)
                .ok_or_else(|| format!("--named-server {name}: unbalanced quotes in `{line}`"))?;
            let Some((program, rest)) = words.split_first() else {
                return Err(format!("--named-server {name}: the command is empty"));
            };
            servers.push(NamedServer {
                name: name.clone(),
                program: program.clone(),
                args: rest.to_vec(),
                env: Vec::new(),
                cwd: None,
            });
        }
        if let Some(file) = &args.named_server_config {
            servers.extend(read_config(file)?);
        }
        let mut seen = std::collections::HashSet::new();
        for server in &servers {
            if !seen.insert(server.name.as_str()) {
                return Err(format!("named server `{}` is defined twice", server.name));
            }
        }
        let mut pass_env = PassEnv::default();
        for (header, var) in &args.pass_header {
            let header = HeaderName::try_from(header.as_str())
                .map_err(|_| format!("--pass-header: `{header}` is not a header name"))?;
            check_var(var).map_err(|e| format!("--pass-header {header}={var}: {e}"))?;
            pass_env.headers.push((header, var.clone()));
        }
        for (claim, var) in &args.pass_claim {
            check_var(var).map_err(|e| format!("--pass-claim {claim}={var}: {e}"))?;
            pass_env.claims.push((claim.clone(), var.clone()));
        }
        Ok(Self { servers, pass_env })
    }
}

impl NamedConfig {
    /// The combinations that cannot work.
    pub(crate) fn check(
        &self,
        no_command: bool,
        modern: bool,
        authenticated: bool,
        cluster: bool,
    ) -> Result<(), String> {
        let passing = !self.pass_env.headers.is_empty() || !self.pass_env.claims.is_empty();
        if passing && no_command {
            return Err(
                "--pass-header and --pass-claim apply to a COMMAND or a named server, and none was given"
                    .to_owned(),
            );
        }
        if passing && modern {
            return Err("--pass-header and --pass-claim need --no-modern: 2026-07-28 requests are served by pooled children shared by many requests, which cannot take one request's environment".to_owned());
        }
        if !self.pass_env.claims.is_empty() && !authenticated {
            return Err(
                "--pass-claim needs an authentication option (claims come from tokens)".to_owned(),
            );
        }
        if cluster && !self.servers.is_empty() {
            return Err("named servers are not supported with --redis yet".to_owned());
        }
        Ok(())
    }
}

/// Names: `[A-Za-z0-9_-]+`, so a name is one path segment as written.
fn check_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(format!(
            "`{name}`: a server name is letters, digits, `_` and `-` (it becomes /servers/NAME/mcp)"
        ))
    }
}

/// An environment variable name the OS can take.
fn check_var(var: &str) -> Result<(), String> {
    if var.is_empty() || var.contains(['=', '\0']) {
        Err("ENV must be a non-empty variable name without `=`".to_owned())
    } else {
        Ok(())
    }
}

/// Reads an `mcpServers` file: `{"mcpServers": {"NAME": {"command": ..., "args": [...],
/// "env": {...}, "cwd": ..., "disabled": true}}}`. Unknown fields are ignored; disabled
/// servers are skipped.
pub(crate) fn read_config(file: &Path) -> Result<Vec<NamedServer>, String> {
    let shown = file.display();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("--named-server-config {shown}: cannot read it: {e}"))?;
    parse_config(&text).map_err(|e| format!("--named-server-config {shown}: {e}"))
}

fn parse_config(text: &str) -> Result<Vec<NamedServer>, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(entries) = root.get("mcpServers") else {
        return Err("no `mcpServers` object".to_owned());
    };
    let Some(entries) = entries.as_object() else {
        return Err("`mcpServers` is not an object".to_owned());
    };
    let mut servers = Vec::new();
    for (name, entry) in entries {
        check_name(name).map_err(|e| format!("server {e}"))?;
        let Some(entry) = entry.as_object() else {
            return Err(format!("server `{name}` is not an object"));
        };
        match entry.get("disabled") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => continue,
            Some(_) => return Err(format!("server `{name}`: `disabled` is not true or false")),
        }
        let command = match entry.get("command") {
            Some(Value::String(command)) if !command.is_empty() => command.clone(),
            Some(_) => {
                return Err(format!(
                    "server `{name}`: `command` is not a non-empty string"
                ));
            }
            None if entry.contains_key("url") => {
                return Err(format!(
                    "server `{name}`: only stdio servers (`command`) can be served, not `url`"
                ));
            }
            None => return Err(format!("server `{name}`: no `command`")),
        };
        let args = match entry.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(args)) => args
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("server `{name}`: `args` holds a non-string"))?,
            Some(_) => return Err(format!("server `{name}`: `args` is not an array")),
        };
        let env = match entry.get("env") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(env)) => env
                .iter()
                .map(|(k, v)| {
                    let value = v
                        .as_str()
                        .ok_or_else(|| format!("server `{name}`: `env.{k}` is not a string"))?;
                    check_var(k).map_err(|e| format!("server `{name}`: `env.{k}`: {e}"))?;
                    if value.contains('\0') {
                        return Err(format!("server `{name}`: `env.{k}` holds a NUL"));
                    }
                    Ok((k.clone(), value.to_owned()))
                })
                .collect::<Result<Vec<_>, String>>()?,
            Some(_) => return Err(format!("server `{name}`: `env` is not an object")),
        };
        let cwd = match entry.get("cwd") {
            None | Some(Value::Null) => None,
            Some(Value::String(cwd)) => Some(PathBuf::from(cwd)),
            Some(_) => return Err(format!("server `{name}`: `cwd` is not a string")),
        };
        servers.push(NamedServer {
            name: name.clone(),
            program: command,
            args,
            env,
            cwd,
        });
    }
    Ok(servers)
}

/// The command of a named server: its own env and cwd over the proxy's `--env`/`--cwd`, and
/// the settings every stdio command gets ([`stdio_settings`]).
pub(crate) fn named_command(config: &Config, server: &NamedServer) -> StdioCommand {
    let mut command = StdioCommand::new(&server.program).args(&server.args);
    for (key, value) in config.child_env.iter().chain(&server.env) {
        command = command.env(key, value);
    }
    if let Some(cwd) = server.cwd.as_ref().or(config.cwd.as_ref()) {
        command = command.current_dir(cwd);
    }
    stdio_settings(config, command)
}

/// What every stdio command gets, the default one too: the grace period, the process cap, the
/// pool settings and `--pass-header`/`--pass-claim`.
pub(crate) fn stdio_settings(config: &Config, command: StdioCommand) -> StdioCommand {
    let command = command
        .grace_period(crate::shutdown::child_grace(
            config.graceful_shutdown_timeout,
        ))
        // One child per session: the session cap is the process cap (stateless requests, which
        // get a child each, included; 2026-07-28 requests share the pool, bounded by
        // --max-pooled).
        .max_processes(config.max_sessions);
    let command = config.pool.apply(command);
    let pass = config.named.pass_env.clone();
    if pass.headers.is_empty() && pass.claims.is_empty() {
        return command;
    }
    command.env_from_request(move |parts| pass.child_env(parts))
}

impl PassEnv {
    /// The child's variables for the request that opens a session.
    fn child_env(&self, parts: &http::request::Parts) -> Result<ChildEnv, ErrorObject> {
        let mut env = ChildEnv::new();
        for (header, var) in &self.headers {
            // Repeated headers are one list (RFC 9110 5.3); header values never hold NUL.
            let mut value: Option<Vec<u8>> = None;
            for v in parts.headers.get_all(header) {
                let joined = value.get_or_insert_with(Vec::new);
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v.as_bytes());
            }
            env.push((var.into(), value.map(os_string)));
        }
        let claims = parts
            .extensions
            .get::<Principal>()
            .map(|principal| &principal.claims);
        for (claim, var) in &self.claims {
            let value = match claims.and_then(|c| c.get(claim)) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                // Numbers, booleans, arrays and objects as their JSON text.
                Some(other) => Some(other.to_string()),
            };
            if value.as_ref().is_some_and(|v| v.contains('\0')) {
                return Err(ErrorObject::new(
                    ErrorCode::INVALID_REQUEST,
                    format!("the token's `{claim}` claim holds a NUL character"),
                ));
            }
            env.push((var.into(), value.map(OsString::from)));
        }
        Ok(env)
    }
}

#[cfg(unix)]
fn os_string(bytes: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes)
}

#[cfg(not(unix))]
fn os_string(bytes: Vec<u8>) -> OsString {
    String::from_utf8_lossy(&bytes).into_owned().into()
}

/// The named servers' sessions and pools, closed on shutdown with the default server's.
#[derive(Default)]
pub(crate) struct NamedTeardown {
    sessions: Vec<Arc<SessionRegistry>>,
    pools: Vec<StdioPool>,
}

impl NamedTeardown {
    /// The live sessions of every named server.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.iter().map(|s| s.len()).sum()
    }

    /// Closes every session (their children close in the background, counted in `closing`)
    /// and every pool.
    pub(crate) async fn close(self, closing: &InFlight) {
        // Each close_all only starts the closes (they run in the background).
        for sessions in &self.sessions {
            sessions.close_all().await;
        }
        for pool in self.pools {
            let guard = closing.enter();
            tokio::spawn(async move {
                pool.close().await;
                drop(guard);
            });
        }
    }
}

/// Builds the named servers' stacks and puts them beside `default`; a no-op without named
/// servers but for the `/servers/` prefix check.
pub(crate) fn mount<D>(
    config: &Config,
    parts: &StackParts,
    default: D,
    base: &str,
) -> (Dispatch<D, NamedService>, NamedTeardown) {
    let mut named = HashMap::new();
    let mut teardown = NamedTeardown::default();
    for server in &config.named.servers {
        let command = named_command(config, server);
        tracing::info!(
            name = %server.name,
            command = %command.display(),
            "serving a named stdio MCP server at {base}/servers/{}/mcp",
            server.name
        );
        teardown.pools.push(command.pool());
        let paths = StackPaths {
            stream: format!("{PREFIX}{}/mcp", server.name),
            sse: format!("{PREFIX}{}/sse", server.name),
            messages: format!("{PREFIX}{}/messages", server.name),
        };
        let service = mcp_stack(config, parts, command, &paths);
        teardown.sessions.push(service.sessions().clone());
        teardown.sessions.push(service.legacy_sessions().clone());
        named.insert(Box::from(server.name.as_str()), service);
    }
    (
        Dispatch {
            default,
            named: Arc::new(named),
        },
        teardown,
    )
}

/// The stack of a named server.
pub(crate) type NamedService = crate::serve::McpService<StdioCommand>;

/// Routes `/servers/NAME/...` to server NAME's stack (404 for an unknown NAME), anything else
/// to the default server's.
#[derive(Clone)]
pub(crate) struct Dispatch<D, N> {
    default: D,
    named: Arc<HashMap<Box<str>, N>>,
}

/// The server name of a `/servers/NAME/...` path.
fn server_name(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(PREFIX)?;
    Some(rest.split_once('/').map_or(rest, |(name, _)| name))
}

impl<D, N, B> Service<Request<B>> for Dispatch<D, N>
where
    D: Service<Request<B>, Response = Response<StackBody>, Error = Infallible>,
    N: Service<Request<B>, Response = Response<StackBody>, Error = Infallible> + Clone,
{
    type Response = Response<StackBody>;
    type Error = Infallible;
    type Future = DispatchFuture<D::Future, Oneshot<N, Request<B>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.default.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Without named servers, `/servers/...` is the default server's (it answers 404).
        let kind = match server_name(req.uri().path()).filter(|_| !self.named.is_empty()) {
            None => Kind::Default {
                future: self.default.call(req),
            },
            Some(name) => match self.named.get(name) {
                Some(server) => Kind::Named {
                    future: server.clone().oneshot(req),
                },
                None => Kind::NotFound,
            },
        };
        DispatchFuture { kind }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Dispatch`].
    pub(crate) struct DispatchFuture<D, N> {
        #[pin]
        kind: Kind<D, N>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<D, N> {
        Default { #[pin] future: D },
        Named { #[pin] future: N },
        NotFound,
    }
}

impl<D, N> Future for DispatchFuture<D, N>
where
    D: Future<Output = Result<Response<StackBody>, Infallible>>,
    N: Future<Output = Result<Response<StackBody>, Infallible>>,
{
    type Output = Result<Response<StackBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Default { future } => future.poll(cx),
            KindProj::Named { future } => future.poll(cx),
            KindProj::NotFound => {
                let mut response = Response::new(ResponseBody::full(Bytes::new()));
                *response.status_mut() = StatusCode::NOT_FOUND;
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_one_path_segment() {
        assert_eq!(server_name("/servers/a-1/mcp"), Some("a-1"));
        assert_eq!(server_name("/servers/a"), Some("a"));
        assert_eq!(server_name("/mcp"), None);
        assert_eq!(server_name("/serversx/a/mcp"), None);
        assert!(check_name("Good_name-2").is_ok());
        for bad in ["", "a/b", "a b", "ä", "a.b", ".."] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_file_reads_desktop_format() {
        let servers = parse_config(
            r#"{"mcpServers": {
                "one": {"command": "python3", "args": ["-u", "x.py"], "env": {"A": "1"},
                        "cwd": "/tmp", "type": "stdio", "unknown": [1]},
                "off": {"command": "nope", "disabled": true},
                "offbroken": {"disabled": true}
            }, "globalShortcut": "x"}"#,
        )
        .unwrap();
        assert_eq!(
            servers,
            vec![NamedServer {
                name: "one".into(),
                program: "python3".into(),
                args: vec!["-u".into(), "x.py".into()],
                env: vec![("A".into(), "1".into())],
                cwd: Some("/tmp".into()),
            }]
        );
    }

    #[test]
    fn config_file_errors_name_the_problem() {
        for (text, expect) in [
            ("{", "not valid JSON"),
            ("[]", "no `mcpServers`"),
            (r#"{"mcpServers": []}"#, "not an object"),
            (r#"{"mcpServers": {"a": {}}}"#, "server `a`: no `command`"),
            (r#"{"mcpServers": {"a": {"url": "http://x"}}}"#, "not `url`"),
            (r#"{"mcpServers": {"a": {"command": ""}}}"#, "`command`"),
            (r#"{"mcpServers": {"a b": {"command": "x"}}}"#, "`a b`"),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": [1]}}}"#,
                "`args`",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}"#,
                "`env.K`",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "disabled": "yes"}}}"#,
                "`disabled`",
            ),
        ] {
            let error = parse_config(text).unwrap_err();
            assert!(error.contains(expect), "{text}: {error}");
        }
    }

    #[test]
    fn pass_env_takes_only_named_headers_and_claims() {
        let pass = PassEnv {
            headers: vec![(HeaderName::from_static("x-tenant"), "TENANT".into())],
            claims: vec![
                ("org".into(), "ORG".into()),
                ("n".into(), "N".into()),
                ("gone".into(), "GONE".into()),
            ],
        };
        let mut request = Request::builder()
            .header("x-tenant", "acme")
            .header("x-tenant", "beta")
            .header("x-other", "secret")
            .body(())
            .unwrap();
        let mut principal = Principal::new("alice");
        principal.claims = serde_json::json!({"org": "o1", "n": 5});
        request.extensions_mut().insert(principal);
        let (parts, ()) = request.into_parts();
        let env = pass.child_env(&parts).unwrap();
        assert_eq!(
            env,
            vec![
                ("TENANT".into(), Some("acme, beta".into())),
                ("ORG".into(), Some("o1".into())),
                ("N".into(), Some("5".into())),
                ("GONE".into(), None),
            ]
        );
        let mut principal = Principal::new("eve");
        principal.claims = serde_json::json!({"org": "a\u{0}b"});
        let mut request = Request::new(());
        request.extensions_mut().insert(principal);
        let (parts, ()) = request.into_parts();
        assert!(pass.child_env(&parts).is_err());
    }
}
