"""Read the alerts Flashduty holds, through its Open API (`POST /alert/list`), for reconcile.

Reconcile compares Cloud Monitor's alarms with what Flashduty has, not with a record of what the
relay meant to send: a record is an intent, an alert is what arrived. The APP key
(FLASHDUTY_APP_KEY, a secret: it travels in the query and is never logged) must belong to a role
with Channels Read. The account may make 50 requests a second and 1,000 a minute: one limiter per
key keeps inside both. A window is at most 31 days, a page at most 100 alerts. Each read goes
through the delivery's pool, its answer cut off at the run's deadline and a 429 or 5xx asked again
within it (flashduty.watched, flashduty.read_retry). Each answer's Date header tells the run
Flashduty's clock (clocks.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError

from clocks import Clock
from config import RateLimits
from flashduty import PastDeadline, limiter, pool_for, read_retry, watched

DEFAULT_API_URL = "https://api.flashcat.cloud"
WINDOW = timedelta(days=31)  # the widest start_time..end_time one query takes
PAGE_SIZE = 100
KEYS_PER_QUERY = 100  # alert_keys in one query: the docs give no limit; a page's worth
READ_LIMITS = RateLimits(per_second=50, per_minute=1000)
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 15.0


class ReadError(Exception):
    """Flashduty could not be read: said so that the operator knows what to fix (never the key)."""


@dataclass(frozen=True)
class Alert:
    """One alert as /alert/list gives it: what reconcile needs of it."""

    alert_id: str
    alert_key: str
    integration_id: int
    integration_name: str  # a person's name for it: said when an alert cannot be closed
    # Flashduty's field reference: alert_severity is fixed when the alert opens; alert_status is its
    # current level (Critical, Warning, Info), or Ok once it recovered. What on-call sees now is the status.
    severity: str
    status: str
    active: bool  # open: no end_time, and a status that is not Ok
    updated_at: datetime
    end_time: datetime | None
    title: str
    started_at: datetime  # when it opened (start_time)
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class AlertReader:
    """Flashduty's alerts, read within a run's deadline (a time.monotonic() value)."""

    api_url: str
    app_key: str
    deadline: float
    clock: Clock = field(default_factory=lambda: Clock("Flashduty"))  # its answers' Date headers

    def open_alerts(self, history: timedelta) -> list[Alert]:
        """Every open alert that started within `history` of now, of every integration the key may
        see. Oldest first, so that the newest window ends at Flashduty's now as its answers by then
        have shown it (clocks.py)."""
        found: list[Alert] = []
        start = self.clock.now() - history
        while True:
            now = self.clock.now()
            end = min(start + WINDOW, now)
            found += self._list({"is_active": True}, start, end)
            if end == now:
                return found
            start = end

    def alerts_of(self, keys: Sequence[str], since: datetime, until: datetime) -> list[Alert]:
        """Every alert of these keys, open or closed, that changed in [since, until]."""
        found: list[Alert] = []
        for first in range(0, len(keys), KEYS_PER_QUERY):
            chunk = {"alert_keys": list(keys[first : first + KEYS_PER_QUERY]), "by_updated_at": True}
            for start, end in windows(since, until):
                found += self._list(chunk, start, end)
        return found

    def _list(self, filters: dict[str, Any], start: datetime, end: datetime) -> Iterator[Alert]:
        body: dict[str, Any] = {
            **filters,
            "start_time": int(start.timestamp()),
            "end_time": int(end.timestamp()),
            "limit": PAGE_SIZE,
        }
        while True:
            data = self._post(body)
            yield from (_alert(item) for item in data.get("items") or [])
            cursor = data.get("search_after_ctx")
            if not data.get("has_next_page") or not cursor:
                return
            body["search_after_ctx"] = cursor

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        host = urlsplit(self.api_url).netloc
        if not limiter(self.app_key, READ_LIMITS).wait_for_slot(self.deadline):
            raise TimeoutError("no time left to read Flashduty's alerts")
        remaining = self.deadline - time.monotonic()
        api_url = self.api_url.rstrip("/")
        with watched(self.deadline) as progress:
            try:
                response = pool_for(api_url).request(
                    "POST",
                    f"{api_url}/alert/list?{urlencode({'app_key': self.app_key})}",
                    body=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                    timeout=urllib3.Timeout(
                        connect=min(CONNECT_TIMEOUT_SECONDS, remaining), read=min(READ_TIMEOUT_SECONDS, remaining)
                    ),
                    retries=read_retry(self.deadline),
                )
            except (HTTPError, OSError) as error:  # its text holds the URL, and with it the key
                raise _unanswered(host, error) from None
            finally:
                if progress.cut:  # shut mid-answer, perhaps mid-headers: what came is not the answer
                    raise TimeoutError(
                        f"Flashduty's Open API ({host}) was still answering at the run's deadline: cut off"
                    )
        self.clock.heard(response.headers.get("Date"), time.time())
        try:
            answer = json.loads(response.data)
        except (ValueError, RecursionError):
            answer = None
        refusal = answer.get("error") if isinstance(answer, dict) else None
        code = str(refusal.get("code", "")) if isinstance(refusal, dict) else ""
        if response.status == 401 or code == "Unauthorized":
            raise ReadError("Flashduty refused FLASHDUTY_APP_KEY (Unauthorized): set an APP key of your account")
        if response.status == 403 or code == "AccessDenied":
            raise ReadError(
                "list Flashduty's alerts: refused (AccessDenied): the APP key's role needs Channels Read (on-call)"
            )
        data = answer.get("data") if isinstance(answer, dict) else None
        if response.status != 200 or code or not isinstance(data, dict):
            raise ReadError(f"list Flashduty's alerts failed: {code or f'HTTP {response.status}'}")
        return data


def _unanswered(host: str, error: Exception) -> Exception:
    """What a read that got no answer met, said without the URL: the run's time ran out (TimeoutError)
    or Flashduty could not be reached (ReadError)."""
    reason = error.reason if isinstance(error, MaxRetryError) else error
    if isinstance(reason, PastDeadline):
        return TimeoutError(f"Flashduty's Open API ({host}) {reason}")
    slow = isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError))
    if slow and not isinstance(reason, NewConnectionError):  # urllib3 counts a refused connection a timeout
        return TimeoutError(f"Flashduty's Open API ({host}) did not answer in time")
    return ReadError(
        f"list Flashduty's alerts: cannot reach {host} ({type(reason).__name__}); "
        "check FLASHDUTY_API_URL and the network"
    )


def windows(since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[since, until] as spans of at most WINDOW, newest first."""
    end = until
    while end > since:
        start = max(since, end - WINDOW)
        yield start, end
        end = start


def _alert(item: Any) -> Alert:
    """An item of the answer; ReadError for one that is not an alert as the docs describe it."""
    try:
        return _fields(item)
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):
        raise ReadError("list Flashduty's alerts: an item of the answer is not an alert as documented") from None


def _fields(item: dict[str, Any]) -> Alert:
    labels = item.get("labels")
    return Alert(
        alert_id=str(item.get("alert_id", "")),
        alert_key=str(item.get("alert_key", "")),
        integration_id=int(item.get("integration_id") or 0),
        integration_name=str(item.get("integration_name", "")),
        severity=str(item.get("alert_severity", "")),
        status=str(item.get("alert_status") or item.get("alert_severity") or ""),
        active=not item.get("end_time") and item.get("alert_status") != "Ok",
        updated_at=_time(item.get("updated_at") or item.get("last_time")),
        end_time=_time(item["end_time"]) if item.get("end_time") else None,
        title=str(item.get("title", "")),
        started_at=_time(item.get("start_time") or item.get("created_at") or item.get("updated_at")),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
    )


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value or 0), UTC)
