//! Helpers of `tests/auth.rs`: a local RFC 7662 introspection endpoint, JWTs, and child processes
//! (the `mcp-proxy` binary, the TypeScript SDK demo authorization server, the headless OAuth
//! client) that are killed when dropped and whose output is kept for failure messages.
#![allow(dead_code)]

use crate::common::{TestServer, serve};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------------------------

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// base64url without padding.
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for s in &sextets[..chunk.len() + 1] {
            out.push(char::from(ALPHABET[*s as usize]));
        }
    }
    out
}

/// A JWT of `claims` signed with `alg` (an HMAC algorithm) and `secret`.
pub fn jwt_with(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("encode a JWT")
}

/// A JWT of `claims`, HS256 with `secret`.
pub fn jwt(secret: &[u8], claims: &Value) -> String {
    jwt_with(Algorithm::HS256, secret, claims)
}

/// An unsigned token: header `header`, payload `claims`, empty signature.
pub fn unsigned_jwt(header: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64url(header.as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// `token` with its payload replaced by `claims` (the signature of the original kept).
pub fn tampered_jwt(token: &str, claims: &Value) -> String {
    let mut parts = token.split('.');
    let (header, _, signature) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    format!(
        "{header}.{}.{signature}",
        b64url(claims.to_string().as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// A local RFC 7662 introspection endpoint
// ---------------------------------------------------------------------------------------------

/// One request the introspection endpoint received.
#[derive(Clone, Debug)]
pub struct Introspected {
    /// The `token` form field, decoded.
    pub token: String,
    /// The raw form body.
    pub body: String,
    /// `Content-Type`.
    pub content_type: String,
    /// `Accept`.
    pub accept: String,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
}

/// An introspection endpoint on `127.0.0.1:<free port>` answering with a function of the token;
/// stops when dropped.
pub struct IntrospectionServer {
    server: TestServer,
    /// `http://127.0.0.1:PORT/introspect`
    pub url: String,
    requests: Arc<Mutex<Vec<Introspected>>>,
}

/// Decodes an `application/x-www-form-urlencoded` value.
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

impl IntrospectionServer {
    /// Serves `POST /introspect`; `answer(token)` gives the status and JSON body.
    pub async fn start<F>(answer: F) -> Self
    where
        F: Fn(&str) -> (StatusCode, Value) + Send + Sync + 'static,
    {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let answer = Arc::new(answer);
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let recorded = recorded.clone();
            let answer = answer.clone();
            async move {
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let content_type = header("content-type").unwrap_or_default();
                let accept = header("accept").unwrap_or_default();
                let authorization = header("authorization");
                let path_ok =
                    req.method() == http::Method::POST && req.uri().path() == "/introspect";
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(&body).into_owned();
                let (status, json) = if path_ok {
                    let token = form_field(&body, "token").unwrap_or_default();
                    recorded.lock().unwrap().push(Introspected {
                        token: token.clone(),
                        body: body.clone(),
                        content_type,
                        accept,
                        authorization,
                    });
                    answer(&token)
                } else {
                    (StatusCode::NOT_FOUND, Value::Null)
                };
                let mut response = Response::new(Full::new(Bytes::from(json.to_string())));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(response)
            }
        });
        let server = serve(service).await;
        let url = format!("{}/introspect", server.base);
        Self {
            server,
            url,
            requests,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Introspected> {
        self.requests.lock().unwrap().clone()
    }

    /// How many times `token` was introspected.
    pub fn hits(&self, token: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.token == token)
            .count()
    }

    /// Hits per token.
    pub fn all_hits(&self) -> HashMap<String, usize> {
        let mut hits = HashMap::new();
        for r in self.requests.lock().unwrap().iter() {
            *hits.entry(r.token.clone()).or_insert(0) += 1;
        }
        hits
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// How long a child may take to print its ready line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one Node client run may take (normally about a second).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// `tests/interop`, where the Node scripts and their `node_modules` live.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// `true` when the TypeScript SDK is installed; otherwise panics: the tests that need it are
/// `#[ignore]`d and run only when asked for (`bash .ci/run` installs it, then runs them).
pub fn ts_sdk_installed() -> bool {
    let marker = interop_dir().join("node_modules/@modelcontextprotocol/sdk/package.json");
    assert!(
        marker.exists(),
        "the TypeScript SDK is not installed ({} is missing): run `bash .ci/run`, which installs \
         the interop clients and runs the ignored tests",
        marker.display()
    );
    true
}

/// A port that was free a moment ago on 127.0.0.1 (for a server whose URL must be known before
/// it starts).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Keeps the loopback traffic of a child away from any proxy of the environment.
fn loopback_env(cmd: &mut Command) {
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("NO_PROXY", "127.0.0.1,localhost,::1")
        .env("no_proxy", "127.0.0.1,localhost,::1")
        .env("NO_COLOR", "1");
}

/// A child process killed (and reaped) on drop, its stdout and stderr read line by line.
pub struct Process {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<String>>,
}

impl Process {
    /// Spawns `cmd` with piped output.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        loopback_env(&mut cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {name} ({cmd:?}): {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (stream_name, stream) in [
            ("stdout", Box::new(stdout) as Box<dyn Read + Send>),
            ("stderr", Box::new(stderr)),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            let name = name.to_owned();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap()
                        .push_str(&format!("[{name} {stream_name}] {line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            name: name.to_owned(),
            child,
            lines: rx,
            log,
        }
    }

    /// Everything printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for the first line for which `find` returns something.
    pub fn wait_for<T>(&self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = find(&line) {
                        return found;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} printed no {what} within {STARTUP_TIMEOUT:?}; output:\n{}",
                    self.name,
                    self.log()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{} closed its output (exited?) before printing {what}; output:\n{}",
                    self.name,
                    self.log()
                ),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LISTENING: &str = "listening on http://";

/// `... listening on http://127.0.0.1:41234/mcp` → `http://127.0.0.1:41234`.
pub fn parse_listening(line: &str) -> Option<String> {
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

/// The `mcp-proxy` binary serving the built-in server on 127.0.0.1.
pub struct Proxy {
    process: Process,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `http://127.0.0.1:PORT/mcp`
    pub url: String,
}

impl Proxy {
    /// Starts `mcp-proxy --host 127.0.0.1 --port 0 ARGS` (a `--port` in `args` wins).
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-proxy"));
        // Only the flags of the test configure it.
        for (name, _) in std::env::vars() {
            if name.starts_with("MCP_PROXY_") {
                cmd.env_remove(name);
            }
        }
        cmd.args(["--host", "127.0.0.1"]);
        if !args.contains(&"--port") {
            cmd.args(["--port", "0"]);
        }
        cmd.args(args);
        let process = Process::spawn("mcp-proxy", cmd);
        let base = process.wait_for("a `listening on http://HOST:PORT` line", parse_listening);
        Self {
            url: format!("{base}/mcp"),
            base,
            process,
        }
    }

    /// Everything the binary printed so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
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

/// The outcome of a client run.
pub struct ClientRun {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Runs a Node script from `tests/interop` to completion (killed after [`CLIENT_TIMEOUT`]).
pub fn run_node(script: &str, args: &[&str]) -> ClientRun {
    let dir = interop_dir();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).args(args).current_dir(&dir);
    loopback_env(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
    let read_all = |mut stream: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the client") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{script} did not finish within {CLIENT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                stdout.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    ClientRun {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
