"""Field-true alerts: the shapes real callbacks take, through the real app, against the Flashduty stand-in.

The recorded shapes are in tests/events/ (their sources in tests/events/README.md). Each test here
posts them as Volcengine would and reads what the stand-in accepted, merged as Flashduty merges it.
"""

from __future__ import annotations

import copy
import json
import sys
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import config
import mapping
import metric_alarms
from tests.support.callbacks import body, load_json
from tests.support.flashduty import FlashdutyStub
from tests.support.snapshots import expected_path, recorded

Post = Callable[..., dict[str, Any]]


@pytest.fixture
def post(client: Callable[..., Any], stub: FlashdutyStub) -> Callable[..., Post]:
    """A relay delivering to the stand-in, with these extra settings; it posts callbacks and returns answers."""

    def start(**settings: str) -> Post:
        app = client(FLASHDUTY_INTEGRATION_KEY="key-1", FLASHDUTY_PUSH_URL=stub.url, **settings)

        def send(*callbacks: dict[str, Any]) -> dict[str, Any]:
            answer: dict[str, Any] = {}
            for callback in callbacks:
                response = app.post("/", data=body(callback), content_type="application/json")
                assert response.status_code == 200, response.get_json()
                answer = response.get_json()
            return answer

        return send

    return start


def sent(stub: FlashdutyStub) -> list[dict[str, Any]]:
    return [r.event for r in stub.accepted()]


def about(stub: FlashdutyStub, resource_name: str) -> dict[str, Any]:
    """The one event the stand-in accepted for this resource (delivery order is not the callback's)."""
    (event,) = [e for e in sent(stub) if e["labels"].get("resource_name") == resource_name]
    return event


def by_key(events: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(e, ensure_ascii=False, sort_keys=True) for e in events)


@pytest.mark.parametrize("path", recorded(), ids=lambda p: p.stem)
def test_every_recorded_shape_reaches_flashduty_as_its_snapshot_says(post, stub, path: Path) -> None:
    expected = json.loads(expected_path(path).read_text(encoding="utf-8"))
    answer = post()(json.loads(path.read_text(encoding="utf-8")))
    assert answer["events"] == answer["delivered"] == len(expected["events"])
    assert by_key(sent(stub)) == by_key(expected["events"])
    assert stub.violations == []


def test_a_thin_recovery_closes_the_alert_its_firing_opened(post, stub) -> None:
    firing = load_json("tests/events/metric-multi-metric-healthy-first.json")
    recovery = load_json("tests/events/metric-recovered-thin.json")
    assert "AccountId" not in recovery and recovery["RecoveredResources"][0]["Dimensions"] == []
    send = post()
    send(firing)
    assert len(stub.open_alerts()) == 1
    send(recovery)
    assert stub.open_alerts() == [] and len(stub.alerts()) == 1


def test_the_breaching_metric_leads_the_title_and_labels(post, stub) -> None:
    post()(load_json("tests/events/metric-multi-metric-healthy-first.json"))
    (event,) = sent(stub)
    labels = event["labels"]
    assert (labels["metric"], labels["metric_value"], labels["metric_threshold"]) == (
        "MemoryUsedUtilization",
        "93.1",
        "85",
    )
    assert "内存使用率 = 93.1%" in event["title_rule"] and "CPU使用率" not in event["title_rule"]
    assert "CpuTotal (CPU使用率) = 12.5%" in event["description"]  # every metric stays in the description


def test_without_flags_the_value_past_its_threshold_leads(post, stub) -> None:
    post()(load_json("tests/events/metric-no-flags.json"))
    (event,) = sent(stub)
    assert event["labels"]["metric"] == "QueryLatency"
    assert "QueryLatency = 512.4 ms (threshold 200 ms)" in event["title_rule"]


def test_below_direction_from_the_condition_text(post, stub) -> None:
    callback = load_json("tests/events/metric-no-flags.json")
    callback["RuleCondition"] = "ConnectionUsage < 50% 或 QueryLatency < 100ms"  # free connections, fast queries
    post()(callback)
    (event,) = sent(stub)
    assert event["labels"]["metric"] == "ConnectionUsage"


def test_no_data_keeps_the_policys_level_and_passes_min_severity(post, stub) -> None:
    send = post(MIN_SEVERITY="Warning")
    answer = send(load_json("tests/events/nodata-critical.json"))
    assert answer["filtered"] == 0
    (event,) = sent(stub)
    assert event["event_status"] == "Critical"
    assert "UsedCapacityRatio (容量使用率): no data (threshold 85%)" in event["description"]
    assert "Percent" not in event["title_rule"] + event["description"]
    send(load_json("tests/events/nodata-recovered-reason.json"))
    assert stub.open_alerts() == []
    assert "资源已释放" in sent(stub)[-1]["title_rule"] and "资源已释放" in sent(stub)[-1]["description"]


@pytest.mark.parametrize("level", ["P0", "严重", "fatal", ""])
def test_an_unknown_level_is_never_filtered(post, stub, level: str) -> None:
    callback = load_json("tests/events/metric-unknown-level.json")
    callback["Level"] = level
    answer = post(MIN_SEVERITY="Critical")(callback)
    assert (answer["events"], answer["filtered"]) == (1, 0)
    (event,) = sent(stub)
    assert event["labels"]["unknown_level"] == (level or "(none)")


def test_an_unknown_event_rule_level_is_never_filtered(post, stub) -> None:
    answer = post(MIN_SEVERITY="Critical")(load_json("tests/events/event-details-text.json"))  # Level "fatal"
    assert (answer["events"], answer["filtered"]) == (1, 0)


@pytest.mark.parametrize("resources", ["list", "object"])
@pytest.mark.parametrize("others", [None, [], "missing"])
def test_every_list_shape_keeps_its_severity(post, stub, resources: str, others: Any) -> None:
    callback = load_json("samples/metric.json")
    first = callback["Resources"][0]
    callback["Resources"] = [first] if resources == "list" else first
    for name in ("RecoveredResources", "NoDataResources", "NoDataRecoveredResources"):
        if others == "missing":
            callback.pop(name, None)
        else:
            callback[name] = others
    post()(callback)
    (event,) = sent(stub)
    assert event["event_status"] == "Critical" and event["labels"]["resource_name"] == "web-01"


def test_a_single_resource_field_as_veaiops_types_it(post, stub) -> None:
    post()(load_json("tests/events/veaiops-single-resource.json"))
    (event,) = sent(stub)
    assert event["event_status"] == "Warning" and event["labels"]["resource"] == "redis-cnlfexample"
    assert "节点=redis-cnlfexample-0-0" in event["title_rule"]


@pytest.mark.parametrize("empty", [None, [], {}, "missing"])
def test_a_known_type_with_no_resources_pages_nobody_and_says_why(post, stub, empty: Any) -> None:
    callback = load_json("tests/events/metric-recovered-no-resources.json")
    for name, *_ in metric_alarms.RESOURCE_LISTS:
        if empty == "missing":
            callback.pop(name, None)
        else:
            callback[name] = copy.deepcopy(empty)
    answer = post()(callback)
    assert answer["events"] == 0 and "lists no resources" in answer["note"]
    assert stub.received == []


def test_sibling_disks_are_two_alerts_that_say_which_disk(post, stub) -> None:
    post()(load_json("tests/events/metric-disk-siblings.json"))
    titles = sorted(e["title_rule"] for e in sent(stub))
    assert len(stub.alerts()) == 2
    assert "磁盘名称=vdb" in titles[0] and "磁盘名称=vdc" in titles[1]


def test_one_alert_per_event_lifecycle(post, stub) -> None:
    send = post()
    send(load_json("tests/events/event-lifecycle-executing.json"))
    (opened,) = sent(stub)
    assert opened["title_rule"].startswith("Executing: ecs:Disk:DiskError.Redeploy on")
    assert opened["labels"]["event_state"] == "Executing"
    assert opened["labels"]["check"] == "ecs:Disk:DiskError.Redeploy"
    send(load_json("tests/events/event-lifecycle-completed.json"))
    assert stub.open_alerts() == [] and len(stub.alerts()) == 1


def lifecycle(state: str, separator: str = ".") -> dict[str, Any]:
    callback = load_json("tests/events/event-lifecycle-executing.json")
    callback["EventType"] = f"ecs:Disk:DiskError.Redeploy{separator}{state}"
    return callback


@pytest.mark.parametrize(
    ("setting", "state", "closes"),
    [
        ({}, "Succeeded", True),
        ({}, "Canceled", True),
        ({}, "Rejected", True),
        ({}, "Failed", False),  # documented as final, but the problem is still there
        ({}, "Pending", False),
        ({"EVENT_CLOSING_STATES": "Succeeded,Failed"}, "Failed", True),
        ({"EVENT_CLOSING_STATES": "none"}, "Succeeded", False),
    ],
)
def test_closing_states_are_a_setting(post, stub, setting: dict[str, str], state: str, closes: bool) -> None:
    send = post(**setting)
    send(lifecycle("Executing"), lifecycle(state, separator=":"))
    assert len(stub.alerts()) == 1  # both separators Volcengine's docs show name the same lifecycle
    assert (stub.open_alerts() == []) is closes


def test_an_event_that_names_no_resource_is_an_alert_of_its_own(post, stub) -> None:
    first = load_json("tests/events/event-details-text.json")
    second = {**copy.deepcopy(first), "Id": "1658000000000004556", "Details": "backend 10.0.0.13:8080 unhealthy"}
    post()(first, second)
    assert len(stub.alerts()) == 2


def test_an_event_takes_its_resource_from_service_fields(post, stub) -> None:
    post()(load_json("tests/events/event-clb-health-check.json"))
    (event,) = sent(stub)
    assert event["labels"]["resource"] == "lsn-2f7ad9example"  # the listener, as the event type says
    assert event["labels"]["service"] == "clb"


def test_flashdutys_conventional_labels(post, stub) -> None:
    send = post()
    send(load_json("samples/metric.json"))
    labels = about(stub, "web-01")["labels"]
    assert (labels["resource"], labels["check"], labels["service"], labels["metric"]) == (
        "i-3tlf2xkx8w0hcexample",
        "ecs cpu high",
        "VCM_ECS",
        "CpuTotal",
    )
    assert "account_id" in labels  # a label, not part of the key


def test_colliding_label_names_keep_every_value(post, stub) -> None:
    callback = load_json("tests/events/metric-label-collisions.json")
    post()(callback)
    reordered = copy.deepcopy(callback)
    reordered["Tags"].reverse()
    (event,) = sent(stub)
    labels = event["labels"]
    assert {labels["tag_env"], labels["tag_env_2"]} == {"prod", "staging"}
    assert {labels["tag_team_name"], labels["tag_team_name_2"]} == {"payments", "sre"}
    assert mapping.translate(reordered).events[0]["labels"] == labels  # a stable order, whatever Volcengine sends


def test_units_read_as_people_write_them(post, stub) -> None:
    post()(load_json("samples/metric.json"))
    event = about(stub, "web-01")
    assert "97.2% (threshold 90%)" in event["title_rule"] and event["labels"]["metric_unit"] == "%"


@pytest.mark.parametrize(
    ("setting", "shown"),
    [
        ({}, "2024-04-11 14:51:01 (UTC+08:00)"),
        ({"DISPLAY_TIMEZONE": "UTC"}, "2024-04-11 06:51:01 (UTC+00:00)"),
        ({"DISPLAY_TIMEZONE": "UTC-03:30"}, "2024-04-11 03:21:01 (UTC-03:30)"),
    ],
)
def test_every_time_in_one_zone(post, stub, setting: dict[str, str], shown: str) -> None:
    post(**setting)(load_json("samples/metric.json"))
    description = about(stub, "web-01")["description"]
    # HappenedAt came written in UTC+08:00, FirstAlertTime as epoch seconds: both shown alike
    assert f"Happened at: {shown}" in description and f"First alert: {shown}" in description


@pytest.fixture
def no_zone_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A runtime without a time zone database: no system zoneinfo files and no tzdata package."""
    monkeypatch.setitem(sys.modules, "tzdata", None)
    zoneinfo.reset_tzpath(to=[])
    zoneinfo.ZoneInfo.clear_cache()
    yield
    zoneinfo.reset_tzpath()
    zoneinfo.ZoneInfo.clear_cache()


def test_the_default_zone_works_without_a_time_zone_database(no_zone_database, environment) -> None:
    with pytest.raises(zoneinfo.ZoneInfoNotFoundError):
        zoneinfo.ZoneInfo("Europe/Berlin")
    shanghai = config.load({"DISPLAY_TIMEZONE": "Asia/Shanghai"}).mapping
    assert (
        "2024-04-11 14:51:01 (UTC+08:00)"
        in mapping.translate(load_json("samples/metric.json"), shanghai).events[0]["description"]
    )
    with pytest.raises(config.ConfigError, match="DISPLAY_TIMEZONE.*Europe/Berlin.*offset"):
        config.load({"DISPLAY_TIMEZONE": "Europe/Berlin"})


INCIDENTS = [
    "InstanceFailure",
    "SystemFailure.Reboot",
    "SystemFailure.Stop",
    "AccountUnbalanced.Stop",
    "AccountUnbalanced.Delete",
]


@pytest.mark.parametrize("separator", [".", ":"])
@pytest.mark.parametrize("name", INCIDENTS)
def test_an_event_published_only_in_its_ending_state_pages(post, stub, name: str, separator: str) -> None:
    callback = load_json("tests/events/event-instance-failure.json")
    callback["EventType"] = f"ecs:Instance:{name}{separator}Succeeded"
    post()(callback)
    (event,) = sent(stub)
    assert event["event_status"] == "Critical" and len(stub.open_alerts()) == 1
    assert event["title_rule"].startswith(f"Succeeded: ecs:Instance:{name} on i-3tlf2xkx8w0hcexample")
    assert "is the incident itself" in event["description"]


@pytest.mark.parametrize(
    ("opening", "ending"),
    [
        ("event-lifecycle-executing", "event-lifecycle-succeeded"),  # `.Executing`, then `:Succeeded`
        ("event-spot-delete-scheduled", "event-spot-delete-succeeded"),
    ],
)
def test_a_catalogued_lifecycle_still_closes_in_its_ending_state(post, stub, opening: str, ending: str) -> None:
    send = post()
    send(load_json(f"tests/events/{opening}.json"))
    assert len(stub.open_alerts()) == 1
    send(load_json(f"tests/events/{ending}.json"))
    assert stub.open_alerts() == [] and len(stub.alerts()) == 1


@pytest.mark.parametrize(
    ("setting", "closes"),
    [
        ({}, False),  # the catalog does not know it: its Succeeded may be the incident, so it pages
        ({"EVENT_LIFECYCLE_TYPES": "ecs:Instance:HostMigration.Restart"}, True),
        ({"EVENT_LIFECYCLE_TYPES": "ECS:Instance:hostmigration.restart, ecs:Instance:Other.Op"}, True),
    ],
)
def test_an_unknown_event_types_ending_pages_unless_marked_a_lifecycle(post, stub, setting, closes: bool) -> None:
    ending = load_json("tests/events/event-unknown-type-succeeded.json")
    opening = {**copy.deepcopy(ending), "EventType": "ecs:Instance:HostMigration.Restart:Executing"}
    send = post(**setting)
    send(opening, ending)
    assert len(stub.alerts()) == 1
    assert (stub.open_alerts() == []) is closes
    assert sent(stub)[-1]["event_status"] == ("Ok" if closes else "Warning")


@pytest.mark.parametrize("value", ["ecs:Instance:Bad Type", ",", "ecs:Instance:Op/1"])
def test_a_malformed_lifecycle_setting_stops_the_start(client, value: str) -> None:
    with pytest.raises(config.ConfigError, match="EVENT_LIFECYCLE_TYPES"):
        client(EVENT_LIFECYCLE_TYPES=value)


def test_a_state_change_says_the_new_state(post, stub) -> None:
    post()(load_json("tests/events/event-state-change.json"))
    (event,) = sent(stub)
    assert "ecs:Instance:StateChange on i-3tlf2xkx8w0hcstate1 Running → Stopped" in event["title_rule"]
    callback = load_json("tests/events/event-state-change.json")
    callback["Details"]["data"] = {"InstanceId": "i-3tlf2xkx8w0hcstate1", "Status": "Running"}
    post()(callback)
    assert sent(stub)[-1]["title_rule"].endswith("i-3tlf2xkx8w0hcstate1 → Running: 实例状态变化")
    callback["EventType"] = "ecs:Disk:DiskCreated"  # not a state change: its Status says nothing new
    post()(callback)
    assert "→" not in sent(stub)[-1]["title_rule"]


@pytest.mark.parametrize("spelling", ["CN", "Cn"])
def test_a_metrics_description_in_any_spelling_names_it_in_the_title(post, stub, spelling: str) -> None:
    callback = load_json("tests/events/metric-tos-descriptions-upper.json")
    metric = callback["Resources"][0]["Metrics"][0]
    metric[f"Description{spelling}"] = metric.pop("DescriptionCN")
    post()(callback)
    (event,) = sent(stub)
    # Chinese before English in the title, as the dimension names; both in the description.
    assert "media-assets 4xx状态码QPS = 73.5 Count/s (threshold 50 Count/s)" in event["title_rule"]
    assert "4xxQPS (4xx状态码QPS / 4xx status code QPS)" in event["description"]


def test_an_english_only_description_is_used_when_no_other_is_sent(post, stub) -> None:
    callback = load_json("tests/events/metric-tos-descriptions-upper.json")
    del callback["Resources"][0]["Metrics"][0]["DescriptionCN"]
    post()(callback)
    (event,) = sent(stub)
    assert "media-assets 4xx status code QPS = 73.5" in event["title_rule"]


def test_per_node_alarms_lead_with_each_nodes_flagged_metric(post, stub) -> None:
    post()(load_json("tests/events/metric-redis-per-node.json"))  # `Warning` true on one metric, absent on the other
    titles = sorted(e["title_rule"] for e in sent(stub))
    assert len(stub.alerts()) == 2
    assert "节点=redis-cnlfnode-0-1 节点内存使用率 = 95.6% (threshold 90%)" in titles[0]
    assert "节点=redis-cnlfnode-1-1 节点CPU使用率 = 88% (threshold 80%)" in titles[1]
    assert {e["labels"]["alert_group_id"] for e in sent(stub)} == {
        "6649a1c0e4b0c1d2e3f40201",
        "6649a1c0e4b0c1d2e3f40202",
    }


def test_a_metric_callback_without_type_is_read_by_its_lists(post, stub) -> None:
    callback = load_json("tests/events/metric-mongodb-no-type.json")
    assert "Type" not in callback
    post()(callback)
    (event,) = sent(stub)
    assert event["labels"]["kind"] == "metric" and "主从延迟 = 27 s (threshold 10 s)" in event["title_rule"]


def test_a_reboot_the_user_started_closes_when_it_succeeds(post, stub) -> None:
    # `RebootInstance:Executing` is a documented event name (BytePlus ECS ModifySubscriptionEventTypes'
    # example): its Succeeded ends what Executing opened, and must not page a second time.
    opening = load_json("tests/events/event-lifecycle-succeeded.json")
    opening["EventType"] = "ecs:Instance:RebootInstance:Executing"
    ending = {**copy.deepcopy(opening), "EventType": "ecs:Instance:RebootInstance:Succeeded"}
    post()(opening, ending)
    assert len(stub.alerts()) == 1 and stub.open_alerts() == []
    assert sent(stub)[-1]["event_status"] == "Ok"
