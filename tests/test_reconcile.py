"""`python -m reconcile`: the real Cloud Monitor SDK against the OpenAPI stand-in, the real app for the
callbacks that did arrive, the Flashduty stand-in enforcing its limits, and moto for the store."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import mapping
import reconcile
from tests.support.flashduty import FlashdutyStub, Limits, peak
from tests.support.openapi import ACCESS_KEY, SECRET_KEY, OpenAPIStub

KEY = "fd-reconcile-key-0123456789"
WEBHOOK = "volc-flashduty-relay"


def epoch(minutes_ago: float) -> int:
    return int((datetime.now(UTC) - timedelta(minutes=minutes_ago)).timestamp())


@pytest.fixture
def policy(openapi: OpenAPIStub) -> dict:
    """An alarm policy that calls the relay's callback URL, as the deploy leaves it."""
    rule = openapi.add_alarm_policy("cpu-high")
    openapi.webhooks["1"] = {
        "Id": "1",
        "Name": WEBHOOK,
        "Type": "custom",
        "Url": "https://relay/",
        "RuleIds": [rule["Id"]],
    }
    openapi.webhooks["1"]["EventRuleIds"] = []
    return rule


@pytest.fixture
def settings(openapi: OpenAPIStub, stub: FlashdutyStub, store: dict[str, str]) -> dict[str, str]:
    return {
        "FLASHDUTY_INTEGRATION_KEY": KEY,
        "FLASHDUTY_PUSH_URL": stub.url,
        **store,
        "VOLCENGINE_ACCESS_KEY": ACCESS_KEY,
        "VOLCENGINE_SECRET_KEY": SECRET_KEY,
        "VOLCENGINE_OPENAPI_ENDPOINT": openapi.origin,
    }


@pytest.fixture
def run(settings: dict[str, str]) -> Callable[..., tuple[int, str]]:
    def reconcile_with(max_seconds: float = 60.0, since: timedelta = timedelta(minutes=30), **more: str):
        out = io.StringIO()
        code = reconcile.run({**settings, **more}, since=since, max_seconds=max_seconds, dry_run=False, out=out)
        return code, out.getvalue()

    return reconcile_with


def callback_of(group: dict, recovered: bool) -> dict:
    """The callback Volcengine sends for the group (the shape the relay's fixtures have)."""
    resource = {"Id": group["ResourceId"], "Name": group["ResourceName"], "Region": "cn-beijing"}
    resource["Dimensions"] = [{"Name": "ResourceID", "Value": group["ResourceId"]}]
    resource["Metrics"] = [{"Name": "CpuTotal", "CurrentValue": 97 if not recovered else 12, "Threshold": 90}]
    if not recovered:
        resource["Metrics"][0]["Unit"] = "Percent"  # a firing carries more than its recovery
    return {
        "Type": "MetricRecovered" if recovered else "Metric",
        "AccountId": "2100000001",
        "RuleId": group["RuleId"],
        "RuleName": group["RuleName"],
        "Level": group["Level"],
        "Namespace": group["Namespace"],
        "RecoveredResources" if recovered else "Resources": [resource],
    }


def test_an_outage_that_lost_a_firing_and_its_recovery_opens_and_closes_the_alert(run, openapi, policy, stub) -> None:
    openapi.add_alert_group(policy, "i-lost", epoch(20), AlertState="Recovered", EndAt=epoch(8))
    code, out = run()
    assert code == 0, out
    statuses = [r.event["event_status"] for r in stub.accepted()]
    assert statuses == ["Critical", "Ok"]  # opened, then closed: the on-call sees it happened
    assert stub.open_alerts() == [] and len(stub.alerts()) == 1
    assert all(r.event["labels"]["reconciled"] == "true" for r in stub.accepted())
    assert openapi.violations == []


def test_a_recovery_whose_callback_failed_closes_the_alert_the_callback_opened(
    run, openapi, policy, stub, client, settings
) -> None:
    group = openapi.add_alert_group(policy, "i-web-01", epoch(0.1))
    app = client(**{k: v for k, v in settings.items() if not k.startswith("VOLCENGINE")})
    assert app.post("/", json=callback_of(group, recovered=False)).status_code == 200
    # It recovered just after (Volcengine's seconds), while the relay was out of reach: that callback never arrived.
    group.update(AlertState="Recovered", EndAt=int(time.time()) + 2)
    code, out = run()
    assert code == 0, out
    relay_firing, reconciled_ok = stub.accepted()
    assert relay_firing.event["alert_key"] == reconciled_ok.event["alert_key"]  # one alert, closed
    assert reconciled_ok.event["event_status"] == "Ok" and stub.open_alerts() == []
    assert "1 already" not in out and "1 to send" in out


def test_alarms_the_callbacks_delivered_send_nothing_and_a_second_run_neither(
    run, openapi, policy, stub, client, settings
) -> None:
    delivered = openapi.add_alert_group(policy, "i-ok", epoch(25), AlertState="Recovered", EndAt=epoch(10))
    still_on = openapi.add_alert_group(policy, "i-on", epoch(15))
    lost = openapi.add_alert_group(policy, "i-lost", epoch(12), AlertState="alerting")  # the other spelling
    app = client(**{k: v for k, v in settings.items() if not k.startswith("VOLCENGINE")})
    for body in (callback_of(delivered, False), callback_of(delivered, True), callback_of(still_on, False)):
        assert app.post("/", json=body).status_code == 200
    before = len(stub.accepted())

    code, out = run()
    assert code == 0, out
    sent = stub.accepted()[before:]
    assert [(r.event["event_status"], r.event["labels"]["resource_id"]) for r in sent] == [("Critical", "i-lost")]
    assert "3 alerts, 2 already with the relay, 1 to send" in out
    assert lost["Id"] == sent[0].event["labels"]["alert_group_id"]

    code, out = run()
    assert code == 0 and len(stub.accepted()) == before + 1, out
    assert "3 already with the relay, 0 to send" in out


def test_a_newer_alarm_of_the_same_alert_is_what_counts(run, openapi, policy, stub) -> None:
    openapi.add_alert_group(policy, "i-flap", epoch(25), AlertState="Recovered", EndAt=epoch(20))
    openapi.add_alert_group(policy, "i-flap", epoch(10))  # it fired again, and is on now
    code, out = run()
    assert code == 0, out
    assert [r.event["event_status"] for r in stub.accepted()] == ["Critical"]
    assert len(stub.open_alerts()) == 1


def test_the_event_has_the_callbacks_alert_key_for_every_dimension_spelling() -> None:
    group = {"Id": "7", "RuleId": "r1", "RuleName": "disk", "Level": "warning", "ResourceId": "i-1", "StartAt": 1}
    callback = {
        "Type": "Metric",
        "RuleId": "r1",
        "RuleName": "disk",
        "Level": "warning",
        "Resources": [
            {"Id": "i-1", "Dimensions": [{"Name": "ResourceID", "Value": "i-1"}, {"Name": "DiskName", "Value": "vda"}]}
        ],
    }
    (expected,) = mapping.translate(callback).events
    spellings = [
        "ResourceID=i-1,DiskName=vda",
        "ResourceID:i-1; DiskName:vda",
        '{"ResourceID": "i-1", "DiskName": "vda"}',
        '[{"Name": "ResourceID", "Value": "i-1"}, {"Name": "DiskName", "Value": "vda"}]',
    ]
    for dimension in spellings:
        event = mapping.reconciled(mapping.alert_group({**group, "Dimension": dimension}).firing)
        assert event is not None and event["alert_key"] == expected["alert_key"], dimension


def test_a_missing_permission_says_which(run, openapi, policy) -> None:
    openapi.deny.add("ListAlertGroup")
    code, out = run()
    assert code == 2 and "Cloud Monitor refused it (AccessDenied)" in out and "ListAlertGroup" in out
    assert SECRET_KEY not in out and ACCESS_KEY not in out


def test_without_the_callback_url_it_says_what_to_do(run, openapi) -> None:
    code, out = run()
    assert code == 2 and "no alarm policy calls the callback URL" in out and "RECONCILE_WEBHOOK" in out


def test_without_a_store_or_credentials_it_refuses(run) -> None:
    code, out = run(DEADLETTER_URI="")
    assert code == 2 and "DEADLETTER_URI" in out
    code, out = run(VOLCENGINE_SECRET_KEY="")
    assert code == 2 and "VOLCENGINE_SECRET_KEY" in out


def test_6000_changed_alarms_are_paged_within_the_limits_and_the_rest_is_the_next_runs(
    openapi, policy, settings, monkeypatch
) -> None:
    limits = Limits(per_second=100, per_minute=300, minute_seconds=3.0)
    flashduty = FlashdutyStub(limits=limits).start()
    try:
        for n in range(6000):
            openapi.add_alert_group(policy, f"i-{n:05d}", epoch(29 - n / 300))
        scaled = {
            **settings,
            "FLASHDUTY_PUSH_URL": flashduty.url,
            "FLASHDUTY_MAX_RPS": "100",
            "FLASHDUTY_MAX_PER_MINUTE": "300",
            "FLASHDUTY_MINUTE_SECONDS": "3",
        }
        out = io.StringIO()
        started = time.monotonic()
        code = reconcile.run(scaled, since=timedelta(minutes=30), max_seconds=8.0, dry_run=False, out=out)
        assert time.monotonic() - started < 12.0, "the run limit holds"
        first = len(flashduty.accepted())
        assert code == 1 and 0 < first < 6000, out.getvalue()
        assert "6000 alerts" in out.getvalue()
        listed = [c for c in openapi.calls if c.action == "ListAlertGroup"]
        assert max(c.body["PageSize"] for c in listed) <= 100 and len(listed) > 60  # paged, the window split

        out = io.StringIO()
        code = reconcile.run(scaled, since=timedelta(minutes=30), max_seconds=8.0, dry_run=False, out=out)
        accepted = flashduty.accepted()
        keys = {r.event["alert_key"] for r in accepted}
        assert len(keys) > first  # the next run goes on where this one stopped
        # What the first run had answered is not sent again; a request the run limit cut short (at
        # most one per worker) may have reached Flashduty unanswered, and is sent once more.
        already = int(re.search(r"(\d+) already with the relay", out.getvalue())[1])
        in_flight = int(reconcile.config.load(scaled).concurrency)
        assert first - in_flight <= already <= first and len(accepted) - len(keys) <= in_flight
        arrivals = [r.at for r in flashduty.received]
        assert peak(arrivals, 1.0) <= limits.per_second and peak(arrivals, limits.minute_seconds) <= limits.per_minute
        assert flashduty.violations == [] and openapi.violations == []
    finally:
        flashduty.stop()


def test_each_run_logs_one_json_line(run, openapi, policy, caplog) -> None:
    openapi.add_alert_group(policy, "i-lost", epoch(20), AlertState="Recovered", EndAt=epoch(8))
    with caplog.at_level("INFO", logger="relay.reconcile"):
        run()
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay.reconcile"]
    assert line["found"] == 1 and line["sent"] == 2 and line["already_delivered"] == 0 and line["exit_code"] == 0
    assert 7 < line["oldest_gap_minutes"] < 10


def test_dry_run_sends_and_records_nothing(openapi, policy, settings, stub, monkeypatch, capsys) -> None:
    openapi.add_alert_group(policy, "i-lost", epoch(20))
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    assert reconcile.main(["--dry-run", "--since", "1h"]) == 1  # something to send: a gap
    printed = capsys.readouterr().out
    assert "would send Critical" in printed and "i-lost" in printed
    assert stub.received == []
    code = reconcile.run(settings, since=timedelta(hours=1), max_seconds=30, dry_run=False, out=io.StringIO())
    assert code == 0 and len(stub.accepted()) == 1  # the dry run recorded nothing


def test_no_credential_reaches_a_log_line(run, openapi, policy, caplog) -> None:
    openapi.add_alert_group(policy, "i-lost", epoch(20))
    with caplog.at_level("DEBUG"):
        run()
    assert SECRET_KEY not in caplog.text and len(caplog.records) > 3


@pytest.mark.parametrize(
    ("state", "end_at", "recovered"),
    [
        ("Alerting", 0, False),
        ("ALARM", 0, False),
        ("firing", 1732406400, False),  # a state that says on wins over an end time
        ("Recovered", 1732406400, True),
        ("OK", 1732406400, True),
        ("resolved", 0, True),
        ("Unknown-State", 1732406400, True),  # undocumented value: told by EndAt
        ("", 0, False),
    ],
)
def test_every_spelling_of_the_undocumented_state(state: str, end_at: int, recovered: bool) -> None:
    group = mapping.alert_group(
        {"RuleId": "r", "ResourceId": "i-1", "StartAt": 1732400000, "AlertState": state, "EndAt": end_at}
    )
    assert (group.recovery is not None) is recovered
    if recovered:
        (event,) = mapping.translate(group.recovery).events
        assert event["event_status"] == "Ok"


def test_a_no_data_alarm_keeps_its_own_alert() -> None:
    base = {"RuleId": "r", "ResourceId": "i-1", "StartAt": 1732400000}
    threshold = mapping.reconciled(mapping.alert_group({**base, "AlertType": "Threshold"}).firing)
    no_data = mapping.reconciled(mapping.alert_group({**base, "AlertType": "NO_DATA"}).firing)
    assert threshold and no_data and threshold["alert_key"] != no_data["alert_key"]
    assert no_data["labels"]["kind"] == mapping.NO_DATA
