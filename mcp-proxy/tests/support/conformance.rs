//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, installed in
//! `tests/conformance` by `.ci/run`) run against a URL: shared by `conformance.rs` (one
//! `mcp-proxy`) and `cluster.rs` (instances behind a load balancer).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long one suite run may take (a whole run normally takes 2-3 s on loopback).
pub const SUITE_TIMEOUT: Duration = Duration::from_secs(180);
/// At most this much of one scenario's failing checks goes into a failure message.
pub const MAX_CHECKS_CHARS: usize = 8_000;

/// One pinned version of the suite, installed under `node_modules/<alias>`.
pub struct Suite {
    /// npm alias in `tests/conformance/package.json`.
    pub alias: &'static str,
    /// The exact version the alias pins (checked against the installed `package.json`).
    pub version: &'static str,
    /// The CLI entry (`"bin": {"conformance": "dist/index.js"}`), relative to the package.
    pub entry: &'static str,
    /// Arguments after `server --url URL`.
    pub args: &'static [&'static str],
}

pub const SUITE_0_1: Suite = Suite {
    alias: "conformance-0-1",
    version: "0.1.16",
    entry: "dist/index.js",
    args: &["--suite", "all"],
};

pub const SUITE_0_2: Suite = Suite {
    alias: "conformance-0-2",
    version: "0.2.0-alpha.12",
    entry: "dist/index.js",
    args: &["--requirements", "2025-11-25"],
};

/// The 2026-07-28 wire: every required scenario, plus the unscored ones it runs (routing-header
/// validation, JSON Schema 2020-12, the tasks extension), all at 0 failed.
pub const SUITE_0_2_MODERN: Suite = Suite {
    alias: "conformance-0-2",
    version: "0.2.0-alpha.12",
    entry: "dist/index.js",
    args: &["--requirements", "2026-07-28"],
};

/// The Node 22 binary shipped by the `node` npm package.
pub fn node_binary() -> PathBuf {
    super::conformance_dir().join("node_modules/node/bin/node")
}

/// The suite's CLI entry; fails when the suite (or the version pinned) is not installed.
pub fn installed_entry(suite: &Suite) -> PathBuf {
    let package = super::conformance_dir()
        .join("node_modules")
        .join(suite.alias);
    let entry = package.join(suite.entry);
    for marker in [node_binary(), entry.clone()] {
        assert!(
            marker.exists(),
            "the conformance suite is not installed ({} is missing): run `bash .ci/run`, which \
             installs tests/conformance and runs the ignored tests",
            marker.display()
        );
    }
    let manifest = std::fs::read_to_string(package.join("package.json"))
        .unwrap_or_else(|e| panic!("reading {}/package.json: {e}", package.display()));
    let version = format!("\"version\": \"{}\"", suite.version);
    assert!(
        manifest.contains(&version),
        "{} is installed but is not version {} (stale node_modules?): run .ci/run again",
        package.display(),
        suite.version
    );
    entry
}

/// Removes ANSI escape sequences (CSI `ESC [ ... final` and two-byte `ESC x`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        // `ESC x` drops x; for `ESC [` also drop parameters and intermediates, up to and
        // including the final byte @..~.
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The last `Total: N passed, M failed` line → `(N, M)`.
pub fn parse_total(output: &str) -> Option<(u64, u64)> {
    output.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("Total: ")?;
        let (passed, rest) = rest.split_once(" passed, ")?;
        let failed: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !rest[failed.len()..].starts_with(" failed") {
            return None;
        }
        Some((passed.parse().ok()?, failed.parse().ok()?))
    })
}

/// Scenario names of the `✗ name: ...` / `  ✗ name (reason)` summary lines.
pub fn failed_scenarios(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix('✗'))
        .filter_map(|rest| {
            rest.split([':', ' '])
                .find(|word| !word.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

pub struct SuiteRun {
    pub status: ExitStatus,
    /// ANSI codes stripped.
    pub stdout: String,
    pub stderr: String,
}

/// Runs the suite against `url` to completion (killed after `SUITE_TIMEOUT`), capturing its
/// output; `server_log` is quoted when it times out.
pub fn run_suite(
    entry: &Path,
    suite: &Suite,
    url: &str,
    server_log: &dyn Fn() -> String,
    results: &Path,
) -> SuiteRun {
    let mut cmd = Command::new(node_binary());
    cmd.arg(entry)
        .args(["server", "--url", url])
        .args(suite.args)
        .arg("-o")
        .arg(results);
    // The suite runs on its own Node: options meant for another one must not leak in.
    cmd.env_remove("NODE_OPTIONS");
    let run = super::run_client(cmd, &super::conformance_dir(), SUITE_TIMEOUT);
    let Some(status) = run.status else {
        panic!(
            "conformance {} did not finish within {SUITE_TIMEOUT:?} (killed)\nstdout:\n{}\n\
             stderr:\n{}\nserver output:\n{}",
            suite.version,
            strip_ansi(&run.stdout),
            strip_ansi(&run.stderr),
            server_log()
        );
    };
    SuiteRun {
        status,
        stdout: strip_ansi(&run.stdout),
        stderr: strip_ansi(&run.stderr),
    }
}

/// The FAILURE entries of each failed scenario's `checks.json` (`-o` writes
/// `<results>/server-<scenario>-<timestamp>/checks.json`, a pretty-printed array of checks).
pub fn failed_checks(results: &Path, scenarios: &[String]) -> String {
    let Ok(dirs) = std::fs::read_dir(results) else {
        return format!("(no results directory {})\n", results.display());
    };
    let dirs: Vec<PathBuf> = dirs.filter_map(|d| Some(d.ok()?.path())).collect();
    let mut out = String::new();
    for scenario in scenarios {
        let prefix = format!("server-{scenario}-");
        let Some(dir) = dirs.iter().find(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        }) else {
            out.push_str(&format!("--- {scenario}: no checks.json\n"));
            continue;
        };
        let path = dir.join("checks.json");
        let Ok(json) = std::fs::read_to_string(&path) else {
            out.push_str(&format!("--- {scenario}: cannot read {}\n", path.display()));
            continue;
        };
        // Top-level array elements start at "\n  {"; keep the failing ones.
        let failures: Vec<&str> = json
            .split("\n  {")
            .skip(1)
            .filter(|check| check.contains("\"status\": \"FAILURE\""))
            .collect();
        let mut text = if failures.is_empty() {
            json.clone()
        } else {
            failures
                .iter()
                .map(|c| {
                    let c = c.trim_end().trim_end_matches(']').trim_end();
                    format!("  {{{}", c.trim_end_matches(','))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        if text.len() > MAX_CHECKS_CHARS {
            let cut = (0..=MAX_CHECKS_CHARS)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push_str("\n  ... (truncated)");
        }
        out.push_str(&format!(
            "--- {scenario} failing checks ({}):\n{text}\n",
            path.display()
        ));
    }
    out
}

/// The scenarios the suite lists as run but not scored ("Not scored for …" section).
pub fn unscored_scenarios(output: &str) -> Vec<String> {
    let Some((_, section)) = output.split_once("Not scored for") else {
        return Vec::new();
    };
    section
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            line.strip_prefix('✗').or_else(|| line.strip_prefix('✓'))
        })
        .filter_map(|rest| {
            rest.split([':', ' '])
                .find(|w| !w.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

/// A per-run results directory under `$CARGO_TARGET_TMPDIR/conformance` (so concurrent runs, two
/// of one package, don't share it), created empty.
pub fn results_dir(suite: &Suite, tag: &str) -> PathBuf {
    let results = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("conformance")
        .join(format!(
            "{}-{}{tag}-{}",
            suite.alias,
            suite.args.join("_").replace('-', ""),
            std::process::id()
        ));
    let _ = std::fs::remove_dir_all(&results);
    std::fs::create_dir_all(&results)
        .unwrap_or_else(|e| panic!("creating {}: {e}", results.display()));
    results
}

/// Runs `suite` against `url` and panics (quoting the failing checks, the suite's output and
/// `server_log`) unless it passes: every check, or with `scored_only` every scored scenario.
/// Removes `results` when it passes; returns `(passed, failed)` checks.
pub fn run_and_check(
    suite: &Suite,
    url: &str,
    server_log: &dyn Fn() -> String,
    results: &Path,
    scored_only: bool,
) -> (u64, u64) {
    let entry = installed_entry(suite);
    let started = Instant::now();
    let run = run_suite(&entry, suite, url, server_log, results);
    let elapsed = started.elapsed();
    let label = format!(
        "conformance {} server {}",
        suite.version,
        suite.args.join(" ")
    );

    let total = parse_total(&run.stdout);
    let mut failed = failed_scenarios(&run.stdout);
    if scored_only {
        let unscored = unscored_scenarios(&run.stdout);
        failed.retain(|name| !unscored.contains(name));
    }
    let problem = match total {
        None => Some("no `Total: N passed, M failed` line in the suite's output".to_owned()),
        Some(_) if scored_only && !failed.is_empty() => {
            Some(format!("scored scenarios failed: {failed:?}"))
        }
        Some((_, failures)) if failures > 0 && !scored_only => {
            Some(format!("{failures} failed check(s)"))
        }
        Some(_) if !run.status.success() && !scored_only => {
            Some(format!("suite exited with {}", run.status))
        }
        Some(_) => None,
    };
    if let Some(problem) = problem {
        panic!(
            "{label} against {url}: {problem}\nexit: {}\nfailing scenarios:\n{}\n{}\
             suite stdout:\n{}\nsuite stderr:\n{}\nserver output:\n{}\n(results in {})",
            run.status,
            run.stdout
                .lines()
                .filter(|l| l.trim_start().starts_with('✗'))
                .collect::<Vec<_>>()
                .join("\n"),
            failed_checks(results, &failed),
            run.stdout,
            run.stderr,
            server_log(),
            results.display()
        );
    }
    let _ = std::fs::remove_dir_all(results);
    let (passed, failures) = total.expect("checked above");
    println!(
        "{label} against {url}: {passed} passed, {failures} failed (scored: 0) in {elapsed:.1?}"
    );
    (passed, failures)
}
