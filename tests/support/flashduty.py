"""A real HTTP server on 127.0.0.1 standing in for Flashduty: its standard event API and the Open
API's alert list.

Pushes: it checks every request against the documented contract (path, integration_key, content
type, field types and limits), holds each integration key to both documented rate limits (100
requests in any second and 1,000 in any minute; a minute can be scaled down for tests) with a 429
and Retry-After beyond either, and answers as Flashduty does; faults can be scripted per request.
Which requests count against the limits Flashduty does not document: here, the accepted ones.

Alerts: accepted events merge into alerts as Flashduty's docs say: one alert per integration and
alert key while it is open; its severity the first event's, fixed for good, and its status the last
event's (Flashduty's field reference; its incident page says "the highest of its events": the
harsher reading is served); its labels the last event's; an Ok closes it; an Ok with no open alert
opens nothing; after it closed, a firing opens a new alert. A person can close an alert by hand
(`close_by_hand`): it then reads like one closed by an Ok (the docs do not say how it reads: the
harsher reading), but keeps its last event's labels.
`POST /alert/list` serves them with the documented filters (required start_time/end_time at most
31 days apart, is_active, integration_ids, alert_keys, by_updated_at), 100 a page at most with a
search_after_ctx cursor, the `app_key` check (401), a refusal for a key without Channels Read
(403), results filtered to the channels the APP key may see (`visible_channels`; each integration's
channel in `channels`), and the account's 50 requests a second and 1,000 a minute (429). Under
`ok_keeps_labels`, an Ok leaves an alert its firing's labels (undocumented: another reading).
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
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flashduty
from tests.support.callbacks import ROOT
from tests.support.servers import DatedHandler, LocalServer, drip, free_port

PATH = "/event/push/alert/standard"
ALERT_LIST = "/alert/list"
APP_KEY = "fd-app-key-standin-0123456789abcdef"
WINDOW_MAX_SECONDS = 31 * 86400
PAGE_MAX = 100
STATUSES = {"Critical", "Warning", "Info", "Ok"}
LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def unstamped(event: Any, integration_key: str, problems: list[str]) -> Any:
    """A pushed event less the relay's stamp of its integration (flashduty.STAMP_LABEL), which must be
    the stamp of the key it was pushed with (else a problem; versions before it pushed none): the event
    as the translation made it."""
    labels = event.get("labels") if isinstance(event, dict) else None
    if not isinstance(labels, dict):
        return event
    if labels.get(flashduty.STAMP_LABEL, flashduty.stamp(integration_key)) != flashduty.stamp(integration_key):
        problems.append(f"labels.{flashduty.STAMP_LABEL} is not the stamp of the integration key it was pushed with")
    rest = {name: value for name, value in labels.items() if name != flashduty.STAMP_LABEL}
    return {**event, "labels": rest}


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
    drip: float = 0.0  # seconds between the bytes of the answer (a push's: a success), each under any read timeout
    drip_from: int = 0  # bytes of it written at once before the drip (its status line: the headers drip)


@dataclass
class Received:
    event: dict[str, Any]  # as translated: less the stamp of its integration (checked: `unstamped`)
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
        self.alert_records: list[dict[str, Any]] = []  # as /alert/list gives them, oldest first
        self.integration_ids: dict[str, int] = {}  # integration key: its id
        self.denied_read = False  # the APP key's role lacks Channels Read
        # An Ok leaves an alert its firing's labels: how a closed alert's labels read is not documented,
        # and under this reading an alert an Ok closed reads like one a person closed.
        self.ok_keeps_labels = False
        self.channels: dict[int, int] = {}  # integration id: its channel's id (1 unless set)
        self.visible_channels: set[int] | None = None  # the channels the APP key may see (None: all)
        self.list_delay = 0.0  # seconds before each /alert/list answer
        self.list_calls: list[dict[str, Any]] = []  # each /alert/list request body it served
        # How to answer each /alert/list request instead of serving it (None: serve it); a drip serves it, dripped.
        self.list_faults: Callable[[], Fault | None] | None = None
        self.list_answers: list[tuple[float, int]] = []  # each /alert/list request: time.monotonic() of arrival, status
        self.read_limits = Limits(per_second=50, per_minute=1000)  # the account's Open API limits
        self._read_at: collections.deque[float] = collections.deque()
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
        """Each alert key's state as Flashduty holds it: its latest alert's status (Ok: closed). An Ok
        where no alert was open made none."""
        with self._lock:
            return {a["alert_key"]: a["alert_status"] for a in self.alert_records}

    def open_alerts(self) -> list[str]:
        return sorted(key for key, status in self.alerts().items() if status != "Ok")

    def integration_id(self, integration_key: str) -> int:
        """The id Flashduty gives the integration of this key (made on first use). Under the lock or alone."""
        return self.integration_ids.setdefault(integration_key, 1000 + len(self.integration_ids))

    def alerts_of(self, alert_key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self.alert_records if a["alert_key"] == alert_key]

    def open_alert_records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(a) for a in self.alert_records if not a["end_time"]]

    def delivered(self, events: list[dict[str, Any]], integration_key: str) -> None:
        """These events merged into alerts as though the relay had delivered them earlier (no push
        counted against the limits): an account's state in one step, however many alerts it holds."""
        with self._lock:
            for event in events:
                self._merge(flashduty.stamped(event, integration_key), integration_key)

    def age_alerts(self, seconds: int) -> None:
        """Everything Flashduty holds happened this much longer ago (a test's way to let time pass)."""
        with self._lock:
            for alert in self.alert_records:
                for name in ("start_time", "last_time", "created_at", "updated_at", "end_time"):
                    alert[name] -= seconds if alert[name] else 0

    def close_by_hand(self, alert_key: str, at: float | None = None) -> None:
        """A person resolves the incident of the open alert of this key: it closes without an event."""
        with self._lock:
            (alert,) = [a for a in self.alert_records if a["alert_key"] == alert_key and not a["end_time"]]
            now = int(at if at is not None else self.clock())
            alert.update(end_time=now, updated_at=now, alert_status="Ok")

    def _merge(self, event: dict[str, Any], integration_key: str) -> None:
        """An accepted event into its alert, as Flashduty merges them. Under the lock."""
        now, key = int(self.clock()), event.get("alert_key", "")
        integration = self.integration_id(integration_key)
        open_ = [a for a in self.alert_records if a["integration_id"] == integration and a["alert_key"] == key]
        alert = next((a for a in open_ if not a["end_time"]), None)
        status = event["event_status"]
        if alert is None:
            if status == "Ok":
                return
            alert = {
                "alert_id": f"a{len(self.alert_records) + 1:06d}",
                "alert_key": key,
                "integration_id": integration,
                "integration_name": f"integration {integration}",
                "channel_id": self.channels.get(integration, 1),
                "alert_severity": status,
                "alert_status": status,
                "start_time": now,
                "last_time": now,
                "end_time": 0,
                "created_at": now,
                "updated_at": now,
                "event_cnt": 0,
            }
            self.alert_records.append(alert)
        alert.update(last_time=now, updated_at=now)
        if status != "Ok" or not self.ok_keeps_labels:
            alert.update(title=event["title_rule"], labels=dict(event.get("labels", {})))
        alert["event_cnt"] += 1
        # alert_severity stays what the alert opened with: a later, more severe event never raises it.
        alert["alert_status"] = status
        if status == "Ok":
            alert["end_time"] = now

    def _list(self, query: dict[str, list[str]], body: Any) -> tuple[int, dict[str, Any]]:
        """POST /alert/list: (HTTP status, answer)."""
        self.list_calls.append(body if isinstance(body, dict) else {})
        if query.get("app_key", [""])[0] != APP_KEY:
            return 401, _error("Unauthorized", "app_key is missing or not valid")
        if self.denied_read:
            return 403, _error("AccessDenied", "the APP key's role lacks Channels Read")
        now = time.monotonic()
        while self._read_at and self._read_at[0] <= now - self.read_limits.minute_seconds:
            self._read_at.popleft()
        if sum(1 for at in self._read_at if at > now - 1.0) >= self.read_limits.per_second or (
            len(self._read_at) >= self.read_limits.per_minute
        ):
            return 429, _error("RequestTooFrequently", "too many requests")
        self._read_at.append(now)
        problems = _list_problems(body)
        if problems:
            self.violations += [f"/alert/list: {p}" for p in problems]
            return 400, _error("InvalidParameter", "; ".join(problems))
        start, end, by_updated = body["start_time"], body["end_time"], bool(body.get("by_updated_at"))
        keys, integrations = body.get("alert_keys"), body.get("integration_ids")
        found = [
            dict(a)
            for a in self.alert_records
            if start <= a["updated_at" if by_updated else "start_time"] <= end
            and ("is_active" not in body or body["is_active"] == (not a["end_time"]))
            and (not keys or a["alert_key"] in keys)
            and (not integrations or a["integration_id"] in integrations)
            and (self.visible_channels is None or a["channel_id"] in self.visible_channels)
        ]
        after = int(body.get("search_after_ctx") or 0)
        limit = int(body.get("limit") or 20)
        page = found[after : after + limit]
        more = after + limit < len(found)
        data = {"items": page, "has_next_page": more, "search_after_ctx": str(after + limit) if more else ""}
        return 200, {"request_id": "stub", "data": {**data, "total": min(len(found), 1000)}}

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

        class Handler(DatedHandler):
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
                url = urlsplit(self.path)
                if url.path == ALERT_LIST:
                    arrived = time.monotonic()
                    body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                    try:
                        request = json.loads(body)
                    except ValueError:
                        request = None
                    fault = stub.list_faults() if stub.list_faults else None
                    with stub._lock:
                        if fault is None or fault.status == 200:
                            status, answer = stub._list(parse_qs(url.query), request)
                        else:
                            status, answer = fault.status, _error(fault.code or "InternalError", "scripted fault")
                        stub.list_answers.append((arrived, status))
                    time.sleep(stub.list_delay)
                    if fault is not None and fault.drip:
                        return self._drip(status, answer, fault.drip, fault.drip_from)
                    return self._reply(status, answer, fault.headers if fault else None)
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
                pushed, event = event, unstamped(event, key, problems)
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
                    if stub.received[-1].accepted:
                        stub._merge(pushed, key)
                if fault.delay:
                    time.sleep(fault.delay)
                if fault.reset:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if problems:
                    return self._reply(400, {"error": {"code": "InvalidParameter", "message": "; ".join(problems)}})
                if fault.drip:
                    dripped = {"request_id": "stub", "data": {"alert_key": "dripped"}}
                    return self._drip(200, dripped, fault.drip, fault.drip_from)
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

            def _drip(self, status: int, payload: dict[str, Any], seconds: float, at_once: int = 0) -> None:
                data = json.dumps(payload).encode()
                head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Length: {len(data)}\r\n\r\n"
                answer = head.encode() + data
                self.close_connection = True
                self.wfile.write(answer[:at_once])
                self.wfile.flush()
                drip(self.wfile, answer[at_once:], seconds)

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


def _error(code: str, message: str) -> dict[str, Any]:
    return {"request_id": "stub", "error": {"code": code, "message": message}}


def _list_problems(body: Any) -> list[str]:
    """What in an /alert/list request the documented contract refuses."""
    if not isinstance(body, dict):
        return ["the body is not a JSON object"]
    start, end = body.get("start_time"), body.get("end_time")
    if not (isinstance(start, int) and isinstance(end, int)):
        return ["start_time and end_time are required, in Unix seconds"]
    problems = []
    if not 0 <= end - start <= WINDOW_MAX_SECONDS:
        problems.append("start_time and end_time must be at most 31 days apart, end after start")
    if not 1 <= int(body.get("limit") or 20) <= PAGE_MAX:
        problems.append(f"limit must be 1 to {PAGE_MAX}")
    for name, kind in (("alert_keys", str), ("integration_ids", int)):
        value = body.get(name)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, kind) for v in value)):
            problems.append(f"{name} must be a list of {kind.__name__}")
    return problems


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
