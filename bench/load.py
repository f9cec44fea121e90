"""Reliability under load: many callbacks through the production server while Flashduty fails at random."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

import mapping
from bench.common import drive, environment, table
from tests.support import s3
from tests.support.callbacks import body, metric_callback
from tests.support.flashduty import stub_process
from tests.support.servers import production_server, worker_rss_kib

ROUTES = 4  # integrations: 2,000 events in well under a minute would exceed one's 1,000 a minute


def run(callbacks: int = 1000, concurrency: int = 32, fault_rate: float = 0.05) -> None:
    import boto3

    bodies = [body(metric_callback(1 + n % 3, f"load{n}-")) for n in range(callbacks)]
    expected = {n: {e["alert_key"] for e in mapping.translate(json.loads(b)).events} for n, b in enumerate(bodies)}
    answers: Counter = Counter()
    with environment(s3.CREDENTIALS), s3.moto_server() as endpoint, stub_process(fault_rate) as stub_url:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="load")
        env = {
            "ROUTES": json.dumps({f"r{n}": f"load-key-{n}" for n in range(ROUTES)}),
            "FLASHDUTY_PUSH_URL": stub_url,
            "DEADLETTER_URI": "s3://load/dlq",
            "DEADLETTER_ENDPOINT_URL": endpoint,
        }
        with production_server(env) as (url, process, log):
            # Memory after the first 100 callbacks (by then faults have stored events, so boto3
            # is loaded) beside after all of them: growth, not the one-off import, is the question.
            warm = 100
            spread = lambda n: f"/r{n % ROUTES}"  # noqa: E731
            drive(url, lambda n: bodies[n], warm, concurrency, answers, retries=3, paths=spread)
            before = worker_rss_kib(process)
            per_second, p50, p99 = drive(
                url, lambda n: bodies[n], callbacks - warm, concurrency, answers, retries=3, first=warm, paths=spread
            )
            after = worker_rss_kib(process)
            log.seek(0)
            server_log = log.read()
        accepted = {e["alert_key"] for e in json.loads(urllib.request.urlopen(stub_url).read())["accepted"]}
        stored = {event["alert_key"] for event in s3.stored_events("load", endpoint)}
    final = {n: max(status for (m, status) in answers if m == n) for n in expected}
    lost = sum(len(keys - accepted - stored) for keys in expected.values())
    ours = sum(1 for (n, status), count in answers.items() if status == 500) + server_log.count("Traceback")
    table(
        f"Load: {callbacks} callbacks over {ROUTES} integrations at concurrency {concurrency} through the "
        "production server, "
        f"{fault_rate:.0%} random Flashduty faults, store on moto's S3 server, Volcengine-style retries",
        (
            "events",
            "delivered",
            "stored",
            "lost",
            "answers",
            "errors of our own",
            "callbacks/s",
            "p50 ms",
            "p99 ms",
            "worker peak RSS after 100 / after 1,000 KiB",
        ),
        [
            (
                sum(map(len, expected.values())),
                len(accepted & set().union(*expected.values())),
                len(stored),
                lost,
                dict(Counter(final.values())),
                ours,
                per_second,
                p50,
                p99,
                f"{before} / {after}",
            )
        ],
    )
