"""Translate Volcengine Cloud Monitor callbacks into Flashduty standard alert events.

Pure: no I/O, no clock, no environment. The same callback always gives the same events, byte for
byte, so a Volcengine retry is an identical repeat that Flashduty discards. Every field of the
callback may be missing, null, a single object where a list is documented, or of the wrong type;
nothing here raises on a JSON object.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
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

EVENT, METRIC, NO_DATA, UNRECOGNISED = "event", "metric", "no_data", "unrecognised"
METRIC_TYPES = frozenset({"Metric", "MetricRecovered", "MetricsNoData", "NoDataRecovered"})
# (list in a metric callback, the Type that sends it alone, kind of alert, recovers?) in the order
# they are translated
RESOURCE_LISTS = (
    ("Resources", "Metric", METRIC, False),
    ("RecoveredResources", "MetricRecovered", METRIC, True),
    ("NoDataResources", "MetricsNoData", NO_DATA, False),
    ("NoDataRecoveredResources", "NoDataRecovered", NO_DATA, True),
)
RECOVERY_TYPES = {kind: callback_type for _, callback_type, kind, recovers in RESOURCE_LISTS if recovers}
# Dimensions that name the resource itself when a thin callback leaves out its Id.
RESOURCE_DIMENSIONS = frozenset({"resourceid", "resource_id", "instanceid", "instance_id"})

# Event Center event states, from BytePlus ECS "Event monitoring overview": Inquiring, Scheduled,
# Executing, Pending and Recovered are intermediate; Succeeded, Rejected, Failed and Canceled end
# the event. "Inquring" is how the same docs' event list spells one of them; Completed is how
# Volcengine's own event types name an ending (ecs:Disk:DiskError.Redeploy.Completed).
EVENT_STATES = frozenset(
    "inquiring inquring scheduled executing pending recovered succeeded rejected failed canceled completed".split()
)
# Failed ends the lifecycle too, but the operation did not happen and the problem it was for is
# still there: it stays open for a person unless EVENT_CLOSING_STATES says otherwise.
DEFAULT_CLOSING_STATES = frozenset({"succeeded", "completed", "rejected", "canceled"})


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


# The event catalog: ECS event names (`<cause>.<impact>`, the part after `ecs:<ResourceType>:`) and
# their states, from BytePlus ECS "Event type overview" (docs.byteplus.com/en/docs/ecs/Event-type-overview)
# and "Event monitoring overview", the valid values of BytePlus ECS CreateSubscription /
# ModifySubscriptionEventTypes, and Volcengine ECS DescribeEventTypes (volcengine.com docs 6396/196424).
# An ending state closes an alert only for a type with earlier states that open one; a type published
# only in an ending state (InstanceFailure:Succeeded: the instance failed) is the incident itself.
EVENT_CATALOG: dict[str, EventLifecycle] = {
    "diskerror.redeploy": _lifecycle_of(
        "Inquiring Scheduled Executing", "Succeeded Completed Canceled Rejected Failed"
    ),
    "systemmaintenance.redeploy": _lifecycle_of("Inquiring Executing", "Succeeded Failed"),
    "infrastructureupgrade.redeploy": _lifecycle_of("Inquiring Executing", "Succeeded Failed Canceled"),
    "systemfailure.redeploy": _lifecycle_of("Inquiring Inquring Executing", "Succeeded Failed Canceled"),
    "spotinstanceinterruption.delete": _lifecycle_of("Scheduled", "Succeeded"),
    # A reboot the user asked for: its Executing is a documented event name (ModifySubscriptionEventTypes).
    "rebootinstance": _lifecycle_of("Executing", "Succeeded Failed"),
    "instancefailure": _lifecycle_of("", "Succeeded"),
    "systemfailure.reboot": _lifecycle_of("", "Succeeded"),
    "systemfailure.stop": _lifecycle_of("", "Succeeded"),
    "accountunbalanced.stop": _lifecycle_of("", "Succeeded"),
    "accountunbalanced.delete": _lifecycle_of("", "Succeeded"),
}
# A type the user names in EVENT_LIFECYCLE_TYPES: earlier states open its alert, any state may end it.
MARKED_LIFECYCLE = EventLifecycle(frozenset({"earlier"}), EVENT_STATES)
CATALOG_SOURCES = frozenset({"", "ecs"})  # the catalog's names are ECS's; a bare name is taken as one
# `python -m deploy test` marks its callbacks with this field (no Volcengine callback has it): their
# events say TEST, carry `test=true` and are never filtered, so the wiring test pages nobody.
WIRING_TEST = "RelayWiringTest"
# Volcengine's consoles in mainland China show times in China Standard Time, which has no DST.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8))

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
# Units as people write them; any other unit is shown as sent.
UNITS = {"percent": "%", "milliseconds": "ms", "seconds": "s", "bytes": "B", "count": ""}


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


class Translation(NamedTuple):
    kind: str  # event, metric or unrecognised
    events: list[Event]  # ready to send
    filtered: int = 0  # firing events dropped for being below Options.min_severity
    over_cap: int = 0  # resources past RESOURCES_MAX, not sent (one event says so)
    note: str = ""  # why a recognised callback gave no event at all


class _Candidate(NamedTuple):
    event: Event
    filterable: bool  # False for recoveries and unknown levels: MIN_SEVERITY never drops those


def translate(callback: Mapping[str, Any], options: Options = DEFAULT_OPTIONS) -> Translation:
    """Translate one callback body (a parsed JSON object) into Flashduty events."""
    kind_of_callback = _kind(callback)
    over_cap = 0
    if kind_of_callback == EVENT:
        candidates = [_event_center(callback, options)]
    elif kind_of_callback == METRIC:
        candidates, over_cap = _metric_alarms(callback, options)
        if not candidates:
            # A known Type that lists no resource: paging someone about it would be noise.
            note = f"the {_text(callback.get('Type'))} callback lists no resources: nothing to send"
            return Translation(METRIC, [], note=note)
    else:
        # A format change on Volcengine's side must never silence alerts.
        return Translation(UNRECOGNISED, [_unrecognised(callback)])
    if callback.get(WIRING_TEST) is True:
        candidates = [_Candidate(_wiring_test(c.event), filterable=False) for c in candidates]
    kept = [c.event for c in candidates if not c.filterable or _passes(c.event, options)]
    filtered = len(candidates) - len(kept)
    if over_cap:
        kept.append(_over_cap(callback, over_cap))
    return Translation(kind_of_callback, kept, filtered=filtered, over_cap=over_cap)


def _wiring_test(event: Event) -> Event:
    labels = {"test": "true", **event.get("labels", {})}
    return {
        **event,
        "title_rule": _truncate(f"[TEST, no action needed] {event['title_rule']}", TITLE_MAX),
        "labels": labels,
    }


def _kind(callback: Mapping[str, Any]) -> str:
    callback_type = _text(callback.get("Type"))
    if callback_type == "Event":
        return EVENT
    # Parse by the lists, not only by Type: a body can carry several lists at once.
    if callback_type in METRIC_TYPES or any(_dicts(callback.get(name)) for name, *_ in RESOURCE_LISTS):
        return METRIC
    return UNRECOGNISED


def _passes(event: Event, options: Options) -> bool:
    status = event["event_status"]
    return status == OK or SEVERITY_RANK[status] >= SEVERITY_RANK[options.min_severity]


def severity(level: Any, options: Options = DEFAULT_OPTIONS) -> tuple[Severity, bool]:
    """Flashduty severity for a Volcengine level, and whether the level was known."""
    name = _text(level).lower()
    if name in options.severity_overrides:
        return options.severity_overrides[name], True
    if name in LEVELS:
        return LEVELS[name], True
    return UNKNOWN_LEVEL_SEVERITY, False


# Event Center -------------------------------------------------------------------------------


def _event_center(callback: Mapping[str, Any], options: Options) -> _Candidate:
    details, details_text = _details(callback.get("Details"))
    rules = _dicts(callback.get("Rules"))
    # The most severe matched rule decides; the first one wins a tie, so the choice is stable.
    ranked = [(rule, *severity(rule.get("Level"), options)) for rule in rules]
    rule, level_status, _ = max(ranked, key=lambda r: SEVERITY_RANK[r[1]], default=({}, WARNING, False))
    unknown_levels = [_text(r.get("Level")) or "(none)" for r, _, known in ranked if not known] if rules else ["(none)"]

    event_type = _text(callback.get("EventType")) or _text(details.get("type"))
    check, state = _lifecycle(event_type, options)
    subject = _text(details.get("subject"))
    fields = _service_fields(details)
    resource = _text(details.get("volcresourcename")) or subject or _service_resource(fields, check)
    event_id = _text(callback.get("Id")) or _text(details.get("id"))
    account = _text(callback.get("AccountId")) or _text(details.get("volcaccountid"))
    region = _text(callback.get("Region")) or _text(details.get("volcregion"))
    source = _text(callback.get("Source")) or _text(details.get("source"))
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
        "project": _text(callback.get("ProjectName")),
        "resource_id": resource,
        "resource_name": subject if subject != resource else "",
        "rule_id": _text(rule.get("RuleId")),
        "rule_name": _text(rule.get("RuleName")),
        "level": _text(rule.get("Level")).lower(),
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
        _field("Event type", event_type),
        _field("State", state),
        _field("State change", change),
        _field("Resource", resource),
        _field("Happened at", _time_text(callback.get("HappenedAt"), options.display_zone)),
        _field("Account / region", " / ".join(filter(None, (account, region)))),
        _field("Matched rules", "; ".join(_rule_text(r) for r in rules)),
        _field("Event id", event_id),
        _field("Details", details_text or _details_extras(details)),
        "",
        _ending_text(check, state, lifecycle, closes, options),
    ]
    # One alert per lifecycle of one event type on one resource, whatever its state; an event that
    # names no resource is an alert of its own, never merged with others of its type.
    identity = resource or "event " + (event_id or details_text or _json(details))
    event = _event(title=title, status=status, key_parts=(EVENT, check, identity), lines=lines, labels=labels)
    return _Candidate(event, filterable=not closes and not unknown_levels)


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
    if lifecycle is not None and lifecycle.ending_is_the_incident:
        return (
            f"Volcengine publishes {check} only once it happened: {state} is the incident itself, not the end of "
            "an earlier alert. Resolve this alert in Flashduty."
        )
    if lifecycle is None:
        return (
            f"The relay's event catalog does not know {check}, so an ending state may be the incident itself: "
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
            text = _text(item) if isinstance(item, (str, int)) and not isinstance(item, bool) else ""
            fields.setdefault(_snake(_text(key)), text)
    return fields


def _service_resource(fields: Mapping[str, str], check: str) -> str:
    """The resource a service names in its own Details fields.

    The event type's resource type goes first: a `clb:Listener:...` event is about its listener,
    even when the load balancer is named too.
    """
    parts = check.split(":")
    resource_type = _snake(parts[1]) if len(parts) > 2 else ""
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
    return ", ".join(f"{_text(key)}={_text(value)}" for key, value in details.items() if key not in _DETAILS_ENVELOPE)


def _rule_text(rule: Mapping[str, Any]) -> str:
    name = _text(rule.get("RuleName")) or _text(rule.get("RuleId")) or "?"
    level = _text(rule.get("Level"))
    return f"{name} ({level})" if level else name


# Metric alarms ------------------------------------------------------------------------------


class _Policy(NamedTuple):
    """What a metric callback says once for all its resources."""

    callback: Mapping[str, Any]
    status: Severity
    level_known: bool
    tags: list[tuple[str, str]]
    options: Options


def _metric_alarms(callback: Mapping[str, Any], options: Options) -> tuple[list[_Candidate], int]:
    """One event per distinct resource in each list, up to RESOURCES_MAX; and how many were past it."""
    status, known = severity(callback.get("Level"), options)
    # Callback-wide parts are built once, not once per resource (2,000 tags x 2,000 resources).
    policy = _Policy(callback, status, known, _tags(callback.get("Tags")), options)
    callback_type = _text(callback.get("Type"))
    candidates: list[_Candidate] = []
    seen: set[tuple[str, str]] = set()
    over_cap = 0
    for list_name, sent_alone_by, kind, recovers in RESOURCE_LISTS:
        resources = _dicts(callback.get(list_name))
        if not resources and callback_type == sent_alone_by:
            resources = _dicts(callback.get("Resource"))  # one resource, as VeAIOps's schema has it
        for resource in resources:
            identity = (list_name, _json(resource))
            if identity in seen:
                continue  # a resource listed twice is one alert, not two
            seen.add(identity)
            if len(candidates) >= RESOURCES_MAX:
                over_cap += 1
                continue
            event = _metric_event(policy, resource, kind, recovers)
            candidates.append(_Candidate(event, filterable=known and not recovers))
    return candidates, over_cap


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


class _Dimension(NamedTuple):
    name: str
    shown: str  # the name as people read it: the Chinese name when one was sent
    value: str


def _metric_event(policy: _Policy, resource: Mapping[str, Any], kind: str, recovers: bool) -> Event:
    callback, options = policy.callback, policy.options
    rule_name = _text(callback.get("RuleName"))
    rule_id = _text(callback.get("RuleId"))
    account = _text(callback.get("AccountId"))
    dimensions = [
        _Dimension(
            _text(d.get("Name")),
            _text(d.get("NameCN")) or _text(d.get("NameCn")) or _text(d.get("Name")),
            _text(d.get("Value")),
        )
        for d in _dicts(resource.get("Dimensions"))
    ]
    resource_id = _text(resource.get("Id")) or next(
        (d.value for d in dimensions if d.name.lower() in RESOURCE_DIMENSIONS and d.value), ""
    )
    resource_name = _text(resource.get("Name"))
    # Only the dimensions that tell sub-resources apart (a disk, a mount point): one that repeats
    # the resource id says nothing more, and a thin recovery leaves it out.
    siblings = [d for d in dimensions if d.value and d.value != resource_id]
    all_metrics = _dicts(resource.get("Metrics"))
    metrics = _breaching_first(all_metrics, _text(callback.get("RuleCondition")))[:METRICS_MAX]
    if not metrics and kind == NO_DATA and not recovers:
        metrics = _dicts(resource.get("NoDataMetrics"))  # some no-data resources name them only there
    metric_names = [n for n in (_text(m.get("Name")) for m in metrics) if n] or _names(
        resource.get("NoDataMetrics") or resource.get("DroppedMetrics")
    )
    lead = metrics[0] if metrics else {}
    status: EventStatus = OK if recovers else policy.status
    check = rule_name or rule_id

    labels = {
        "source": "volcengine",
        "kind": kind,
        "resource": resource_id or resource_name,
        "check": check,
        "service": _text(callback.get("Namespace")),
        "metric": metric_names[0] if metric_names else "",
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
        "metric_name": ",".join(metric_names),
        "metric_value": _text(lead.get("CurrentValue")),
        "metric_threshold": _text(lead.get("Threshold")),
        "metric_unit": _unit(lead.get("Unit")),
        "alert_group_id": _text(resource.get("AlertGroupId")),
    }
    if not policy.level_known and not recovers:
        labels["unknown_level"] = _text(callback.get("Level")) or "(none)"
    extra_labels = [(f"dim_{_snake(d.name)}", d.value) for d in dimensions] + policy.tags

    who = " ".join(filter(None, (_resource_text(resource_name, resource_id), _dimensions_text(siblings))))
    headline = f"{check or 'Volcengine metric alarm'}: {who}"
    if kind == NO_DATA:
        dropped = _dropped(resource.get("DroppedMetrics")) if recovers else []
        what = "; ".join(dropped) or ", ".join(_names(resource.get("NoDataMetrics"))) or labels["metric_name"]
        title = f"{'Data is back' if recovers else 'No data'}: {headline}" + (f" ({what})" if what else "")
    else:
        dropped = []
        title = f"{'Recovered: ' if recovers else ''}{headline}"
        if metrics:
            title += f" {_metric_text(metrics[0])}"
            if len(all_metrics) > 1:
                title += f" (+{len(all_metrics) - 1} more)"

    zone = options.display_zone
    lines = [
        _field("Rule", " ".join(filter(None, (rule_name, rule_id and f"({rule_id})")))),
        _field("Condition", _text(callback.get("RuleCondition"))),
        _field("Resource", ", ".join(filter(None, (_resource_text(resource_name, resource_id), labels["region"])))),
        _field("Dimensions", _dimensions_text(dimensions)),
        *(_field("Metric", _metric_text(m, detailed=True)) for m in metrics),
        _field("More metrics", str(len(all_metrics) - len(metrics)) if len(all_metrics) > len(metrics) else ""),
        *(_field("Dropped metric", text) for text in dropped),
        _field("Happened at", _time_text(callback.get("HappenedAt"), zone)),
        _field("First alert", _time_text(resource.get("FirstAlertTime"), zone)),
        _field("Last alert", _time_text(resource.get("LastAlertTime"), zone)),
        _field("Namespace", "/".join(filter(None, (labels["namespace"], labels["sub_namespace"])))),
        _field("Account", account),
    ]
    return _event(
        title=title,
        status=status,
        key_parts=metric_key_parts(kind, rule_id or rule_name, resource_id or resource_name, siblings),
        lines=lines,
        labels=labels,
        extra_labels=extra_labels,
    )


def metric_key_parts(kind: str, rule: str, resource: str, siblings: Iterable[_Dimension]) -> tuple[str, ...]:
    """What the alert key of a metric alarm is made of: what both its firing and recovery carry.

    No level (warning -> critical updates the same alert) and no account (a thin recovery leaves it
    out); no-data alerts have their own kind, so a no-data recovery never closes a threshold alert.
    """
    return (kind, rule, resource, *sorted(f"{d.name}={d.value}" for d in siblings))


# Reconcile: Cloud Monitor's alarm history (ListAlertGroup) as the callback it would have sent ------

# The values of AlertState and AlertType are not documented: these are the spellings taken to mean an
# alarm that is still on, one that ended, and a no-data alarm. Any other state is told by EndAt.
ALERTING_STATES = frozenset({"alerting", "alarm", "alarming", "firing", "triggered", "active", "unrecovered"})
RECOVERED_STATES = frozenset({"recovered", "ok", "resolved", "normal", "closed", "restored", "recovery"})
RECONCILED_NOTE = (
    "Sent by reconcile, from Cloud Monitor's alarm history: the callback of this change did not reach the relay."
)


class AlertGroup(NamedTuple):
    """One ListAlertGroup entry as the relay reads it: the callbacks it stands for, and their times."""

    firing: dict[str, Any]  # the callback of its start
    recovery: dict[str, Any] | None  # the callback of its end, once it ended
    started_at: datetime
    ended_at: datetime | None


def alert_group(group: Mapping[str, Any], policy: Mapping[str, Any] | None = None) -> AlertGroup:
    """The metric callbacks Volcengine would have sent for an alert group: its start, and its end.

    `policy` is its alarm policy as ListRules gives it: the project and tags a callback carries.
    Raises ValueError when StartAt (or a given EndAt) is not a time: an alarm is never placed "now".
    """
    state = _text(group.get("AlertState")).lower()
    started, ended = moment(group.get("StartAt")), moment(group.get("EndAt"))
    if started is None:
        raise ValueError(f"alarm {_text(group.get('Id'))!r} has no StartAt")
    recovered = state in RECOVERED_STATES or (state not in ALERTING_STATES and ended is not None)
    no_data = re.sub(r"[^a-z]", "", _text(group.get("AlertType")).lower()).startswith("nodata")
    resource = {
        "Id": _text(group.get("ResourceId")),
        "Name": _text(group.get("ResourceName")),
        "Region": _text(group.get("Region")),
        "AlertGroupId": _text(group.get("Id")),
        "Dimensions": [{"Name": name, "Value": value} for name, value in _dimension_pairs(group.get("Dimension"))],
    }
    policy = policy or {}
    rule = {
        "RuleId": _text(group.get("RuleId")),
        "RuleName": _text(group.get("RuleName")),
        "Level": _text(group.get("Level")),
        "Namespace": _text(group.get("Namespace")),
        "SubNamespace": _text(group.get("SubNamespace")),
        "RuleCondition": _text(group.get("RuleTriggerCondition")),
        "Project": _text(policy.get("ProjectName")),
        "Tags": policy.get("Tags") or [],
    }

    def callback(recovers: bool, at: datetime | None) -> dict[str, Any]:
        list_name, callback_type, *_ = RESOURCE_LISTS[2 * no_data + recovers]
        happened = int(at.timestamp()) if at else None
        return {"Type": callback_type, **rule, "HappenedAt": happened, list_name: [resource]}

    return AlertGroup(callback(False, started), callback(True, ended) if recovered else None, started, ended)


def reconciled(callback: Mapping[str, Any], options: Options = DEFAULT_OPTIONS) -> Event | None:
    """The event the relay would have sent for this callback of an alert group (the same alert key),
    marked as reconciled; None when MIN_SEVERITY would have dropped it."""
    events = translate(callback, options).events
    if not events:
        return None
    event = events[0]
    description = _truncate(f"{RECONCILED_NOTE}\n{event.get('description', '')}", DESCRIPTION_MAX)
    return {**event, "description": description, "labels": {**event.get("labels", {}), "reconciled": "true"}}


CLOSING_NOTE = (
    "Sent by reconcile: Cloud Monitor has no alarm of this alert on, and its recovery did not reach Flashduty."
)


def closing(alert_key: str, title: str, labels: Mapping[str, str]) -> Event:
    """The Ok that closes an alert Flashduty holds open for a metric alarm Cloud Monitor no longer has
    on, when the alarm itself is not in the history read: made of what the alert carries."""
    callback_type = RECOVERY_TYPES.get(labels.get("kind", METRIC), RECOVERY_TYPES[METRIC])
    headline = title.removeprefix("Recovered: ")
    return {
        "title_rule": _truncate(f"Recovered: {headline}", TITLE_MAX),
        "event_status": OK,
        "alert_key": alert_key,
        "description": CLOSING_NOTE,
        "labels": {**labels, "callback_type": callback_type, "reconciled": "true"},
    }


def recovered_by_event(labels: Mapping[str, str]) -> bool:
    """Whether an alert's labels are those of a recovery event: Flashduty gives an alert the labels of
    its last event, so an alert a person closed keeps its firing's."""
    return labels.get("callback_type") in RECOVERY_TYPES.values()


def _dimension_pairs(value: Any) -> list[tuple[str, str]]:
    """ListAlertGroup's Dimension is a string of undocumented form: a JSON object or list of
    {Name, Value}, or name=value (or name:value) pairs separated by commas, semicolons, & or lines."""
    text = _text(value).strip()
    try:
        parsed = json.loads(text) if text[:1] in "[{" else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return [(str(k), _text(v)) for k, v in parsed.items()]
    if isinstance(parsed, list):
        return [(_text(d.get("Name") or d.get("Key")), _text(d.get("Value"))) for d in _dicts(parsed)]
    pairs = (re.split(r"\s*[=:]\s*", part, maxsplit=1) for part in re.split(r"[,;&\n]+", text) if part.strip())
    return [(pair[0].strip(), pair[1].strip()) for pair in pairs if len(pair) == 2 and pair[0].strip()]


def moment(value: Any) -> datetime | None:
    """A time as ListAlertGroup may give it: epoch seconds or milliseconds, as a number or a numeric
    string, or RFC 3339; None for 0 or empty (not yet). Anything else raises ValueError."""
    text = "" if value is None else str(value).strip()
    if text in ("", "0", "0.0"):
        return None
    number = None if isinstance(value, bool) else _number(text)
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


def _breaching_first(metrics: list[dict[str, Any]], rule_condition: str) -> list[dict[str, Any]]:
    """The metrics past their thresholds first, in their order; the rest after them.

    Volcengine flags each metric with `Warning`; without any flag, the value is compared with the
    threshold in the direction the metric's condition (or the rule's) gives.
    """
    flagged = any(isinstance(m.get("Warning"), bool) or _text(m.get("Warning")) in ("true", "false") for m in metrics)

    def breaching(metric: Mapping[str, Any]) -> bool:
        if flagged:
            return _text(metric.get("Warning")).lower() == "true"
        return _past_threshold(metric, rule_condition)

    return sorted(metrics, key=lambda m: not breaching(m))


_COMPARATOR = re.compile(r"(>=|<=|≥|≤|>|<|大于等于|小于等于|大于|小于|高于|低于)")
_ABOVE = frozenset({">=", "≥", ">", "大于等于", "大于", "高于"})


def _past_threshold(metric: Mapping[str, Any], rule_condition: str) -> bool:
    value, threshold = _number(metric.get("CurrentValue")), _number(metric.get("Threshold"))
    if value is None or threshold is None:
        return False
    names = [n for n in (_text(metric.get("Name")), *_meanings(metric)) if n]
    clauses = [c for c in re.split(r"[,;，；|]|\b(?:or|and)\b|或|且|&&", rule_condition) if c.strip()]
    mentioning = [c for c in clauses if any(n in c for n in names)]
    condition = _text(metric.get("TriggerCondition")) or next(iter(mentioning), clauses[0] if len(clauses) == 1 else "")
    comparator = _COMPARATOR.search(condition)
    if comparator is None:
        return False
    return value >= threshold if comparator.group(1) in _ABOVE else value <= threshold


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN compares with nothing


def _metric_text(metric: Mapping[str, Any], detailed: bool = False) -> str:
    name = _text(metric.get("Name"))
    meanings = [m for m in _meanings(metric) if m != name]
    unit = _unit(metric.get("Unit"))
    value = _text(metric.get("CurrentValue"))
    threshold = _text(metric.get("Threshold"))
    if detailed:
        label = f"{name} ({' / '.join(meanings)})" if name and meanings else name or " / ".join(meanings)
    else:
        label = next(iter(meanings), name)
    text = f"{label} = {_with_unit(value, unit)}" if value else f"{label}: no data"
    if threshold:
        text += f" (threshold {_with_unit(threshold, unit)})"
    return text


# Every spelling a metric's description comes in (docs, HertzBeat, VeAIOps, live bodies in upper
# case), in the order the title prefers: Description (what the console shows), then Chinese, then
# English, as the title's dimension names are Chinese when Volcengine sent them.
_DESCRIPTIONS = ("Description", "DescriptionCN", "DescriptionCn", "DescriptionEN", "DescriptionEn")


def _meanings(metric: Mapping[str, Any]) -> list[str]:
    """A metric's descriptions, each once, in _DESCRIPTIONS' order."""
    return list(dict.fromkeys(text for text in (_text(metric.get(key)) for key in _DESCRIPTIONS) if text))


def _dropped(value: Any) -> list[str]:
    """What a no-data recovery says of each dropped metric: its name, and why when it says."""
    texts = []
    for metric in value if isinstance(value, list) else [value]:
        if not isinstance(metric, dict):
            texts.append(_text(metric))
            continue
        name = _text(metric.get("Name")) or _text(metric.get("Description")) or "a metric"
        reason = _text(metric.get("Reason"))
        texts.append(f"{name}: {reason}" if reason else name)
    return [text for text in texts if text]


def _unit(value: Any) -> str:
    unit = _text(value)
    return UNITS.get(unit.lower(), unit)


def _with_unit(number: str, unit: str) -> str:
    return f"{number}{unit}" if unit == "%" or not unit else f"{number} {unit}"


def _dimensions_text(dimensions: Iterable[_Dimension]) -> str:
    return ", ".join(f"{d.shown}={d.value}" for d in dimensions)


def _resource_text(name: str, resource_id: str) -> str:
    if name and resource_id and name != resource_id:
        return f"{name} ({resource_id})"
    return name or resource_id or "unknown resource"


def _names(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [n for n in (_text(i.get("Name")) if isinstance(i, dict) else _text(i) for i in items) if n]


def _tags(value: Any) -> list[tuple[str, str]]:
    """Tags as labels: a list of {Key, Value}, one such object, or a plain {key: value} object."""
    if isinstance(value, dict) and "Key" not in value:
        pairs = [(_text(k), _text(v)) for k, v in value.items()]
    else:
        pairs = [(_text(tag.get("Key")), _text(tag.get("Value"))) for tag in _dicts(value)]
    return [(f"tag_{_snake(key)}", tag_value) for key, tag_value in pairs]


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
        if len(labels) >= LABELS_MAX - 1:
            dropped += 1
            continue
        labels[name] = _truncate(value, LABEL_VALUE_MAX)
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
    """A documented list of objects, whether it came as a list, one object, null or nothing."""
    if isinstance(value, dict):
        return [value] if value else []
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


# Metric callbacks write `2024-04-11 14:51:01(UTC+08:00)`; events and resources send epoch seconds.
_WRITTEN_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})\s*\(?\s*(UTC|GMT|Z)?\s*(?:([+-])(\d{1,2}):?(\d{2})?)?\s*\)?$"
)


def _time_text(value: Any, zone: tzinfo) -> str:
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
            return _text(value)  # no zone written: only the sender knows which it meant
        offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0)) * (-1 if sign == "-" else 1)
        try:
            moment = datetime.fromisoformat(f"{date}T{clock}").replace(tzinfo=timezone(offset))
        except ValueError:
            moment = None
    if moment is None:
        return _text(value)
    try:
        local = moment.astimezone(zone)
    except (OverflowError, ValueError):
        return _text(value)
    offset_text = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} (UTC{offset_text[:3]}:{offset_text[3:]})"
