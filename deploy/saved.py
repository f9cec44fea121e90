"""The way back: every rule the deploy (or `unwire`) will write, saved whole before its first write,
in a local JSON file that `python -m deploy restore FILE` writes back."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.calls import DeployError
from deploy.monitor import KINDS, Kind

DEFAULT_DIRECTORY = "deploy-backups"


def save(directory: Path, function: str, region: str, rules: list[tuple[Kind, dict[str, Any]]]) -> Path:
    """The rules in a new file, readable by this user only (a rule may hold a message queue's password)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{function}-{region}-rules-{stamp}.json"
    saved = {
        "saved_at": stamp,
        "function": function,
        "region": region,
        "rules": [{"kind": kind.what, "rule": rule} for kind, rule in rules],
        "finished": False,  # until every write of the run is done and checked
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(saved, file, ensure_ascii=False, indent=1)
    return path


def finish(path: Path) -> None:
    saved = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**saved, "finished": True}, ensure_ascii=False, indent=1), encoding="utf-8")


def unfinished(directory: Path, function: str, region: str) -> Path | None:
    """The newest file of a run for this function that stopped before it finished, if any."""
    newest = max(directory.glob(f"{function}-{region}-rules-*.json"), default=None)
    if newest is None or json.loads(newest.read_text(encoding="utf-8")).get("finished", True):
        return None
    return newest


def load(path: Path) -> tuple[str, list[tuple[Kind, dict[str, Any]]]]:
    """The function whose run saved the file, and the rules."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return str(saved["function"]), [(KINDS[entry["kind"]], entry["rule"]) for entry in saved["rules"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DeployError(f"{path} is not a file of rules the deploy saved ({type(error).__name__})") from None
