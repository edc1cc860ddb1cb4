#!/usr/bin/env bash
# The Redis Cluster benchmark: in one run, the same wrk load (random users out of 10,000)
# against
#   - a one-node ring (the reference of bench/load.sh's ratios),
#   - a node counting in a three-master Redis Cluster (its own redis-servers, on free
#     ports, made into a cluster with `redis-cli --cluster create`),
#   - with BASE=PATH, a second node binary on the same cluster (a build of another
#     commit: the before of a before-and-after),
# at each number of connections (8, 64 and 256 by default); then, per number, the
# requests/second, the ratio to the one-node ring, and the CPU per request of the node
# and of the three redis-servers together. Loopback only; every run is bounded in time
# and everything started is stopped.
#
# This machine is shared and noisy: the setups are measured in turn, ROUNDS times (in
# alternating order), and each figure is the median of its rounds.
#
#   bash bench/redis_cluster.sh [SECONDS per run (5)] [CONNECTIONS ("8 64 256")] [ROUNDS (3)]
#   BASE=/tmp/old/node bash bench/redis_cluster.sh 5 64 5
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
list=${2:-8 64 256}
read -r -a counts <<<"${list//,/ }"   # spaces or commas
rounds=${3:-3}
for tool in wrk redis-server redis-cli python3 curl; do
  command -v "$tool" >/dev/null || { echo "bench/redis_cluster.sh needs $tool (apt-get install wrk redis-server python3 curl)"; exit 1; }
done
# The same build as bench/load.sh's, so neither rebuilds the other's binaries.
cargo build --release --features redis --example node --example bare_hyper >/dev/null 2>&1 ||
  { echo "the build failed: cargo build --release --features redis --example node --example bare_hyper"; exit 1; }
node=${NODE:-target/release/examples/node}   # NODE=PATH: measure a node built elsewhere
pids=()
dir=$(mktemp -d)
cleanup() {
  if [ "${#pids[@]}" -gt 0 ]; then kill "${pids[@]}" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# Sets `port` to a free port whose cluster bus port (+10000) is free too, and not handed
# out before in this run (the ports are bound later, by the servers). Not in a subshell:
# it remembers what it handed out.
taken=" "
free_port() {
  for _ in $(seq 100); do
    port=$(python3 -c '
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
b = socket.socket()
try:
    b.bind(("127.0.0.1", p + 10000)); print(p)
except (OSError, OverflowError):
    pass')
    if [ -n "$port" ] && [[ "$taken" != *" $port "* ]]; then taken="$taken$port "; return; fi
  done
  echo "no free port pair found" >&2; exit 1
}
limit=1000000000   # never reached: every check is a counted, allowed request

masters=() redis_pids=() urls=()
for _ in 1 2 3; do
  free_port
  mkdir -p "$dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir/$port" \
    --cluster-enabled yes --cluster-config-file nodes.conf >/dev/null & pids+=($!); redis_pids+=($!)
  masters+=("127.0.0.1:$port"); urls+=("redis://127.0.0.1:$port")
done
# Ready when each answers PING, and a cluster when each says so: bounded waits.
wait_for() { # PORT WHAT PATTERN COMMAND...
  local port=$1 what=$2 pattern=$3; shift 3
  for _ in $(seq 100); do
    redis-cli -p "$port" "$@" 2>/dev/null | grep -q "$pattern" && return
    sleep 0.1
  done
  echo "redis-server on port $port never $what" >&2; exit 1
}
for master in "${masters[@]}"; do wait_for "${master##*:}" "answered PING" PONG PING; done
timeout 60 redis-cli --cluster create "${masters[@]}" --cluster-replicas 0 --cluster-yes >/dev/null ||
  { echo "redis-cli --cluster create failed"; exit 1; }
for master in "${masters[@]}"; do wait_for "${master##*:}" "saw the cluster ok" cluster_state:ok CLUSTER INFO; done

free_port; one=$port; free_port; cluster_node=$port
"$node" --limit $limit --advertise "127.0.0.1:$one" "$one" "127.0.0.1:$one" >/dev/null 2>&1 & pids+=($!); one_pid=$!
all_urls=$(IFS=,; echo "${urls[*]}")
"$node" --limit $limit --redis-cluster "$all_urls" "$cluster_node" >/dev/null 2>&1 & pids+=($!); cluster_pid=$!
names=("one-node ring" "Redis Cluster node") ports=("$one" "$cluster_node") serving=("$one_pid" "$cluster_pid")
if [ -n "${BASE:-}" ]; then
  free_port; base_node=$port
  "$BASE" --limit $limit --redis-cluster "$all_urls" "$base_node" >/dev/null 2>&1 & pids+=($!)
  names+=("Redis Cluster node, BASE") ports+=("$base_node") serving+=("$!")
fi
for port in "${ports[@]}"; do
  for _ in $(seq 50); do
    curl -sf --max-time 2 "http://127.0.0.1:$port/check?user_id=warm" >/dev/null && continue 2
    sleep 0.1
  done
  echo "port $port does not answer /check"; exit 1
done

measure() { # PORT CONNECTIONS: prints "REQUESTS_PER_SECOND REQUESTS"
  local out threads=$(( $2 < 2 ? $2 : 2 ))
  out=$(wrk -t"$threads" -c"$2" -d"${seconds}s" -s bench/random_users.lua "http://127.0.0.1:$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "warning: port $1 answered non-2xx: $(grep Non-2xx <<<"$out")" >&2; fi
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out")"
}
ticks() { # PIDS...: CPU ticks (user + system) used so far
  local sum=0 pid
  for pid in "$@"; do sum=$(( sum + $(awk '{print $14 + $15}' "/proc/$pid/stat") )); done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
per_request() { awk -v t="$1" -v n="$2" -v hz="$hz" 'BEGIN {print t / hz * 1e6 / n}'; }

setups=${#names[@]}
for c in "${counts[@]}"; do
  declare -A rps=() node_us=() redis_us=()
  echo "wrk -c$c -d${seconds}s x $rounds rounds, random users out of 10,000, $(nproc) cores" >&2
  for round in $(seq "$rounds"); do
    order=$(seq 0 $(( setups - 1 ))); [ $((round % 2)) = 0 ] && order=$(seq $(( setups - 1 )) -1 0)
    for i in $order; do
      node_before=$(ticks "${serving[$i]}"); redis_before=$(ticks "${redis_pids[@]}")
      read -r r requests < <(measure "${ports[$i]}" "$c")
      if [ -z "${r:-}" ] || [ -z "${requests:-}" ] || [ "$requests" = 0 ]; then echo "wrk measured nothing on port ${ports[$i]}" >&2; exit 1; fi
      node_after=$(ticks "${serving[$i]}"); redis_after=$(ticks "${redis_pids[@]}")
      rps[$i]="${rps[$i]:-} $r"
      node_us[$i]="${node_us[$i]:-} $(per_request $(( node_after - node_before )) "$requests")"
      redis_us[$i]="${redis_us[$i]:-} $(per_request $(( redis_after - redis_before )) "$requests")"
      printf 'round %d  %-28s %12s req/s\n' "$round" "${names[$i]}" "$r" >&2
    done
  done
  echo "== $c connections (medians of $rounds rounds)"
  reference=$(median <<<"${rps[0]}")
  for i in $(seq 0 $(( setups - 1 ))); do
    m=$(median <<<"${rps[$i]}")
    awk -v name="${names[$i]}" -v m="$m" -v ref="$reference" -v n="$(median <<<"${node_us[$i]}")" \
        -v r="$(median <<<"${redis_us[$i]}")" -v redis="$i" 'BEGIN {
      printf "%-28s %9.0f req/s  %.2f of the one-node ring  CPU/request: node %.1f us", name, m, m / ref, n
      if (redis > 0) printf ", redis-servers %.1f us", r
      printf "\n"
    }'
  done
done
