"""The way back: every rule the deploy (or `unwire`) will write, saved whole before its first write,
in a local JSON file that `python -m deploy restore FILE` writes back. No credential is saved (CI keeps
these files as an artifact). The file also notes a policy's tags while a write has them in flight, so
that a later run, given the file, puts back what a run stopped between UpdateRule and TagResources took."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.calls import DeployError
from deploy.monitor import ALARM_POLICIES, KINDS, Kind, withheld

DEFAULT_DIRECTORY = "deploy-backups"
SIGNATURE = "signature"


@dataclass(frozen=True)
class Folder:
    """Where the deploy saves rules, and the key it signs its files with (from the deploying secret
    key): a file it did not write, such as one planted in a CI artifact, is told apart and never acted
    on unasked."""

    path: Path
    key: bytes

    @classmethod
    def of(cls, path: Path, secret_key: str) -> Folder:
        return cls(path, hmac.new(secret_key.encode(), b"volc-flashduty-relay deploy-backups", hashlib.sha256).digest())

    def sign(self, document: dict[str, Any]) -> str:
        unsigned = {k: v for k, v in document.items() if k != SIGNATURE}
        canonical = json.dumps(unsigned, sort_keys=True, ensure_ascii=False).encode()
        return hmac.new(self.key, canonical, hashlib.sha256).hexdigest()

    def signed(self, document: dict[str, Any]) -> bool:
        return hmac.compare_digest(str(document.get(SIGNATURE, "")), self.sign(document))


def save(folder: Folder, function: str, region: str, rules: list[tuple[Kind, dict[str, Any]]]) -> Path:
    """The rules in a new file (their message queues' credentials withheld), readable by this user only."""
    folder.path.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder.path / f"{function}-{region}-rules-{stamp}.json"
    saved = {
        "saved_at": stamp,
        "function": function,
        "region": region,
        "rules": [{"kind": kind.what, "rule": withheld(rule)} for kind, rule in rules],
        "tags_in_flight": {},  # policy id: its name and the tags an UpdateRule of this run is dropping
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump({**saved, SIGNATURE: folder.sign(saved)}, file, ensure_ascii=False, indent=1)
    return path


def note_tags(folder: Folder, path: Path, rule: dict[str, Any], tags: list[Any] | None) -> None:
    """A policy's tags noted in the file before the write that drops them; the note cleared (None) once
    they are back. Written whole to a new file and renamed over the old: never half a file."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    in_flight = saved.setdefault("tags_in_flight", {})
    if tags:
        in_flight[str(rule["Id"])] = {"RuleName": rule.get("RuleName"), "Tags": tags}
    else:
        in_flight.pop(str(rule["Id"]), None)
    saved[SIGNATURE] = folder.sign(saved)
    partial = path.with_suffix(".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(saved, file, ensure_ascii=False, indent=1)
    partial.replace(path)


def tags_in_flight(
    folder: Folder, function: str, region: str
) -> tuple[list[tuple[Path, dict[str, Any], list[Any]]], list[str]]:
    """Every policy whose tags a run of this function stopped holding (its file, the policy, its tags),
    from the files this deploy signed; and a line for each file it did not, set aside (`.refused`),
    never acted on: a stranger's file must not make the deploy tag a policy."""
    found: list[tuple[Path, dict[str, Any], list[Any]]] = []
    refused: list[str] = []
    for path in sorted(folder.path.glob(f"{function}-{region}-rules-*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            ours = isinstance(document, dict) and folder.signed(document)
        except (OSError, ValueError):
            ours = False
        if ours and (document.get("function"), document.get("region")) == (function, region):
            found += noted(path)
            continue
        aside = path.with_name(path.name + ".refused")
        path.replace(aside)
        refused.append(
            f"{path}: not a file this deploy wrote (not signed with its key: a file from elsewhere, or saved "
            f"under another access key): nothing in it is acted on; set aside as {aside.name} (if it is yours: "
            f"python -m deploy restore {aside})"
        )
    return found, refused


def noted(path: Path) -> list[tuple[Path, dict[str, Any], list[Any]]]:
    """Every policy whose tags the run that wrote this file stopped holding: the file, the policy, its
    tags. Only a policy the file saved: the deploy notes no other."""
    saved = json.loads(path.read_text(encoding="utf-8"))
    policies = {
        str(ALARM_POLICIES.rule_id(entry["rule"])) for entry in saved["rules"] if entry["kind"] == ALARM_POLICIES.what
    }
    notes = saved.get("tags_in_flight") or {}
    return [
        (path, {"Id": rule_id, "RuleName": note.get("RuleName")}, note.get("Tags") or [])
        for rule_id, note in notes.items()
        if rule_id in policies
    ]


def load(path: Path) -> tuple[str, list[tuple[Kind, dict[str, Any]]]]:
    """The function whose run saved the file, and the rules."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        return str(saved["function"]), [(KINDS[entry["kind"]], entry["rule"]) for entry in saved["rules"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DeployError(f"{path} is not a file of rules the deploy saved ({type(error).__name__})") from None
