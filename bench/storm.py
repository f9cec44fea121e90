"""Storms: one callback of many resources against both of Flashduty's limits, then timed drains: a
firing of 600 and of 5,000 resources, and the recovery of 5,000, whose Oks go to every level.

The relay runs as deployed (run.sh) with a dead-letter store on moto's S3 server; Flashduty's
stand-in, in its own process, enforces both limits with the minute scaled down so that a storm's
later minutes come within seconds. The drains run one after another, as a timer would start them.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request

import boto3

import mapping
import replay
from bench.common import environment, table
from tests.support import s3
from tests.support.callbacks import body, metric_callback
from tests.support.flashduty import Limits, stub_process
from tests.support.servers import production_server

LIMITS = Limits(per_second=100, per_minute=300, minute_seconds=3.0)
DRAIN_SECONDS = 20.0


def storm(resources: int) -> dict:
    """A metric callback of this many resources, trimmed to id, name and metric so that 5,000 fit in 1 MiB."""
    callback = metric_callback(resources, f"s{resources}-")
    callback["Resources"] = [
        {"Id": r["Id"], "Name": r["Name"], "Metrics": [{"Name": "CpuTotal", "CurrentValue": 97.2, "Threshold": 90}]}
        for r in callback["Resources"]
    ]
    return callback


def recoveries(resources: int) -> dict:
    """The recovery of such a storm as Volcengine may send it: each resource by its id and its
    AlertGroupId only, the shape whose Ok goes to every level of both identities (6 a resource)."""
    callback = storm(resources)
    callback["RecoveredResources"] = [
        {"Id": r["Id"], "AlertGroupId": f"ag-{n:06d}"} for n, r in enumerate(callback.pop("Resources"))
    ]
    return {**callback, "Type": "MetricRecovered", "Level": "recovery"}


def run(sizes: tuple[int, ...] = (600, 5000), recovered: int = 5000) -> None:
    rows = []
    storms = [(f"{n} firing", n, storm(n)) for n in sizes] + [
        (f"{recovered} recovered", recovered, recoveries(recovered))
    ]
    for label, resources, callback in storms:
        expected = {e["alert_key"] for e in mapping.translate(callback).events}
        with environment(s3.CREDENTIALS), s3.moto_server() as endpoint, stub_process(limits=LIMITS) as push_url:
            bucket = f"storm-{resources}"  # moto keeps buckets process-wide: one of its own for each storm
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
            settings = {
                "FLASHDUTY_INTEGRATION_KEY": "storm-key",
                "FLASHDUTY_PUSH_URL": push_url,
                "DEADLETTER_URI": f"s3://{bucket}/dlq",
                "DEADLETTER_ENDPOINT_URL": endpoint,
                "FLASHDUTY_MAX_RPS": str(LIMITS.per_second),
                "FLASHDUTY_MAX_PER_MINUTE": str(LIMITS.per_minute),
                "FLASHDUTY_MINUTE_SECONDS": str(LIMITS.minute_seconds),
            }
            with environment(settings):
                replay.main(["list"], out=io.StringIO())  # the drain warm, as a timer's is after its first run
                with production_server(settings) as (url, _, _):
                    started = time.monotonic()
                    request = urllib.request.Request(url, data=body(callback), headers={"x-volc-trace-id": "storm"})
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, summary = answer.status, json.loads(answer.read())
                    answered = time.monotonic() - started
                writes = s3.names(bucket, endpoint)
                drains = 0
                while True:
                    drains += 1
                    if replay.main(["send", "--max-seconds", str(DRAIN_SECONDS)], out=io.StringIO()) != 1:
                        break
                drained = time.monotonic() - started
            seen = json.loads(urllib.request.urlopen(push_url, timeout=30).read())
            left = len(s3.stored_events(bucket, endpoint))
        floor = len(expected) / LIMITS.per_minute * LIMITS.minute_seconds
        lost = len(expected - {e["alert_key"] for e in seen["accepted"]}) - left
        rows.append(
            (
                label,
                len(expected),
                resources / LIMITS.per_minute * LIMITS.minute_seconds,  # one event a resource, as before 0.4
                f"{status}",
                answered,
                summary.get("delivered"),
                len(writes),
                drains,
                drained,
                floor,
                drained / floor,
                seen["answers"].count(429),
                lost,
            )
        )
    table(
        "Storms: one metric callback through the production server, the rest kept in the store and drained "
        f"by timed runs of `replay send --max-seconds {DRAIN_SECONDS:g}`; Flashduty's limits scaled to "
        f"{LIMITS.per_second}/s and {LIMITS.per_minute} per {LIMITS.minute_seconds:g} s 'minute'",
        (
            "resources",
            "pushes (events)",
            "floor s at one push a resource (before 0.4)",
            "answer",
            "answered in s (Volcengine waits 8)",
            "delivered at once",
            "store writes for the callback",
            "drain runs",
            "all delivered in s",
            "floor s (events / per-minute limit)",
            "ratio to floor",
            "429s",
            "lost",
        ),
        rows,
    )
