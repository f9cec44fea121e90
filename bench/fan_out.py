"""Fan-out: one metric callback of many resources, beside the floor set by Flashduty's rate limit."""

from __future__ import annotations

import statistics
import time

import config
from bench.common import table
from callback import Relay, Request
from tests.support.callbacks import body, metric_callback
from tests.support.flashduty import FlashdutyStub


def run() -> None:
    rows = []
    # 10, 100 and 500 resources at 20 and 100 ms; and 200 at 50 ms, the headline case in docs/benchmarks.md.
    for latency, sizes in ((0.02, (10, 100, 500)), (0.05, (200,)), (0.1, (10, 100, 500))):
        stub = FlashdutyStub().start()
        stub.delay = latency
        try:
            settings = config.load(
                {
                    "FLASHDUTY_INTEGRATION_KEY": f"fan-{latency}",
                    "FLASHDUTY_PUSH_URL": stub.url,
                    "DELIVERY_CONCURRENCY": "16",
                }
            )
            relay = Relay(settings)
            for resources in sizes:
                times = []
                for run in range(3 if resources < 500 else 1):
                    stub.received.clear()
                    payload = body(metric_callback(resources, f"{run}-"))
                    started = time.perf_counter()
                    answer = relay.handle(Request("POST", "/", {}, {}, payload))
                    times.append(time.perf_counter() - started)
                    assert answer.status == 200, answer.body.get("error")
                arrivals = sorted(r.at for r in stub.received)
                peak = max(sum(1 for t in arrivals if a <= t < a + 1) for a in arrivals)
                floor = max(resources / settings.limits.per_second, resources * latency / settings.concurrency)
                ms = statistics.median(times) * 1000
                rows.append((resources, f"{latency * 1000:.0f}", ms, floor * 1000, ms / (floor * 1000), peak))
        finally:
            stub.stop()
    table(
        "Fan-out: one metric callback of N resources (16 at once), beside the floor set by Flashduty's "
        "100 requests/s and the pool",
        (
            "resources",
            "Flashduty latency ms",
            "delivered in ms",
            "floor ms",
            "ratio to floor",
            "peak requests in any 1 s",
        ),
        rows,
    )
