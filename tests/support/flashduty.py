"""A real HTTP server on 127.0.0.1 standing in for Flashduty's standard event API.

It checks every request against the documented contract (path, integration_key, content type,
field types and limits), holds each integration key to both documented rate limits (100 requests
in any second and 1,000 in any minute; a minute can be scaled down for tests) with a 429 and
Retry-After beyond either, and answers as Flashduty does; faults can be scripted per request.
Which requests count against the limits Flashduty does not document: here, the accepted ones.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.callbacks import ROOT
from tests.support.servers import LocalServer, free_port

PATH = "/event/push/alert/standard"
STATUSES = {"Critical", "Warning", "Info", "Ok"}
LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def contract_violations(event: Any) -> list[str]:
    """What in one event breaks Flashduty's documented contract (empty when nothing does)."""
    if not isinstance(event, dict):
        return ["event is not a JSON object"]
    problems = []
    title = event.get("title_rule")
    if not isinstance(title, str) or not title or len(title) > 512:
        problems.append("title_rule must be a non-empty string of at most 512 chars")
    if event.get("event_status") not in STATUSES:
        problems.append(f"event_status must be one of {sorted(STATUSES)}")
    key = event.get("alert_key")
    if key is None and event.get("event_status") == "Ok":
        problems.append("alert_key is required for an Ok event")
    if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
        problems.append("alert_key must be a string of 1 to 255 chars")
    description = event.get("description", "")
    if not isinstance(description, str) or len(description) > 2048:
        problems.append("description must be a string of at most 2048 chars")
    labels = event.get("labels", {})
    if not isinstance(labels, dict) or len(labels) > 50:
        problems.append("labels must be an object of at most 50 labels")
    else:
        for name, value in labels.items():
            if len(name) > 128 or not LABEL_KEY.match(name):
                problems.append(f"label key {name!r} is not a valid label name")
            if not isinstance(value, str) or len(value) > 2048:
                problems.append(f"label {name!r} must be a string of at most 2048 chars")
    return problems


@dataclass
class Fault:
    """How to answer one request instead of accepting it."""

    status: int = 200
    code: str | None = None  # Flashduty error code in the body
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (longer than the relay waits: a hang)
    reset: bool = False  # drop the connection with a TCP reset instead of answering
    body: bytes | None = None  # answer exactly this (a proxy's HTML page, a malformed body) with `status`
    wire: bytes | None = None  # write exactly these bytes as the whole answer (a malformed header line)
    drip: float = 0.0  # seconds between the bytes of a success answer, each under any read timeout


@dataclass
class Received:
    event: dict[str, Any]
    integration_key: str
    at: float  # time.monotonic() of arrival
    answered: int  # the status it was given (0 for a reset)
    raw: bool = False  # answered with a scripted body, not Flashduty's own answer

    @property
    def accepted(self) -> bool:
        return self.answered == 200 and not self.raw


@dataclass(frozen=True)
class Limits:
    """Flashduty's documented limits per integration key; tests scale the minute down."""

    per_second: int = 100
    per_minute: int = 1000
    minute_seconds: float = 60.0


def peak(arrivals: list[float], window: float) -> int:
    """The most arrivals in any window of this many seconds."""
    times = sorted(arrivals)
    ends = collections.deque[float]()
    most = 0
    for at in times:
        ends.append(at)
        while ends[0] <= at - window:
            ends.popleft()
        most = max(most, len(ends))
    return most


class FlashdutyStub(LocalServer):
    def __init__(self, port: int = 0, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._accepted_at: dict[str, collections.deque[float]] = {}
        self.received: list[Received] = []
        self.violations: list[str] = []
        self.faults: collections.deque[Fault] = collections.deque()
        self.delay = 0.0  # for every accepted request: Flashduty's latency
        self.fault_source: Callable[[], Fault] | None = None  # how to answer when nothing is scripted
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        super().__init__(self._handler_class(), port)

    @property
    def url(self) -> str:
        return f"{self.origin}{PATH}"

    def script(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order; then accept as usual."""
        with self._lock:
            self.faults.extend(faults)

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.accepted]

    def alerts(self) -> dict[str, str]:
        """Each alert key's state as Flashduty merges events: the status of its last accepted event (Ok: closed)."""
        return {r.event["alert_key"]: r.event["event_status"] for r in self.accepted()}

    def open_alerts(self) -> list[str]:
        return sorted(key for key, status in self.alerts().items() if status != "Ok")

    def _admit(self, key: str, now: float) -> float:
        """Count an accepted request of `key` and return 0, or the seconds until it could be. Under the lock."""
        recent = self._accepted_at.setdefault(key, collections.deque())
        while recent and recent[0] <= now - self.limits.minute_seconds:
            recent.popleft()
        wait = 0.0
        for count, window in ((self.limits.per_second, 1.0), (self.limits.per_minute, self.limits.minute_seconds)):
            in_window = (
                sum(1 for at in recent if at > now - window) if window < self.limits.minute_seconds else len(recent)
            )
            if in_window >= count:
                wait = max(wait, recent[len(recent) - count] + window - now)
        if not wait:
            recent.append(now)
        return wait

    def _next_fault(self) -> Fault:
        with self._lock:
            if self.faults:
                return self.faults.popleft()
        return self.fault_source() if self.fault_source else Fault(delay=self.delay)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add 40 ms to every answer.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                with stub._lock:
                    seen = {
                        "accepted": [r.event for r in stub.received if r.accepted],
                        "received": len(stub.received),
                        "arrivals": [r.at for r in stub.received],
                        "answers": [r.answered for r in stub.received],
                        "peak_in_flight": stub.peak_in_flight,
                        "limits": dataclasses.asdict(stub.limits),
                    }
                self._reply(200, seen)

            def do_POST(self) -> None:
                arrived = time.monotonic()
                with stub._lock:
                    stub.in_flight += 1
                    stub.peak_in_flight = max(stub.peak_in_flight, stub.in_flight)
                try:
                    self._answer(arrived)
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def _answer(self, arrived: float) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                url = urlsplit(self.path)
                key = parse_qs(url.query).get("integration_key", [""])[0]
                problems = []
                if url.path != PATH:
                    problems.append(f"path {url.path!r} is not {PATH}")
                if not key:
                    problems.append("integration_key missing from the query")
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    problems.append("Content-Type is not application/json")
                try:
                    event = json.loads(body)
                except ValueError:
                    event = None
                problems += contract_violations(event)
                fault = stub._next_fault()
                with stub._lock:
                    if not problems and not fault.reset and fault.status == 200 and fault.body is None:
                        wait = stub._admit(key, arrived)
                        if wait:
                            fault = Fault(429, "RequestTooFrequently", {"Retry-After": str(math.ceil(wait))})
                    stub.violations += problems
                    stub.received.append(
                        Received(
                            event,
                            key,
                            arrived,
                            0 if fault.reset else 400 if problems else fault.status,
                            raw=fault.body is not None or fault.wire is not None or bool(fault.drip),
                        )
                    )
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if problems:
                    return self._reply(400, {"error": {"code": "InvalidParameter", "message": "; ".join(problems)}})
                if fault.drip:
                    success = json.dumps({"request_id": "stub", "data": {"alert_key": "dripped"}}).encode()
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(success), success)
                    self.close_connection = True
                    try:
                        for byte in answer:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(fault.drip)
                    except OSError:
                        pass  # the relay closed it: what the drip is there to make it do
                    return
                if fault.wire is not None:
                    self.wfile.write(fault.wire)
                    self.close_connection = True
                    return
                if fault.body is not None:
                    return self._reply_raw(fault.status, fault.body, fault.headers)
                if fault.status != 200:
                    error = {"code": fault.code or "InternalError", "message": "scripted fault"}
                    return self._reply(fault.status, {"request_id": "stub", "error": error}, fault.headers)
                self._reply(200, {"request_id": "stub", "data": {"alert_key": event.get("alert_key", "generated")}})

            def _reply(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._reply_raw(status, json.dumps(payload).encode(), headers)

            def _reply_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the relay gave up waiting (a hang it was meant to cut off)

        return Handler


@contextmanager
def stub_process(fault_rate: float = 0.0, delay: float = 0.0, limits: Limits = Limits()) -> Iterator[str]:
    """The stand-in in a process of its own, so that the relay's threads cannot skew its clock.

    Its push URL is yielded; a GET to it answers what was accepted and when each request arrived.
    """
    scale = [str(limits.per_second), str(limits.per_minute), str(limits.minute_seconds)]
    command = [sys.executable, "-m", __name__, str(free_port()), str(fault_rate), str(delay), *scale]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()


def main() -> None:
    """`python -m tests.support.flashduty PORT FAULT_RATE DELAY PER_SECOND PER_MINUTE MINUTE_SECONDS`.

    Serves until killed. FAULT_RATE is the share of requests answered with a random fault (500, 429,
    400 or a reset); DELAY is Flashduty's latency for the others, in seconds; then the rate limits.
    """
    import random

    port, fault_rate, delay = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    limits = Limits(int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    rng, lock = random.Random(port), threading.Lock()
    faults = (
        Fault(500),
        Fault(429, "RequestTooFrequently", {"Retry-After": "0"}),
        Fault(400, "InvalidParameter"),
        Fault(reset=True),
    )

    def random_fault() -> Fault:
        with lock:
            return rng.choice(faults) if rng.random() < fault_rate else Fault(delay=delay)

    stub = FlashdutyStub(port, limits)
    stub.fault_source = random_fault
    print(stub.url, flush=True)
    stub._server.serve_forever()


if __name__ == "__main__":
    main()
