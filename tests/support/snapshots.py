"""Snapshot fixtures: each recorded callback under tests/events/ beside the Flashduty events it must give.

`<name>.json` is a callback as a source recorded it; `<name>.expected.json` is what mapping.translate
makes of it, compared exactly by tests/test_snapshots.py. After a deliberate change to the mapping,
`make snapshots` (`python -m tests.support.snapshots`) writes them again, and the diff is reviewed
like code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mapping
from tests.support.callbacks import ROOT

EVENTS = ROOT / "tests/events"


def recorded() -> list[Path]:
    """The recorded callbacks, without their expectations."""
    return sorted(p for p in EVENTS.glob("*.json") if not p.name.endswith(".expected.json"))


def expected_path(callback: Path) -> Path:
    return callback.with_name(callback.stem + ".expected.json")


def translated(callback: Path) -> dict[str, Any]:
    """What the mapping makes of a recorded callback, as the snapshot holds it."""
    translation = mapping.translate(json.loads(callback.read_text(encoding="utf-8")))
    return {
        "kind": translation.kind,
        "filtered": translation.filtered,
        "over_cap": translation.over_cap,
        "events": translation.events,
    }


def render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for callback in recorded():
        path = expected_path(callback)
        text = render(translated(callback))
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
