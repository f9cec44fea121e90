"""mapping.translate on recorded callbacks: samples/ and the odd shapes in tests/events/."""

from __future__ import annotations

import copy
import json

import pytest

import flashduty
from mapping import CRITICAL, INFO, OK, WARNING, Options, translate
from tests.support.callbacks import load_json
from tests.support.flashduty import contract_violations

REQUIRED_LABELS = {"source", "kind", "account_id", "region", "resource_id", "rule_id", "rule_name"}


def only_event(callback: dict) -> dict:
    translation = translate(callback)
    assert len(translation.events) == 1
    return translation.events[0]


def test_event_center_sample() -> None:
    event = only_event(load_json("samples/event.json"))
    assert event["event_status"] == INFO  # notice -> Info
    assert event["title_rule"].startswith("Executing: ecs:Disk:DiskError.Redeploy on i-3tlf2xkx8w0hcexample")
    assert "磁盘故障，重新部署实例：执行中" in event["title_rule"]
    assert "2022-09-28 10:38:25 (UTC+08:00)" in event["description"]  # HappenedAt, epoch seconds
    labels = event["labels"]
    assert REQUIRED_LABELS <= labels.keys()
    assert labels["source"] == "volcengine" and labels["kind"] == "event"
    assert labels["event_type"] == "ecs:Disk:DiskError.Redeploy.Executing"
    assert labels["event_source"] == "ecs"
    assert labels["project"] == "default"
    assert contract_violations(event) == []


def test_event_details_as_json_string_and_description_spelling() -> None:
    event = only_event(load_json("tests/events/event-details-string.json"))
    assert event["event_status"] == CRITICAL  # "Critical", capitalised
    assert event["labels"]["resource_id"] == "mysql-9f8e7d6c5b4a"
    assert "Instance failover started" in event["title_rule"]
    assert "reason=host maintenance" in event["description"]  # service-specific extra


def test_event_details_as_plain_text_and_unknown_level() -> None:
    event = only_event(load_json("tests/events/event-details-text.json"))
    assert event["event_status"] == WARNING
    assert event["labels"]["unknown_level"] == "fatal"
    assert "backend 10.0.0.12:8080 unhealthy" in event["description"]
    assert "后端服务器健康检查失败" in event["title_rule"]


def test_several_rules_take_the_most_severe_level_case_insensitively() -> None:
    event = only_event(load_json("tests/events/event-several-rules.json"))
    assert event["event_status"] == CRITICAL
    assert event["labels"]["rule_name"] == "ecs restarts"
    assert "unknown_level" not in event["labels"]
    # both description spellings are kept
    assert "Instance restarted unexpectedly" in event["title_rule"]
    assert "实例意外重启" in event["title_rule"]
    for name in ("all ecs events", "ecs restarts", "prod instances"):
        assert name in event["description"]


def test_repeats_of_an_event_type_on_a_resource_are_one_alert() -> None:
    first = load_json("samples/event.json")
    repeat = copy.deepcopy(first)
    repeat.update(Id="1658000000000009999", HappenedAt=1664339999)
    other_resource = copy.deepcopy(first)
    other_resource["Details"]["volcresourcename"] = "i-other"
    more_severe = copy.deepcopy(repeat)
    more_severe["Rules"][0]["Level"] = "critical"  # a later state matched by a rule of another level
    keys = [only_event(c)["alert_key"] for c in (first, repeat, other_resource, more_severe)]
    assert keys[0] == keys[1] != keys[2]
    assert keys[3] not in (keys[0], keys[2])


def test_metric_sample_gives_one_event_per_resource() -> None:
    translation = translate(load_json("samples/metric.json"))
    assert translation.kind == "metric"
    assert [e["event_status"] for e in translation.events] == [CRITICAL, CRITICAL]
    assert len({e["alert_key"] for e in translation.events}) == 2
    web01 = translation.events[0]
    assert "ecs cpu high" in web01["title_rule"] and "web-01" in web01["title_rule"]
    assert "97.2" in web01["title_rule"] and "90" in web01["title_rule"]
    assert "CPU使用率 > 90%" in web01["description"]
    labels = web01["labels"]
    assert REQUIRED_LABELS <= labels.keys()
    assert labels["namespace"] == "VCM_ECS" and labels["sub_namespace"] == "Instance"
    assert (labels["metric_name"], labels["metric_value"], labels["metric_threshold"], labels["metric_unit"]) == (
        "CpuTotal",
        "97.2",
        "90",
        "%",
    )
    assert labels["dim_resource_id"] == "i-3tlf2xkx8w0hcexample"
    assert labels["tag_env"] == "prod" and labels["tag_team"] == "web"
    assert all(contract_violations(e) == [] for e in translation.events)


def test_recovery_closes_the_alert_it_fired_at_every_level() -> None:
    callback = load_json("samples/metric.json")
    fired = set()
    for level in ("warning", "critical", "notice"):
        fired.add(translate({**callback, "Level": level}).events[0]["alert_key"])
    recovered = translate(load_json("samples/metric-recovered.json")).events
    assert {e["event_status"] for e in recovered} == {OK}
    assert fired <= {e["alert_key"] for e in recovered}
    assert all(e["title_rule"].startswith("Recovered:") for e in recovered)


def test_each_level_is_an_alert_of_its_own() -> None:
    callback = load_json("samples/metric.json")
    keys = {}
    for level in ("warning", "critical", "notice", "Critical"):
        callback["Level"] = level
        keys[level] = translate(callback).events[0]["alert_key"]
    assert keys["critical"] == keys["Critical"]
    assert len({keys["warning"], keys["critical"], keys["notice"]}) == 3


def test_no_data_alerts_have_keys_of_their_own() -> None:
    fired = translate(load_json("samples/metric.json")).events[0]
    no_data = copy.deepcopy(load_json("samples/metric.json"))
    no_data["Type"] = "MetricsNoData"
    no_data["NoDataResources"], no_data["Resources"] = no_data["Resources"], []
    no_data_event = translate(no_data).events[0]
    assert no_data_event["event_status"] == CRITICAL  # the policy's level
    assert no_data_event["alert_key"] != fired["alert_key"]
    no_data["Type"] = "NoDataRecovered"
    no_data["NoDataRecoveredResources"], no_data["NoDataResources"] = no_data["NoDataResources"], []
    back = translate(no_data).events[0]
    assert back["event_status"] == OK and back["alert_key"] == no_data_event["alert_key"]


def test_no_data_sample() -> None:
    event = only_event(load_json("samples/nodata.json"))
    assert event["event_status"] == WARNING  # the policy's level
    assert event["title_rule"].startswith("No data:") and "UsedCapacityRatio" in event["title_rule"]
    assert event["labels"]["kind"] == "no_data"


def test_every_list_in_one_body_is_translated() -> None:
    translation = translate(load_json("tests/events/metric-several-lists.json"))
    resources = [(e["labels"]["resource_id"], e["labels"]["kind"], e["event_status"]) for e in translation.events]
    assert list(dict.fromkeys(resources)) == [
        ("i-aaaa", "metric", WARNING),
        ("i-aaaa", "metric", OK),  # another mount point of the same instance recovered
        ("i-bbbb", "no_data", WARNING),
        ("i-cccc", "no_data", OK),
    ]
    firing, recovered = translation.events[:2]
    assert firing["alert_key"] != recovered["alert_key"]  # different MountPoint dimension
    assert firing["labels"]["dim_mount_point"] == "/data"
    assert firing["labels"]["project"] == "payments"
    assert "(+1 more)" in firing["title_rule"]
    assert "InodeUsageUtilization" in firing["description"]
    # a tag key with nothing label-safe in it still gets a valid, stable label name
    cost_centre = [k for k, v in firing["labels"].items() if v == "cc-42"]
    assert len(cost_centre) == 1 and cost_centre[0].startswith("tag_x")
    assert all(contract_violations(e) == [] for e in translation.events)


def test_metric_lists_without_type_are_still_recognised() -> None:
    callback = load_json("samples/metric.json")
    del callback["Type"]
    assert translate(callback).kind == "metric"


@pytest.mark.parametrize(
    "callback",
    [
        load_json("tests/events/unrecognised.json"),
        {"hello": "world"},
        {"RuleName": "x", "Resources": []},  # no Type, and no resource to tell what it is
        {},
    ],
)
def test_an_unrecognised_object_is_forwarded_not_dropped(callback: dict) -> None:
    translation = translate(callback)
    assert translation.kind == "unrecognised"
    event = only_event(callback)
    assert event["event_status"] == WARNING
    assert "Unrecognised Volcengine callback" in event["title_rule"]
    assert json.dumps(callback, ensure_ascii=False, sort_keys=True, separators=(",", ":"))[:100] in event["description"]
    assert contract_violations(event) == []


def test_unknown_metric_level_maps_to_warning_and_says_so() -> None:
    callback = load_json("samples/metric.json")
    callback["Level"] = "P0"
    event = translate(callback).events[0]
    assert event["event_status"] == WARNING and event["labels"]["unknown_level"] == "P0"


def test_severity_overrides_and_minimum_severity() -> None:
    options = Options(severity_overrides={"notice": WARNING}, min_severity=WARNING)
    assert only_event_with(load_json("samples/event.json"), options)["event_status"] == WARNING

    drops_info = Options(min_severity=WARNING)
    translation = translate(load_json("samples/event.json"), drops_info)
    assert (translation.events, translation.filtered) == ([], 1)  # notice -> Info, dropped
    # recoveries always pass, and so does an unrecognised callback
    critical_only = Options(min_severity=CRITICAL)
    recovered = translate(load_json("samples/metric-recovered.json"), critical_only)
    assert {e["event_status"] for e in recovered.events} == {OK} and recovered.filtered == 0
    assert len(translate({"odd": 1}, critical_only).events) == 1


def only_event_with(callback: dict, options: Options) -> dict:
    (event,) = translate(callback, options).events
    return event


def test_long_fields_are_cut_to_flashduty_limits() -> None:
    callback = load_json("samples/metric.json")
    callback["RuleName"] = "规则" * 400
    callback["RuleCondition"] = "x" * 5000
    callback["Tags"] = [{"Key": f"k{i}", "Value": "v" * 3000} for i in range(80)]
    event = translate(callback).events[0]
    assert len(event["title_rule"]) == 512 and event["title_rule"].endswith("…")
    assert len(event["description"]) == 2048
    assert len(event["labels"]) == 49 and event["labels"]["labels_dropped"].isdigit()  # and the delivery's stamp
    assert event["labels"]["rule_id"] == "1574726000000098880"  # core labels are kept first
    assert contract_violations(event) == [] and contract_violations(flashduty.stamped(event, "key")) == []


def test_same_input_same_output_byte_for_byte() -> None:
    for path in ("samples/event.json", "samples/metric.json", "tests/events/metric-several-lists.json"):
        first = json.dumps(translate(load_json(path)).events, ensure_ascii=False)
        again = json.dumps(translate(load_json(path)).events, ensure_ascii=False)
        assert first == again


@pytest.mark.parametrize("details", ["plain \ud800 text", '"json \\ud800 string"', {"extra\ud800": "v\udfff"}])
def test_lone_surrogates_anywhere_still_give_utf8_events(details) -> None:
    callback = load_json("samples/event.json")
    callback["Details"] = details
    event = only_event(callback)
    json.dumps(event, ensure_ascii=False).encode("utf-8")  # raises if a surrogate got through
