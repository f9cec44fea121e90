"""Deliver events to Flashduty's standard alert event API.

One urllib3 pool for the life of the process (warm invocations reuse its connections; requests'
Session would add its per-request preparation, a fifth of a callback's time, for nothing the relay
uses), urllib3 Retry for connection errors, 429 and 5xx (honouring a capped Retry-After), both of
Flashduty's rate limits per integration, and a deadline for the whole callback: Volcengine stops
waiting after 8 s. The events that matter most go first; events of one alert go one after another.

Reconcile's reads (Flashduty's Open API, Cloud Monitor through its SDK) are bounded by the same
watchdog (`watched`, `watch`) and tried again by `read_retry`: one piece of code for one job.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import hashlib
import json
import math
import os
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import urlencode

import certifi
import urllib3
from urllib3 import BaseHTTPResponse
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool, HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util.retry import Retry

import logs
from config import MAX_CONCURRENCY, RateLimits
from mapping import CRITICAL, INFO, OK, WARNING, Event

# The label every pushed event carries: which integration it was pushed to (the first 12 hex of the
# integration key's SHA-256), so that reconcile knows the alerts of its own integrations from those
# of another deployment on the same policies and Flashduty account, without revealing the key.
STAMP_LABEL = "relay_integration"
RETRIES = 3  # Flashduty suggests at most 3 retries, backing off from 1 s
BACKOFF_FACTOR = 0.5  # urllib3 waits 0, 1, 2 s before the retries
RETRY_AFTER_CAP_SECONDS = 3.0
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 30.0  # for one answer, however far the deadline (a replay's may be hours away)
# Outcome.error for an event that never got an answer, when no attempt had failed yet:
DEADLINE = "deadline"  # time ran out before it was sent
RATE_LIMITED = "rate-limit"  # Flashduty's limits left no slot for it before the deadline
BLOCKED = "blocked"  # an earlier event of its alert failed, and a later one must not overtake it
NOT_FLASHDUTY = "not-flashduty"  # a 2xx whose body is not Flashduty's success (a proxy, a captive portal)
SLOW_ANSWER = "slow-answer"  # the answer was still arriving at the deadline (dripped): its socket was closed
BUSY = "busy"  # the process had MAX_IN_FLIGHT requests out until the deadline
MAX_IN_FLIGHT = MAX_CONCURRENCY  # requests to Flashduty at once, from every callback and thread of the process
WATCHDOG_GRACE_SECONDS = 0.25
# A read's 429 or 5xx is asked again this many times (backing off 0, 1, 2, 4, 4... s), within its
# deadline: a busy service answers in time, one that is down is said so within half a minute.
READ_RETRIES = 8
READ_BACKOFF_MAX_SECONDS = 4.0
# What goes first when not everything fits in the deadline: a firing pages someone; a recovery
# stops an incident from escalating; Info pages nobody.
PRIORITY = {CRITICAL: 0, WARNING: 1, OK: 2, INFO: 3}


class Outcome(NamedTuple):
    event: Event
    delivered: bool
    status: int | None = None  # Flashduty's HTTP status, None when it never answered
    error: str | None = None  # Flashduty's error code, or what went wrong on the way
    attempts: int = 0

    @property
    def alert_key(self) -> str:
        return self.event.get("alert_key", "")

    @property
    def cause(self) -> str:
        """What it failed with: Flashduty's error code or what went wrong, else the HTTP status."""
        return self.error or f"HTTP {self.status}"

    @property
    def refused(self) -> bool:
        """Flashduty refused it for good (a 4xx other than 429): sending it again changes nothing."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


class RateLimiter:
    """Request starts within both of Flashduty's limits, across all threads of the process.

    Starts are spaced at least 1/per_second apart, and no window of a minute holds more than
    per_minute of them. A slot is granted only when it is due, to the caller that then sends at
    once: a reservation held through a sleep would let threads that wake late (a busy machine, a
    GC pause) send together, bunching requests at Flashduty's end. Libraries such as pyrate-limiter
    and limits count windows well, but cannot say when the next slot is due (so that a caller past
    its deadline gives up at once instead of waiting), let a second's whole quota out in one burst,
    and have no way to hold every caller off after a 429; this is the 40 lines that do.
    """

    def __init__(self, limits: RateLimits) -> None:
        # Starts spaced exactly at the limit can still arrive bunched (network jitter): 101 in one
        # second at Flashduty's end was measured at 100/s. Keep a little inside both limits.
        self._interval = 1.0 / (limits.per_second * RATE_HEADROOM)
        self._window = limits.minute_seconds / RATE_HEADROOM
        self._starts: collections.deque[float] = collections.deque(maxlen=limits.per_minute)
        self._next = 0.0
        self._lock = threading.Lock()

    def wait_for_slot(self, deadline: float) -> bool:
        """Wait until this caller may send now; False, without waiting, once that is past the deadline."""
        while True:
            with self._lock:
                now = time.monotonic()
                if now >= deadline:
                    return False
                due = self._next
                if len(self._starts) == self._starts.maxlen:  # the minute is full until its oldest leaves
                    due = max(due, self._starts[0] + self._window)
                if now >= due:
                    self._next = now + self._interval
                    self._starts.append(now)
                    return True
            if due >= deadline:
                return False
            time.sleep(due - now)

    def hold_off(self, seconds: float) -> None:
        """Flashduty answered 429: nobody sends to this integration for this long."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


RATE_HEADROOM = 0.98
_limiters: dict[tuple[str, RateLimits], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter(integration_key: str, limits: RateLimits) -> RateLimiter:
    """The process's one limiter for this integration."""
    with _limiters_lock:
        return _limiters.setdefault((integration_key, limits), RateLimiter(limits))


class _Progress:
    """How far one event's delivery got, for an answer given before it finished."""

    def __init__(self) -> None:
        self.attempts = 0  # started
        self.cause: str | None = None  # what the last failed attempt met
        self.cut = False  # the watchdog closed its socket: the answer came too slowly


class _Watchdog:
    """Shuts the socket of a request still unanswered at its deadline.

    A peer that drips its answer a byte at a time never trips a per-read timeout: without this, each
    such request holds a thread and a socket for as long as the peer keeps dripping. One thread for
    the process, started with the first request.
    """

    def __init__(self) -> None:
        self._due: dict[int, tuple[float, socket.socket, _Progress]] = {}  # by thread: one request each
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at = float("inf")  # when the watchdog's thread wakes next by itself

    def watch(self, sock: socket.socket) -> None:
        with self._changed:
            deadline = _sending.hard_deadline
            self._due[threading.get_ident()] = (deadline, sock, _sending.progress)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deliver-watchdog", daemon=True)
                self._thread.start()
            if deadline < self._wakes_at:  # only then: waking its thread for each request costs a callback's time
                self._changed.notify()

    def release(self) -> None:
        with self._changed:
            self._due.pop(threading.get_ident(), None)

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for thread, (deadline, sock, progress) in list(self._due.items()):
                    if deadline <= now:
                        del self._due[thread]
                        progress.cut = True
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)  # wakes the read blocked on it
                nearest = min((deadline for deadline, _, _ in self._due.values()), default=None)
                self._wakes_at = float("inf") if nearest is None else nearest
                self._changed.wait(None if nearest is None else nearest - now)


_WATCHDOG = _Watchdog()
_IN_FLIGHT = threading.BoundedSemaphore(MAX_IN_FLIGHT)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        if self.sock is not None:
            _WATCHDOG.watch(self.sock)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)
        if self.sock is not None:
            _WATCHDOG.watch(self.sock)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


# The limiter, deadline and progress of the event this thread is sending: urllib3 retries inside
# one session.post call, on the calling thread, so this is where its retries can find them.
_sending = threading.local()


class PastDeadline(TimeoutError):
    """A retry could not start before the deadline (a read's says what its last try met)."""


class _CappedRetry(Retry):
    """Honours Retry-After, but never waits longer than the callback can afford."""

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, RETRY_AFTER_CAP_SECONDS)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        progress: _Progress = _sending.progress  # an attempt failed: say so if time runs out next
        progress.cause = type(error).__name__ if error else f"HTTP {response.status}" if response else None
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: Any = None) -> None:
        retry_after = self.get_retry_after(response) if response is not None else None
        if response is not None and response.status == 429:
            # The integration's budget is spent (another process shares it, or a replay does):
            # every thread of this process waits, not only this one.
            _sending.limiter.hold_off(retry_after or 1.0)
        pause = self.get_backoff_time() if retry_after is None else retry_after
        if time.monotonic() + pause >= _sending.deadline:
            raise PastDeadline  # a retry after the deadline is no use to this callback
        super().sleep(response)
        # A retry is a request too: it waits for its slot under the integration's rate limits.
        if not _sending.limiter.wait_for_slot(_sending.deadline):
            raise PastDeadline
        _sending.progress.attempts += 1


class _ReadRetry(Retry):
    """urllib3's Retry for a read, whose tries never outlive `deadline` (a time.monotonic() value): a
    wait (Retry-After's, honoured whole, or the backoff's) that would end past it raises PastDeadline
    at once, saying what the last try met, instead of sleeping."""

    def __init__(self, *args: Any, deadline: float = math.inf, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def new(self, **kw: Any) -> Self:
        return super().new(**{"deadline": self.deadline, **kw})

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        retry_after = self.get_retry_after(response) if response is not None else None
        pause = retry_after or self.get_backoff_time()
        if time.monotonic() + pause < self.deadline:
            time.sleep(pause)
            return
        if response is not None and retry_after:
            wait = f"asked to wait {retry_after:g} s"
            raise PastDeadline(f"answered HTTP {response.status} and {wait}: past the deadline")
        error = self.history[-1].error if self.history else None
        slow = isinstance(error, (urllib3.exceptions.TimeoutError, TimeoutError))
        if slow and not isinstance(error, urllib3.exceptions.NewConnectionError):  # urllib3's kind of timeout
            raise PastDeadline("did not answer in time")
        met = f"HTTP {response.status}" if response is not None else type(error).__name__
        raise PastDeadline(f"answered {met}, and no time was left to ask again")


def read_retry(deadline: float) -> Retry:
    """How a read (never a push: a write is not tried again blindly) is tried again: a 429 or a 5xx
    a service or its gateway gives when busy, soon, up to READ_RETRIES times, and a connection that
    failed twice; each within `deadline`."""
    return _ReadRetry(
        total=None,
        connect=2,
        read=2,
        other=0,
        status=READ_RETRIES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=READ_BACKOFF_MAX_SECONDS,
        status_forcelist=[429, 500, 502, 503, 504],
        allowed_methods=["POST"],  # the Open API's and Cloud Monitor's reads are POSTs
        raise_on_status=False,  # the last answer is returned: its caller says what it was
        redirect=False,
        deadline=deadline,
    )


def watch(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    """This pool manager's connections (those it makes from now on) are ones `watched` can cut."""
    manager.pool_classes_by_scheme = _WATCHED_POOLS
    return manager


@contextlib.contextmanager
def watched(deadline: float) -> Iterator[_Progress]:
    """Within it, a request this thread makes through a watched pool has its socket shut when its
    answer is still arriving at `deadline` (a peer dripping it a byte at a time never trips a read
    timeout); the progress yielded says whether it was (`cut`). For reads: deliver watches its own."""
    _sending.hard_deadline, _sending.progress = deadline + WATCHDOG_GRACE_SECONDS, _Progress()
    try:
        yield _sending.progress
    finally:
        _WATCHDOG.release()


logs.install()  # urllib3 logs the push URL, and with it the key, in several places


def _new_pool() -> urllib3.PoolManager:
    retry = _CappedRetry(
        total=RETRIES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_jitter=0.2,
        status_forcelist=[429, *range(500, 600)],
        allowed_methods=["POST"],  # safe to repeat: Flashduty discards an identical event
        raise_on_status=False,
        redirect=False,  # a redirect would be followed as a GET, and its 200 taken for delivery
    )
    # The environment's CA bundle as requests reads it (a file, or a hashed directory such as
    # /etc/ssl/certs), else certifi's (what requests verified with).
    ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    directory = os.path.isdir(ca_bundle)
    manager = urllib3.PoolManager(
        num_pools=4,
        maxsize=MAX_IN_FLIGHT,
        retries=retry,
        ca_certs=None if directory else ca_bundle,
        ca_cert_dir=ca_bundle if directory else None,
    )
    manager.pool_classes_by_scheme = _WATCHED_POOLS  # connections the watchdog can cut off
    return manager


@functools.cache
def pool_for(url: str) -> urllib3.PoolManager:
    """The pool for this URL, read once: the direct one, or a proxy's as requests would pick it from
    the environment (HTTP(S)_PROXY, else ALL_PROXY, any case; an address without a scheme is http;
    credentials in its URL answer its 407; NO_PROXY by name, suffix, port or address range)."""
    if not urllib.request.getproxies():
        return _POOL_MANAGER
    import requests.utils  # only where a proxy is set: its reading is what users configured for

    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if not proxy:
        return _POOL_MANAGER
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    username, password = requests.utils.get_auth_from_url(proxy)
    credentials = urllib3.make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
    manager = urllib3.ProxyManager(proxy, proxy_headers=credentials, **_POOL_MANAGER.connection_pool_kw)
    manager.pool_classes_by_scheme = _WATCHED_POOLS
    return manager


_POOL_MANAGER = _new_pool()
# Shared by every callback of the process; threads start only when a callback has several alerts.
_POOL = ThreadPoolExecutor(max_workers=MAX_CONCURRENCY, thread_name_prefix="deliver")


def deliver(
    events: Sequence[Event],
    *,
    push_url: str,
    integration_key: str,
    deadline: float,
    concurrency: int,
    limits: RateLimits,
    shuffle: bool = False,
) -> list[Outcome]:
    """Send every event by the deadline; return one Outcome per event, in the order given.

    Alerts go in PRIORITY order (the order given within one priority), up to `concurrency` at once;
    the events of one alert key go one after another, in the order given, and stop at the first
    that fails for a reason that may pass (a refusal does not hold the next back). `deadline` is a
    time.monotonic() value; what is unanswered then is reported with the cause it met. Its request
    may still complete in the background, which is harmless: Flashduty discards an identical repeat.
    `shuffle` puts the alerts of one priority in random order, so that Volcengine's retries of a
    callback too large for one deadline do not all send the same ones first.
    """
    limiter_ = limiter(integration_key, limits)
    by_key: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_key.setdefault(event.get("alert_key", f"#{index}"), []).append(index)
    chains = list(by_key.values())
    if shuffle:
        random.shuffle(chains)
    chains.sort(key=lambda chain: min(PRIORITY[events[i]["event_status"]] for i in chain))
    results: dict[int, Outcome] = {}
    progress = {index: _Progress() for index in range(len(events))}
    pending = iter(chains)
    lock = threading.Lock()

    def work() -> None:
        while time.monotonic() < deadline:
            with lock:
                chain = next(pending, None)
            if chain is None:
                return
            for position, index in enumerate(chain):
                outcome = _send(events[index], push_url, integration_key, limiter_, deadline, progress[index])
                results[index] = outcome
                if not (outcome.delivered or outcome.refused):
                    for later in chain[position + 1 :]:
                        results[later] = Outcome(events[later], False, error=BLOCKED)
                    break

    workers = min(concurrency, len(chains))
    if workers == 1:
        work()  # the usual callback, one alert: no thread to start or hand over to
    elif workers > 1:
        # Each worker in a copy of this thread's context: its log lines carry the callback's trace id.
        futures = [_POOL.submit(contextvars.copy_context().run, work) for _ in range(workers)]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        for future in futures:
            future.cancel()  # not started by the deadline: nothing left for it to do
    return [results.get(index) or _unanswered(event, progress[index]) for index, event in enumerate(events)]


def _unanswered(event: Event, progress: _Progress) -> Outcome:
    cause = SLOW_ANSWER if progress.cut else progress.cause or DEADLINE
    return Outcome(event, False, error=cause, attempts=progress.attempts)


def stamp(integration_key: str) -> str:
    """The STAMP_LABEL value of the events pushed with this integration key."""
    return hashlib.sha256(integration_key.encode()).hexdigest()[:12]


def stamped(event: Event, integration_key: str) -> Event:
    """The event as it is pushed: its labels and the stamp of its integration (the translation leaves a
    label for it: event_fields.LABELS_MAX)."""
    return {**event, "labels": {**event.get("labels", {}), STAMP_LABEL: stamp(integration_key)}}


def _send(
    event: Event, push_url: str, integration_key: str, limiter_: RateLimiter, deadline: float, progress: _Progress
) -> Outcome:
    if not _IN_FLIGHT.acquire(timeout=max(0.0, deadline - time.monotonic())):
        return Outcome(event, False, error=BUSY)
    try:
        return _post(event, push_url, integration_key, limiter_, deadline, progress)
    finally:
        _WATCHDOG.release()
        _IN_FLIGHT.release()


def _post(
    event: Event, push_url: str, integration_key: str, limiter_: RateLimiter, deadline: float, progress: _Progress
) -> Outcome:
    if not limiter_.wait_for_slot(deadline):
        return Outcome(event, False, error=RATE_LIMITED)
    _sending.limiter, _sending.deadline, _sending.progress = limiter_, deadline, progress
    # A hang is cut by the read timeout at the deadline; the watchdog, just after, cuts what drips.
    _sending.hard_deadline = min(deadline, time.monotonic() + READ_TIMEOUT_SECONDS) + WATCHDOG_GRACE_SECONDS
    progress.attempts = 1
    remaining = max(0.1, min(deadline - time.monotonic(), READ_TIMEOUT_SECONDS))
    try:
        response = pool_for(push_url).request(
            "POST",
            f"{push_url}?{urlencode({'integration_key': integration_key})}",
            body=json.dumps(stamped(event, integration_key), ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json"},
            timeout=urllib3.Timeout(connect=min(CONNECT_TIMEOUT_SECONDS, remaining), read=remaining),
            preload_content=False,  # read below, outside the retries, while the watchdog still guards it
        )
        body = response.read()
    except PastDeadline:
        return _unanswered(event, progress)  # the cause its last attempt met, not just "deadline"
    except HTTPError as exc:
        if progress.cut:
            return _unanswered(event, progress)
        # The exception's text holds the URL, and with it the key: keep only what kind it was.
        error = type(exc.reason if isinstance(exc, MaxRetryError) else exc).__name__
        return Outcome(event, False, error=error, attempts=progress.attempts)
    answer = _answer(body)
    status, attempts = response.status, progress.attempts
    if 200 <= status < 300 and "error" not in answer and isinstance(answer.get("data"), dict):
        return Outcome(event, True, status=status, attempts=attempts)
    if progress.cut:
        # Cut in its headers, the answer reads as complete (http.client takes the lines it got for all
        # of them) with an empty body: what it is not is Flashduty's, but what it was is slow.
        return _unanswered(event, progress)
    return Outcome(event, False, status=status, error=_error_code(response, answer), attempts=attempts)


def _answer(body: bytes) -> dict[str, Any]:
    """Flashduty's JSON answer, or {} for anything else (a proxy's HTML page, nesting too deep to read)."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return answer if isinstance(answer, dict) else {}


def _error_code(response: BaseHTTPResponse, answer: dict[str, Any]) -> str:
    """Flashduty's error code, or what the answer was instead (a redirect, a 2xx that is not Flashduty's)."""
    error = answer.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    if isinstance(code, str) and code:
        return code[:64]
    if 200 <= response.status < 300:
        return NOT_FLASHDUTY
    return f"HTTP {response.status}"
