"""Ports on this machine, and the servers the tests and benchmarks start on them."""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, BinaryIO, Self, TypeVar

from tests.support.callbacks import ROOT


def free_port() -> int:
    """A port nothing listens on now: for a server to start, or to find a connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # not Python's 5: a burst of new connections must not be reset


class DatedHandler(BaseHTTPRequestHandler):
    """A stand-in's handler whose answers' Date header is its service's clock (LocalServer.clock)."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        clock = getattr(self.server, "clock", time.time)
        return super().date_time_string(clock() if timestamp is None else timestamp)


class LocalServer:
    """An HTTP stand-in on 127.0.0.1, served from a daemon thread between start() and stop()."""

    skew = 0.0  # seconds its service's clock is ahead of this machine's

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self._server = _Server(("127.0.0.1", port), handler)
        self._server.clock = self.clock  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._scheme = "http"

    @property
    def origin(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    def serve_tls(self, certificate: Path, key: Path) -> Self:
        """Answer over TLS with this certificate and key (before start)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https"
        return self

    def clock(self) -> float:
        """Now by its service's clock: what its answers and records say."""
        return time.time() + self.skew

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


T = TypeVar("T")


def drip(wfile: BinaryIO, answer: bytes, seconds: float) -> None:
    """Write a whole answer (status line, headers, body) one byte every `seconds`, each under any
    read timeout, until the peer closes the connection."""
    try:
        for byte in answer:
            wfile.write(bytes([byte]))
            wfile.flush()
            time.sleep(seconds)
    except OSError:
        pass  # the peer closed it: what the drip is there to make it do


def in_turn(*faults: T | None) -> Callable[[], T | None]:
    """A stand-in's way to answer its next requests: these in turn (None: served as usual), then served."""
    return _turns(itertools.chain(faults, itertools.repeat(None)))


def every_other(*faults: T) -> Callable[[], T | None]:
    """These faults in turn for every other request, from the first (those between are served), cycling."""
    return _turns(itertools.cycle(f for fault in faults for f in (fault, None)))


def always(fault: T) -> Callable[[], T | None]:
    return _turns(itertools.repeat(fault))


def _turns(answers: Iterator[T | None]) -> Callable[[], T | None]:
    lock = threading.Lock()  # each request of a threaded server takes its own turn

    def next_answer() -> T | None:
        with lock:
            return next(answers)

    return next_answer


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself (no CA vouches for it), and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = directory / "certificate.pem", directory / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate_path, key_path


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


def worker_rss_kib(arbiter: subprocess.Popen) -> int:
    """Peak RSS (VmHWM) of the first worker of a gunicorn arbiter."""
    children = Path(f"/proc/{arbiter.pid}/task/{arbiter.pid}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))


@contextmanager
def production_server(
    env: Mapping[str, str], target: str = "relay", source: str = "main.py", port_variable: str = "_FAAS_RUNTIME_PORT"
) -> Iterator[tuple[str, subprocess.Popen, IO[str]]]:
    """run.sh's server (gunicorn via functions-framework); for another target, the same command.

    Yields the server's URL, its process and its log (a file: an unread pipe would fill and block
    the server's logging).
    """
    port = free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("_FAAS_RUNTIME_PORT", "_BYTEFAAS_RUNTIME_PORT")},
        **env,
        port_variable: str(port),
        "PYTHON": sys.executable,
    }
    if target == "relay":
        command = ["./run.sh"]
    else:
        environment.update(WORKERS="1", THREADS="16")
        command = [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={target}",
            f"--source={source}",
            "--host=127.0.0.1",
            f"--port={port}",
        ]
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=log, text=True)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_until_up(url, process)
            yield url, process, log
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextmanager
def black_hole() -> Iterator[str]:
    """A server that accepts connections and never answers: a hanging peer. Yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
