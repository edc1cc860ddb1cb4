#!/usr/bin/env bash
# Instructions per request under callgrind, which a noisy machine does not move: the
# figure to compare builds by when requests/second move by ±20 % between runs.
#   - bare hyper (the ceiling) and a one-node ring, each asked GET /check by one
#     keep-alive connection;
#   - a forwarded check: a node left out of its own members file (it owns nothing and
#     forwards every check) asked the same way, its owner (a one-node ring) answering;
#     the instructions of both processes, each under callgrind.
#   - forwarded checks under load, in batches: the same two nodes driven by wrk (-t1) at
#     each of LOADED connections for 10 s, counted from after a warm-up; per check, and
#     the checks a batch carried (under callgrind's slowdown, so not those of a run at
#     full speed).
# Each server runs one Tokio worker; each sequential setup is run with SMALL and then
# LARGE requests (random users out of 10,000), and the difference is divided by LARGE -
# SMALL, so that start-up and warm-up cancel out. Run twice, the figures agree within
# about 1.5 % (background timers fire with wall time, which callgrind stretches); those
# under load within about 1.5 % at 8 connections and 0.2 % at 64 (batches vary).
# Loopback only; everything started is stopped.
#
#   bash bench/instructions.sh [SMALL (3000)] [LARGE (13000)]
#   NODE=PATH bash bench/instructions.sh     a node built elsewhere (to compare builds)
#   LOADED="8 64" bash bench/instructions.sh the connection counts under load ("" skips)
#   KEEP=1 bash bench/instructions.sh        keeps callgrind's files (the path is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
small=${1:-3000}
large=${2:-13000}
[[ "$small" =~ ^[0-9]+$ && "$large" =~ ^[0-9]+$ && "$large" -gt "$small" ]] ||
  { echo "usage: bash bench/instructions.sh [SMALL] [LARGE], whole numbers, LARGE > SMALL"; exit 1; }
for tool in valgrind callgrind_control callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "bench/instructions.sh needs $tool (apt-get install valgrind)"; exit 1; }
done
loaded=${LOADED-8 64}
for c in $loaded; do
  [[ "$c" =~ ^[1-9][0-9]*$ ]] || { echo "LOADED: connection counts, whole numbers above 0"; exit 1; }
done
if [ -n "$loaded" ]; then
  command -v wrk >/dev/null || { echo "bench/instructions.sh needs wrk for LOADED (apt-get install wrk), or LOADED=\"\""; exit 1; }
fi
cargo build --release --features redis --example node --example bare_hyper >/dev/null 2>&1 ||
  { echo "the build failed: cargo build --release --features redis --example node --example bare_hyper"; exit 1; }
node=${NODE:-target/release/examples/node}
bare=target/release/examples/bare_hyper
dir=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  # A node leaves gracefully (a grace period, its requests in flight): 30 s at most.
  local end=$((SECONDS + 30)) pid alive
  while [ "$SECONDS" -lt "$end" ]; do
    alive=
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -n "$alive" ] || break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "callgrind's files: $dir" >&2; else rm -rf "$dir"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
limit=1000000000   # never reached: every check is a counted, allowed request

# Every setup runs in this shell (no command substitution), so that a failure stops the
# script and cleanup sees every process it started.

# Starts PROGRAM ARGS... under callgrind, writing NAME.out; its pid in $traced_pid.
traced() { # NAME PROGRAM ARGS...
  local name=$1; shift
  TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$dir/$name.out" "$@" \
    >/dev/null 2>"$dir/$name.err" &
  traced_pid=$!
  pids+=("$traced_pid")
}
# The instructions callgrind counted for NAME (a whole number, or the script stops).
collected() {
  local count
  count=$(grep -o 'Collected : [0-9]*' "$dir/$1.err" | awk '{print $3}' || true)
  [[ "$count" =~ ^[0-9]+$ ]] || { echo "callgrind counted nothing for $1" >&2; exit 1; }
  echo "$count"
}
answers() { # PORT [PATH]: waits until PORT answers (callgrind starts slowly), 30 s at most
  local end=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$end" ]; do
    curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$1${2:-/check?user_id=warm}" && return
    sleep 0.2
  done
  echo "port $1 did not answer" >&2; exit 1
}
stop() { # PID: asks it to end (callgrind then writes its counts), 30 s at most
  kill -INT "$1"
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" || true
}

# Instructions of one server over REQUESTS requests, in $counted.
one_server() { # bare|node REQUESTS
  local port pid
  port=$(free_port)
  if [ "$1" = bare ]; then
    traced server "$bare" "$port"
  else
    traced server "$node" --limit $limit --advertise "127.0.0.1:$port" "$port" "127.0.0.1:$port"
  fi
  pid=$traced_pid
  answers "$port"
  python3 bench/sequential_requests.py "$port" "$2"
  stop "$pid"
  counted=$(collected server)
}

# Starts a forwarding node and its owner (a one-node ring), each under callgrind as
# front-SUFFIX and owner-SUFFIX: the forwarding node is left out of its own members
# file, so it owns nothing and forwards every check. Sets $front, $front_pid, $owner_pid.
two_nodes() { # SUFFIX
  local owner members=$dir/members-$1
  front=$(free_port); owner=$(free_port)
  traced "owner-$1" "$node" --limit $limit --advertise "127.0.0.1:$owner" "$owner" "127.0.0.1:$owner"
  owner_pid=$traced_pid
  printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$front" "$owner" >"$members"
  traced "front-$1" "$node" --limit $limit --advertise "127.0.0.1:$front" --members-file "$members" "$front"
  front_pid=$traced_pid
  answers "$owner" /healthz; answers "$front" /healthz
  printf '127.0.0.1:%s\n' "$owner" >"$members.new" && mv "$members.new" "$members"
  local end=$((SECONDS + 30))
  while [ "$SECONDS" -lt "$end" ]; do
    grep -q '"state":"out_of_ring"' <<<"$(curl -s --max-time 2 "http://127.0.0.1:$front/healthz" || true)" && break
    sleep 0.2
  done
  grep -q '"state":"out_of_ring"' <<<"$(curl -s --max-time 2 "http://127.0.0.1:$front/healthz" || true)" ||
    { echo "the forwarding node did not leave the ring" >&2; exit 1; }
}

# Instructions of the forwarding node and of its owner over REQUESTS requests, in
# $front_counted and $owner_counted.
forwarded() { # REQUESTS
  two_nodes "$1"
  python3 bench/sequential_requests.py "$front" "$1"
  stop "$front_pid"; stop "$owner_pid"
  front_counted=$(collected "front-$1"); owner_counted=$(collected "owner-$1")
}

# Asks callgrind in PID to zero (-z) or dump (-d) its counts, 30 s at most.
callgrind_says() { # -z|-d PID
  timeout 30 callgrind_control "$1" "$2" >/dev/null 2>&1 ||
    { echo "callgrind_control $1 $2 failed (or took over 30 s)" >&2; exit 1; }
}

# Instructions since the last zeroing, from the dump callgrind_control -d wrote for NAME.
dumped() {
  local count
  count=$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/$1.out.1" 2>/dev/null || true)
  [[ "$count" =~ ^[0-9]+$ ]] || { echo "callgrind dumped nothing for $1" >&2; exit 1; }
  dumped_count=$count
}

# Instructions a check on the forwarding node and on its owner while wrk keeps
# CONNECTIONS requests in flight for 10 s, in $loaded_front and $loaded_owner; the checks
# a batch carried, in $per_batch.
forwarded_under_load() { # CONNECTIONS
  local out requests batches
  two_nodes "loaded-$1"
  python3 bench/sequential_requests.py "$front" 200 >/dev/null   # warm-up
  callgrind_says -z "$front_pid"; callgrind_says -z "$owner_pid"
  # A long timeout: under callgrind a request can take seconds, and one wrk gave up on
  # would be worked on without being counted.
  out=$(wrk -t1 -c"$1" -d10s --timeout 30s -s bench/random_users.lua "http://127.0.0.1:$front")
  callgrind_says -d "$front_pid"; callgrind_says -d "$owner_pid"
  requests=$(grep -o '[0-9]* requests in' <<<"$out" | awk '{print $1}' || true)
  [[ "$requests" =~ ^[1-9][0-9]*$ ]] || { echo "wrk measured nothing at $1 connections" >&2; exit 1; }
  if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
    echo "wrk saw errors at $1 connections: $out" >&2; exit 1
  fi
  dumped "front-loaded-$1"; loaded_front=$((dumped_count / requests))
  dumped "owner-loaded-$1"; loaded_owner=$((dumped_count / requests))
  # Batches: the calls that wrote a batch's body, read off the forwarding node's counts.
  callgrind_annotate --tree=calling --threshold=100 "$dir/front-loaded-$1.out.1" \
    >"$dir/front-loaded-$1.calls" 2>/dev/null || true
  batches=$(grep -m1 '>   .*batch_body::encode_checks (' "$dir/front-loaded-$1.calls" |
    grep -o '([0-9,]*x)' | tr -d '(),x' || true)
  # A build that inlined it, or names it otherwise (NODE=PATH), leaves them uncounted.
  per_batch="checks a batch not counted: no calls of encode_checks found in this build"
  if [[ "$batches" =~ ^[1-9][0-9]*$ ]]; then
    per_batch=$(awk -v r="$requests" -v b="$batches" 'BEGIN {printf "%.1f checks a batch", r / b}')
  fi
  stop "$front_pid"; stop "$owner_pid"
}

per_request() { awk -v a="$1" -v b="$2" -v n=$((large - small)) 'BEGIN {printf "%.0f", (b - a) / n}'; }
echo "== instructions per request (callgrind, one worker, one connection; $small and $large requests)"
one_server bare "$small"; a=$counted; one_server bare "$large"; bare_per=$(per_request "$a" "$counted")
one_server node "$small"; a=$counted; one_server node "$large"; one_per=$(per_request "$a" "$counted")
forwarded "$small"; fa=$front_counted; oa=$owner_counted
forwarded "$large"; front_per=$(per_request "$fa" "$front_counted"); owner_per=$(per_request "$oa" "$owner_counted")
echo "bare hyper (ceiling)                      $bare_per"
echo "one-node ring                             $one_per ($(awk -v a="$one_per" -v b="$bare_per" 'BEGIN {printf "%+.0f, %.2f times", a - b, a / b}') bare hyper)"
echo "a forwarded check: forwarding node        $front_per"
echo "a forwarded check: its owner              $owner_per"
echo "a forwarded check, both nodes             $((front_per + owner_per)) ($(awk -v a="$((front_per + owner_per))" -v b="$one_per" 'BEGIN {printf "%.2f", a / b}') times a local check)"
for c in $loaded; do
  forwarded_under_load "$c"
  echo "under load, $c connections (wrk -t1 -c$c, $per_batch): forwarding node $loaded_front, owner $loaded_owner instructions a check"
done
