#!/usr/bin/env bash
# Where callwatch's context switches come from under the ingest
# benchmark's load: one fresh release daemon (the same config as
# bench/ingest.sh) driven by wrk at full rate, with each thread's
# voluntary (it slept: a futex, epoll or fsync wait) and involuntary
# (preempted) switches counted from /proc over the run, grouped by thread
# name and divided by the requests wrk completed. bench/ingest.sh prints
# only the total; this says which hand-off to cut.
#
# Needs what bench/ingest.sh needs. Env knobs: as bench/ingest.sh (CALLS,
# DURATION, THREADS, CONNECTIONS, FSYNC, RULES, BENCH_DIR, CALLWATCH),
# plus DELAY_MS (optional: each connection pauses this long between
# requests, as in the paced run).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=wakeups
# shellcheck source=bench/common.sh
. bench/common.sh

[ "$build_release" = no ] || cargo build --release --quiet --bin callwatch
make_trace

# "tid name voluntary involuntary" for each thread of a process.
per_thread() {
  local t
  for t in /proc/"$1"/task/*; do
    awk -v tid="${t##*/}" '
      /^Name:/ { n = $2 }
      /^voluntary_ctxt_switches/ { v = $2 }
      /^nonvoluntary_ctxt_switches/ { i = $2 }
      END { print tid, n, v, i }' "$t/status" 2>/dev/null || true
  done
}

start_callwatch
DURATION=2s run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid" >/dev/null
per_thread "$cw_pid" >"$BENCH_DIR/before.txt"
read -r rps p50 p99 bad n cpu cs < <(WRK_DELAY_MS=${DELAY_MS:-} run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid")
per_thread "$cw_pid" >"$BENCH_DIR/after.txt"
stop_callwatch

echo "callwatch: $rps req/s, p99 $p99 ms, $n requests, $bad non-2xx, $cpu µs CPU/req,"
echo "  $cs switches/req, $cw_fsyncs fsyncs (mean $cw_fsync_ms ms, $((cw_fsyncs ? n / cw_fsyncs : 0)) requests each)"
printf '%-18s %7s %12s %12s\n' "thread" "threads" "vol/req" "invol/req"
awk -v n="$n" '
  FNR == NR { v0[$1] = $3; i0[$1] = $4; next }
  { name = $2; dv[name] += $3 - v0[$1]; di[name] += $4 - i0[$1]; k[name]++ }
  END { for (t in dv) printf "%-18s %7d %12.3f %12.3f\n", t, k[t], dv[t] / n, di[t] / n }
' "$BENCH_DIR/before.txt" "$BENCH_DIR/after.txt" | sort -k3 -nr
