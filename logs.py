"""Logging: nothing secret in any record, whichever library writes it.

The integration key travels in the push URL's query and the callback token may come in the callback
URL's; urllib3 (on retries, connection errors, malformed answers), web servers (request lines) and
tracebacks all print URLs. A record factory redacts both from every record's message and exception
text as it is created, so no logger, handler or formatter can print them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_SECRET = re.compile(r"((?:integration_key|token)=)[^&\s'\"\\]+", re.IGNORECASE)


def redact(text: str) -> str:
    return _SECRET.sub(r"\1<redacted>", text)


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
