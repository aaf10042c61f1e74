//! The README's one-tool server, run as a newcomer would: `examples/hello.rs` (which must equal
//! the README's code block byte for byte) in a child process on a free port, then listed and
//! called over HTTP — by plain requests here, and (ignored tests: they need external programs,
//! installed by `.ci/run`) by the MCP Inspector CLI and the TypeScript and Python SDK clients.
//!
//! The child is this test binary itself, re-run with `MCP_TOWER_HTTP_HELLO_CHILD` set: the
//! `hello_answers_over_http` test then runs the example's `main` (included below, so it is always
//! the current source) with `PORT=0`, and prints the URL it listens on.

mod common;

use common::{ACCEPT_BOTH, JSON, initialize, one_message, post, request_body, session_headers};
use http::StatusCode;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `examples/hello.rs`, compiled into this test.
mod hello {
    include!("../examples/hello.rs");

    pub(super) fn run() -> std::io::Result<()> {
        main()
    }
}

/// Set in the child that serves the example.
const CHILD: &str = "MCP_TOWER_HTTP_HELLO_CHILD";

/// How long the example may take to start, and a client to finish.
const DEADLINE: Duration = Duration::from_secs(60);

/// The example serving on a free port, killed on drop.
struct Hello {
    child: Child,
    url: String,
}

impl Hello {
    fn start() -> Hello {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut child = Command::new(exe)
            .args(["--exact", "hello_answers_over_http", "--nocapture"])
            .env(CHILD, "1")
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Keeps reading, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(DEADLINE)
            .expect("the example prints `listening on http://...`");
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Hello { child, url }
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn readme_block_starting_with(first_line: &str) -> String {
    let readme = include_str!("../README.md");
    let mut blocks = readme.split("\n```rust\n").skip(1);
    let block = blocks
        .find(|b| b.starts_with(first_line))
        .unwrap_or_else(|| panic!("no ```rust block in README.md starts with {first_line:?}"));
    let end = block.find("\n```\n").expect("the block ends");
    format!("{}\n", &block[..end])
}

#[test]
fn readme_shows_the_examples_as_they_are() {
    for example in [
        include_str!("../examples/hello.rs"),
        include_str!("../examples/axum.rs"),
    ] {
        let first_line = example.lines().next().expect("not empty");
        assert_eq!(
            readme_block_starting_with(first_line),
            example,
            "README.md and examples/ differ"
        );
    }
}

#[test]
fn hello_answers_over_http() {
    if std::env::var_os(CHILD).is_some() {
        // The child: serve until killed.
        hello::run().expect("the example serves");
        return;
    }
    let hello = Hello::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let url = hello.url.as_str();
        let version = "2025-11-25";
        let session = initialize(url, version).await;
        let headers = session_headers(Some(&session), version);

        let (status, h, body) =
            post(url, &headers, &request_body(2, "tools/list", json!({}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let tools = &one_message(&h, &body)["result"]["tools"];
        assert_eq!(tools.as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(tools[0]["name"], "add");
        assert_eq!(tools[0]["inputSchema"]["required"], json!(["a", "b"]));

        let call = json!({ "name": "add", "arguments": { "a": 2, "b": 3 } });
        let (status, h, body) = post(url, &headers, &request_body(3, "tools/call", call)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            one_message(&h, &body)["result"],
            json!({ "content": [{ "type": "text", "text": "5" }] })
        );

        // Arguments that do not fit the handler's type: a tool error the model can read.
        let call = json!({ "name": "add", "arguments": { "a": "two", "b": 3 } });
        let (_, h, body) = post(url, &headers, &request_body(4, "tools/call", call)).await;
        assert_eq!(one_message(&h, &body)["result"]["isError"], true, "{body}");

        // A 2026-07-28 client: `server/discover` is built from the server's `initialize`.
        let discover = json!({
            "jsonrpc": "2.0", "id": 5, "method": "server/discover",
            "params": { "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }},
        });
        let modern = [
            ACCEPT_BOTH,
            JSON,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ];
        let (status, h, body) = post(url, &modern, &discover.to_string()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let result = &one_message(&h, &body)["result"];
        assert_eq!(result["capabilities"]["tools"], json!({}), "{body}");
        assert!(
            result["supportedVersions"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("2026-07-28"))),
            "{body}"
        );
    });
}

// --- external clients ------------------------------------------------------------------------

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Fails (these tests are ignored unless asked for) when a client is not installed.
fn require(what: &str, path: &Path) {
    assert!(
        path.exists(),
        "{what} is not installed ({} is missing): run `bash .ci/run`",
        path.display()
    );
}

/// Runs a client to completion (killed after [`DEADLINE`]); returns its status and output.
fn run_client(mut cmd: Command) -> (ExitStatus, String, String) {
    let label = format!("{cmd:?}");
    let mut child = cmd
        .current_dir(interop_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    // Read on threads, so a chatty client never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{label} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = |t: std::thread::JoinHandle<String>| t.join().unwrap_or_default();
    (status, text(stdout), text(stderr))
}

/// A client's output: exit 0, `add` listed, `add -> 5` without `isError: true`.
fn assert_lists_and_calls(label: &str, (status, stdout, stderr): (ExitStatus, String, String)) {
    let context = format!("{label}: exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(status.success(), "{context}");
    assert!(stdout.lines().any(|l| l == "tools: add"), "{context}");
    assert!(stdout.contains("add -> 5 isError: false"), "{context}");
}

/// Node 22.19 or newer (the Inspector needs it): the one installed with the conformance suite,
/// else `node` from the PATH.
fn node_22() -> PathBuf {
    let bundled =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/node_modules/node/bin/node");
    if bundled.exists() {
        bundled
    } else {
        PathBuf::from("node")
    }
}

#[test]
#[ignore = "needs the MCP Inspector (tests/interop, installed by `bash .ci/run`)"]
fn inspector_cli_lists_and_calls_the_tool() {
    let launcher = interop_dir()
        .join("node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    require("the MCP Inspector", &launcher);
    let hello = Hello::start();
    let inspector = |args: &[&str]| {
        let mut cmd = Command::new(node_22());
        cmd.arg(&launcher)
            .args(["--cli", &hello.url, "--transport", "http"])
            .args(args);
        let (status, stdout, stderr) = run_client(cmd);
        assert!(
            status.success(),
            "inspector {args:?}: exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        serde_json::from_str::<Value>(&stdout)
            .unwrap_or_else(|e| panic!("inspector {args:?} printed no JSON ({e}):\n{stdout}"))
    };
    let listed = inspector(&["--method", "tools/list"]);
    assert_eq!(listed["tools"][0]["name"], "add", "{listed}");
    assert_eq!(
        listed["tools"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    let called = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "add",
        "--tool-arg",
        "a=2",
        "--tool-arg",
        "b=3",
    ]);
    assert_eq!(
        called,
        json!({ "content": [{ "type": "text", "text": "5" }] })
    );
}

#[test]
#[ignore = "needs the TypeScript MCP SDK (tests/interop, installed by `bash .ci/run`)"]
fn typescript_client_lists_and_calls_the_tool() {
    let dir = interop_dir();
    require(
        "the TypeScript SDK client",
        &dir.join("node_modules/@modelcontextprotocol/sdk/package.json"),
    );
    let hello = Hello::start();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("hello-client.mjs")).arg(&hello.url);
    assert_lists_and_calls("TypeScript SDK", run_client(cmd));
}

#[test]
#[ignore = "needs the Python `mcp` client (tests/interop/.venv, installed by `bash .ci/run`)"]
fn python_client_lists_and_calls_the_tool() {
    let dir = interop_dir();
    let python = dir.join(".venv/bin/python");
    require("the Python `mcp` client", &python);
    let hello = Hello::start();
    let mut cmd = Command::new(python);
    cmd.arg(dir.join("hello_client.py")).arg(&hello.url);
    assert_lists_and_calls("Python SDK", run_client(cmd));
}
