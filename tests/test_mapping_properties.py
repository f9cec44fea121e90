"""Properties of mapping.translate over generated and mutated callbacks."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mapping import OK, Options, translate
from tests.support.flashduty import contract_violations
from tests.support.strategies import callbacks


@settings(max_examples=300, deadline=None)
@given(callbacks)
def test_never_raises_and_always_valid_for_flashduty(callback: dict[str, Any]) -> None:
    translation = translate(callback)
    assert translation.events or translation.note, "a JSON object gives an event, or says why not"
    for event in translation.events:
        assert contract_violations(event) == []
        json.dumps(event, allow_nan=False, ensure_ascii=False).encode("utf-8")  # sendable as strict JSON


@settings(max_examples=200, deadline=None)
@given(callbacks)
def test_deterministic(callback: dict[str, Any]) -> None:
    first = json.dumps(translate(callback).events, ensure_ascii=False)
    assert json.dumps(translate(copy.deepcopy(callback)).events, ensure_ascii=False) == first


resource = st.fixed_dictionaries(
    {"Id": st.text(min_size=1, max_size=30), "Name": st.text(max_size=30)},
    optional={
        "Region": st.text(max_size=15),
        "Dimensions": st.lists(
            st.fixed_dictionaries({"Name": st.text(max_size=10), "Value": st.text(max_size=10)}), max_size=3
        ),
        "Metrics": st.lists(
            st.fixed_dictionaries({"Name": st.text(max_size=10), "CurrentValue": st.floats(allow_nan=False)}),
            max_size=2,
        ),
    },
)


@settings(max_examples=200, deadline=None)
@given(
    resource,
    st.text(max_size=20),
    st.sampled_from(["critical", "warning", "notice", "CRITICAL", "Warning", "unknown"]),
    st.sampled_from(["critical", "warning", "notice", "p1"]),
)
def test_one_alert_per_level_and_the_recovery_closes_each(
    res: dict[str, Any], rule_id: str, level: str, other_level: str
) -> None:
    def events(list_name: str, lvl: str, kind_type: str) -> list[tuple[str, str]]:
        body = {"Type": kind_type, "AccountId": "1", "RuleId": rule_id, "Level": lvl, list_name: [res]}
        return [(e["alert_key"], e["event_status"]) for e in translate(body, Options()).events]

    ((fired, fired_status),) = events("Resources", level, "Metric")
    ((other, other_status),) = events("Resources", other_level, "Metric")
    assert (other == fired) is (other_status == fired_status) and fired_status != OK
    for fired_key in (fired, other):
        assert (fired_key, OK) in events("RecoveredResources", other_level, "MetricRecovered")
    ((no_data, _),) = events("NoDataResources", level, "MetricsNoData")
    assert no_data not in (fired, other)
    assert (no_data, OK) in events("NoDataRecoveredResources", other_level, "NoDataRecovered")
    assert (fired, OK) not in events("NoDataRecoveredResources", level, "NoDataRecovered")


names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(lambda s: s.strip())


@st.composite
def alarm_ends(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A firing of one alarm on one resource, and a recovery of it that carries less.

    The recovery keeps what both ends of an alarm always carry (the rule id, the resource's id, as
    its Id or as a ResourceID dimension, and what tells a part of the resource from its siblings: its
    AlertGroupId where the firing had one, else its dimensions) and may drop anything else: the
    account, names, region, metrics, tags, the level, the dimensions of a part that keeps its
    AlertGroupId, the AlertGroupId of a whole resource.
    """
    resource_id = draw(names)
    siblings = draw(
        st.lists(
            st.fixed_dictionaries(
                {"Name": names, "Value": names.filter(lambda v: v != resource_id)}, optional={"NameCN": names}
            ),
            max_size=3,
            unique_by=lambda d: d["Name"],
        )
    )
    itself = {"Name": "ResourceID", "NameCN": "实例ID", "Value": resource_id}
    firing_resource: dict[str, Any] = {
        "Id": resource_id,
        "Name": draw(names),
        "Region": "cn-beijing",
        "Dimensions": [itself, *siblings],
        "Metrics": [{"Name": "CpuTotal", "CurrentValue": 97, "Threshold": 90, "Warning": True}],
    }
    grouped = draw(st.booleans())
    if grouped:
        firing_resource["AlertGroupId"] = draw(names)
    if draw(st.booleans()):
        del firing_resource["Id"]  # named only by its ResourceID dimension
    kept_siblings = [
        {k: v for k, v in d.items() if k != "NameCN" or draw(st.booleans())}
        for d in draw(st.permutations(copy.deepcopy(siblings)))
    ]
    if grouped and siblings and draw(st.booleans()):
        kept_siblings = []  # a thin recovery of a part: its AlertGroupId says which
    recovery_resource: dict[str, Any] = {"Id": resource_id, "Dimensions": kept_siblings}
    if draw(st.booleans()):
        recovery_resource = {"Dimensions": [itself, *kept_siblings]}
    for name in ("Name", "Region", "Metrics"):
        if draw(st.booleans()):
            recovery_resource[name] = copy.deepcopy(firing_resource[name])
    if grouped and (siblings or draw(st.booleans())):
        recovery_resource["AlertGroupId"] = firing_resource["AlertGroupId"]
    rule = {"RuleId": draw(names), "RuleName": draw(names), "Level": draw(st.sampled_from(["critical", "P0", ""]))}
    no_data = draw(st.booleans())
    firing = {
        "Type": "MetricsNoData" if no_data else "Metric",
        "AccountId": draw(names),
        "Namespace": "VCM_ECS",
        "Tags": [{"Key": "env", "Value": "prod"}],
        **rule,
        "NoDataResources" if no_data else "Resources": [firing_resource],
    }
    listed = recovery_resource if draw(st.booleans()) else [recovery_resource]
    recovery = {
        "Type": "NoDataRecovered" if no_data else "MetricRecovered",
        "RuleId": rule["RuleId"],
        "NoDataRecoveredResources" if no_data else "RecoveredResources": listed,
    }
    for name in ("AccountId", "RuleName", "Level", "Namespace", "Tags"):
        if draw(st.booleans()):
            recovery[name] = copy.deepcopy(firing[name])
    return firing, recovery


@settings(max_examples=300, deadline=None)
@given(alarm_ends())
def test_a_thinner_recovery_closes_its_firing(ends: tuple[dict[str, Any], dict[str, Any]]) -> None:
    firing, recovery = ends
    (fired,) = translate(firing).events
    recovered = translate(recovery).events
    assert fired["event_status"] != OK and {e["event_status"] for e in recovered} == {OK}
    assert fired["alert_key"] in {e["alert_key"] for e in recovered}


@settings(max_examples=100, deadline=None)
@given(alarm_ends(), names)
def test_sub_resources_stay_apart(ends: tuple[dict[str, Any], dict[str, Any]], other: str) -> None:
    firing, _ = ends
    (resource,) = next(v for k, v in firing.items() if k.endswith("Resources"))
    sibling = copy.deepcopy(resource)
    sibling["Dimensions"].append({"Name": "DiskName", "Value": other})
    if "AlertGroupId" in sibling:
        sibling["AlertGroupId"] += "-sibling"  # each part is an alarm of its own
    if other == resource.get("Id", resource["Dimensions"][0]["Value"]) or any(
        d["Name"] == "DiskName" for d in resource["Dimensions"]
    ):
        return
    (fired,) = translate(firing).events
    firing_sibling = {**firing, **{k: [sibling] for k in firing if k.endswith("Resources")}}
    (fired_sibling,) = translate(firing_sibling).events
    assert fired_sibling["alert_key"] != fired["alert_key"]
