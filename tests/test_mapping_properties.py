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
    assert translation.events, "a JSON object always gives at least one event"
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
def test_keys_stable_across_level_and_status(res: dict[str, Any], rule_id: str, level: str, other_level: str) -> None:
    def key(list_name: str, lvl: str, kind_type: str) -> tuple[str, str]:
        body = {"Type": kind_type, "AccountId": "1", "RuleId": rule_id, "Level": lvl, list_name: [res]}
        (event,) = translate(body, Options()).events
        return event["alert_key"], event["event_status"]

    fired, fired_status = key("Resources", level, "Metric")
    assert key("Resources", other_level, "Metric")[0] == fired
    assert key("RecoveredResources", level, "MetricRecovered") == (fired, OK)
    no_data, _ = key("NoDataResources", level, "MetricsNoData")
    assert no_data != fired
    assert key("NoDataRecoveredResources", other_level, "NoDataRecovered") == (no_data, OK)
    assert fired_status != OK
