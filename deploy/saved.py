"""The way back: every rule the deploy (or `unwire`) will write, saved whole before its first write,
in a local JSON file that `python -m deploy restore FILE` writes back. No credential is saved (CI keeps
these files as an artifact). The file also notes a policy's tags while a write has them in flight, so
that a later run, given the file, puts back what a run stopped between UpdateRule and TagResources took."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.calls import DeployError
from deploy.monitor import KINDS, Kind, withheld

DEFAULT_DIRECTORY = "deploy-backups"


def save(directory: Path, function: str, region: str, rules: list[tuple[Kind, dict[str, Any]]]) -> Path:
    """The rules in a new file (their message queues' credentials withheld), readable by this user only."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"{function}-{region}-rules-{stamp}.json"
    saved = {
        "saved_at": stamp,
        "function": function,
        "region": region,
        "rules": [{"kind": kind.what, "rule": withheld(rule)} for kind, rule in rules],
        "tags_in_flight": {},  # policy id: its name and the tags an UpdateRule of this run is dropping
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(saved, file, ensure_ascii=False, indent=1)
    return path


def note_tags(path: Path, rule: dict[str, Any], tags: list[Any] | None) -> None:
    """A policy's tags noted in the file before the write that drops them; the note cleared (None) once
    they are back. Written whole to a new file and renamed over the old: never half a file."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    in_flight = saved.setdefault("tags_in_flight", {})
    if tags:
        in_flight[str(rule["Id"])] = {"RuleName": rule.get("RuleName"), "Tags": tags}
    else:
        in_flight.pop(str(rule["Id"]), None)
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(saved, file, ensure_ascii=False, indent=1)
    partial.replace(path)


def tags_in_flight(directory: Path, function: str, region: str) -> list[tuple[Path, dict[str, Any], list[Any]]]:
    """Every policy whose tags a run of this function stopped holding: its file, the policy, its tags."""
    return [found for path in sorted(directory.glob(f"{function}-{region}-rules-*.json")) for found in noted(path)]


def noted(path: Path) -> list[tuple[Path, dict[str, Any], list[Any]]]:
    """Every policy whose tags the run that wrote this file stopped holding: the file, the policy, its tags."""
    notes = json.loads(path.read_text(encoding="utf-8")).get("tags_in_flight") or {}
    return [
        (path, {"Id": rule_id, "RuleName": note.get("RuleName")}, note.get("Tags") or [])
        for rule_id, note in notes.items()
    ]


def load(path: Path) -> tuple[str, list[tuple[Kind, dict[str, Any]]]]:
    """The function whose run saved the file, and the rules."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return str(saved["function"]), [(KINDS[entry["kind"]], entry["rule"]) for entry in saved["rules"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DeployError(f"{path} is not a file of rules the deploy saved ({type(error).__name__})") from None
