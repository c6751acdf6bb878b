#!/usr/bin/env bash
# One node in memory against two nodes through Redis, same load, side by side (issue 11's
# figures: deliveries/s per core at saturation, p99 at a fixed rate).
#
#   loadtest/redis-compare.sh                 # about 3 minutes
#   N=2000 D=5s loadtest/redis-compare.sh     # smaller and shorter (a check)
#
# Through Redis, subscribers connect to node B and every publish goes through node A, so each
# message crosses Redis (A's publish script, pub/sub to B, B's fan-out). CPU is summed over
# every process of the hub: the node, or both nodes and redis-server. Each run starts fresh
# processes. Environment: OUT (results, default target/redis-compare), N (subscribers,
# 10000), D (duration, 10s), ROUNDS (1), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$CARGO_TARGET_DIR/release
OUT=${OUT:-$ROOT/target/redis-compare}
N=${N:-10000}
D=${D:-10s}
ROUNDS=${ROUNDS:-1}
PORT_A=18481 PORT_B=18482 PORT_R=18489
command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
[[ -x $BIN/crier && -x $BIN/crier-loadtest ]] || cargo build --release -p crier -p crier-loadtest
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
PIDS=()

stop_all() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap stop_all EXIT

wait_port() { # bounded: 10 s
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}

node() { # port [redis]
    local args=(--bind "127.0.0.1:$1")
    [[ -n ${2:-} ]] && args+=(--redis-url "redis://127.0.0.1:$PORT_R/")
    "$BIN/crier" "${args[@]}" >"$OUT/node-$1.log" 2>&1 &
    PIDS+=($!)
    wait_port "$1"
}

run() { # name mode(memory|redis) fanout-args…
    local name=$1 mode=$2
    shift 2
    local target=(--url "http://127.0.0.1:$PORT_B")
    if [[ $mode == redis ]]; then
        redis-server --port "$PORT_R" --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
        PIDS+=($!)
        wait_port "$PORT_R"
        node "$PORT_A" redis
        node "$PORT_B" redis
        target+=(--publish-node "http://127.0.0.1:$PORT_A")
    else
        node "$PORT_B"
    fi
    local pids
    pids=$(IFS=,; echo "${PIDS[*]}")
    sleep 1
    echo "redis-compare: $name ($mode, pids $pids): fanout $*" >&2
    timeout 600 "$BIN/crier-loadtest" "${target[@]}" --server-pid "$pids" --progress none \
        --save-json "$OUT/$name.json" fanout "$@" >"$OUT/$name.txt" 2>"$OUT/$name.log" ||
        echo "redis-compare: $name failed (see $OUT/$name.log)" >&2
    stop_all
    sleep 2
}

for round in $(seq 1 "$ROUNDS"); do
    for mode in memory redis; do
        run "sat-$mode-r$round" "$mode" -n "$N" -c 10 --rate 0 --publishers 16 --size 256 --duration "$D" --ramp-rate 20000
        run "rate-$mode-r$round" "$mode" -n "$N" -c 10 --rate 20 --size 256 --duration "$D" --ramp-rate 20000
    done
done

echo "| run | deliveries/s | CPU per delivery (all hub processes) | deliveries/s per core | p50 / p99 | lost / dup / reorder | machine busy |"
echo "|---|---|---|---|---|---|---|"
for f in "$OUT"/*.json; do
    jq -r --arg n "$(basename "$f" .json)" '.result as $r
        | ($r.hub_cpu_us_per_delivery // 0) as $cpu
        | "| \($n) | \($r.deliveries_per_s | round) | \($cpu * 100 | round / 100) µs | \(if $cpu > 0 then (1e6 / $cpu | round) else "?" end) | \($r.latency.p50_ms * 100 | round / 100) / \($r.latency.p99_ms * 100 | round / 100) ms | \($r.tally.lost) / \($r.tally.duplicates) / \($r.tally.reordered) | \($r.machine.busy_percent // "?" | if type == "number" then (round | tostring) + "%" else . end) |"' "$f"
done | tee "$OUT/table.md"
