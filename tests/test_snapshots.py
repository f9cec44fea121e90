"""Every recorded callback under tests/events/ gives exactly the events in its .expected.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.snapshots import expected_path, recorded, render, translated


def test_every_recorded_callback_has_its_expectation() -> None:
    assert recorded(), "no recorded callbacks found"
    missing = [p.name for p in recorded() if not expected_path(p).exists()]
    assert not missing, f"run `make snapshots` and review the new files: {missing}"


@pytest.mark.parametrize("callback", recorded(), ids=lambda p: p.stem)
def test_translation_matches_the_snapshot(callback: Path) -> None:
    expected = expected_path(callback).read_text(encoding="utf-8")
    assert render(translated(callback)) == expected, "if the change is deliberate: `make snapshots`, review the diff"
