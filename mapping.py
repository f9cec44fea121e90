"""Translate Volcengine Cloud Monitor callbacks into Flashduty standard alert events.

Pure: no I/O, no clock, no environment. The same callback always gives the same events, byte for
byte, so a Volcengine retry is an identical repeat that Flashduty discards. Every field of the
callback may be missing or of the wrong type; nothing here raises on a JSON object.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, NotRequired, TypedDict

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

EVENT, METRIC, NO_DATA, UNRECOGNISED = "event", "metric", "no_data", "unrecognised"
METRIC_TYPES = frozenset({"Metric", "MetricRecovered", "MetricsNoData", "NoDataRecovered"})
# (list in a metric callback, kind of alert, recovers?) in the order they are translated
RESOURCE_LISTS = (
    ("Resources", METRIC, False),
    ("RecoveredResources", METRIC, True),
    ("NoDataResources", NO_DATA, False),
    ("NoDataRecoveredResources", NO_DATA, True),
)

# Flashduty's documented limits.
TITLE_MAX = 512
DESCRIPTION_MAX = 2048
LABELS_MAX = 50
LABEL_KEY_MAX = 128
LABEL_VALUE_MAX = 2048
LABEL_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RAW_EXCERPT_MAX = 1500
# What one callback may produce. BytePlus documents at most 5,000 resources for an alarm policy that
# names its resources (a policy over "all resources in a region" has no limit): past that, one
# event says how many were not sent. Metrics past METRICS_MAX are counted, not listed.
RESOURCES_MAX = 5000
METRICS_MAX = 20


class Event(TypedDict):
    """A Flashduty standard alert event, with the fields Flashduty documents (limits above).

    Flashduty also takes `images` (links to pictures), which nothing in a Volcengine callback fills.
    """

    title_rule: str
    event_status: EventStatus
    alert_key: NotRequired[str]  # Flashduty requires it for Ok only; the relay always sets it
    description: NotRequired[str]
    labels: NotRequired[dict[str, str]]


@dataclass(frozen=True)
class Options:
    """User choices that change the translation (from config.Settings)."""

    severity_overrides: Mapping[str, Severity] = field(default_factory=dict)  # lower-case level -> severity
    min_severity: Severity = INFO


@dataclass(frozen=True)
class Translation:
    kind: str  # event, metric or unrecognised
    events: list[Event]  # ready to send
    filtered: int = 0  # firing events dropped for being below Options.min_severity
    over_cap: int = 0  # resources past RESOURCES_MAX, not sent (one event says so)


def translate(callback: Mapping[str, Any], options: Options = Options()) -> Translation:
    """Translate one callback body (a parsed JSON object) into Flashduty events."""
    kind_of_callback = _kind(callback)
    over_cap = 0
    if kind_of_callback == EVENT:
        candidates = [_event_center(callback, options)]
    elif kind_of_callback == METRIC:
        candidates, over_cap = _metric_alarms(callback, options)
    else:
        candidates = []
    if not candidates:
        # A format change on Volcengine's side must never silence alerts.
        return Translation(UNRECOGNISED, [_unrecognised(callback)])
    kept = [event for event in candidates if _passes(event, options)]
    filtered = len(candidates) - len(kept)
    if over_cap:
        kept.append(_over_cap(callback, over_cap))
    return Translation(kind_of_callback, kept, filtered=filtered, over_cap=over_cap)


def _kind(callback: Mapping[str, Any]) -> str:
    callback_type = _text(callback.get("Type"))
    if callback_type == "Event":
        return EVENT
    # Parse by the lists, not only by Type: a body can carry several lists at once.
    if callback_type in METRIC_TYPES or any(name in callback for name, _, _ in RESOURCE_LISTS):
        return METRIC
    return UNRECOGNISED


def _passes(event: Event, options: Options) -> bool:
    status = event["event_status"]
    return status == OK or SEVERITY_RANK[status] >= SEVERITY_RANK[options.min_severity]


def severity(level: Any, options: Options = Options()) -> tuple[Severity, bool]:
    """Flashduty severity for a Volcengine level, and whether the level was known."""
    name = _text(level).lower()
    if name in options.severity_overrides:
        return options.severity_overrides[name], True
    if name in LEVELS:
        return LEVELS[name], True
    return UNKNOWN_LEVEL_SEVERITY, False


# Event Center -------------------------------------------------------------------------------


def _event_center(callback: Mapping[str, Any], options: Options) -> Event:
    details, details_text = _details(callback.get("Details"))
    rules = _dicts(callback.get("Rules"))
    # The most severe matched rule decides; the first one wins a tie, so the choice is stable.
    ranked = [(rule, *severity(rule.get("Level"), options)) for rule in rules]
    rule, status, known = max(ranked, key=lambda r: SEVERITY_RANK[r[1]], default=({}, WARNING, False))

    event_type = _text(callback.get("EventType")) or _text(details.get("type"))
    subject = _text(details.get("subject"))
    resource = _text(details.get("volcresourcename")) or subject
    account = _text(callback.get("AccountId")) or _text(details.get("volcaccountid"))
    region = _text(callback.get("Region")) or _text(details.get("volcregion"))
    summary = _event_summary(callback)

    labels = {
        "source": "volcengine",
        "kind": EVENT,
        "account_id": account,
        "region": region,
        "project": _text(callback.get("ProjectName")),
        "resource_id": resource,
        "resource_name": subject if subject != resource else "",
        "rule_id": _text(rule.get("RuleId")),
        "rule_name": _text(rule.get("RuleName")),
        "level": _text(rule.get("Level")).lower(),
        "event_type": event_type,
        "event_source": _text(callback.get("Source")) or _text(details.get("source")),
        "event_id": _text(callback.get("Id")) or _text(details.get("id")),
    }
    if not known:
        labels["unknown_level"] = _text(rule.get("Level")) or "(none)"

    title = " ".join(part for part in (event_type or "Volcengine event", resource and f"on {resource}") if part)
    if summary:
        title = f"{title}: {summary}"
    lines = [
        summary,
        "",
        _field("Event type", event_type),
        _field("Resource", resource),
        _field("Happened at", _epoch_text(callback.get("HappenedAt"))),
        _field("Account / region", " / ".join(filter(None, (account, region)))),
        _field("Matched rules", "; ".join(_rule_text(r) for r in rules)),
        _field("Event id", labels["event_id"]),
        _field("Details", details_text or _details_extras(details)),
        "",
        "Volcengine sends no recovery for events: resolve this alert in Flashduty.",
    ]
    return _event(
        title=title,
        status=status,
        # Repeats of one event type on one resource are one alert.
        key_parts=(EVENT, account, region, event_type, resource),
        lines=lines,
        labels=labels,
    )


def _event_summary(callback: Mapping[str, Any]) -> str:
    # The docs' table says Description, the docs' sample sends DescriptionCN: keep both.
    texts = [_text(callback.get("Description")), _text(callback.get("DescriptionCN"))]
    return " / ".join(dict.fromkeys(t for t in texts if t))


def _details(value: Any) -> tuple[dict[str, Any], str]:
    """Details as an object, and its text when it came as a string that is not an object."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return {}, _text(value)
        return (parsed, "") if isinstance(parsed, dict) else ({}, _text(value))
    return (value, "") if isinstance(value, dict) else ({}, "")


# CloudEvents attributes every Details carries; the rest is what the producing service adds.
_DETAILS_ENVELOPE = frozenset(
    "specversion id source type volcpublishtime volcregion volcaccountid volceventbusname "
    "volcresourcename subject time".split()
)


def _details_extras(details: Mapping[str, Any]) -> str:
    return ", ".join(f"{_text(key)}={_text(value)}" for key, value in details.items() if key not in _DETAILS_ENVELOPE)


def _rule_text(rule: Mapping[str, Any]) -> str:
    name = _text(rule.get("RuleName")) or _text(rule.get("RuleId")) or "?"
    level = _text(rule.get("Level"))
    return f"{name} ({level})" if level else name


# Metric alarms ------------------------------------------------------------------------------


def _metric_alarms(callback: Mapping[str, Any], options: Options) -> tuple[list[Event], int]:
    """One event per distinct resource in each list, up to RESOURCES_MAX; and how many were past it."""
    firing_status, known = severity(callback.get("Level"), options)
    # Callback-wide parts are built once, not once per resource (2,000 tags x 2,000 resources).
    tags = [(f"tag_{_snake(_text(tag.get('Key')))}", _text(tag.get("Value"))) for tag in _dicts(callback.get("Tags"))]
    events: list[Event] = []
    seen: set[tuple[str, str]] = set()
    over_cap = 0
    for list_name, kind, recovers in RESOURCE_LISTS:
        for resource in _dicts(callback.get(list_name)):
            identity = (list_name, _json(resource))
            if identity in seen:
                continue  # a resource listed twice is one alert, not two
            seen.add(identity)
            if len(events) >= RESOURCES_MAX:
                over_cap += 1
                continue
            status: EventStatus
            if recovers:
                status = OK
            elif kind == NO_DATA:
                status = INFO
            else:
                status = firing_status
            events.append(_metric_event(callback, resource, kind, recovers, status, known, tags))
    return events, over_cap


def _over_cap(callback: Mapping[str, Any], count: int) -> Event:
    rule = _text(callback.get("RuleName")) or _text(callback.get("RuleId")) or "a Volcengine alarm policy"
    lines = [
        f"One callback of {rule} listed {count + RESOURCES_MAX} resources; the relay sends alerts for the "
        f"first {RESOURCES_MAX} and not for the other {count}. With a dead-letter store configured, the "
        "raw callback is kept there; narrow the policy's resources, or split it.",
    ]
    return _event(
        title=f"{rule}: {count} more resources alarming than one callback's alerts carry",
        status=WARNING,
        key_parts=(METRIC, "over-cap", _text(callback.get("RuleId")) or rule),
        lines=lines,
        labels={
            "source": "volcengine",
            "kind": METRIC,
            "rule_id": _text(callback.get("RuleId")),
            "over_cap": str(count),
        },
    )


def _metric_event(
    callback: Mapping[str, Any],
    resource: Mapping[str, Any],
    kind: str,
    recovers: bool,
    status: EventStatus,
    level_known: bool,
    tags: list[tuple[str, str]],
) -> Event:
    rule_name = _text(callback.get("RuleName"))
    rule_id = _text(callback.get("RuleId"))
    account = _text(callback.get("AccountId"))
    resource_id = _text(resource.get("Id"))
    resource_name = _text(resource.get("Name"))
    all_metrics = _dicts(resource.get("Metrics"))
    metrics = all_metrics[:METRICS_MAX]
    dimensions = [(_text(d.get("Name")), _text(d.get("Value"))) for d in _dicts(resource.get("Dimensions"))]
    first = metrics[0] if metrics else {}

    labels = {
        "source": "volcengine",
        "kind": kind,
        "callback_type": _text(callback.get("Type")),
        "account_id": account,
        "region": _text(resource.get("Region")),
        "project": _text(resource.get("ProjectName")) or _text(callback.get("Project")),
        "resource_id": resource_id,
        "resource_name": resource_name,
        "rule_id": rule_id,
        "rule_name": rule_name,
        "level": _text(callback.get("Level")).lower(),
        "namespace": _text(callback.get("Namespace")),
        "sub_namespace": _text(callback.get("SubNamespace")),
        "metric_name": ",".join(filter(None, (_text(m.get("Name")) for m in metrics))),
        "metric_value": _text(first.get("CurrentValue")),
        "metric_threshold": _text(first.get("Threshold")),
        "metric_unit": _text(first.get("Unit")),
        "alert_group_id": _text(resource.get("AlertGroupId")),
    }
    if not level_known and not recovers and kind == METRIC:
        labels["unknown_level"] = _text(callback.get("Level")) or "(none)"
    extra_labels = [(f"dim_{_snake(name)}", value) for name, value in dimensions] + tags

    who = _resource_text(resource_name, resource_id)
    headline = f"{rule_name or rule_id or 'Volcengine metric alarm'}: {who}"
    if kind == NO_DATA:
        no_data_metrics = _names(resource.get("NoDataMetrics")) or _names(resource.get("DroppedMetrics"))
        what = ", ".join(no_data_metrics) or labels["metric_name"]
        title = f"{'Data is back' if recovers else 'No data'}: {headline}" + (f" ({what})" if what else "")
    else:
        title = f"{'Recovered: ' if recovers else ''}{headline}"
        if first:
            title += f" {_metric_text(first)}"
            if len(all_metrics) > 1:
                title += f" (+{len(all_metrics) - 1} more)"

    lines = [
        _field("Rule", " ".join(filter(None, (rule_name, rule_id and f"({rule_id})")))),
        _field("Condition", _text(callback.get("RuleCondition"))),
        _field("Resource", ", ".join(filter(None, (who, labels["region"])))),
        *(_field("Metric", _metric_text(m, detailed=True)) for m in metrics),
        _field("More metrics", str(len(all_metrics) - len(metrics)) if len(all_metrics) > len(metrics) else ""),
        _field("Dimensions", ", ".join(f"{n}={v}" for n, v in dimensions)),
        _field("Happened at", _text(callback.get("HappenedAt"))),
        _field("First alert", _epoch_text(resource.get("FirstAlertTime"))),
        _field("Last alert", _epoch_text(resource.get("LastAlertTime"))),
        _field("Namespace", "/".join(filter(None, (labels["namespace"], labels["sub_namespace"])))),
        _field("Account", account),
    ]
    return _event(
        title=title,
        status=status,
        # No level in the key (warning -> critical updates the same alert); no-data alerts have
        # their own kind in the key, so a no-data recovery never closes a threshold alert.
        key_parts=(
            kind,
            account,
            rule_id or rule_name,
            resource_id or resource_name,
            *sorted(f"{n}={v}" for n, v in dimensions),
        ),
        lines=lines,
        labels=labels,
        extra_labels=extra_labels,
    )


def _metric_text(metric: Mapping[str, Any], detailed: bool = False) -> str:
    name = _text(metric.get("Name"))
    meaning = (
        _text(metric.get("Description")) or _text(metric.get("DescriptionCn")) or _text(metric.get("DescriptionEn"))
    )
    value = " ".join(filter(None, (_text(metric.get("CurrentValue")), _text(metric.get("Unit")))))
    threshold = _text(metric.get("Threshold"))
    label = f"{name} ({meaning})" if detailed and meaning and meaning != name else (meaning or name)
    text = f"{label} = {value}" if value else label
    if threshold:
        text += f" (threshold {threshold})"
    return text


def _resource_text(name: str, resource_id: str) -> str:
    if name and resource_id and name != resource_id:
        return f"{name} ({resource_id})"
    return name or resource_id or "unknown resource"


def _names(value: Any) -> list[str]:
    items = value if isinstance(value, list) else []
    return [n for n in (_text(i.get("Name")) if isinstance(i, dict) else _text(i) for i in items) if n]


# Unrecognised -------------------------------------------------------------------------------


def _unrecognised(callback: Mapping[str, Any]) -> Event:
    raw = _json(callback)
    callback_type = _text(callback.get("Type"))
    lines = [
        "The relay did not recognise this callback and forwards it as it came, so that no alert "
        "is lost. Check the relay's version against Volcengine's callback format.",
        "",
        _truncate(raw, RAW_EXCERPT_MAX),
    ]
    return _event(
        title="Unrecognised Volcengine callback" + (f" (Type {callback_type})" if callback_type else ""),
        status=WARNING,
        key_parts=(UNRECOGNISED, raw),
        lines=lines,
        labels={"source": "volcengine", "kind": UNRECOGNISED, "callback_type": callback_type},
    )


# Building events within Flashduty's limits --------------------------------------------------


def _event(
    *,
    title: str,
    status: EventStatus,
    key_parts: Iterable[str],
    lines: Iterable[str | None],
    labels: Mapping[str, str],
    extra_labels: Iterable[tuple[str, str]] = (),
) -> Event:
    return {
        "title_rule": _truncate(title, TITLE_MAX),
        "event_status": status,
        "alert_key": alert_key(*key_parts),
        "description": _truncate("\n".join(_squeeze(lines)), DESCRIPTION_MAX),
        "labels": _labels(labels, extra_labels),
    }


def alert_key(*parts: str) -> str:
    """A stable key of at most 255 characters identifying one alert."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"volc-{parts[0]}-{digest[:40]}"


def _labels(core: Mapping[str, str], extra: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Non-empty labels within Flashduty's limits; the core ones first, the first of a key wins."""
    labels: dict[str, str] = {}
    dropped = 0
    for key, value in [*core.items(), *extra]:
        key = key[:LABEL_KEY_MAX]
        if not value or key in labels:
            continue
        if len(labels) >= LABELS_MAX - 1:
            dropped += 1
            continue
        labels[key] = _truncate(value, LABEL_VALUE_MAX)
    if dropped:
        labels["labels_dropped"] = str(dropped)
    return labels


def _snake(name: str) -> str:
    """A label-safe snake_case form of a Volcengine name; a hash where nothing of it is safe."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    snake = re.sub(r"[^A-Za-z0-9]+", "_", snake).strip("_").lower()
    return snake or "x" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _field(name: str, value: str) -> str | None:
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


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
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
    return _json(value)


def _json(value: Any) -> str:
    try:
        return _utf8(json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
    except (ValueError, RecursionError):  # nested deeper than the encoder goes
        return "(nested too deeply to show)"


def _utf8(text: str) -> str:
    """JSON may escape a lone surrogate (\\ud800) that no UTF-8 body can carry: replace it."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def _epoch_text(value: Any) -> str:
    """Epoch seconds as a UTC time; anything else as it came."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            pass
    return _text(value)
