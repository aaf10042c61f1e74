#!/usr/bin/env bash
# cluster.sh — what sharing sessions through Redis costs (issue 11), in one run, loopback only.
#
# Stateful JSON (`--json-response`, loadgen `--mode session`: tools/call echo on keep-alive
# connections, round robin over the sessions) through four set-ups, started fresh for each run
# and interleaved when repeated:
#   A  1 mcp-proxy, no Redis, loadgen straight at it                      (the baseline)
#   B  1 mcp-proxy, no Redis, behind nginx (round robin over 1 upstream)  (nginx's own cost)
#   L  2 mcp-proxy + redis-server, loadgen straight at instance 1: every session is held by the
#      instance that gets its requests — the cluster's hot path (goal: 0 Redis commands)
#   C  2 mcp-proxy + redis-server behind nginx, round robin, no affinity: about half of each
#      session's requests land on the instance that does not hold it, which reads the session's
#      record from Redis (goal: at most 1 command) and forwards the request to the owner
# and, against a fresh C with a short idle timeout, a churn section: loadgen `--mode churn`
# (initialize, tools/call, DELETE) for --churn sessions, then --live sessions opened and left
# open (bytes per live session in Redis), then left idle until the instances expire them (Redis
# memory back near its start; this Redis runs with --latency-tracking no, see churn_section).
#
# How to read the table (2 noisy shared cores: read ratios and CPU per request, not req/s):
#   req/s            loadgen's measured rate (closed loop, -c connections)
#   proxy µs/req     utime+stime of every mcp-proxy instance, summed, over the measured window,
#                    divided by the requests in that window (from nginx's access log when nginx
#                    is in front, else req/s × window); nginx and redis are in their own columns
#   redis cmd/req    Redis commands processed in the window (INFO commandstats delta, the
#                    bench's own INFO calls taken out) / requests; the breakdown follows
#   foreign          share of requests that nginx sent to the instance not holding the session
#                    (access log's upstream vs the owner in the session's Redis record)
#   cmd/foreign      Redis commands per foreign request: the round trips a foreign request costs
#   x/A              ratio to A (req/s, and total server CPU per request incl. nginx and redis)
# Raw JSON (loadgen output, snapshots) stays in the temporary directory only with --keep.
#
# Usage: benches/cluster.sh [-c N] [-d S] [--warmup S] [--repeats N] [--sessions N]
#          [--churn N] [--live N] [--idle S] [--nginx-workers N] [--only 'A B L C churn'] [--keep]
# Needs: target/release/mcp-proxy (cargo build --release -p mcp-proxy; or MCP_PROXY_BIN),
# loadgen (LOADGEN, default /tmp/perf-work/target/release/loadgen), redis-server, redis-cli,
# nginx (/usr/sbin/nginx), python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${MCP_PROXY_BIN:-$here/target/release/mcp-proxy}
LOADGEN=${LOADGEN:-/tmp/perf-work/target/release/loadgen}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

CONNS=32 DURATION=8 WARMUP=2 REPEATS=1 SESSIONS="" CHURN=10000 LIVE=2000 IDLE=5
NGINX_WORKERS=1 ONLY="A B L C churn" KEEP=0
while [[ $# -gt 0 ]]; do
  case $1 in
    -c) CONNS=$2; shift 2 ;;
    -d) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --sessions) SESSIONS=$2; shift 2 ;;
    --churn) CHURN=$2; shift 2 ;;
    --live) LIVE=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --nginx-workers) NGINX_WORKERS=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
# An odd number of sessions: with an even one, loadgen's round robin over sessions and nginx's
# over 2 upstreams would keep each session on one upstream, and no request (or every one) of a
# session would be foreign.
[[ -n $SESSIONS ]] || SESSIONS=$((CONNS % 2 == 0 ? CONNS + 1 : CONNS))
awk -v d="$DURATION" 'BEGIN { exit !(d >= 3) }' || { echo "-d must be at least 3" >&2; exit 2; }

for tool in redis-server redis-cli python3 "$NGINX" "$LOADGEN" "$BIN"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 2; }
done

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mcp-cluster-bench.XXXXXX")
chmod 711 "$WORK"
PIDS=()
stop_pid() { # TERM, then KILL after 5 s
  local p=$1 i
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}
stop_all() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}
cleanup() {
  stop_all
  if [[ $KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The Python half: free ports, /proc and Redis snapshots, the access-log count, the sessions
# left open, the report. Standard library only.
cat >"$WORK/bench.py" <<'PY'
import http.client, json, os, socket, sys, time

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def redis(port, *args):
    """One command over RESP; returns the decoded reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        out = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        s.sendall(out)
        f = s.makefile("rb")
        return _read(f)

def _read(f):
    line = f.readline().rstrip(b"\r\n")
    t, rest = line[:1], line[1:]
    if t == b"+": return rest.decode()
    if t == b"-": raise RuntimeError(rest.decode())
    if t == b":": return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0: return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise RuntimeError("bad RESP reply")

def info(port, section):
    d = {}
    for line in redis(port, "INFO", section).splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            d[k] = v
    return d

def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0

def group_cpu(pids):
    return sum(cpu_s(p) for p in pids if p)

def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out

def snap(spec):
    """spec: {"proxy": [pids], "nginx": master pid or 0, "redis": [pid, port] or null}"""
    s = {"t": time.time()}
    s["proxy"] = group_cpu(spec["proxy"])
    if spec.get("nginx"):
        s["nginx"] = group_cpu([spec["nginx"]] + children(spec["nginx"]))
    if spec.get("redis"):
        pid, port = spec["redis"]
        s["redis"] = cpu_s(pid)
        stats = {}
        for k, v in info(port, "commandstats").items():
            if k.startswith("cmdstat_"):
                stats[k[8:]] = int(v.split(",")[0].split("=")[1])
        s["cmds"] = stats
    return s

def owners(port, prefix="mcp:session:"):
    out = {}
    cursor = "0"
    while True:
        cursor, keys = redis(port, "SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000")
        for k in keys:
            raw = redis(port, "GET", k)
            if raw:
                out[k[len(prefix):]] = json.loads(raw).get("owner")
        if cursor == "0":
            return out

def open_sessions(port, n, path="/mcp"):
    """Opens n sessions (initialize + notifications/initialized) and leaves them open."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdr = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    ids = []
    for i in range(n):
        init = {"jsonrpc": "2.0", "id": i + 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "cluster-bench", "version": "0"}}}
        c.request("POST", path, json.dumps(init), hdr)
        r = c.getresponse(); r.read()
        sid = r.getheader("mcp-session-id")
        if r.status != 200 or not sid:
            raise SystemExit(f"initialize failed: {r.status}")
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        c.request("POST", path, json.dumps(note),
                  dict(hdr, **{"mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}))
        r = c.getresponse(); r.read()
        if r.status != 202:
            raise SystemExit(f"notifications/initialized failed: {r.status}")
        ids.append(sid)
    return ids

def window(run):
    """Deltas over the measured window of one run."""
    s0, s1 = run["s0"], run["s1"]
    dt = s1["t"] - s0["t"]
    lg = run["loadgen"]
    if run.get("log_requests") is not None:
        reqs = run["log_requests"]
    else:
        reqs = lg.get("rps", 0) * dt
    w = {"config": run["config"], "rep": run["rep"], "rps": lg.get("rps", 0),
         "errors": lg.get("errors", 0) + lg.get("warmup_errors", 0), "window_s": dt,
         "requests": reqs, "p50_ms": lg.get("p50_ms"), "p99_ms": lg.get("p99_ms")}
    per = lambda x: x * 1e6 / reqs if reqs else float("nan")
    w["proxy_us"] = per(s1["proxy"] - s0["proxy"])
    w["nginx_us"] = per(s1["nginx"] - s0["nginx"]) if "nginx" in s0 else 0.0
    w["redis_us"] = per(s1["redis"] - s0["redis"]) if "redis" in s0 else 0.0
    if "cmds" in s0:
        d = {k: v - s0["cmds"].get(k, 0) for k, v in s1["cmds"].items()}
        d["info"] = d.get("info", 0) - 1  # the s0 snapshot's own INFO
        d = {k: v for k, v in d.items() if v > 0}
        w["cmds"] = d
        w["cmd_per_req"] = sum(d.values()) / reqs if reqs else float("nan")
    if run.get("foreign") is not None:
        w["foreign"] = run["foreign"] / reqs if reqs else float("nan")
        if "cmds" in w and run["foreign"]:
            w["cmd_per_foreign"] = sum(w["cmds"].values()) / run["foreign"]
    w["total_us"] = w["proxy_us"] + w["nginx_us"] + w["redis_us"]
    return w

def access_log(path, t0, t1, upstream_owner):
    """Requests logged in [t0, t1] and how many went to an instance not owning the session."""
    n = foreign = 0
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            t, method, upstream, sid = float(parts[0]), parts[1], parts[2], parts[3]
            if not (t0 <= t <= t1) or method != "POST":
                continue
            n += 1
            owner = upstream_owner.get(sid)
            if owner is not None and owner != upstream:
                foreign += 1
    return n, foreign

def report(runs, churn):
    ws = [window(r) for r in runs]
    order = ["A", "B", "L", "C"]
    names = {"A": "A: 1 instance", "B": "B: 1 instance behind nginx",
             "L": "L: 2 instances + Redis, straight at one (hot path)",
             "C": "C: 2 instances + Redis behind nginx (round robin)"}
    def mean(xs):
        xs = [x for x in xs if x == x]
        return sum(xs) / len(xs) if xs else float("nan")
    agg = {}
    for c in order:
        rs = [w for w in ws if w["config"] == c]
        if not rs:
            continue
        a = {k: mean([w.get(k, float("nan")) for w in rs]) for k in
             ("rps", "proxy_us", "nginx_us", "redis_us", "total_us", "cmd_per_req", "foreign",
              "cmd_per_foreign", "p50_ms", "p99_ms")}
        a["errors"] = sum(w["errors"] for w in rs)
        a["n"] = len(rs)
        cm = {}
        for w in rs:
            for k, v in w.get("cmds", {}).items():
                cm[k] = cm.get(k, 0) + v
        reqs = sum(w["requests"] for w in rs)
        a["breakdown"] = ", ".join(f"{k} {v / reqs:.3f}" for k, v in sorted(cm.items())) if "cmds" in rs[0] else ""
        agg[c] = a
    f = lambda x, p=0: "–" if x != x else f"{x:.{p}f}"
    print("| set-up | runs | req/s | p50 / p99 ms | proxy µs/req | nginx µs/req | redis µs/req "
          "| redis cmd/req | foreign | cmd/foreign | req/s x/A | CPU/req x/A | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    A = agg.get("A")
    for c in order:
        if c not in agg:
            continue
        a = agg[c]
        r_rps = a["rps"] / A["rps"] if A else float("nan")
        r_cpu = a["total_us"] / A["total_us"] if A else float("nan")
        print(f"| {names[c]} | {a['n']} | {f(a['rps'])} | {f(a['p50_ms'], 2)} / {f(a['p99_ms'], 2)} "
              f"| {f(a['proxy_us'], 1)} | {f(a['nginx_us'], 1) if c in 'BC' else '–'} "
              f"| {f(a['redis_us'], 1) if c in 'LC' else '–'} | {f(a['cmd_per_req'], 3)} "
              f"| {f(a['foreign'], 3)} | {f(a['cmd_per_foreign'], 3)} | {f(r_rps, 2)} "
              f"| {f(r_cpu, 2)} | {a['errors']} |")
    print()
    for c in ("L", "C"):
        if c in agg:
            print(f"- {c}: Redis commands per request by command: {agg[c]['breakdown'] or 'none'}")
    if "B" in agg and A:
        print(f"- B/A: req/s {agg['B']['rps'] / A['rps']:.2f}, proxy CPU/req "
              f"{agg['B']['proxy_us'] / A['proxy_us']:.2f}, total CPU/req {agg['B']['total_us'] / A['total_us']:.2f}")
    if "C" in agg and "B" in agg:
        print(f"- C/B (the cluster's cost with nginx in both): req/s {agg['C']['rps'] / agg['B']['rps']:.2f}, "
              f"proxy CPU/req {agg['C']['proxy_us'] / agg['B']['proxy_us']:.2f}, "
              f"total CPU/req {agg['C']['total_us'] / agg['B']['total_us']:.2f}")
    if "L" in agg and A:
        print(f"- L/A (cluster layer on the hot path): req/s {agg['L']['rps'] / A['rps']:.2f}, "
              f"proxy CPU/req {agg['L']['proxy_us'] / A['proxy_us']:.2f}")
    if churn:
        print()
        print("Churn and Redis memory (2 instances + Redis behind nginx):")
        print()
        print("| step | sessions | Redis keys | used_memory bytes | Δ from start |")
        print("|---|---|---|---|---|")
        m0 = churn["start"]["mem"]
        for step, label in (("start", "start"), ("after_churn", "after churn (each DELETEd)"),
                            ("live", "sessions left open"), ("expired", "after idle expiry")):
            s = churn.get(step)
            if s:
                print(f"| {label} | {s.get('sessions', '')} | {s['keys']} | {s['mem']} | {s['mem'] - m0:+d} |")
        lg = churn.get("loadgen", {})
        print()
        print(f"- churn: {lg.get('sessions_completed')} sessions in {lg.get('elapsed_s')} s "
              f"({lg.get('sessions_per_s')}/s), errors {lg.get('errors')}")
        if churn.get("live"):
            n = churn["live"]["sessions"]
            print(f"- bytes per live session in Redis: {(churn['live']['mem'] - churn['before_live']['mem']) / n:.0f} "
                  f"(used_memory delta / {n}); MEMORY USAGE of one record: {churn.get('record_bytes')}")
        if churn.get("expired"):
            print(f"- expiry: keys back to {churn['expired']['keys']} after {churn['expired']['after_s']:.1f} s "
                  f"idle (--session-idle-timeout {churn['idle']})")

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "port":
        print(free_port())
    elif cmd == "window":
        spec, launch, warmup, duration, port = json.loads(sys.argv[2]), *map(float, sys.argv[3:7])
        time.sleep(max(0.0, launch + warmup + 1.0 - time.time()))
        s0 = snap(spec)
        time.sleep(max(0.0, launch + warmup + duration - 0.75 - time.time()))
        s1 = snap(spec)
        # Who owns which session, read before loadgen closes them.
        o = owners(int(port)) if port else {}
        print(json.dumps({"s0": s0, "s1": s1, "owners": o}))
    elif cmd == "redis":
        print(json.dumps(redis(int(sys.argv[2]), *sys.argv[3:])))
    elif cmd == "mem":
        port = int(sys.argv[2])
        m = info(port, "memory")
        keys = redis(port, "DBSIZE")
        print(json.dumps({"mem": int(m["used_memory"]), "dataset": int(m["used_memory_dataset"]),
                          "keys": keys}))
    elif cmd == "owners":
        print(json.dumps(owners(int(sys.argv[2]))))
    elif cmd == "open":
        ids = open_sessions(int(sys.argv[2]), int(sys.argv[3]))
        print(len(ids))
    elif cmd == "logcount":
        run = json.load(open(sys.argv[2]))
        o = json.load(open(sys.argv[4]))
        n, foreign = access_log(sys.argv[3], run["s0"]["t"], run["s1"]["t"], o)
        run["log_requests"] = n
        run["foreign"] = foreign if len(o) and sys.argv[5] == "2" else None
        json.dump(run, open(sys.argv[2], "w"))
    elif cmd == "report":
        runs = [json.load(open(p)) for p in sys.argv[3:]]
        churn = json.load(open(sys.argv[2])) if os.path.exists(sys.argv[2]) else None
        report(runs, churn)
PY
py() { python3 "$WORK/bench.py" "$@"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port pid: until it listens, or the process died
  local i
  for i in $(seq 300); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

REDIS_PID="" REDIS_PORT=""
start_redis() { # [extra redis-server flags...]
  REDIS_PORT=$(py port)
  mkdir -p "$WORK/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --dir "$WORK/redis" --logfile "$WORK/redis/redis.log" --daemonize no "$@" &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$REDIS_PORT" "$REDIS_PID" || { echo "redis-server did not start" >&2; exit 1; }
}

PROXY_PIDS=() PROXY_PORTS=()
start_proxy() { # [extra flags...]
  local port pid
  port=$(py port)
  RUST_LOG=${RUST_LOG:-warn} "$BIN" --host 127.0.0.1 --port "$port" --json-response "$@" \
    >>"$WORK/proxy.log" 2>&1 </dev/null &
  pid=$!
  PIDS+=("$pid")
  wait_port "$port" "$pid" || { echo "mcp-proxy did not start (see $WORK/proxy.log)" >&2; tail -5 "$WORK/proxy.log" >&2; exit 1; }
  PROXY_PIDS+=("$pid") PROXY_PORTS+=("$port")
}
cluster_flags() { echo --redis "redis://127.0.0.1:$REDIS_PORT" --cluster-secret "bench-$RANDOM$RANDOM"; }

NGINX_PID="" NGINX_PORT=""
start_nginx() { # upstream ports...
  local d="$WORK/nginx" p servers=""
  rm -rf "$d"; mkdir -p "$d/tmp"; chmod 711 "$d"
  NGINX_PORT=$(py port)
  for p in "$@"; do servers+="    server 127.0.0.1:$p;"$'\n'; done
  local user=""
  [[ $(id -u) == 0 ]] && user="user nobody nogroup;"
  # As the README's configuration: round robin (nginx's default), HTTP/1.1 keep-alive to the
  # upstreams, no buffering (SSE). The access log (buffered) tells which upstream got which
  # session's request.
  cat >"$d/nginx.conf" <<EOF
$user
worker_processes $NGINX_WORKERS;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  log_format bench '\$msec \$request_method \$upstream_addr \$http_mcp_session_id';
  access_log $d/access.log bench buffer=256k;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  upstream mcp {
$servers    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://mcp;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_buffering off;
      proxy_read_timeout 1h;
    }
  }
}
EOF
  "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" -g 'daemon off;' &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$NGINX_PORT" "$NGINX_PID" || { echo "nginx did not start" >&2; cat "$d/error.log" >&2; exit 1; }
}

reset() { stop_all; PROXY_PIDS=() PROXY_PORTS=() REDIS_PID="" REDIS_PORT="" NGINX_PID="" NGINX_PORT=""; }

spec() { # the processes a snapshot reads
  local proxies redis=null
  proxies=$(IFS=,; echo "${PROXY_PIDS[*]}")
  [[ -n $REDIS_PID ]] && redis="[$REDIS_PID, $REDIS_PORT]"
  echo "{\"proxy\": [$proxies], \"nginx\": ${NGINX_PID:-0}, \"redis\": $redis}"
}

RUNS=()
run_config() { # config rep
  local c=$1 rep=$2 url out="$WORK/run-$1-$2.json"
  reset
  case $c in
    A) start_proxy; url="http://127.0.0.1:${PROXY_PORTS[0]}/mcp" ;;
    B) start_proxy; start_nginx "${PROXY_PORTS[0]}"; url="http://127.0.0.1:$NGINX_PORT/mcp" ;;
    L) start_redis; start_proxy $(cluster_flags); start_proxy $(cluster_flags)
       url="http://127.0.0.1:${PROXY_PORTS[0]}/mcp" ;;
    C) start_redis
       local flags; flags=$(cluster_flags)
       start_proxy $flags; start_proxy $flags
       start_nginx "${PROXY_PORTS[@]}"; url="http://127.0.0.1:$NGINX_PORT/mcp" ;;
  esac
  local sp launch; sp=$(spec)
  log "[$rep/$REPEATS] $c: loadgen -c $CONNS --sessions $SESSIONS -d $DURATION --warmup $WARMUP -> $url"
  launch=$(date +%s.%N)
  "$LOADGEN" --url "$url" --mode session -c "$CONNS" --sessions "$SESSIONS" -d "$DURATION" \
    --warmup "$WARMUP" --meta "config=$c" >"$WORK/loadgen-$c-$rep.json" 2>"$WORK/loadgen-$c-$rep.err" &
  local lg=$!
  # The window sits inside loadgen's measured one: it starts 1 s after the warm-up should be
  # over (the sessions open in milliseconds) and ends 0.75 s before loadgen stops measuring.
  # One Python process keeps both deadlines, from the launch time (no drift under load).
  local snaps
  snaps=$(py window "$sp" "$launch" "$WARMUP" "$DURATION" "$([[ $c == C ]] && echo "$REDIS_PORT" || echo 0)")
  wait "$lg" || { log "$c: loadgen failed:"; cat "$WORK/loadgen-$c-$rep.err" >&2; }
  python3 - "$out" "$c" "$rep" "$WORK/loadgen-$c-$rep.json" "$snaps" "$WORK/owners-$c-$rep.json" <<'PY'
import json, sys
out, c, rep, lg, snaps, owners = sys.argv[1:]
try:
    loadgen = json.load(open(lg))
except ValueError:
    loadgen = {"fatal": "no output"}
snaps = json.loads(snaps)
json.dump(snaps["owners"], open(owners, "w"))
json.dump({"config": c, "rep": int(rep), "loadgen": loadgen, "s0": snaps["s0"], "s1": snaps["s1"]}, open(out, "w"))
PY
  local nginx_up=$NGINX_PID
  reset # nginx flushes its access log on exit
  if [[ -n $nginx_up ]]; then
    local ups=1; [[ $c == C ]] && ups=2
    py logcount "$out" "$WORK/nginx/access.log" "$WORK/owners-$c-$rep.json" "$ups"
  fi
  RUNS+=("$out")
}

churn_section() {
  local out="$WORK/churn.json"
  reset
  # Redis 7 allocates a latency histogram per command at its first call (latency-tracking):
  # a fixed ~100 KB step at the first PSETEX/DEL/GET that has nothing to do with sessions.
  start_redis --latency-tracking no
  local flags; flags=$(cluster_flags)
  start_proxy $flags --session-idle-timeout "$IDLE"; start_proxy $flags --session-idle-timeout "$IDLE"
  start_nginx "${PROXY_PORTS[@]}"
  local url="http://127.0.0.1:$NGINX_PORT/mcp" start after before live expired t0 keys i
  start=$(py mem "$REDIS_PORT")
  log "churn: $CHURN sessions through nginx -> 2 instances + Redis"
  "$LOADGEN" --url "$url" --mode churn -c "$CONNS" --iterations "$CHURN" -d 120 --settle 1 \
    >"$WORK/churn-loadgen.json" 2>"$WORK/churn-loadgen.err" || { log "churn loadgen failed"; cat "$WORK/churn-loadgen.err" >&2; }
  after=$(py mem "$REDIS_PORT")
  before=$after
  log "churn: opening $LIVE sessions and leaving them open"
  py open "$NGINX_PORT" "$LIVE" >/dev/null
  live=$(py mem "$REDIS_PORT")
  local one record_bytes=null
  one=$(py redis "$REDIS_PORT" RANDOMKEY)
  [[ $one == \"mcp:session:* ]] && record_bytes=$(py redis "$REDIS_PORT" MEMORY USAGE "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]))' "$one")")
  log "churn: waiting for the idle timeout ($IDLE s) to expire them"
  t0=$(date +%s.%N)
  expired=""
  for i in $(seq $(((IDLE + 90) * 4))); do
    sleep 0.25
    keys=$(py redis "$REDIS_PORT" DBSIZE)
    if [[ $keys -le $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["keys"])' "$start") ]]; then
      expired=$(py mem "$REDIS_PORT")
      break
    fi
  done
  local waited; waited=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
  python3 - "$out" "$WORK/churn-loadgen.json" "$start" "$after" "$before" "$live" "${expired:-null}" \
    "$LIVE" "$waited" "$IDLE" "$record_bytes" <<'PY'
import json, sys
out, lg, start, after, before, live, expired, n, waited, idle, rec = sys.argv[1:]
try:
    loadgen = json.load(open(lg))
except ValueError:
    loadgen = {}
d = {"start": json.loads(start), "after_churn": json.loads(after), "before_live": json.loads(before),
     "live": dict(json.loads(live), sessions=int(n)), "loadgen": loadgen, "idle": idle,
     "record_bytes": json.loads(rec)}
d["after_churn"]["sessions"] = loadgen.get("sessions_completed")
e = json.loads(expired)
if e is not None:
    d["expired"] = dict(e, after_s=float(waited))
json.dump(d, open(out, "w"))
PY
  reset
}

read -r la _ </proc/loadavg
log "work dir $WORK; load average $la before starting (2 shared cores: other work skews every figure)"
for rep in $(seq "$REPEATS"); do
  for c in A B L C; do
    if [[ " $ONLY " == *" $c "* ]]; then run_config "$c" "$rep"; fi
  done
done
if [[ " $ONLY " == *" churn "* ]]; then churn_section; fi
echo
echo "mcp-proxy cluster bench: stateful JSON, -c $CONNS, $SESSIONS sessions, -d $DURATION s, warm-up $WARMUP s, repeats $REPEATS, nginx workers $NGINX_WORKERS, $(nproc) CPUs"
echo
py report "$WORK/churn.json" "${RUNS[@]}"
