"""Cloud Monitor: the relay's callback URL (a Generic Webhook), ticked in the event rules and alarm
policies named."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import config
from config import DEFAULT_ROUTE
from deploy.calls import Caller, DeployError

# Cloud Monitor's "Generic Webhook" type. The OpenAPI reference gives no value set for Type; BytePlus's
# Terraform provider documents custom (generic), wecom, lark, dingtalk. A found webhook of another
# type that is not a chat bot is taken as generic too.
WEBHOOK_TYPE = "custom"
CHAT_BOT_TYPES = frozenset({"wecom", "lark", "dingtalk", "slack"})
MONITOR_VERSION = "2018-01-01"
# Cloud Monitor takes one old-style webhook URL or up to this many callback URLs in a rule, not both
# (BytePlus's console; Volcengine's Terraform provider treats them as one-of).
WEBHOOKS_MAX = 8
# TagResources' resource type for an alarm policy: not documented; what the provider's service sends.
TAG_RESOURCE_TYPE = "rule"
# An event rule's message queue credentials (Kafka's SASL user, password and mechanism): never saved to a
# file (CI keeps the saved rules as an artifact); a restore keeps what the rule has then.
CREDENTIALS = ("Username", "Password", "AuthEncrypt")
# A rule's old-style single URL (a policy's WebHook, an event rule's Endpoint, as the SDK's models and
# Volcengine's Terraform provider name them): often a chat bot's hook with its secret in it, so never saved.
OLD_STYLE_URLS = ("WebHook", "Endpoint")
WITHHELD = "(withheld: never saved; a restore keeps the rule's own)"


@dataclass(frozen=True)
class Kind:
    """Event rules or alarm policies: how they are listed, read again, written, and what the tick is."""

    what: str
    option: str
    list_action: str
    update_action: str
    id_field: str
    methods: str  # where "Webhook" is ticked
    read_model: str  # the SDK's models, for which fields a rule shows but its Update does not take
    update_model: str
    renamed: dict[str, str]  # listed name: updated name
    changing: tuple[str, ...]  # what changes by itself (an alarm's state, the update time)

    def rule_id(self, rule: dict[str, Any]) -> str:
        return str(rule[self.id_field])

    def name(self, rule: dict[str, Any]) -> str:
        return f"{self.what} {rule.get('RuleName')!r} ({self.rule_id(rule)})"


EVENT_RULES = Kind(
    "event rule",
    "--event-rules",
    "ListEventRules",
    "UpdateEventRule",
    "RuleId",
    "ContactMethods",
    "DataForListEventRulesOutput",
    "UpdateEventRuleRequest",
    {"Source": "EventSource", "EnableState": "Status"},  # and EffectStartAt/EndAt: EffectiveTime
    ("UpdatedAt",),
)
ALARM_POLICIES = Kind(
    "alarm policy",
    "--alarm-policies",
    "ListRules",
    "UpdateRule",
    "Id",
    "AlertMethods",
    "DataForListRulesOutput",
    "UpdateRuleRequest",
    {"WebHook": "Webhook"},
    ("UpdatedAt", "AlertState"),
)


KINDS = {kind.what: kind for kind in (EVENT_RULES, ALARM_POLICIES)}


@dataclass(frozen=True)
class Wiring:
    """How Cloud Monitor reaches the function: a route on a named API gateway, and for each of the
    relay's routes (DEFAULT_ROUTE, or a ROUTES name) its own callback URL (webhook), ticked in the event
    rules and alarm policies named for it (None: leave them; ("all",): every one)."""

    gateway: str | None = None
    event_rules: Mapping[str, tuple[str, ...]] | None = None  # route: rule ids or names
    alarm_policies: Mapping[str, tuple[str, ...]] | None = None
    repoint: bool = False  # a callback URL of the relay's name at another URL is pointed at the relay

    @property
    def monitor(self) -> bool:
        return self.event_rules is not None or self.alarm_policies is not None

    @property
    def routes(self) -> list[str]:
        return sorted({route for feeds in (self.event_rules, self.alarm_policies) for route in feeds or {}})


def webhook_name(function: str, route: str) -> str:
    """A route's callback URL's name: the function's for the default route, `<function>.<route>` for
    another (a function's name has no '.', so no other relay's name is of this form)."""
    return function if route == DEFAULT_ROUTE else f"{function}.{route}"


def _route_of(function: str, name: str) -> str | None:
    """The route whose callback URL has this name (webhook_name), or None."""
    prefix, dot, route = name.partition(".")
    return route if dot and prefix == function and config.ROUTE_NAME.match(route) else None


def route_url(url: str, route: str) -> str:
    """A route's callback URL: the relay reads the route from the path's last segment (config.route_of)."""
    return url if route == DEFAULT_ROUTE else f"{url.rstrip('/')}/{route}"


@dataclass
class Monitor:
    """The wiring's steps, against Cloud Monitor's SDK client (api, models) and the universal API."""

    caller: Caller
    api: Any
    models: Any
    universal: Any
    # Told a policy's tags before the UpdateRule that drops them, and None once TagResources put them
    # back: kept where a later run can read it, so that a run stopped in between loses nothing.
    tagging: Callable[[dict[str, Any], list[Any] | None], None] = field(default=lambda rule, tags: None)

    def webhooks_named(self, name: str, routes: bool = False) -> list[Any]:
        """Every callback URL of exactly this name (Cloud Monitor allows several), and with `routes`
        every route's of this function too (webhook_name), oldest first."""
        webhooks = self.caller.pages(
            "list callback URLs",
            lambda page: self.api.list_webhooks(
                self.models.ListWebhooksRequest(name=name, page_number=page, page_size=100)
            ),
        )
        ours = [w for w in webhooks if w.name == name or (routes and _route_of(name, w.name) is not None)]
        return sorted(ours, key=lambda w: (len(str(w.id)), str(w.id)))

    def find_webhook(self, name: str, url: str | None = None) -> Any:
        """The relay's callback URL (by its name; of several, the one to `url`), or None."""
        return next(iter(sorted(self.webhooks_named(name), key=lambda w: w.url != url)), None)

    def webhook(self, name: str, url: str, token: str, repoint: bool = False) -> tuple[str, list[str]]:
        """Cloud Monitor's callback URL to the relay, with the function's token, and the ids of its
        duplicates (same name, same URL: what a create sent twice made), which the rules are to leave. A
        token cannot be read back, so every run sets it: an interrupted rotation cannot leave the two apart."""
        api, models = self.api, self.models
        named = self.webhooks_named(name)
        same = [w for w in named if w.url == url]
        # Of duplicates, the one most rules call (then the oldest) stays.
        same.sort(key=lambda w: -(len(w.rule_ids or []) + len(w.event_rule_ids or [])))
        duplicates = [str(w.id) for w in same[1:]]
        if duplicates:
            self.caller.say(
                f"callback URL {name!r}: {len(duplicates)} duplicate(s) of it ({', '.join(duplicates)}), same name "
                f"and URL: their rules are moved to {same[0].id} and they are deleted"
            )
        found = same[0] if same else next(iter(named), None)
        if found is not None and not same and not repoint:
            raise DeployError(
                f"callback URL {name!r} ({found.id}) points at {found.url}, not at {url}, where this deploy puts it: "
                "someone made it by hand, or the gateway's domain changed. It was left as it is: pass "
                "--repoint-callback-url to point it at the relay's URL, or rename it; no rule was written"
            )
        if found is None:
            created = self.caller.write(
                "create callback URL",
                lambda: (
                    api.create_webhook(
                        models.CreateWebhookRequest(name=name, type=WEBHOOK_TYPE, url=url, token=token)
                    ).data
                ),
                adopt=lambda: next(([w.id] for w in self.webhooks_named(name) if w.url == url), None),
            )
            self.caller.say(f"callback URL {name!r}: created ({created[0]}) to {url}, with the token")
            return str(created[0]), []
        differs = [
            what
            for what, differ in (("url", found.url != url), ("type", str(found.type).lower() in CHAT_BOT_TYPES))
            if differ
        ]
        self.caller.write(
            "update callback URL",
            lambda: api.update_webhook(
                models.UpdateWebhookRequest(
                    id=found.id, name=name, type=WEBHOOK_TYPE, url=url, with_token=True, token=token
                )
            ),
        )
        self.caller.say(
            f"callback URL {name!r} ({found.id}): "
            + (f"updated its {', '.join(differs)}; " if differs else "")
            + "token set (it cannot be read back, so every run sets it)"
        )
        return str(found.id), duplicates

    def delete_webhooks(self, ids: list[str]) -> None:
        """Duplicates of the relay's callback URL, once no rule calls them."""
        self._call("delete duplicate callback URLs", "DeleteWebhooksByIds", {"Ids": ids})
        self.caller.say(f"deleted the duplicate callback URLs {', '.join(ids)}")

    def unwire(self, kind: Kind, listed: dict[str, Any], webhook_ids: set[str], instead: str | None = None) -> bool:
        """These webhooks taken out of one rule (read again before, compared after), and `instead` ticked
        in their place if given; False if it had none of them."""
        rule = self.read(kind, listed)
        if not webhook_ids & set(rule.get("WebhookIds") or []):
            return False
        others = [i for i in rule["WebhookIds"] if i not in webhook_ids]
        if instead is not None and instead not in others:
            others.append(instead)
        methods = rule.get(kind.methods) or []
        wanted = {**rule, "WebhookIds": others}
        if not others and not rule.get("WebHook"):
            wanted[kind.methods] = [m for m in methods if m != "Webhook"]
        what = f"move {kind.name(rule)} to callback URL {instead}" if instead else f"untick {kind.name(rule)}"
        self.write(kind, wanted, what)
        changed = differences(kind, wanted, self.read(kind, rule))
        if changed:
            raise DeployError(
                f"{kind.name(rule)}: taking the relay out changed {', '.join(changed)} as well: restore it from "
                "the saved copy (python -m deploy restore FILE)"
            )
        self.caller.say(
            f"{kind.name(rule)}: "
            + (f"now calls {instead} instead of its duplicates" if instead else "no longer calls the relay")
        )
        return True

    def changed_since(self, kind: Kind, saved: dict[str, Any], webhook_id: str | None) -> list[str]:
        """What differs between a saved rule and the rule now, other than the relay's tick: what a restore
        would undo. Tags the owner removed since are a change like any other (tags a stopped write of ours
        dropped are noted in the file, and put back before this is asked)."""
        now = self.read(kind, saved)
        saved = with_credentials(kind, saved, now)
        changed = set(differences(kind, saved, now)) & set(differences(kind, with_tick(kind, saved, webhook_id), now))
        return sorted(changed)

    def restore(self, kind: Kind, saved: dict[str, Any]) -> None:
        """A rule written back as saved (with the credentials it has now), and compared after."""
        now = self.read(kind, saved)
        saved = with_credentials(kind, saved, now)
        if not differences(kind, saved, now):
            self.caller.say(f"{kind.name(saved)}: as saved, unchanged")
            return
        self.write(kind, saved, f"restore {kind.name(saved)}")
        still = differences(kind, saved, self.read(kind, saved))
        if still:
            raise DeployError(f"{kind.name(saved)}: restored, but {', '.join(still)} still differ from the saved copy")
        self.caller.say(f"{kind.name(saved)}: restored as saved")

    def put_back_tags(self, rule: dict[str, Any], tags: list[dict[str, Any]]) -> None:
        """The tags a run stopped between UpdateRule and TagResources took from a policy, put back: those
        whose key it lacks now. A tag set since, and everything else changed since, stay as they are."""
        now = self._now(ALARM_POLICIES, rule)
        if now is None:
            self.caller.say(f"{ALARM_POLICIES.name(rule)}: an earlier run stopped part-way; the rule is gone")
            return
        keys = {tag.get("Key") for tag in now.get("Tags") or []}
        lost = [tag for tag in tags if tag.get("Key") not in keys]
        if lost:
            self._tag(now, lost, f"put back the tags of {ALARM_POLICIES.name(now)}")
            names = ", ".join(str(tag.get("Key")) for tag in lost)
            self.caller.say(f"{ALARM_POLICIES.name(now)}: an earlier run stopped part-way; put back its tags {names}")

    def all_rules(self) -> list[tuple[Kind, dict[str, Any]]]:
        return [(kind, rule) for kind in (EVENT_RULES, ALARM_POLICIES) for rule in self._list(kind)]

    def rules(self, wiring: Wiring) -> list[tuple[str, Kind, dict[str, Any]]]:
        """The rules named for each route, as Cloud Monitor's JSON has them (the SDK's list models drop
        fields)."""
        chosen = []
        for kind, feeds in ((EVENT_RULES, wiring.event_rules), (ALARM_POLICIES, wiring.alarm_policies)):
            if feeds is not None:
                rules = self._list(kind)
                chosen += [
                    (route, kind, rule) for route, wanted in feeds.items() for rule in _choose(rules, wanted, kind)
                ]
        return chosen

    def refusals(self, chosen: list[tuple[Kind, dict[str, Any]]], webhook_id: str | None) -> list[str]:
        """Why ticking the relay in each rule would lose something: every rule, before any is written."""
        refused = []
        for kind, rule in chosen:
            if ticked(kind, rule, webhook_id):
                continue
            reasons = []
            if any(rule.get(url) for url in OLD_STYLE_URLS):
                reasons.append(
                    "it sends to an old-style webhook URL, and Cloud Monitor takes that URL or callback URLs, not "
                    "both: ticking the relay would drop it. Make that URL a callback URL (Cloud Monitor -> "
                    "callback URLs), tick it in the rule instead of the URL, and deploy again; or leave this rule out"
                )
            if len(rule.get("WebhookIds") or []) >= WEBHOOKS_MAX:
                reasons.append(f"it already calls {WEBHOOKS_MAX} callback URLs, the most a rule may have")
            unwritable = sorted(set(self._unwritable(rule, kind.read_model, kind.update_model)))
            if unwritable:
                reasons.append(
                    f"{kind.update_action} cannot write back {', '.join(unwritable)} (Cloud Monitor's update "
                    "takes no such field): writing the rule would lose it"
                )
            refused += [f"{kind.name(rule)}: {reason}" for reason in reasons]
        return refused

    def tick(self, kind: Kind, listed: dict[str, Any], webhook_id: str) -> None:
        """The webhook ticked in one rule, read again just before and read back after: only the tick
        may differ. Anything else that differs is put back, and the deploy stops saying what."""
        rule = self.read(kind, listed)
        name = kind.name(rule)
        if ticked(kind, rule, webhook_id):
            self.caller.say(f"{name}: already calls the relay")
            return
        refused = self.refusals([(kind, rule)], webhook_id)  # changed in the moments since the check
        if refused:
            raise DeployError(f"nothing was written to it: {'; '.join(refused)}")
        wanted = with_tick(kind, rule, webhook_id)
        self.write(kind, wanted, f"update {name}")
        after = self.read(kind, rule)
        changed = differences(kind, wanted, after)
        if not changed:
            self.caller.say(f"{name}: now calls the relay, nothing else changed")
            return
        self.write(kind, rule, f"put back {name}")
        still = differences(kind, rule, self.read(kind, rule))
        raise DeployError(
            f"{name}: writing the tick changed {', '.join(changed)} as well; "
            + (
                f"putting it back did not restore {', '.join(still)}: restore it from the saved copy"
                if still
                else "it is put back as it was, without the relay"
            )
            + ". Tick the relay in it by hand, or leave it out."
        )

    def write(self, kind: Kind, rule: dict[str, Any], what: str) -> None:
        """A rule written whole (Update replaces it), with its tags as TagResources keeps them."""
        tags = rule.get("Tags") if kind is ALARM_POLICIES else None
        if tags:
            # UpdateRule refuses Tags and drops them (Volcengine's Terraform provider): noted first, put back after.
            self.tagging(rule, tags)
        self._call(what, kind.update_action, self._update_body(kind, rule))
        if tags:
            self._tag(rule, tags, f"{what}: its tags")
            self.tagging(rule, None)

    def _tag(self, rule: dict[str, Any], tags: list[dict[str, Any]], what: str) -> None:
        body = {"ResourceType": TAG_RESOURCE_TYPE, "ResourceIds": [ALARM_POLICIES.rule_id(rule)], "Tags": tags}
        self._call(what, "TagResources", body)

    def read(self, kind: Kind, rule: dict[str, Any]) -> dict[str, Any]:
        """One rule as Cloud Monitor has it now."""
        now = self._now(kind, rule)
        if now is None:
            raise DeployError(f"{kind.name(rule)} is gone (deleted meanwhile?): nothing was written to it")
        return now

    def _now(self, kind: Kind, rule: dict[str, Any]) -> dict[str, Any] | None:
        rule_id = kind.rule_id(rule)
        if kind is ALARM_POLICIES:
            found = self._call(f"read {kind.name(rule)}", "ListRulesByIds", {"Ids": [rule_id]}).get("Data") or []
        else:
            found = self._list(kind, {"RuleName": rule.get("RuleName")})
        now = next((r for r in found if kind.rule_id(r) == rule_id), None)
        return None if now is None else dict(now)

    def _list(self, kind: Kind, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        for page in range(1, 10_000):
            body = {**(filters or {}), "PageNumber": page, "PageSize": 100}
            answer = self._call(f"list {kind.what}s", kind.list_action, body)
            rules += answer.get("Data") or []
            if not answer.get("Data") or len(rules) >= int(answer.get("TotalCount") or 0):
                break
        return rules

    def _call(self, what: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """An action called by name with a JSON body, its Result as JSON: nothing passes through a model."""
        info = self.models.UniversalInfo(
            method="POST",
            service="cloudmonitor",
            version=MONITOR_VERSION,
            action=action,
            content_type="application/json",
        )
        send = self.caller.call if action.startswith(("List", "Get")) else self.caller.write
        return send(what, functools.partial(self.universal.do_call, info, body)) or {}

    def _update_body(self, kind: Kind, rule: dict[str, Any]) -> dict[str, Any]:
        """A rule as its Update takes it: everything it has, less what only a read shows (by the SDK's
        models), renamed where the two spell a field differently. A field the SDK does not know is sent."""
        read_only = _fields(self.models, kind.read_model) - _fields(self.models, kind.update_model)
        body = {k: v for k, v in rule.items() if k not in read_only and k != "Tags"}
        for listed, updated in kind.renamed.items():
            if rule.get(listed):
                body[updated] = rule[listed]
        if kind is EVENT_RULES and (rule.get("EffectStartAt") or rule.get("EffectEndAt")):
            body["EffectiveTime"] = {"StartTime": rule.get("EffectStartAt"), "EndTime": rule.get("EffectEndAt")}
        return body

    def _unwritable(self, value: Any, read_model: str, update_model: str, path: str = "") -> Iterator[str]:
        """Nested fields (with a value) that the read model has and the update model lacks."""
        read, update = getattr(self.models, read_model), getattr(self.models, update_model)
        read_types = {read.attribute_map[k]: t for k, t in read.swagger_types.items()}
        update_types = {update.attribute_map[k]: t for k, t in update.swagger_types.items()}
        for key, item in value.items():
            if item in (None, "", [], {}) or key not in read_types or key not in update_types:
                continue  # top-level renames and read-only fields are _update_body's; unknown ones are sent
            inner_read, inner_update = _model(read_types[key]), _model(update_types[key])
            if inner_read is None or inner_update is None:
                continue
            read_fields = _fields(self.models, inner_read)
            update_fields = _fields(self.models, inner_update)
            here = f"{path}{key}[]" if isinstance(item, list) else f"{path}{key}"
            for element in item if isinstance(item, list) else [item]:
                for field_name, field_value in element.items():
                    if field_value not in (None, "") and field_name in read_fields - update_fields:
                        yield f"{here}.{field_name}"
                yield from self._unwritable(element, inner_read, inner_update, f"{here}.")


def differences(kind: Kind, wanted: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The fields that differ between two readings of a rule, less what changes by itself."""
    keys = (wanted.keys() | now.keys()) - set(kind.changing)
    return sorted(k for k in keys if _canonical(wanted.get(k)) != _canonical(now.get(k)))


def _canonical(value: Any) -> str:
    return "null" if value in (None, "", [], {}) else json.dumps(value, sort_keys=True)


def withheld(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as it may be saved: its message queues' credentials and its old-style URL left out, marked
    withheld."""
    rule = {**rule, **{url: WITHHELD for url in OLD_STYLE_URLS if rule.get(url)}}
    queues = rule.get("MessageQueue")
    if not isinstance(queues, list):
        return rule
    return {
        **rule,
        "MessageQueue": [
            {**queue, **{k: WITHHELD for k in CREDENTIALS if queue.get(k) not in (None, "")}}
            if isinstance(queue, dict)
            else queue
            for queue in queues
        ],
    }


def with_credentials(kind: Kind, saved: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """A saved rule with the credentials it withheld as the rule has them now (in its message queue of
    the same other fields); a queue no longer there cannot be written back without them: refused."""
    saved = {**saved, **{url: now.get(url) for url in OLD_STYLE_URLS if saved.get(url) == WITHHELD}}
    queues = saved.get("MessageQueue")
    if not isinstance(queues, list):
        return saved
    current = [queue for queue in now.get("MessageQueue") or [] if isinstance(queue, dict)]
    filled = []
    for queue in queues:
        hidden = [k for k, v in queue.items() if v == WITHHELD] if isinstance(queue, dict) else []
        if not hidden:
            filled.append(queue)
            continue
        same = next((q for q in current if _sans_credentials(q) == _sans_credentials(queue)), None)
        if same is None:
            raise DeployError(
                f"{kind.name(saved)}: its message queue (topic {queue.get('Topic')!r}, instance "
                f"{queue.get('InstanceId')!r}) is gone or changed since the save, which keeps no credentials: "
                "nothing was restored; set that queue again in the console"
            )
        filled.append({**queue, **{k: same.get(k) for k in hidden}})
    return {**saved, "MessageQueue": filled}


def _sans_credentials(queue: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in queue.items() if k not in CREDENTIALS}


def with_tick(kind: Kind, rule: dict[str, Any], webhook_id: str | None) -> dict[str, Any]:
    """The rule calling the relay too: its webhook id added, and Webhook among its methods."""
    ids = rule.get("WebhookIds") or []
    return {
        **rule,
        "WebhookIds": ids if webhook_id in ids else [*ids, webhook_id],
        kind.methods: sorted({*(rule.get(kind.methods) or []), "Webhook"}),
    }


def ticked(kind: Kind, rule: dict[str, Any], webhook_id: str | None) -> bool:
    return webhook_id in (rule.get("WebhookIds") or []) and "Webhook" in (rule.get(kind.methods) or [])


def _fields(models: Any, model: str) -> set[str]:
    return set(getattr(models, model).attribute_map.values())


def _model(swagger_type: str) -> str | None:
    """The model class a field holds (list[X] or X), or None for plain values."""
    name = swagger_type[5:-1] if swagger_type.startswith("list[") else swagger_type
    return name if name[:1].isupper() else None


def _choose(rules: list[dict[str, Any]], wanted: tuple[str, ...], kind: Kind) -> list[dict[str, Any]]:
    """The rules named by id or name, or all of them; a name that matches nothing stops the deploy."""
    if wanted == ("all",):
        return rules
    chosen = [r for r in rules if kind.rule_id(r) in wanted or r.get("RuleName") in wanted]
    unknown = sorted(set(wanted) - {kind.rule_id(r) for r in chosen} - {r.get("RuleName") for r in chosen})
    if unknown:
        raise DeployError(
            f"no {kind.what} has the id or name {', '.join(unknown)} in this region ({kind.option}); nothing was ticked"
        )
    return chosen
