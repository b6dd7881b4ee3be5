# Shared by the bench scripts (sourced, not run; each one's header names
# its knobs): the knobs they share and the work dir, the trace, a fresh
# callwatch per measured run, the bare warp baseline, wrk and its
# parsing, the CPU each process spent, and stopping every process started
# on exit. A script sets its own defaults for these knobs before sourcing
# this file; BENCH_NAME names its work dir.

# The knobs, with the defaults bench/ingest.sh documents.
CALLS=${CALLS:-80000}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
FSYNC=${FSYNC:-batch}
RULES=${RULES:-}
# The work dir: a fresh one under target/ unless named. It must be on a
# real disk, not tmpfs, or fsync costs nothing.
mkdir -p target
BENCH_DIR=${BENCH_DIR:-$(mktemp -d -p "$PWD/target" "bench-${BENCH_NAME:-run}.XXXXXX")}
echo "work dir: $BENCH_DIR"

# The binaries measured: the release build of this tree unless named
# (CALLWATCH=/path/to/callwatch compares another build, without building).
build_release=${CALLWATCH:+no}
CALLWATCH=${CALLWATCH:-target/release/callwatch}
BARE_WARP=${BARE_WARP:-target/release/examples/bare_warp}

# Free ports by default: other processes on a shared machine may hold fixed ones.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
CW_PORT=${CW_PORT:-$(free_port)}

# The trace: current event times, calls spread over a few minutes; the
# legacy callback family, as the published numbers were measured with.
# Converted to the "target<TAB>body" lines bench/wrk_trace.lua posts.
make_trace() {
  "$CALLWATCH" simulate --family a --calls "$CALLS" --rate 500 --seed 11 \
    --start "$(date +%s)" --out "$BENCH_DIR/trace.jsonl"
  python3 - "$BENCH_DIR/trace.jsonl" "$BENCH_DIR/trace.tsv" <<'EOF'
import json, sys, urllib.parse
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        r = json.loads(line)
        target = "/callback?" + urllib.parse.urlencode(r["query"])
        out.write(target + "\t" + json.dumps(r["body"], separators=(",", ":")) + "\n")
EOF
  echo "trace: $(wc -l < "$BENCH_DIR/trace.tsv") callbacks"
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_up() {
  # UP_TRIES: a daemon under valgrind starts slowly.
  for _ in $(seq "${UP_TRIES:-100}"); do
    # Any HTTP answer means it is up (bare_warp has no /healthz).
    curl -s -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2
  exit 1
}

# An awk function for the scripts' summaries: the median of a[1..n]
# (insertion sort; a handful of rounds).
AWK_MEDIAN='
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }'

# CPU time (user + system) of a process so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Context switches (voluntary and not) of all of a process's threads: a
# count of wake-ups that, unlike CPU time, a busy machine barely moves.
ctx_switches() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }
CLK_TCK=$(getconf CLK_TCK)

# Every measured callwatch run gets a fresh daemon and state dir, so its
# dedup memory is empty and each callback is journaled (a repeat would
# only hit dedup, which is cheaper). RULES names a rules directory to
# load (default: none, as the published numbers were measured); CW_STATE
# names a state dir to start from instead (one the caller filled); $1,
# if given, is TOML appended to the config (more sections). Returns once
# /readyz answers 200.
run_no=0
start_callwatch() {
  run_no=$((run_no + 1))
  local dir="$BENCH_DIR/run$run_no" rules
  mkdir -p "$dir/rules"
  rules=${RULES:+$(realpath "$RULES")}
  cat >"$dir/callwatch.toml" <<EOF
[server]
listen = "127.0.0.1:$CW_PORT"
[state]
dir = "${CW_STATE:-$dir/state}"
fsync = "$FSYNC"
[rules]
dir = "${rules:-$dir/rules}"
[log]
level = "warn"
${1:-}
EOF
  "$CALLWATCH" run -c "$dir/callwatch.toml" 2>"$dir/callwatch.log" &
  cw_pid=$!
  pids+=("$cw_pid")
  wait_up "$CW_PORT"
  # Whatever answered must be this daemon, not one left on the port.
  kill -0 "$cw_pid" 2>/dev/null || { cat "$dir/callwatch.log" >&2; exit 1; }
  # Up is not ready: a daemon reading its journal or joining a cluster
  # answers 503 until it is.
  for _ in $(seq "${UP_TRIES:-300}"); do
    curl -sf -o /dev/null "http://127.0.0.1:$CW_PORT/readyz" && return
    kill -0 "$cw_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "callwatch not ready" >&2
  cat "$dir/callwatch.log" >&2
  exit 1
}

# Sets cw_acc and cw_dup from callwatch's metrics, and cw_fsyncs (count),
# cw_fsync_ms (mean latency) of the journal's fsyncs: with group commit,
# callbacks per fsync and the fsync latency bound the rate (connections /
# fsync latency at most).
read_counts() {
  read -r cw_acc cw_dup cw_fsyncs cw_fsync_ms < <(curl -s "http://127.0.0.1:$CW_PORT/metrics" | awk '
    /^callwatch_callbacks_total/ && /outcome="accepted"/ { a += $NF }
    /^callwatch_dedup_hits_total/ { d = $NF }
    /^callwatch_journal_fsync_seconds_sum/ { fs = $NF }
    /^callwatch_journal_fsync_seconds_count/ { fc = $NF }
    END { printf "%d %d %d %.2f\n", a, d, fc, fc ? 1000 * fs / fc : 0 }')
}

# Sets cw_acc, cw_dup, cw_fsyncs and cw_fsync_ms, then stops callwatch.
stop_callwatch() {
  read_counts
  kill -TERM "$cw_pid"
  local rc=0
  wait "$cw_pid" || rc=$?
  [ "$rc" = 0 ] || echo "callwatch exited with $rc" >&2
}

start_bare() {
  "$BARE_WARP" "127.0.0.1:$BARE_PORT" 2>"$BENCH_DIR/bare.log" &
  bare_pid=$!
  pids+=("$bare_pid")
  wait_up "$BARE_PORT"
}

# Runs wrk against a process; prints "rps p50_ms p99_ms non2xx requests
# cpu_us_per_request ctx_switches_per_request" (the process's own CPU
# time and context switches during the run, divided by the requests wrk
# completed: less sensitive to a busy machine than the rate).
run_wrk() {
  local url=$1 conns=$2 pid=$3 out t0 t1 s0 s1
  t0=$(cpu_ticks "$pid")
  s0=$(ctx_switches "$pid")
  out=$(TRACE_TSV="$BENCH_DIR/trace.tsv" WRK_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s bench/wrk_trace.lua "$url")
  t1=$(cpu_ticks "$pid")
  s1=$(ctx_switches "$pid")
  echo "$out" >>"$BENCH_DIR/wrk.log"
  echo "$out" | awk -v ticks=$((t1 - t0)) -v hz="$CLK_TCK" -v cs=$((s1 - s0)) '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    / requests in / { n = $1 }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.3f %.3f %d %d %.1f %.3f\n", rps, p50, p99, bad, n, n ? ticks * 1e6 / hz / n : 0, n ? cs / n : 0 }'
}
