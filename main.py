"""Entry points: the functions-framework HTTP target `relay` and the event-function `handler`.

Each only turns its platform's request into a callback.Request and the answer back. Importing this
module loads neither flask nor functions_framework nor boto3, so an event function starts cold fast.
"""

from __future__ import annotations

import os
from typing import Any

import config
import logs
from callback import Relay, Request

logs.configure()
_relay = Relay(config.load(os.environ))


def relay(request: Any) -> Any:
    """functions-framework target (`--target=relay`): every path and method arrives here."""
    answer = _relay.handle(
        Request(
            method=request.method,
            path=request.path,
            headers={name.lower(): _header_text(value) for name, value in request.headers.items()},
            query=request.args.to_dict(),
            body=b"",
            stream=request.stream,
        )
    )
    headers = {**answer.headers, "Content-Type": "application/json"}
    if 400 <= answer.status < 500:
        # Refused, perhaps before the body was read (a wrong token, a stalled client): answer now.
        # functions-framework reads the whole request before any answer that is not streamed. The
        # connection closes too, or the server would read the unread body to keep it alive, holding
        # a thread for as long as the client trickles it (gunicorn.conf.py honours this header).
        from flask import Response  # already loaded: functions-framework runs this target

        return Response(iter([answer.json()]), answer.status, {**headers, "Connection": "close"})
    return answer.json(), answer.status, headers


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Event-function entry: veFaaS API-gateway events and AWS Lambda (REST v1, HTTP API v2, URL)."""
    answer = _relay.handle(_event_request(event))
    return {
        "statusCode": answer.status,
        "headers": {**answer.headers, "Content-Type": "application/json"},
        "body": answer.json(),
    }


def drain(event: Any = None, context: Any = None) -> dict[str, Any]:
    """Timer entry (veFaaS timer trigger, AWS EventBridge schedule): a bounded drain of the store."""
    import replay  # deferred: the callback path never needs it

    remaining = getattr(context, "get_remaining_time_in_millis", None)  # AWS Lambda says how long is left
    return replay.drain(_relay.settings, remaining() / 1000 if callable(remaining) else None)


def reconcile(event: Any = None, context: Any = None) -> dict[str, Any]:
    """Timer entry (every 5 minutes): send what Cloud Monitor's alarm history has and the relay never had.
    Raises reconcile.CannotRun when it cannot run: the platform counts an error."""
    import reconcile as reconciler  # deferred: the callback path never needs it

    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return reconciler.timer(os.environ, remaining() / 1000 if callable(remaining) else None)


def _event_request(event: Any) -> Request:
    event = _mapping(event)
    http = _mapping(_mapping(event.get("requestContext")).get("http"))  # HTTP API v2, function URLs
    body = event.get("body")
    return Request(
        method=str(event.get("httpMethod") or http.get("method") or "").upper(),
        path=str(event.get("rawPath") or event.get("path") or http.get("path") or "/"),
        headers={str(k).lower(): str(v) for k, v in _mapping(event.get("headers")).items()},
        query={str(k): str(v) for k, v in _mapping(event.get("queryStringParameters")).items()},
        body=body.encode("utf-8", "surrogatepass") if isinstance(body, str) else b"",
        base64=bool(event.get("isBase64Encoded")),
    )


def _header_text(value: str) -> str:
    """A header as the text its bytes spell: WSGI hands each byte over as one Latin-1 character, so a
    UTF-8 token in the Token header would not equal the same token in the query (bytes that are not
    UTF-8 become surrogate escapes, which callback.Relay compares as the bytes they were)."""
    try:
        return value.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # not from a WSGI server: already text
        return value


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
