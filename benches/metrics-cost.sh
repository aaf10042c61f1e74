#!/usr/bin/env bash
# What `--metrics-port` costs: server CPU per request with metrics off and on, in the same run
# (rounds alternate, so both see the same machine load). Needs the release binary
# (`cargo build --release -p mcp-proxy`) and the harness's loadgen:
#   LOADGEN=../shared/perf/loadgen benches/metrics-cost.sh
# Env: ROUNDS (3), DURATION (5 s), CONNECTIONS (16), MODE (session|stateless), JSON (1: JSON
# answers, 0: SSE). Prints each round, then the median µs/request of each side and their ratio.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${MCP_PROXY_BIN:-${CARGO_TARGET_DIR:-$here/target}/release/mcp-proxy}
loadgen=${LOADGEN:-/tmp/perf-work/target/release/loadgen}
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
connections=${CONNECTIONS:-16}
mode=${MODE:-session}
results=$(mktemp)
trap 'rm -f "$results"; [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null || true' EXIT

run() { # label, extra flags...
    local label=$1 log
    shift
    log=$(mktemp)
    flags=(--host 127.0.0.1 --port 0)
    [[ ${JSON:-1} == 1 ]] && flags+=(--json-response)
    RUST_LOG=warn "$bin" "${flags[@]}" "$@" >"$log" 2>&1 &
    pid=$!
    local url=""
    for _ in $(seq 100); do
        url=$(grep -o 'http://[0-9.:]*/mcp' "$log" | head -1 || true)
        [[ -n $url ]] && break
        sleep 0.05
    done
    [[ -n $url ]] || { cat "$log" >&2; exit 1; }
    "$loadgen" --url "$url" --mode "$mode" -c "$connections" -d "$duration" --warmup 1 \
        --pid "$pid" --label "$label" 2>/dev/null | tail -1 >>"$results"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
    rm -f "$log"
}

for round in $(seq "$rounds"); do
    run off
    run on --metrics-port 0
done

python3 - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by = {"off": [], "on": []}
for r in rows:
    by[r["label"]].append(r)
    print(f'{r["label"]:>3}: {r["rps"]:9.0f} req/s  server {r["server_cpu_us_per_req"]:6.2f} µs/req  '
          f'other load {r["other_cpu_pct"]:5.1f}%')
off = statistics.median(r["server_cpu_us_per_req"] for r in by["off"])
on = statistics.median(r["server_cpu_us_per_req"] for r in by["on"])
print(f"median server CPU per request: off {off:.2f} µs, on {on:.2f} µs, on/off = {on / off:.3f}")
PY
