#!/usr/bin/env bash
# Adapter for ../shared/perf/run-baseline.sh --ours: maps the harness's environment
# (PORT, MODE=json|sse, STATELESS=0|1, API_KEY, METRICS=0|1) to mcp-proxy flags. Run from the repo root:
#   ../shared/perf/run-baseline.sh --ours "$PWD/benches/perf-ours.sh" --ours-name mcp-tower-http
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${MCP_PROXY_BIN:-$here/target/release/mcp-proxy}
args=(--host 127.0.0.1 --port "${PORT:?PORT is required}")
[[ ${MODE:-sse} == json ]] && args+=(--json-response)
[[ ${STATELESS:-0} == 1 ]] && args+=(--stateless)
[[ -n ${API_KEY:-} ]] && args+=(--api-key "$API_KEY")
# METRICS=1: Prometheus metrics on (a metrics listener on a free port).
[[ ${METRICS:-0} == 1 ]] && args+=(--metrics-port 0)
export RUST_LOG=${RUST_LOG:-warn}
exec "$bin" "${args[@]}"
