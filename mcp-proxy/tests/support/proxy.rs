//! The `mcp-proxy` binary as a child process of a test, on a free loopback port; and the
//! TypeScript SDK's demo authorization server for the OAuth tests.

use super::process::{Proc, Process, children_of, is_running, signal};
use super::{interop_dir, repo_dir, wait_until};
use std::ffi::OsStr;
use std::process::{Command, ExitStatus};
use std::time::Duration;

const LISTENING: &str = "listening on http://";
const LISTENING_TLS: &str = "listening on https://";

/// The `mcp-proxy` binary on a free loopback port. On drop it and every child it still has are
/// killed (by pid) and reaped.
pub struct Proxy {
    process: Process,
    pub pid: u32,
    /// `http://HOST:PORT` (`https://` under `--ssl-cert`)
    pub base: String,
}

impl Proxy {
    /// Starts `mcp-proxy --host 127.0.0.1 --port 0 <flags> [-- <command>]` (a `--port` in
    /// `flags` wins) and waits for its `listening on http://HOST:PORT/...` line. The test's
    /// `MCP_PROXY_*` environment is removed: only the flags configure it.
    pub fn start(flags: &[&str], command: &[impl AsRef<OsStr>]) -> Proxy {
        Self::start_with_env(flags, command, &[])
    }

    /// [`Proxy::start`] with these environment variables set (the test's `OTEL_*` are removed
    /// too).
    pub fn start_with_env(
        flags: &[&str],
        command: &[impl AsRef<OsStr>],
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-proxy"));
        for (var, _) in std::env::vars_os() {
            if var
                .to_str()
                .is_some_and(|v| v.starts_with("MCP_PROXY_") || v.starts_with("OTEL_"))
            {
                cmd.env_remove(var);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.args(["--host", "127.0.0.1"]);
        if !flags.contains(&"--port") {
            cmd.args(["--port", "0"]);
        }
        cmd.args(flags);
        if !command.is_empty() {
            cmd.arg("--").args(command);
        }
        // The listening line is logged at `info`, whatever the environment says.
        cmd.current_dir(repo_dir()).env("RUST_LOG", "info");
        let process = Process::spawn("mcp-proxy", cmd);
        let base = process.wait_for("a `listening on http(s)://HOST:PORT` line", parse_listening);
        Proxy {
            pid: process.pid,
            process,
            base,
        }
    }

    /// [`Proxy::start`] serving the built-in server.
    pub fn builtin(flags: &[&str]) -> Proxy {
        Self::start(flags, &[] as &[&str])
    }

    /// `http://HOST:PORT/mcp`
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// What the proxy printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The proxy's child processes (zombies included).
    pub fn children(&self) -> Vec<Proc> {
        children_of(self.pid)
    }

    /// The proxy's children that are running (not zombies).
    pub fn live_children(&self) -> Vec<Proc> {
        self.children()
            .into_iter()
            .filter(|p| p.state != 'Z')
            .collect()
    }

    /// Sends SIGTERM to the proxy.
    pub fn sigterm(&self) {
        signal(self.pid, "TERM");
    }

    /// The exit status once the proxy has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.process.try_exit()
    }

    /// Waits up to `limit` for the proxy to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let _ = wait_until(limit, || self.try_exit().is_some()).await;
        self.try_exit()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Read before the proxy goes: children that outlive a killed proxy (its kill_on_drop
        // never ran) are ours to end.
        let children = self.children();
        if self.try_exit().is_none() {
            signal(self.pid, "KILL");
        }
        for child in children.iter().filter(|c| is_running(c)) {
            signal(child.pid, "KILL");
        }
    }
}

/// `... listening on http://127.0.0.1:41234/mcp ...` → `http://127.0.0.1:41234` (and the same
/// for `https://`).
pub fn parse_listening(line: &str) -> Option<String> {
    if let Some(at) = line.find(LISTENING_TLS) {
        let plain = format!("listening on http://{}", &line[at + LISTENING_TLS.len()..]);
        return parse_listening(&plain).map(|url| url.replacen("http://", "https://", 1));
    }
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    let authority: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-'))
        .collect();
    let port = authority.rsplit_once(':')?.1;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("http://{authority}"))
}

#[test]
fn parse_listening_line() {
    assert_eq!(
        parse_listening("mcp-proxy listening on http://127.0.0.1:4321/mcp").as_deref(),
        Some("http://127.0.0.1:4321")
    );
    assert_eq!(
        parse_listening("INFO listening on http://[::1]:80, ok").as_deref(),
        Some("http://[::1]:80")
    );
    assert_eq!(parse_listening("listening on http://localhost/mcp"), None);
    assert_eq!(parse_listening("starting"), None);
    assert_eq!(
        parse_listening("mcp-proxy listening on https://127.0.0.1:4321/mcp").as_deref(),
        Some("https://127.0.0.1:4321")
    );
}

/// The TypeScript SDK demo authorization server (`tests/interop/demo-as.mjs`).
pub struct DemoAs {
    process: Process,
    /// Its issuer URL, `http://127.0.0.1:PORT/`.
    pub issuer: String,
}

impl DemoAs {
    /// Starts it for the MCP server `resource`.
    pub fn start(resource: &str) -> Self {
        let dir = interop_dir();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("demo-as.mjs"))
            .arg(resource)
            .current_dir(&dir);
        let process = Process::spawn("demo-as", cmd);
        let issuer = process.wait_for("its `demo-as listening on` line", |line| {
            line.strip_prefix("demo-as listening on ")
                .map(|url| url.trim().to_owned())
        });
        Self { process, issuer }
    }

    /// Everything it printed so far (it logs every request on stderr).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `http://127.0.0.1:PORT/introspect`
    pub fn introspection_url(&self) -> String {
        format!("{}introspect", self.issuer)
    }
}
