#!/usr/bin/env bash
# Where callwatch's CPU goes under the ingest benchmark's load: runs a
# fresh release daemon (the same config as bench/ingest.sh), drives it with
# wrk at full rate, records it with `perf record` for the run, and prints
# the top functions by their own (self) share of callwatch's CPU samples,
# the share of each thread, and the CPU time per request.
#
# Needs what bench/ingest.sh needs plus `perf` (Debian: `apt-get install -y
# linux-perf`). Software clock sampling (cpu-clock), so it works in VMs
# without hardware counters. Results: BENCHMARKS.md.
#
# Env knobs: as bench/ingest.sh (CALLS, DURATION, THREADS, CONNECTIONS,
# FSYNC, RULES, BENCH_DIR), plus FREQ (samples per second, default 2999),
# TOP (functions to list, default 40) and CALLGRAPH (e.g. `dwarf`: also
# record call chains, for `perf report --children` afterwards; off by
# default because DWARF unwinding costs the daemon CPU itself).
set -euo pipefail

cd "$(dirname "$0")/.."
FREQ=${FREQ:-2999}
TOP=${TOP:-40}
CALLGRAPH=${CALLGRAPH:-}
command -v perf >/dev/null || { echo "perf not found: apt-get install -y linux-perf" >&2; exit 1; }
BENCH_NAME=profile
# shellcheck source=bench/common.sh
. bench/common.sh

[ "$build_release" = no ] || cargo build --release --quiet --bin callwatch
make_trace

# A short warm-up on a daemon of its own, so the measured one starts from
# an empty journal and dedup set as in bench/ingest.sh.
start_callwatch
DURATION=2s run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid" >/dev/null
stop_callwatch

start_callwatch
graph=()
[ -z "$CALLGRAPH" ] || graph=(--call-graph "$CALLGRAPH")
perf record -q -e cpu-clock -F "$FREQ" "${graph[@]}" -p "$cw_pid" -o "$BENCH_DIR/perf.data" &
perf_pid=$!
sleep 0.5
read -r rps p50 p99 bad n cpu _ < <(run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid")
kill -INT "$perf_pid"
wait "$perf_pid" || true
stop_callwatch

echo
echo "callwatch: $rps req/s, p50 $p50 ms, p99 $p99 ms, $n requests, $bad non-2xx,"
echo "  $cw_acc journaled, $cw_dup dedup hits, $cpu µs of CPU per request,"
echo "  $cw_fsyncs journal fsyncs (mean $cw_fsync_ms ms)"
# perf pads its columns to the terminal's width (or far beyond without one).
report() {
  perf report -i "$BENCH_DIR/perf.data" --no-children --stdio -q -g none "$@" 2>/dev/null |
    sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' | grep -v '^$'
}
echo
echo "== CPU by thread =="
report --sort comm | head -n 12
echo
echo "== kernel / callwatch / libraries =="
report --sort dso | head -n 6
echo
echo "== top $TOP functions, self share of callwatch's samples ([k]: kernel) =="
report --sort symbol | head -n "$TOP"
echo
echo "perf data: $BENCH_DIR/perf.data (perf report -i ... for more)"
