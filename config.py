"""Settings, read from the environment once at start and validated.

A bad setting raises ConfigError naming the variable, so the function fails to start with a
message that says what to fix, instead of failing on the first alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import NamedTuple
from urllib.parse import urlsplit

import mapping

DEFAULT_PUSH_URL = "https://api.flashcat.cloud/event/push/alert/standard"
# Volcengine waits 8 s for an answer, then retries the whole callback.
VOLCENGINE_TIMEOUT_SECONDS = 8.0
MAX_CONCURRENCY = 32  # also the size of the delivery connection pool
# Flashduty's documented limits per integration: 100 requests a second and 1,000 a minute.
FLASHDUTY_RATE_LIMIT = 100.0
FLASHDUTY_MINUTE_LIMIT = 1000
# Every variable load() reads (what a deploy copies into the function's environment).
VARIABLES = (
    "FLASHDUTY_INTEGRATION_KEY",
    "ROUTES",
    "FLASHDUTY_PUSH_URL",
    "DRY_RUN",
    "CALLBACK_TOKEN",
    "TIMER_TOKEN",
    "DELIVERY_DEADLINE_SECONDS",
    "DELIVERY_CONCURRENCY",
    "FLASHDUTY_MAX_RPS",
    "FLASHDUTY_MAX_PER_MINUTE",
    "FLASHDUTY_MINUTE_SECONDS",
    "SEVERITY_OVERRIDES",
    "MIN_SEVERITY",
    "DISPLAY_TIMEZONE",
    "EVENT_CLOSING_STATES",
    "EVENT_LIFECYCLE_TYPES",
    "DEADLETTER_URI",
    "DEADLETTER_ENDPOINT_URL",
    "DEADLETTER_ADDRESSING_STYLE",
)
ROUTE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_ROUTE = "default"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


class DeadLetter(NamedTuple):
    """Where undelivered events are kept: an S3-compatible bucket (AWS S3, Volcengine TOS, MinIO)."""

    bucket: str
    prefix: str  # "" or ending in "/"
    endpoint_url: str | None = None
    addressing_style: str = "auto"


class RateLimits(NamedTuple):
    """What one integration may be sent, in any second and in any minute, retries included."""

    per_second: float = FLASHDUTY_RATE_LIMIT
    per_minute: int = FLASHDUTY_MINUTE_LIMIT
    minute_seconds: float = 60.0  # shorter only where tests and benchmarks scale time down


class Settings(NamedTuple):
    integration_key: str | None = None
    routes: Mapping[str, str] = MappingProxyType({})
    push_url: str = DEFAULT_PUSH_URL
    dry_run: bool = True
    callback_token: str | None = None
    timer_token: str | None = None  # what a timer's payload carries: it starts a drain or reconcile, nothing else
    deadline_seconds: float = 6.0
    concurrency: int = 8
    limits: RateLimits = RateLimits()
    mapping: mapping.Options = mapping.DEFAULT_OPTIONS
    deadletter: DeadLetter | None = None

    def route_of(self, path: str) -> str | None:
        """The route a callback URL path names: its last segment when ROUTES has it; DEFAULT_ROUTE for
        '/' (for any path when there are no ROUTES); None for a name ROUTES lacks."""
        name = last_segment(path)
        if name in self.routes:
            return name
        return None if self.routes and name else DEFAULT_ROUTE

    def integration_key_for(self, route: str) -> str | None:
        """The integration key a route (a ROUTES name, or DEFAULT_ROUTE) delivers to."""
        return self.integration_key if route == DEFAULT_ROUTE else self.routes.get(route)

    def __repr__(self) -> str:  # the key and token must never reach a log
        return (
            f"Settings(routes={sorted(self.routes)}, push_url={self.push_url!r}, "
            f"dry_run={self.dry_run}, token={'set' if self.callback_token else 'unset'}, "
            f"deadline_seconds={self.deadline_seconds}, concurrency={self.concurrency}, "
            f"limits={self.limits}, mapping={self.mapping}, deadletter={self.deadletter})"
        )


def last_segment(path: str) -> str:
    """What names a route in a callback URL path: its last segment."""
    return path.rstrip("/").rsplit("/", 1)[-1]


def load(environ: Mapping[str, str]) -> Settings:
    """Build Settings from an environment mapping; raise ConfigError on the first bad value."""
    integration_key = _text(environ, "FLASHDUTY_INTEGRATION_KEY")
    routes = _routes(environ)
    return Settings(
        integration_key=integration_key,
        routes=routes,
        push_url=_push_url(environ),
        dry_run=_flag(environ, "DRY_RUN") or not (integration_key or routes),
        callback_token=_text(environ, "CALLBACK_TOKEN"),
        timer_token=_text(environ, "TIMER_TOKEN"),
        deadline_seconds=_number(environ, "DELIVERY_DEADLINE_SECONDS", 6.0, 0.5, VOLCENGINE_TIMEOUT_SECONDS - 0.5),
        concurrency=int(_number(environ, "DELIVERY_CONCURRENCY", 8, 1, MAX_CONCURRENCY, whole=True)),
        limits=RateLimits(
            per_second=_number(environ, "FLASHDUTY_MAX_RPS", FLASHDUTY_RATE_LIMIT, 0.1, FLASHDUTY_RATE_LIMIT),
            per_minute=int(
                _number(
                    environ, "FLASHDUTY_MAX_PER_MINUTE", FLASHDUTY_MINUTE_LIMIT, 1, FLASHDUTY_MINUTE_LIMIT, whole=True
                )
            ),
            minute_seconds=_number(environ, "FLASHDUTY_MINUTE_SECONDS", 60.0, 1.0, 60.0),
        ),
        mapping=mapping.Options(
            severity_overrides=_severity_overrides(environ),
            min_severity=_min_severity(environ),
            display_zone=_display_zone(environ),
            closing_states=_closing_states(environ),
            lifecycle_types=_lifecycle_types(environ),
        ),
        deadletter=_deadletter(environ),
    )


def _text(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _number(
    environ: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    whole: bool = False,
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name} must be {kind} from {low:g} to {high:g}, got {raw!r}")
    return value


def _push_url(environ: Mapping[str, str]) -> str:
    url = _text(environ, "FLASHDUTY_PUSH_URL") or DEFAULT_PUSH_URL
    if not _is_http_url(url):
        raise ConfigError(
            "FLASHDUTY_PUSH_URL must be an http(s) URL without a query "
            "(the integration key goes in FLASHDUTY_INTEGRATION_KEY or ROUTES)"
        )
    return url


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.query


def _deadletter(environ: Mapping[str, str]) -> DeadLetter | None:
    uri = _text(environ, "DEADLETTER_URI")
    endpoint_url = _text(environ, "DEADLETTER_ENDPOINT_URL")
    style = (_text(environ, "DEADLETTER_ADDRESSING_STYLE") or "auto").lower()
    if uri is None:
        if endpoint_url:
            raise ConfigError("DEADLETTER_ENDPOINT_URL is set but DEADLETTER_URI is not: set s3://bucket/prefix")
        return None
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc or parts.query:
        raise ConfigError(f"DEADLETTER_URI must look like s3://bucket/prefix, got {uri!r}")
    if endpoint_url and not _is_http_url(endpoint_url):
        raise ConfigError(f"DEADLETTER_ENDPOINT_URL must be an http(s) URL, got {endpoint_url!r}")
    if style not in ("auto", "path", "virtual"):
        raise ConfigError(f"DEADLETTER_ADDRESSING_STYLE must be auto, path or virtual, got {style!r}")
    prefix = parts.path.strip("/")
    return DeadLetter(parts.netloc, prefix + "/" if prefix else "", endpoint_url, style)


def _json_object(environ: Mapping[str, str], name: str, example: str) -> dict[str, str]:
    raw = environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        # The value may hold integration keys: never echo it.
        raise ConfigError(f"{name} must be a JSON object of strings, like {example}")
    return dict(value)


def _routes(environ: Mapping[str, str]) -> dict[str, str]:
    routes = _json_object(environ, "ROUTES", '{"team-a": "<integration key>"}')
    for name, key in routes.items():
        if not ROUTE_NAME.match(name) or name == DEFAULT_ROUTE:
            raise ConfigError(
                f"ROUTES: route name {name!r} must be 1-64 letters, digits, '-' or '_' and not {DEFAULT_ROUTE!r}"
            )
        if not key.strip():
            raise ConfigError(f"ROUTES: route {name!r} has an empty integration key")
    return {name: key.strip() for name, key in routes.items()}


def _severity_overrides(environ: Mapping[str, str]) -> dict[str, mapping.Severity]:
    overrides: dict[str, mapping.Severity] = {}
    for level, name in _json_object(environ, "SEVERITY_OVERRIDES", '{"notice": "Warning"}').items():
        severity = next((s for s in mapping.SEVERITY_RANK if s == name), None)
        if severity is None:
            raise ConfigError(
                f"SEVERITY_OVERRIDES: {level!r} maps to {name!r}; use one of {', '.join(mapping.SEVERITY_RANK)}"
            )
        overrides[level.strip().lower()] = severity
    return overrides


def _min_severity(environ: Mapping[str, str]) -> mapping.Severity:
    value = _text(environ, "MIN_SEVERITY") or mapping.INFO
    for severity in mapping.SEVERITY_RANK:
        if value.lower() == severity.lower():
            return severity
    raise ConfigError(f"MIN_SEVERITY must be one of {', '.join(mapping.SEVERITY_RANK)}, got {value!r}")


# Zones without summer time, for runtimes that ship no time zone database (zoneinfo finds nothing).
FIXED_ZONES = {
    "Asia/Shanghai": 8,
    "Asia/Hong_Kong": 8,
    "Asia/Singapore": 8,
    "Asia/Taipei": 8,
    "Asia/Kuala_Lumpur": 8,
    "Asia/Jakarta": 7,
    "Asia/Bangkok": 7,
    "Asia/Tokyo": 9,
    "Asia/Seoul": 9,
    "Asia/Dubai": 4,
    "UTC": 0,
    "Etc/UTC": 0,
}
FIXED_OFFSET = re.compile(r"^(?:UTC|GMT)?([+-])(\d{1,2})(?::?(\d{2}))?$")


def _display_zone(environ: Mapping[str, str]) -> tzinfo:
    """DISPLAY_TIMEZONE: an IANA name (Asia/Shanghai) or a fixed offset (UTC+08:00, +0530)."""
    name = _text(environ, "DISPLAY_TIMEZONE")
    if name is None:
        return mapping.CHINA_STANDARD_TIME
    if offset := FIXED_OFFSET.match(name):
        sign, hours, minutes = offset.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta < timedelta(hours=24):
            return timezone(-delta if sign == "-" else delta)
    else:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # deferred: only a named zone needs it

        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            if name in FIXED_ZONES:
                return timezone(timedelta(hours=FIXED_ZONES[name]))
    raise ConfigError(
        f"DISPLAY_TIMEZONE must be a time zone name such as Asia/Shanghai or an offset such as UTC+08:00, "
        f"got {name!r} (this system's time zone database does not know it: use an offset, or install tzdata)"
    )


def _closing_states(environ: Mapping[str, str]) -> frozenset[str]:
    """EVENT_CLOSING_STATES: the event states that close an Event Center alert, or "none"."""
    value = _text(environ, "EVENT_CLOSING_STATES")
    if value is None:
        return mapping.DEFAULT_CLOSING_STATES
    if value.lower() == "none":
        return frozenset()
    states = frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    if not states or not all(state.isascii() and state.isalpha() for state in states):
        raise ConfigError(
            f"EVENT_CLOSING_STATES must be event states separated by commas (such as Succeeded,Canceled) "
            f"or none, got {value!r}"
        )
    return states


EVENT_TYPE = re.compile(r"^[a-z0-9_.-]+(?::[a-z0-9_.-]+)*$")


def _lifecycle_types(environ: Mapping[str, str]) -> frozenset[str]:
    """EVENT_LIFECYCLE_TYPES: the user's own event types whose ending states close what earlier ones opened."""
    value = _text(environ, "EVENT_LIFECYCLE_TYPES")
    if value is None:
        return frozenset()
    types = frozenset(part.strip().lower() for part in value.split(",") if part.strip())
    if not types or not all(EVENT_TYPE.match(event_type) for event_type in types):
        raise ConfigError(
            "EVENT_LIFECYCLE_TYPES must be event types without their state, separated by commas "
            f"(such as ecs:Instance:MyOperation.Restart), got {value!r}"
        )
    return types
