"""Fault matrix: each Flashduty fault, with and without a dead-letter store; 0 events lost (deadline 1 s).

Each fault lasts for the whole callback (Flashduty down in that way). Every event must end
delivered, stored, or with the caller told to retry (a 503). Run with -s to see the table.
"""

from __future__ import annotations

import json

import pytest

import mapping
from tests.support.callbacks import load_json
from tests.support.flashduty import Fault, FlashdutyStub
from tests.support.s3 import stored_events
from tests.support.servers import unreachable_push_url

SAMPLE = load_json("samples/metric.json")
EVENTS = {e["alert_key"] for e in mapping.translate(SAMPLE).events}
FAULTS = {
    "500": Fault(500, "InternalError"),
    "502": Fault(502),
    "503": Fault(503),
    "429 Retry-After: 1": Fault(429, "RequestTooFrequently", {"Retry-After": "1"}),
    "429 no Retry-After": Fault(429, "RequestTooFrequently"),
    "timeout": Fault(200, delay=5),
    "connection reset": Fault(reset=True),
    "connection refused": None,  # nothing listens at the push URL
    "400": Fault(400, "InvalidParameter"),
    "401": Fault(401, "Unauthorized"),
}


@pytest.mark.parametrize("with_store", [False, True], ids=["no store", "store"])
def test_fault_matrix(client, s3_endpoint, bucket, with_store: bool) -> None:
    rows = []
    for name, fault in FAULTS.items():
        stub = FlashdutyStub().start()  # one per fault: late retries of a hang must not count for the next
        stub.fault_source = lambda f=fault: f
        settings = {
            "FLASHDUTY_INTEGRATION_KEY": "k",
            "DELIVERY_DEADLINE_SECONDS": "1",
            "FLASHDUTY_PUSH_URL": stub.url if fault else unreachable_push_url(),
        }
        prefix = name.replace(" ", "-").replace(":", "")
        if with_store:
            settings.update(DEADLETTER_URI=f"s3://{bucket}/{prefix}", DEADLETTER_ENDPOINT_URL=s3_endpoint)
        try:
            answer = client(**settings).post("/", data=json.dumps(SAMPLE), headers={"x-volc-trace-id": prefix})
        finally:
            stub.stop()
        summary = answer.get_json()
        delivered = set(summary["alert_keys"]) - {f["alert_key"] for f in summary.get("failures", [])}
        assert delivered <= {r.event["alert_key"] for r in stub.accepted()}  # the relay's word, checked
        stored = {event["alert_key"] for event in stored_events(bucket, s3_endpoint, prefix + "/")}
        told_to_retry = EVENTS if answer.status_code == 503 else set()
        lost = EVENTS - delivered - stored - told_to_retry
        rows.append((name, answer.status_code, len(delivered), len(stored), len(told_to_retry), len(lost)))

    store = "store" if with_store else "no store"
    print(f"\n| Flashduty fault ({store}) | answer | delivered | stored | told to retry | lost |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(map(str, row)) + " |")
    assert [row[5] for row in rows] == [0] * len(rows)
    assert {row[1] for row in rows} == ({202} if with_store else {503})
    if with_store:
        assert all(row[3] == len(EVENTS) for row in rows)
