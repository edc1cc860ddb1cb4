#!/usr/bin/env bash
# The load benchmark: in one run, the same wrk load (random users out of 10,000) against
#   - bare hyper: the same server answering ALLOWED with no limiter (the ceiling),
#   - a one-node ring,
#   - a two-node ring, driven through one node, so half the checks are forwarded,
#   - a node on the Redis backend (its own redis-server on a free port): checks that
#     arrive together share a script call (the default), and one with --redis-unbatched
#     (a call per check),
# at each number of connections (8, 64 and 256 by default); then, per number, the
# requests/second, the ratios, Redis operations per check, and the CPU each setup's
# processes (its nodes, and redis-server) spent per request, which a noisy machine moves
# less than requests/second. It ends with one table of the ratios and CPU per request
# at every number of connections (Markdown, as BENCHMARKS.md opens with it).
# Loopback only; every run is bounded in time and everything started is stopped (the
# servers' own logs are not shown).
#
# This machine is shared and noisy: the five are measured in turn, ROUNDS times (in
# alternating order), and each figure is the median of its rounds.
#
#   bash bench/load.sh [SECONDS per run (5)] [CONNECTIONS ("8 64 256")] [ROUNDS (3)]
#   bash bench/load.sh 5 64 3            one number of connections
#   WORKERS=1 bash bench/load.sh ...     every server (bare hyper and the nodes alike) on
#                                        that many Tokio workers (default: one per core)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
list=${2:-8 64 256}
read -r -a counts <<<"${list//,/ }"   # spaces or commas
rounds=${3:-3}
for tool in wrk redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "bench/load.sh needs $tool (apt-get install wrk redis-server)"; exit 1; }
done
# The servers' runtimes read TOKIO_WORKER_THREADS; wrk does not.
if [ -n "${WORKERS:-}" ]; then export TOKIO_WORKER_THREADS=$WORKERS; fi
cargo build --release --features redis --example node --example bare_hyper >/dev/null 2>&1 ||
  { echo "the build failed: cargo build --release --features redis --example node --example bare_hyper"; exit 1; }
node=${NODE:-target/release/examples/node}   # NODE=PATH: compare a node built elsewhere
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
"$node" --limit $limit --advertise "127.0.0.1:$one" "$one" "127.0.0.1:$one" >/dev/null 2>&1 & pids+=($!); one_pid=$!
two_pids=()
for port in "$two_a" "$two_b"; do
  "$node" --limit $limit --advertise "127.0.0.1:$port" "$port" "127.0.0.1:$two_a" "127.0.0.1:$two_b" >/dev/null 2>&1 & pids+=($!); two_pids+=($!)
done
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" >/dev/null & pids+=($!); redis_pid=$!
sleep 0.5
"$node" --limit $limit --redis "redis://127.0.0.1:$redis_port" "$redis_node" >/dev/null 2>&1 & pids+=($!); redis_node_pid=$!
"$node" --limit $limit --redis "redis://127.0.0.1:$redis_port" --redis-unbatched "$unbatched_node" >/dev/null 2>&1 & pids+=($!); unbatched_pid=$!
sleep 1

# One wrk run: prints "REQUESTS_PER_SECOND REQUESTS".
measure() { # PORT CONNECTIONS
  local out threads=$(( $2 < 2 ? $2 : 2 ))
  out=$(wrk -t"$threads" -c"$2" -d"${seconds}s" -s bench/random_users.lua "http://127.0.0.1:$1")
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
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# calls of one command (`evalsha`), or of all (`all`, which counts the script's own inner
# commands too) in INFO commandstats.
calls() { redis-cli -p "$redis_port" INFO commandstats | awk -F'[=,:]' -v c="$1" '$1 == "cmdstat_" c || (c == "all" && /^cmdstat_/) {sum += $3} END {print sum + 0}'; }

names=("bare hyper (ceiling)" "one-node ring" "two-node ring (half forwarded)" "Redis node (default)" "Redis node, --redis-unbatched")
ports=("$bare" "$one" "$two_a" "$redis_node" "$unbatched_node")
# The processes that work for each setup's requests, measured apart: its node(s), then
# (for Redis) redis-server.
serving=("$bare_pid" "$one_pid" "${two_pids[*]}" "$redis_node_pid" "$unbatched_pid")
helping=("" "" "" "$redis_pid" "$redis_pid")
# Medians per "CONNECTIONS,SETUP": requests/s, CPU per request in the node(s) and in
# redis-server (us), the share of the cores left idle (%).
declare -A rps_of node_us_of redis_us_of idle_of

# Measures the five setups at CONNECTIONS, ROUNDS times, and prints that count's figures.
measure_at() { # CONNECTIONS
  local c=$1 round order i rps requests node_before node_after redis_before redis_after
  local idle_before idle_after total_before total_after trips_before all_before
  local -a results=("" "" "" "" "") node_cpu=("" "" "" "" "") redis_cpu=("" "" "" "" "") idle=("" "" "" "" "")
  # Per Redis node (3, 4): EVALSHA calls, all commands, requests.
  local -A trips=([3]=0 [4]=0) all=([3]=0 [4]=0) served=([3]=0 [4]=0)
  echo "wrk -c$c -d${seconds}s x $rounds rounds, random users out of 10,000, $(nproc) cores, ${WORKERS:-default} Tokio workers per server" >&2
  for round in $(seq "$rounds"); do
    # Odd rounds go forward, even rounds backward, so that a drift of the machine during
    # a round does not favour the setups measured first.
    order="0 1 2 3 4"; [ $((round % 2)) = 0 ] && order="4 3 2 1 0"
    for i in $order; do
      if [ "$i" -ge 3 ]; then trips_before=$(calls evalsha); all_before=$(calls all); fi
      # shellcheck disable=SC2086 # lists of pids
      node_before=$(ticks ${serving[$i]})
      # shellcheck disable=SC2086
      redis_before=$(ticks ${helping[$i]})
      read -r idle_before total_before < <(idle_and_total)
      read -r rps requests < <(measure "${ports[$i]}" "$c")
      if [ -z "${rps:-}" ] || [ -z "${requests:-}" ]; then echo "wrk measured nothing on port ${ports[$i]}" >&2; exit 1; fi
      read -r idle_after total_after < <(idle_and_total)
      # shellcheck disable=SC2086
      node_after=$(ticks ${serving[$i]})
      # shellcheck disable=SC2086
      redis_after=$(ticks ${helping[$i]})
      idle[i]="${idle[$i]} $(awk -v i=$(( idle_after - idle_before )) -v t=$(( total_after - total_before )) 'BEGIN {print (t > 0) ? 100 * i / t : 0}')"
      node_cpu[i]="${node_cpu[$i]} $(awk -v t=$(( node_after - node_before )) -v n="$requests" -v hz="$hz" 'BEGIN {print t / hz * 1e6 / n}')"
      redis_cpu[i]="${redis_cpu[$i]} $(awk -v t=$(( redis_after - redis_before )) -v n="$requests" -v hz="$hz" 'BEGIN {print t / hz * 1e6 / n}')"
      if [ "$i" -ge 3 ]; then
        trips[$i]=$(( trips[$i] + $(calls evalsha) - trips_before ))
        all[$i]=$(( all[$i] + $(calls all) - all_before ))
        served[$i]=$(( served[$i] + requests ))
      fi
      results[i]="${results[$i]} $rps"
      printf 'round %d  %-32s %12s req/s\n' "$round" "${names[$i]}" "$rps" >&2
    done
  done
  echo "== $c connections"
  for i in 0 1 2 3 4; do
    rps_of[$c,$i]=$(median <<<"${results[$i]}")
    node_us_of[$c,$i]=$(median <<<"${node_cpu[$i]}")
    redis_us_of[$c,$i]=$(median <<<"${redis_cpu[$i]}")
    idle_of[$c,$i]=$(median <<<"${idle[$i]}")
    printf '%-34s %12.0f req/s (median)\n' "${names[$i]}" "${rps_of[$c,$i]}"
  done
  for i in 3 4; do
    awk -v name="${names[$i]}" -v trips="${trips[$i]}" -v all="${all[$i]}" -v n="${served[$i]}" 'BEGIN {
      printf "%s: %.3f script calls per check (%d EVALSHA for %d requests), %.3f Redis commands per check\n", name, trips / n, trips, n, all / n
    }'
  done
}

steal_before=$(stolen); started=$(date +%s)
for c in "${counts[@]}"; do measure_at "$c"; done

# The table: a row per figure, a column per number of connections.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
row() { # LABEL CELL...
  local label=$1 line; shift
  line="| $label |"
  for cell in "$@"; do line="$line $cell |"; done
  echo "$line"
}
header=("connections") rule=("---")
for c in "${counts[@]}"; do header+=("$c"); rule+=("---"); done
echo
row "${header[@]}"; row "${rule[@]}"
cells() { # A B: the ratio of setup A to setup B at each count
  local c out=()
  for c in "${counts[@]}"; do out+=("$(ratio "${rps_of[$c,$1]}" "${rps_of[$c,$2]}")"); done
  echo "${out[@]}"
}
# shellcheck disable=SC2046 # cells are single words
row "one-node / bare hyper" $(cells 1 0)
# shellcheck disable=SC2046
row "two-node (half forwarded) / one-node" $(cells 2 1)
# shellcheck disable=SC2046
row "Redis (default) / one-node" $(cells 3 1)
# shellcheck disable=SC2046
row "Redis, --redis-unbatched / one-node" $(cells 4 1)
for i in 0 1 2 3 4; do
  out=()
  for c in "${counts[@]}"; do
    cell=$(printf '%.0fk' "$(awk -v r="${rps_of[$c,$i]}" 'BEGIN {print r / 1000}')")
    out+=("$cell")
  done
  row "requests/s: ${names[$i]}" "${out[@]}"
done
for i in 0 1 2 3 4; do
  out=()
  for c in "${counts[@]}"; do
    cell=$(printf '%.1f' "${node_us_of[$c,$i]}")
    if [ "$i" -ge 3 ]; then cell="$cell + $(printf '%.1f' "${redis_us_of[$c,$i]}")"; fi
    out+=("$cell")
  done
  label="CPU µs/request: ${names[$i]}"
  [ "$i" = 2 ] && label="$label, both nodes"
  [ "$i" -ge 3 ] && label="$label, node + redis-server"
  row "$label" "${out[@]}"
done
for i in 0 1 2 3 4; do
  out=()
  for c in "${counts[@]}"; do out+=("$(printf '%.0f%%' "${idle_of[$c,$i]}")"); done
  row "cores left idle: ${names[$i]}" "${out[@]}"
done
echo "(Redis, inside the script: TIME once per call; INCRBY per check, PEXPIRE on a window's first hit, DECRBY when over)"
elapsed=$(( $(date +%s) - started ))
awk -v s=$(( $(stolen) - steal_before )) -v hz="$hz" -v t="$elapsed" -v c="$(nproc)" 'BEGIN {
  printf "stolen by the hypervisor during the runs: %.0f%% of the cores (the noisier, the higher)\n", 100 * s / hz / t / c
}'
