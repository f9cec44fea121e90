"""The dead-letter store: events Flashduty did not accept, kept on S3-compatible storage.

One object per undelivered event, and once per callback the raw body, so a mapping bug can be fixed
and the callback translated again. Object names sort by time and say what they hold:

    <prefix>20261124T031502.123456Z_<trace id>_callback.json
    <prefix>20261124T031502.123456Z_<trace id>_event-0003_InvalidParameter.json

so `replay list` and its filters need only listings, not reads. boto3 is imported on first use:
a cold start that stores nothing never pays for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from config import DeadLetter
from flashduty import Outcome

CONNECT_TIMEOUT_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0
FORMAT_VERSION = 1
_NAME = re.compile(
    r"^(?P<group>(?P<time>\d{8}T\d{6}\.\d{6})Z_(?P<trace>[A-Za-z0-9-]*))_"
    r"(?:callback|event-(?P<index>\d+)_(?P<error>[A-Za-z0-9-]*))\.json$"
)


class StoreError(Exception):
    """The store could not be written or read; the message says why without secrets."""


@dataclass(frozen=True)
class Entry:
    """One stored object, as its name describes it."""

    key: str
    group: str  # the callback it came from: time and trace id
    stored_at: datetime
    trace_id: str
    index: int | None  # None for the callback body
    error: str

    @property
    def is_event(self) -> bool:
        return self.index is not None


def _safe(text: str, limit: int = 64) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", text)[:limit].strip("-")


def _error_name(outcome: Outcome) -> str:
    return _safe(outcome.error or f"HTTP {outcome.status}") or "unknown"


class Store:
    def __init__(self, location: DeadLetter) -> None:
        self.location = location
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # deferred: heavy, and needed only when something fails
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.location.endpoint_url,
                config=Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                    # No retries here: a failed store makes Volcengine retry the whole callback.
                    retries={"max_attempts": 1, "mode": "standard"},
                    # boto3 >= 1.36 adds checksums by default that TOS, MinIO and others reject.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"addressing_style": self.location.addressing_style},
                ),
            )
        return self._client

    def keep(self, *, trace_id: str, route: str, body: bytes, failures: Sequence[Outcome], now: datetime) -> list[str]:
        """Store the raw callback and every undelivered event; the names written, or StoreError."""
        group = f"{self.location.prefix}{now.strftime('%Y%m%dT%H%M%S.%f')}Z_{_safe(trace_id)}"
        common = {"version": FORMAT_VERSION, "trace_id": trace_id, "route": route, "stored_at": now.isoformat()}
        callback_key = f"{group}_callback.json"
        objects = [(callback_key, {**common, "body": body.decode("utf-8-sig", "replace")})]
        for index, outcome in enumerate(failures):
            error = {"status": outcome.status, "code": outcome.error}
            document = {
                **common,
                "callback": callback_key,
                "event": outcome.event,
                "attempts": outcome.attempts,
                "error": error,
            }
            objects.append((f"{group}_event-{index:04d}_{_error_name(outcome)}.json", document))
        with ThreadPoolExecutor(max_workers=min(8, len(objects))) as pool:
            list(pool.map(lambda item: self._put(*item), objects))  # re-raises the first failure
        return [key for key, _ in objects]

    def entries(self) -> Iterator[Entry]:
        """Every object under the prefix whose name the relay wrote, oldest first."""
        prefix = self.location.prefix
        params: dict[str, Any] = {"Prefix": prefix}
        while True:
            page = self._call(f"list s3://{self.location.bucket}/{prefix}", "list_objects_v2", **params)
            for item in page.get("Contents", []):
                match = _NAME.match(item["Key"][len(prefix) :])
                if match:
                    yield Entry(
                        key=item["Key"],
                        group=prefix + match["group"],
                        stored_at=datetime.strptime(match["time"], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC),
                        trace_id=match["trace"],
                        index=int(match["index"]) if match["index"] else None,
                        error=match["error"] or "",
                    )
            if not page.get("IsTruncated"):
                return
            params["ContinuationToken"] = page["NextContinuationToken"]

    def read(self, key: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self._call(f"read {key}", "get_object", Key=key, read_body=True))
        return document

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", "delete_object", Key=key)

    def _put(self, key: str, document: dict[str, Any]) -> None:
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self._call(
            f"write s3://{self.location.bucket}/{key}", "put_object", Key=key, Body=body, ContentType="application/json"
        )

    def _call(self, action: str, operation: str, *, read_body: bool = False, **params: Any) -> Any:
        client = self.client
        from botocore.exceptions import BotoCoreError, ClientError  # loaded with the client

        try:
            response = getattr(client, operation)(Bucket=self.location.bucket, **params)
            return response["Body"].read() if read_body else response
        except (BotoCoreError, ClientError) as exc:
            raise StoreError(f"cannot {action}: {_describe(exc)}") from exc


def _describe(exc: Exception) -> str:
    """The S3 error code, or the kind of failure: never a URL, a signature or a credential."""
    response = getattr(exc, "response", None) or {}
    return response.get("Error", {}).get("Code") or type(exc).__name__
