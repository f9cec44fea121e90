"""Logging: one JSON object a line, and nothing secret in any record, whichever library writes it.

The integration key travels in the push URL's query and the callback token may come in the callback
URL's or its Token header; urllib3 (on retries, connection errors, malformed answers), web servers
(request lines, malformed header lines) and tracebacks all print them. A record factory redacts them
from every record's message and exception text as it is created, so no logger, handler or formatter
can print them.

Every line (the relay's, urllib3's retries, gunicorn's) is a JSON object with `time` (UTC),
`level`, `logger` and, while a callback is handled, its `trace_id`; a message that is itself a JSON
object (the relay's one line per callback) gives its fields at the top level.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from typing import Any

# The callback being handled, on its thread and on the delivery threads that work for it.
TRACE_ID: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")

_SECRET = re.compile(r"((?:integration_key|app_key|token)=)[^&\s'\"\\]+", re.IGNORECASE)
# gunicorn's warning about a malformed header line quotes the line (with no colon, all of it: `Token
# <token>`): only what may be its name is kept.
_HEADER_LINE = re.compile(r"(Invalid HTTP header(?: name)?: (['\"])[A-Za-z0-9-]*+)(?!\2).*(?=\2)", re.IGNORECASE)


def safe_name(text: str, limit: int = 64) -> str:
    """Text as it may stand in a log line or an object name: letters, digits and '-', at most `limit`."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", text)[:limit].strip("-")


def redact(text: str) -> str:
    return _HEADER_LINE.sub(r"\1 <redacted>", _SECRET.sub(r"\1<redacted>", text))


def install() -> None:
    """Make every log record of the process redacted (once, however often it is called)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call's record: left for the handler to report, as logging does
            return record
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if trace_id := TRACE_ID.get():
            line["trace_id"] = trace_id
        message = record.getMessage()
        fields = _object(message)
        line.update(fields if fields is not None else {"message": message})
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def _object(message: str) -> dict[str, Any] | None:
    if not message.startswith("{"):
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def configure(level: int = logging.INFO) -> None:
    """JSON lines on stderr, once. On AWS Lambda the runtime's own handlers get the JSON format
    instead (a second handler would print every line twice)."""
    install()
    root = logging.getLogger()
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") and root.handlers:
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
        return
    if not any(isinstance(handler, _StderrHandler) for handler in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        if root.level > level or root.level == logging.NOTSET:
            root.setLevel(level)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to sys.stderr as it is at each line, like logging.lastResort (a test runner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass
