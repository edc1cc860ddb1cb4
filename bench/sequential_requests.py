"""Asks a node `GET /check` for N random users (out of 10,000, the same users every run:
seeded) one after another on one keep-alive connection, then, if given, one request for
THEN_PATH. The client of the callgrind benchmarks (bench/instructions.sh,
bench/metrics_cost.sh): one connection, so that a server's instruction count repeats.

    python3 bench/sequential_requests.py PORT N [THEN_PATH]
"""

import http.client
import random
import sys

port, n = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
random.seed(1)
for _ in range(n):
    connection.request("GET", f"/check?user_id=user-{random.randint(1, 10000)}")
    connection.getresponse().read()
if len(sys.argv) > 3:
    connection.request("GET", sys.argv[3])
    connection.getresponse().read()
