"""One callback request, whatever the platform: check it, translate it, deliver it, answer.

Both entry points in main.py turn their platform's request into a Request and return this module's
Response, so the functions-framework target and the event-function handler answer alike.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import flashduty
import logs
import mapping
from config import Settings, last_segment
from logs import safe_name

if TYPE_CHECKING:
    from deadletter import Store

VERSION = "0.4.1"  # 0.4: one alert per level, a part by its AlertGroupId: new keys (docs/upgrading.md)
MAX_BODY_BYTES = 1024 * 1024
ALLOWED_METHODS = "GET, HEAD, POST"
# With a dead-letter store, delivery stops this much before the deadline to leave time to store.
STORE_RESERVE_SECONDS = 1.5
BODY_READ_SECONDS = 5.0  # Volcengine sends at most 1 MiB from its own network
READ_CHUNK = 64 * 1024
LISTED_MAX = 100  # alert keys and failures listed in an answer and its log line; past that, counts
TRACE_ID_MAX = 64  # Volcengine's are uuids (36)
# Store writes run beside delivery; threads start only when a store is configured.
_WRITER = ThreadPoolExecutor(max_workers=8, thread_name_prefix="store")

logger = logging.getLogger("relay")
logger.setLevel(logging.INFO)  # the one line per callback shows whatever the root level


class Request(NamedTuple):
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    query: Mapping[str, str]
    body: bytes  # at most MAX_BODY_BYTES + 1: an adapter need not read more to know it is too big
    base64: bool = False  # API gateways may hand the body over base64-encoded
    # A web server's unread body: read only once method, token and route are checked, and in time.
    stream: BinaryIO | None = None


class Response(NamedTuple):
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = MappingProxyType({})

    def json(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)


class CallerError(Exception):
    """An answer the caller caused: its status and this message as JSON, never a traceback."""

    status = 400

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class BadRequest(CallerError):
    """The body is malformed: empty, not UTF-8, not JSON, not an object, bad base64."""


class Unauthorized(CallerError):
    status = 401


class NotFound(CallerError):
    """The path names no route."""

    status = 404


class MethodNotAllowed(CallerError):
    status = 405

    def __init__(self, method: str) -> None:
        super().__init__(
            f"method {method or '(none)'} not allowed: Volcengine callbacks are POST", {"Allow": ALLOWED_METHODS}
        )


class RequestTimeout(CallerError):
    """The body did not arrive in time: a slow or stalled client does not hold a thread."""

    status = 408


class PayloadTooLarge(CallerError):
    status = 413


UNAUTHORIZED = "missing or wrong callback token: send it in the Token header or the token query parameter"
# veFaaS timer triggers post a CloudEvent of this type to a web-server function (its docs'
# "Trigger event message structure"); a body this small may be one, so it is read before refusing.
TIMER_EVENT = "faas.timer.event"
TIMER_BODY_MAX = 4096
TIMER_SECONDS_MAX = 900.0


def _small(request: Request) -> bool:
    if request.stream is None:
        return len(request.body) <= TIMER_BODY_MAX
    length = request.headers.get("content-length", "")
    return length.isdigit() and int(length) <= TIMER_BODY_MAX


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = _store(settings)

    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        trace_id = _trace_id(request.headers.get("x-volc-trace-id", ""))
        record: dict[str, Any] = {"message": "callback", "trace_id": trace_id, "method": request.method}
        context = logs.TRACE_ID.set(trace_id)  # every line logged for this callback carries it
        try:
            return self._handle(request, trace_id, started, record)
        finally:
            logs.TRACE_ID.reset(context)

    def _handle(self, request: Request, trace_id: str, started: float, record: dict[str, Any]) -> Response:
        try:
            response = self._answer(request, trace_id, started + self.settings.deadline_seconds, record)
        except CallerError as exc:
            response = Response(exc.status, {"error": str(exc), "trace_id": trace_id}, exc.headers)
        except Exception:
            logger.exception(json.dumps({"message": "internal error", "trace_id": trace_id}))
            response = Response(500, {"error": "internal error", "trace_id": trace_id})
        if request.method != "GET" and request.method != "HEAD":
            # The log line is the answer (less the key list), and what only the log may say.
            record.update({k: v for k, v in response.body.items() if k != "alert_keys"})
            record.update(status=response.status, duration_ms=round((time.monotonic() - started) * 1000))
            logger.log(
                logging.ERROR if response.status >= 500 else logging.INFO, json.dumps(record, ensure_ascii=False)
            )
        return response

    def _answer(self, request: Request, trace_id: str, deadline: float, record: dict[str, Any]) -> Response:
        if request.method in ("GET", "HEAD"):
            return Response(200, {"status": "ok", "version": VERSION, "dry_run": self.settings.dry_run})
        if request.method != "POST":
            raise MethodNotAllowed(request.method)
        authenticated = self._token_given(request)
        small = _small(request)
        if not authenticated and not small:
            raise Unauthorized(UNAUTHORIZED)  # before the body is read: a stranger's body costs nothing
        found = self._route(request.path)
        if found is None and not small:
            raise self._no_route(request.path)  # not a timer event: no need to read the body
        body = _decoded(request, time.monotonic() + BODY_READ_SECONDS)
        callback = _parse(body)
        # A timer event names no route: veFaaS posts it to `/`, where ROUTES alone has no integration.
        if callback.get("type") == TIMER_EVENT:
            return self._timer(callback, authenticated, record)
        if not authenticated:
            raise Unauthorized(UNAUTHORIZED)  # only a caller with the token learns which routes exist
        if found is None:
            raise self._no_route(request.path)
        route, integration_key = found
        record["route"] = route

        translation = mapping.translate(callback, self.settings.mapping)
        events = translation.events
        summary: dict[str, Any] = {
            "trace_id": trace_id,
            "kind": translation.kind,
            "route": route,
            "events": len(events),
            "filtered": translation.filtered,
            "alert_keys": [event["alert_key"] for event in events[:LISTED_MAX]],
        }
        if len(events) > LISTED_MAX:
            summary["listed"] = LISTED_MAX
        if translation.note:
            summary["note"] = translation.note  # a recognised callback that gives nothing says why
        if translation.over_cap:
            summary["over_cap"] = translation.over_cap  # resources past mapping.RESOURCES_MAX: one event says so
        if self.settings.dry_run:  # a dry run exists to show the translated events
            return Response(200, {**summary, "dry_run": True, "delivered": 0, "translated": events[:LISTED_MAX]})

        assert integration_key is not None  # _route gives a key whenever this is not a dry run
        now = datetime.now(UTC)
        # What this callback sends supersedes older stored events of the same alerts (replay reads it).
        recording = (
            _WRITER.submit(self.store.record_sent, trace_id=trace_id, events=events, now=now) if self.store else None
        )
        reserve = min(STORE_RESERVE_SECONDS, self.settings.deadline_seconds / 2) if self.store else 0.0
        outcomes = flashduty.deliver(
            events,
            push_url=self.settings.push_url,
            integration_key=integration_key,
            deadline=deadline - reserve,
            concurrency=self.settings.concurrency,
            limits=self.settings.limits,
            shuffle=True,
        )
        failed = [o for o in outcomes if not o.delivered]
        summary.update(delivered=len(outcomes) - len(failed), failed=len(failed))
        if recording is not None and (error := _written(recording, deadline)):
            record["record_error"] = error
        if not failed:
            return Response(200, summary)
        summary["failures"] = [
            {"alert_key": o.alert_key, "status": o.status, "error": o.error, "attempts": o.attempts}
            for o in failed[:LISTED_MAX]
        ]
        summary["failures_by_error"] = dict(Counter(o.cause for o in failed).most_common())
        if self.store is not None:
            keeping = _WRITER.submit(
                self.store.keep, trace_id=trace_id, route=route, body=body, failures=failed, now=now
            )
            if error := _written(keeping, deadline):
                record["store_error"] = error
            else:
                # Kept for `python -m replay send`: a retry from Volcengine would add nothing.
                summary["dead_lettered"] = len(failed)
                return Response(202, summary)
        # Not everything reached Flashduty or the store: make Volcengine retry the whole callback.
        # Events already delivered come again identical, and Flashduty discards them.
        message = f"{len(failed)} of {len(events)} events not accepted by Flashduty"
        if self.store is not None:
            message += " nor kept in the dead-letter store"
        return Response(503, {**summary, "error": f"{message}; retry"}, {"Retry-After": "1"})

    def _token_given(self, request: Request) -> bool:
        """Whether the request carries the callback token (or none is set)."""
        given = request.headers.get("token") or request.query.get("token") or ""
        expected = self.settings.callback_token
        return expected is None or _same_token(given, expected)

    def _timer(self, event: Mapping[str, Any], authenticated: bool, record: dict[str, Any]) -> Response:
        """A veFaaS timer trigger's event: a bounded drain of the store, or a reconcile run. Its payload
        carries TIMER_TOKEN, since a timer sends no headers of ours; it is not the callback token, which
        anyone who may read the function's triggers could then use to post alerts:
        {"relay": "drain" | "reconcile", "seconds": N, "token": "..."}."""
        try:
            payload = json.loads(str(event.get("data") or "{}"))
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("relay") not in ("drain", "reconcile"):
            raise BadRequest('a timer event for the relay carries {"relay": "drain"} or {"relay": "reconcile"}')
        timer_token = self.settings.timer_token
        if not (authenticated or (timer_token and _same_token(str(payload.get("token") or ""), timer_token))):
            raise Unauthorized(UNAUTHORIZED)
        seconds = payload.get("seconds")
        # Bounded, whoever asks: no longer than veFaaS lets a request run.
        left = min(float(seconds), TIMER_SECONDS_MAX) if isinstance(seconds, (int, float)) else None
        record["kind"] = f"timer {payload['relay']}"
        if payload["relay"] == "reconcile":
            import reconcile  # deferred: the callback path never needs it

            try:
                return Response(200, reconcile.timer(os.environ, left))
            except reconcile.CannotRun as failure:
                # A failed invocation to the platform, so that its own alarms see the safety net off;
                # something left for the next run (exit 1) is not one.
                return Response(500, {"exit_code": 2, "error": str(failure)})
        import replay

        result = replay.drain(self.settings, left)
        return Response(200, {k: v for k, v in result.items() if k != "message"})

    def _route(self, path: str) -> tuple[str, str | None] | None:
        """The route and integration for a callback URL path (its last segment names a route in
        ROUTES; none names the default), or None when there is none."""
        route = self.settings.route_of(path)
        key = None if route is None else self.settings.integration_key_for(route)
        if route is None or (key is None and not self.settings.dry_run):
            return None
        return route, key

    def _no_route(self, path: str) -> NotFound:
        paths = "/" + ", /".join(sorted(self.settings.routes))
        if name := last_segment(path):
            return NotFound(f"no route named {name!r}: use one of the paths {paths} or /")
        return NotFound(f"no integration for path '/': use one of the paths {paths}")


def _same_token(given: str, expected: str) -> bool:
    """Whether `given` is the token `expected`, byte for byte as each was sent (see _token_bytes)."""
    given_bytes = _token_bytes(given)
    return given_bytes is not None and hmac.compare_digest(given_bytes, _token_bytes(expected) or b"")


def _token_bytes(text: str) -> bytes | None:
    """A token as the bytes it came as: the environment and the adapters (main.py) give bytes that are
    not UTF-8 as surrogate escapes. None for a lone surrogate of another kind (from a JSON payload),
    which no bytes spell, so it matches no token."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def _trace_id(header: str) -> str:
    """Volcengine's trace id as it may appear in a log line and an object name, or a new one."""
    return safe_name(header, TRACE_ID_MAX) or os.urandom(16).hex()  # not uuid: it imports platform


def _store(settings: Settings) -> Store | None:
    """The dead-letter store, when one is set: deadletter is loaded only then (a cold start without
    one never pays for it)."""
    if settings.deadletter is None:
        return None
    from deadletter import Store

    return Store(settings.deadletter)


def _written(write: Future[Any], deadline: float) -> str | None:
    """Why a store write failed or did not finish by the deadline; None once it succeeded."""
    from deadletter import StoreError  # loaded with the store (_store)

    try:
        write.result(timeout=max(0.0, deadline - time.monotonic()))
    except FutureTimeout:
        return "the store did not answer before the deadline"
    except StoreError as exc:
        return str(exc)
    return None


def _decoded(request: Request, deadline: float) -> bytes:
    body = request.body if request.stream is None else _read(request.stream, deadline)
    if not request.base64:
        return body
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error:
        raise BadRequest("body is marked base64-encoded but is not valid base64") from None


def _read(stream: BinaryIO, deadline: float) -> bytes:
    """At most MAX_BODY_BYTES + 1 of the body, or RequestTimeout if it does not arrive by the deadline."""
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        try:
            chunk = stream.read(min(READ_CHUNK, MAX_BODY_BYTES + 1 - size))
        except OSError:  # the server's socket timeout: the client stopped sending
            chunk = None
        if chunk is None or time.monotonic() > deadline:
            raise RequestTimeout(f"body not received within {BODY_READ_SECONDS:g} s")
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"body is larger than {MAX_BODY_BYTES} bytes")
    if not body.strip():
        raise BadRequest("empty body: expected a JSON object from Volcengine Cloud Monitor")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not UTF-8 (bad byte at position {exc.start})") from None
    try:
        callback = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadRequest("body is not usable JSON: nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise BadRequest("body is not usable JSON: a number in it is too long") from None
    if not isinstance(callback, dict):
        raise BadRequest(f"body must be a JSON object, got {_json_type(callback)}")
    return callback


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null")
