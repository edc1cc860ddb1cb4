#!/usr/bin/env python3
"""Extra admissions per membership event: what a user can get beyond the limit while the
ring changes, as an operator changes it.

usage: python3 bench/membership_events.py [USERS (200)] [LIMIT (5)] [REQUESTS per user
       per phase (4)] [NODES (3)]

Starts NODES `node`s on loopback sharing a `--members-file` (a limit of LIMIT per user per
hour, so that a run stays inside one window, or two at most: every admission is counted
in the window it was made in). Then, in phases, sends every user REQUESTS requests, each
to a node picked at random, from 8 threads, after each of these changes (made, then 5 s
for every node to read the file again; requests during the change itself are not part of
this script yet):

  1. nothing changes (the baseline: no extra admission expected);
  2. leave: the first node is taken out of the file, then stopped;
  3. rejoin: it is put back in the file and started again at once;
  4. join: one more node is added to the file and started at once;
  5. scale-in: that node is taken out of the file, then stopped.

Each node applies a change of the file within 4 s (two reads 2 s apart must agree; the
script waits 5 s). After each
phase it prints how many admissions went beyond LIMIT for one user in one window, summed
over users (that phase's, and in all), and the most any user has been allowed so far. Loopback only; every
request has a 2 s timeout, every phase a bounded number of requests, and every process
started is stopped at the end.
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
WINDOW_S = 3600
NODE = "target/release/examples/node"


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
        self.members = []
        self.write(ports)
        for port in ports:
            self.start(port)

    def write(self, ports):
        self.members = list(ports)
        # Written whole, then renamed: a node never reads half a file.
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(f"127.0.0.1:{p}\n" for p in ports))
        os.replace(tmp, self.file)

    def start(self, port):
        cmd = [NODE, "--limit", str(LIMIT), "--window", f"{WINDOW_S}s",
               "--advertise", f"127.0.0.1:{port}", "--members-file", self.file, str(port)]
        self.procs[port] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"node on {port} did not start")

    def stop(self, port):
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def stop_all(self):
        for port in list(self.procs):
            self.stop(port)


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


def phase(ring, allowed, lock):
    """REQUESTS requests for every user, to random live nodes, from 8 threads."""
    work = [f"user-{u}" for u in range(USERS) for _ in range(REQUESTS)]
    random.shuffle(work)
    chunks = [work[i::8] for i in range(8)]

    def run(chunk):
        for user in chunk:
            port = random.choice(list(ring.procs))
            if ask(port, user):
                with lock:
                    allowed[(user, int(time.time()) // WINDOW_S)] += 1

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


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
    settle = 5.0
    print(f"{NODES} nodes, {USERS} users, limit {LIMIT} per {WINDOW_S} s, "
          f"{REQUESTS} requests per user per phase")
    try:
        ring = Ring(ports)

        def report(name, before):
            over, worst = extra(allowed)
            print(f"{name:<34} extra admissions {over - before:5d} (in all {over:5d}), "
                  f"the most any user got so far {worst} (limit {LIMIT})")
            return over

        total = report("start", 0)
        phase(ring, allowed, lock)
        total = report("1. steady ring", total)

        first = ports[0]
        ring.write(ports[1:])
        time.sleep(settle)
        ring.stop(first)
        phase(ring, allowed, lock)
        total = report("2. leave (first node out, stopped)", total)

        # A node must be in the file to start: it goes in, and starts at once.
        ring.write(ports)
        ring.start(first)
        time.sleep(settle)
        phase(ring, allowed, lock)
        total = report("3. rejoin (started, put back)", total)

        extra_port = free_port()
        ring.write(ports + [extra_port])
        ring.start(extra_port)
        time.sleep(settle)
        phase(ring, allowed, lock)
        total = report("4. join (one node more)", total)

        ring.write(ports)
        time.sleep(settle)
        ring.stop(extra_port)
        phase(ring, allowed, lock)
        report("5. scale-in (that node out)", total)
    finally:
        if ring is not None:
            ring.stop_all()
            shutil.rmtree(ring.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
