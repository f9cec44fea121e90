"""Callback bodies: the recorded ones in samples/ and tests/events/, and builders of larger ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def load_json(path: str) -> dict[str, Any]:
    """A callback body from samples/ or tests/events/, by path relative to the repository."""
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


def body(callback: dict[str, Any]) -> bytes:
    """A callback as Volcengine posts it."""
    return json.dumps(callback, ensure_ascii=False).encode()


def metric_callback(
    resources: int, tag: str = "", *, sample: str = "samples/metric.json", listed: str = "Resources"
) -> dict[str, Any]:
    """A sample metric callback whose list `listed` holds `resources` distinct copies of its first resource."""
    callback = load_json(sample)
    template = callback[listed][0]
    callback[listed] = [
        {**copy.deepcopy(template), "Id": f"i-{tag}{n:05d}", "Name": f"web-{tag}{n}"} for n in range(resources)
    ]
    return callback
