#!/usr/bin/env bash
# Ingest benchmark: callwatch (release, fsync=batch, journal on a real disk)
# against a bare warp handler returning the same 200 body, both driven by
# wrk with the same realistic trace from `callwatch simulate` in the same run.
#
# Prints requests/s and p50/p99 at the maximum rate for both, then p50/p99
# for callwatch paced at half its maximum rate. Needs python3, curl and wrk
# (`apt-get install -y wrk`). Results and how to read them: BENCHMARKS.md.
#
# Env knobs: CALLS (calls in the trace, ~5.8 callbacks each; default 35000
# ≈ 200k callbacks), DURATION (default 5s), DELAY (ms per connection
# between requests in the paced run, default 10), THREADS (default 2),
# CONNECTIONS (default 64), FSYNC (state.fsync, default batch),
# BENCH_DIR (work dir, default a fresh one under target/; it must be on a
# real disk, not tmpfs, or fsync costs nothing).
set -euo pipefail

cd "$(dirname "$0")/.."
CALLS=${CALLS:-35000}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
# Free ports by default: other processes on a shared machine may hold fixed ones.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CW_PORT=${CW_PORT:-$(free_port)}
FSYNC=${FSYNC:-batch}
BARE_PORT=${BARE_PORT:-$(free_port)}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
mkdir -p target
BENCH_DIR=${BENCH_DIR:-$(mktemp -d -p "$PWD/target" bench-ingest.XXXXXX)}
echo "work dir: $BENCH_DIR"

cargo build --release --quiet --bin callwatch --example bare_warp

# The trace: current event times, calls spread over a few minutes; the
# legacy callback family, as the published numbers were measured with.
target/release/callwatch simulate --family a --calls "$CALLS" --rate 500 --seed 11 \
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

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_up() {
  for _ in $(seq 100); do
    # Any HTTP answer means it is up (bare_warp has no /healthz).
    curl -s -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2
  exit 1
}

# Every measured callwatch run gets a fresh daemon and state dir, so its
# dedup memory is empty and each callback is journaled (a repeat would
# only hit dedup, which is cheaper).
run_no=0
start_callwatch() {
  run_no=$((run_no + 1))
  local dir="$BENCH_DIR/run$run_no"
  mkdir -p "$dir/rules"
  cat >"$dir/callwatch.toml" <<EOF
[server]
listen = "127.0.0.1:$CW_PORT"
[state]
dir = "$dir/state"
fsync = "$FSYNC"
[rules]
dir = "$dir/rules"
[log]
level = "warn"
EOF
  target/release/callwatch run -c "$dir/callwatch.toml" 2>"$dir/callwatch.log" &
  cw_pid=$!
  pids+=("$cw_pid")
  wait_up "$CW_PORT"
  # Whatever answered must be this daemon, not one left on the port.
  kill -0 "$cw_pid" 2>/dev/null || { cat "$dir/callwatch.log" >&2; exit 1; }
}

# Sets cw_acc and cw_dup from callwatch's metrics, then stops it.
stop_callwatch() {
  read -r cw_acc cw_dup < <(curl -s "http://127.0.0.1:$CW_PORT/metrics" | awk '
    /^callwatch_callbacks_total/ && /outcome="accepted"/ { a += $NF }
    /^callwatch_dedup_hits_total/ { d = $NF }
    END { print a + 0, d + 0 }')
  kill -TERM "$cw_pid"
  local rc=0
  wait "$cw_pid" || rc=$?
  [ "$rc" = 0 ] || echo "callwatch exited with $rc" >&2
}

target/release/examples/bare_warp "127.0.0.1:$BARE_PORT" 2>"$BENCH_DIR/bare.log" &
pids+=($!)
wait_up "$BARE_PORT"

# Runs wrk; prints "rps p50_ms p99_ms non2xx".
run_wrk() {
  local url=$1 conns=$2 out
  out=$(TRACE_TSV="$BENCH_DIR/trace.tsv" WRK_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s bench/wrk_trace.lua "$url")
  echo "$out" >>"$BENCH_DIR/wrk.log"
  echo "$out" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad }'
}

echo "warm-up"
run_wrk "http://127.0.0.1:$BARE_PORT" "$CONNECTIONS" >/dev/null
start_callwatch
run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" >/dev/null
stop_callwatch

echo "measuring"
read -r bare_rps bare_p50 bare_p99 bare_bad < <(run_wrk "http://127.0.0.1:$BARE_PORT" "$CONNECTIONS")
start_callwatch
read -r cw_rps cw_p50 cw_p99 cw_bad < <(run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS")
stop_callwatch
m_acc=$cw_acc m_dup=$cw_dup

# About half of callwatch's maximum rate: each connection pauses DELAY ms
# after every reply, with enough connections that conns * 1000 / DELAY is
# half the maximum (replies take well under DELAY at that load).
DELAY=${DELAY:-10}
half=$((cw_rps / 2))
half_conns=$(( (half * DELAY + 999) / 1000 ))
[ "$half_conns" -ge "$THREADS" ] || half_conns=$THREADS
start_callwatch
read -r h_rps h_p50 h_p99 h_bad < <(WRK_DELAY_MS=$DELAY run_wrk "http://127.0.0.1:$CW_PORT" "$half_conns")
stop_callwatch
h_acc=$cw_acc h_dup=$cw_dup

echo
row() { printf '%-38s %8s %8s %8s %8s %9s %6s\n' "$@"; }
row "" "req/s" "p50 ms" "p99 ms" "non-2xx" "journaled" "dedup"
row "bare warp ($CONNECTIONS conns)" "$bare_rps" "$bare_p50" "$bare_p99" "$bare_bad" "-" "-"
row "callwatch ($CONNECTIONS conns)" "$cw_rps" "$cw_p50" "$cw_p99" "$cw_bad" "$m_acc" "$m_dup"
row "callwatch paced ($half_conns conns, ${DELAY} ms)" "$h_rps" "$h_p50" "$h_p99" "$h_bad" "$h_acc" "$h_dup"
awk -v a="$cw_rps" -v b="$bare_rps" 'BEGIN { printf "callwatch / bare: %.0f %%\n", 100 * a / b }'
if [ "$m_dup" != 0 ] || [ "$h_dup" != 0 ]; then
  echo "warning: the trace wrapped (dedup hits > 0); raise CALLS or lower DURATION" >&2
fi
