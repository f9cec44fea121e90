"""Hypothesis strategies for callback bodies: any JSON, and real callbacks with fields replaced."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

from tests.support.callbacks import load_json

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
