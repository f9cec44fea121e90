"""The dead-letter store on S3-compatible storage: what Flashduty did not accept, and what was sent.

Format 2, written now: one object per callback, holding its raw body (so a mapping bug can be
fixed and the callback translated again) and every event still undelivered. Its name says when,
which callback, and how many events failed with which error, so `replay list` needs only listings:

    <prefix>20261124T031502.123456Z_<trace id>_deadline(40)InvalidParameter(2).json

Beside them, under <prefix>sent/, each callback leaves a small record of the alert keys it sent
and when (written while it delivers), and the drain folds the records into index objects: a
stored event is superseded, and never sent, once a newer event of its alert reached the relay.
Format 1 (one object per event, `..._event-0003_<error>.json`, plus `..._callback.json`) is still
read and replayed. boto3 is imported on first use: a cold start that stores nothing never pays for it.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from config import DeadLetter
from flashduty import Outcome
from logs import safe_name
from mapping import Event

CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0
FORMAT_VERSION = 2
SENT = "sent/"  # under the prefix: the records of what was sent
SENT_RETENTION = timedelta(days=1)  # how long the index remembers an alert key
_TIME = "%Y%m%dT%H%M%S.%f"
_NAME = re.compile(
    r"^(?P<time>\d{8}T\d{6}\.\d{6})Z_(?P<trace>[A-Za-z0-9-]*)_"
    r"(?:(?P<errors>(?:[A-Za-z0-9-]+\(\d+\))+)"  # format 2
    r"|callback|event-(?P<index>\d+)_(?P<error>[A-Za-z0-9-]*))\.json$"  # format 1
)
_COUNT = re.compile(r"([A-Za-z0-9-]+)\((\d+)\)")
_RECORD = re.compile(r"^(?:(?P<time>\d{8}T\d{6}\.\d{6})Z_[A-Za-z0-9-]*|index_[A-Za-z0-9-]+)\.json$")


class StoreError(Exception):
    """The store could not be written or read; the message says why without secrets."""


class FormatError(StoreError):
    """A stored object is not one this version can read: it is left where it is."""


@dataclass(frozen=True)
class Entry:
    """One callback's stored events, as the listing names them."""

    names: tuple[str, ...]  # the objects holding it: one (format 2), or its event objects and body (1)
    stored_at: datetime
    trace_id: str
    errors: Counter[str]  # events by the error they failed with
    version: int

    @property
    def events(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class StoredEvent:
    event: Event
    error: str
    status: int | None = None
    attempts: int = 0

    @classmethod
    def failed(cls, outcome: Outcome) -> StoredEvent:
        return cls(outcome.event, safe_name(outcome.cause) or "unknown", outcome.status, outcome.attempts)


@dataclass
class Pending:
    """One callback's undelivered events, as read from the store."""

    entry: Entry
    route: str
    body: str
    events: list[StoredEvent] = field(default_factory=list)


@dataclass
class Sent:
    """When each alert key last had an event sent, as the records and indexes say."""

    latest: dict[str, datetime] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)  # the objects read
    # When each key's events now in the store were sent: a record is written before it is known
    # whether its events arrive, so one whose event is itself stored says it did not.
    undelivered: dict[str, set[datetime]] = field(default_factory=dict)
    unread: set[datetime] = field(default_factory=set)  # stored callbacks whose events are not known

    def supersedes(self, event: Event, stored_at: datetime) -> bool | None:
        """True when a newer event of the same alert reached Flashduty (sending this one would undo
        it), False when none did, None when that cannot be told: a stored callback was not read."""
        key = event.get("alert_key", "")
        latest = self.latest.get(key)
        if latest is None or latest <= stored_at or latest in self.undelivered.get(key, set()):
            return False
        return None if latest in self.unread else True

    def still_stored(self, pending: Pending) -> None:
        for stored in pending.events:
            self.undelivered.setdefault(stored.event.get("alert_key", ""), set()).add(pending.entry.stored_at)

    def add(self, key: str, at: datetime) -> None:
        if key not in self.latest or self.latest[key] < at:
            self.latest[key] = at


def _stamp(at: datetime) -> str:
    return at.strftime(_TIME)


class Store:
    def __init__(self, location: DeadLetter, credentials: Mapping[str, str] | None = None) -> None:
        self.location = location
        self.credentials = dict(credentials or {})  # boto3 client arguments; boto3's own chain when empty
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # deferred: heavy, and needed only when something fails
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.location.endpoint_url,
                **self.credentials,
                config=Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                    # One attempt (botocore's max_attempts counts retries): a write must fit in the
                    # callback's deadline, and a failed store makes Volcengine retry the callback.
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    # boto3 >= 1.36 adds checksums by default that TOS, MinIO and others reject.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": self.location.addressing_style},
                ),
            )
        return self._client

    def probe(self) -> None:
        """Write and delete one object, as the relay and the drain will: StoreError when either is refused."""
        key = f"{self.location.prefix}probe/{os.urandom(16).hex()}.json"
        self._put(key, {"probe": "python -m deploy checks that the relay can store here"})
        self._call(f"delete s3://{self.location.bucket}/{key}", "delete_object", Key=key)

    # Written by the relay --------------------------------------------------------------------

    def keep(self, *, trace_id: str, route: str, body: bytes, failures: Sequence[Outcome], now: datetime) -> str:
        """Store the callback's raw body and its undelivered events in one object; its name, or StoreError."""
        events = [StoredEvent.failed(outcome) for outcome in failures]
        return self._write_pending(now, safe_name(trace_id), route, body.decode("utf-8-sig", "replace"), events)

    def record_sent(self, *, trace_id: str, events: Iterable[Event], now: datetime) -> None:
        """Note that these alerts had an event sent at `now` (before it is known whether they arrive)."""
        keys = sorted({event["alert_key"] for event in events if "alert_key" in event})
        document = {"version": FORMAT_VERSION, "sent_at": now.isoformat(), "keys": keys}
        self._put(f"{self.location.prefix}{SENT}{_stamp(now)}Z_{safe_name(trace_id)}.json", document)

    # Read and settled by replay --------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every callback with events in the store, oldest first."""
        prefix = self.location.prefix
        groups: dict[str, list[tuple[str, re.Match[str]]]] = {}
        for name in self._names(prefix, delimiter="/"):
            match = _NAME.match(name[len(prefix) :])
            if match:
                group = f"{match['time']}_{match['trace']}" if not match["errors"] else name
                groups.setdefault(group, []).append((name, match))
        entries = []
        for members in groups.values():
            errors: Counter[str] = Counter()
            for _, match in members:
                if match["errors"]:
                    errors.update({error: int(count) for error, count in _COUNT.findall(match["errors"])})
                elif match["index"] is not None:
                    errors[match["error"] or "unknown"] += 1
            first = members[0][1]
            entries.append(
                Entry(
                    names=tuple(sorted(name for name, _ in members)),
                    stored_at=datetime.strptime(first["time"], _TIME).replace(tzinfo=UTC),
                    trace_id=first["trace"],
                    errors=errors,
                    version=2 if first["errors"] else 1,
                )
            )
        return sorted(entries, key=lambda e: (e.stored_at, e.names))

    def load(self, entry: Entry) -> Pending | None:
        """The entry's events and body; None when another replay has already settled it."""
        try:
            return self._load(entry)
        except (KeyError, TypeError, AttributeError) as exc:
            raise FormatError(
                f"{entry.names[0]} does not hold what its format says (no {exc}): move it aside"
            ) from None

    def _load(self, entry: Entry) -> Pending | None:
        if entry.version == 2:
            (name,) = entry.names
            document = self._read(name)
            if document is None:
                return None
            events = [
                StoredEvent(e["event"], e["error"], e.get("status"), e.get("attempts", 0)) for e in document["events"]
            ]
            return Pending(entry, document["route"], document["body"], events)
        pending = Pending(entry, "", "")
        for name in entry.names:
            document = self._read(name)
            if document is None:
                continue
            pending.route = document["route"]
            if "body" in document:
                pending.body = document["body"]
            else:
                error = document["error"]
                code = safe_name(error["code"] or f"HTTP {error['status']}")
                pending.events.append(StoredEvent(document["event"], code, error["status"], document["attempts"]))
        return pending if pending.route else None  # a format-1 body alone is settled as empty

    def settle(self, pending: Pending, remaining: Sequence[StoredEvent]) -> None:
        """Keep only `remaining` of the entry's events: rewrite it as one object, or remove it."""
        entry = pending.entry
        if list(remaining) == pending.events and entry.version == FORMAT_VERSION:
            return
        written = None
        if remaining:  # written before the old objects go: a crash in between leaves a duplicate, not a loss
            written = self._write_pending(entry.stored_at, entry.trace_id, pending.route, pending.body, remaining)
        for name in entry.names:
            if name != written:
                self._call(f"delete {name}", "delete_object", Key=name)

    def sent(self) -> Sent:
        """What the records and indexes under sent/ say, and which objects said it."""
        return self.refresh(Sent())

    def refresh(self, sent: Sent) -> Sent:
        """Add what records and indexes written since `sent` was read say."""
        seen = set(sent.names)
        for name in self._names(self.location.prefix + SENT):
            if name in seen or not _RECORD.match(name.rsplit("/", 1)[-1]):
                continue
            document = self._read(name)
            if document is None:
                continue
            sent.names.append(name)
            if "sent_at" in document:
                at = datetime.fromisoformat(document["sent_at"])
                for key in document["keys"]:
                    sent.add(key, at)
            else:
                for key, at in document["latest"].items():
                    sent.add(key, datetime.fromisoformat(at))
        return sent

    def compact(self, sent: Sent, now: datetime) -> None:
        """Fold what was read into one index (forgetting keys older than a day), then drop what was read.

        The index is written before anything is deleted, and only what was read is deleted, so two
        drains compacting at once each keep everything they read.
        """
        latest = {key: at.isoformat() for key, at in sorted(sent.latest.items()) if now - at < SENT_RETENTION}
        if len(sent.names) <= 1 and len(latest) == len(sent.latest):
            return  # already one index with nothing to forget
        self._put(self._index_name(now), {"version": FORMAT_VERSION, "latest": latest})
        for old in sent.names:
            self._call(f"delete {old}", "delete_object", Key=old)

    def _index_name(self, now: datetime) -> str:
        return f"{self.location.prefix}{SENT}index_{_stamp(now).replace('.', '-')}-{os.urandom(4).hex()}.json"

    # S3 --------------------------------------------------------------------------------------

    def _write_pending(
        self, stored_at: datetime, trace: str, route: str, body: str, events: Sequence[StoredEvent]
    ) -> str:
        errors = Counter(e.error for e in events)
        counts = "".join(f"{error}({count})" for error, count in sorted(errors.items()))
        name = f"{self.location.prefix}{_stamp(stored_at)}Z_{trace}_{counts}.json"
        document = {
            "version": FORMAT_VERSION,
            "trace_id": trace,
            "route": route,
            "stored_at": stored_at.isoformat(),
            "body": body,
            "events": [
                {"event": e.event, "error": e.error, "status": e.status, "attempts": e.attempts} for e in events
            ],
        }
        self._put(name, document)
        return name

    def _names(self, prefix: str, delimiter: str = "") -> list[str]:
        params: dict[str, Any] = {"Prefix": prefix, "Delimiter": delimiter}
        names = []
        while True:
            page = self._call(f"list s3://{self.location.bucket}/{prefix}", "list_objects_v2", **params)
            names += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return names
            params["ContinuationToken"] = page["NextContinuationToken"]

    def _read(self, name: str) -> dict[str, Any] | None:
        """A stored document; None if it is gone; FormatError if it is not one this version reads."""
        raw = self._call(f"read {name}", "get_object", Key=name, read_body=True, missing_ok=True)
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except ValueError:
            raise FormatError(f"{name} is not JSON: it was not written by the relay; move it aside") from None
        version = document.get("version") if isinstance(document, dict) else None
        if version not in (1, FORMAT_VERSION):
            raise FormatError(
                f"{name} has format version {version!r}; this relay reads 1 and {FORMAT_VERSION}: upgrade it"
            )
        return document  # type: ignore[no-any-return]

    def _put(self, key: str, document: dict[str, Any]) -> None:
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._call(
            f"write s3://{self.location.bucket}/{key}", "put_object", Key=key, Body=body, ContentType="application/json"
        )

    def _call(
        self, action: str, operation: str, *, read_body: bool = False, missing_ok: bool = False, **params: Any
    ) -> Any:
        client = self.client
        from botocore.exceptions import BotoCoreError, ClientError  # loaded with the client

        try:
            response = getattr(client, operation)(Bucket=self.location.bucket, **params)
            return response["Body"].read() if read_body else response
        except ClientError as exc:
            if missing_ok and _describe(exc) in ("NoSuchKey", "404"):
                return None
            raise StoreError(f"cannot {action}: {_describe(exc)}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"cannot {action}: {_describe(exc)}") from exc


def _describe(exc: Exception) -> str:
    """The S3 error code, or the kind of failure: never a URL, a signature or a credential."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") or type(exc).__name__
