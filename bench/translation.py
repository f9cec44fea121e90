"""Translation cost per event: json.loads + mapping.translate, beside json.loads alone."""

from __future__ import annotations

import json
import statistics
import timeit

import mapping
from bench.common import SAMPLES, table
from tests.support.callbacks import body, metric_callback


def run() -> None:
    bodies = {**SAMPLES, "metric, 200 resources": body(metric_callback(200))}
    rows = []
    for name, raw in bodies.items():
        events = len(mapping.translate(json.loads(raw)).events)
        number = max(1, 2000 // events)
        parse, both = [], []
        for _ in range(7):  # interleaved
            parse.append(timeit.timeit(lambda b=raw: json.loads(b), number=number) / number / events)
            both.append(timeit.timeit(lambda b=raw: mapping.translate(json.loads(b)), number=number) / number / events)
        p, b = statistics.median(parse) * 1e6, statistics.median(both) * 1e6
        rows.append((name, events, p, b, b / p))
    table(
        "Translation cost per event (json.loads + mapping.translate, beside json.loads alone)",
        ("callback", "events", "json.loads µs/event", "parse + translate µs/event", "ratio"),
        rows,
    )
