"""Cold start: a fresh process importing the relay and answering its first callback, beside baselines."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

from bench.common import table
from tests.support.callbacks import ROOT

EVENT_FIRST_CALLBACK = (
    "import json, main; body = open('samples/event.json').read();"
    "assert main.handler({'httpMethod': 'POST', 'path': '/', 'body': body}, None)['statusCode'] == 200"
)
FF_FIRST = (
    "from functions_framework import create_app;"
    "c = create_app(target='{target}', source='{source}').test_client();"
    "assert c.post('/', data=open('samples/event.json', 'rb').read()).status_code == 200"
)


def run(runs: int = 11) -> float:
    """Prints the table; returns `import main` over `import requests`."""
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
    return med["`import main`"] / base_event
