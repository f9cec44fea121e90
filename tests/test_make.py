"""The Makefile's targets as a newcomer meets them: `make deploy` sets itself up, and `make test` on a
machine without Node.js says so before any Python work."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.callbacks import ROOT

VENV = str(Path(sys.executable).parents[1])


def test_make_deploy_installs_the_deploy_tooling_and_runs_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLCENGINE_", "FLASHDUTY_", "RECONCILE_"))}
    result = subprocess.run(
        ["make", "--no-print-directory", "deploy", f"VENV={VENV}", "ARGS=--dry-run --name make-deploy-dry"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would deploy volc-flashduty-relay" in result.stdout, result.stdout + result.stderr
    assert "find function 'make-deploy-dry'" in result.stdout
    assert (Path(VENV) / ".deploy-deps").exists()


def test_make_test_without_node_says_so_in_one_line_before_any_python_work(tmp_path: Path) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "make").symlink_to(shutil.which("make") or "make")
    empty = tmp_path / "venv"  # no pip in it: the Python work, were it reached, would fail at once
    empty.mkdir()
    result = subprocess.run(
        ["make", "--no-print-directory", "test", f"VENV={empty}"],
        cwd=ROOT,
        env={"PATH": str(tools), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stdout == "", result.stdout  # nothing ran: no venv, no pip
    said = [line for line in result.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert said == [
        "make test needs Node.js 20 or newer with npm (the suite packages serverless.yml and lints the "
        "workflows): install them (https://nodejs.org/), then run make test again"
    ], result.stderr
