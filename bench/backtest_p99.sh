#!/usr/bin/env bash
# Does a heavy backtest raise /callback latency? callwatch (release,
# fsync=batch, journal on a real disk, the example rules loaded) gets
# paced callback traffic from wrk, alternately with nothing else running
# ("idle") and while POST /api/v1/backtest runs a CPU-heavy rule over a
# journal of a few hundred thousand callbacks, one backtest after another
# ("backtest"). Prints p50/p99 of each run and the medians; target:
# backtest p99 at most 2x idle p99. Results: BENCHMARKS.md.
#
# Needs python3, curl and wrk. Env knobs: CALLS (calls in the journal and
# in the callback trace, ~5.8 callbacks each; default 60000), DURATION
# (per wrk run, default 8s), ROUNDS (idle/backtest pairs, default 3),
# DELAY (ms per connection between requests, default 10), CONNECTIONS
# (default 32), THREADS (wrk's, default 1), RULES (default the example
# rules in rules/), CALLWATCH (a built binary to measure instead of
# building), BENCH_DIR (work dir; on a real disk, not tmpfs).
set -euo pipefail

cd "$(dirname "$0")/.."
CALLS=${CALLS:-60000}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
DELAY=${DELAY:-10}
CONNECTIONS=${CONNECTIONS:-32}
# One wrk thread: the paced load is light, the cores are the daemon's.
THREADS=${THREADS:-1}
RULES=${RULES:-rules}
BENCH_NAME=backtest
# shellcheck source=bench/common.sh
. bench/common.sh
[ "$build_release" = no ] || cargo build --release --quiet --bin callwatch

# The journal the backtests read: an hour ago, so it is in range and
# older than the rules' windows (the daemon's start skips past it).
CW_STATE="$BENCH_DIR/state"
mkdir -p "$CW_STATE/journal"
"$CALLWATCH" simulate --family a --calls "$CALLS" --rate 500 --seed 5 \
  --start "$(( $(date +%s) - 3600 ))" --out "$CW_STATE/journal/segment-0000000001.jsonl" 2>/dev/null
echo "journal: $(wc -l < "$CW_STATE/journal/segment-0000000001.jsonl") callbacks"
# The traffic: current event times, another seed.
make_trace

# A rule that costs real CPU on every event: a loop in check.
python3 - "$BENCH_DIR/backtest.json" <<'PY'
import json, sys
source = """const RULE = #{
    events: ["start_call", "receive_call", "accept_call", "call_end", "not_answer_call"],
    group_by: ["user_id"],
    window: "30m",
};

fn check(w) {
    let s = 0;
    for i in 0..300 { s += i * w.count(); }
    s < 0
}
"""
json.dump({"name": "heavy", "source": source, "since": "24h"}, open(sys.argv[1], "w"))
PY

start_callwatch '[console]
backtest_timeout = "60s"'

# Prints "rps p50_ms p99_ms non2xx ..." of one paced wrk run.
paced() {
  WRK_DELAY_MS=$DELAY run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid"
}

backtests() {
  while true; do
    curl -s -o "$BENCH_DIR/backtest.out" -w '%{http_code} %{time_total}\n' \
      -X POST --data-binary @"$BENCH_DIR/backtest.json" \
      "http://127.0.0.1:$CW_PORT/api/v1/backtest" >>"$BENCH_DIR/backtests.log"
  done
}

# Waits until no backtest runs (a probe that does not load is a 400
# when the runner is free, a 429 while one runs).
settle() {
  for _ in $(seq 900); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"source":"x"}' \
      "http://127.0.0.1:$CW_PORT/api/v1/backtest")
    [ "$code" != 429 ] && return
    sleep 0.1
  done
}

idle99=(); bt99=()
for r in $(seq "$ROUNDS"); do
  read -r rps p50 p99 bad _ < <(paced)
  echo "round $r idle:     p50 ${p50} ms  p99 ${p99} ms  ${rps} req/s  non-2xx $bad"
  idle99+=("$p99")
  backtests & loop_pid=$!
  pids+=("$loop_pid")
  sleep 1
  read -r rps p50 p99 bad _ < <(paced)
  kill "$loop_pid"; wait "$loop_pid" 2>/dev/null || true
  unset 'pids[-1]'   # stopped: nothing for the exit trap to kill
  echo "round $r backtest: p50 ${p50} ms  p99 ${p99} ms  ${rps} req/s  non-2xx $bad"
  bt99+=("$p99")
  settle
done
echo "backtests answered: $(cut -d' ' -f1 "$BENCH_DIR/backtests.log" | sort | uniq -c | tr '\n' ' ')"
echo "last backtest: $(head -c 400 "$BENCH_DIR/backtest.out")"
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
mi=$(median "${idle99[@]}"); mb=$(median "${bt99[@]}")
echo "median p99: idle $mi ms, during backtests $mb ms, ratio $(python3 -c "print(round($mb / $mi, 2))")"
