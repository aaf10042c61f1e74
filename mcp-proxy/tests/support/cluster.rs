//! Several `mcp-proxy` instances sharing one real `redis-server` behind one real nginx (round
//! robin, no affinity), each on a free loopback port with its files in a temporary directory
//! (issue 11). Every process is killed (by pid) and reaped when its guard drops.
//!
//! `redis-server` and nginx come from Debian's packages (`.ci/run` installs them); the tests that
//! need them are `#[ignore]`d and fail, with a message naming what is missing, when asked for
//! without them ([`cluster_programs_installed`]).

use super::process::{Process, children_of, is_running, signal};
use super::proxy::Proxy;
use super::{STARTUP_TIMEOUT, free_port, wait_until_blocking};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The bound on one Redis command of the tests' own client.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a server is started again on another free port after losing the race for one.
const PORT_ATTEMPTS: usize = 5;
/// nginx's fast shutdown (SIGTERM) closes every connection; after this its processes are killed.
const NGINX_STOP: Duration = Duration::from_secs(5);

/// `name` on `PATH`, else `fallback` (Debian puts nginx in `/usr/sbin`, often not on a user's
/// `PATH`); `None` when neither exists.
fn find_program(name: &str, fallback: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .chain([PathBuf::from(fallback)])
        .find(|p| p.is_file())
}

/// The `redis-server` binary, if installed.
pub fn redis_server_binary() -> Option<PathBuf> {
    find_program("redis-server", "/usr/bin/redis-server")
}

/// The nginx binary, if installed.
pub fn nginx_binary() -> Option<PathBuf> {
    find_program("nginx", "/usr/sbin/nginx")
}

/// `true` when `redis-server` and nginx are installed; otherwise panics: the cluster tests are
/// `#[ignore]`d and run only when asked for (`bash .ci/run` installs both, then runs them).
pub fn cluster_programs_installed() -> bool {
    for (what, found) in [
        ("redis-server", redis_server_binary()),
        ("nginx", nginx_binary()),
    ] {
        assert!(
            found.is_some(),
            "{what} is not installed (not on PATH nor in /usr/bin or /usr/sbin): run `bash .ci/run`, \
             which installs redis-server and nginx-light from Debian's packages and runs the \
             ignored tests"
        );
    }
    true
}

/// A directory under `$CARGO_TARGET_TMPDIR/cluster`, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("cluster")
            .join(format!(
                "{label}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The effective user id, from `/proc/self/status` (`Uid: real effective saved fs`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Redis

/// A RESP value, as the tests' own Redis client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    /// `None`: the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None`: the null array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// A simple or bulk string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

pub fn read_resp(reader: &mut impl BufRead) -> Result<Resp, String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("truncated RESP line {line:?}"))?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || {
        rest.parse::<i64>()
            .map_err(|e| format!("bad RESP length {rest:?}: {e}"))
    };
    match kind {
        "+" => Ok(Resp::Simple(rest.to_owned())),
        "-" => Ok(Resp::Error(rest.to_owned())),
        ":" => Ok(Resp::Int(number()?)),
        "$" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Bulk(None));
            };
            let mut data = vec![0; len + 2];
            reader.read_exact(&mut data).map_err(|e| e.to_string())?;
            data.truncate(len);
            Ok(Resp::Bulk(Some(data)))
        }
        "*" => {
            let Ok(len) = usize::try_from(number()?) else {
                return Ok(Resp::Array(None));
            };
            let items = (0..len)
                .map(|_| read_resp(reader))
                .collect::<Result<_, _>>()?;
            Ok(Resp::Array(Some(items)))
        }
        _ => Err(format!("unexpected RESP line {line:?}")),
    }
}

/// Sends one command (an array of bulk strings) on a fresh connection and reads its reply.
pub fn redis_command(addr: SocketAddr, args: &[&str]) -> Result<Resp, String> {
    let stream = TcpStream::connect_timeout(&addr, REDIS_TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(REDIS_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(REDIS_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
    }
    (&stream).write_all(&request).map_err(|e| e.to_string())?;
    read_resp(&mut BufReader::new(&stream))
}

/// `redis-server` on 127.0.0.1 and a free port, no persistence, its directory temporary. Killed
/// (SIGKILL) and reaped on drop.
pub struct RedisServer {
    process: Option<Process>,
    pub port: u16,
    /// What the servers printed before the current one (after [`RedisServer::kill`]).
    earlier_logs: String,
    dir: TempDir,
}

impl RedisServer {
    /// Starts it and waits until it answers `PING`; tries another port when it lost the race for
    /// the one it was given.
    pub fn start() -> Self {
        cluster_programs_installed();
        let dir = TempDir::new("redis");
        let mut failures = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match Self::spawn(port, dir.path()) {
                Ok(process) => {
                    return Self {
                        process: Some(process),
                        port,
                        earlier_logs: String::new(),
                        dir,
                    };
                }
                Err(log) if log.contains("in use") => failures.push_str(&log),
                Err(log) => panic!("redis-server did not start on port {port}:\n{log}"),
            }
        }
        panic!("redis-server found no free port in {PORT_ATTEMPTS} attempts:\n{failures}")
    }

    fn spawn(port: u16, dir: &Path) -> Result<Process, String> {
        let binary = redis_server_binary().expect("checked by cluster_programs_installed");
        let mut cmd = Command::new(binary);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(dir)
            .args(["--logfile", ""]);
        let mut process = Process::spawn("redis-server", cmd);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let answered = wait_until_blocking(STARTUP_TIMEOUT, || {
            process.try_exit().is_some()
                || redis_command(addr, &["PING"]) == Ok(Resp::Simple("PONG".into()))
        });
        match (answered, process.try_exit()) {
            (Ok(_), None) => Ok(process),
            (_, Some(status)) => Err(format!("exited with {status}:\n{}", process.log())),
            (Err(waited), None) => Err(format!("no PONG within {waited:?}:\n{}", process.log())),
        }
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// One command through the tests' own RESP client.
    pub fn command(&self, args: &[&str]) -> Result<Resp, String> {
        redis_command(self.addr(), args)
    }

    /// `used_memory` of `INFO memory`, in bytes.
    pub fn info_memory_used(&self) -> u64 {
        let info = self
            .command(&["INFO", "memory"])
            .ok()
            .and_then(|r| r.text())
            .unwrap_or_else(|| panic!("INFO memory failed\n{}", self.log()));
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no used_memory in INFO memory:\n{info}"))
    }

    /// The number of keys (`DBSIZE`).
    pub fn dbsize(&self) -> i64 {
        match self.command(&["DBSIZE"]) {
            Ok(Resp::Int(n)) => n,
            other => panic!("DBSIZE: {other:?}"),
        }
    }

    /// Every key matching `pattern` (`SCAN`, so the server is not blocked).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut cursor = "0".to_owned();
        let mut keys = Vec::new();
        loop {
            let reply = self.command(&["SCAN", &cursor, "MATCH", pattern, "COUNT", "1000"]);
            let Ok(Resp::Array(Some(parts))) = reply else {
                panic!("SCAN: {reply:?}");
            };
            let [next, Resp::Array(Some(batch))] = parts.as_slice() else {
                panic!("SCAN: unexpected reply {parts:?}");
            };
            keys.extend(batch.iter().filter_map(Resp::text));
            cursor = next.text().unwrap_or_else(|| "0".into());
            if cursor == "0" {
                return keys;
            }
        }
    }

    /// Kills it (SIGKILL) and reaps it, as a crash would; [`RedisServer::restart`] brings it back
    /// on the same port.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            signal(process.pid, "KILL");
            self.earlier_logs.push_str(&process.log());
        }
    }

    /// Starts it again on the same port (empty: it persists nothing).
    pub fn restart(&mut self) {
        self.kill();
        let started = Instant::now();
        loop {
            match Self::spawn(self.port, self.dir.path()) {
                Ok(process) => {
                    self.process = Some(process);
                    return;
                }
                // The port is still held by a dying server for a moment.
                Err(log) if started.elapsed() < STARTUP_TIMEOUT => {
                    self.earlier_logs.push_str(&log);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("redis-server did not restart on {}:\n{log}", self.port),
            }
        }
    }

    /// What it printed.
    pub fn log(&self) -> String {
        let current = self.process.as_ref().map(Process::log).unwrap_or_default();
        format!("{}{current}", self.earlier_logs)
    }
}

// ---------------------------------------------------------------------------------------------
// nginx

/// One line of nginx's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    pub uri: String,
    pub status: u16,
    /// `$upstream_addr`: `127.0.0.1:PORT`, or `a, b` when nginx tried `a` first and went on.
    pub upstream: String,
    /// The request's `Mcp-Session-Id` (`-` without).
    pub session: String,
    /// The response's `Mcp-Session-Id` (an `initialize` answer; `-` without).
    pub new_session: String,
    /// The request's `Last-Event-ID` (`-` without).
    pub last_event_id: String,
}

impl Access {
    /// The upstream that answered (the last one nginx tried).
    pub fn served_by(&self) -> &str {
        self.upstream.rsplit(", ").next().unwrap_or("")
    }

    /// The session the request belongs to: its `Mcp-Session-Id`, or the one its answer created.
    pub fn session_id(&self) -> Option<&str> {
        [&self.session, &self.new_session]
            .into_iter()
            .find(|s| *s != "-" && !s.is_empty())
            .map(String::as_str)
    }
}

/// The fields of [`Access`], `|`-separated (`$upstream_addr` may contain spaces).
const LOG_FORMAT: &str = "$request_method|$request_uri|$status|$upstream_addr|$http_mcp_session_id|$sent_http_mcp_session_id|$http_last_event_id";

pub fn parse_access(line: &str) -> Option<Access> {
    let mut f = line.split('|');
    Some(Access {
        method: f.next()?.to_owned(),
        uri: f.next()?.to_owned(),
        status: f.next()?.parse().ok()?,
        upstream: f.next()?.to_owned(),
        session: f.next()?.to_owned(),
        new_session: f.next()?.to_owned(),
        last_event_id: f.next()?.to_owned(),
    })
}

/// nginx (one worker, so round robin is deterministic: the upstreams in order) on a free
/// 127.0.0.1 port in front of `upstreams`, without affinity, streaming both ways. Every
/// response carries `X-Upstream: <the instance that served it>`; [`Nginx::access_log`] tells
/// which instance served what. Stopped (SIGTERM, then SIGKILL) on drop.
pub struct Nginx {
    process: Option<Process>,
    pub port: u16,
    pub upstreams: Vec<String>,
    dir: TempDir,
}

impl Nginx {
    /// Starts it; `upstreams` are `HOST:PORT` or `http://HOST:PORT`.
    pub fn start(upstreams: &[&str]) -> Self {
        cluster_programs_installed();
        let upstreams: Vec<String> = upstreams
            .iter()
            .map(|u| u.trim_start_matches("http://").to_owned())
            .collect();
        let dir = TempDir::new("nginx");
        let mut failures = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match Self::spawn(port, &upstreams, dir.path()) {
                Ok(process) => {
                    return Self {
                        process: Some(process),
                        port,
                        upstreams,
                        dir,
                    };
                }
                Err(log) if log.contains("in use") => failures.push_str(&log),
                Err(log) => panic!("nginx did not start on port {port}:\n{log}"),
            }
        }
        panic!("nginx found no free port in {PORT_ATTEMPTS} attempts:\n{failures}")
    }

    fn config(port: u16, upstreams: &[String], dir: &Path) -> String {
        let d = dir.display();
        // Workers of a root master switch to `nobody`, which could not write the logs here.
        let user = if effective_uid() == Some(0) {
            "user root;\n"
        } else {
            ""
        };
        let servers: String = upstreams
            .iter()
            .map(|u| format!("        server {u};\n"))
            .collect();
        format!(
            "{user}daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log notice;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    log_format cluster '{LOG_FORMAT}';
    access_log {d}/access.log cluster;
    # Round robin, no affinity: any request may land on any instance.
    upstream mcp {{
{servers}    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mcp;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $http_host;
            # SSE both ways: nothing buffered, streams held open.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"
        )
    }

    fn spawn(port: u16, upstreams: &[String], dir: &Path) -> Result<Process, String> {
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, Self::config(port, upstreams, dir))
            .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
        let _ = std::fs::remove_file(dir.join("error.log"));
        let binary = nginx_binary().expect("checked by cluster_programs_installed");
        let mut cmd = Command::new(binary);
        // -e: the error log before the configuration is read (not /var/log/nginx).
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf);
        let mut process = Process::spawn("nginx", cmd);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let error_log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        let listening = wait_until_blocking(STARTUP_TIMEOUT, || {
            process.try_exit().is_some()
                || error_log().contains("in use")
                || TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        });
        match (listening, process.try_exit()) {
            (Ok(_), None) if !error_log().contains("in use") => Ok(process),
            (Err(waited), None) => Err(format!(
                "not listening within {waited:?}:\n{}{}",
                process.log(),
                error_log()
            )),
            (_, status) => {
                drop(process);
                Err(format!("exited ({status:?}):\nerror.log:\n{}", error_log()))
            }
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/mcp`
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base())
    }

    /// The access log so far (nginx writes a line when a request ends: an open stream has none).
    pub fn access_log(&self) -> Vec<Access> {
        self.access_log_text()
            .lines()
            .filter_map(parse_access)
            .collect()
    }

    pub fn access_log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        // A killed master leaves its workers serving: ask for a fast shutdown first.
        let workers = children_of(process.pid);
        signal(process.pid, "TERM");
        let _ = wait_until_blocking(NGINX_STOP, || process.try_exit().is_some());
        for worker in workers.iter().filter(|w| is_running(w)) {
            signal(worker.pid, "KILL");
        }
        // Dropping the process kills (if still needed) and reaps the master.
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster

/// `redis-server`, `n` `mcp-proxy` instances sharing it (`--redis URL --cluster-secret S`, each
/// advertising the address it listens on) and nginx in front of them.
pub struct Cluster {
    // Dropped in this order: the balancer, the instances, then Redis.
    pub nginx: Nginx,
    instances: Vec<Option<Proxy>>,
    /// `127.0.0.1:PORT` of each instance, in nginx's round-robin order.
    pub upstreams: Vec<String>,
    pub redis: RedisServer,
    pub secret: String,
    /// The output of the instances killed so far.
    dead_logs: String,
}

impl Cluster {
    /// Starts `n` instances `mcp-proxy --redis URL --cluster-secret S <flags> [-- <command>]`.
    pub fn start(n: usize, flags: &[&str], command: &[impl AsRef<OsStr>]) -> Self {
        cluster_programs_installed();
        let redis = RedisServer::start();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let secret = format!("cluster-test-secret-{}-{nanos}", std::process::id());
        let url = redis.url();
        let mut all_flags = vec!["--redis", &url, "--cluster-secret", &secret];
        all_flags.extend_from_slice(flags);
        let instances: Vec<Proxy> = (0..n).map(|_| Proxy::start(&all_flags, command)).collect();
        let upstreams: Vec<String> = instances
            .iter()
            .map(|p| p.base.trim_start_matches("http://").to_owned())
            .collect();
        let nginx = Nginx::start(&upstreams.iter().map(String::as_str).collect::<Vec<_>>());
        Self {
            redis,
            instances: instances.into_iter().map(Some).collect(),
            upstreams,
            nginx,
            secret,
            dead_logs: String::new(),
        }
    }

    /// [`Cluster::start`] serving the built-in server.
    pub fn builtin(n: usize, flags: &[&str]) -> Self {
        Self::start(n, flags, &[] as &[&str])
    }

    /// nginx's `http://127.0.0.1:PORT/mcp`.
    pub fn url(&self) -> String {
        self.nginx.url()
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Instance `i` (panics once it was killed).
    pub fn instance(&self, i: usize) -> &Proxy {
        self.instances[i]
            .as_ref()
            .unwrap_or_else(|| panic!("instance {i} was killed"))
    }

    pub fn is_alive(&self, i: usize) -> bool {
        self.instances[i].is_some()
    }

    /// The index of the instance at `upstream` (an `X-Upstream` value or [`Access::upstream`];
    /// with several addresses, the last one: the one that answered).
    pub fn index_of(&self, upstream: &str) -> Option<usize> {
        let last = upstream.rsplit(", ").next()?.trim();
        self.upstreams.iter().position(|u| u == last)
    }

    /// Kills instance `i` and its children with SIGKILL, as a crash would (no shutdown).
    pub fn kill9(&mut self, i: usize) {
        if let Some(proxy) = self.instances[i].take() {
            signal(proxy.pid, "KILL");
            self.dead_logs
                .push_str(&format!("--- instance {i} (killed) ---\n{}", proxy.log()));
            // Its drop kills the children it had (they are ours to end).
        }
    }

    /// The exit status of instance `i` if it exited by itself.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.instances[i].as_mut().and_then(Proxy::try_exit)
    }

    /// Everything the instances, nginx and Redis printed: for failure messages.
    pub fn logs(&self) -> String {
        let mut out = self.dead_logs.clone();
        for (i, proxy) in self.instances.iter().enumerate() {
            if let Some(proxy) = proxy {
                out.push_str(&format!(
                    "--- instance {i} ({}) ---\n{}",
                    self.upstreams[i],
                    proxy.log()
                ));
            }
        }
        out.push_str(&format!(
            "--- nginx access.log ---\n{}--- nginx error.log ---\n{}--- redis ---\n{}",
            self.nginx.access_log_text(),
            self.nginx.error_log(),
            self.redis.log()
        ));
        out
    }
}
