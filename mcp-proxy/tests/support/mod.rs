//! The one support tree of the tests that drive the `mcp-proxy` binary: the binary on a loopback
//! port ([`proxy`]), other child processes and `/proc` ([`process`]), external client scripts
//! ([`client`]), a small hyper client ([`exchange`]) and one SSE parser ([`sse`]), JWTs and an
//! introspection endpoint for the auth flags ([`auth`]); several instances sharing `redis-server`
//! behind nginx ([`cluster`]); the conformance suite's runner ([`conformance`]).
//!
//! Every wait is bounded: a test that goes wrong fails, it never hangs. Every process a test
//! starts (the proxy, its children, a client) is killed by pid when its guard drops.
//!
//! The external clients are installed at the repository root (`tests/interop`,
//! `tests/conformance`), shared with the library's tests.
#![allow(dead_code, unused_imports)]

#[path = "../../../tests/auth_support/mod.rs"]
pub mod auth;
pub mod client;
pub mod cluster;
pub mod conformance;
pub mod exchange;
pub mod process;
pub mod proxy;
pub mod sse;

pub use self::client::{ClientRun, run_client, run_node};
pub use self::cluster::{Access, Cluster, Nginx, RedisServer, Resp, cluster_programs_installed};
pub use self::exchange::*;
pub use self::process::*;
pub use self::proxy::{DemoAs, Proxy, parse_listening};
pub use self::sse::{EventStream, SseEvent, sse_events, sse_messages};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long the binary (or another server) may take to print its ready line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one client script run may take (a run normally takes a few seconds).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound on one HTTP exchange (an `initialize` waits for the child to start).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The proxy's default grace period between closing a child's stdin, SIGTERM and SIGKILL.
pub const CHILD_GRACE: Duration = Duration::from_secs(5);
/// The protocol revision the raw requests use.
pub const VERSION: &str = "2025-06-18";

/// The repository (workspace) root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("mcp-proxy/ is inside the repository")
        .to_path_buf()
}

/// `tests/interop` at the repository root: the client scripts and their installs.
pub fn interop_dir() -> PathBuf {
    repo_dir().join("tests").join("interop")
}

/// `tests/conformance` at the repository root: the official conformance suite's install.
pub fn conformance_dir() -> PathBuf {
    repo_dir().join("tests").join("conformance")
}

/// This package's `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// `true` under CI, where a missing external client or program is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// `true` if `marker` exists; otherwise panics: the tests that need it are `#[ignore]`d and run
/// only when asked for (`bash .ci/run` installs the clients, then runs them).
pub fn installed(what: &str, marker: &Path) -> bool {
    assert!(
        marker.exists(),
        "{what} is not installed ({} is missing): run `bash .ci/run`, which installs the interop \
         clients and runs the ignored tests",
        marker.display()
    );
    true
}

/// `true` when the TypeScript SDK is installed in `tests/interop`; see [`installed`].
pub fn ts_sdk_installed() -> bool {
    installed(
        "the TypeScript SDK",
        &interop_dir().join("node_modules/@modelcontextprotocol/sdk/package.json"),
    )
}

/// The root's `tests/fixtures/stdio_server.py` (shared with the library's tests): answers
/// `initialize` and `tools/list`; `tools/call say` writes to stderr and answers; any other
/// `tools/call` exits the process without answering.
pub fn crashing_fixture() -> PathBuf {
    repo_dir()
        .join("tests")
        .join("fixtures")
        .join("stdio_server.py")
}

/// The entry of `@modelcontextprotocol/server-everything` (run as `node <entry> stdio`).
pub fn everything_entry() -> PathBuf {
    interop_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// The `node <server-everything> stdio` command (panics when it is not installed; see
/// [`installed`]).
pub fn everything_command() -> Option<Vec<OsString>> {
    let entry = everything_entry();
    if !installed("@modelcontextprotocol/server-everything", &entry) {
        return None;
    }
    Some(vec!["node".into(), entry.into(), "stdio".into()])
}

/// The real path of `python3` (`sys.executable`), or `None` (after a skip line; a panic under
/// CI) when it cannot run. A `python3` on `PATH` may be a wrapper script (pyenv's shim) that
/// makes every start ~10 times slower.
pub fn python() -> Option<OsString> {
    let found = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|path| !path.is_empty());
    if found.is_none() {
        if in_ci() {
            panic!("python3 is needed for the Python fixtures but CI is set");
        }
        println!("skipped: python3 is not available (needed for the Python fixtures)");
    }
    found.map(OsString::from)
}

/// The `python3 -u tests/fixtures/stdio_server.py` command, or `None` without python3.
pub fn fixture_command() -> Option<Vec<OsString>> {
    Some(vec![python()?, "-u".into(), crashing_fixture().into()])
}

/// A port that was free a moment ago on 127.0.0.1 (for a server whose URL must be known before
/// it starts).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Polls `condition` every 20 ms until it holds and returns how long that took; `Err` with the
/// time waited after `limit`.
pub async fn wait_until(
    limit: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`wait_until`] for a test thread without a runtime.
pub fn wait_until_blocking(
    limit: Duration,
    mut condition: impl FnMut() -> bool,
) -> Result<Duration, Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= limit {
            return Err(start.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
}
