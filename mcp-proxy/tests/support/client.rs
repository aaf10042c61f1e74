//! External client scripts (Node, Python, the conformance suite) run to completion.

use super::process::{KillOnDrop, loopback_env};
use super::{CLIENT_TIMEOUT, interop_dir};
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A client process run to completion (or killed).
pub struct ClientRun {
    /// `None` when it was killed after the timeout.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl ClientRun {
    /// Whether it exited successfully (in time).
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// The exit status; panics with the output (and `context`, e.g. the server's log) when the
    /// client was killed after the timeout.
    pub fn exited(&self, context: &str) -> ExitStatus {
        self.status.unwrap_or_else(|| {
            panic!(
                "the client did not finish in time ({:?})\nstdout:\n{}\nstderr:\n{}\n{context}",
                self.took, self.stdout, self.stderr
            )
        })
    }
}

/// Runs `cmd` in `dir` (stdin closed, output captured, loopback environment: proxy settings of
/// the environment are kept away from it; colours are off), killed after `timeout`.
pub fn run_client(mut cmd: Command, dir: &Path, timeout: Duration) -> ClientRun {
    loopback_env(&mut cmd);
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = KillOnDrop(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}")),
    );
    let read_all = |mut stream: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stream.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.0.stdout.take().expect("piped stdout")));
    let stderr = read_all(Box::new(child.0.stderr.take().expect("piped stderr")));
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("waiting for the client") {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    // Killing a timed-out client closes its pipes, so the readers finish.
    drop(child);
    ClientRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        took: started.elapsed(),
    }
}

/// Runs the Node script `tests/interop/<script>` with `args` ([`run_client`], [`CLIENT_TIMEOUT`]).
pub fn run_node(script: &str, args: &[&str]) -> ClientRun {
    let dir = interop_dir();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).args(args);
    run_client(cmd, &dir, CLIENT_TIMEOUT)
}
