"""Translate Volcengine Cloud Monitor callbacks into Flashduty standard alert events.

Pure: no I/O, no clock, no environment. The same callback always gives the same events, byte for
byte, so a Volcengine retry is an identical repeat that Flashduty discards. Every field of the
callback may be missing, null, a single object where a list is documented, or of the wrong type;
nothing here raises on a JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import event_center
import metric_alarms
from event_center import EVENT

# The event, severities and options live below the callback kinds, which build with them (here they
# would make an import cycle); this module names them as the translation's entry.
from event_fields import (
    CHINA_STANDARD_TIME,
    CRITICAL,
    DEFAULT_CLOSING_STATES,
    DEFAULT_OPTIONS,
    INFO,
    LEVELS,
    OK,
    SEVERITY_RANK,
    TITLE_MAX,
    WARNING,
    Candidate,
    Event,
    Options,
    Severity,
    as_dicts,
    as_text,
    compact_json,
    make_event,
    severity,
    truncate,
)
from metric_alarms import METRIC, METRIC_TYPES, NO_DATA, RESOURCE_LISTS, RESOURCES_MAX

# What the relay's other modules use of the translation. The callback kinds live in event_center.py
# and metric_alarms.py, what they share in event_fields.py, reconcile's alarm history in alert_groups.py.
__all__ = [
    "translate",
    "Translation",
    "RESOURCES_MAX",  # what Translation.over_cap counts past
    "severity",
    "LEVELS",
    "Severity",
    "SEVERITY_RANK",
    "CRITICAL",
    "WARNING",
    "INFO",
    "OK",
    "Event",
    "Options",
    "DEFAULT_OPTIONS",
    "CHINA_STANDARD_TIME",
    "DEFAULT_CLOSING_STATES",
    "EVENT",
    "METRIC",
    "NO_DATA",
    "UNRECOGNISED",
    "WIRING_TEST",
]

UNRECOGNISED = "unrecognised"
# `python -m deploy test` marks its callbacks with this field (no Volcengine callback has it): their
# events say TEST, carry `test=true` and are never filtered, so the wiring test pages nobody.
WIRING_TEST = "RelayWiringTest"
RAW_EXCERPT_MAX = 1500  # of an unrecognised callback, in its event's description


class Translation(NamedTuple):
    kind: str  # event, metric or unrecognised
    events: list[Event]  # ready to send
    filtered: int = 0  # firing events dropped for being below Options.min_severity
    over_cap: int = 0  # resources past RESOURCES_MAX, not sent (one event says so)
    note: str = ""  # why a recognised callback gave no event at all


def translate(callback: Mapping[str, Any], options: Options = DEFAULT_OPTIONS) -> Translation:
    """Translate one callback body (a parsed JSON object) into Flashduty events."""
    kind_of_callback = _kind(callback)
    over_cap = 0
    if kind_of_callback == EVENT:
        candidates = event_center.candidates(callback, options)
    elif kind_of_callback == METRIC:
        candidates, over_cap = metric_alarms.candidates(callback, options)
        if not candidates:
            # A known Type that lists no resource: paging someone about it would be noise.
            note = f"the {as_text(callback.get('Type'))} callback lists no resources: nothing to send"
            return Translation(METRIC, [], note=note)
    else:
        # A format change on Volcengine's side must never silence alerts.
        return Translation(UNRECOGNISED, [_unrecognised(callback)])
    if callback.get(WIRING_TEST) is True:
        candidates = [Candidate(_wiring_test(c.event), filterable=False) for c in candidates]
    kept = [c.event for c in candidates if not c.filterable or _passes(c.event, options)]
    filtered = len(candidates) - len(kept)
    if over_cap:
        kept.append(metric_alarms.over_cap_event(callback, over_cap))
    return Translation(kind_of_callback, kept, filtered=filtered, over_cap=over_cap)


def _wiring_test(event: Event) -> Event:
    labels = {"test": "true", **event.get("labels", {})}
    return {
        **event,
        "title_rule": truncate(f"[TEST, no action needed] {event['title_rule']}", TITLE_MAX),
        "labels": labels,
    }


def _kind(callback: Mapping[str, Any]) -> str:
    callback_type = as_text(callback.get("Type"))
    if callback_type == "Event":
        return EVENT
    # Parse by the lists, not only by Type: a body can carry several lists at once.
    if callback_type in METRIC_TYPES or any(as_dicts(callback.get(name)) for name, *_ in RESOURCE_LISTS):
        return METRIC
    return UNRECOGNISED


def _passes(event: Event, options: Options) -> bool:
    status = event["event_status"]
    return status == OK or SEVERITY_RANK[status] >= SEVERITY_RANK[options.min_severity]


def _unrecognised(callback: Mapping[str, Any]) -> Event:
    raw = compact_json(callback)
    callback_type = as_text(callback.get("Type"))
    lines = [
        "The relay did not recognise this callback and forwards it as it came, so that no alert "
        "is lost. Check the relay's version against Volcengine's callback format.",
        "",
        truncate(raw, RAW_EXCERPT_MAX),
    ]
    return make_event(
        title="Unrecognised Volcengine callback" + (f" (Type {callback_type})" if callback_type else ""),
        status=WARNING,
        key_parts=(UNRECOGNISED, raw),
        lines=lines,
        labels={"source": "volcengine", "kind": UNRECOGNISED, "callback_type": callback_type},
    )
