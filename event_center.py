"""Event Center callbacks (Type Event) as Flashduty events: the event catalog and its lifecycles, the
states an event type ends in, and what Details (a CloudEvents object, or its JSON text) says.

One alert per lifecycle of one event type on one resource. Pure: no I/O, no clock, no environment;
nothing here raises on a JSON object.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from event_fields import (
    ALERT_SEVERITIES,
    OK,
    SEVERITY_RANK,
    WARNING,
    Candidate,
    EventStatus,
    Options,
    alert_key,
    as_dicts,
    as_text,
    compact_json,
    field_line,
    on_its_alerts,
    severity,
    snake,
    time_text,
)

EVENT = "event"  # the kind of alert, in its key and its labels

# Event Center event states, from BytePlus ECS "Event monitoring overview": Inquiring, Scheduled,
# Executing, Pending and Recovered are intermediate; Succeeded, Rejected, Failed and Canceled end
# the event. "Inquring" is how the same docs' event list spells one of them; Completed is how
# Volcengine's own event types name an ending (ecs:Disk:DiskError.Redeploy.Completed).
EVENT_STATES = frozenset(
    "inquiring inquring scheduled executing pending recovered succeeded rejected failed canceled completed".split()
)


class EventLifecycle(NamedTuple):
    """What the catalog knows of one event type: the states it passes through, and those it ends in."""

    intermediate: frozenset[str]
    endings: frozenset[str]

    @property
    def ending_is_the_incident(self) -> bool:
        # Published only once it happened: nothing earlier opened an alert for an ending to close.
        return not self.intermediate


def _lifecycle_of(intermediate: str, endings: str) -> EventLifecycle:
    return EventLifecycle(frozenset(intermediate.lower().split()), frozenset(endings.lower().split()))


# The event catalog: every ECS event name (`<cause>.<impact>`, the part after `ecs:<ResourceType>:`)
# that Volcengine ECS DescribeEventTypes / DescribeSystemEvents list (volcengine.com docs 6396/196424;
# BytePlus ECS DescribeEventTypes), with the states documented for it: BytePlus ECS "Event type
# overview" and "Event monitoring overview", the valid values of CreateSubscription (docs 6396/166016)
# and ModifySubscriptionEventTypes, and DescribeEventTypes' example (CreateInstance: Executing,
# Succeeded, Failed). An ending closes an alert only for a type documented with earlier states that
# open one. A type documented only in an ending state (InstanceFailure:Succeeded: the instance failed)
# is the incident itself; so is, on the safe side, a type whose states no page documents: its ending
# pages rather than closing what may never have been opened.
_INCIDENT = _lifecycle_of("", "Succeeded")
_UNDOCUMENTED = EventLifecycle(frozenset(), frozenset())
EVENT_CATALOG: dict[str, EventLifecycle] = {
    "diskerror.redeploy": _lifecycle_of(
        "Inquiring Scheduled Executing", "Succeeded Completed Canceled Rejected Failed"
    ),
    "systemmaintenance.redeploy": _lifecycle_of("Inquiring Executing", "Succeeded Failed"),
    "infrastructureupgrade.redeploy": _lifecycle_of("Inquiring Executing", "Succeeded Failed Canceled"),
    "systemfailure.redeploy": _lifecycle_of("Inquiring Inquring Executing", "Succeeded Failed Canceled"),
    "gpuerror.redeploy": _lifecycle_of("Inquiring", "Succeeded"),
    "spotinstanceinterruption.delete": _lifecycle_of("Scheduled", "Succeeded"),
    # Operations the user asked for: a reboot's Executing is a documented event name
    # (ModifySubscriptionEventTypes), and so are CreateInstance's states (DescribeEventTypes).
    "rebootinstance": _lifecycle_of("Executing", "Succeeded Failed"),
    "createinstance": _lifecycle_of("Executing", "Succeeded Failed"),
    "instancefailure": _INCIDENT,
    "systemfailure.reboot": _INCIDENT,
    "systemfailure.stop": _INCIDENT,
    "accountunbalanced.stop": _INCIDENT,
    "accountunbalanced.delete": _INCIDENT,
    "filesystemreadonly.change": _INCIDENT,
    **dict.fromkeys(
        """systemfailure.pleasecheck systemfailure.repair systemmaintenance.stopandrepair applicationfailure
        diskerrordetected diskerror.replacedisk gpuriskdetected memoryriskdetected instanceoom
        instancefilesystemfailure.stopandrepair runinstance stopinstance deleteinstance
        instancechargetype.change instanceconfiguration.change deploymentset.modify servermigrationtask
        servermigration.firstsync servermigration.additionalsync elasticscheduledinstance.create
        elasticscheduledinstance.cancel elasticscheduledinstance.deliver elasticscheduledinstance.autorelease
        elasticscheduledinstance.invalid unknowntype""".split(),
        _UNDOCUMENTED,
    ),
}
# A type the user names in EVENT_LIFECYCLE_TYPES: earlier states open its alert, any state may end it.
MARKED_LIFECYCLE = EventLifecycle(frozenset({"earlier"}), EVENT_STATES)
CATALOG_SOURCES = frozenset({"", "ecs"})  # the catalog's names are ECS's; a bare name is taken as one


def candidates(callback: Mapping[str, Any], options: Options) -> list[Candidate]:
    """The event of one Event Center callback: the most severe matched rule decides its severity."""
    details, details_text = _details(callback.get("Details"))
    rules = as_dicts(callback.get("Rules"))
    # The most severe matched rule decides; the first one wins a tie, so the choice is stable.
    ranked = [(rule, *severity(rule.get("Level"), options)) for rule in rules]
    rule, level_status, _ = max(ranked, key=lambda r: SEVERITY_RANK[r[1]], default=({}, WARNING, False))
    unknown_levels = (
        [as_text(r.get("Level")) or "(none)" for r, _, known in ranked if not known] if rules else ["(none)"]
    )

    event_type, check, state = _type(callback, details, options)
    subject = as_text(details.get("subject"))
    fields = _service_fields(details)
    resource = _resource(details, fields, check)
    event_id = as_text(callback.get("Id")) or as_text(details.get("id"))
    account = as_text(callback.get("AccountId")) or as_text(details.get("volcaccountid"))
    region = as_text(callback.get("Region")) or as_text(details.get("volcregion"))
    source = as_text(callback.get("Source")) or as_text(details.get("source"))
    summary = _event_summary(callback)
    lifecycle = _known_lifecycle(check, options)
    ending = state.lower() in options.closing_states
    # An ending closes only what earlier states opened: where none did, or none is known to, it pages.
    closes = ending and lifecycle is not None and not lifecycle.ending_is_the_incident
    status: EventStatus = OK if closes else level_status
    change = _state_change(fields) if check.rsplit(":", 1)[-1].lower() == "statechange" else ""

    labels = {
        "source": "volcengine",
        "kind": EVENT,
        "resource": resource,
        "check": check,
        "service": source,
        "account_id": account,
        "region": region,
        "project": as_text(callback.get("ProjectName")),
        "resource_id": resource,
        "resource_name": subject if subject != resource else "",
        "rule_id": as_text(rule.get("RuleId")),
        "rule_name": as_text(rule.get("RuleName")),
        "level": as_text(rule.get("Level")).lower(),
        "event_type": event_type,
        "event_state": state,
        "event_source": source,
        "event_id": event_id,
    }
    if unknown_levels and not closes:
        labels["unknown_level"] = ",".join(dict.fromkeys(unknown_levels))

    title = " ".join(part for part in (check or "Volcengine event", resource and f"on {resource}", change) if part)
    if state:
        title = f"{state}: {title}"
    if summary:
        title = f"{title}: {summary}"
    lines = [
        summary,
        "",
        field_line("Event type", event_type),
        field_line("State", state),
        field_line("State change", change),
        field_line("Resource", resource),
        field_line("Happened at", time_text(callback.get("HappenedAt"), options.display_zone)),
        field_line("Account / region", " / ".join(filter(None, (account, region)))),
        field_line("Matched rules", "; ".join(_rule_text(r) for r in rules)),
        field_line("Event id", event_id),
        field_line("Details", details_text or _details_extras(details)),
        "",
        _ending_text(check, state, lifecycle, closes, options),
    ]
    # One alert per lifecycle of one event type on one resource (and severity: states matched by rules
    # of other levels), whatever its state; an event that names no resource is an alert of its own,
    # never merged with others of its type.
    identity = _identity(resource, event_id, details, details_text)
    events = on_its_alerts(
        title=title, status=status, identities=[(EVENT, check, identity)], lines=lines, labels=labels
    )
    return [Candidate(event, filterable=not closes and not unknown_levels) for event in events]


def lifecycle_keys(callback: Mapping[str, Any], options: Options) -> list[str]:
    """The alert key of each level this callback's lifecycle (its event type on its resource) may hold
    an alert under: what an ending's Ok closes."""
    details, details_text = _details(callback.get("Details"))
    _, check, _ = _type(callback, details, options)
    resource = _resource(details, _service_fields(details), check)
    event_id = as_text(callback.get("Id")) or as_text(details.get("id"))
    identity = _identity(resource, event_id, details, details_text)
    return [alert_key(EVENT, check, identity, level) for level in ALERT_SEVERITIES]


def _type(callback: Mapping[str, Any], details: Mapping[str, Any], options: Options) -> tuple[str, str, str]:
    """The event type, the type without its state (the alert's `check`), and the state."""
    event_type = as_text(callback.get("EventType")) or as_text(details.get("type"))
    return event_type, *_lifecycle(event_type, options)


def _resource(details: Mapping[str, Any], fields: Mapping[str, str], check: str) -> str:
    subject = as_text(details.get("subject"))
    return as_text(details.get("volcresourcename")) or subject or _service_resource(fields, check)


def _identity(resource: str, event_id: str, details: Mapping[str, Any], details_text: str) -> str:
    # An event that names no resource is an alert of its own, never merged with others of its type.
    return resource or "event " + (event_id or details_text or compact_json(details))


def ends(check: str, options: Options) -> bool:
    """Whether an alert of this event type (its `check`) closes when its lifecycle ends; else only a
    person closes it."""
    lifecycle = _known_lifecycle(check, options)
    return lifecycle is not None and not lifecycle.ending_is_the_incident


def check_of(event_type: str, options: Options) -> str:
    """An event type without its state: what its alerts' `check` label holds."""
    return _lifecycle(event_type, options)[0]


def is_ending(event_type: str, options: Options) -> bool:
    """Whether an event of this full type (with its state) ends a lifecycle, closing its alert."""
    check, state = _lifecycle(event_type, options)
    return state.lower() in options.closing_states and ends(check, options)


def _known_lifecycle(check: str, options: Options) -> EventLifecycle | None:
    """What the catalog (or the user, in EVENT_LIFECYCLE_TYPES) says of an event type; None if nothing."""
    if check.lower() in options.lifecycle_types:
        return MARKED_LIFECYCLE
    source, _, name = check.rpartition(":")
    if source.split(":")[0].lower() not in CATALOG_SOURCES:
        return None
    return EVENT_CATALOG.get(name.lower())


def _ending_text(check: str, state: str, lifecycle: EventLifecycle | None, closes: bool, options: Options) -> str:
    """The description's last paragraph: whether and when this alert closes."""
    if closes:
        return f"The event reached {state}, which ends its lifecycle: this closes the alert."
    if not state:
        return "Volcengine sends no recovery for events: resolve this alert in Flashduty."
    if lifecycle is not None and lifecycle.endings and lifecycle.ending_is_the_incident:
        return (
            f"Volcengine publishes {check} only once it happened: {state} is the incident itself, not the end of "
            "an earlier alert. Resolve this alert in Flashduty."
        )
    if lifecycle is None or lifecycle.ending_is_the_incident:
        known = "does not know" if lifecycle is None else "knows no documented states of"
        return (
            f"The relay's event catalog {known} {check}, so an ending state may be the incident itself: "
            f"it pages at its rule's level instead of closing the alert. If earlier states of {check} open an "
            "alert that its ending should close, add it to EVENT_LIFECYCLE_TYPES."
        )
    endings = sorted(s.capitalize() for s in lifecycle.endings & options.closing_states)
    return f"The alert closes when the event reaches one of: {', '.join(endings) or '(none set)'}."


def _lifecycle(event_type: str, options: Options) -> tuple[str, str]:
    """An Event Center event type without its state suffix, and the state ("" when it has none).

    `ecs:Disk:DiskError.Redeploy.Executing` and `...Redeploy:Succeeded` (both separators are in
    Volcengine's and BytePlus's docs) give `ecs:Disk:DiskError.Redeploy`; only a known state is cut.
    """
    states = EVENT_STATES | options.closing_states
    head, _, last = event_type.rpartition(":")
    base, dot, state = last.rpartition(".")
    if dot and state.lower() in states:
        return f"{head}:{base}" if head else base, state
    if head and last.lower() in states:
        return head, last
    return event_type, ""


def _event_summary(callback: Mapping[str, Any]) -> str:
    # The docs' table says Description, the docs' sample sends DescriptionCN: keep both.
    texts = [as_text(callback.get("Description")), as_text(callback.get("DescriptionCN"))]
    return " / ".join(dict.fromkeys(t for t in texts if t))


def _details(value: Any) -> tuple[dict[str, Any], str]:
    """Details as an object, and its text when it came as a string that is not an object."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):
            return {}, as_text(value)
        return (parsed, "") if isinstance(parsed, dict) else ({}, as_text(value))
    return (value, "") if isinstance(value, dict) else ({}, "")


# CloudEvents attributes every Details carries; the rest is what the producing service adds.
_DETAILS_ENVELOPE = frozenset(
    "specversion id source type volcpublishtime volcregion volcaccountid volceventbusname "
    "volcresourcename subject time".split()
)
# Service fields that name a resource, most specific first, after `<resource type>_id`.
_RESOURCE_FIELDS = (
    "resource_id",
    "instance_id",
    "listener_id",
    "server_id",
    "load_balancer_id",
    "loadbalancer_id",
    "clb_id",
    "alb_id",
    "disk_id",
    "volume_id",
    "db_instance_id",
    "cluster_id",
    "node_id",
)


def _service_fields(details: Mapping[str, Any]) -> dict[str, str]:
    """A service's own Details fields (at the top or in one nested object), by snake_case name."""
    extras = {k: v for k, v in details.items() if k not in _DETAILS_ENVELOPE}
    fields: dict[str, str] = {}
    for value in [extras, *(v for v in extras.values() if isinstance(v, dict))]:
        for key, item in value.items():
            text = as_text(item) if isinstance(item, (str, int)) and not isinstance(item, bool) else ""
            fields.setdefault(snake(as_text(key)), text)
    return fields


def _service_resource(fields: Mapping[str, str], check: str) -> str:
    """The resource a service names in its own Details fields.

    The event type's resource type goes first: a `clb:Listener:...` event is about its listener,
    even when the load balancer is named too.
    """
    parts = check.split(":")
    resource_type = snake(parts[1]) if len(parts) > 2 else ""
    for name in (f"{resource_type}_id", *_RESOURCE_FIELDS):
        if fields.get(name):
            return fields[name]
    return ""


# How a state-change event (ecs:Instance:StateChange, which has no state suffix) may name the states
# it went from and to: Volcengine documents no field names, so these are the usual spellings.
_NEW_STATE_FIELDS = (
    "current_state",
    "new_state",
    "to_state",
    "after_state",
    "current_status",
    "new_status",
    "state",
    "status",
)
_OLD_STATE_FIELDS = (
    "previous_state",
    "old_state",
    "from_state",
    "before_state",
    "pre_state",
    "last_state",
    "previous_status",
    "old_status",
    "pre_status",
    "last_status",
)


def _state_change(fields: Mapping[str, str]) -> str:
    """`Running → Stopped` (or `→ Stopped` without the old state) when Details names the new state."""
    new = next((fields[name] for name in _NEW_STATE_FIELDS if fields.get(name)), "")
    old = next((fields[name] for name in _OLD_STATE_FIELDS if fields.get(name)), "")
    if not new:
        return ""
    return f"{old} → {new}" if old and old != new else f"→ {new}"


def _details_extras(details: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{as_text(key)}={as_text(value)}" for key, value in details.items() if key not in _DETAILS_ENVELOPE
    )


def _rule_text(rule: Mapping[str, Any]) -> str:
    name = as_text(rule.get("RuleName")) or as_text(rule.get("RuleId")) or "?"
    level = as_text(rule.get("Level"))
    return f"{name} ({level})" if level else name
