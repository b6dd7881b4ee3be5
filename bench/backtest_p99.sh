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
# (default 32), BENCH_DIR (work dir; on a real disk, not tmpfs).
set -euo pipefail

cd "$(dirname "$0")/.."
CALLS=${CALLS:-60000}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
DELAY=${DELAY:-10}
CONNECTIONS=${CONNECTIONS:-32}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=${PORT:-$(free_port)}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
mkdir -p target
BENCH_DIR=${BENCH_DIR:-$(mktemp -d -p "$PWD/target" bench-backtest.XXXXXX)}
echo "work dir: $BENCH_DIR"
cargo build --release --quiet --bin callwatch

# The journal the backtests read: an hour ago, so it is in range and
# older than the rules' windows (the daemon's start skips past it).
mkdir -p "$BENCH_DIR/state/journal" "$BENCH_DIR/rules"
target/release/callwatch simulate --family a --calls "$CALLS" --rate 500 --seed 5 \
  --start "$(( $(date +%s) - 3600 ))" --out "$BENCH_DIR/state/journal/segment-0000000001.jsonl" 2>/dev/null
echo "journal: $(wc -l < "$BENCH_DIR/state/journal/segment-0000000001.jsonl") callbacks"
# The traffic: current event times, another seed.
target/release/callwatch simulate --family a --calls "$CALLS" --rate 500 --seed 11 \
  --start "$(date +%s)" --out "$BENCH_DIR/trace.jsonl" 2>/dev/null
python3 - "$BENCH_DIR/trace.jsonl" "$BENCH_DIR/trace.tsv" <<'PY'
import json, sys, urllib.parse
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
    for line in src:
        r = json.loads(line)
        out.write("/callback?" + urllib.parse.urlencode(r["query"]) + "\t"
                  + json.dumps(r["body"], separators=(",", ":")) + "\n")
PY

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

printf '[server]\nlisten = "127.0.0.1:%s"\n[state]\ndir = "%s/state"\nfsync = "batch"\n[rules]\ndir = "%s/rules"\n[console]\nbacktest_timeout = "60s"\n[log]\nlevel = "warn"\n' \
  "$PORT" "$BENCH_DIR" "$BENCH_DIR" >"$BENCH_DIR/callwatch.toml"
cp rules/*.rhai "$BENCH_DIR/rules/"
target/release/callwatch run -c "$BENCH_DIR/callwatch.toml" 2>"$BENCH_DIR/callwatch.log" &
cw_pid=$!
loop_pid=
cleanup() {
  if [ -n "$loop_pid" ]; then kill "$loop_pid" 2>/dev/null || true; fi
  kill "$cw_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 300); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz" || { cat "$BENCH_DIR/callwatch.log" >&2; exit 1; }

# Prints "p50_ms p99_ms rps non2xx" of one paced wrk run.
paced() {
  local out
  out=$(TRACE_TSV="$BENCH_DIR/trace.tsv" WRK_THREADS=1 WRK_DELAY_MS="$DELAY" \
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/wrk_trace.lua "http://127.0.0.1:$PORT")
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
    /^Requests\/sec/ { rps = $2 }
    /Non-2xx/ { bad = $NF }
    END { printf "%.2f %.2f %d %d\n", p50, p99, rps, bad + 0 }'
}

backtests() {
  while true; do
    curl -s -o "$BENCH_DIR/backtest.out" -w '%{http_code} %{time_total}\n' \
      -X POST --data-binary @"$BENCH_DIR/backtest.json" \
      "http://127.0.0.1:$PORT/api/v1/backtest" >>"$BENCH_DIR/backtests.log"
  done
}

# Waits until no backtest runs (a probe that does not load is a 400
# when the runner is free, a 429 while one runs).
settle() {
  for _ in $(seq 900); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"source":"x"}' \
      "http://127.0.0.1:$PORT/api/v1/backtest")
    [ "$code" != 429 ] && return
    sleep 0.1
  done
}

idle99=(); bt99=()
for r in $(seq "$ROUNDS"); do
  read -r p50 p99 rps bad < <(paced)
  echo "round $r idle:     p50 ${p50} ms  p99 ${p99} ms  ${rps} req/s  non-2xx $bad"
  idle99+=("$p99")
  backtests & loop_pid=$!
  sleep 1
  read -r p50 p99 rps bad < <(paced)
  kill "$loop_pid"; wait "$loop_pid" 2>/dev/null || true; loop_pid=
  echo "round $r backtest: p50 ${p50} ms  p99 ${p99} ms  ${rps} req/s  non-2xx $bad"
  bt99+=("$p99")
  settle
done
echo "backtests answered: $(cut -d' ' -f1 "$BENCH_DIR/backtests.log" | sort | uniq -c | tr '\n' ' ')"
echo "last backtest: $(head -c 400 "$BENCH_DIR/backtest.out")"
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
mi=$(median "${idle99[@]}"); mb=$(median "${bt99[@]}")
echo "median p99: idle $mi ms, during backtests $mb ms, ratio $(python3 -c "print(round($mb / $mi, 2))")"
