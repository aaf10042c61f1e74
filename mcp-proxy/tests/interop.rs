//! Interop tests: the real `mcp-proxy` binary driven by the official MCP client SDKs
//! (TypeScript `@modelcontextprotocol/sdk` and Python `mcp`, versions pinned in `tests/interop/`).
//!
//! Each test starts the binary on `127.0.0.1` with `--port 0`, reads the `listening on http://HOST:PORT`
//! line it prints, runs one client script against `http://HOST:PORT/mcp` and checks what it printed.
//!
//! The clients are installed by `.ci/run` (`npm ci` into `tests/interop/node_modules`, a venv at
//! `tests/interop/.venv`). Without them the tests print a skip line and pass, except under CI
//! (`CI` set), where a missing install is a failure.

mod support;

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;
use support::Proxy;

/// How long one client run may take (a run normally takes well under 2 s).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// `true` if the client is installed; otherwise panics: these tests are `#[ignore]`d and run
/// only when asked for (`bash .ci/run` installs the clients, then runs them).
fn client_installed(what: &str, marker: &Path) -> bool {
    assert!(
        marker.exists(),
        "{what} is not installed ({} is missing): run `bash .ci/run`, which installs the interop \
         clients and runs the ignored tests",
        marker.display()
    );
    true
}

struct ClientRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a client to completion (killed after `CLIENT_TIMEOUT`), capturing its output.
fn run_client(cmd: Command, server: &Proxy) -> ClientRun {
    let label = format!("{cmd:?}");
    let run = support::run_client(cmd, &support::interop_dir(), CLIENT_TIMEOUT);
    let Some(status) = run.status else {
        panic!(
            "client {label} did not finish within {CLIENT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}\nserver:\n{}",
            run.stdout,
            run.stderr,
            server.log()
        );
    };
    ClientRun {
        status,
        stdout: run.stdout,
        stderr: run.stderr,
    }
}

fn client_failed(label: &str, why: &str, run: &ClientRun, server: &Proxy) -> ! {
    panic!(
        "{label}: {why}\nexit: {}\nclient stdout:\n{}\nclient stderr:\n{}\nserver output:\n{}",
        run.status,
        run.stdout,
        run.stderr,
        server.log()
    )
}

/// The checks shared by every client: exit 0, tools listed, `echo` and `add` answered.
fn assert_client_ok(label: &str, run: &ClientRun, server: &Proxy) {
    let fail = |why: &str| client_failed(label, why, run, server);
    if !run.status.success() {
        fail("client failed");
    }
    let Some(tools) = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("tools:"))
        .map(|t| t.trim().split(',').map(str::to_owned).collect::<Vec<_>>())
    else {
        client_failed(label, "no `tools:` line", run, server);
    };
    for tool in ["echo", "add"] {
        if !tools.iter().any(|t| t == tool) {
            fail(&format!("tool `{tool}` not listed (tools: {tools:?})"));
        }
    }
    for expected in ["echo -> hello interop", "add -> 5"] {
        if !run.stdout.contains(expected) {
            fail(&format!("missing `{expected}`"));
        }
    }
    if run.stdout.contains("isError: true") {
        fail("a tool call returned isError: true");
    }
    println!("{label} ok against {}:\n{}", server.url(), run.stdout);
}

/// The client's URL and transport argument: Streamable HTTP at `/mcp`, legacy SSE at `/sse`.
fn target(server: &Proxy, transport: &str) -> String {
    match transport {
        "sse" => format!("{}/sse", server.url().trim_end_matches("/mcp")),
        _ => server.url().clone(),
    }
}

fn ts_client(label: &str, server_args: &[&str]) {
    ts_client_over(label, server_args, "streamable");
}

fn ts_client_over(label: &str, server_args: &[&str], transport: &str) {
    let dir = support::interop_dir();
    let sdk = dir.join("node_modules/@modelcontextprotocol/sdk/package.json");
    if !client_installed("the TypeScript SDK client", &sdk) {
        return;
    }
    let server = Proxy::builtin(server_args);
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("ts-client.mjs"))
        .arg(target(&server, transport))
        .arg(transport);
    let run = run_client(cmd, &server);
    assert_client_ok(label, &run, &server);
}

fn python_client(label: &str, server_args: &[&str]) {
    python_client_over(label, server_args, "streamable");
}

fn python_client_over(label: &str, server_args: &[&str], transport: &str) {
    let dir = support::interop_dir();
    let python = dir.join(".venv/bin/python");
    if !client_installed("the Python `mcp` client (venv)", &python) {
        return;
    }
    let server = Proxy::builtin(server_args);
    let mut cmd = Command::new(&python);
    cmd.arg(dir.join("py_client.py"))
        .arg(target(&server, transport))
        .arg(transport)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_client(cmd, &server);
    assert_client_ok(label, &run, &server);
}

#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn ts_sdk_client_streamable_http() {
    ts_client("ts_sdk_client_streamable_http", &[]);
}

#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn python_client_streamable_http() {
    python_client("python_client_streamable_http", &[]);
}

#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn ts_sdk_client_json_response() {
    ts_client("ts_sdk_client_json_response", &["--json-response"]);
}

#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn python_client_json_response() {
    python_client("python_client_json_response", &["--json-response"]);
}

#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn ts_sdk_client_stateless() {
    ts_client("ts_sdk_client_stateless", &["--stateless"]);
}

#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn ts_sdk_client_legacy_sse() {
    ts_client_over("ts_sdk_client_legacy_sse", &[], "sse");
}

#[test]
#[ignore = "needs the Node/Python MCP clients: `bash .ci/run` installs them and runs ignored tests"]
fn python_client_legacy_sse() {
    python_client_over("python_client_legacy_sse", &[], "sse");
}
