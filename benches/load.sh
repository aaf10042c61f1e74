#!/usr/bin/env bash
# End-to-end load bench, one command: builds mcp-proxy (release), runs the shared harness
# (../shared/perf/run-baseline.sh: a hyper load generator on loopback driving stateful JSON,
# stateful SSE, stateless JSON/SSE, API key + CORS, 2026-07-28 "modern" requests on the default
# dual-era endpoint, and session churn) with mcp-proxy beside the
# peers (rmcp, the npm mcp-proxy) and a bare-hyper ceiling, then measures memory per idle
# session over 100k sessions. Extra arguments go to the harness (e.g. --quick, --skip-peers).
#
#   bash benches/load.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
harness=${PERF_HARNESS:-$root/../shared/perf/run-baseline.sh}
[[ -x $harness ]] || { echo "load.sh: no harness at $harness (set PERF_HARNESS)" >&2; exit 2; }
cargo build --release --bin mcp-proxy --manifest-path "$root/Cargo.toml"
"$harness" "${PERF_WORK:-/tmp/perf-work}" --ours "$root/benches/perf-ours.sh" \
    --ours-name mcp-tower-http \
    --ours-modes "json-stateful sse-stateful json-stateless sse-stateless json-stateful-auth modern" \
    "$@"
cargo bench --manifest-path "$root/Cargo.toml" --bench idle_sessions
