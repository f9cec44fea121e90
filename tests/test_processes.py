"""The suite's own watch on processes (tests.support.processes): a run that leaves one running fails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.callbacks import ROOT
from tests.support.processes import running

LEAKY = """
import subprocess

def test_starts_a_daemon_and_a_child_and_waits_for_neither():
    subprocess.run(["sh", "-c", "sleep 300 &"], check=True)  # orphaned at once
    subprocess.Popen(["sleep", "300"])  # orphaned when its worker ends, or still a child
"""


def run_pytest(tmp_path: Path, test: str, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_it.py").write_text(test)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.processes", *options, "test_it.py"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("options", [("-p", "no:xdist"), ("-n", "2")], ids=["one process", "xdist"])
def test_a_run_that_leaves_processes_running_fails_names_them_and_stops_them(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    result = run_pytest(tmp_path, LEAKY, *options)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 2 left running" in result.stdout
    named = [int(pid) for pid in re.findall(r"^(\d+): sleep 300$", result.stdout, re.MULTILINE)]
    assert len(named) == 2 and not any(running(pid) for pid in named)


def test_a_run_that_waits_for_its_processes_passes(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, "import subprocess\n\ndef test_waits():\n    subprocess.run(['sleep', '0'])\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "left running" not in result.stdout
