"""Deliver events to Flashduty's standard alert event API.

One pooled requests.Session for the life of the process (warm invocations reuse its connections),
urllib3 Retry for connection errors, 429 and 5xx (honouring a capped Retry-After), a rate limit per
integration, and a deadline for the whole callback: Volcengine stops waiting after 8 s.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from config import MAX_CONCURRENCY
from mapping import Event

RETRIES = 3  # Flashduty suggests at most 3 retries, backing off from 1 s
BACKOFF_FACTOR = 0.5  # urllib3 waits 0, 1, 2 s before the retries
RETRY_AFTER_CAP_SECONDS = 3.0
CONNECT_TIMEOUT_SECONDS = 2.0
DEADLINE = "deadline"  # Outcome.error for an event the deadline left unsent or unanswered


@dataclass(frozen=True)
class Outcome:
    event: Event
    delivered: bool
    status: int | None = None  # Flashduty's HTTP status, None when it never answered
    error: str | None = None  # Flashduty's error code, or what went wrong on the way
    attempts: int = 0

    @property
    def alert_key(self) -> str:
        return self.event.get("alert_key", "")


# The rate limiter and deadline of the event this thread is sending: urllib3 retries inside one
# session.post call, on the calling thread, so this is where its retries can find them.
_sending = threading.local()


class _PastDeadline(Exception):
    """A retry could not start before the callback's deadline."""


class _CappedRetry(Retry):
    """Honours Retry-After, but never waits longer than the callback can afford."""

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, RETRY_AFTER_CAP_SECONDS)

    def sleep(self, response: Any = None) -> None:
        super().sleep(response)
        # A retry is a request too: it waits for its slot under the integration's rate limit.
        if not _sending.limiter.wait_for_slot(_sending.deadline):
            raise _PastDeadline


class _RedactKey(logging.Filter):
    """urllib3 logs request URLs on retries; the integration key in them is a secret."""

    _KEY = re.compile(r"(integration_key=)[^&\s'\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._KEY.sub(r"\1<redacted>", record.getMessage())
        record.args = ()
        return True


for _name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_name).addFilter(_RedactKey())


def _new_session() -> requests.Session:
    retry = _CappedRetry(
        total=RETRIES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_jitter=0.2,
        status_forcelist=[429, *range(500, 600)],
        allowed_methods=["POST"],  # safe to repeat: Flashduty discards an identical event
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_connections=4, pool_maxsize=MAX_CONCURRENCY)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


_SESSION = _new_session()


# Starts spaced exactly 1/rate apart can still arrive bunched (network jitter): 101 in one second
# at Flashduty's end was measured at 100/s. Keep a little under the limit.
RATE_HEADROOM = 0.98


class RateLimiter:
    """Request starts at least 1/rate apart, across all threads of the process.

    A slot is granted only when it is due, to the caller that then sends at once: a reservation
    held through a sleep would let threads that wake late (a busy machine, a GC pause) send
    together, bunching requests at Flashduty's end.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / (rate * RATE_HEADROOM)
        self._next = 0.0
        self._lock = threading.Lock()

    def wait_for_slot(self, deadline: float) -> bool:
        """Wait until this caller may send now; False, without waiting, once that is past the deadline."""
        while True:
            with self._lock:
                now = time.monotonic()
                if now >= self._next:
                    self._next = now + self._interval
                    return True
                due = self._next
            if due >= deadline:
                return False
            time.sleep(due - now)


_limiters: dict[tuple[str, float], RateLimiter] = {}
_limiters_lock = threading.Lock()


def _limiter(integration_key: str, rate: float) -> RateLimiter:
    with _limiters_lock:
        return _limiters.setdefault((integration_key, rate), RateLimiter(rate))


def deliver(
    events: Sequence[Event],
    *,
    push_url: str,
    integration_key: str,
    deadline: float,
    concurrency: int,
    max_rps: float,
) -> list[Outcome]:
    """Send every event, concurrently; return one Outcome per event, in order, by the deadline.

    `deadline` is a time.monotonic() value. An event still unsent or unanswered then is reported
    with error DEADLINE; its request may still complete in the background, which is harmless
    because Flashduty discards an identical repeat.
    """
    limiter = _limiter(integration_key, max_rps)
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(events))))
    try:
        futures = [pool.submit(_send, event, push_url, integration_key, limiter, deadline) for event in events]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        return [
            future.result() if future.done() else Outcome(event, False, error=DEADLINE)
            for future, event in zip(futures, events, strict=True)
        ]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _send(event: Event, push_url: str, integration_key: str, limiter: RateLimiter, deadline: float) -> Outcome:
    if not limiter.wait_for_slot(deadline):
        return Outcome(event, False, error=DEADLINE)
    _sending.limiter, _sending.deadline = limiter, deadline
    remaining = max(0.1, deadline - time.monotonic())
    try:
        response = _SESSION.post(
            push_url,
            params={"integration_key": integration_key},
            data=json.dumps(event, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            timeout=(min(CONNECT_TIMEOUT_SECONDS, remaining), remaining),
        )
    except _PastDeadline:
        return Outcome(event, False, error=DEADLINE, attempts=1)  # at least the first attempt was sent
    except requests.RequestException as exc:
        # The exception's text holds the URL, and with it the key: keep only what kind it was.
        reason = exc.args[0] if exc.args else None
        if isinstance(reason, MaxRetryError):
            return Outcome(event, False, error=type(reason.reason).__name__, attempts=RETRIES + 1)
        return Outcome(event, False, error=type(exc).__name__, attempts=1)
    retries = getattr(response.raw, "retries", None)
    attempts = len(retries.history) + 1 if retries else 1
    if response.ok:
        return Outcome(event, True, status=response.status_code, attempts=attempts)
    return Outcome(event, False, status=response.status_code, error=_error_code(response), attempts=attempts)


def _error_code(response: requests.Response) -> str:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    return code if isinstance(code, str) and code else f"HTTP {response.status_code}"
