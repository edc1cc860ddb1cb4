#!/usr/bin/env python3
"""Slow batch bodies against a node on loopback, and the node's resident memory meanwhile.

usage: python3 bench/slow_drip.py PORT NODE_PID CONNECTIONS SECONDS [chunked|length]

Opens CONNECTIONS connections to 127.0.0.1:PORT, sends each the head of a marked
`POST /check/batch` (`transfer-encoding: chunked`, or `content-length: 150000`, under the
cap), then one body byte every 2 ms on every connection for SECONDS. Prints the node's
VmRSS before, at the end of the drip, and 2 s after the connections are closed, and how
many connections the node had closed by the end. Bounded: it stops by itself.
"""

import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    port, pid, connections, seconds = (int(a) for a in sys.argv[1:5])
    framing = sys.argv[5] if len(sys.argv) > 5 else "chunked"
    head_line = (
        "transfer-encoding: chunked" if framing == "chunked" else "content-length: 150000"
    )
    byte = b"1\r\nx\r\n" if framing == "chunked" else b"x"
    head = (
        "POST /check/batch HTTP/1.1\r\nhost: node\r\nx-ringlimit-forwarded: 1\r\n"
        f"{head_line}\r\n\r\n"
    ).encode()

    before = rss_kib(pid)
    streams = []
    for _ in range(connections):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(head)
        streams.append(s)
    sent = 0
    closed = set()
    peak = before
    deadline = time.monotonic() + seconds
    next_sample = time.monotonic()
    while time.monotonic() < deadline:
        for i, s in enumerate(streams):
            if i in closed:
                continue
            try:
                s.send(byte)
                sent += 1
            except OSError:
                closed.add(i)
        if time.monotonic() >= next_sample:
            peak = max(peak, rss_kib(pid))
            next_sample += 0.25
        time.sleep(0.002)
    during = rss_kib(pid)
    peak = max(peak, during)
    # Which connections has the node closed (a 408 and EOF, or a reset)?
    for i, s in enumerate(streams):
        s.setblocking(False)
        try:
            s.recv(4096)  # an answer (408, 503) or EOF: the node cut the body off
            closed.add(i)
        except BlockingIOError:
            pass  # still open, still waiting for the body
        except OSError:
            closed.add(i)
    for s in streams:
        s.close()
    time.sleep(2)
    after = rss_kib(pid)
    print(
        f"{connections} connections, {framing}, {seconds} s: {sent} bytes sent; "
        f"RSS {before / 1024:.1f} MiB before, {peak / 1024:.1f} MiB peak, "
        f"{during / 1024:.1f} MiB at the end, {after / 1024:.1f} MiB 2 s after closing; "
        f"{len(closed)} of {connections} connections answered or closed by the node"
    )


if __name__ == "__main__":
    main()
