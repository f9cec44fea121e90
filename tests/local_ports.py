"""Ports on this machine for servers the tests and benchmarks start (and for nothing at all)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    """A port nothing listens on now: for a server to start, or to find a connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unreachable_push_url() -> str:
    return f"http://127.0.0.1:{free_port()}/event/push/alert/standard"


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 30) -> bytes:
    """The first answer of a server that `process` is starting; fails if it exits or never answers."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            return urllib.request.urlopen(url, timeout=1).read()
        except OSError:
            time.sleep(0.1)  # polling until the server is up
    raise RuntimeError(f"{url} never answered")
