"""What ships to veFaaS: the one list of the relay's modules, the code package, and the Python it needs."""

from __future__ import annotations

import hashlib
import io
import re
import tomllib
import zipfile
from pathlib import Path

from callback import VERSION

ROOT = Path(__file__).resolve().parent.parent
# What ships, once: the relay's modules (serverless.yml's patterns list the same; a test compares)...
MODULES = (
    "main.py",
    "index.py",
    "callback.py",
    "mapping.py",
    "event_fields.py",
    "event_center.py",
    "metric_alarms.py",
    "alert_groups.py",
    "flashduty.py",
    "config.py",
    "logs.py",
    "deadletter.py",
    "replay.py",
    "reconcile.py",
    "decisions.py",
    "event_rules.py",
    "flashduty_alerts.py",
    "clocks.py",
    "volcengine_api.py",
)
# ...and what a veFaaS web-server function needs beside them: its start command and what it installs.
VEFAAS_FILES = ("run.sh", "gunicorn.conf.py", "requirements.txt")
PACKAGE = MODULES + VEFAAS_FILES
DEFAULT_RUNTIME = "native-python3.12/v1"


def minimum_python() -> tuple[int, int]:
    """requires-python from pyproject.toml, the one place the code states it (">=3.11")."""
    text = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)", text.strip())
    if match is None:
        raise ValueError(f"pyproject.toml: requires-python {text!r} is not of the form >=3.N")
    return int(match[1]), int(match[2])


def runtime_python(runtime: str) -> tuple[int, int] | None:
    """The Python version a runtime name gives: native-python3.12/v1, python3.12, 3.12."""
    match = re.search(r"(\d+)\.(\d+)", runtime)
    return (int(match[1]), int(match[2])) if match else None


def zipped() -> bytes:
    """The code package: the relay's modules, run.sh (executable) and requirements.txt; no tests."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in PACKAGE:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # same code, same bytes
            info.external_attr = (0o755 if name.endswith(".sh") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (ROOT / name).read_bytes())
    return buffer.getvalue()


def description(code: bytes) -> str:
    """The function's description, which also says which package it runs (so an unchanged one is not re-sent)."""
    return f"Volcengine Cloud Monitor callbacks to Flashduty (volc-flashduty-relay {VERSION}, package {digest(code)})"


def digest(code: bytes) -> str:
    return hashlib.sha256(code).hexdigest()[:16]
