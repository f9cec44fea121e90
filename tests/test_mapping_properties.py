"""Properties of mapping.translate over generated and mutated callbacks."""

from __future__ import annotations

import copy
import json
from typing import Any

from conftest import load_json
from flashduty_stub import contract_violations
from hypothesis import given, settings
from hypothesis import strategies as st

from mapping import OK, Options, translate

# Lone surrogates too: JSON can escape them ("\ud800"), and no UTF-8 body can carry them.
any_text = st.text(st.characters(exclude_categories=()), max_size=300)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(any_text, inner, max_size=5),
    max_leaves=30,
)
REAL = [
    load_json(path)
    for path in (
        "samples/event.json",
        "samples/metric.json",
        "samples/metric-recovered.json",
        "samples/nodata.json",
        "tests/events/event-details-string.json",
        "tests/events/metric-several-lists.json",
    )
]


@st.composite
def mutated_callbacks(draw: st.DrawFn) -> dict[str, Any]:
    """A real callback with fields replaced by any JSON, at the top or one level down."""
    callback = copy.deepcopy(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        target = callback
        nested = [v for v in callback.values() if isinstance(v, dict)] + [
            item for v in callback.values() if isinstance(v, list) for item in v if isinstance(item, dict)
        ]
        if nested and draw(st.booleans()):
            target = draw(st.sampled_from(nested))
        key = draw(st.sampled_from(sorted(target)) | st.text(max_size=10)) if target else "Type"
        target[key] = draw(json_values)
    return callback


callbacks = st.dictionaries(st.text(max_size=20), json_values, max_size=8) | mutated_callbacks()


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
