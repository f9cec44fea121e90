"""Hostile bodies through the production server: answer time and the worker's peak memory, beside a
normal callback's, each in a fresh server (peak RSS only ever grows)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from bench.common import SAMPLES, table
from tests.support.servers import production_server, worker_rss_kib


def _metric(resources: list[dict], tags: int = 0) -> bytes:
    callback = {"Type": "Metric", "RuleId": "r1", "Level": "critical", "Resources": resources}
    callback["Tags"] = [{"Key": f"k{n}", "Value": "v"} for n in range(tags)]
    return json.dumps(callback, separators=(",", ":")).encode()


BODIES = {
    "a normal callback (samples/metric.json, baseline)": SAMPLES["metric"],
    "1 MiB of identical empty resources": _metric([{}] * 349_000),
    "1 MiB of 70,000 distinct tiny resources": _metric([{"Id": f"{n:x}"} for n in range(70_000)]),
    "2,000 tags x 2,000 resources": _metric([{"Id": f"i-{n}"} for n in range(2000)], tags=2000),
    "an integer of 5,000 digits": b'{"Type": "Metric", "Level": ' + b"9" * 5000 + b"}",
}


def run() -> None:
    rows = []
    baseline_kib = 0
    for name, body in BODIES.items():
        with production_server({"DRY_RUN": "true"}) as (url, process, _):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as answer:
                    status, size = answer.status, len(answer.read())
            except urllib.error.HTTPError as error:
                status, size = error.code, len(error.read())
            seconds = time.monotonic() - started
            peak = worker_rss_kib(process)
        baseline_kib = baseline_kib or peak
        rows.append((name, len(body), status, seconds, size, peak, peak / baseline_kib))
    table(
        "Hostile bodies through the production server (a dry run: translation and the answer, no delivery)",
        ("body", "bytes", "answer", "answered in s", "answer bytes", "worker peak RSS KiB", "ratio to normal"),
        rows,
    )
