"""Throughput, latency and memory through the production server (run.sh), beside a bare function."""

from __future__ import annotations

import json
import statistics

import mapping
from bench.common import SAMPLES, drive, table
from tests.support.flashduty import stub_process
from tests.support.servers import production_server, worker_rss_kib

ROUTE_COUNT = 16  # integrations, so that Flashduty's 100/s per integration does not cap what is measured


def run(levels: tuple[int, ...] = (1, 8, 32), requests: int = 300, rounds: int = 3) -> dict[int, float]:
    """Prints the tables; returns relay / bare forwarder throughput at each concurrency."""
    body = SAMPLES["event"]
    (event,) = mapping.translate(json.loads(body)).events
    rows = []
    with stub_process() as stub_url:
        # Keys of their own for each, so that neither spends the other's budget at the stand-in.
        relay_env = {"ROUTES": json.dumps({f"r{n}": f"bench-key-{n}" for n in range(ROUTE_COUNT)})}
        bare_env = {"ROUTES": json.dumps({f"r{n}": f"bare-key-{n}" for n in range(ROUTE_COUNT)})}
        direct_url = f"{stub_url}?integration_key=direct-key"
        spread = lambda n: f"/r{n % ROUTE_COUNT}"  # noqa: E731
        with (
            production_server({**relay_env, "FLASHDUTY_PUSH_URL": stub_url}) as (relay_url, relay_process, _),
            production_server({**bare_env, "FLASHDUTY_PUSH_URL": stub_url}, "forward", "bench/bare.py") as (
                bare_url,
                _,
                _,
            ),
        ):
            drive(relay_url, lambda n: body, 50, 4, paths=spread)  # warm both
            drive(bare_url, lambda n: body, 50, 4, paths=spread)
            for level in levels:
                measured: dict[str, list[tuple[float, float, float]]] = {"relay": [], "bare": [], "direct": []}
                for _ in range(rounds):  # interleaved, so drift hits both alike
                    for name, url, payload, paths in (
                        ("relay", relay_url, body, spread),
                        ("bare", bare_url, body, spread),
                        ("direct", direct_url, json.dumps(event).encode(), None),
                    ):
                        measured[name].append(drive(url, lambda n, p=payload: p, requests, level, paths=paths))
                relay, bare, direct = (
                    tuple(statistics.median(run[i] for run in measured[name]) for i in range(3))
                    for name in ("relay", "bare", "direct")
                )
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
                        relay[1] - bare[1],
                    )
                )
            table(
                "Throughput and latency through the production server (run.sh: gunicorn via functions-framework, "
                f"1 worker, 16 threads), one Event Center callback per request spread over {ROUTE_COUNT} routes "
                "(one integration is held to 100 events/s), beside a bare forwarder on the same server "
                f"(bench/bare.py: reads the body, posts one fixed event), Flashduty stand-in in its own process; "
                f"medians of {rounds} interleaved rounds of {requests} callbacks",
                (
                    "concurrency",
                    "relay cb/s",
                    "bare forwarder cb/s",
                    "relay / forwarder",
                    "relay p50 ms",
                    "relay p99 ms",
                    "forwarder p50 ms",
                    "event straight to stand-in p50 ms",
                    "relay's added ms (p50)",
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
    return {row[0]: row[3] for row in rows}
