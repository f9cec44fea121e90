"""Fuzz the real app with generated bodies: never a 5xx of our own, never a traceback, always JSON."""

from __future__ import annotations

import json

import pytest
from functions_framework import create_app
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callback import LISTED_MAX
from tests.support.callbacks import ROOT
from tests.support.strategies import json_values, mutated_callbacks

OURS_MAY_ANSWER = {200, 400, 413}


def bodies() -> st.SearchStrategy[bytes]:
    as_json = (json_values | mutated_callbacks() | st.dictionaries(st.text(), json_values)).map(
        lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    huge = st.integers(1, 3).map(lambda n: json.dumps({"Type": "Event", "EventType": "x" * (n * 300_000)}).encode())
    deep = st.integers(1, 200_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
    return (
        as_json
        | st.binary(max_size=2000)
        | huge
        | deep
        | mutated_callbacks().map(
            lambda value: json.dumps(value).encode()[:-1]  # cut short
        )
    )


@pytest.fixture(scope="module")
def app():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("FLASHDUTY_INTEGRATION_KEY", "ROUTES", "CALLBACK_TOKEN", "DEADLETTER_URI"):
            patch.delenv(name, raising=False)
        patch.setenv("DRY_RUN", "true")
        yield create_app(target="relay", source=str(ROOT / "main.py")).test_client()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@example(body=b'{"a":' * 900 + b"1" + b"}" * 900, content_type="application/json")  # parses, deep
@example(body=b'{"a":' * 5000 + b"1" + b"}" * 5000, content_type="application/json")  # too deep to parse
@example(body=b'{"Type": "Event", "Id": "\xc3\x28"}', content_type="application/json")  # invalid UTF-8
@example(body=b'{"Type": "Event", "Id": "\\ud800"}', content_type="application/json")  # lone surrogate
@given(
    body=bodies(), content_type=st.sampled_from(["application/json", "text/plain", "", "application/json; charset=gbk"])
)
def test_any_body_gets_a_json_answer_and_never_a_5xx(app, body: bytes, content_type: str) -> None:
    answer = app.post("/", data=body, content_type=content_type)
    assert answer.status_code in OURS_MAY_ANSWER
    text = answer.get_data(as_text=True)
    assert "Traceback" not in text
    payload = json.loads(text)
    assert isinstance(payload, dict)
    if answer.status_code == 200:
        assert payload["events"] >= 1 or payload["note"]  # an object gives an event, or says why not
        assert len(payload["translated"]) == min(payload["events"], LISTED_MAX)
    else:
        assert payload["error"]
