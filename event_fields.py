"""The parts of a Flashduty event that every kind of callback builds alike: the event itself and its
severities, the user's options, keys and labels within Flashduty's limits, and fields as text.

Pure: no I/O, no clock, no environment. Every value may be missing, null or of the wrong type; nothing
here raises on what a JSON object holds. The underscored helpers are the translation's own, shared by
mapping.py, event_center.py, metric_alarms.py and alert_groups.py; the relay's other modules take the
event, severities and options from mapping.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, NotRequired, TypedDict

Severity = Literal["Critical", "Warning", "Info"]
EventStatus = Literal["Critical", "Warning", "Info", "Ok"]  # Ok closes the alert
CRITICAL: Final = "Critical"
WARNING: Final = "Warning"
INFO: Final = "Info"
OK: Final = "Ok"
SEVERITY_RANK: dict[Severity, int] = {INFO: 0, WARNING: 1, CRITICAL: 2}
# The seed document's table; levels arrive in either case.
LEVELS: dict[str, Severity] = {"critical": CRITICAL, "warning": WARNING, "notice": INFO}
UNKNOWN_LEVEL_SEVERITY: Severity = WARNING
# Failed ends an Event Center lifecycle too, but the operation did not happen and the problem it was
# for is still there: it stays open for a person unless EVENT_CLOSING_STATES says otherwise.
DEFAULT_CLOSING_STATES = frozenset({"succeeded", "completed", "rejected", "canceled"})
# Volcengine's consoles in mainland China show times in China Standard Time, which has no DST.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8))

# Flashduty's documented limits.
TITLE_MAX = 512
DESCRIPTION_MAX = 2048
LABELS_MAX = 50
LABEL_KEY_MAX = 128
LABEL_VALUE_MAX = 2048
LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class Event(TypedDict):
    """A Flashduty standard alert event, with the fields Flashduty documents (limits above).

    Flashduty also takes `images` (links to pictures), which nothing in a Volcengine callback fills.
    """

    title_rule: str
    event_status: EventStatus
    alert_key: NotRequired[str]  # Flashduty requires it for Ok only; the relay always sets it
    description: NotRequired[str]
    labels: NotRequired[dict[str, str]]


class Options(NamedTuple):
    """User choices that change the translation (from config.Settings)."""

    severity_overrides: Mapping[str, Severity] = MappingProxyType({})  # lower-case level -> severity
    min_severity: Severity = INFO
    display_zone: tzinfo = CHINA_STANDARD_TIME  # every time in titles and descriptions
    closing_states: frozenset[str] = DEFAULT_CLOSING_STATES  # lower-case event states that close the alert
    # Lower-case event types (without state) the user marks as lifecycles, beside EVENT_CATALOG's.
    lifecycle_types: frozenset[str] = frozenset()


DEFAULT_OPTIONS = Options()


class Candidate(NamedTuple):
    """An event one kind of callback gives, and whether MIN_SEVERITY may drop it."""

    event: Event
    filterable: bool  # False for recoveries and unknown levels: MIN_SEVERITY never drops those


def severity(level: Any, options: Options = DEFAULT_OPTIONS) -> tuple[Severity, bool]:
    """Flashduty severity for a Volcengine level, and whether the level was known."""
    name = as_text(level).lower()
    if name in options.severity_overrides:
        return options.severity_overrides[name], True
    if name in LEVELS:
        return LEVELS[name], True
    return UNKNOWN_LEVEL_SEVERITY, False


# Building events within Flashduty's limits --------------------------------------------------


def make_event(
    *,
    title: str,
    status: EventStatus,
    key_parts: Iterable[str],
    lines: Iterable[str | None],
    labels: Mapping[str, str],
    extra_labels: Iterable[tuple[str, str]] = (),
) -> Event:
    return {
        "title_rule": truncate(title, TITLE_MAX),
        "event_status": status,
        "alert_key": alert_key(*key_parts),
        "description": truncate("\n".join(_squeeze(lines)), DESCRIPTION_MAX),
        "labels": _labels(labels, extra_labels),
    }


def alert_key(*parts: str) -> str:
    """A stable key of at most 255 characters identifying one alert."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"volc-{parts[0]}-{digest[:40]}"


# Flashduty's field reference fixes an alert's severity when it opens (its incident page says the
# highest of its events): so each severity a problem reaches is an alert of its own, and a change of
# level opens the alert of the new one, paged at its severity under either reading.
ALERT_SEVERITIES: tuple[Severity, ...] = (CRITICAL, WARNING, INFO)


def on_its_alerts(
    *,
    title: str,
    status: EventStatus,
    identities: Sequence[tuple[str, ...]],
    lines: Iterable[str | None],
    labels: Mapping[str, str],
    extra_labels: Iterable[tuple[str, str]] = (),
) -> list[Event]:
    """A firing on the alert of its severity and identity (the first); an Ok on the alert of every
    severity and identity it may have opened, as nothing in a recovery says which levels its problem
    reached (its Level may be the last, the policy's, or `recovery`). An Ok where no alert is open
    opens nothing."""
    first = make_event(
        title=title,
        status=status,
        key_parts=(*identities[0], ALERT_SEVERITIES[0] if status == OK else status),
        lines=lines,
        labels=labels,
        extra_labels=extra_labels,
    )
    if status != OK:
        return [first]
    events = [first]
    for key in [alert_key(*identity, level) for identity in identities for level in ALERT_SEVERITIES][1:]:
        closing: Event = {**first, "alert_key": key}
        events.append(closing)
    return events


def _labels(core: Mapping[str, str], extra: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Non-empty labels within Flashduty's limits, the core ones first.

    Extra names that collide (tags `Env` and `env`, `team.name` and `team_name`) keep every value:
    the second is `tag_env_2`, in sorted order so that the same callback always labels alike.
    """
    labels: dict[str, str] = {}
    dropped = 0
    for key, value in [*core.items(), *sorted(extra)]:
        if not value:
            continue
        key = key[: LABEL_KEY_MAX - 4]
        if labels.get(key) == value:
            continue  # the same value under the same name once is enough
        name, number = key, 1
        while name in labels:
            number += 1
            name = f"{key}_{number}"
        if len(labels) >= LABELS_MAX - 2:  # room for labels_dropped, and the delivery's flashduty.STAMP_LABEL
            dropped += 1
            continue
        labels[name] = truncate(value, LABEL_VALUE_MAX)
    if dropped:
        labels["labels_dropped"] = str(dropped)
    return labels


def snake(name: str) -> str:
    """A label-safe snake_case form of a Volcengine name; a hash where nothing of it is safe."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    words = re.sub(r"[^A-Za-z0-9]+", "_", words).strip("_").lower()
    return words or "x" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def field_line(name: str, value: str) -> str | None:
    return f"{name}: {value}" if value else None


def _squeeze(lines: Iterable[str | None]) -> list[str]:
    """Drop empty fields (None) and keep one blank line ("") between paragraphs."""
    kept: list[str] = []
    for line in lines:
        if line or (line == "" and kept and kept[-1]):
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    return kept


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_dicts(value: Any) -> list[dict[str, Any]]:
    """A documented list of objects, whether it came as a list, one object, null or nothing."""
    if isinstance(value, dict):
        return [value] if value else []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_text(value: Any) -> str:
    """A field as text: numbers without a trailing .0, structures as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _utf8(value.strip())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    return compact_json(value)


def compact_json(value: Any) -> str:
    try:
        return _utf8(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
    except (ValueError, RecursionError):  # nested deeper than the encoder goes
        return "(nested too deeply to show)"


def _utf8(text: str) -> str:
    """JSON may escape a lone surrogate (\\ud800) that no UTF-8 body can carry: replace it."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


# Metric callbacks write `2024-04-11 14:51:01(UTC+08:00)`; events and resources send epoch seconds.
_WRITTEN_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})\s*\(?\s*(UTC|GMT|Z)?\s*(?:([+-])(\d{1,2}):?(\d{2})?)?\s*\)?$"
)


def time_text(value: Any, zone: tzinfo) -> str:
    """A time in the display zone with its offset shown; anything unreadable as it came."""
    moment: datetime | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= 1e11 else value  # milliseconds, where a source sends them
        try:
            moment = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            moment = None
    elif isinstance(value, str) and (written := _WRITTEN_TIME.match(value.strip())):
        date, clock, utc, sign, hours, minutes = written.groups()
        if not (utc or sign):
            return as_text(value)  # no zone written: only the sender knows which it meant
        offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0)) * (-1 if sign == "-" else 1)
        try:
            moment = datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=timezone(offset))
        except ValueError:
            moment = None
    if moment is None:
        return as_text(value)
    try:
        local = moment.astimezone(zone)
    except (OverflowError, ValueError):
        return as_text(value)
    offset_text = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} (UTC{offset_text[:3]}:{offset_text[3:]})"


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN compares with nothing
