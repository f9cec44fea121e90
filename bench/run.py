"""Benchmarks and the long reliability run, each measured beside its baseline in one run: `make bench`.

This machine is shared and noisy, so every figure is a median of interleaved runs and is read as a
ratio to the baseline measured right beside it, never as a lone absolute time. Prints Markdown
tables (BENCHMARKS.md holds one run's output).
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from flashduty_stub import FlashdutyStub, stub_process  # noqa: E402
from local_ports import free_port, wait_until_up  # noqa: E402

import config  # noqa: E402
import mapping  # noqa: E402
from callback import Relay, Request  # noqa: E402

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


def metric_callback(resources: int, tag: str = "") -> dict:
    callback = json.loads(SAMPLES["metric"])
    template = callback["Resources"][0]
    callback["Resources"] = [{**copy.deepcopy(template), "Id": f"i-{tag}{n}"} for n in range(resources)]
    return callback


# Translation ------------------------------------------------------------------------------


def translation() -> None:
    bodies = {**SAMPLES, "metric, 200 resources": json.dumps(metric_callback(200)).encode()}
    rows = []
    for name, body in bodies.items():
        events = len(mapping.translate(json.loads(body)).events)
        number = max(1, 2000 // events)
        parse, both = [], []
        for _ in range(7):  # interleaved
            parse.append(timeit.timeit(lambda b=body: json.loads(b), number=number) / number / events)
            both.append(timeit.timeit(lambda b=body: mapping.translate(json.loads(b)), number=number) / number / events)
        p, b = statistics.median(parse) * 1e6, statistics.median(both) * 1e6
        rows.append((name, events, p, b, b / p))
    table(
        "Translation cost per event (json.loads + mapping.translate, beside json.loads alone)",
        ("callback", "events", "json.loads µs/event", "parse + translate µs/event", "ratio"),
        rows,
    )


# Cold start --------------------------------------------------------------------------------

EVENT_FIRST_CALLBACK = (
    "import json, main; body = open('samples/event.json').read();"
    "assert main.handler({'httpMethod': 'POST', 'path': '/', 'body': body}, None)['statusCode'] == 200"
)
FF_FIRST = (
    "from functions_framework import create_app;"
    "c = create_app(target='{target}', source='{source}').test_client();"
    "assert c.post('/', data=open('samples/event.json', 'rb').read()).status_code == 200"
)


def cold_start(runs: int = 11) -> None:
    probes = {
        "`import requests` (baseline)": "import requests",
        "`import main`": "import main",
        "`import main` + first callback via `handler`": EVENT_FIRST_CALLBACK,
        "bare functions-framework function, first request (baseline)": FF_FIRST.format(
            target="ok", source="bench/bare.py"
        ),
        "relay via functions-framework, first request": FF_FIRST.format(target="relay", source="main.py"),
    }
    env = {k: v for k, v in os.environ.items() if k not in ("FLASHDUTY_INTEGRATION_KEY", "ROUTES", "DEADLETTER_URI")}
    times: dict[str, list[float]] = {name: [] for name in probes}
    for _ in range(runs):
        for name, code in probes.items():  # interleaved, so drift hits every probe alike
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    med = {name: statistics.median(t) * 1000 for name, t in times.items()}
    base_event, base_ff = (
        med["`import requests` (baseline)"],
        med["bare functions-framework function, first request (baseline)"],
    )
    rows = [(name, ms, ms / (base_ff if "functions-framework" in name else base_event)) for name, ms in med.items()]
    table(f"Cold start: a fresh process, median of {runs}", ("what", "ms", "ratio to its baseline"), rows)


# Servers -----------------------------------------------------------------------------------


@contextmanager
def production_server(
    env: dict[str, str], target: str = "relay", source: str = "main.py"
) -> Iterator[tuple[str, subprocess.Popen, IO[str]]]:
    """run.sh's server (gunicorn via functions-framework); for the bare function, the same command."""
    port = free_port()
    environment = {**os.environ, **env, "_FAAS_RUNTIME_PORT": str(port), "PYTHON": sys.executable}
    if target == "relay":
        command = ["./run.sh"]
    else:
        environment.update(WORKERS="1", THREADS="16")
        command = [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={target}",
            f"--source={source}",
            "--host=127.0.0.1",
            f"--port={port}",
        ]
    # The server's log goes to a file: an unread pipe would fill and block its logging.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=log, text=True)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_until_up(url, process)
            yield url, process, log
        finally:
            process.terminate()
            process.wait()


def worker_rss_kib(arbiter: subprocess.Popen) -> int:
    children = Path(f"/proc/{arbiter.pid}/task/{arbiter.pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


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


ROUTE_COUNT = 16  # integrations, so that Flashduty's 100/s per integration does not cap what is measured


def throughput_and_memory(levels: tuple[int, ...] = (1, 8, 32), requests: int = 600) -> None:
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


# Fan-out -----------------------------------------------------------------------------------


def fan_out() -> None:
    rows = []
    # 10, 100 and 500 resources at 20 and 100 ms; and 200 at 50 ms, the README's headline case.
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
                    body = json.dumps(metric_callback(resources, f"{run}-")).encode()
                    started = time.perf_counter()
                    answer = relay.handle(Request("POST", "/", {}, {}, body))
                    times.append(time.perf_counter() - started)
                    assert answer.status == 200, answer.body.get("error")
                arrivals = sorted(r.at for r in stub.received)
                peak = max(sum(1 for t in arrivals if a <= t < a + 1) for a in arrivals)
                floor = max(resources / settings.max_rps, resources * latency / settings.concurrency)
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


# Reliability: load with faults -------------------------------------------------------------


def load_with_faults(callbacks: int = 1000, concurrency: int = 32, fault_rate: float = 0.05) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(creds)
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="load")
    bodies = [json.dumps(metric_callback(1 + n % 3, f"load{n}-")).encode() for n in range(callbacks)]
    expected = {n: {e["alert_key"] for e in mapping.translate(json.loads(b)).events} for n, b in enumerate(bodies)}
    answers: Counter = Counter()
    try:
        with stub_process(fault_rate) as stub_url:
            env = {
                **creds,
                "FLASHDUTY_INTEGRATION_KEY": "load-key",
                "FLASHDUTY_PUSH_URL": stub_url,
                "DEADLETTER_URI": "s3://load/dlq",
                "DEADLETTER_ENDPOINT_URL": endpoint,
            }
            with production_server(env) as (url, process, log):
                # Memory after the first 100 callbacks (by then faults have stored events, so boto3
                # is loaded) beside after all of them: growth, not the one-off import, is the question.
                warm = 100
                drive(url, lambda n: bodies[n], warm, concurrency, answers, retries=3)
                before = worker_rss_kib(process)
                per_second, p50, p99 = drive(
                    url, lambda n: bodies[n], callbacks - warm, concurrency, answers, retries=3, first=warm
                )
                after = worker_rss_kib(process)
                log.seek(0)
                server_log = log.read()
            accepted = {e["alert_key"] for e in json.loads(urllib.request.urlopen(stub_url).read())["accepted"]}
        client = boto3.client("s3", endpoint_url=endpoint)
        stored = {
            json.loads(client.get_object(Bucket="load", Key=o["Key"])["Body"].read())["event"]["alert_key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket="load")
            for o in page.get("Contents", [])
            if "_event-" in o["Key"]
        }
    finally:
        s3.stop()
    final = {n: max(status for (m, status) in answers if m == n) for n in expected}
    lost = sum(len(keys - accepted - stored) for keys in expected.values())
    ours = sum(1 for (n, status), count in answers.items() if status == 500) + server_log.count("Traceback")
    table(
        f"Load: {callbacks} callbacks at concurrency {concurrency} through the production server, "
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the long memory and load runs")
    args = parser.parse_args()
    print(
        f"## {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.machine()}"
    )
    translation()
    cold_start()
    fan_out()
    if not args.quick:
        throughput_and_memory()
        load_with_faults()


if __name__ == "__main__":
    main()
