#!/usr/bin/env bash
# crier and nginx + nchan side by side (issue 5's matrix), in one run, on this machine.
#
#   loadtest/nchan/compare.sh            # the whole matrix (about 10 minutes)
#   QUICK=1 loadtest/nchan/compare.sh    # every scenario, shorter and smaller (a check)
#
# Installs nginx + libnginx-mod-nchan from Debian when missing (needs root), builds the release
# binaries when missing, starts each hub fresh for every run (so no run inherits another's
# memory), drives both with crier-loadtest (nchan through its generic mode) and prints the
# table. Everything runs on loopback; every wait below is bounded.
#
# Environment: OUT (results, default target/nchan-compare), CRIER_PORT (8092), NCHAN_PORT
# (8091), NCHAN_BUFFER (nchan_message_buffer_length, 64), CRIER_BIN, LOADTEST_BIN,
# CARGO_TARGET_DIR (default /work/perf-target when it exists, else target), ONLY (a
# space-separated subset of: idle15k idlemax sat rate20k rate10k slow), HUBS (default
# "nchan crier"; also "crier-taskwrites": crier with --ws-flushers 0, every delivery written
# by the connection's own task as before 0.3), ROUNDS (how many times each hub runs each
# scenario, interleaved, default 1; the table shows every round).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
    if [[ -d /work/perf-target ]]; then CARGO_TARGET_DIR=/work/perf-target; else CARGO_TARGET_DIR=$ROOT/target; fi
fi
export CARGO_TARGET_DIR
CRIER_BIN=${CRIER_BIN:-$CARGO_TARGET_DIR/release/crier}
LOADTEST_BIN=${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/crier-loadtest}
OUT=${OUT:-$ROOT/target/nchan-compare}
CRIER_PORT=${CRIER_PORT:-8092}
NCHAN_PORT=${NCHAN_PORT:-8091}
NCHAN_BUFFER=${NCHAN_BUFFER:-64}
QUICK=${QUICK:-0}
ONLY=${ONLY:-idle15k idlemax sat rate20k rate10k slow}
HUBS=${HUBS:-nchan crier}
ROUNDS=${ROUNDS:-1}
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

log() { echo "compare: $*" >&2; }
die() { log "$*"; exit 1; }

# --- prerequisites ----------------------------------------------------------------------
if ! command -v nginx >/dev/null || [[ ! -e $NCHAN_MODULE ]]; then
    [[ $(id -u) -eq 0 ]] || die "nginx + nchan are missing; run as root to install them"
    log "installing nginx and libnginx-mod-nchan from Debian"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx libnginx-mod-nchan
    # The package may start a system nginx on port 80: not ours, but stop it so it costs nothing.
    if command -v service >/dev/null; then service nginx stop >/dev/null 2>&1 || true; fi
fi
command -v jq >/dev/null || die "jq is needed to build the table (apt-get install -y jq)"
if [[ ! -x $CRIER_BIN || ! -x $LOADTEST_BIN ]]; then
    log "building release binaries into $CARGO_TARGET_DIR"
    cargo build --release -p crier -p crier-loadtest
fi

HARD_NOFILE=$(ulimit -Hn)
ulimit -n "$HARD_NOFILE"
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/crier-nchan.XXXXXX)
# One build of each for the whole matrix, even if the binary is rebuilt while the runs go on.
cp "$CRIER_BIN" "$WORK/crier"
CRIER_BUILT=$(date -u -r "$CRIER_BIN" +%FT%TZ)
CRIER_BIN=$WORK/crier
cp "$LOADTEST_BIN" "$WORK/crier-loadtest"
LOADTEST_BIN=$WORK/crier-loadtest
HUB_PID=""
HUB_PIDS=""

stop_hub() {
    if [[ -n $HUB_PID ]] && kill -0 "$HUB_PID" 2>/dev/null; then
        kill -TERM "$HUB_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$HUB_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$HUB_PID" 2>/dev/null || true
        wait "$HUB_PID" 2>/dev/null || true
    fi
    HUB_PID=""
    HUB_PIDS=""
}
cleanup() { stop_hub; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port: bounded (10 s)
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

start_crier() { # extra crier flags…
    "$CRIER_BIN" --bind "127.0.0.1:$CRIER_PORT" "$@" >"$WORK/crier.log" 2>&1 &
    HUB_PID=$!
    wait_port "$CRIER_PORT" || { cat "$WORK/crier.log" >&2; die "crier did not start"; }
    HUB_PIDS=$HUB_PID
}

start_nchan() {
    local dir=$WORK/nginx
    rm -rf "$dir"
    mkdir -p "$dir"
    sed -e "s#@DIR@#$dir#g; s#@PORT@#$NCHAN_PORT#g; s#@BUFFER@#$NCHAN_BUFFER#g; s#@NOFILE@#$HARD_NOFILE#g" \
        "$ROOT/loadtest/nchan/nginx.conf.in" >"$dir/nginx.conf"
    nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" >"$dir/stdout" 2>&1 &
    HUB_PID=$!
    wait_port "$NCHAN_PORT" || { cat "$dir/error.log" >&2; die "nginx did not start"; }
    # The master and its two workers: memory and CPU are summed over all three.
    local workers=""
    for _ in $(seq 1 50); do
        workers=$(pgrep -P "$HUB_PID" | paste -sd, - || true)
        [[ $(tr ',' '\n' <<<"$workers" | grep -c .) -ge 2 ]] && break
        sleep 0.1
    done
    HUB_PIDS="$HUB_PID,$workers"
}

# run HUB NAME SCENARIO-ARGS…: a fresh hub, one crier-loadtest run, summary and JSON in $OUT.
run() {
    local hub=$1 name=$2
    shift 2
    local target=()
    if [[ $hub == crier ]]; then
        start_crier
        target=(--url "http://127.0.0.1:$CRIER_PORT")
    elif [[ $hub == crier-taskwrites ]]; then
        start_crier --ws-flushers 0
        target=(--url "http://127.0.0.1:$CRIER_PORT")
    else
        start_nchan
        target=(--ws-template "ws://127.0.0.1:$NCHAN_PORT/sub/{channel}"
            --publish-template "http://127.0.0.1:$NCHAN_PORT/pub/{channel}")
    fi
    log "$hub $name: $* (hub pids $HUB_PIDS)"
    sleep 1
    local cmd=("$LOADTEST_BIN" "${target[@]}" --server-pid "$HUB_PIDS" --progress plain
        --save-json "$OUT/$hub-$name.json" "$@")
    echo "${cmd[*]}" >"$OUT/$hub-$name.cmd"
    # Bounded by the scenario's own deadlines; the timeout is a last resort.
    if ! timeout 900 "${cmd[@]}" >"$OUT/$hub-$name.txt" 2>"$OUT/$hub-$name.log"; then
        log "$hub $name failed (see $OUT/$hub-$name.log)"
    fi
    stop_hub
    sleep 2
}

if [[ $QUICK == 1 ]]; then
    N_IDLE=2000 N_MAX=3000 N_SUBS=1000 RATE20K=200 RATE10K=100 D_FIX=5s D_SAT=5s N_SLOW=180 K_SLOW=20 D_SLOW=10s
else
    N_IDLE=15000 N_MAX=19000 N_SUBS=10000 RATE20K=20 RATE10K=100 D_FIX=20s D_SAT=10s N_SLOW=1800 K_SLOW=200 D_SLOW=60s
fi
# 20 msg/s over 10 channels of 1,000 subscribers each = 20,000 deliveries/s (QUICK: the same
# rate of deliveries with 100 subscribers per channel).

wants() { [[ " $ONLY " == *" $1 "* ]]; }

HUB_COMMIT=$(git rev-parse --short HEAD)
HUB_DIRTY=$(git status --porcelain -- src Cargo.toml | wc -l)
{
    echo "date: $(date -u +%FT%TZ)"
    echo "crier commit: $HUB_COMMIT ($HUB_DIRTY uncommitted changes under src/ and Cargo.toml when run)"
    echo "crier binary: built $CRIER_BUILT, sha256 $(sha256sum "$CRIER_BIN" | cut -c1-16) (copied before the first run)"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'); nchan: $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
    echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), open-file limit $HARD_NOFILE"
} >"$OUT/meta.txt"

# Rounds are interleaved (every hub, then every hub again), so a change in the machine's
# background load shows in every hub's figures rather than in one hub's. Round 1 keeps the
# plain file names the table below reads; later rounds add "-rN".
for round in $(seq 1 "$ROUNDS"); do
    sfx=""
    [[ $round -gt 1 ]] && sfx="-r$round"
    for hub in $HUBS; do
        if wants idle15k; then run "$hub" "idle15k$sfx" idle -n "$N_IDLE" --ramp-rate 50000 --hold 10s; fi
        if wants sat; then run "$hub" "sat$sfx" fanout -n "$N_SUBS" -c 10 --rate 0 --publishers 16 --size 256 --duration "$D_SAT"; fi
        if wants rate20k; then run "$hub" "rate20k$sfx" fanout -n "$N_SUBS" -c 10 --rate "$RATE20K" --size 256 --duration "$D_FIX"; fi
        # 100 msg/s over 100 channels of 100 subscribers = 10,000 deliveries/s.
        if wants rate10k; then run "$hub" "rate10k$sfx" fanout -n "$N_SUBS" -c 100 --rate "$RATE10K" --size 256 --duration "$D_FIX"; fi
        if wants slow; then run "$hub" "slow$sfx" slow -n "$N_SLOW" -c 10 --rate 100 --size 16384 --duration "$D_SLOW" --slow "$K_SLOW"; fi
    done
done
if wants idlemax; then run crier idlemax idle -n "$N_MAX" --ramp-rate 50000 --hold 10s; fi

# --- the table ------------------------------------------------------------------------------
j() { # file jq-filter: prints the value or "n/a"
    if [[ -s $1 ]]; then jq -r "($2) // \"n/a\"" "$1" 2>/dev/null || echo n/a; else echo "n/a"; fi
}
kib='if . == null then null else (. / 1024 * 10 | round / 10 | tostring) + " KiB" end'
mib='if . == null then null else (. / 1048576 * 10 | round / 10 | tostring) + " MiB" end'
smib='if . == null then null else ((if . >= 0 then "+" else "" end) + (. / 1048576 * 10 | round / 10 | tostring) + " MiB") end'
msf='if . == null then null else (. * 100 | round / 100 | tostring) + " ms" end'
busy='.result.machine.busy_percent // .result.with_slow.machine.busy_percent | if . == null then "?" else (round | tostring) + "%" end'

cell_idle() { # hub
    local f=$OUT/$1-idle15k.json
    echo "$(j "$f" ".result.memory.hub_rss_per_connection | $kib") (PSS $(j "$f" ".result.memory.hub_pss_per_connection | $kib"); $(j "$f" '.result.ramp.subscribed') connected)"
}
cell_connect() {
    local f=$OUT/$1-idle15k.json
    echo "$(j "$f" '.result.ramp.seconds | . * 100 | round / 100') s ($(j "$f" '.result.ramp.connect_failures') failures, $(j "$f" '.result.ramp.listen_overflows') SYNs dropped by a full accept queue)"
}
cell_sat() {
    local f=$OUT/$1-sat.json
    echo "$(j "$f" '.result.hub_cpu_us_per_delivery | . * 10 | round / 10') µs ($(j "$f" '.result.deliveries_per_s | round') deliveries/s, machine $(j "$f" "$busy"))"
}
cell_rate() {
    local f=$OUT/$1-rate20k.json
    echo "$(j "$f" ".result.latency.p99_ms | $msf") (p50 $(j "$f" ".result.latency.p50_ms | $msf"), $(j "$f" '.result.deliveries_per_s | round') deliveries/s, machine $(j "$f" "$busy"))"
}
# Memory growth with stuck clients: peak sampled (and final) hub RSS minus RSS after the ramp.
cell_slow_mem() {
    local f=$OUT/$1-slow.json
    local after peak end
    after=$(j "$f" '.result.with_slow.memory.hub_rss_after_ramp')
    peak=$(j "$f" '[.samples[] | select(.phase | startswith("baseline") | not) | .hub_rss_bytes // empty] | max')
    end=$(j "$f" '.result.with_slow.memory.hub_rss_end')
    if [[ $after == n/a || $peak == n/a ]]; then echo n/a; return; fi
    echo "peak $(jq -rn "$peak - $after | $smib"), at end $(jq -rn "$end - $after | $smib") (RSS after ramp $(jq -rn "$after | $mib"))"
}
cell_slow_p99() {
    local f=$OUT/$1-slow.json
    local b w
    b=$(j "$f" '.result.baseline.latency.p99_ms')
    w=$(j "$f" '.result.with_slow.latency.p99_ms')
    if [[ $b == n/a || $w == n/a ]]; then echo n/a; return; fi
    echo "$(jq -rn "$w / $b * 100 | round / 100")× ($(jq -rn "$b | $msf") → $(jq -rn "$w | $msf"))"
}
cell_slow_end() {
    local f=$OUT/$1-slow.json
    j "$f" '.result.with_slow.slow.endings | to_entries | map("\(.key): \(.value)") | join(", ")'
}
cell_ldr() { # hub: lost / duplicated / reordered over every run of that hub
    local total="0 0 0" f
    for f in "$OUT/$1"-*.json; do
        [[ -s $f ]] || continue
        total=$(jq -r --arg t "$total" '
            [.result.tally, .result.baseline.tally, .result.with_slow.tally] | map(select(. != null))
            | reduce .[] as $x (($t | split(" ") | map(tonumber)); [.[0] + $x.lost, .[1] + $x.duplicates, .[2] + $x.reordered])
            | map(tostring) | join(" ")' "$f")
    done
    # shellcheck disable=SC2086
    printf '%s / %s / %s' $total
}

{
    cat "$OUT/meta.txt"
    echo
    echo "| figure | nchan (nginx, 2 workers) | crier |"
    echo "|---|---|---|"
    echo "| hub RSS per idle WebSocket, $N_IDLE connections | $(cell_idle nchan) | $(cell_idle crier) |"
    echo "| crier at the largest N here ($N_MAX) | — | $(j "$OUT/crier-idlemax.json" ".result.memory.hub_rss_per_connection | $kib") ($(j "$OUT/crier-idlemax.json" '.result.ramp.subscribed') connected in $(j "$OUT/crier-idlemax.json" '.result.ramp.seconds | . * 100 | round / 100') s) |"
    echo "| time to connect $N_IDLE | $(cell_connect nchan) | $(cell_connect crier) |"
    echo "| hub CPU per delivery at saturation ($N_SUBS subs / 10 channels / 256 B) | $(cell_sat nchan) | $(cell_sat crier) |"
    echo "| p99 publish→receive, $N_SUBS subs, $RATE20K msg/s over 10 channels | $(cell_rate nchan) | $(cell_rate crier) |"
    echo "| $K_SLOW never-reading among $((N_SLOW + K_SLOW)), 100 msg/s × 16 KiB, $D_SLOW: hub memory growth | $(cell_slow_mem nchan) | $(cell_slow_mem crier) |"
    echo "| same: healthy p99, with ÷ without stuck clients (without → with) | $(cell_slow_p99 nchan) | $(cell_slow_p99 crier) |"
    echo "| same: how the stuck clients ended | $(cell_slow_end nchan) | $(cell_slow_end crier) |"
    echo "| lost / duplicated / reordered (healthy clients, all runs) | $(cell_ldr nchan) | $(cell_ldr crier) |"
    # The moderate-load rows of the performance issue, every hub and every round.
    if wants rate20k || wants rate10k; then
        # Kernel (stime) and user-space (utime) shares of the hub's CPU per delivery.
        split='.result as $r | if $r.hub_cpu_kernel_share == null then null else "\($r.hub_cpu_us_per_delivery * $r.hub_cpu_kernel_share * 10 | round / 10) / \($r.hub_cpu_us_per_delivery * (1 - $r.hub_cpu_kernel_share) * 10 | round / 10) µs" end'
        echo
        echo "| hub | run | hub CPU per delivery | of it, kernel / user space | deliveries/s | p50 / p99 | machine busy |"
        echo "|---|---|---|---|---|---|---|"
        for name in rate20k rate10k; do
            wants "$name" || continue
            for hub in $HUBS; do
                for f in "$OUT/$hub-$name".json "$OUT/$hub-$name"-r*.json; do
                    [[ -s $f ]] || continue
                    echo "| $hub | $(basename "$f" .json | sed "s/^$hub-//") | $(j "$f" '.result.hub_cpu_us_per_delivery | . * 10 | round / 10') µs | $(j "$f" "$split") | $(j "$f" '.result.deliveries_per_s | round') | $(j "$f" ".result.latency.p50_ms | $msf") / $(j "$f" ".result.latency.p99_ms | $msf") | $(j "$f" "$busy") |"
                done
            done
        done
    fi
} | tee "$OUT/table.md"
log "summaries, JSON and the exact commands: $OUT"
