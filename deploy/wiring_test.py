"""`python -m deploy test`: a test event and its Ok through the deployed relay, as Cloud Monitor sends
them; the relay marks them as a test (Info, `test=true`), so they page nobody."""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

import requests

import mapping


def wiring_callbacks() -> tuple[dict[str, Any], dict[str, Any]]:
    """A firing and its recovery that the relay marks as a test: Info, `test=true`, never filtered."""
    policy = {
        mapping.WIRING_TEST: True,
        "RuleName": "volc-flashduty-relay wiring test",
        "RuleId": "relay-wiring-test",
        "Namespace": "VCM_Relay",
        "Level": "notice",
        "RuleCondition": "python -m deploy test",
    }
    resource = {
        "Id": "relay-wiring-test",
        "Name": "volc-flashduty-relay",
        "Metrics": [{"Name": "WiringTest", "CurrentValue": 1, "Threshold": 0}],
    }
    return (
        {**policy, "Type": "Metric", "Resources": [resource]},
        {**policy, "Type": "MetricRecovered", "RecoveredResources": [resource]},
    )


def wiring_test(url: str, token: str | None, out: TextIO) -> int:
    """Send a test event and its Ok through the deployed relay; 0 when Flashduty took both."""
    delivered = 0
    for what, callback in zip(("test event (Info, test=true)", "its Ok"), wiring_callbacks(), strict=True):
        headers = {"Content-Type": "application/json", "x-volc-trace-id": f"wiring-test-{os.getpid()}"}
        if token:
            headers["Token"] = token
        try:
            response = requests.post(url, data=json.dumps(callback), headers=headers, timeout=15)
        except requests.RequestException as error:
            print(f"- {what}: cannot reach {url} ({type(error).__name__})", file=out)
            return 1
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        said = {k: answer[k] for k in ("delivered", "failed", "dry_run", "error", "trace_id") if k in answer}
        print(f"- {what}: HTTP {response.status_code} {json.dumps(said)}", file=out)
        if answer.get("dry_run"):
            print("the relay is a dry run: nothing reached Flashduty (set FLASHDUTY_INTEGRATION_KEY)", file=out)
            return 1
        # The Ok goes to the test alert of every level (docs/flashduty-events.md): all of them, delivered.
        delivered += response.status_code == 200 and bool(answer.get("delivered")) and answer.get("failed") == 0
    print("wiring works: Flashduty took both" if delivered == 2 else "wiring failed: see the answers above", file=out)
    return 0 if delivered == 2 else 1
