#!/usr/bin/env bash
# What the `metrics` feature costs, measured three ways in one run, the builds alternated:
#   0. instructions per check through the layer, under callgrind (the figure a noisy
#      machine does not move);
#   1. the layer's check (benches/layer_metrics.rs) built without the feature, then with
#      it (recording into a Prometheus recorder), ROUNDS times each, in turn;
#   2. a one-node ring under wrk (random users out of 10,000), the node built without the
#      feature against the node built with it, /metrics scraped every second as
#      Prometheus would, ROUNDS times each, in turn;
#   3. instructions per request through that node under callgrind (one worker thread,
#      one keep-alive connection, 5,000 then 25,000 requests: the difference divided by
#      20,000), twice per build.
# Loopback only; every run is bounded in time and everything started is stopped.
#
#   bash bench/metrics_cost.sh [SECONDS per wrk run (5)] [CONNECTIONS (64)] [ROUNDS (3)]
#   LAYER=0 bash bench/metrics_cost.sh ...          no timed layer runs
#   INSTRUCTIONS=0 bash bench/metrics_cost.sh ...   no callgrind runs (needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
connections=${2:-64}
rounds=${3:-3}
command -v wrk >/dev/null || { echo "bench/metrics_cost.sh needs wrk (apt-get install wrk)"; exit 1; }
dir=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# Instructions per check under callgrind, which a noisy machine does not move: two runs
# of each build, of 10,000 and 20,000 checks per case, the difference divided by the
# checks it adds (so start-up and warm-up cancel out).
if command -v valgrind >/dev/null && [ "${INSTRUCTIONS:-1}" = 1 ]; then
  echo "== instructions per check through the layer (callgrind, benches/layer_metrics.rs)"
  binary() { cargo bench --bench layer_metrics "$@" --no-run 2>&1 | grep -o 'target/release/deps/layer_metrics-[0-9a-f]*' | head -1; }
  off_bin=$(binary); on_bin=$(binary --features metrics)
  instructions() { # CHECKS BINARY [ONLY]
    ROUNDS=1 CHECKS=$1 ONLY=${3:-} valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" "$2" >/dev/null 2>"$dir/callgrind.err"
    grep -o 'Collected : [0-9]*' "$dir/callgrind.err" | awk '{print $3}'
  }
  # 4 cases, each a warm-up and one round: 10 x CHECKS checks in all.
  per_check() { # BINARY [ONLY]
    local small large
    small=$(instructions 10000 "$@"); large=$(instructions 20000 "$@")
    awk -v a="$small" -v b="$large" 'BEGIN {printf "%.0f", (b - a) / 100000}'
  }
  off=$(per_check "$off_bin"); on=$(per_check "$on_bin" recorded)
  echo "without metrics $off, with metrics (Prometheus) $on: ratio $(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", a / b}')"
fi

echo "== the layer's check, ns (benches/layer_metrics.rs, ROUNDS=5 within each run)"
for round in $(seq "$(( ${LAYER:-1} ? rounds : 0 ))"); do
  ROUNDS=5 cargo bench -q --bench layer_metrics 2>/dev/null | sed -n 's/^/off  /; /thread/p'
  ROUNDS=5 cargo bench -q --bench layer_metrics --features metrics 2>/dev/null | sed -n 's/^/on   /; /thread/p'
done

echo "== a one-node ring under wrk -c$connections, requests/s"
cargo build -q --release --example node 2>/dev/null && cp target/release/examples/node "$dir/node-off"
cargo build -q --release --features metrics --example node 2>/dev/null && cp target/release/examples/node "$dir/node-on"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
limit=1000000000   # never reached: every check is a counted, allowed request
hz=$(getconf CLK_TCK)
measure() { # BUILD: "REQUESTS_PER_SECOND CPU_MICROSECONDS_PER_REQUEST" of a fresh node of that build
  local port pid scraper out before after requests
  port=$(free_port)
  "$dir/node-$1" --limit $limit --advertise "127.0.0.1:$port" "$port" "127.0.0.1:$port" >/dev/null 2>&1 & pid=$!
  pids+=("$pid")
  sleep 0.5
  ( end=$((SECONDS + seconds + 2)); while [ $SECONDS -lt $end ]; do curl -s -o /dev/null "http://127.0.0.1:$port/metrics"; sleep 1; done ) & scraper=$!
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" -s bench/random_users.lua "http://127.0.0.1:$port")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid" "$scraper" 2>/dev/null || true
  wait "$pid" "$scraper" 2>/dev/null || true
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk -v t=$((after - before)) -v n="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
echo "(requests/s, and the node's CPU per request in µs; the builds' order alternates)"
for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then off=$(measure off); on=$(measure on); else on=$(measure on); off=$(measure off); fi
  read -r off_rps off_cpu <<<"$off"; read -r on_rps on_cpu <<<"$on"
  echo "round $round: without metrics $off_rps/s ${off_cpu} µs, with metrics $on_rps/s ${on_cpu} µs; requests/s ratio $(ratio "$on_rps" "$off_rps"), CPU per request ratio $(ratio "$on_cpu" "$off_cpu")"
done

if command -v valgrind >/dev/null && [ "${INSTRUCTIONS:-1}" = 1 ]; then
  echo "== instructions per request through a one-node ring (callgrind, 1 worker)"
  node_instructions() { # BUILD REQUESTS
    local port pid
    port=$(free_port)
    TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$dir/node.out" \
      "$dir/node-$1" --limit $limit --advertise "127.0.0.1:$port" "$port" "127.0.0.1:$port" >/dev/null 2>"$dir/node.err" & pid=$!
    pids+=("$pid")
    for _ in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.2; done
    python3 bench/sequential_requests.py "$port" "$2" /metrics
    kill -INT "$pid"; wait "$pid" || true
    grep -o 'Collected : [0-9]*' "$dir/node.err" | awk '{print $3}'
  }
  for round in 1 2; do
    for build in off on; do
      small=$(node_instructions "$build" 5000); large=$(node_instructions "$build" 25000)
      echo "round $round, $build: $(awk -v a="$small" -v b="$large" 'BEGIN {printf "%.0f", (b - a) / 20000}') instructions per request"
    done
  done
fi
