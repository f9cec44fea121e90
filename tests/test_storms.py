"""Storms: both of Flashduty's limits, what goes first, a compact store that drains itself, safe replays.

The Flashduty stand-in enforces both limits per integration key; the tests read the limits from it
and scale the minute down, so that a storm's second minute comes within seconds.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import boto3
import pytest

import flashduty
import mapping
import replay
from config import RateLimits
from tests.support.callbacks import ROOT, body, load_json, metric_callback
from tests.support.flashduty import Fault, FlashdutyStub, Limits, peak, stub_process
from tests.support.s3 import names, objects, pending, stored_events
from tests.support.servers import black_hole, production_server, unreachable_push_url

KEY = "fd-storm-key-0123456789"
SCALED = Limits(per_second=100, per_minute=300, minute_seconds=6.0)


def relay_limits(limits: Limits) -> dict[str, str]:
    """The relay's settings for the limits the stand-in enforces."""
    return {
        "FLASHDUTY_MAX_RPS": str(limits.per_second),
        "FLASHDUTY_MAX_PER_MINUTE": str(limits.per_minute),
        "FLASHDUTY_MINUTE_SECONDS": str(limits.minute_seconds),
    }


@pytest.fixture
def scaled_stub():
    server = FlashdutyStub(limits=SCALED).start()
    yield server
    server.stop()


@pytest.fixture
def store_settings(scaled_stub, s3_endpoint, bucket) -> dict[str, str]:
    return {
        "FLASHDUTY_INTEGRATION_KEY": KEY,
        "FLASHDUTY_PUSH_URL": scaled_stub.url,
        "DEADLETTER_URI": f"s3://{bucket}/dlq",
        "DEADLETTER_ENDPOINT_URL": s3_endpoint,
        **relay_limits(scaled_stub.limits),
    }


def drain_until_empty(environment, settings: dict[str, str], runs: int = 8, max_seconds: float = 8) -> list[str]:
    """Timed drains, one after another as a timer would start them, until one says the store is empty."""
    environment(**settings)
    outputs = []
    for _ in range(runs):
        out = io.StringIO()
        code = replay.main(["send", "--max-seconds", str(max_seconds)], out=out)
        outputs.append(out.getvalue())
        if code == 0:
            return outputs
        assert code == 1, out.getvalue()
    raise AssertionError(f"the store did not drain in {runs} runs:\n" + "\n".join(outputs))


def statuses_by_key(received) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for r in received:
        seen.setdefault(r.event["alert_key"], []).append(r.event["event_status"])
    return seen


# Both limits -------------------------------------------------------------------------------------


def test_a_storm_is_answered_in_time_kept_in_two_writes_and_drained_within_both_limits(
    client, environment, scaled_stub, store_settings, bucket, s3_endpoint
) -> None:
    storm = metric_callback(600)
    expected = {e["alert_key"] for e in mapping.translate(storm).events}
    started = time.monotonic()
    answer = client(**store_settings).post("/", data=body(storm), headers={"x-volc-trace-id": "storm-600"})
    assert time.monotonic() - started < 8  # Volcengine's wait
    summary = answer.get_json()
    assert answer.status_code == 202, summary
    assert summary["delivered"] + summary["dead_lettered"] == 600
    assert 0 < summary["delivered"] <= scaled_stub.limits.per_minute
    assert summary["failures_by_error"] == {"rate-limit": summary["dead_lettered"]}
    assert len(summary["failures"]) == summary["listed"] == 100  # a small answer, not 600 keys
    # The raw body and what is still undelivered in one object, beside the record of what was sent.
    assert len(objects(bucket, s3_endpoint)) == 2 and len(pending(bucket, s3_endpoint)) == 1

    drain_until_empty(environment, store_settings)
    accepted = scaled_stub.accepted()
    assert {r.event["alert_key"] for r in accepted} == expected
    arrivals = [r.at for r in scaled_stub.received]
    limits = scaled_stub.limits
    assert peak([r.at for r in accepted], 1.0) <= limits.per_second
    assert peak([r.at for r in accepted], limits.minute_seconds) <= limits.per_minute
    assert sum(r.answered == 429 for r in scaled_stub.received) <= 3, "the relay keeps to the limits itself"
    assert len(arrivals) <= 603
    assert pending(bucket, s3_endpoint) == {}


def test_without_a_store_retries_of_a_storm_do_not_all_send_the_same_head(client) -> None:
    limits = Limits(per_second=50, per_minute=1000, minute_seconds=60.0)
    with stub_process(limits=limits) as push_url:
        app = client(
            FLASHDUTY_INTEGRATION_KEY=KEY,
            FLASHDUTY_PUSH_URL=push_url,
            DELIVERY_DEADLINE_SECONDS="2",
            **relay_limits(limits),
        )
        storm = body(metric_callback(400))
        delivered = []
        for _ in range(2):  # Volcengine's first attempt and a retry
            answer = app.post("/", data=storm, headers={"x-volc-trace-id": "same-callback"})
            assert answer.status_code == 503 and answer.headers["Retry-After"]
            delivered.append(answer.get_json()["delivered"])
        seen = json.loads(urllib.request.urlopen(push_url, timeout=10).read())
    reached = {e["alert_key"] for e in seen["accepted"]}
    # The second attempt mostly sent what the first did not: together they cover far more.
    assert len(reached) > max(delivered) * 1.4, (len(reached), delivered)
    assert "RequestTooFrequently" not in json.dumps(seen["answers"])
    assert 429 not in seen["answers"]


def test_the_minute_limit_holds_for_retries_and_across_callbacks(client, scaled_stub) -> None:
    app = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=scaled_stub.url, **relay_limits(scaled_stub.limits))
    scaled_stub.script(*[Fault(500)] * 20)  # 20 retries among the first requests
    for n in range(3):  # 380 requests wanted, more than a minute holds
        app.post("/", data=body(metric_callback(120, f"c{n}-")))
    arrivals = [r.at for r in scaled_stub.received]
    assert len(arrivals) > scaled_stub.limits.per_minute
    assert peak(arrivals, scaled_stub.limits.minute_seconds) <= scaled_stub.limits.per_minute
    assert peak(arrivals, 1.0) <= scaled_stub.limits.per_second
    assert 429 not in [r.answered for r in scaled_stub.received]


# What goes first ---------------------------------------------------------------------------------


def test_critical_then_warning_then_recoveries_then_info_when_not_everything_fits(stub) -> None:
    def event(n: int, status: str) -> mapping.Event:
        return {"title_rule": f"{status} {n}", "event_status": status, "alert_key": f"k-{status}-{n}"}  # type: ignore[typeddict-item]

    events = [event(n, status) for n in range(6) for status in ("Info", "Ok", "Warning", "Critical")]
    outcomes = flashduty.deliver(
        events,
        push_url=stub.url,
        integration_key="priority-key",
        deadline=time.monotonic() + 1.0,
        concurrency=1,
        limits=RateLimits(per_second=15),
        shuffle=True,
    )
    sent = [r.event["event_status"] for r in stub.received]
    assert 12 <= len(sent) < 24  # not everything fitted
    assert sent == sorted(sent, key=lambda s: flashduty.PRIORITY[s])
    assert sent[:12] == ["Critical"] * 6 + ["Warning"] * 6
    assert {o.error for o in outcomes if not o.delivered} == {"rate-limit"}


def test_events_of_one_alert_go_in_order_and_a_failure_holds_the_later_ones(stub) -> None:
    firing: mapping.Event = {"title_rule": "f", "event_status": "Critical", "alert_key": "one"}
    recovery: mapping.Event = {"title_rule": "r", "event_status": "Ok", "alert_key": "one"}
    stub.script(*[Fault(500)] * 4)
    outcomes = flashduty.deliver(
        [firing, recovery],
        push_url=stub.url,
        integration_key="order-key",
        deadline=time.monotonic() + 6,
        concurrency=8,
        limits=RateLimits(),
    )
    assert [(o.delivered, o.error) for o in outcomes] == [(False, "InternalError"), (False, "blocked")]
    assert [r.event["title_rule"] for r in stub.received] == ["f"] * 4  # the recovery never overtook it


def test_a_refused_connection_that_runs_out_of_time_says_so(client) -> None:
    app = client(
        FLASHDUTY_INTEGRATION_KEY=KEY,
        FLASHDUTY_PUSH_URL=unreachable_push_url(),
        FLASHDUTY_MAX_RPS="0.5",
        DELIVERY_DEADLINE_SECONDS="1",
    )
    (failure,) = app.post("/", data=(ROOT / "samples/event.json").read_bytes()).get_json()["failures"]
    assert (failure["error"], failure["attempts"]) == ("NewConnectionError", 1)


# Replay never undoes a newer event ---------------------------------------------------------------

METRIC = load_json("samples/metric.json")  # web-01 and web-02, firing
RECOVERED = load_json("samples/metric-recovered.json")  # web-01 recovered


def web01_key() -> str:
    return mapping.translate(RECOVERED).events[0]["alert_key"]


def test_a_stored_firing_is_superseded_by_a_recovery_delivered_since(
    client, environment, stub, store_settings, bucket, s3_endpoint
) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    app = client(**settings)
    stub.script(*[Fault(500)] * 8)  # Flashduty down: both firings stored
    assert app.post("/", data=body(METRIC)).status_code == 202
    assert app.post("/", data=body(RECOVERED)).status_code == 200  # Flashduty back: the recovery goes direct
    stub.received.clear()

    outputs = drain_until_empty(environment, settings)
    assert "1 superseded by newer events of their alerts" in outputs[0]
    sent = statuses_by_key(stub.accepted())
    assert web01_key() not in sent  # the stale firing was not sent: web-01 stays closed
    assert list(sent.values()) == [["Critical"]]  # web-02's firing was
    assert replay.main(["send"], out=io.StringIO()) == 0
    assert len(stub.received) == 1  # a second replay has nothing left to send


def test_a_stored_recovery_is_superseded_by_a_firing_delivered_since(client, environment, stub, store_settings) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    app = client(**settings)
    stub.script(*[Fault(500)] * 12)  # each of the recovery's Oks (one a level) through its retries
    assert app.post("/", data=body(RECOVERED)).status_code == 202
    assert app.post("/", data=body(METRIC)).status_code == 200  # it fired again since
    stub.received.clear()
    drain_until_empty(environment, settings)
    assert web01_key() not in {r.event["alert_key"] for r in stub.received}  # its stored Ok would have closed it
    assert web01_key() in stub.open_alerts()


def test_a_stored_firing_and_its_stored_recovery_end_closed_through_a_failing_flashduty(
    client, environment, stub, store_settings, bucket, s3_endpoint
) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url, "DELIVERY_CONCURRENCY": "1"}
    app = client(**settings)
    stub.script(*[Fault(500)] * 8)
    assert app.post("/", data=body(METRIC)).status_code == 202
    stub.script(*[Fault(500)] * 12)  # each of the recovery's Oks (one a level) through its retries
    assert app.post("/", data=body(RECOVERED)).status_code == 202
    stub.received.clear()
    stub.script(*[Fault(500)] * 4)  # the replay's first event, web-01's firing, fails through all its retries
    assert len(drain_until_empty(environment, settings)) == 2  # its recovery waited for the next run
    web01 = [r.event["event_status"] for r in stub.received if r.event["alert_key"] == web01_key()]
    assert web01 == ["Critical"] * 5 + ["Ok"]  # never the recovery before the firing
    assert web01_key() not in stub.open_alerts()
    assert pending(bucket, s3_endpoint) == {}


def test_retranslate_under_a_stricter_minimum_deletes_nothing_unsent(
    client, environment, stub, store_settings, bucket, s3_endpoint
) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    notice = load_json("samples/event.json")  # level notice: an Info event
    stub.script(*[Fault(400, "InvalidParameter")] * 3)
    app = client(**settings)
    assert app.post("/", data=body(METRIC)).status_code == 202
    assert app.post("/", data=body(notice)).status_code == 202
    stub.received.clear()
    environment(**settings, MIN_SEVERITY="Warning")
    out = io.StringIO()
    assert replay.main(["send", "--retranslate"], out=out) == 1, out.getvalue()
    assert [r.event["event_status"] for r in stub.accepted()] == ["Critical", "Critical"]
    (left,) = stored_events(bucket, s3_endpoint)
    assert left["event_status"] == "Info"  # filtered out by today's settings, so still kept


# Safe beside anything ----------------------------------------------------------------------------


def test_a_replay_beside_a_relay_that_is_storing_loses_nothing(
    client, environment, stub, store_settings, bucket, s3_endpoint
) -> None:
    relay_settings = {**store_settings, "FLASHDUTY_PUSH_URL": unreachable_push_url(), "DELIVERY_DEADLINE_SECONDS": "1"}
    app = client(**relay_settings)
    replay_settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    environment(**replay_settings)
    callbacks = [metric_callback(3, f"beside-{n}-") for n in range(6)]
    codes: list[int] = []
    done = threading.Event()

    def replays() -> None:
        while not done.is_set():
            codes.append(replay.main(["send", "--max-seconds", "5"], out=io.StringIO()))

    thread = threading.Thread(target=replays)
    thread.start()
    try:
        for callback in callbacks:  # each stores its 3 events after a second of refused connections
            assert app.post("/", data=body(callback)).status_code == 202
    finally:
        done.set()
        thread.join()
    assert codes and set(codes) <= {0, 1}
    drain_until_empty(environment, replay_settings)
    expected = {e["alert_key"] for c in callbacks for e in mapping.translate(c).events}
    assert expected <= {r.event["alert_key"] for r in stub.accepted()}
    assert pending(bucket, s3_endpoint) == {}


def test_two_relay_processes_in_one_storm_lose_nothing(environment, s3_endpoint, bucket, aws_credentials) -> None:
    limits = Limits(per_second=100, per_minute=200, minute_seconds=4.0)
    settings = {
        "FLASHDUTY_INTEGRATION_KEY": KEY,
        "DEADLETTER_URI": f"s3://{bucket}/two",
        "DEADLETTER_ENDPOINT_URL": s3_endpoint,
        "DELIVERY_DEADLINE_SECONDS": "2",
        **relay_limits(limits),
    }
    storms = [metric_callback(250, f"p{n}-") for n in range(2)]
    with stub_process(limits=limits) as push_url:
        settings["FLASHDUTY_PUSH_URL"] = push_url
        with production_server(settings) as (first, _, _), production_server(settings) as (second, _, _):
            answers: list[int] = []
            threads = [
                threading.Thread(
                    target=lambda url=url, storm=storm: answers.append(
                        urllib.request.urlopen(urllib.request.Request(url, data=body(storm)), timeout=10).status
                    )
                )
                for url, storm in ((first, storms[0]), (second, storms[1]))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        assert answers == [202, 202]  # each delivered what it could; the rest (their 429s too) is stored
        drain_until_empty(environment, settings)
        seen = json.loads(urllib.request.urlopen(push_url, timeout=10).read())
    expected = {e["alert_key"] for s in storms for e in mapping.translate(s).events}
    assert {e["alert_key"] for e in seen["accepted"]} == expected
    assert pending(bucket, s3_endpoint, "two/") == {}


def test_a_hanging_store_still_gets_an_answer_in_time(stub) -> None:
    stub.script(Fault(400, "InvalidParameter"))
    # The production server: the store's writes, still waiting when the answer goes, end with its process.
    with black_hole() as endpoint:
        settings = {
            "FLASHDUTY_INTEGRATION_KEY": KEY,
            "FLASHDUTY_PUSH_URL": stub.url,
            "DEADLETTER_URI": "s3://hanging/dlq",
            "DEADLETTER_ENDPOINT_URL": endpoint,
            "DELIVERY_DEADLINE_SECONDS": "3",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        with production_server(settings) as (url, _, _):
            started = time.monotonic()
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(url, data=(ROOT / "samples/event.json").read_bytes(), timeout=10)
            elapsed = time.monotonic() - started
    assert elapsed < 3.5  # the deadline, not the store's own timeouts and retries
    assert answer.value.code == 503 and "dead-letter store" in json.loads(answer.value.read())["error"]


# The store's formats and a drain's input ----------------------------------------------------------


def test_objects_of_the_first_format_are_still_read_and_replayed(
    environment, stub, store_settings, bucket, s3_endpoint
) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    group = "dlq/20261101T010203.000004Z_old-trace"
    events = mapping.translate(METRIC).events
    common = {"version": 1, "trace_id": "old-trace", "route": "default", "stored_at": "2026-11-01T01:02:03+00:00"}
    documents = {f"{group}_callback.json": {**common, "body": json.dumps(METRIC)}}
    for index, event in enumerate(events):
        documents[f"{group}_event-{index:04d}_HTTP-500.json"] = {
            **common,
            "callback": f"{group}_callback.json",
            "event": event,
            "attempts": 4,
            "error": {"status": 500, "code": None},
        }
    for name, document in documents.items():
        s3.put_object(Bucket=bucket, Key=name, Body=json.dumps(document).encode())

    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    environment(**settings)
    out = io.StringIO()
    assert replay.main(["list"], out=out) == 0
    assert "2 undelivered events from 1 callbacks" in out.getvalue() and "HTTP-500" in out.getvalue()
    assert replay.main(["send"], out=io.StringIO()) == 0
    assert sorted(json.dumps(r.event) for r in stub.accepted()) == sorted(json.dumps(e) for e in events)
    assert pending(bucket, s3_endpoint) == {}


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("dlq/20261101T010203.000004Z_x_deadline(1).json", b'{"version": 9, "events": []}', "format version 9"),
        ("dlq/20261101T010203.000004Z_y_deadline(1).json", b"<html>not json</html>", "is not JSON"),
        (
            "dlq/20261101T010203.000004Z_z_deadline(1).json",
            b'{"version": 2, "route": "default"}',
            "does not hold what its format says",
        ),
    ],
)
def test_objects_this_version_cannot_read_are_left_and_said(
    client, environment, stub, store_settings, bucket, s3_endpoint, name, content, says
) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    stub.script(Fault(400, "InvalidParameter"))
    assert client(**settings).post("/", data=(ROOT / "samples/event.json").read_bytes()).status_code == 202
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key=name, Body=content)
    environment(**settings)
    out = io.StringIO()
    assert replay.main(["send"], out=out) == 2
    assert says in out.getvalue() and name in out.getvalue()
    # The readable one was sent; the other is left as it is.
    assert [n for n in names(bucket, s3_endpoint) if "/sent/" not in n] == [name]
    assert len(stub.accepted()) == 1


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan", "inf"])
def test_max_seconds_must_be_a_positive_number(environment, store_settings, capsys, value: str) -> None:
    environment(**store_settings)
    with pytest.raises(SystemExit) as exit_:
        replay.main(["send", "--max-seconds", value])
    assert exit_.value.code == 2 and "positive number of seconds" in capsys.readouterr().err


def test_a_bounded_drain_stops_in_time_and_leaves_the_rest(
    client, environment, store_settings, bucket, s3_endpoint
) -> None:
    with black_hole() as hanging_flashduty:  # nothing will be accepted in this run
        settings = {**store_settings, "FLASHDUTY_PUSH_URL": unreachable_push_url(), "DELIVERY_DEADLINE_SECONDS": "1"}
        assert client(**settings).post("/", data=body(metric_callback(20))).status_code == 202
        environment(**{**settings, "FLASHDUTY_PUSH_URL": hanging_flashduty + "/event/push/alert/standard"})
        started = time.monotonic()
        out = io.StringIO()
        assert replay.main(["send", "--max-seconds", "3"], out=out) == 1
    assert time.monotonic() - started < 3, out.getvalue()
    assert "20 left in the store" in out.getvalue()
    assert len(stored_events(bucket, s3_endpoint)) == 20


def test_the_timer_entry_drains_the_store(client, event_main, stub, store_settings, bucket, s3_endpoint) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    stub.script(*[Fault(400, "InvalidParameter")] * 2)
    assert client(**settings).post("/", data=body(METRIC)).status_code == 202
    result = event_main(**settings).drain({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
    assert (result["exit_code"], result["store_empty"]) == (0, True)
    assert "done: 2 accepted, 0 left in the store" in result["output"]
    assert pending(bucket, s3_endpoint) == {} and len(stub.accepted()) == 2


def test_a_drain_backs_off_on_429_for_its_retry_after(client, environment, stub, store_settings) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    stub.script(*[Fault(400, "InvalidParameter")] * 5)
    assert client(**settings).post("/", data=body(metric_callback(5))).status_code == 202
    stub.received.clear()
    stub.script(Fault(429, "RequestTooFrequently", {"Retry-After": "2"}))  # the live relay spent the budget
    drain_until_empty(environment, settings)
    first, *rest = sorted(r.at for r in stub.received)
    assert len(rest) == 5 and min(rest) - first >= 1.9  # nothing at all was sent while held off


def test_a_one_event_callback_starts_no_thread(stub) -> None:
    probe = (
        "import json, sys, threading, main\n"
        "body = open('samples/event.json').read()\n"
        "for _ in range(3):\n"
        "    assert main.handler({'httpMethod': 'POST', 'path': '/', 'body': body})['statusCode'] == 200\n"
        "print(sorted(t.name for t in threading.enumerate()))\n"
    )
    env = {"PATH": os.environ["PATH"], "FLASHDUTY_INTEGRATION_KEY": KEY, "FLASHDUTY_PUSH_URL": stub.url}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    # No delivery pool: only the process-wide watchdog that cuts off dripping answers.
    assert out.stdout.strip() == "['MainThread', 'deliver-watchdog']", out.stderr
    assert len(stub.accepted()) == 3


def test_a_replay_of_one_callback_still_knows_its_newer_event_is_only_stored(
    client, environment, stub, store_settings, bucket, s3_endpoint
) -> None:
    settings = {**store_settings, "FLASHDUTY_PUSH_URL": stub.url}
    app = client(**settings)
    stub.script(*[Fault(400, "InvalidParameter")] * 2)
    assert app.post("/", data=body(METRIC), headers={"x-volc-trace-id": "firing"}).status_code == 202
    stub.script(*[Fault(400, "InvalidParameter")] * 3)  # each of its Oks, one a level
    assert app.post("/", data=body(RECOVERED), headers={"x-volc-trace-id": "recovery"}).status_code == 202
    stub.received.clear()
    environment(**settings)
    out = io.StringIO()
    assert replay.main(["send", "--trace-id", "firing"], out=out) == 0, out.getvalue()
    assert "superseded" not in out.getvalue()  # its recovery never reached Flashduty: both firings go
    assert [r.event["event_status"] for r in stub.accepted()] == ["Critical", "Critical"]
    assert [e["event_status"] for e in stored_events(bucket, s3_endpoint)] == ["Ok"] * 3  # next, in its own turn
