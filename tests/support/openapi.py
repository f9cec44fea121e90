"""A local stand-in of Volcengine's OpenAPI, for the real official SDKs to talk to.

It answers `POST /?Action=<action>&Version=<version>` with a JSON body, as open.volcengineapi.com
does: `{"ResponseMetadata": {...}, "Result": {...}}`, or `ResponseMetadata.Error` with the HTTP
status Volcengine gives. It checks that each request is signed and carries the fields the action
requires (recorded in `violations`), records every call, and keeps the state the actions change.
`deny` makes an action answer AccessDenied, as a key whose policy lacks it would get.
veFaaS, API gateway (the gateway itself is made by `add_gateway`: the deploy never creates one) and
Cloud Monitor (callback URLs, event rules, alarm policies) are here; the deploy and reconcile tests
share it. Field names and required fields are the official SDKs' models'.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.flashduty import Fault
from tests.support.servers import DatedHandler, LocalServer, drip

ACCESS_KEY = "AKLTlocalstandin"
SECRET_KEY = "c2VjcmV0LW9mLXRoZS1zdGFuZC1pbg=="
READER_KEY = "AKLTreadonlystandin"  # a second key, as reconcile's own read-only one (same secret here)
# The fields each action cannot do without (from the SDK's models: required ones, and what the
# deploy cannot mean to leave out).
REQUIRED = {
    "ListFunctions": (),
    "GetFunction": ("Id",),
    "CreateFunction": ("Name", "Runtime", "Command", "Port"),
    "UpdateFunction": ("Id",),
    "DeleteFunction": ("Id",),
    "GetCodeUploadAddress": ("FunctionId", "ContentLength"),
    "CodeUploadCallback": ("FunctionId",),
    "CreateDependencyInstallTask": ("FunctionId",),
    "GetDependencyInstallTaskStatus": ("FunctionId",),
    "Release": ("FunctionId", "RevisionNumber"),
    "GetReleaseStatus": ("FunctionId",),
    "GetRevision": ("FunctionId", "RevisionNumber"),
    "ListTriggers": ("FunctionId",),
    "CreateTimer": ("FunctionId", "Name", "Crontab"),
    "GetTimer": ("FunctionId", "Id"),
    "UpdateTimer": ("FunctionId", "Id"),
    "ListGateways": (),
    "ListUpstreams": ("GatewayId",),
    "CreateUpstream": ("GatewayId", "Name", "SourceType", "UpstreamSpec"),
    "UpdateUpstream": ("Id", "Name", "SourceType"),
    "ListGatewayServices": ("GatewayId",),
    "CreateGatewayService": ("GatewayId", "ServiceName"),
    "ListRoutes": ("ServiceId",),
    "CreateRoute": ("Name", "ServiceId", "MatchRule", "UpstreamList"),
    "UpdateRoute": ("Id", "Name"),
    "ListWebhooks": (),
    "CreateWebhook": ("Name", "Type", "Url"),
    "UpdateWebhook": ("Id", "Name", "Type", "Url"),
    "DeleteWebhooksByIds": ("Ids",),
    "ListEventRules": (),
    "UpdateEventRule": ("EventBusName", "EventSource", "Level", "RuleId", "RuleName"),
    "ListRules": (),
    "ListRulesByIds": ("Ids",),
    "TagResources": ("ResourceIds", "ResourceType", "Tags"),
    "ListAlertGroup": (),
    "UpdateRule": (
        "EffectEndAt",
        "EffectStartAt",
        "EnableState",
        "EvaluationCount",
        "Id",
        "Level",
        "Namespace",
        "RuleName",
        "RuleType",
        "SilenceTime",
        "SubNamespace",
    ),
}
# ListAlertGroup answers at most this many entries for one query (Volcengine's documented limit).
ALERT_GROUP_LIMIT = 5000
# What each listed rule gives back that its Update action does not take (read-only fields).
READ_ONLY = {
    "UpdateRule": ("AlertState", "CreatedAt", "ProjectName", "ResourceType", "UpdatedAt"),
    "UpdateEventRule": ("AccountId", "CreatedAt", "Region", "UpdatedAt"),
}
# Nested fields a rule shows but its Update does not take (volcengine-openapi.md: a policy condition's
# EvaluationWindow and DisplayName are not in UpdateRule's condition model): an update drops them.
NOT_UPDATED = {"UpdateRule": {"Conditions": ("EvaluationWindow", "DisplayName")}, "UpdateEventRule": {}}
# A sample policy's condition (an int EvaluationWindow, as the SDK types it, where UpdateRule takes one).
CPU_CONDITION = {
    "MetricName": "CpuTotal",
    "MetricUnit": "Percent",
    "Statistics": "avg",
    "ComparisonOperator": ">",
    "Threshold": "90",
    "Period": "1m",
}
# Cloud Monitor takes one old-style URL or up to this many callback URLs (webhook ids), not both.
WEBHOOKS_MAX = 8


@dataclass
class Call:
    action: str
    version: str
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)  # when it arrived


@dataclass
class Function:
    id: str
    name: str
    runtime: str
    fields: dict[str, Any]  # as the last create or update gave them (Command, Port, MemoryMB, Envs...)
    code: bytes = field(default=b"", repr=False)
    released: bytes = field(default=b"", repr=False)  # the code the last release put live
    # What the function runs: an update and an upload change only its draft (fields, code) until a
    # release makes a revision of it, as veFaaS's do. None until the first release.
    live: dict[str, Any] | None = None
    revisions: list[dict[str, Any]] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)


class OpenAPIStub(LocalServer):
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.deny: set[str] = set()
        self.delays: dict[str, float] = {}  # action: seconds before it answers (the service's latency)
        # Action: how to answer each of its requests instead of serving it (None: serve it), as a busy
        # service or its gateway does (a 429 with Retry-After, a 5xx); a drip serves it, dripped.
        self.faults: dict[str, Callable[[], Fault | None]] = {}
        # Action: how many of its answers to lose after doing the action (the connection drops before the
        # answer, as a lost response or a read timeout leaves it): the caller cannot tell whether it landed.
        self.lose_answers: dict[str, int] = {}
        self.functions: dict[str, Function] = {}
        self.lease_ids: set[str] = set()  # functions made as a deploy's lease (deploy.lease)
        self.release_status = "Succeeded"
        self.gateways: dict[str, dict[str, Any]] = {}  # id: {"Id", "Name", "Upstreams", "Services"}
        self.routes: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}  # with their Token, which no List gives back
        self.event_rules: dict[str, dict[str, Any]] = {}  # RuleId: the rule as ListEventRules gives it
        self.alarm_policies: dict[str, dict[str, Any]] = {}  # Id: the rule as ListRules gives it
        self.alert_groups: dict[str, dict[str, Any]] = {}  # Id: as ListAlertGroup gives it
        self.events: dict[str, dict[str, Any]] = {}  # ID: an Event Center event as ListEvents gives it
        # The largest ListEvents page it serves (None: whatever PageSize asks; the docs give no most),
        # and whether its answer gives TotalCount (the docs' answer does not list it).
        self.event_page_max: int | None = None
        self.event_total = True
        # ListAlertGroup's TotalCount, which its docs do not promise: "all" (every entry the query
        # matches), "missing" (left out), or "page" (the page's own count, as though it were the last).
        self.alert_group_total = "all"
        # The largest ListAlertGroup page it serves (None: whatever PageSize asks), as an API capping
        # PageSize does: its answer says the size it served.
        self.alert_group_page_max: int | None = None
        # AlertState spellings that the documented AlertStates filter value "alerting" matches.
        self.alerting_spellings = {"alerting", "alarm", "firing"}
        self.lost: list[str] = []  # what an Update took from a rule: "<rule id>: <field path>"
        # Run once, just after the named action has answered: a person changing things meanwhile.
        self.after: dict[str, Callable[[], None]] = {}
        # Told of every request once served (action, body, HTTP status), outside the stand-in's lock, before
        # it answers: a test may hold one caller there until another has got somewhere.
        self.observe: Callable[[str, dict[str, Any], int], None] = lambda action, body, status: None
        self.upload_base = ""  # where presigned upload addresses point; this server when empty
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    def actions(self) -> list[str]:
        return [c.action for c in self.calls]

    def function(self, name: str) -> Function:
        (found,) = [f for f in self.functions.values() if f.name == name]
        return found

    def deploy_actions(self) -> list[str]:
        """The actions called, less the deploy lease's (the calls on the function `*-deploy-lease`)."""

        def on_lease(call: Call) -> bool:
            names = [call.body.get("Name"), *(v for f in call.body.get("Filters") or [] for v in f.get("Values") or [])]
            return any(str(n).endswith("-deploy-lease") for n in names) or call.body.get("Id") in self.lease_ids

        return [c.action for c in self.calls if not on_lease(c)]

    def release(self, function: Function) -> None:
        """The function's draft (fields and code) made a revision that serves traffic."""
        function.released = function.code
        function.live = json.loads(json.dumps(function.fields))
        function.revisions.append({**function.live, "RevisionNumber": len(function.revisions) + 1})

    def add_gateway(self, name: str) -> str:
        gateway_id = f"gd{next(self._ids):06d}"
        self.gateways[gateway_id] = {"Id": gateway_id, "Name": name, "Upstreams": {}, "Services": {}}
        return gateway_id

    def add_event_rule(self, name: str, **fields: Any) -> dict[str, Any]:
        """An event rule as ListEventRules gives it (fields from DataForListEventRulesOutput)."""
        rule_id = f"er{next(self._ids):06d}"
        self.event_rules[rule_id] = {
            "RuleId": rule_id,
            "RuleName": name,
            "AccountId": "2100000001",
            "Region": "cn-beijing",
            "Source": "ecs",
            "EventBusName": "default",
            "EventType": ["ecs:Disk:DiskError.Redeploy.Executing"],
            "Level": "critical",
            "EnableState": "enable",
            "EffectStartAt": "00:00",
            "EffectEndAt": "23:59",
            "ContactMethods": ["Phone"],
            "ContactGroupIds": ["cg-oncall"],
            "FilterPattern": {"Source": "ecs", "Type": ["ecs:Disk:DiskError.Redeploy.Executing"]},
            "WebhookIds": [],
            "NotificationId": "ntf-ops",
            # The SDK's list model shows 5 of these; the answer has all of them, credentials too.
            "MessageQueue": [
                {
                    "Type": "kafka",
                    "Region": "cn-beijing",
                    "InstanceId": "kafka-1",
                    "VpcId": "vpc-1",
                    "Topic": "alerts",
                    "Endpoints": "10.0.0.7:9092",
                    "Username": "relay",
                    "Password": "kafka-secret",
                    "AuthEncrypt": "SCRAM-SHA-256",
                }
            ],
            "CreatedAt": 1732406400,
            "UpdatedAt": 1732406400,
            **fields,
        }
        return self.event_rules[rule_id]

    def add_alarm_policy(self, name: str, **fields: Any) -> dict[str, Any]:
        """An alarm policy as ListRules gives it (fields from DataForListRulesOutput)."""
        rule_id = f"ar{next(self._ids):06d}"
        self.alarm_policies[rule_id] = {
            "Id": rule_id,
            "RuleName": name,
            "RuleType": "static",
            "Namespace": "VCM_ECS",
            "SubNamespace": "Instance",
            "Level": "critical",
            "EnableState": "enable",
            "AlertState": "alerting",
            "EvaluationCount": 3,
            "EvaluationInterval": 60,
            "SilenceTime": 5,
            "EffectStartAt": "00:00",
            "EffectEndAt": "23:59",
            "ConditionOperator": "||",
            "Conditions": [dict(CPU_CONDITION)],
            "MultipleConditions": False,
            "NoData": {"Enable": False, "EvaluationCount": 3},
            "RecoveryNotify": {"Enable": True},
            "Regions": ["cn-beijing"],
            "OriginalDimensions": {"ResourceID": ["*"]},
            "AlertMethods": ["Email"],
            "ContactGroupIds": ["cg-oncall"],
            "WebHook": "",
            "WebhookIds": [],
            "Tags": [{"Key": "team", "Value": "sre"}],
            "NotificationId": "ntf-ops",
            "LevelConditions": [
                {
                    "Level": "critical",
                    "Conditions": [{**CPU_CONDITION, "EvaluationWindow": 300}],
                }
            ],
            "NotifyTemplates": [{"NotifyTemplateId": "tpl-1", "Channel": "Email"}],
            "ProjectName": "default",
            "ResourceType": "ECS",
            "CreatedAt": "2024-11-24T00:00:00Z",
            "UpdatedAt": "2024-11-24T00:00:00Z",
            **fields,
        }
        return self.alarm_policies[rule_id]

    def add_alert_group(self, rule: dict[str, Any], resource_id: str, start_at: int, **fields: Any) -> dict[str, Any]:
        """An alarm of `rule` on one resource, as ListAlertGroup gives it (DataForListAlertGroupOutput).
        AlertState's values are not documented: the tests use both spellings the relay reads."""
        group_id = f"{next(self._ids):019d}"
        self.alert_groups[group_id] = {
            "Id": group_id,
            "RuleId": rule["Id"],
            "RuleName": rule["RuleName"],
            "RuleTriggerCondition": "CpuTotal > 90%",
            "Level": rule["Level"],
            "Namespace": rule["Namespace"],
            "SubNamespace": rule["SubNamespace"],
            "ResourceType": "Instance",
            "ResourceId": resource_id,
            "ResourceName": f"name-of-{resource_id}",
            "Region": "cn-beijing",
            "Dimension": f"ResourceID={resource_id}",
            "AlertType": "Threshold",
            "AlertState": "Alerting",
            "StartAt": start_at,
            "EndAt": 0,
            "Duration": 0,
            **fields,
        }
        return self.alert_groups[group_id]

    # Actions: each takes the request body and gives the Result ------------------------------

    def _list_functions(self, body: dict[str, Any]) -> dict[str, Any]:
        names = {v for f in body.get("Filters") or [] if f.get("Name") == "Name" for v in f.get("Values") or []}
        items = [
            {"Id": f.id, "Name": f.name, "Runtime": f.runtime}
            for f in self.functions.values()
            if not names or f.name in names
        ]
        return {"Items": items, "Total": len(items)}

    def _get_function(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["Id"])
        return {"Id": function.id, "Name": function.name, "Runtime": function.runtime, **function.fields}

    def _create_function(self, body: dict[str, Any]) -> dict[str, Any]:
        _unique(body["Name"], [f.name for f in self.functions.values()], "function")
        function_id = f"fn{next(self._ids):06d}"
        fields = {k: v for k, v in body.items() if k not in ("Name", "Runtime")}
        self.functions[function_id] = Function(function_id, body["Name"], body["Runtime"], fields)
        if body["Name"].endswith("-deploy-lease"):
            self.lease_ids.add(function_id)
        return {"Id": function_id, "Name": body["Name"]}

    def _update_function(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["Id"])
        function.fields.update({k: v for k, v in body.items() if k != "Id"})
        return {"Id": function.id}

    def _delete_function(self, body: dict[str, Any]) -> dict[str, Any]:
        del self.functions[self._by_id(body["Id"]).id]
        return {}

    def _get_code_upload_address(self, body: dict[str, Any]) -> dict[str, Any]:
        self._by_id(body["FunctionId"])
        base = self.upload_base or self.origin
        return {"UploadAddress": f"{base}/upload/{body['FunctionId']}?X-Tos-Signature=secret-signature"}

    def _code_upload_callback(self, body: dict[str, Any]) -> dict[str, Any]:
        self._by_id(body["FunctionId"])
        return {}

    def _create_dependency_install_task(self, body: dict[str, Any]) -> dict[str, Any]:
        self._by_id(body["FunctionId"])
        return {}

    def _get_dependency_install_task_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"FunctionId": body["FunctionId"], "Status": "Succeeded"}

    def _release(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        if self.release_status != "Failed":
            self.release(function)
        return {"FunctionId": function.id, "Status": "InProgress"}

    def _get_release_status(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        # The revision that serves traffic (0 before the first release: undocumented, the harsher reading).
        stable = len(function.revisions)
        return {"FunctionId": function.id, "Status": self.release_status, "StableRevisionNumber": stable}

    def _get_revision(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        number = int(body["RevisionNumber"])
        if not 1 <= number <= len(function.revisions):
            raise _Refusal(404, "ResourceNotFound.Revision", f"revision {number} not found")
        return {"Id": function.id, "Name": function.name, "Runtime": function.runtime, **function.revisions[number - 1]}

    def _list_triggers(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        return {"Items": function.triggers, "Total": len(function.triggers)}

    def _create_timer(self, body: dict[str, Any]) -> dict[str, Any]:
        function = self._by_id(body["FunctionId"])
        timer = {"Id": f"tm{next(self._ids):06d}", "Type": "timer", "FunctionId": function.id, **body}
        function.triggers.append(timer)
        return timer

    def _get_timer(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._timer(body)

    def _update_timer(self, body: dict[str, Any]) -> dict[str, Any]:
        timer = self._timer(body)
        timer.update(body)
        return timer

    def _timer(self, body: dict[str, Any]) -> dict[str, Any]:
        found = [t for t in self._by_id(body["FunctionId"]).triggers if t["Id"] == body["Id"]]
        if not found:
            raise _Refusal(404, "ResourceNotFound.Timer", f"timer {body['Id']} not found")
        return found[0]

    # API gateway (service apig: gateways, upstreams, services 2021-03-03; routes 2022-11-12)

    def _list_gateways(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("Filter") or {}).get("Name")
        items = [{"Id": g["Id"], "Name": g["Name"]} for g in self.gateways.values() if not name or g["Name"] == name]
        return {"Items": items, "Total": len(items)}

    def _list_upstreams(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("Filter") or {}).get("Name")
        upstreams = self._gateway(body["GatewayId"])["Upstreams"].values()
        items = [u for u in upstreams if not name or u["Name"] == name]
        return {"Items": items, "Total": len(items)}

    def _create_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        gateway = self._gateway(body["GatewayId"])
        _unique(body["Name"], [u["Name"] for u in gateway["Upstreams"].values()], "upstream")
        if body["SourceType"] != "VeFaas" or not (body["UpstreamSpec"].get("VeFaas") or {}).get("FunctionId"):
            self.violations.append(f"CreateUpstream of {body['SourceType']} without UpstreamSpec.VeFaas.FunctionId")
        upstream_id = f"ud{next(self._ids):06d}"
        gateway["Upstreams"][upstream_id] = {"Id": upstream_id, **body}
        return {"Id": upstream_id}

    def _update_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        for gateway in self.gateways.values():
            if body["Id"] in gateway["Upstreams"]:
                gateway["Upstreams"][body["Id"]].update(body)
                return {"Id": body["Id"]}
        raise _Refusal(404, "NotFound.Upstream", f"upstream {body['Id']} not found")

    def _list_gateway_services(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("Filter") or {}).get("Name")
        services = self._gateway(body["GatewayId"])["Services"].values()
        items = [s for s in services if not name or s["Name"] == name]
        return {"Items": items, "Total": len(items)}

    def _create_gateway_service(self, body: dict[str, Any]) -> dict[str, Any]:
        gateway = self._gateway(body["GatewayId"])
        _unique(body["ServiceName"], [s["Name"] for s in gateway["Services"].values()], "service")
        service_id = f"sd{next(self._ids):06d}"
        gateway["Services"][service_id] = {
            "Id": service_id,
            "Name": body["ServiceName"],
            "GatewayId": gateway["Id"],
            "Protocol": body.get("Protocol") or ["HTTP"],
            "AuthSpec": body.get("AuthSpec") or {"Enable": False},
            "Domains": [
                {"Domain": f"{service_id}.apigateway-cn-beijing.volceapi.com", "Type": "public"},
                {"Domain": f"{service_id}.apigateway-cn-beijing.ivolces.com", "Type": "private"},
            ],
        }
        return {"Id": service_id}

    def _list_routes(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("Filter") or {}).get("Name")
        items = [
            r for r in self.routes.values() if r["ServiceId"] == body["ServiceId"] and (not name or r["Name"] == name)
        ]
        return {"Items": items, "Total": len(items)}

    def _create_route(self, body: dict[str, Any]) -> dict[str, Any]:
        upstreams = {u for g in self.gateways.values() for u in g["Upstreams"]}
        if any(u.get("UpstreamId") not in upstreams for u in body["UpstreamList"]):
            self.violations.append("CreateRoute to an upstream that does not exist")
        same_service = [r["Name"] for r in self.routes.values() if r["ServiceId"] == body["ServiceId"]]
        _unique(body["Name"], same_service, "route")
        route_id = f"rt{next(self._ids):06d}"
        self.routes[route_id] = {"Id": route_id, **body}
        return {"Id": route_id}

    def _update_route(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["Id"] not in self.routes:
            raise _Refusal(404, "NotFound.Route", f"route {body['Id']} not found")
        self.routes[body["Id"]].update(body)
        return {"Id": body["Id"]}

    def _gateway(self, gateway_id: str) -> dict[str, Any]:
        if gateway_id not in self.gateways:
            raise _Refusal(404, "NotFound.Gateway", f"gateway {gateway_id} not found")
        return self.gateways[gateway_id]

    # Cloud Monitor (service cloudmonitor, 2018-01-01): callback URLs, event rules, alarm policies

    def _list_webhooks(self, body: dict[str, Any]) -> dict[str, Any]:
        found = [
            {k: v for k, v in w.items() if k != "Token"}  # the token is never given back
            for w in self.webhooks.values()
            if body.get("Name", "") in w["Name"]  # fuzzy, as documented
        ]
        return self._page(body, found)

    def _create_webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        webhook_id = f"{next(self._ids):019d}"
        self.webhooks[webhook_id] = {"Id": webhook_id, "EventRuleIds": [], "RuleIds": [], **body}
        return {"Data": [webhook_id]}

    def _update_webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["Id"] not in self.webhooks:
            raise _Refusal(404, "NotFound.Webhook", f"webhook {body['Id']} not found")
        fields = {k: v for k, v in body.items() if k not in ("WithToken", "Token")}
        self.webhooks[body["Id"]].update(fields)
        if not body.get("WithToken"):
            self.webhooks[body["Id"]].pop("Token", None)
        elif body.get("Token"):
            self.webhooks[body["Id"]]["Token"] = body["Token"]
        return {"Data": [body["Id"]]}

    def _delete_webhooks_by_ids(self, body: dict[str, Any]) -> dict[str, Any]:
        for webhook_id in body["Ids"]:
            webhook = self.webhooks.get(webhook_id)
            if webhook is None:
                raise _Refusal(404, "NotFound.Webhook", f"webhook {webhook_id} not found")
            if webhook["RuleIds"] or webhook["EventRuleIds"]:  # the harsher reading: one in use is kept
                raise _Refusal(400, "OperationDenied.WebhookInUse", f"webhook {webhook_id} is used by rules")
        for webhook_id in body["Ids"]:
            del self.webhooks[webhook_id]
        return {"Data": body["Ids"]}

    def _list_event_rules(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._page(body, list(self.event_rules.values()))

    def _update_event_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = self.event_rules.get(body["RuleId"])
        if rule is None:
            raise _Refusal(404, "NotFound.EventRule", f"event rule {body['RuleId']} not found")
        _refuse_webhooks(body, "UpdateEventRule")
        effective = body.get("EffectiveTime") or {}
        listed = {**{k: v for k, v in body.items() if k not in ("EventSource", "Status", "EffectiveTime")}}
        listed.update(Source=body["EventSource"], EnableState=body.get("Status"))
        listed.update(EffectStartAt=effective.get("StartTime"), EffectEndAt=effective.get("EndTime"))
        self._replace(rule, listed, "UpdateEventRule")
        return {"Data": {"RuleId": rule["RuleId"]}}

    def _list_rules(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._page(body, list(self.alarm_policies.values()))

    def _list_rules_by_ids(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"Data": [rule for rule_id, rule in self.alarm_policies.items() if rule_id in body["Ids"]]}

    def _update_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = self.alarm_policies.get(body["Id"])
        if rule is None:
            raise _Refusal(404, "NotFound.Rule", f"alarm policy {body['Id']} not found")
        if "Tags" in body:  # the Terraform provider's finding: UpdateRule fails when Tags is sent
            raise _Refusal(400, "InvalidParameter.Tags", "Tags cannot be updated by UpdateRule: use TagResources")
        _refuse_webhooks(body, "UpdateRule")
        listed = {k: v for k, v in body.items() if k != "Webhook"}
        listed["WebHook"] = body.get("Webhook") or ""
        self._replace(rule, listed, "UpdateRule")  # and, as the provider found, without its tags
        return {"Data": [rule["Id"]]}

    def _tag_resources(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["ResourceType"] != "rule":
            raise _Refusal(400, "InvalidParameter.ResourceType", f"no resource type {body['ResourceType']!r}")
        for rule_id in body["ResourceIds"]:
            if rule_id not in self.alarm_policies:
                raise _Refusal(404, "NotFound.Rule", f"alarm policy {rule_id} not found")
        for rule_id in body["ResourceIds"]:
            tags = {t["Key"]: t["Value"] for t in self.alarm_policies[rule_id].get("Tags") or []}
            tags.update({t["Key"]: t["Value"] for t in body["Tags"]})
            self.alarm_policies[rule_id]["Tags"] = [{"Key": k, "Value": v} for k, v in tags.items()]
        return {"Data": {"ResourceIds": body["ResourceIds"]}}

    def _replace(self, rule: dict[str, Any], listed: dict[str, Any], action: str) -> None:
        """An Update replaces the whole rule, as Volcengine's does: a field left out is lost, nested
        ones too, and so are the nested fields it does not take (NOT_UPDATED); `lost` says which."""
        for field_name, dropped in NOT_UPDATED[action].items():
            if isinstance(listed.get(field_name), list):
                listed[field_name] = [
                    {k: v for k, v in item.items() if k not in dropped} if isinstance(item, dict) else item
                    for item in listed[field_name]
                ]
        rule_id = rule.get("RuleId") or rule.get("Id")
        kept = {k: rule[k] for k in READ_ONLY[action] if k in rule}
        self.lost += [
            f"{rule_id}: {path}" for path in _missing({k: v for k, v in rule.items() if k not in kept}, listed)
        ]
        rule.clear()
        rule.update({**listed, **kept})
        for webhook in self.webhooks.values():
            ids = webhook["EventRuleIds" if action == "UpdateEventRule" else "RuleIds"]
            if webhook["Id"] in (rule.get("WebhookIds") or []) and rule_id not in ids:
                ids.append(rule_id)
            elif webhook["Id"] not in (rule.get("WebhookIds") or []) and rule_id in ids:
                ids.remove(rule_id)

    def _list_alert_group(self, body: dict[str, Any]) -> dict[str, Any]:
        start, end = int(body.get("StartAt") or 0), int(body.get("EndAt") or 0)
        if end - start < 60:  # documented: an interval under a minute means the last 7 days
            self.violations.append("ListAlertGroup with an interval under a minute reads the last 7 days")
        rules = set(body.get("RuleIds") or [])
        resource = body.get("ResourceId") or ""
        states = {s.lower() for s in body.get("AlertStates") or []}
        if not states <= {"alerting", "normal"}:
            self.violations.append(f"ListAlertGroup AlertStates {sorted(states)}: documented are alerting, normal")
        # StartAt/EndAt bound when an alarm was triggered (docs 6408/152723), whatever happened since.
        found = [
            g
            for g in self.alert_groups.values()
            if (not rules or g["RuleId"] in rules)
            and (not resource or g["ResourceId"] == resource)
            and start <= _epoch(g["StartAt"]) <= end
            and (not states or _alert_state(g, self.alerting_spellings) in states)
        ]
        found.sort(key=lambda g: (_epoch(g["StartAt"]), g["Id"]))
        if self.alert_group_page_max is not None:
            body = {**body, "PageSize": min(int(body.get("PageSize") or 10), self.alert_group_page_max)}
        answer = self._page(body, found[:ALERT_GROUP_LIMIT])
        # The SDK types StartAt, EndAt and Duration as strings: the stand-in gives them so.
        answer["Data"] = [{**g, **{k: str(g[k]) for k in ("StartAt", "EndAt", "Duration")}} for g in answer["Data"]]
        answer["TotalCount"] = {"all": len(found), "page": len(answer["Data"])}.get(self.alert_group_total)
        if answer["TotalCount"] is None:
            del answer["TotalCount"]
        return answer

    def add_event(self, event_type: str, resource: str, happened: int, **fields: Any) -> dict[str, Any]:
        """An Event Center event as ListEvents gives it (DataForListEventsOutput), its Detail the
        CloudEvents object a callback's Details carries."""
        event_id = f"ev{next(self._ids):06d}"
        self.events[event_id] = {
            "ID": event_id,
            "Source": event_type.split(":")[0],
            "EventType": event_type,
            "HappenTime": happened,
            "Region": "cn-beijing",
            "EventBusName": "default",
            "Detail": {
                "specversion": "1.0",
                "id": event_id,
                "source": event_type.split(":")[0],
                "type": event_type,
                "volcaccountid": "2100000001",
                "volcregion": "cn-beijing",
                "volceventbusname": "default",
                "volcresourcename": resource,
                "subject": resource,
                "time": str(happened),
            },
            **fields,
        }
        return self.events[event_id]

    def _list_events(self, body: dict[str, Any]) -> dict[str, Any]:
        """ListEvents (docs 6408/130880): StartTime/EndTime bound HappenTime (the last 30 minutes when
        both are unset), Source and EventType filter, OrderBy only HappenTime, Asc false by default."""
        start, end = body.get("StartTime"), body.get("EndTime")
        if start is None and end is None:
            end = int(self.clock())
            start = end - 1800
        if not isinstance(start, int) or not isinstance(end, int) or start > end:
            self.violations.append(f"ListEvents StartTime/EndTime must be epoch seconds, start first: {start}, {end}")
            return {"Data": [], "TotalCount": 0}
        if body.get("OrderBy") not in (None, "HappenTime"):
            self.violations.append(f"ListEvents OrderBy {body.get('OrderBy')!r}: only HappenTime is documented")
        sources, types = set(body.get("Source") or []), set(body.get("EventType") or [])
        found = [
            e
            for e in self.events.values()
            if start <= e["HappenTime"] <= end
            and (not sources or e["Source"] in sources)
            and (not types or e["EventType"] in types)
        ]
        found.sort(key=lambda e: (e["HappenTime"], e["ID"]), reverse=not body.get("Asc"))
        size = min(int(body.get("PageSize") or 30), self.event_page_max or 10**6)
        answer = self._page({**body, "PageSize": size}, found)
        if not self.event_total:
            del answer["TotalCount"]
        return answer

    @staticmethod
    def _page(body: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
        number, size = int(body.get("PageNumber") or 1), int(body.get("PageSize") or 10)
        page = items[(number - 1) * size : number * size]
        return {"Data": page, "TotalCount": len(items), "PageNumber": number, "PageSize": size}

    def _by_id(self, function_id: str) -> Function:
        if function_id not in self.functions:
            raise _Refusal(404, "ResourceNotFound.Function", f"function {function_id} not found")
        return self.functions[function_id]

    def _actions(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "ListFunctions": self._list_functions,
            "GetFunction": self._get_function,
            "CreateFunction": self._create_function,
            "UpdateFunction": self._update_function,
            "DeleteFunction": self._delete_function,
            "GetCodeUploadAddress": self._get_code_upload_address,
            "CodeUploadCallback": self._code_upload_callback,
            "CreateDependencyInstallTask": self._create_dependency_install_task,
            "GetDependencyInstallTaskStatus": self._get_dependency_install_task_status,
            "Release": self._release,
            "GetReleaseStatus": self._get_release_status,
            "GetRevision": self._get_revision,
            "ListTriggers": self._list_triggers,
            "CreateTimer": self._create_timer,
            "GetTimer": self._get_timer,
            "UpdateTimer": self._update_timer,
            "ListGateways": self._list_gateways,
            "ListUpstreams": self._list_upstreams,
            "CreateUpstream": self._create_upstream,
            "UpdateUpstream": self._update_upstream,
            "ListGatewayServices": self._list_gateway_services,
            "CreateGatewayService": self._create_gateway_service,
            "ListRoutes": self._list_routes,
            "CreateRoute": self._create_route,
            "UpdateRoute": self._update_route,
            "ListWebhooks": self._list_webhooks,
            "CreateWebhook": self._create_webhook,
            "UpdateWebhook": self._update_webhook,
            "DeleteWebhooksByIds": self._delete_webhooks_by_ids,
            "ListEventRules": self._list_event_rules,
            "UpdateEventRule": self._update_event_rule,
            "ListRules": self._list_rules,
            "UpdateRule": self._update_rule,
            "ListRulesByIds": self._list_rules_by_ids,
            "TagResources": self._tag_resources,
            "ListAlertGroup": self._list_alert_group,
            "ListEvents": self._list_events,
        }

    def _handle(self, action: str, version: str, headers: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        authorization = headers.get("Authorization", "")
        known = tuple(f"HMAC-SHA256 Credential={key}/" for key in (ACCESS_KEY, READER_KEY))
        if not authorization.startswith(known) or not headers.get("X-Date"):
            raise _Refusal(401, "InvalidAccessKey", "the request is not signed with a known access key")
        handler = self._actions().get(action)
        if handler is None:
            raise _Refusal(404, "InvalidActionOrVersion", f"{action} {version} is not an action of this stand-in")
        missing = [name for name in REQUIRED.get(action, ()) if body.get(name) in (None, "")]
        if missing:
            self.violations.append(f"{action} without {missing}")
            raise _Refusal(400, "MissingParameter", f"{action} needs {missing}")
        if action in self.deny:
            raise _Refusal(403, "AccessDenied", f"User is not authorized to perform: {action}")
        # The answer as sent (a copy): a change made after it must not reach the caller through it.
        result = json.loads(json.dumps(handler(body)))
        if action in self.after:
            self.after.pop(action)()
        return 200, result

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(DatedHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:  # the presigned code upload address
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                function_id = urlsplit(self.path).path.rsplit("/", 1)[-1]
                with stub._lock:
                    stub.functions[function_id].code = data
                self._reply(200, b"")

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                action, version = query.get("Action", ""), query.get("Version", "")
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                metadata: dict[str, Any] = {"RequestId": "standin", "Action": action, "Version": version}
                fault = stub.faults[action]() if action in stub.faults else None
                with stub._lock:
                    stub.calls.append(Call(action, version, body if isinstance(body, dict) else {}))
                    try:
                        if fault is not None and fault.status != 200:
                            raise _Refusal(fault.status, fault.code or "InternalError", "scripted fault")
                        if not isinstance(body, dict):
                            stub.violations.append(f"{action}: body is not a JSON object")
                            raise _Refusal(400, "InvalidParameter", "the body is not a JSON object")
                        status, result = stub._handle(action, version, self.headers, body)
                        answer: dict[str, Any] = {"ResponseMetadata": metadata, "Result": result}
                    except _Refusal as refusal:
                        status = refusal.status
                        error = {"Code": refusal.code, "Message": refusal.message}
                        answer = {"ResponseMetadata": {**metadata, "Error": error}}
                    lost = stub.lose_answers.get(action, 0) > 0 and status == 200
                    if lost:
                        stub.lose_answers[action] -= 1
                stub.observe(action, body if isinstance(body, dict) else {}, status)
                time.sleep(stub.delays.get(action, 0.0))
                if lost:  # done, and the connection drops before the answer
                    self.close_connection = True
                    return
                data = json.dumps(answer).encode()
                if fault is not None and fault.drip:
                    head = f"HTTP/1.0 {status} {HTTPStatus(status).phrase}\r\nContent-Type: application/json\r\n"
                    head += f"Content-Length: {len(data)}\r\n\r\n"
                    return drip(self.wfile, head.encode() + data, fault.drip)
                self._reply(status, data, "application/json", fault.headers if fault else {})

            def _reply(
                self, status: int, data: bytes, content_type: str = "text/plain", headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller stopped waiting (a hang it was meant to cut off)

        return Handler


def _epoch(value: Any) -> float:
    """A trigger time in whichever spelling a test stored it (seconds, milliseconds, RFC 3339)."""
    try:
        number = float(value)
    except ValueError:
        return datetime.fromisoformat(str(value)).timestamp()
    return number / 1000 if number > 1e11 else number


def _alert_state(group: dict[str, Any], alerting: Any = ("alerting", "alarm", "firing")) -> str:
    """The documented AlertStates value a stored alarm answers to (its AlertState spelling is the test's)."""
    return "alerting" if str(group["AlertState"]).lower() in alerting else "normal"


def _unique(name: str, taken: list[str], what: str) -> None:
    """A veFaaS function's, and a gateway's upstream, service and route names are unique where they live
    (a Cloud Monitor callback URL's are not)."""
    if name in taken:
        raise _Refusal(400, "AlreadyExists", f"a {what} named {name!r} already exists")


def _refuse_webhooks(body: dict[str, Any], action: str) -> None:
    """One old-style URL or up to WEBHOOKS_MAX callback URLs: the console's rule, and Terraform's one-of."""
    ids = body.get("WebhookIds") or []
    if len(ids) > WEBHOOKS_MAX:
        raise _Refusal(400, "InvalidParameter.WebhookIds", f"{action}: at most {WEBHOOKS_MAX} webhook ids")
    if ids and (body.get("Webhook") or body.get("Endpoint")):  # a policy's URL, an event rule's
        raise _Refusal(400, "InvalidParameter.Webhook", f"{action}: a webhook URL or webhook ids, not both")


def _missing(old: Any, new: Any, path: str = "") -> list[str]:
    """The field paths `old` has (with a value) and `new` lacks, through nested objects and lists (a
    changed value is a change, not a loss)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [path]
        lost = []
        for key, value in old.items():
            here = f"{path}.{key}" if path else key
            if value not in (None, "", [], {}):
                lost += _missing(value, new[key], here) if key in new else [here]
        return lost
    if isinstance(old, list):
        if not isinstance(new, list):
            return [path]
        if len(old) == len(new):
            return [
                lost for i, (a, b) in enumerate(zip(old, new, strict=True)) for lost in _missing(a, b, f"{path}[{i}]")
            ]
        return [f"{path}[{i}]" for i, item in enumerate(old) if item not in new]
    return []


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
