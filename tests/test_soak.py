"""Soak: many callbacks against a Flashduty that fails at random, the store on moto's server.

After Volcengine-style retries and one `replay send`, every event of every callback must have
reached Flashduty at least once. Run with -s to see the counts.
"""

from __future__ import annotations

import copy
import io
import json
import random
import threading
from collections import Counter

import mapping
import replay
from tests.support.callbacks import load_json, metric_callback
from tests.support.flashduty import Fault
from tests.support.s3 import pending

KEY = "fd-soak-key-0123456789"
CALLBACKS = 40
VOLCENGINE_RETRIES = 3


def callbacks(rng: random.Random) -> list[dict]:
    event = load_json("samples/event.json")
    made = []
    for n in range(CALLBACKS):
        shape = rng.choice(("event", "metric", "recovered"))
        if shape == "event":
            callback = copy.deepcopy(event)
            callback["Details"]["volcresourcename"] = f"i-soak-{n}"
        elif shape == "metric":
            callback = metric_callback(rng.randint(1, 6), f"soak-{n}-")
        else:
            callback = metric_callback(
                rng.randint(1, 6), f"soak-{n}-", sample="samples/metric-recovered.json", listed="RecoveredResources"
            )
        made.append(callback)
    return made


def test_soak_no_event_is_lost(client, stub, s3_endpoint, bucket, environment) -> None:
    rng = random.Random(20261124)
    lock = threading.Lock()
    faults: Counter[str] = Counter()

    def random_fault() -> Fault:
        with lock:
            roll = rng.random()
            for limit, name, fault in (
                (0.08, "500", Fault(500)),
                (0.14, "429", Fault(429, "RequestTooFrequently", {"Retry-After": "0"})),
                (0.18, "400", Fault(400, "InvalidParameter")),
                (0.20, "hang", Fault(503, delay=2.5)),
                (0.22, "reset", Fault(reset=True)),
            ):
                if roll < limit:
                    faults[name] += 1
                    return fault
            return Fault()

    settings = dict(
        FLASHDUTY_INTEGRATION_KEY=KEY,
        FLASHDUTY_PUSH_URL=stub.url,
        DEADLETTER_URI=f"s3://{bucket}/soak",
        DEADLETTER_ENDPOINT_URL=s3_endpoint,
        DELIVERY_DEADLINE_SECONDS="2",
    )
    app = client(**settings)
    stub.fault_source = random_fault
    sent = callbacks(rng)
    answers: Counter[int] = Counter()
    for n, callback in enumerate(sent):
        for _ in range(1 + VOLCENGINE_RETRIES):  # Volcengine retries a failed delivery 3 times
            status = app.post("/", data=json.dumps(callback), headers={"x-volc-trace-id": f"soak-{n}"}).status_code
            answers[status] += 1
            if 200 <= status < 300:
                break

    stub.fault_source = None
    environment(**settings)
    out = io.StringIO()
    assert replay.main(["send"], out=out) == 0, out.getvalue()

    expected = {json.dumps(e, sort_keys=True) for c in sent for e in mapping.translate(c).events}
    reached = {json.dumps(r.event, sort_keys=True) for r in stub.accepted()}
    lost = expected - reached
    print(
        f"\nsoak: {len(sent)} callbacks, {len(expected)} events, {sum(faults.values())} faults injected "
        f"({dict(faults)}), answers {dict(answers)}, events lost: {len(lost)}"
    )
    assert sum(faults.values()) > 0 and answers[202] > 0  # the faults really happened and were stored
    assert not lost
    assert pending(bucket, s3_endpoint) == {}
