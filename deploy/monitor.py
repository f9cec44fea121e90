"""Cloud Monitor: the relay's callback URL (a Generic Webhook), ticked in the event rules and alarm
policies named."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import volcengine_api
from deploy.calls import Caller, DeployError

# Cloud Monitor's "Generic Webhook" type. The OpenAPI reference gives no value set for Type; BytePlus's
# Terraform provider documents custom (generic), wecom, lark, dingtalk. A found webhook of another
# type that is not a chat bot is taken as generic too.
WEBHOOK_TYPE = "custom"
CHAT_BOT_TYPES = frozenset({"wecom", "lark", "dingtalk", "slack"})
MONITOR_VERSION = "2018-01-01"


@dataclass(frozen=True)
class Wiring:
    """How Cloud Monitor reaches the function: a route on a named API gateway, and the callback URL
    (webhook) ticked in the event rules and alarm policies named (None: leave them; ("all",): every one)."""

    gateway: str | None = None
    event_rules: tuple[str, ...] | None = None
    alarm_policies: tuple[str, ...] | None = None

    @property
    def monitor(self) -> bool:
        return self.event_rules is not None or self.alarm_policies is not None


@dataclass
class Monitor:
    """The wiring's steps, against Cloud Monitor's SDK client (api, models) and the universal API."""

    caller: Caller
    api: Any
    models: Any
    universal: Any

    def webhook(self, name: str, url: str, token: str | None, token_changed: bool) -> str:
        """Cloud Monitor's callback URL to the relay. Its token cannot be read back, so it is set when
        the webhook is made, and again when this deploy changes the function's CALLBACK_TOKEN."""
        api, models = self.api, self.models
        webhooks = self.caller.pages(
            "list callback URLs",
            lambda page: api.list_webhooks(models.ListWebhooksRequest(name=name, page_number=page, page_size=100)),
        )
        same_name = sorted((w for w in webhooks if w.name == name), key=lambda w: w.url != url)
        if not same_name:
            created = self.caller.call(
                "create callback URL",
                lambda: (
                    api.create_webhook(
                        models.CreateWebhookRequest(
                            name=name, type=WEBHOOK_TYPE, url=url, **({"token": token} if token else {})
                        )
                    ).data
                ),
            )
            self.caller.say(
                f"callback URL {name!r}: created ({created[0]}) to {url}" + (", with the token" if token else "")
            )
            return str(created[0])
        found = same_name[0]
        differs = [
            what
            for what, differ in (
                ("url", found.url != url),
                ("type", str(found.type).lower() in CHAT_BOT_TYPES),
                ("token", token_changed),
            )
            if differ
        ]
        if not differs:
            self.caller.say(f"callback URL {name!r}: found ({found.id}), unchanged")
            return str(found.id)
        self.caller.call(
            "update callback URL",
            lambda: api.update_webhook(
                models.UpdateWebhookRequest(
                    id=found.id, name=name, type=WEBHOOK_TYPE, url=url, with_token=bool(token), token=token or None
                )
            ),
        )
        self.caller.say(f"callback URL {name!r}: updated its {', '.join(differs)} ({found.id})")
        return str(found.id)

    def tick(self, webhook_id: str, wiring: Wiring) -> None:
        """The webhook ticked in each named event rule and alarm policy; each rule keeps all it had."""
        api, models = self.api, self.models
        chosen = []  # every name is resolved before any rule changes
        if wiring.event_rules is not None:
            rules = self.caller.pages(
                "list event rules",
                lambda page: api.list_event_rules(models.ListEventRulesRequest(page_number=page, page_size=100)),
            )
            chosen += [
                ("event rule", r, "UpdateEventRule")
                for r in _choose(rules, wiring.event_rules, "rule_id", "event rule")
            ]
        if wiring.alarm_policies is not None:
            rules = self.caller.pages(
                "list alarm policies",
                lambda page: api.list_rules(models.ListRulesRequest(page_number=page, page_size=100)),
            )
            chosen += [
                ("alarm policy", r, "UpdateRule") for r in _choose(rules, wiring.alarm_policies, "id", "alarm policy")
            ]
        for what, rule, action in chosen:
            wire = volcengine_api.wire(rule)
            methods_field = "ContactMethods" if action == "UpdateEventRule" else "AlertMethods"
            if webhook_id in (wire.get("WebhookIds") or []) and "Webhook" in (wire.get(methods_field) or []):
                self.caller.say(f"{what} {rule.rule_name!r}: already calls the relay")
                continue
            body = _update_body(wire, action, models)
            body["WebhookIds"] = [*(wire.get("WebhookIds") or []), webhook_id]
            body[methods_field] = sorted({*(wire.get(methods_field) or []), "Webhook"})
            info = models.UniversalInfo(
                method="POST",
                service="cloudmonitor",
                version=MONITOR_VERSION,
                action=action,
                content_type="application/json",
            )
            self.caller.call(f"update {what} {rule.rule_name!r}", functools.partial(self.universal.do_call, info, body))
            self.caller.say(f"{what} {rule.rule_name!r}: now calls the relay")


def _choose(rules: list[Any], wanted: tuple[str, ...], id_field: str, what: str) -> list[Any]:
    """The rules named by id or name, or all of them; a name that matches nothing stops the deploy."""
    if wanted == ("all",):
        return rules
    chosen = [r for r in rules if getattr(r, id_field) in wanted or r.rule_name in wanted]
    unknown = sorted(set(wanted) - {getattr(r, id_field) for r in chosen} - {r.rule_name for r in chosen})
    if unknown:
        raise DeployError(f"no {what} has the id or name {', '.join(unknown)} in this region; nothing was ticked")
    return chosen


def _update_body(wire: dict[str, Any], action: str, models: Any) -> dict[str, Any]:
    """A listed rule as its Update action takes it back: every field it accepts, so nothing is lost."""
    accepted = set(
        (
            models.UpdateEventRuleRequest if action == "UpdateEventRule" else models.UpdateRuleRequest
        ).attribute_map.values()
    )
    body = {k: v for k, v in wire.items() if k in accepted}
    if action == "UpdateRule":
        if "WebHook" in wire:
            body["Webhook"] = wire["WebHook"]  # listed as WebHook, updated as Webhook
        return body
    # Listed as Source / EnableState / EffectStartAt+EffectEndAt, updated as these (the value sets of
    # EnableState and Status are not documented; the SDK's examples use enable / disable for both).
    body["EventSource"] = wire.get("Source")
    if wire.get("EnableState"):
        body["Status"] = wire["EnableState"]
    if wire.get("EffectStartAt") or wire.get("EffectEndAt"):
        body["EffectiveTime"] = {"StartTime": wire.get("EffectStartAt"), "EndTime": wire.get("EffectEndAt")}
    return body
