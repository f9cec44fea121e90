"""The dead-letter store and `python -m replay`, on moto: in-process and as a localhost server."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

import config
import event_fields
import mapping
import metric_alarms
import replay
from deadletter import Store, StoreError
from flashduty import Outcome
from tests.support.callbacks import ROOT
from tests.support.flashduty import Fault
from tests.support.s3 import objects, pending, stored_events
from tests.support.servers import free_port

KEY = "fd-dlq-key-0123456789"
EVENT_BODY = (ROOT / "samples/event.json").read_bytes()
METRIC_BODY = (ROOT / "samples/metric.json").read_bytes()


@pytest.fixture
def relay(client, stub, s3_endpoint, bucket):
    def make(**settings: str):
        return client(
            FLASHDUTY_INTEGRATION_KEY=KEY,
            FLASHDUTY_PUSH_URL=stub.url,
            DEADLETTER_URI=f"s3://{bucket}/dlq/prod",
            DEADLETTER_ENDPOINT_URL=s3_endpoint,
            **settings,
        )

    return make


@pytest.fixture
def replay_env(environment, stub, s3_endpoint, bucket):
    def run(*argv: str, **settings: str) -> tuple[int, str]:
        environment(
            FLASHDUTY_INTEGRATION_KEY=KEY,
            FLASHDUTY_PUSH_URL=stub.url,
            DEADLETTER_URI=f"s3://{bucket}/dlq/prod",
            DEADLETTER_ENDPOINT_URL=s3_endpoint,
            **settings,
        )
        out = io.StringIO()
        code = replay.main(list(argv), out=out)
        return code, out.getvalue()

    return run


def test_a_rejected_event_is_stored_without_retries_and_answered_202(relay, stub, bucket, s3_endpoint) -> None:
    stub.script(Fault(400, "InvalidParameter"))
    answer = relay().post("/", data=EVENT_BODY, headers={"x-volc-trace-id": "trace-400"})
    assert answer.status_code == 202
    summary = answer.get_json()
    assert (summary["delivered"], summary["dead_lettered"]) == (0, 1)
    assert len(stub.received) == 1  # a permanent rejection is not retried

    stored = objects(bucket, s3_endpoint)
    assert all(k.startswith("dlq/prod/") for k in stored)
    # One object for the callback: its body and its undelivered events; and the record of what it sent.
    ((name, doc),) = pending(bucket, s3_endpoint).items()
    assert "trace-400" in name and name.endswith("_trace-400_InvalidParameter(1).json")
    (sent_name,) = set(stored) - {name}
    assert sent_name.startswith("dlq/prod/sent/") and stored[sent_name]["keys"] == summary["alert_keys"]
    assert (doc["version"], doc["route"], doc["trace_id"]) == (2, "default", "trace-400")
    assert doc["events"] == [
        {"event": summary_event(EVENT_BODY), "error": "InvalidParameter", "status": 400, "attempts": 1}
    ]
    assert json.loads(doc["body"]) == json.loads(EVENT_BODY)
    assert KEY not in json.dumps(stored)  # the route's name is stored, never its key


def summary_event(body: bytes) -> dict:
    (event,) = mapping.translate(json.loads(body)).events
    return event


def test_only_the_undelivered_events_of_a_callback_are_stored(relay, stub, bucket, s3_endpoint) -> None:
    stub.script(*[Fault(500)] * 4)  # one at a time: the first event exhausts its retries
    answer = relay(DELIVERY_CONCURRENCY="1").post("/", data=METRIC_BODY)
    assert answer.status_code == 202
    assert (answer.get_json()["delivered"], answer.get_json()["dead_lettered"]) == (1, 1)
    ((name, doc),) = pending(bucket, s3_endpoint).items()
    (event_doc,) = doc["events"]
    assert event_doc["attempts"] == 4 and (event_doc["status"], event_doc["error"]) == (500, "InternalError")
    assert name.endswith("_InternalError(1).json")


def test_everything_delivered_stores_nothing_but_the_record_of_it(relay, bucket, s3_endpoint) -> None:
    answer = relay().post("/", data=METRIC_BODY)
    assert answer.status_code == 200
    assert pending(bucket, s3_endpoint) == {}
    (record,) = objects(bucket, s3_endpoint).values()
    assert record["keys"] == sorted(answer.get_json()["alert_keys"])


def test_store_down_is_a_503_and_the_log_says_why(client, stub, aws_credentials, caplog) -> None:
    caplog.set_level("INFO", logger="relay")
    stub.script(Fault(400, "InvalidParameter"))
    app = client(
        FLASHDUTY_INTEGRATION_KEY=KEY,
        FLASHDUTY_PUSH_URL=stub.url,
        DEADLETTER_URI="s3://nowhere/dlq",
        DEADLETTER_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
    )
    answer = app.post("/", data=EVENT_BODY)
    assert answer.status_code == 503
    assert "dead-letter store" in answer.get_json()["error"]
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay"]
    assert line["status"] == 503 and "EndpointConnectionError" in line["store_error"]


def test_a_missing_bucket_is_a_503(stub, client, s3_endpoint, aws_credentials) -> None:
    stub.script(Fault(400))
    app = client(
        FLASHDUTY_INTEGRATION_KEY=KEY,
        FLASHDUTY_PUSH_URL=stub.url,
        DEADLETTER_URI="s3://no-such-bucket-here/x",
        DEADLETTER_ENDPOINT_URL=s3_endpoint,
    )
    assert app.post("/", data=EVENT_BODY).status_code == 503


def test_bad_store_settings_stop_the_start(client) -> None:
    with pytest.raises(config.ConfigError, match="DEADLETTER_URI"):
        client(DEADLETTER_URI="https://bucket/prefix")
    with pytest.raises(config.ConfigError, match="DEADLETTER_URI"):
        client(DEADLETTER_ENDPOINT_URL="http://localhost:9000")
    with pytest.raises(config.ConfigError, match="DEADLETTER_ADDRESSING_STYLE"):
        client(DEADLETTER_URI="s3://b/p", DEADLETTER_ADDRESSING_STYLE="sideways")


def test_importing_main_with_a_store_configured_loads_no_boto3() -> None:
    probe = "import sys, main; print('boto3' in sys.modules or 'botocore' in sys.modules)"
    env = {"PATH": "/usr/bin:/bin", "DEADLETTER_URI": "s3://bucket/prefix"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_in_process_store_round_trip(aws_credentials) -> None:
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="dlq")
        store = Store(config.DeadLetter("dlq", "relay/"))
        earlier = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        failed = [
            Outcome({"alert_key": "a", "event_status": "Warning", "title_rule": "t"}, False, 500, "InternalError", 4),
            Outcome({"alert_key": "b", "event_status": "Ok", "title_rule": "t"}, False, None, "deadline", 1),
        ]
        store.keep(
            trace_id="t/2 ../x", route="team-a", body=b'{"a": 1}', failures=failed[1:], now=earlier + timedelta(hours=1)
        )
        store.keep(trace_id="t1", route="default", body=b'{"a": 1}', failures=failed, now=earlier)
        entries = store.entries()
        assert [e.trace_id for e in entries] == ["t1", "t-2-x"]  # sorted by time
        assert [dict(e.errors) for e in entries] == [{"InternalError": 1, "deadline": 1}, {"deadline": 1}]
        pending_ = store.load(entries[0])
        assert [s.event["alert_key"] for s in pending_.events] == ["a", "b"] and pending_.route == "default"
        store.settle(pending_, pending_.events[1:])  # "a" was delivered
        assert [dict(e.errors) for e in store.entries()] == [{"deadline": 1}, {"deadline": 1}]
        store.settle(store.load(store.entries()[0]), [])
        assert [e.trace_id for e in store.entries()] == ["t-2-x"]
        assert store.load(entries[0]) is None  # settled meanwhile: nothing to do, no error


def test_unreadable_store_raises_a_store_error_without_secrets(aws_credentials) -> None:
    store = Store(config.DeadLetter("b", "", f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StoreError) as error:
        store.entries()
    assert "EndpointConnectionError" in str(error.value) and "testing" not in str(error.value)


# python -m replay -------------------------------------------------------------------------


def fill_store(relay_client, stub, *bodies: bytes) -> None:
    """Store every event of these callbacks, as Flashduty refuses each of them once."""
    for n, body in enumerate(bodies):
        stub.script(*[Fault(400, "InvalidParameter")] * len(mapping.translate(json.loads(body)).events))
        assert relay_client.post("/", data=body, headers={"x-volc-trace-id": f"trace-{n}"}).status_code == 202


def test_list_counts_by_error_and_age(relay, stub, replay_env) -> None:
    fill_store(relay(), stub, EVENT_BODY, METRIC_BODY)
    code, out = replay_env("list")
    assert code == 0
    assert "3 undelivered events from 2 callbacks" in out
    assert "InvalidParameter" in out and "3" in out.split("InvalidParameter")[1].splitlines()[0]
    assert "< 1h" in out


def test_send_delivers_then_deletes_and_is_safe_to_run_twice(relay, stub, replay_env, bucket, s3_endpoint) -> None:
    fill_store(relay(), stub, EVENT_BODY, METRIC_BODY)
    stored = stored_events(bucket, s3_endpoint)
    stub.received.clear()
    code, out = replay_env("send")
    assert code == 0, out
    assert "3/3 sent: 3 accepted" in out
    assert sorted(json.dumps(r.event) for r in stub.accepted()) == sorted(json.dumps(e) for e in stored)
    assert pending(bucket, s3_endpoint) == {}  # raw bodies too, once nothing of theirs is left
    assert replay_env("send") == (0, "sending 0 events from 0 callbacks\ndone: 0 accepted, 0 left in the store\n")


def test_send_keeps_what_flashduty_still_refuses(relay, stub, replay_env, bucket, s3_endpoint) -> None:
    fill_store(relay(), stub, EVENT_BODY)
    stub.script(Fault(401, "Unauthorized"))
    code, out = replay_env("send")
    assert code == 1 and "1 left in the store" in out
    assert len(stored_events(bucket, s3_endpoint)) == 1


def test_send_filters_and_dry_run(relay, stub, replay_env, bucket, s3_endpoint) -> None:
    fill_store(relay(), stub, EVENT_BODY, METRIC_BODY)
    before = pending(bucket, s3_endpoint)
    stub.received.clear()
    code, out = replay_env("send", "--dry-run")
    assert code == 0 and "would send 3 events" in out and "ecs cpu high" in out
    assert replay_env("send", "--min-age", "1h")[1].startswith("sending 0 events")
    assert replay_env("send", "--error", "deadline")[1].startswith("sending 0 events")
    assert stub.received == [] and pending(bucket, s3_endpoint) == before

    code, out = replay_env("send", "--trace-id", "trace-0", "--max-age", "1d")
    assert code == 0 and "sending 1 events from 1 callbacks" in out
    assert [r.event["labels"]["kind"] for r in stub.accepted()] == ["event"]
    assert all("trace-0" not in key for key in pending(bucket, s3_endpoint))


def test_send_says_how_many_events_its_selection_leaves_and_why(relay, stub, replay_env, bucket, s3_endpoint) -> None:
    fill_store(relay(), stub, EVENT_BODY, METRIC_BODY)  # 3 events, stored just now
    before = pending(bucket, s3_endpoint)
    stub.received.clear()
    code, out = replay_env("send", "--min-age", "10m")
    assert out.splitlines() == [
        "sending 0 events from 0 callbacks",
        "  3 not chosen by --min-age: they stay in the store",
        "done: 0 accepted, 3 left in the store (3 not chosen)",
    ]
    assert code == 0  # all that was asked for is done: what it was not asked for is not a failure
    assert stub.received == [] and pending(bucket, s3_endpoint) == before

    code, out = replay_env("send", "--trace-id", "trace-0", "--max-age", "1d")
    assert "  2 not chosen by --max-age, --trace-id: they stay in the store" in out.splitlines()
    assert code == 0 and out.endswith("done: 1 accepted, 2 left in the store (2 not chosen)\n")

    stub.script(Fault(401, "Unauthorized"), Fault(401, "Unauthorized"))
    code, out = replay_env("send", "--trace-id", "trace-1")
    assert code == 1 and out.endswith("done: 0 accepted, 2 left in the store\n")  # none passed over: trace-0 went


def test_send_retranslate_uses_todays_mapping(relay, stub, replay_env, bucket, s3_endpoint) -> None:
    stub.script(Fault(400, "InvalidParameter"))  # only one of the metric callback's two events
    assert relay().post("/", data=METRIC_BODY).get_json()["dead_lettered"] == 1
    stub.received.clear()
    code, out = replay_env("send", "--retranslate", SEVERITY_OVERRIDES='{"critical": "Warning"}')
    assert code == 0, out
    assert [r.event["event_status"] for r in stub.accepted()] == ["Warning", "Warning"]  # both, re-translated
    assert pending(bucket, s3_endpoint) == {}


def test_two_replays_at_once_lose_nothing(relay, stub, replay_env, bucket, s3_endpoint) -> None:
    fill_store(relay(), stub, EVENT_BODY, METRIC_BODY, EVENT_BODY.replace(b"i-3tlf2xkx8w0hcexample", b"i-other"))
    expected = {json.dumps(event) for event in stored_events(bucket, s3_endpoint)}
    stub.received.clear()
    stub.delay = 0.05
    codes = []
    threads = [
        threading.Thread(target=lambda: codes.append(replay.main(["send"], out=io.StringIO()))) for _ in range(2)
    ]
    replay_env("list")  # sets the environment both threads read
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [0, 0]
    assert expected <= {json.dumps(r.event) for r in stub.accepted()}
    assert pending(bucket, s3_endpoint) == {}


def test_replay_without_a_store_says_so(environment, capsys) -> None:
    environment()
    with pytest.raises(SystemExit) as exit_:
        replay.main(["list"])
    assert exit_.value.code == 2 and "DEADLETTER_URI" in capsys.readouterr().err


def test_replay_command_runs_as_a_module(relay, stub) -> None:
    fill_store(relay(), stub, EVENT_BODY)
    out = subprocess.run(
        [sys.executable, "-m", "replay", "list"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "1 undelivered events from 1 callbacks" in out.stdout


def _keys_of_0_3(**event: object) -> list[event_fields.Event]:
    """The relay as 0.3 translated a metric alarm: one alert key per alarm, no level in it."""
    first = event_fields.on_its_alerts(**event)[0]  # type: ignore[arg-type]
    return [{**first, "alert_key": event_fields.alert_key(*event["identities"][0])}]  # type: ignore[index]


def test_retranslate_after_the_upgrade_never_reopens_an_alarm_that_recovered(
    client, stub, environment, bucket, s3_endpoint, monkeypatch
) -> None:
    """Alert never closing: 0.3 stored a firing (Flashduty refused it), then delivered its recovery.
    After upgrading, `replay send` knows the firing is superseded, but `replay send --retranslate`
    (docs/guarantees.md) gives it 0.4's key, which nothing sent since: it opens an alert for an alarm
    that has recovered, and no recovery will ever come for it."""
    store = {"DEADLETTER_URI": f"s3://{bucket}/dlq/prod", "DEADLETTER_ENDPOINT_URL": s3_endpoint}
    relay_settings = {"FLASHDUTY_INTEGRATION_KEY": KEY, "FLASHDUTY_PUSH_URL": stub.url, **store}
    firing = json.loads((ROOT / "samples/metric.json").read_bytes())
    recovery = {**copy.deepcopy(firing), "Type": "MetricRecovered", "RecoveredResources": firing["Resources"]}
    recovery["Resources"] = []
    with monkeypatch.context() as old:
        old.setattr(metric_alarms, "on_its_alerts", _keys_of_0_3)
        app = client(**relay_settings)
        stub.script(Fault(400, "InvalidParameter"), Fault(400, "InvalidParameter"))
        assert app.post("/", json=firing).get_json()["dead_lettered"] == 2
        assert app.post("/", json=recovery).get_json()["delivered"] == 2
    assert stub.open_alert_records() == []
    environment(**relay_settings)
    out = io.StringIO()
    replay.main(["send", "--retranslate"], out=out)
    assert stub.open_alert_records() == [], out.getvalue()
