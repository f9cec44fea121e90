"""Processes the suite starts, and a pytest plugin that fails the run on any it leaves running.

The run's first process becomes a child subreaper (Linux's PR_SET_CHILD_SUBREAPER): whatever a test
starts and then orphans (a server whose `make` was stopped, a daemon) is adopted by it rather than by
pid 1. So at the end of the session every process still running that the suite started is a child of
that process, and none should be: each is named, stopped, and the run fails. Loaded with
`-p tests.support.processes` (pyproject.toml's addopts).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def children(pid: int) -> list[int]:
    """The children of a process (each of its threads may have started some)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(n) for n in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Children, their children and so on, parents before their children."""
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


def running(pid: int) -> bool:
    """Whether the process exists and has not exited (an exited child not yet reaped is a zombie: `Z`)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def wait_gone(pids: Iterable[int], seconds: float) -> list[int]:
    """Wait until none of these processes runs, at most `seconds`; those still running then."""
    pids = list(pids)
    deadline = time.monotonic() + seconds
    while (alive := [p for p in pids if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling: these need not be our children, so there is nothing to wait() on
    return alive


def stop(pids: Iterable[int]) -> None:
    """SIGTERM, then SIGKILL to whatever still runs 10 s later."""
    pids = [p for p in pids if running(p)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    for pid in wait_gone(pids, 10):
        os.kill(pid, signal.SIGKILL)


@dataclass
class Leftover:
    pid: int
    command: str


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")  # a pytest-xdist worker: its controller keeps watch


def pytest_configure(config: pytest.Config) -> None:
    if not _is_worker(config):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> object:
    yield  # after every other plugin's: pytest-xdist has ended its workers by then
    if _is_worker(session.config):
        return
    # A process told to stop may take a moment; one still running after that was left behind.
    leftovers = wait_gone(descendants(os.getpid()), 5)
    if not leftovers:
        return
    found = [Leftover(pid, command_line(pid)) for pid in leftovers]
    stop(leftovers)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "processes the tests left running (now stopped)", red=True)
        for leftover in found:
            reporter.write_line(f"{leftover.pid}: {leftover.command}")
        reporter.stats.setdefault("left running", []).extend(found)  # the closing line counts them
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
