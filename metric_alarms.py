"""Metric alarm callbacks (Metric, MetricRecovered, MetricsNoData, NoDataRecovered) as Flashduty events:
one per resource in each list, with its dimensions, metrics as people read them, and the alert key
its firing and its recovery share.

Pure: no I/O, no clock, no environment; nothing here raises on a JSON object.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from event_fields import (
    OK,
    WARNING,
    Candidate,
    Event,
    EventStatus,
    Options,
    Severity,
    alert_key,
    as_dicts,
    as_number,
    as_text,
    compact_json,
    field_line,
    make_event,
    on_its_alerts,
    severity,
    snake,
    time_text,
)

METRIC, NO_DATA = "metric", "no_data"  # the kinds of alert, in their keys and labels

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
# A resource's id and name, in the fields public receivers read them from (Volcengine's docs name
# Id and Name; VeAIOps also reads ResourceId / InstanceId and ResourceName / InstanceName).
RESOURCE_ID_FIELDS = ("Id", "ResourceId", "ResourceID", "InstanceId", "InstanceID")
RESOURCE_NAME_FIELDS = ("Name", "ResourceName", "InstanceName")
# Dimensions that name the resource itself when a thin callback leaves out its Id.
RESOURCE_DIMENSIONS = frozenset({"resourceid", "resource_id", "instanceid", "instance_id"})
# What one callback may produce. BytePlus documents at most 5,000 resources for an alarm policy that
# names its resources (a policy over "all resources in a region" has no limit): past that, one
# event says how many were not sent. Metrics past METRICS_MAX are counted, not listed.
RESOURCES_MAX = 5000
METRICS_MAX = 20
# Units as people write them; any other unit is shown as sent.
# "None" is how Volcengine names the unit of a unit-less metric (its MCP server's metric schema).
UNITS = {"percent": "%", "milliseconds": "ms", "seconds": "s", "bytes": "B", "count": "", "none": ""}


class _Policy(NamedTuple):
    """What a metric callback says once for all its resources."""

    callback: Mapping[str, Any]
    status: Severity
    level_known: bool
    tags: list[tuple[str, str]]
    options: Options


def candidates(callback: Mapping[str, Any], options: Options) -> tuple[list[Candidate], int]:
    """The events of each distinct resource in each list, up to RESOURCES_MAX; and how many were past it."""
    status, known = severity(callback.get("Level"), options)
    # Callback-wide parts are built once, not once per resource (2,000 tags x 2,000 resources).
    policy = _Policy(callback, status, known, _tags(callback.get("Tags")), options)
    callback_type = as_text(callback.get("Type"))
    candidates: list[Candidate] = []
    seen: set[tuple[str, str]] = set()
    over_cap = 0
    for list_name, sent_alone_by, kind, recovers in RESOURCE_LISTS:
        resources = as_dicts(callback.get(list_name))
        if not resources and callback_type == sent_alone_by:
            resources = as_dicts(callback.get("Resource"))  # one resource, as VeAIOps's schema has it
        for resource in resources:
            identity = (list_name, compact_json(resource))
            if identity in seen:
                continue  # a resource listed twice is one alert, not two
            seen.add(identity)
            if len(seen) > RESOURCES_MAX:
                over_cap += 1
                continue
            events = _metric_events(policy, resource, kind, recovers)
            candidates += [Candidate(event, filterable=known and not recovers) for event in events]
    return candidates, over_cap


def over_cap_event(callback: Mapping[str, Any], count: int) -> Event:
    """The one event that says how many resources past RESOURCES_MAX a callback listed and were not sent."""
    rule = as_text(callback.get("RuleName")) or as_text(callback.get("RuleId")) or "a Volcengine alarm policy"
    lines = [
        f"One callback of {rule} listed {count + RESOURCES_MAX} resources; the relay sends alerts for the "
        f"first {RESOURCES_MAX} and not for the other {count}. With a dead-letter store configured, the "
        "raw callback is kept there; narrow the policy's resources, or split it.",
    ]
    return make_event(
        title=f"{rule}: {count} more resources alarming than one callback's alerts carry",
        status=WARNING,
        key_parts=(METRIC, "over-cap", as_text(callback.get("RuleId")) or rule),
        lines=lines,
        labels={
            "source": "volcengine",
            "kind": METRIC,
            "rule_id": as_text(callback.get("RuleId")),
            "over_cap": str(count),
        },
    )


class _Dimension(NamedTuple):
    name: str
    shown: str  # the name as people read it: the Chinese name when one was sent
    value: str


def _metric_events(policy: _Policy, resource: Mapping[str, Any], kind: str, recovers: bool) -> list[Event]:
    callback, options = policy.callback, policy.options
    rule_name = as_text(callback.get("RuleName"))
    rule_id = as_text(callback.get("RuleId"))
    account = as_text(callback.get("AccountId"))
    dimensions = [
        _Dimension(
            as_text(d.get("Name")),
            as_text(d.get("NameCN")) or as_text(d.get("NameCn")) or as_text(d.get("Name")),
            as_text(d.get("Value")),
        )
        for d in as_dicts(resource.get("Dimensions"))
    ]
    resource_id = _first_text(resource, RESOURCE_ID_FIELDS) or next(
        (d.value for d in dimensions if d.name.lower() in RESOURCE_DIMENSIONS and d.value), ""
    )
    resource_name = _first_text(resource, RESOURCE_NAME_FIELDS)
    alert_group = as_text(resource.get("AlertGroupId"))
    # Only the dimensions that tell sub-resources apart (a disk, a mount point): one that repeats
    # the resource id says nothing more, and a thin recovery leaves it out.
    siblings = [d for d in dimensions if d.value and d.value != resource_id]
    all_metrics = as_dicts(resource.get("Metrics"))
    metrics = _breaching_first(all_metrics, as_text(callback.get("RuleCondition")))[:METRICS_MAX]
    if not metrics and kind == NO_DATA and not recovers:
        metrics = as_dicts(resource.get("NoDataMetrics"))  # some no-data resources name them only there
    metric_names = [n for n in (as_text(m.get("Name")) for m in metrics) if n] or _names(
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
        "service": as_text(callback.get("Namespace")),
        "metric": metric_names[0] if metric_names else "",
        "callback_type": as_text(callback.get("Type")),
        "account_id": account,
        "region": as_text(resource.get("Region")),
        "project": as_text(resource.get("ProjectName")) or as_text(callback.get("Project")),
        "resource_id": resource_id,
        "resource_name": resource_name,
        "rule_id": rule_id,
        "rule_name": rule_name,
        "level": as_text(callback.get("Level")).lower(),
        "namespace": as_text(callback.get("Namespace")),
        "sub_namespace": as_text(callback.get("SubNamespace")),
        "metric_name": ",".join(metric_names),
        "metric_value": as_text(lead.get("CurrentValue")),
        "metric_threshold": as_text(lead.get("Threshold")),
        "metric_unit": _unit(lead.get("Unit")),
        "alert_group_id": alert_group,
    }
    if not policy.level_known and not recovers:
        labels["unknown_level"] = as_text(callback.get("Level")) or "(none)"
    extra_labels = [(f"dim_{snake(d.name)}", d.value) for d in dimensions] + policy.tags

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
        field_line("Rule", " ".join(filter(None, (rule_name, rule_id and f"({rule_id})")))),
        field_line("Condition", as_text(callback.get("RuleCondition"))),
        field_line("Resource", ", ".join(filter(None, (_resource_text(resource_name, resource_id), labels["region"])))),
        field_line("Dimensions", _dimensions_text(dimensions)),
        *(field_line("Metric", _metric_text(m, detailed=True)) for m in metrics),
        field_line("More metrics", str(len(all_metrics) - len(metrics)) if len(all_metrics) > len(metrics) else ""),
        *(field_line("Dropped metric", text) for text in dropped),
        field_line("Happened at", time_text(callback.get("HappenedAt"), zone)),
        field_line("First alert", time_text(resource.get("FirstAlertTime"), zone)),
        field_line("Last alert", time_text(resource.get("LastAlertTime"), zone)),
        field_line("Namespace", "/".join(filter(None, (labels["namespace"], labels["sub_namespace"])))),
        field_line("Account", account),
    ]
    identities = metric_identities(kind, rule_id or rule_name, resource_id or resource_name, alert_group, siblings)
    return on_its_alerts(
        title=title,
        status=status,
        identities=identities if recovers else identities[:1],
        lines=lines,
        labels=labels,
        extra_labels=extra_labels,
    )


def key_before_levels(kind: str, rule: str, resource: str, siblings: Iterable[tuple[str, str]]) -> str:
    """The alert key 0.3 gave a metric alarm (no level, no AlertGroupId), by which reconcile still
    knows the alerts opened before the upgrade (docs/upgrading.md)."""
    parts = metric_identities(kind, rule, resource, "", [_Dimension(name, name, value) for name, value in siblings])
    return alert_key(*parts[0])


def metric_identities(
    kind: str, rule: str, resource: str, alert_group: str, siblings: Iterable[_Dimension]
) -> list[tuple[str, ...]]:
    """What the alert keys of a metric alarm may be made of (with the severity: on_its_alerts), the
    firing's first: what both its firing and its recovery carry.

    A part of a resource (a disk, a GPU card, a listener: the dimensions that tell siblings apart) is
    named by its AlertGroupId where there is one, Volcengine's own tie between a firing and its
    recovery, which a thin recovery keeps when it drops the dimensions; without one, by those
    dimensions. A whole resource is named by itself, as a thin recovery may drop its AlertGroupId too.
    A recovery cannot tell which its firing was, so it closes both. No account (a thin recovery leaves
    it out); no-data alerts have their own kind, so a no-data recovery never closes a threshold alert.
    """
    parts = sorted(f"{d.name}={d.value}" for d in siblings)
    by_dimensions = (kind, rule, resource, *parts)
    if not alert_group:
        return [by_dimensions]
    by_group = (kind, rule, resource, f"alert_group={alert_group}")
    return [by_group, by_dimensions] if parts else [by_dimensions, by_group]


def _breaching_first(metrics: list[dict[str, Any]], rule_condition: str) -> list[dict[str, Any]]:
    """The metrics past their thresholds first, in their order; the rest after them.

    Volcengine flags each metric with `Warning`; without any flag, the value is compared with the
    threshold in the direction the metric's condition (or the rule's) gives.
    """
    flagged = any(isinstance(m.get("Warning"), bool) or as_text(m.get("Warning")) in ("true", "false") for m in metrics)

    def breaching(metric: Mapping[str, Any]) -> bool:
        if flagged:
            return as_text(metric.get("Warning")).lower() == "true"
        return _past_threshold(metric, rule_condition)

    return sorted(metrics, key=lambda m: not breaching(m))


_COMPARATOR = re.compile(r"(>=|<=|≥|≤|>|<|大于等于|小于等于|大于|小于|高于|低于)")
_ABOVE = frozenset({">=", "≥", ">", "大于等于", "大于", "高于"})


def _past_threshold(metric: Mapping[str, Any], rule_condition: str) -> bool:
    value, threshold = as_number(metric.get("CurrentValue")), as_number(metric.get("Threshold"))
    if value is None or threshold is None:
        return False
    names = [n for n in (as_text(metric.get("Name")), *_meanings(metric)) if n]
    clauses = [c for c in re.split(r"[,;，；|]|\b(?:or|and)\b|或|且|&&", rule_condition) if c.strip()]
    mentioning = [c for c in clauses if any(n in c for n in names)]
    condition = as_text(metric.get("TriggerCondition")) or next(
        iter(mentioning), clauses[0] if len(clauses) == 1 else ""
    )
    comparator = _COMPARATOR.search(condition)
    if comparator is None:
        return False
    return value >= threshold if comparator.group(1) in _ABOVE else value <= threshold


def _metric_text(metric: Mapping[str, Any], detailed: bool = False) -> str:
    name = as_text(metric.get("Name"))
    meanings = [m for m in _meanings(metric) if m != name]
    unit = _unit(metric.get("Unit"))
    value = as_text(metric.get("CurrentValue"))
    threshold = as_text(metric.get("Threshold"))
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
    return list(dict.fromkeys(text for text in (as_text(metric.get(key)) for key in _DESCRIPTIONS) if text))


def _dropped(value: Any) -> list[str]:
    """What a no-data recovery says of each dropped metric: its name, and why when it says."""
    texts = []
    for metric in value if isinstance(value, list) else [value]:
        if not isinstance(metric, dict):
            texts.append(as_text(metric))
            continue
        name = as_text(metric.get("Name")) or as_text(metric.get("Description")) or "a metric"
        reason = as_text(metric.get("Reason"))
        texts.append(f"{name}: {reason}" if reason else name)
    return [text for text in texts if text]


def _first_text(item: Mapping[str, Any], names: Iterable[str]) -> str:
    return next((text for text in (as_text(item.get(name)) for name in names) if text), "")


def _unit(value: Any) -> str:
    unit = as_text(value)
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
    return [n for n in (as_text(i.get("Name")) if isinstance(i, dict) else as_text(i) for i in items) if n]


def _tags(value: Any) -> list[tuple[str, str]]:
    """Tags as labels: a list of {Key, Value}, one such object, or a plain {key: value} object."""
    if isinstance(value, dict) and "Key" not in value:
        pairs = [(as_text(k), as_text(v)) for k, v in value.items()]
    else:
        pairs = [(as_text(tag.get("Key")), as_text(tag.get("Value"))) for tag in as_dicts(value)]
    return [(f"tag_{snake(key)}", tag_value) for key, tag_value in pairs]
