"""Which of the relay's Event Center rules would have sent an event, and the callback they would have
sent: reconcile's reading of ListEventRules' rules and ListEvents' events, so that a lost Event
Center callback is sent as the relay would have sent it (same alert key, level, title).

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

from event_fields import as_text

# FilterPattern: Volcengine's providers show `{source, types}` (Terraform's event_rule resource); a
# pattern naming anything else (the CC provider's `Data` conditions on an event's fields) says more
# than the relay can evaluate exactly, and is never guessed at.
PATTERN_SOURCE = frozenset({"source"})
PATTERN_TYPES = frozenset({"types", "type"})
# EffectStartAt/EffectEndAt ("HH:MM", the hours a rule sends) name no zone: the console's (UTC+8)
# and UTC are both read, and an event inside one and outside the other is not judged.
ZONES = (timezone(timedelta(hours=8)), UTC)
ALL_DAY = ("00:00", "23:59")
ENABLED = "enable"


class Match(NamedTuple):
    """The rules that would have sent an event, and why any other that may have is not judged."""

    rules: list[dict[str, Any]]
    unsure: list[str]


def matching(event: Mapping[str, Any], rules: Sequence[Mapping[str, Any]], happened: datetime) -> Match:
    """Of these rules (each as ListEventRules gives it), those that would have sent this event (as
    ListEvents gives it, which happened then): enabled, of its source, its type in both the rule's
    EventType and its FilterPattern's types (where it names some), the pattern met, and the rule's
    hours holding the event's time under every reading of their zone."""
    matched: list[dict[str, Any]] = []
    unsure: list[str] = []
    source, event_type = as_text(event.get("Source")).lower(), as_text(event.get("EventType")).lower()
    for rule in rules:
        if as_text(rule.get("EnableState")).lower() != ENABLED or as_text(rule.get("Source")).lower() != source:
            continue
        listed = event_type in {as_text(t).lower() for t in rule.get("EventType") or []}
        met = _pattern(rule.get("FilterPattern"), source, event_type)
        hours = _within_hours(rule, happened)
        name = f"event rule {as_text(rule.get('RuleName'))!r} ({as_text(rule.get('RuleId'))})"
        if (not listed and met is not True) or hours is False:
            continue  # the rule does not send it: left alone
        if met is None:
            unsure.append(f"{name}: its FilterPattern has conditions reconcile cannot evaluate")
        elif listed != met:  # which of the two Volcengine sends by is not documented
            unsure.append(f"{name}: its EventType and its FilterPattern disagree on this event's type")
        elif hours is None:
            unsure.append(f"{name}: its effective hours hold the event's time in one zone, not the other")
        else:
            matched.append(dict(rule))
    return Match(matched, unsure)


def types(rule: Mapping[str, Any]) -> set[str]:
    """The event types a rule may send: its EventType's and its FilterPattern's (they may disagree)."""
    named = {as_text(t) for t in rule.get("EventType") or []}
    pattern = rule.get("FilterPattern")
    if isinstance(pattern, dict):
        for key, value in pattern.items():
            if as_text(key).lower() in PATTERN_TYPES and isinstance(value, list):
                named |= {as_text(t) for t in value}
    return named - {""}


def callback(event: Mapping[str, Any], rules: Sequence[Mapping[str, Any]], happened: datetime) -> dict[str, Any]:
    """The Event Center callback (Type Event) these rules would have sent for this event."""
    detail = _object(event.get("Detail"))
    return {
        "Type": "Event",
        "Id": as_text(event.get("ID")),
        "Source": as_text(event.get("Source")),
        "EventType": as_text(event.get("EventType")),
        "Region": as_text(event.get("Region")),
        "AccountId": as_text(detail.get("volcaccountid")) or as_text(rules[0].get("AccountId") if rules else ""),
        "HappenedAt": int(happened.timestamp()),
        "Details": event.get("Detail"),  # as it came: the callback's translation reads an object or its text
        "Rules": [{"RuleId": r.get("RuleId"), "RuleName": r.get("RuleName"), "Level": r.get("Level")} for r in rules],
    }


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


def _pattern(pattern: Any, source: str, event_type: str) -> bool | None:
    """Whether a FilterPattern lets the event through; None where it says what cannot be evaluated. A
    key that holds nothing (empty, null) sets no condition."""
    if pattern in (None, {}, ""):
        return True
    if not isinstance(pattern, dict):
        return None
    met = True
    for key, value in pattern.items():
        if value in (None, {}, [], ""):
            continue
        name = as_text(key).lower()
        values = {as_text(v).lower() for v in (value if isinstance(value, list) else [value])}
        if name in PATTERN_SOURCE:
            met = met and source in values
        elif name in PATTERN_TYPES:
            met = met and event_type in values
        else:
            return None
    return met


def _within_hours(rule: Mapping[str, Any], happened: datetime) -> bool | None:
    """Whether the rule's hours hold the event's time: True or False under every reading of their
    zone, None where the readings disagree or cannot be made."""
    start, end = as_text(rule.get("EffectStartAt")) or ALL_DAY[0], as_text(rule.get("EffectEndAt")) or ALL_DAY[1]
    if (start, end) == ALL_DAY:
        return True
    try:
        first, last = _minutes(start), _minutes(end)
    except ValueError:
        return None
    readings = set()
    for zone in ZONES:
        local = happened.astimezone(zone)
        minute = local.hour * 60 + local.minute
        readings.add(first <= minute <= last if first <= last else minute >= first or minute <= last)
    return readings.pop() if len(readings) == 1 else None


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value < 24 * 60:
        raise ValueError(text)
    return value
