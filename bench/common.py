"""What the benchmarks share: the sample bodies, Markdown tables, a load client, a worker's memory."""

from __future__ import annotations

import http.client
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from tests.support.callbacks import ROOT

SAMPLES = {
    name: (ROOT / f"samples/{name}.json").read_bytes() for name in ("event", "metric", "metric-recovered", "nodata")
}
SAMPLES["unrecognised"] = (ROOT / "tests/events/unrecognised.json").read_bytes()


def table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")
    sys.stdout.flush()


@contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """These settings in os.environ (for code that reads it, like replay) until the block ends."""
    saved = dict(os.environ)
    os.environ.update(settings)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def drive(
    url: str,
    bodies: Callable[[int], bytes],
    requests: int,
    concurrency: int,
    answers: Counter | None = None,
    retries: int = 0,
    paths: Callable[[int], str] | None = None,
    first: int = 0,
) -> tuple[float, float, float]:
    """Post `requests` bodies at this concurrency over keep-alive connections; (per second, p50 ms, p99 ms)."""
    parts = urlsplit(url)
    target = paths or (lambda n: parts.path + (f"?{parts.query}" if parts.query else "") or "/")
    latencies: list[float] = []
    counter = iter(range(first, first + requests))
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                break
            for _ in range(1 + retries):  # Volcengine retries a failed delivery
                started = time.perf_counter()
                try:
                    conn.request("POST", target(n), body=bodies(n), headers={"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                    status = 0
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if answers is not None:
                        answers[(n, status)] += 1
                if 200 <= status < 300:
                    break
        conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return requests / elapsed, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000
