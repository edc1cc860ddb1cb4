#!/usr/bin/env bash
# The load benchmark: in one run, the same wrk load (random users out of 10,000) against
#   - bare hyper: the same server answering ALLOWED with no limiter (the ceiling),
#   - a one-node ring,
#   - a two-node ring, driven through one node, so half the checks are forwarded,
#   - a node on the Redis backend (its own redis-server on a free port): checks that
#     arrive together share a script call (the default), and one with --redis-unbatched
#     (a call per check),
# then requests/second, the ratios, Redis operations per check, and the CPU each setup's
# processes (its nodes, and redis-server) spent per request, which a noisy machine moves
# less than requests/second.
# Loopback only; every run is bounded in time and everything started is stopped.
#
# This machine is shared and noisy: the five are measured in turn, ROUNDS times (in
# alternating order), and each figure is the median of its rounds.
#
#   bash bench/load.sh [SECONDS per run (5)] [CONNECTIONS (64)] [ROUNDS (5)]
#   WORKERS=1 bash bench/load.sh ...   every server (bare hyper and the nodes alike) on
#                                      that many Tokio workers (default: one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
connections=${2:-64}
rounds=${3:-5}
for tool in wrk redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench/load.sh needs $tool (apt-get install wrk redis-server)"; exit 1; }
done
# The servers' runtimes read TOKIO_WORKER_THREADS; wrk does not.
if [ -n "${WORKERS:-}" ]; then export TOKIO_WORKER_THREADS=$WORKERS; fi
cargo build --release --features redis --example node --example bare_hyper >/dev/null 2>&1
node=target/release/examples/node
pids=()
redis_dir=$(mktemp -d)
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$redis_dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
limit=1000000000   # never reached: every check is a counted, allowed request

bare=$(free_port); one=$(free_port); two_a=$(free_port); two_b=$(free_port)
redis_node=$(free_port); unbatched_node=$(free_port); redis_port=$(free_port)
target/release/examples/bare_hyper "$bare" >/dev/null & pids+=($!); bare_pid=$!
"$node" --limit $limit --advertise "127.0.0.1:$one" "$one" "127.0.0.1:$one" >/dev/null & pids+=($!); one_pid=$!
two_pids=()
for port in "$two_a" "$two_b"; do
  "$node" --limit $limit --advertise "127.0.0.1:$port" "$port" "127.0.0.1:$two_a" "127.0.0.1:$two_b" >/dev/null & pids+=($!); two_pids+=($!)
done
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" >/dev/null & pids+=($!); redis_pid=$!
sleep 0.5
"$node" --limit $limit --redis "redis://127.0.0.1:$redis_port" "$redis_node" >/dev/null & pids+=($!); redis_node_pid=$!
"$node" --limit $limit --redis "redis://127.0.0.1:$redis_port" --redis-unbatched "$unbatched_node" >/dev/null & pids+=($!); unbatched_pid=$!
sleep 1

# One wrk run: prints "REQUESTS_PER_SECOND REQUESTS".
measure() { # PORT
  local out
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" -s bench/random_users.lua "http://127.0.0.1:$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "warning: port $1 answered non-2xx: $(grep Non-2xx <<<"$out")" >&2; fi
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out")"
}
# CPU time (user + system, in clock ticks) that the processes PIDS have used so far.
ticks() { # PIDS...
  local sum=0 pid
  for pid in "$@"; do sum=$(( sum + $(awk '{print $14 + $15}' "/proc/$pid/stat") )); done
  echo "$sum"
}
# Time the hypervisor gave to other guests, in ticks of all cores (the `steal` column).
stolen() { awk '/^cpu / {print $9}' /proc/stat; }
# Ticks of all cores that nothing ran in (idle + iowait), and all ticks: an idle share
# shows a setup that waits (on a round trip, say) rather than one that lacks CPU.
idle_and_total() { awk '/^cpu / {print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
hz=$(getconf CLK_TCK)
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# calls of one command (`evalsha`), or of all (`all`, which counts the script's own inner
# commands too) in INFO commandstats.
calls() { redis-cli -p "$redis_port" INFO commandstats | awk -F'[=,:]' -v c="$1" '$1 == "cmdstat_" c || (c == "all" && /^cmdstat_/) {sum += $3} END {print sum + 0}'; }

names=("bare hyper (ceiling)" "one-node ring" "two-node ring (half forwarded)" "Redis node (default)" "Redis node, --redis-unbatched")
ports=("$bare" "$one" "$two_a" "$redis_node" "$unbatched_node")
# The processes that work for each setup's requests, measured apart: its node(s), then
# (for Redis) redis-server.
serving=("$bare_pid" "$one_pid" "${two_pids[*]}" "$redis_node_pid" "$unbatched_pid")
helping=("" "" "" "$redis_pid" "$redis_pid")
declare -a results=("" "" "" "" "") node_cpu=("" "" "" "" "") redis_cpu=("" "" "" "" "") idle=("" "" "" "" "")
steal_before=$(stolen); started=$(date +%s)
# Per Redis node (3, 4): EVALSHA calls, all commands, requests.
declare -A trips=([3]=0 [4]=0) all=([3]=0 [4]=0) served=([3]=0 [4]=0)
echo "wrk -t2 -c$connections -d${seconds}s x $rounds rounds, random users out of 10,000, $(nproc) cores, ${WORKERS:-default} Tokio workers per server" >&2
for round in $(seq "$rounds"); do
  # Odd rounds go forward, even rounds backward, so that a drift of the machine during a
  # round does not favour the setups measured first.
  order="0 1 2 3 4"; [ $((round % 2)) = 0 ] && order="4 3 2 1 0"
  for i in $order; do
    if [ "$i" -ge 3 ]; then trips_before=$(calls evalsha); all_before=$(calls all); fi
    # shellcheck disable=SC2086 # lists of pids
    node_before=$(ticks ${serving[$i]}); redis_before=$(ticks ${helping[$i]})
    read -r idle_before total_before < <(idle_and_total)
    read -r rps requests < <(measure "${ports[$i]}")
    read -r idle_after total_after < <(idle_and_total)
    # shellcheck disable=SC2086
    node_after=$(ticks ${serving[$i]}); redis_after=$(ticks ${helping[$i]})
    idle[$i]="${idle[$i]} $(awk -v i=$(( idle_after - idle_before )) -v t=$(( total_after - total_before )) 'BEGIN {print (t > 0) ? 100 * i / t : 0}')"
    node_cpu[$i]="${node_cpu[$i]} $(awk -v t=$(( node_after - node_before )) -v n="$requests" -v hz="$hz" 'BEGIN {print t / hz * 1e6 / n}')"
    redis_cpu[$i]="${redis_cpu[$i]} $(awk -v t=$(( redis_after - redis_before )) -v n="$requests" -v hz="$hz" 'BEGIN {print t / hz * 1e6 / n}')"
    if [ "$i" -ge 3 ]; then
      trips[$i]=$(( trips[$i] + $(calls evalsha) - trips_before ))
      all[$i]=$(( all[$i] + $(calls all) - all_before ))
      served[$i]=$(( served[$i] + requests ))
    fi
    results[$i]="${results[$i]} $rps"
    printf 'round %d  %-32s %12s req/s\n' "$round" "${names[$i]}" "$rps" >&2
  done
done
for i in 0 1 2 3 4; do
  med[$i]=$(tr ' ' '\n' <<<"${results[$i]}" | grep . | median)
  printf '%-34s %12.0f req/s (median)\n' "${names[$i]}" "${med[$i]}"
done
awk -v bare="${med[0]}" -v one="${med[1]}" -v two="${med[2]}" -v redis="${med[3]}" -v unbatched="${med[4]}" 'BEGIN {
  printf "one-node ring / bare hyper:      %.2f\n", one / bare
  printf "two-node ring / one-node ring:   %.2f\n", two / one
  printf "Redis node / one-node ring:      %.2f (checks that arrive together share a call)\n", redis / one
  printf "unbatched Redis / one-node ring: %.2f (--redis-unbatched: a call per check)\n", unbatched / one
}'
for i in 3 4; do
  awk -v name="${names[$i]}" -v trips="${trips[$i]}" -v all="${all[$i]}" -v n="${served[$i]}" 'BEGIN {
    printf "%s: %.3f script calls per check (%d EVALSHA for %d requests), %.3f Redis commands per check\n", name, trips / n, trips, n, all / n
  }'
done
echo "(inside the script: TIME once per call; INCRBY per check, PEXPIRE on a window's first hit, DECRBY when over)"
echo "CPU per request (median; wrk's own is not counted), and the share of the cores left idle:"
for i in 0 1 2 3 4; do
  node_us=$(tr ' ' '\n' <<<"${node_cpu[$i]}" | grep . | median)
  where="the node"; [ "$i" = 2 ] && where="the two nodes"
  line=$(printf '  %-32s %5.1f us in %s' "${names[$i]}" "$node_us" "$where")
  if [ "$i" -ge 3 ]; then
    line="$line $(printf '+ %4.1f us in redis-server' "$(tr ' ' '\n' <<<"${redis_cpu[$i]}" | grep . | median)")"
  fi
  echo "$line, $(printf '%.0f' "$(tr ' ' '\n' <<<"${idle[$i]}" | grep . | median)")% idle"
done
elapsed=$(( $(date +%s) - started ))
awk -v s=$(( $(stolen) - steal_before )) -v hz="$hz" -v t="$elapsed" -v c="$(nproc)" 'BEGIN {
  printf "stolen by the hypervisor during the runs: %.0f%% of the cores (the noisier, the higher)\n", 100 * s / hz / t / c
}'
