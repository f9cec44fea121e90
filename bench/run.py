"""Benchmarks, each measured side by side with its baseline in one run: `make bench`.

This machine is shared and noisy, so every figure is a median of interleaved runs and is read as a
ratio to the baseline measured right beside it, never as a lone absolute time.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import config  # noqa: E402
from callback import Relay, Request  # noqa: E402
from flashduty_stub import FlashdutyStub  # noqa: E402


def cold_import(runs: int = 15) -> list[tuple[str, float, float]]:
    """A fresh interpreter importing main (the event-function path) beside one importing requests."""
    probes = {
        "python -c pass": "pass",
        "import requests": "import requests",
        "import main": "import main",
    }
    times: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(runs):
        for name, code in probes.items():  # interleaved, so drift hits every probe alike
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["import requests"])
    return [(name, statistics.median(t) * 1000, statistics.median(t) / base) for name, t in times.items()]


def fan_out(resources: int, latency: float, runs: int = 3) -> tuple[float, float, float]:
    """Time to deliver one metric callback of `resources` resources; the floor is what Flashduty's
    rate limit and the pool's concurrency allow at this latency."""
    stub = FlashdutyStub().start()
    stub.delay = latency
    settings = config.load({"FLASHDUTY_INTEGRATION_KEY": "bench", "FLASHDUTY_PUSH_URL": stub.url,
                            "DELIVERY_CONCURRENCY": "16"})
    relay = Relay(settings)
    callback = json.loads((ROOT / "samples/metric.json").read_text())
    template = callback["Resources"][0]
    callback["Resources"] = [{**copy.deepcopy(template), "Id": f"i-{n}"} for n in range(resources)]
    body = json.dumps(callback).encode()
    times = []
    try:
        for _ in range(runs):
            started = time.perf_counter()
            answer = relay.handle(Request("POST", "/", {}, {}, body))
            times.append(time.perf_counter() - started)
            assert answer.status == 200, answer.body
    finally:
        stub.stop()
    floor = max(resources / settings.max_rps, resources * latency / settings.concurrency)
    measured = statistics.median(times)
    return measured * 1000, floor * 1000, measured / floor


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores\n")
    print("| cold start (fresh process) | median ms | ratio to `import requests` |")
    print("|---|---|---|")
    for name, ms, ratio in cold_import():
        print(f"| `{name}` | {ms:.0f} | {ratio:.2f} |")
    print()
    print("| fan-out (one metric callback) | median ms | floor ms (100 req/s, 16 at once) | ratio to floor |")
    print("|---|---|---|---|")
    for resources, latency in ((200, 0.05),):
        ms, floor_ms, ratio = fan_out(resources, latency)
        print(f"| {resources} resources, Flashduty at {latency * 1000:.0f} ms | {ms:.0f} | {floor_ms:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
