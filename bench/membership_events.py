#!/usr/bin/env python3
"""Extra admissions per membership event: what a user can get beyond the limit while the
ring changes, as an operator changes it, with requests flowing during every change.

usage: python3 bench/membership_events.py [USERS (200)] [LIMIT (5)] [REQUESTS per user
       per event (4)] [NODES (3)] [CLIENTS (16)]

Starts NODES `node`s on loopback sharing a `--members-file`, with a limit of LIMIT per
user per hour (so a run stays inside one window, or two at most: every admission is
counted in the window it was made in). Then, for each event below, sends every user
REQUESTS requests, each to a node picked at random among those running, from CLIENTS
threads, again and again until the change (made 0.3 s after they start) is done and
1 s more has passed, so that requests flow during the whole change:

  1. steady: nothing changes (the baseline);
  2. leave: the first node is taken out of the file, then stopped (SIGTERM);
  3. rejoin: it is put back in the file and started again;
  4. join: one more node is added to the file and started;
  5. scale-in: that node is taken out of the file, then stopped;
  6. rolling restart: every node in turn is stopped (SIGTERM) and started again, the
     file unchanged;
  7. crash: one node is killed (SIGKILL) and started again 1 s later;
  8. after the crash: nothing changes (what users get once the node is back; a crash's
     cost is events 7 and 8 together).

Nodes read the file every 2 s and apply a change once two reads agree; after each event
the script waits 5 s more before the next. It prints, per event, the admissions beyond
LIMIT for one user in one window, summed over users, and the most any user has been
allowed so far. Loopback only; every request has a 2 s timeout, every event a bounded
number of requests, and every process started is stopped at the end.

A node counts as started once it says it joined the ring (an orchestrator waits for a
node to be ready before it restarts the next). RINGLIMIT_NODE names another `node`
binary to measure, default target/release/examples/node; with RINGLIMIT_OLD_NODE=1 (a
node built before handoffs, which never says it joined) a node counts as started once
its port answers. RINGLIMIT_EVENTS_LOGS names a directory to keep each node's log in
(default: a temporary one, removed).
"""

import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

USERS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
LIMIT = int(sys.argv[2]) if len(sys.argv) > 2 else 5
REQUESTS = int(sys.argv[3]) if len(sys.argv) > 3 else 4
NODES = int(sys.argv[4]) if len(sys.argv) > 4 else 3
CLIENTS = int(sys.argv[5]) if len(sys.argv) > 5 else 16
WINDOW_S = 3600
NODE = os.environ.get("RINGLIMIT_NODE", "target/release/examples/node")
SETTLE_S = 5.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ring:
    """The nodes, their members file, and starting and stopping them."""

    def __init__(self, ports):
        self.dir = tempfile.mkdtemp(prefix="ringlimit-events-")
        self.file = os.path.join(self.dir, "members")
        self.procs = {}
        self.lock = threading.Lock()
        self.write(ports)
        for port in ports:
            self.start(port)

    def write(self, ports):
        # Written whole, then renamed: a node never reads half a file.
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(f"127.0.0.1:{p}\n" for p in ports))
        os.replace(tmp, self.file)

    def start(self, port):
        """Starts a node and waits until it has joined the ring (it says so), as an
        orchestrator waits for a node to be ready before it goes on."""
        cmd = [NODE, "--limit", str(LIMIT), "--window", f"{WINDOW_S}s",
               "--advertise", f"127.0.0.1:{port}", "--members-file", self.file, str(port)]
        logs = os.environ.get("RINGLIMIT_EVENTS_LOGS") or self.dir
        os.makedirs(logs, exist_ok=True)
        path = os.path.join(logs, f"node-{port}.log")

        def joined():
            try:
                with open(path) as f:
                    return f.read().count("joined the ring")
            except OSError:
                return 0

        before = joined()
        out = open(path, "a")
        proc = subprocess.Popen(cmd, stdout=out, stderr=out)
        deadline = time.time() + 10
        old_node = os.environ.get("RINGLIMIT_OLD_NODE") == "1"
        while time.time() < deadline:
            ready = port_answers(port) if old_node else joined() > before
            if ready:
                with self.lock:
                    self.procs[port] = proc
                return
            time.sleep(0.05)
        proc.kill()
        raise SystemExit(f"node on {port} did not start and join (log: {path})")

    def stop(self, port, sig=signal.SIGTERM):
        with self.lock:
            proc = self.procs.pop(port)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def running(self):
        with self.lock:
            return list(self.procs)

    def stop_all(self):
        for port in self.running():
            self.stop(port)


def port_answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def ask(port, user):
    """Whether node `port` allowed `user`'s check (None: no answer)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", f"/check?user_id={user}")
        status = conn.getresponse().status
        conn.close()
        return status == 200
    except OSError:
        return None


def event(ring, allowed, lock, change):
    """REQUESTS requests for every user, to random running nodes, from CLIENTS threads,
    over and over (at most 50 times) until `change`, made 0.3 s after they start, is
    done and 1 s more has passed: requests flow during the whole change."""
    work = [f"user-{u}" for u in range(USERS) for _ in range(REQUESTS)]
    random.shuffle(work)
    chunks = [work[i::CLIENTS] for i in range(CLIENTS)]
    changed = threading.Event()

    def run(chunk):
        for _ in range(50):
            for user in chunk:
                ports = ring.running()
                if ports and ask(random.choice(ports), user):
                    with lock:
                        allowed[(user, int(time.time()) // WINDOW_S)] += 1
            if changed.is_set():
                return

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    time.sleep(0.3)
    change()
    time.sleep(1.0)
    changed.set()
    for t in threads:
        t.join()
    time.sleep(SETTLE_S)


def extra(allowed):
    over = [n - LIMIT for n in allowed.values() if n > LIMIT]
    return sum(over), max(allowed.values(), default=0)


def main():
    if not os.path.exists(NODE):
        raise SystemExit(f"build it first: cargo build --release --example node ({NODE})")
    ports = [free_port() for _ in range(NODES)]
    ring = None
    allowed = defaultdict(int)
    lock = threading.Lock()
    print(f"{NODES} nodes, {USERS} users, limit {LIMIT} per {WINDOW_S} s, "
          f"{REQUESTS} requests per user per event, {CLIENTS} clients, node {NODE}")
    try:
        ring = Ring(ports)
        first, added = ports[0], free_port()
        events = [
            ("1. steady ring", lambda: None),
            ("2. leave (out of the file, stopped)",
             lambda: (ring.write(ports[1:]), time.sleep(SETTLE_S), ring.stop(first))),
            ("3. rejoin (put back, started)",
             lambda: (ring.write(ports), ring.start(first))),
            ("4. join (one node more)",
             lambda: (ring.write(ports + [added]), ring.start(added))),
            ("5. scale-in (that node out, stopped)",
             lambda: (ring.write(ports), time.sleep(SETTLE_S), ring.stop(added))),
            ("6. rolling restart (each node)",
             lambda: [(ring.stop(p), ring.start(p)) for p in ports]),
            ("7. crash (SIGKILL, back in 1 s)",
             lambda: (ring.stop(first, signal.SIGKILL), time.sleep(1), ring.start(first))),
            ("8. after the crash", lambda: None),
        ]
        total = 0
        for name, change in events:
            event(ring, allowed, lock, change)
            over, worst = extra(allowed)
            print(f"{name:<38} extra admissions {over - total:5d} (in all {over:5d}), "
                  f"the most any user got so far {worst} (limit {LIMIT})", flush=True)
            total = over
    finally:
        if ring is not None:
            ring.stop_all()
            shutil.rmtree(ring.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
