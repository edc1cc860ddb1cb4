#!/usr/bin/env bash
# Hostile traffic against one `node` on loopback, and what it costs the node:
#   drip      slow batch bodies (10 and 50 connections, chunked and content-length):
#             the node's resident memory, and whether it cut the bodies off
#   flood     1M distinct ids: resident memory with the key cap (--max-keys 100000),
#             without it, and after 100,000 ids under the same cap (what the cap holds
#             the flood to)
#   boundary  latency (wrk: p50, p99, max) over 2 s across a window boundary with N keys
#             of L bytes, against 2 s mid-window: KEYS="1000000 3000000" LENS="40 250"
# Every run is bounded in time and loopback only; everything started is stopped.
#
#   bash bench/hostile.sh [drip|flood|boundary]...   (default: all three)
#   NODE=path/to/node bash bench/hostile.sh ...      another build of the node (an older
#                                                    one: options it lacks are left out)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench/hostile.sh needs wrk (apt-get install wrk)"; exit 1; }
if [ -z "${NODE:-}" ]; then
  cargo build --release --example node >/dev/null 2>&1
  NODE=target/release/examples/node
fi
has_cap=$("$NODE" --help 2>&1 | grep -c -- --max-keys || true)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

# start_node PORT [OPTIONS...]: a one-node ring; sets $node_pid.
start_node() {
  local port=$1; shift
  "$NODE" "$@" --advertise "127.0.0.1:$port" "$port" "127.0.0.1:$port" >/dev/null &
  node_pid=$!; pids+=("$node_pid")
  for _ in $(seq 50); do
    curl -s "http://127.0.0.1:$port/check?user_id=warmup" >/dev/null && return
    sleep 0.1
  done
  echo "node on $port did not start"; exit 1
}
stop_node() { kill "$node_pid"; wait "$node_pid" 2>/dev/null || true; }
uncapped() { [ "$has_cap" -gt 0 ] && echo "--max-keys 18446744073709551615" || true; }

drip() {
  echo "== slow batch bodies"
  for connections in 10 50; do
    for framing in chunked length; do
      local port; port=$(free_port)
      start_node "$port"
      python3 bench/slow_drip.py "$port" "$node_pid" "$connections" 8 "$framing"
      stop_node
    done
  done
}

# flood_rss KEYS SECONDS [OPTIONS...]: RSS after wrk sent up to KEYS distinct ids.
flood_rss() {
  local keys=$1 seconds=$2; shift 2
  local port; port=$(free_port)
  start_node "$port" --limit 5 --window 3600 "$@"
  local before; before=$(rss_mib "$node_pid")
  local sent
  sent=$(KEYS=$keys wrk -t2 -c32 -d"${seconds}s" -s bench/distinct_ids.lua "http://127.0.0.1:$port" | awk '/requests in/ {print $1}')
  echo "  $keys distinct ids (${sent} requests) $*: RSS ${before} -> $(rss_mib "$node_pid") MiB"
  stop_node
}

flood() {
  echo "== a flood of distinct ids (12 bytes each)"
  if [ "$has_cap" -gt 0 ]; then
    flood_rss 1000000 20 --max-keys 100000
    flood_rss 100000 4 --max-keys 100000
  fi
  flood_rss 1000000 20 $(uncapped)
}

# latency_line LABEL WRK_OUTPUT
latency_line() {
  local p50 p99 max
  p50=$(awk '$1=="50%" {print $2}' <<<"$2")
  p99=$(awk '$1=="99%" {print $2}' <<<"$2")
  max=$(awk '$1=="Latency" {print $4}' <<<"$2")
  echo "  $1: p50 $p50, p99 $p99, max $max ($(awk '/requests in/ {print $1}' <<<"$2") requests)"
}

# boundary KEYS LEN: fill a window with KEYS ids of LEN bytes, then 2 s mid-window and
# 2 s across the boundary, with the same ids.
boundary_run() {
  local keys=$1 len=$2
  local window=$(( keys / 25000 + 30 ))   # room to fill at 25k+ new ids a second
  local port; port=$(free_port)
  start_node "$port" --limit 1000000000 --window "$window" $(uncapped)
  # Start right after a boundary: windows are aligned to the epoch.
  local now_ms; now_ms=$(date +%s%3N)
  sleep "$(awk -v n="$now_ms" -v w="$window" 'BEGIN {printf "%.3f", (w*1000 - n % (w*1000)) / 1000 + 0.2}')"
  local fill=$(( window - 10 ))
  local filled
  filled=$(KEYS=$keys ID_LEN=$len wrk -t2 -c64 -d"${fill}s" -s bench/distinct_ids.lua "http://127.0.0.1:$port" | awk '/requests in/ {print $1}')
  echo "== $keys keys of $len bytes (window ${window} s; ${filled} requests to fill; RSS $(rss_mib "$node_pid") MiB)"
  [ "$filled" -ge "$keys" ] || echo "  (fewer requests than keys: not every id was sent)"
  now_ms=$(date +%s%3N)
  local to_boundary; to_boundary=$(awk -v n="$now_ms" -v w="$window" 'BEGIN {printf "%.3f", (w*1000 - n % (w*1000)) / 1000}')
  sleep "$(awk -v t="$to_boundary" 'BEGIN {printf "%.3f", t - 6}')"
  latency_line "mid-window" "$(KEYS=$keys ID_LEN=$len wrk -t2 -c64 -d2s --latency -s bench/distinct_ids.lua "http://127.0.0.1:$port")"
  now_ms=$(date +%s%3N)
  to_boundary=$(awk -v n="$now_ms" -v w="$window" 'BEGIN {printf "%.3f", (w*1000 - n % (w*1000)) / 1000}')
  sleep "$(awk -v t="$to_boundary" 'BEGIN {printf "%.3f", t - 1}')"
  latency_line "across the boundary" "$(KEYS=$keys ID_LEN=$len wrk -t2 -c64 -d2s --latency -s bench/distinct_ids.lua "http://127.0.0.1:$port")"
  stop_node
}

boundary() {
  for keys in ${KEYS_LIST:-1000000 3000000}; do
    for len in ${LENS:-40 250}; do
      boundary_run "$keys" "$len"
    done
  done
}

for part in "${@:-drip flood boundary}"; do
  for step in $part; do "$step"; done
done
