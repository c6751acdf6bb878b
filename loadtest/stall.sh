#!/usr/bin/env bash
# Attack 6 of the abuse issue: 2,000 connections each send `GET /w` and stall; the hub's CPU
# over 10 s. Usage: loadtest/stall.sh PATH/TO/crier [PORT]   (a release build; see
# docs/BENCHMARKS.md "Stalled handshakes").
set -eu
HUB=${1:?usage: stall.sh PATH/TO/crier [PORT]}
PORT=${2:-18931}
TARGET=${CARGO_TARGET_DIR:-target}
RUST_LOG=warn "$HUB" --bind 127.0.0.1:$PORT --handshake-timeout 60s &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
# Bounded wait for the listener.
i=0
until (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || { echo "hub did not start" >&2; exit 1; }
  sleep 0.1
done
"$TARGET/release/crier-stall" --addr 127.0.0.1:$PORT --pid $PID --connections 2000 --prefix 'GET /w' --seconds 10s
