#!/usr/bin/env bash
# Recovery benchmark (BENCHMARKS.md, "Recovery"): time from starting
# `callwatch run` until /readyz answers 200, with a journal of N callbacks
# (default 1 000 000) whose received_at are current, and the shipped rules.
#
#   cargo build --release && bench/recovery.sh            # N=1000000 RUNS=3
#   N=200000 RUNS=1 BIN=target/debug/callwatch bench/recovery.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
RUNS=${RUNS:-3}
BIN=${BIN:-target/release/callwatch}
DIR=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
PID=

[ -x "$BIN" ] || { echo "$BIN not found: cargo build --release (or set BIN)" >&2; exit 1; }
"$BIN" simulate --family a --calls $((N / 5 + 1000)) --rate 500 --users 5000 \
  --out "$DIR/trace.jsonl" 2>/dev/null
mkdir -p "$DIR/data/journal"
# The first N callbacks, moved so the newest arrived a second ago.
python3 - "$DIR/trace.jsonl" "$DIR/data/journal/segment-0000000001.jsonl" "$N" <<'PY'
import itertools, json, sys, time
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [json.loads(l) for l in itertools.islice(open(src), n)]
shift_ms = int(time.time() * 1000) - 1000 - lines[-1]["received_at"]
with open(dst, "w") as out:
    for r in lines:
        r["received_at"] += shift_ms
        for k in ("EventTime", "StartCallTs", "AcceptTs", "EndTs"):
            if isinstance(r["body"].get(k), int):
                r["body"][k] += shift_ms // 1000
        out.write(json.dumps(r, separators=(",", ":")) + "\n")
print(f"journal: {len(lines)} callbacks, {sum(1 for _ in open(dst))} lines", file=sys.stderr)
PY
ls -l "$DIR/data/journal"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$DIR/callwatch.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
[rules]
dir = "$PWD/rules"
[state]
dir = "$DIR/data"
TOML
for run in $(seq "$RUNS"); do
    start=$(date +%s%N)
    "$BIN" run -c "$DIR/callwatch.toml" >/dev/null 2>"$DIR/stderr.log" &
    PID=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$PORT/readyz"; do
        kill -0 "$PID" || { cat "$DIR/stderr.log"; exit 1; }
        sleep 0.01
    done
    end=$(date +%s%N)
    rss=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
    echo "run $run: ready after $(( (end - start) / 1000000 )) ms, peak RSS $((rss / 1024)) MiB"
    grep -E "journal read|windows rebuilt" "$DIR/stderr.log" | sed 's/\x1b\[[0-9;]*m//g' | sed 's/^/    /'
    # Recovery is what is measured; a crash-stop is the realistic start.
    kill -KILL "$PID"; wait "$PID" 2>/dev/null || true
    PID=
done
