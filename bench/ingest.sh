#!/usr/bin/env bash
# Ingest benchmark: callwatch (release, fsync=batch, journal on a real disk)
# against a bare warp handler returning the same 200 body, both driven by
# wrk with the same realistic trace from `callwatch simulate` in the same run.
#
# Each round measures, back to back: the bare handler at full rate,
# callwatch at full rate, then callwatch paced at half its rate of that
# round, then the bare handler paced the same way (same connections and
# pause): the latency wrk itself and the shared cores add at that load.
# Prints requests/s, p50/p99 and the CPU time each process spent
# per request (and its context switches per request) for every round,
# then the medians over the rounds. Needs
# python3, curl and wrk (`apt-get install -y wrk`). Results and how to
# read them: BENCHMARKS.md.
#
# Env knobs: RUNS (alternating rounds, default 1; the published figures
# are medians of 5), CALLS (calls in the trace, ~6.9 callbacks each;
# default 80000 ≈ 550k callbacks, enough for 5 s at 100k req/s),
# DURATION (default 5s), DELAY (ms per connection between requests in
# the paced run, default 10), THREADS
# (default 2), CONNECTIONS (default 64), FSYNC (state.fsync, default
# batch), RULES (a rules directory to load, e.g. `rules`; default none),
# BENCH_DIR (work dir, default a fresh one under target/; it must be on a
# real disk, not tmpfs, or fsync costs nothing).
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
DELAY=${DELAY:-10}
BENCH_NAME=ingest
# shellcheck source=bench/common.sh
. bench/common.sh
BARE_PORT=${BARE_PORT:-$(free_port)}

[ "$build_release" = no ] || cargo build --release --quiet --bin callwatch --example bare_warp
make_trace
start_bare

echo "warm-up"
run_wrk "http://127.0.0.1:$BARE_PORT" "$CONNECTIONS" "$bare_pid" >/dev/null
start_callwatch
run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid" >/dev/null
stop_callwatch

row() { printf '%-5s %-34s %8s %7s %7s %7s %9s %6s %7s %7s\n' "$@"; }
echo "measuring ($RUNS rounds, fsync=$FSYNC, rules=${RULES:-none})"
row "round" "" "req/s" "p50 ms" "p99 ms" "non-2xx" "journaled" "dedup" "cpu µs" "ctxsw"
results="$BENCH_DIR/rounds.txt"
: >"$results"
wrapped=0
for round in $(seq "$RUNS"); do
  read -r b_rps b_p50 b_p99 b_bad _ b_cpu b_cs < <(run_wrk "http://127.0.0.1:$BARE_PORT" "$CONNECTIONS" "$bare_pid")
  start_callwatch
  read -r c_rps c_p50 c_p99 c_bad _ c_cpu c_cs < <(run_wrk "http://127.0.0.1:$CW_PORT" "$CONNECTIONS" "$cw_pid")
  stop_callwatch
  c_acc=$cw_acc c_dup=$cw_dup c_fsyncs=$cw_fsyncs c_fsync_ms=$cw_fsync_ms

  # About half of callwatch's maximum rate: each connection pauses DELAY ms
  # after every reply, with enough connections that conns * 1000 / DELAY is
  # half the maximum (replies take well under DELAY at that load).
  half=$((c_rps / 2))
  half_conns=$(((half * DELAY + 999) / 1000))
  [ "$half_conns" -ge "$THREADS" ] || half_conns=$THREADS
  start_callwatch
  read -r h_rps h_p50 h_p99 h_bad _ h_cpu h_cs < <(WRK_DELAY_MS=$DELAY run_wrk "http://127.0.0.1:$CW_PORT" "$half_conns" "$cw_pid")
  stop_callwatch
  h_acc=$cw_acc h_dup=$cw_dup
  read -r hb_rps hb_p50 hb_p99 hb_bad _ hb_cpu hb_cs < <(WRK_DELAY_MS=$DELAY run_wrk "http://127.0.0.1:$BARE_PORT" "$half_conns" "$bare_pid")

  row "$round" "bare warp ($CONNECTIONS conns)" "$b_rps" "$b_p50" "$b_p99" "$b_bad" "-" "-" "$b_cpu" "$b_cs"
  row "$round" "callwatch ($CONNECTIONS conns)" "$c_rps" "$c_p50" "$c_p99" "$c_bad" "$c_acc" "$c_dup" "$c_cpu" "$c_cs"
  row "$round" "callwatch paced ($half_conns conns, ${DELAY} ms)" "$h_rps" "$h_p50" "$h_p99" "$h_bad" "$h_acc" "$h_dup" "$h_cpu" "$h_cs"
  row "$round" "bare warp paced (same)" "$hb_rps" "$hb_p50" "$hb_p99" "$hb_bad" "-" "-" "$hb_cpu" "$hb_cs"
  awk -v a="$c_rps" -v b="$b_rps" -v n="$c_acc" -v f="$c_fsyncs" -v ms="$c_fsync_ms" 'BEGIN {
    printf "      callwatch / bare: %.0f %%; full-rate run: %d fsyncs, mean %.2f ms, %.1f callbacks each\n", 100 * a / b, f, ms, f ? n / f : 0 }'
  echo "$b_rps $c_rps $h_rps $h_p99 $b_cpu $c_cpu $h_cpu $c_fsync_ms $b_cs $c_cs $hb_p99 $hb_rps" >>"$results"
  if [ "$c_dup" != 0 ] || [ "$h_dup" != 0 ]; then wrapped=1; fi
done

# Medians over the rounds (the ratio is taken per round, then its median).
echo
awk "$AWK_MEDIAN"'
  { n++; b[n] = $1; c[n] = $2; h[n] = $3; hp[n] = $4; r[n] = 100 * $2 / $1; bc[n] = $5; cc[n] = $6; hc[n] = $7; fm[n] = $8; bs[n] = $9; cs[n] = $10; hbp[n] = $11; hb[n] = $12 }
  END {
    printf "median of %d rounds: bare %.0f req/s (%.1f µs CPU/req), callwatch %.0f req/s (%.1f µs CPU/req)\n", n, median(b, n), median(bc, n), median(c, n), median(cc, n)
    printf "callwatch / bare: %.0f %% (median of the per-round ratios)\n", median(r, n)
    printf "paced at half: %.0f req/s, p99 %.3f ms (%.1f µs CPU/req); bare paced the same: %.0f req/s, p99 %.3f ms\n", median(h, n), median(hp, n), median(hc, n), median(hb, n), median(hbp, n)
    printf "journal fsync at full rate: mean %.2f ms (median over rounds)\n", median(fm, n)
    printf "context switches per request at full rate: bare %.3f, callwatch %.3f\n", median(bs, n), median(cs, n)
  }' "$results"
if [ "$wrapped" = 1 ]; then
  echo "warning: the trace wrapped (dedup hits > 0); raise CALLS or lower DURATION" >&2
fi
