#!/usr/bin/env bash
# Requests/second of a one-node ring and of a two-node ring where half the checks are
# forwarded, in the same run, with wrk and random users. Loopback only; bounded in time.
#
#   bash bench/ring_load.sh [SECONDS (10)] [CONNECTIONS (64)]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release --example node >/dev/null 2>&1
node=target/release/examples/node
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

start() { # PORT MEMBERS...
  local port=$1; shift
  "$node" --limit 1000000 --advertise "127.0.0.1:$port" "$port" "$@" >/dev/null &
  pids+=($!)
}
start 5300 127.0.0.1:5300
start 5400 127.0.0.1:5400 127.0.0.1:5401
start 5401 127.0.0.1:5400 127.0.0.1:5401
sleep 1

measure() { # NAME URL
  local rps
  rps=$(wrk -t2 -c"$connections" -d"${seconds}s" -s bench/random_users.lua "$2" | awk '/Requests\/sec/ {print $2}')
  printf '%-36s %12s req/s\n' "$1" "$rps" >&2
  echo "$rps"
}
one=$(measure "one-node ring" http://127.0.0.1:5300)
two=$(measure "two-node ring (half forwarded)" http://127.0.0.1:5400)
awk -v one="$one" -v two="$two" 'BEGIN { printf "ratio two-node / one-node: %.2f\n", two / one }'
