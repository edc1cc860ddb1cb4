#!/usr/bin/env python3
"""A node's metrics during a load run, drawn as a chart for the README.

Two nodes of a ring (the `node` example built with `--features metrics`) on loopback;
wrk sends checks of 10,000 random users to node A, half of them owned by node B. Node
B is killed mid-run and started again. Node A's /metrics is scraped every half second,
and the chart shows what an operator would watch:
  1. checks per second by outcome (allowed, limited, decided by the failure mode),
  2. the round trip to node B (median and 99th percentile, from the histogram),
  3. node B's circuit (open or closed) and the ring's members.

    python3 bench/metrics_chart.py [OUT.svg (docs/metrics-during-load.svg)]

Loopback only; bounded in time (about 30 s); everything started is stopped.
Needs wrk (apt-get install wrk).
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE = os.path.join(ROOT, "target", "release", "examples", "node")
RUN_SECONDS = 24
KILL_AT, RESTART_AT = 9.0, 15.0
SCRAPE_EVERY = 0.5
SERIES = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(port, members):
    args = [NODE, "--limit", "20", "--window", "10s", "--failure", "local",
            "--advertise", f"127.0.0.1:{port}", str(port)] + [f"127.0.0.1:{m}" for m in members]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as answer:
        return answer.read().decode()


def wait_ready(port):
    for _ in range(200):
        try:
            get(port, "/healthz")
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"node on {port} did not become ready")


def parse(text):
    """{(name, labels): value} of a Prometheus text page."""
    values = {}
    for line in text.splitlines():
        match = SERIES.match(line)
        if match:
            name, labels, value = match.groups()
            values[(name, labels or "")] = float(value)
    return values


def quantile(buckets, q):
    """The q-quantile of a histogram's counts per upper bound (bucket deltas)."""
    total = buckets.get(float("inf"), 0)
    if total <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "metrics-during-load.svg")
    subprocess.run(["cargo", "build", "-q", "--release", "--features", "metrics", "--example", "node"],
                   cwd=ROOT, check=True)
    a, b = free_port(), free_port()
    nodes = {a: start(a, [a, b]), b: start(b, [a, b])}
    samples = []
    try:
        wait_ready(a), wait_ready(b)
        wrk = subprocess.Popen(["wrk", "-t2", "-c16", f"-d{RUN_SECONDS}s", "-s",
                                os.path.join(ROOT, "bench", "random_users.lua"), f"http://127.0.0.1:{a}"],
                               stdout=subprocess.DEVNULL)
        started = time.time()
        killed = restarted = False
        while wrk.poll() is None and time.time() - started < RUN_SECONDS + 5:
            now = time.time() - started
            if not killed and now >= KILL_AT:
                nodes[b].send_signal(signal.SIGKILL)
                nodes[b].wait()
                killed = True
            if not restarted and now >= RESTART_AT:
                nodes[b] = start(b, [a, b])
                restarted = True
            try:
                samples.append((now, parse(get(a, "/metrics"))))
            except Exception:
                pass
            time.sleep(SCRAPE_EVERY)
        wrk.wait(timeout=10)
    finally:
        for process in nodes.values():
            process.kill()
            process.wait()
    draw(out, samples, b)
    print(f"wrote {out} from {len(samples)} scrapes of node A")


def rates(samples, pick):
    """Per-second rates between scrapes of the sum of the series `pick` selects."""
    points = []
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        total = lambda v: sum(value for key, value in v.items() if pick(*key))
        points.append((t1, max(0.0, (total(v1) - total(v0)) / (t1 - t0))))
    return points


def round_trips(samples, peer, q):
    points = []
    for (_, v0), (t1, v1) in zip(samples, samples[1:]):
        buckets = {}
        for (name, labels), value in v1.items():
            if name == "ringlimit_peer_round_trip_seconds_bucket" and f'peer="{peer}"' in labels:
                bound = re.search(r'le="([^"]+)"', labels).group(1)
                bound = float("inf") if bound == "+Inf" else float(bound)
                buckets[bound] = value - v0.get((name, labels), 0.0)
        value = quantile(buckets, q)
        if value is not None and value != float("inf"):
            points.append((t1, value * 1e6))
    return points


def draw(out, samples, b):
    peer = f"127.0.0.1:{b}"
    outcome = lambda o: (lambda name, labels: name == "ringlimit_checks_total" and f'outcome="{o}"' in labels)
    panels = [
        ("checks per second at node A, by outcome", "", [
            ("allowed", "#2b8a3e", rates(samples, outcome("allowed"))),
            ("limited (429)", "#e67700", rates(samples, outcome("limited"))),
            ("failure_local (node B down)", "#c92a2a", rates(samples, outcome("failure_local"))),
        ]),
        ("round trip to node B, µs (bucket upper bounds)", "", [
            ("median", "#1c7ed6", round_trips(samples, peer, 0.5)),
            ("99th percentile", "#862e9c", round_trips(samples, peer, 0.99)),
        ]),
        ("node B's circuit at node A (1 = open), and the ring's members", "", [
            ("circuit open", "#c92a2a", [(t, v.get(("ringlimit_peer_circuit_open", f'peer="{peer}"'), 0.0)) for t, v in samples]),
            ("ring members", "#495057", [(t, v.get(("ringlimit_ring_members", ""), 0.0)) for t, v in samples]),
        ]),
    ]
    width, height, left, top, gap = 900, 190, 70, 40, 60
    total_height = top + len(panels) * (height + gap)
    t_max = max((t for t, _ in samples), default=1.0)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + left + 200}" height="{total_height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="20" font-size="15">A ringlimit node under load (wrk, 16 connections, 10,000 users, '
           f'limit 20 per 10 s); node B killed at {KILL_AT:.0f} s, started again at {RESTART_AT:.0f} s</text>']
    for i, (title, _, lines) in enumerate(panels):
        y0 = top + i * (height + gap) + 20
        y_max = max([v for _, _, points in lines for _, v in points] + [1.0]) * 1.1
        x = lambda t: left + t / t_max * width
        y = lambda v: y0 + height - v / y_max * height
        svg.append(f'<text x="{left}" y="{y0 - 6}" font-weight="bold">{title}</text>')
        svg.append(f'<rect x="{left}" y="{y0}" width="{width}" height="{height}" fill="none" stroke="#adb5bd"/>')
        for frac in (0, 0.5, 1):
            value = y_max * frac
            svg.append(f'<text x="{left - 6}" y="{y(value) + 4}" text-anchor="end">{value:,.0f}</text>')
        for event in (KILL_AT, RESTART_AT):
            svg.append(f'<line x1="{x(event)}" y1="{y0}" x2="{x(event)}" y2="{y0 + height}" stroke="#868e96" stroke-dasharray="4 3"/>')
        for second in range(0, int(t_max) + 1, 5):
            svg.append(f'<text x="{x(second)}" y="{y0 + height + 14}" text-anchor="middle">{second} s</text>')
        for j, (label, colour, points) in enumerate(lines):
            if points:
                path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
                svg.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
            svg.append(f'<rect x="{left + width + 15}" y="{y0 + 10 + j * 18}" width="12" height="3" fill="{colour}"/>')
            svg.append(f'<text x="{left + width + 32}" y="{y0 + 15 + j * 18}">{label}</text>')
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
