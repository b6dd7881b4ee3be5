#!/usr/bin/env bash
# Instructions per callback, counted by valgrind (callgrind): a measure of
# callwatch's ingest cost that the other tenants of a shared machine do
# not move, unlike req/s or CPU time. Starts the daemon under callgrind
# (the same config as bench/ingest.sh), zeroes the counters once it is
# up, posts the trace with wrk at low concurrency for DURATION, dumps the
# counters and prints instructions (Ir) per journaled callback (user
# space, all threads; the kernel's share is not counted).
#
# Needs what bench/ingest.sh needs plus valgrind. Env: CALLWATCH (the
# binary, default the release build of this tree), CALLS, DURATION
# (default 20s), CONNECTIONS (default 8), FSYNC, RULES, BENCH_DIR.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-8}
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install -y valgrind" >&2; exit 1; }
BENCH_NAME=instr
# shellcheck source=bench/common.sh
. bench/common.sh

[ "$build_release" = no ] || cargo build --release --quiet --bin callwatch
make_trace

real=$CALLWATCH
CALLWATCH="$BENCH_DIR/under-callgrind"
cat >"$CALLWATCH" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$BENCH_DIR/callgrind.out "$real" "\$@"
EOF
chmod +x "$CALLWATCH"
# Under valgrind the daemon takes a while to come up and be ready.
UP_TRIES=1200 start_callwatch
read_counts
before=$cw_acc
callgrind_control -z "$cw_pid" >/dev/null
run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid" >/dev/null
callgrind_control -d "$cw_pid" >/dev/null
read_counts
n=$((cw_acc - before))
stop_callwatch
dump=$(ls -t "$BENCH_DIR"/callgrind.out* | grep -v '\.out$' | head -n 1 || true)
[ -n "$dump" ] || dump="$BENCH_DIR/callgrind.out"
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
echo
echo "$n callbacks journaled while counting; $total instructions in all threads"
awk -v t="$total" -v n="$n" 'BEGIN { printf "instructions per callback: %.0f\n", n ? t / n : 0 }'
echo "callgrind data: $dump (callgrind_annotate for more)"
