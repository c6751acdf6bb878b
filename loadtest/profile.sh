#!/usr/bin/env bash
# Where the hub's CPU goes under a fixed load: perf samples of a fresh hub during a fanout run,
# folded stacks, a flame graph (SVG) and a breakdown by where the time is spent.
#
#   loadtest/profile.sh NAME [crier flags…]        e.g. loadtest/profile.sh flushers-0 --ws-flushers 0
#
# Load: 10,000 WebSocket subscribers, 10 channels, 20 publishes/s of 256 B (20,000
# deliveries/s, the moderate-load row of docs/BENCHMARKS.md), 25 s; perf samples 12 s of the
# measured phase (cpu-clock at 499 Hz, DWARF unwinding: release builds have no frame pointers: this VM has no hardware counters). Needs perf and
# inferno (`cargo install inferno`). Output in OUT (default target/profile): NAME.folded,
# NAME.svg, NAME.txt (the breakdown), NAME.json (the loadtest's report). FANOUT replaces the
# fanout arguments, e.g. FANOUT="-n 9000 -c 10 --rate 50 --duration 25s --transport lp".
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NAME=${1:?usage: profile.sh NAME [crier flags…]}
shift
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
OUT=${OUT:-$ROOT/target/profile}
PORT=${PORT:-18475}
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
command -v perf >/dev/null || { echo "perf is missing" >&2; exit 1; }
command -v inferno-collapse-perf >/dev/null || { echo "inferno is missing: cargo install inferno" >&2; exit 1; }

"$BIN/crier" --bind "127.0.0.1:$PORT" "$@" >"$OUT/$NAME.hub.log" 2>&1 &
HUB=$!
trap 'kill $HUB 2>/dev/null || true; wait $HUB 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

"$BIN/crier-loadtest" --url "http://127.0.0.1:$PORT" --server-pid "$HUB" --progress none \
    --save-json "$OUT/$NAME.json" fanout ${FANOUT:--n 10000 -c 10 --rate 20 --size 256 --duration 25s --ramp-rate 20000} \
    >"$OUT/$NAME.loadtest.txt" 2>&1 &
LOAD=$!
# The ramp takes about a second; sample the middle of the measured phase.
sleep 8
perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$HUB" -o "$OUT/$NAME.perf" -- sleep 12 2>/dev/null
wait $LOAD || true

perf script -i "$OUT/$NAME.perf" 2>/dev/null | inferno-collapse-perf --all >"$OUT/$NAME.folded"
inferno-flamegraph --title "crier $NAME: ${FANOUT:-20k deliveries/s}" <"$OUT/$NAME.folded" >"$OUT/$NAME.svg"

# Breakdown: where each sample's stack passes (first match wins), and the top leaf frames.
python3 - "$OUT/$NAME.folded" <<'PY' | tee "$OUT/$NAME.txt"
import collections, sys
rows = []
for line in open(sys.argv[1]):
    stack, _, weight = line.rstrip("\n").rpartition(" ")
    rows.append((stack.split(";"), int(weight)))
total = sum(w for _, w in rows) or 1
places = [
    ("flushers (hub::direct): writes to parked sockets", "crier::hub::direct::Flusher::run"),
    ("connection tasks (ws::session)", "crier::transport::ws::session"),
    ("long-poll requests on the bare socket (server::lp)", "crier::server::lp"),
    ("publish requests: HTTP, fan-out into queues", "hyper::"),
    ("housekeeping, timers, other tasks", ""),
]
by_place = collections.Counter()
kernel = 0
leaves = collections.Counter()
for frames, w in rows:
    joined = ";".join(frames)
    for name, needle in places:
        if needle in joined:
            by_place[name] += w
            break
    leaf = frames[-1]
    if leaf.endswith("_[k]"):
        kernel += w
    leaves[leaf] += w
print(f"kernel (leaf frame in the kernel): {100 * kernel / total:5.1f} %")
for name, _ in places:
    print(f"{name}: {100 * by_place[name] / total:5.1f} %")
print("top leaf frames:")
for leaf, w in leaves.most_common(15):
    print(f"  {100 * w / total:5.1f} %  {leaf[:110]}")
PY
jq -r '.result | "loadtest: \(.deliveries) deliveries, \(.hub_cpu_us_per_delivery) µs hub CPU per delivery, p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms, passed"' \
    "$OUT/$NAME.json" | tee -a "$OUT/$NAME.txt"
