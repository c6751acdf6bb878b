#!/usr/bin/env bash
# Reproduces the figures in docs/BENCHMARKS.md: builds the hub and the load tool (release),
# and runs each scenario against a freshly started hub on 127.0.0.1:8080, so no run inherits
# another's memory. Results: target/bench/<name>.txt (summary), .json, and HTML reports.
# Usage: loadtest/bench.sh [name ...]   (names: idle-ws-1k idle-ws-10k idle-ws-max idle-lp-1k
#        fanout-20k fanout-100k fanout-sat slow slow-q256 storm soak-10m soak soak-noslow;
#        default: all but the 2-minute soaks)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin crier
cargo build --release -p crier-loadtest
out=target/bench
mkdir -p "$out"
tdir=${CARGO_TARGET_DIR:-target}
hub_bin=$tdir/release/crier
lt=$tdir/release/crier-loadtest

run() { # name, hub flags..., --, loadtest args...
  local name=$1; shift
  local hub_args=()
  while [ "$1" != "--" ]; do hub_args+=("$1"); shift; done
  shift
  "$hub_bin" --bind 127.0.0.1:8080 --static-dir static "${hub_args[@]}" 2>"$out/$name.hub.log" &
  local hub=$!
  for _ in $(seq 1 50); do curl -sf http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.1; done
  echo "== $name: $lt $*" >&2
  "$lt" --server-pid "$hub" --progress plain --report "$out" --save-json "$out/$name.json" "$@" \
    | tee "$out/$name.txt"
  kill "$hub"; wait "$hub" 2>/dev/null || true
}

all=(idle-ws-1k idle-ws-10k idle-ws-max idle-lp-1k fanout-20k fanout-100k fanout-sat slow slow-q256 storm soak-10m)
for name in "${@:-${all[@]}}"; do
  case $name in
    idle-ws-1k)  run "$name" -- idle -n 1000 --hold 10s ;;
    idle-ws-10k) run "$name" -- idle -n 10000 --ramp-rate 50000 --hold 10s ;;
    idle-ws-max) run "$name" -- idle -n 19000 --ramp-rate 50000 --hold 10s ;;
    idle-lp-1k)  run "$name" -- idle -n 1000 --transport lp --hold 10s ;;
    fanout-20k)  run "$name" -- fanout -n 1000 -c 10 --rate 200 --duration 20s ;;
    fanout-100k) run "$name" -- fanout -n 1000 -c 10 --rate 1000 --duration 20s ;;
    fanout-sat)  run "$name" -- fanout -n 100 -c 10 --rate 0 --publishers 8 --duration 10s ;;
    slow)        run "$name" -- slow -n 500 -c 5 --rate 500 --duration 30s --slow 50 ;;
    slow-q256)   run "$name" --queue-capacity 256 -- slow -n 500 -c 5 --rate 500 --duration 15s --slow 50 ;;
    storm)       run "$name" -- storm -n 2000 -c 20 --transport mix --rate 200 --duration 15s --storm-at 5s ;;
    soak-10m)    run "$name" -- soak --duration 10m -n 1000 -c 20 --rate 200 --churn 10 --slow-every 20s --slow-batch 5 ;;
    soak)        run "$name" -- soak --duration 2m -n 1000 -c 20 --rate 200 --churn 10 --slow-every 20s --slow-batch 5 ;;
    soak-noslow) run "$name" -- soak --duration 2m -n 1000 -c 20 --rate 200 --churn 10 --slow-batch 0 ;;
    *) echo "unknown benchmark $name" >&2; exit 2 ;;
  esac
done
