//! Child processes of a test: killed and reaped when their guard drops, their output kept for
//! failure messages; and processes as `/proc` shows them.

use super::STARTUP_TIMEOUT;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

/// Keeps the loopback traffic of a child away from any proxy of the environment; no colours.
pub fn loopback_env(cmd: &mut Command) {
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
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0");
}

/// Kills and reaps the child when dropped, so no test leaves a process behind (also on panic).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child process killed (and reaped) on drop, its stdout and stderr read line by line to the
/// end (so it never blocks on a full pipe) and kept, one `[name stream]`-prefixed line each.
pub struct Process {
    name: String,
    child: Child,
    pub pid: u32,
    // A Mutex keeps the process Sync (a proxy is shared by scoped test threads).
    lines: Mutex<mpsc::Receiver<String>>,
    log: Arc<Mutex<String>>,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Spawns `cmd` (loopback environment) with piped output. Its stdin stays open until the
    /// guard drops: children such as `demo-as.mjs` exit when their stdin closes.
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
            pid: child.id(),
            child,
            lines: Mutex::new(rx),
            log,
            exited: None,
        }
    }

    /// Everything printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to [`STARTUP_TIMEOUT`]) for the first line for which `find` returns something.
    pub fn wait_for<T>(&self, what: &str, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let lines = self.lines.lock().unwrap();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
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

    /// The exit status once the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("waiting for a child");
        }
        self.exited
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One process, from `/proc/<pid>/stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// `R`, `S`, `Z`, ...
    pub state: char,
    /// Start time in clock ticks since boot: tells a reused pid apart.
    pub start: u64,
    pub comm: String,
}

/// Reads `/proc/<pid>/stat`; `None` once the process is gone (reaped).
pub fn proc_stat(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may contain spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_owned();
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    Some(Proc {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        state: fields.first()?.chars().next()?,
        start: fields.get(19)?.parse().ok()?,
        comm,
    })
}

/// Every process whose parent is `ppid`, zombies included.
pub fn children_of(ppid: u32) -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: Vec<Proc> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .filter(|p| p.ppid == ppid)
        .collect();
    children.sort_by_key(|p| p.pid);
    children
}

/// `true` while `p` (the same process, not a reuse of its pid) exists and is not a zombie.
pub fn is_running(p: &Proc) -> bool {
    proc_stat(p.pid).is_some_and(|now| now.start == p.start && now.state != 'Z')
}

/// Sends `signal` (`TERM`, `KILL`) to one process by pid with the `kill` command.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
