"""Throughput, latency and memory through the production server (run.sh), beside a bare function."""

from __future__ import annotations

import json

import mapping
from bench.common import SAMPLES, drive, table, worker_rss_kib
from tests.support.flashduty import stub_process
from tests.support.servers import production_server

ROUTE_COUNT = 16  # integrations, so that Flashduty's 100/s per integration does not cap what is measured


def run(levels: tuple[int, ...] = (1, 8, 32), requests: int = 600) -> None:
    body = SAMPLES["event"]
    (event,) = mapping.translate(json.loads(body)).events
    rows = []
    with stub_process() as stub_url:
        routes = {f"r{n}": f"bench-key-{n}" for n in range(ROUTE_COUNT)}
        direct_url = f"{stub_url}?integration_key=bench-key-0"
        relay_env = {"ROUTES": json.dumps(routes), "FLASHDUTY_PUSH_URL": stub_url}
        spread = lambda n: f"/r{n % ROUTE_COUNT}"  # noqa: E731
        with (
            production_server(relay_env) as (relay_url, relay_process, _),
            production_server({}, "ok", "bench/bare.py") as (bare_url, _, _),
        ):
            drive(relay_url, lambda n: body, 50, 4, paths=spread)  # warm both
            drive(bare_url, lambda n: body, 50, 4)
            for level in levels:
                measured = {}
                for name, url, payload, paths in (
                    ("relay", relay_url, body, spread),
                    ("bare", bare_url, body, None),
                    ("direct", direct_url, json.dumps(event).encode(), None),
                ):
                    measured[name] = drive(url, lambda n, p=payload: p, requests, level, paths=paths)
                relay, bare, direct = measured["relay"], measured["bare"], measured["direct"]
                rows.append(
                    (
                        level,
                        relay[0],
                        bare[0],
                        relay[0] / bare[0],
                        relay[1],
                        relay[2],
                        bare[1],
                        direct[1],
                        relay[1] - direct[1],
                    )
                )
            table(
                "Throughput and latency through the production server (run.sh: gunicorn via functions-framework, "
                f"1 worker, 16 threads), one Event Center callback per request spread over {ROUTE_COUNT} routes "
                "(one integration is held to 100 events/s), Flashduty stand-in in its own process",
                (
                    "concurrency",
                    "relay cb/s",
                    "bare 'ok' req/s",
                    "relay / bare",
                    "relay p50 ms",
                    "relay p99 ms",
                    "bare p50 ms",
                    "event straight to stand-in p50 ms",
                    "relay's added ms per hop (p50)",
                ),
                rows,
            )

            first = worker_rss_kib(relay_process)
            drive(relay_url, lambda n: body, 100, 8, paths=spread)
            after_100 = worker_rss_kib(relay_process)
            drive(relay_url, lambda n: body, 9900, 8, paths=spread)
            after_10k = worker_rss_kib(relay_process)
            table(
                "Memory: peak RSS (VmHWM) of the relay's gunicorn worker",
                ("after warm-up KiB", "after 100 more callbacks KiB", "after 10,000 KiB", "10,000 / 100"),
                [(first, after_100, after_10k, after_10k / after_100)],
            )
