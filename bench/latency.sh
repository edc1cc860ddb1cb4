#!/usr/bin/env bash
# The latency benchmark: what the layer adds to a request, and what forwarding adds to a
# check, at the median and the 99th percentile. In one run, the same wrk load (random
# users out of 10,000, `wrk --latency`) against
#   - bare hyper: the same server answering ALLOWED with no limiter,
#   - a one-node ring: every check local,
#   - a forwarding node: a node whose members are only another node, so every check it
#     serves is forwarded there (the one-node ring's work, plus the hop),
# at 1 and 8 connections (wrk's latency is the whole round trip of each request, so at 8
# connections it includes the queueing a busier server causes).
# Then: layer added = one-node - bare; forwarding added = forwarding node - one-node.
# Loopback only; every run is bounded in time and everything started is stopped (the
# servers' own logs are not shown).
#
# This machine is shared and noisy: the three are measured in turn, ROUNDS times (in
# alternating order), and each figure is the median of its rounds.
#
#   bash bench/latency.sh [SECONDS per run (5)] [CONNECTIONS ("1 8")] [ROUNDS (5)]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
list=${2:-1 8}
read -r -a counts <<<"${list//,/ }"   # spaces or commas
rounds=${3:-5}
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "bench/latency.sh needs $tool (apt-get install wrk curl python3)"; exit 1; }
done
# The same build as bench/load.sh's, so neither rebuilds the other's binaries.
cargo build --release --features redis --example node --example bare_hyper >/dev/null 2>&1 ||
  { echo "the build failed: cargo build --release --features redis --example node --example bare_hyper"; exit 1; }
node=${NODE:-target/release/examples/node}   # NODE=PATH: compare a node built elsewhere
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
limit=1000000000   # never reached: every check is a counted, allowed request

bare=$(free_port); one=$(free_port); front=$(free_port); owner=$(free_port)
members=$(mktemp)
trap 'cleanup; rm -f "$members" "$members.new"' EXIT
target/release/examples/bare_hyper "$bare" >/dev/null & pids+=($!)
"$node" --limit $limit --advertise "127.0.0.1:$one" "$one" "127.0.0.1:$one" >/dev/null 2>&1 & pids+=($!)
"$node" --limit $limit --advertise "127.0.0.1:$owner" "$owner" "127.0.0.1:$owner" >/dev/null 2>&1 & pids+=($!)
# The forwarding node starts as a member (a node must be one to start), then its members
# file leaves it out: it stays ready, owns nothing, and sends every check to the owner.
printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$front" "$owner" >"$members"
"$node" --limit $limit --advertise "127.0.0.1:$front" --members-file "$members" "$front" >/dev/null 2>&1 & pids+=($!)
sleep 1
printf '127.0.0.1:%s\n' "$owner" >"$members.new" && mv "$members.new" "$members"
for _ in $(seq 100); do
  curl -s --max-time 2 "http://127.0.0.1:$front/healthz" | grep -q '"state":"out_of_ring"' && break
  sleep 0.1
done
curl -s --max-time 2 "http://127.0.0.1:$front/healthz" | grep -q '"state":"out_of_ring"' || { echo "the forwarding node did not leave the ring"; exit 1; }
for port in "$bare" "$one" "$front"; do
  curl -sf --max-time 2 "http://127.0.0.1:$port/check?user_id=warm" >/dev/null || { echo "port $port does not answer /check"; exit 1; }
done

# One wrk run at CONNECTIONS: prints "MEDIAN_US P99_US" (wrk's latency distribution).
measure() { # PORT CONNECTIONS
  local out threads=$(( $2 < 2 ? $2 : 2 ))
  out=$(wrk -t"$threads" -c"$2" -d"${seconds}s" --latency -s bench/random_users.lua "http://127.0.0.1:$1")
  if grep -q "Non-2xx" <<<"$out"; then echo "warning: port $1 answered non-2xx: $(grep Non-2xx <<<"$out")" >&2; fi
  awk '
    function us(v) {
      if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v
    }
    $1 == "50%" {p50 = us($2)} $1 == "99%" {p99 = us($2)}
    END {print p50, p99}' <<<"$out"
}
# A wrk run that printed no latency (wrk failed): said, and the run stops.
checked() { # MEDIAN P99 PORT
  if [ -z "$1" ] || [ -z "$2" ]; then echo "wrk measured nothing on port $3" >&2; exit 1; fi
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

names=("bare hyper" "one-node ring" "forwarding node (every check forwarded)")
ports=("$bare" "$one" "$front")
declare -A p50_of p99_of
for c in "${counts[@]}"; do
  declare -a p50s=("" "" "") p99s=("" "" "")
  for round in $(seq "$rounds"); do
    order="0 1 2"; [ $((round % 2)) = 0 ] && order="2 1 0"
    for i in $order; do
      read -r p50 p99 < <(measure "${ports[$i]}" "$c")
      checked "${p50:-}" "${p99:-}" "${ports[$i]}"
      p50s[i]="${p50s[i]} $p50"; p99s[i]="${p99s[i]} $p99"
      printf 'c%-4s round %d  %-42s median %8.1f us  p99 %8.1f us\n' "$c" "$round" "${names[$i]}" "$p50" "$p99" >&2
    done
  done
  for i in 0 1 2; do
    p50_of[$c,$i]=$(median <<<"${p50s[$i]}"); p99_of[$c,$i]=$(median <<<"${p99s[$i]}")
  done
done

echo "wrk --latency -d${seconds}s x $rounds rounds, random users out of 10,000, $(nproc) cores; medians of the rounds, in µs"
echo "(what a setup adds is the difference of the two setups' medians of rounds)"
echo
echo "| connections | setup | median | p99 |"
echo "| --- | --- | --- | --- |"
for c in "${counts[@]}"; do
  for i in 0 1 2; do
    printf '| %s | %s | %.1f | %.1f |\n' "$c" "${names[$i]}" "${p50_of[$c,$i]}" "${p99_of[$c,$i]}"
  done
  awk -v c="$c" -v b50="${p50_of[$c,0]}" -v b99="${p99_of[$c,0]}" -v o50="${p50_of[$c,1]}" -v o99="${p99_of[$c,1]}" \
      -v f50="${p50_of[$c,2]}" -v f99="${p99_of[$c,2]}" 'BEGIN {
    printf "| %s | **the layer adds** (one-node - bare) | %+.1f | %+.1f |\n", c, o50 - b50, o99 - b99
    printf "| %s | **forwarding adds** (forwarding node - one-node) | %+.1f | %+.1f |\n", c, f50 - o50, f99 - o99
  }'
done
