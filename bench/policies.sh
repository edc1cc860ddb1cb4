#!/usr/bin/env bash
# Two policies per request against one, in one run: the same wrk load (random users out of
# 10,000) against a one-node ring, a two-node ring driven through one node (half the
# checks forwarded, each carrying its policies) and a node on the Redis backend (its own
# redis-server on a free port), each started twice: with one policy (`--policy
# a:LIMIT/1h`) and with two (`--policy a:LIMIT/1h --policy b:LIMIT/50m`). Prints the
# median requests/second of each, the two-policy / one-policy ratio per setup, and the
# CPU each setup's processes spent per request. Loopback only; every run is bounded in
# time and everything started is stopped. The six are measured in turn, ROUNDS times
# (in alternating order), and each figure is the median of its rounds.
#
#   bash bench/policies.sh [SECONDS per run (5)] [CONNECTIONS (64)] [ROUNDS (3)]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
connections=${2:-64}
rounds=${3:-3}
for tool in wrk redis-server; do
  command -v "$tool" >/dev/null || { echo "bench/policies.sh needs $tool (apt-get install wrk redis-server)"; exit 1; }
done
cargo build --release --features redis --example node >/dev/null 2>&1
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
one_policy=(--policy "a:$limit/1h")
two_policies=(--policy "a:$limit/1h" --policy "b:$limit/50m")

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$redis_dir" >/dev/null & pids+=($!); redis_pid=$!
sleep 0.5
names=() ports=() serving=() helping=()
for n in 1 2; do
  if [ "$n" = 1 ]; then policies=("${one_policy[@]}"); else policies=("${two_policies[@]}"); fi
  one=$(free_port)
  "$node" "${policies[@]}" --advertise "127.0.0.1:$one" "$one" "127.0.0.1:$one" >/dev/null & pids+=($!)
  names+=("one-node ring, $n policies"); ports+=("$one"); serving+=("$!"); helping+=("")
  a=$(free_port); b=$(free_port); both=""
  for port in "$a" "$b"; do
    "$node" "${policies[@]}" --advertise "127.0.0.1:$port" "$port" "127.0.0.1:$a" "127.0.0.1:$b" >/dev/null & pids+=($!); both="$both $!"
  done
  names+=("two-node ring, $n policies"); ports+=("$a"); serving+=("$both"); helping+=("")
  r=$(free_port)
  "$node" "${policies[@]}" --redis "redis://127.0.0.1:$redis_port" "$r" >/dev/null & pids+=($!)
  names+=("Redis-backed node, $n policies"); ports+=("$r"); serving+=("$!"); helping+=("$redis_pid")
done
sleep 1

measure() { # PORT: prints "REQUESTS_PER_SECOND REQUESTS"
  local out
  out=$(wrk -t2 -c"$connections" -d"${seconds}s" -s bench/random_users.lua "http://127.0.0.1:$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "warning: port $1 answered non-2xx: $(grep Non-2xx <<<"$out")" >&2; fi
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '/requests in/ {print $1}' <<<"$out")"
}
ticks() { # PIDS...: CPU ticks (user + system) used so far
  local sum=0 pid
  for pid in "$@"; do sum=$(( sum + $(awk '{print $14 + $15}' "/proc/$pid/stat") )); done
  echo "$sum"
}
hz=$(getconf CLK_TCK)
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

declare -a results=("" "" "" "" "" "") cpu=("" "" "" "" "" "")
echo "wrk -t2 -c$connections -d${seconds}s x $rounds rounds, random users out of 10,000, $(nproc) cores" >&2
for round in $(seq "$rounds"); do
  order="0 3 1 4 2 5"; [ $((round % 2)) = 0 ] && order="5 2 4 1 3 0"
  for i in $order; do
    # shellcheck disable=SC2086 # lists of pids
    before=$(ticks ${serving[$i]} ${helping[$i]})
    read -r rps requests < <(measure "${ports[$i]}")
    # shellcheck disable=SC2086
    after=$(ticks ${serving[$i]} ${helping[$i]})
    cpu[$i]="${cpu[$i]} $(awk -v t=$(( after - before )) -v n="$requests" -v hz="$hz" 'BEGIN {print t / hz * 1e6 / n}')"
    results[$i]="${results[$i]} $rps"
    printf 'round %d  %-32s %12s req/s\n' "$round" "${names[$i]}" "$rps" >&2
  done
done
for i in 0 1 2 3 4 5; do
  med[$i]=$(tr ' ' '\n' <<<"${results[$i]}" | grep . | median)
  us[$i]=$(tr ' ' '\n' <<<"${cpu[$i]}" | grep . | median)
  printf '%-32s %10.0f req/s (median), %5.1f us CPU per request\n' "${names[$i]}" "${med[$i]}" "${us[$i]}"
done
for i in 0 1 2; do
  awk -v name="${names[$i]%,*}" -v one="${med[$i]}" -v two="${med[$((i + 3))]}" 'BEGIN {
    printf "%s: two policies / one = %.2f\n", name, two / one
  }'
done
