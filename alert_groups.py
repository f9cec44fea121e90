"""Reconcile's translation of Cloud Monitor's alarm history: a ListAlertGroup entry as the metric
callbacks it stands for (its start, and its end once it ended), the events the relay would have sent
for them, and the Ok that closes an alert whose alarm is no longer on.

Pure: no I/O, no clock, no environment. It translates through mapping.translate, so it sits above
mapping: reconcile imports it, the translation never does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import event_center
from event_fields import (
    DEFAULT_OPTIONS,
    DESCRIPTION_MAX,
    OK,
    TITLE_MAX,
    Event,
    Options,
    as_dicts,
    as_number,
    as_text,
    truncate,
)
from mapping import translate
from metric_alarms import METRIC, NO_DATA, RECOVERY_TYPES, RESOURCE_LISTS, key_before_levels

# The values of AlertState and AlertType are not documented: these are the spellings taken to mean an
# alarm that is still on, and one that ended. Any other state is told by EndAt.
ALERTING_STATES = frozenset({"alerting", "alarm", "alarming", "firing", "triggered", "active", "unrecovered"})
# AlertType's letters (any case, separators dropped) taken to mean a threshold alarm; any with
# `nodata` in them mean a no-data one.
THRESHOLD_TYPES = frozenset({"", "threshold", "metric", "metrics", "static"})
RECOVERED_STATES = frozenset({"recovered", "ok", "resolved", "normal", "closed", "restored", "recovery"})
RECONCILED_NOTE = (
    "Sent by reconcile, from Cloud Monitor's alarm history: the callback of this change did not reach the relay."
)


class AlertGroup(NamedTuple):
    """One ListAlertGroup entry as the relay reads it: the callbacks it stands for, and their times."""

    firing: dict[str, Any]  # the callback of its start
    recovery: dict[str, Any]  # the callback of its end: sent once it ended; its Oks name every key it may have
    started_at: datetime
    ended_at: datetime | None  # None while it is on
    key_before_levels: str  # the key 0.3's relay gave its alert


def alert_group(group: Mapping[str, Any], policy: Mapping[str, Any] | None = None) -> AlertGroup:
    """The metric callbacks Volcengine would have sent for an alert group: its start, and its end.

    `policy` is its alarm policy as ListRules gives it: the project and tags a callback carries.
    Raises ValueError when StartAt (or a given EndAt) is not a time (an alarm is never placed "now"),
    or its AlertType is one it does not know.
    A state that says it is on wins over an EndAt (what EndAt holds while an alarm is on is not
    documented); any other state is told by EndAt.
    """
    state = as_text(group.get("AlertState")).lower()
    started, ended = moment(group.get("StartAt")), moment(group.get("EndAt"))
    if started is None:
        raise ValueError(f"alarm {as_text(group.get('Id'))!r} has no StartAt")
    recovered = state in RECOVERED_STATES or (state not in ALERTING_STATES and ended is not None)
    if recovered and ended is None:
        ended = started  # it says it ended, not when: no later than anything since it started
    no_data = _no_data(group.get("AlertType"))
    pairs = _dimension_pairs(group.get("Dimension"))
    resource_id, resource_name = as_text(group.get("ResourceId")), as_text(group.get("ResourceName"))
    rule_id, rule_name = as_text(group.get("RuleId")), as_text(group.get("RuleName"))
    resource = {
        "Id": resource_id,
        "Name": resource_name,
        "Region": as_text(group.get("Region")),
        "AlertGroupId": as_text(group.get("Id")),
        "Dimensions": [{"Name": name, "Value": value} for name, value in pairs],
    }
    policy = policy or {}
    rule = {
        "RuleId": rule_id,
        "RuleName": rule_name,
        "Level": as_text(group.get("Level")),
        "Namespace": as_text(group.get("Namespace")),
        "SubNamespace": as_text(group.get("SubNamespace")),
        "RuleCondition": as_text(group.get("RuleTriggerCondition")),
        "Project": as_text(policy.get("ProjectName")),
        "Tags": policy.get("Tags") or [],
    }

    def callback(recovers: bool, at: datetime | None) -> dict[str, Any]:
        list_name, callback_type, *_ = RESOURCE_LISTS[2 * no_data + recovers]
        happened = int(at.timestamp()) if at else None
        return {"Type": callback_type, **rule, "HappenedAt": happened, list_name: [resource]}

    siblings = [(name, value) for name, value in pairs if value and value != resource_id]
    before = key_before_levels(
        NO_DATA if no_data else METRIC, rule_id or rule_name, resource_id or resource_name, siblings
    )
    return AlertGroup(callback(False, started), callback(True, ended), started, ended if recovered else None, before)


def reconciled(callback: Mapping[str, Any], options: Options = DEFAULT_OPTIONS) -> list[Event]:
    """The events the relay would have sent for this callback of an alert group (the same alert keys),
    marked as reconciled; none when MIN_SEVERITY would have dropped them."""
    return [
        {
            **event,
            "description": truncate(f"{RECONCILED_NOTE}\n{event.get('description', '')}", DESCRIPTION_MAX),
            "labels": {**event.get("labels", {}), "reconciled": "true"},
        }
        for event in translate(callback, options).events
    ]


CLOSING_NOTE = (
    "Sent by reconcile: Cloud Monitor has no alarm of this alert on, and its recovery did not reach Flashduty."
)


def closing(alert_key: str, title: str, labels: Mapping[str, str]) -> Event:
    """The Ok that closes an alert Flashduty holds open for a metric alarm Cloud Monitor no longer has
    on, when the alarm itself is not in the history read: made of what the alert carries."""
    callback_type = RECOVERY_TYPES.get(labels.get("kind", METRIC), RECOVERY_TYPES[METRIC])
    headline = title.removeprefix("Recovered: ")
    return {
        "title_rule": truncate(f"Recovered: {headline}", TITLE_MAX),
        "event_status": OK,
        "alert_key": alert_key,
        "description": CLOSING_NOTE,
        "labels": {**labels, "callback_type": callback_type, "reconciled": "true"},
    }


def recovered_by_event(labels: Mapping[str, str]) -> bool:
    """Whether an alert's labels are those of a recovery event: Flashduty gives an alert the labels of
    its last event, so an alert a person closed keeps its firing's. An Event Center alert's recovery
    is its lifecycle's ending (an incident's `Succeeded` is the incident, never its recovery)."""
    if labels.get("kind") == event_center.EVENT:
        return event_center.is_ending(labels.get("event_type", ""), DEFAULT_OPTIONS)
    return labels.get("callback_type") in RECOVERY_TYPES.values()


def _no_data(alert_type: Any) -> bool:
    """Whether an AlertType (its values are not documented) names a no-data alarm: `nodata` anywhere in
    its letters (MetricsNoData, the callbacks' own word; NoData, no_data...). Raises ValueError for a
    value that names neither that nor a threshold alarm: it might be anything."""
    letters = re.sub(r"[^a-z]", "", as_text(alert_type).lower())
    if "nodata" in letters:
        return True
    if letters in THRESHOLD_TYPES or "threshold" in letters:
        return False
    raise ValueError(f"an AlertType it does not know: {as_text(alert_type)[:40]!r}")


def _dimension_pairs(value: Any) -> list[tuple[str, str]]:
    """ListAlertGroup's Dimension is a string of undocumented form: a JSON object or list of
    {Name, Value}, or name=value (or name:value) pairs separated by commas, semicolons, & or lines."""
    text = as_text(value).strip()
    try:
        parsed = json.loads(text) if text[:1] in "[{" else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return [(str(k), as_text(v)) for k, v in parsed.items()]
    if isinstance(parsed, list):
        return [(as_text(d.get("Name") or d.get("Key")), as_text(d.get("Value"))) for d in as_dicts(parsed)]
    pairs = (re.split(r"\s*[=:]\s*", part, maxsplit=1) for part in re.split(r"[,;&\n]+", text) if part.strip())
    return [(pair[0].strip(), pair[1].strip()) for pair in pairs if len(pair) == 2 and pair[0].strip()]


def moment(value: Any) -> datetime | None:
    """A time as ListAlertGroup may give it: epoch seconds or milliseconds, as a number or a numeric
    string, or RFC 3339; None for 0 or empty (not yet). Anything else raises ValueError."""
    text = "" if value is None else str(value).strip()
    if text in ("", "0", "0.0"):
        return None
    number = None if isinstance(value, bool) else as_number(text)
    try:
        if number is not None:
            if number <= 0:
                raise ValueError
            return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"not a time: {text[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError(f"a time without its zone: {text[:40]!r}")
    return parsed.astimezone(UTC)
