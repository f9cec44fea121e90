"""Deploy the relay to veFaaS with the official Python SDK: `python -m deploy`.

Finds the web-server function (started by run.sh), else creates it, else updates what differs;
uploads the package, installs requirements.txt and releases only when the code changed; proves the
dead-letter store works before it releases; routes a named API gateway to it, and in Cloud Monitor
makes its callback URL and ticks it in the rules named; prints the callback URL. Settings in this shell
(config.VARIABLES, and the store's credentials) become the function's environment; settings the
function already has and this shell lacks are kept. `--dry-run` prints the plan and calls nothing.
Each step says what it found and what it changed, and never prints a secret.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import os
import re
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests
import urllib3

import config
import mapping
import volcengine_api
from callback import VERSION
from deadletter import Store, StoreError

ROOT = Path(__file__).resolve().parent
# What ships, once: the relay's modules (serverless.yml's patterns list the same; a test compares)...
MODULES = (
    "main.py",
    "index.py",
    "callback.py",
    "mapping.py",
    "flashduty.py",
    "config.py",
    "logs.py",
    "deadletter.py",
    "replay.py",
    "reconcile.py",
    "flashduty_alerts.py",
    "volcengine_api.py",
)
# ...and what a veFaaS web-server function needs beside them: its start command and what it installs.
VEFAAS_FILES = ("run.sh", "gunicorn.conf.py", "requirements.txt")
PACKAGE = MODULES + VEFAAS_FILES
DEFAULT_RUNTIME = "native-python3.12/v1"
# The dead-letter store's credentials (an S3-compatible key: a TOS access key limited to the bucket).
STORE_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
API_VERSION = "2024-06-06"
# The timers the relay reads (callback.Relay._timer): name, what it runs, cron, what it does.
DRAIN_TIMER = ("relay-drain", "drain", "*/1 * * * *", "drains the dead-letter store every minute")
RECONCILE_TIMER = ("relay-reconcile", "reconcile", "*/5 * * * *", "reconciles with Cloud Monitor every 5 minutes")
# The function's reconcile key: a read-only Cloud Monitor key given apart from the deploying one.
RECONCILE_CREDENTIALS = {
    "RECONCILE_ACCESS_KEY": "VOLCENGINE_ACCESS_KEY",
    "RECONCILE_SECRET_KEY": "VOLCENGINE_SECRET_KEY",
}
# Cloud Monitor's "Generic Webhook" type. The OpenAPI reference gives no value set for Type; BytePlus's
# Terraform provider documents custom (generic), wecom, lark, dingtalk. A found webhook of another
# type that is not a chat bot is taken as generic too.
WEBHOOK_TYPE = "custom"
CHAT_BOT_TYPES = frozenset({"wecom", "lark", "dingtalk", "slack"})
MONITOR_VERSION = "2018-01-01"
# The route to the function: every path (the relay routes ROUTES itself), callbacks and health checks.
ROUTE_MATCH = {"match_type": "Prefix", "match_content": "/", "method": ["GET", "POST"]}
PORT = 8000  # what run.sh listens on when veFaaS gives no port
COMMAND = "./run.sh"
POLL_SECONDS = 3.0
WAIT_SECONDS = 600.0


class DeployError(Exception):
    """What went wrong, said so that the user knows what to do."""


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


@dataclass(frozen=True)
class Target:
    name: str
    region: str
    runtime: str
    memory_mb: int
    request_timeout: int
    environment: dict[str, str]  # from this shell
    unset: frozenset[str] = frozenset()  # settings to remove from the function
    dry_run_function: bool = False
    wiring: Wiring = Wiring()

    @property
    def shape(self) -> dict[str, Any]:
        """How the function runs: what a create sets and an update compares."""
        return {"command": COMMAND, "port": PORT, "memory_mb": self.memory_mb, "request_timeout": self.request_timeout}

    def wanted_environment(self, existing: Mapping[str, str]) -> dict[str, str]:
        """The function's environment: what it has, then this shell's settings, less what the user unsets."""
        merged = {**existing, **self.environment}
        if self.dry_run_function:
            merged["DRY_RUN"] = "true"
        return {k: v for k, v in sorted(merged.items()) if k not in self.unset}


def minimum_python() -> tuple[int, int]:
    """requires-python from pyproject.toml, the one place the code states it (">=3.11")."""
    text = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)", text.strip())
    if match is None:
        raise ValueError(f"pyproject.toml: requires-python {text!r} is not of the form >=3.N")
    return int(match[1]), int(match[2])


def runtime_python(runtime: str) -> tuple[int, int] | None:
    """The Python version a runtime name gives: native-python3.12/v1, python3.12, 3.12."""
    match = re.search(r"(\d+)\.(\d+)", runtime)
    return (int(match[1]), int(match[2])) if match else None


def package() -> bytes:
    """The code package: the relay's modules, run.sh (executable) and requirements.txt; no tests."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in PACKAGE:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # same code, same bytes
            info.external_attr = (0o755 if name.endswith(".sh") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (ROOT / name).read_bytes())
    return buffer.getvalue()


def description(code: bytes) -> str:
    """The function's description, which also says which package it runs (so an unchanged one is not re-sent)."""
    return f"Volcengine Cloud Monitor callbacks to Flashduty (volc-flashduty-relay {VERSION}, package {_digest(code)})"


def _digest(code: bytes) -> str:
    return hashlib.sha256(code).hexdigest()[:16]


def plan(target: Target) -> list[str]:
    shell = sorted(target.environment)
    return [
        f"find function {target.name!r} in {target.region}, and read the settings it has",
        f"create it, or update what differs: runtime {target.runtime}, command {COMMAND}, port {PORT}, "
        f"{target.memory_mb} MB, timeout {target.request_timeout} s; environment: its own settings, then "
        f"{shell or 'none'} from this shell" + (f", less {sorted(target.unset)}" if target.unset else ""),
        f"when the code changed: upload the package ({', '.join(PACKAGE)}), install requirements.txt",
        "with DEADLETTER_URI: write and delete a probe object in the store, with the function's credentials",
        "release and wait for it; with DEADLETTER_URI, a timer that drains the store every minute; with "
        "RECONCILE_ACCESS_KEY, a timer that reconciles with Cloud Monitor every 5 minutes",
        *_wiring_plan(target),
    ]


def _wiring_plan(target: Target) -> list[str]:
    wiring = target.wiring
    steps = [
        f"on API gateway {wiring.gateway!r}: a VeFaas upstream, a service and a route (POST and GET /) "
        f"named {target.name!r} to the function; print its callback URL"
        if wiring.gateway
        else "print the callback URL of its API gateway trigger (--gateway NAME makes the route)"
    ]
    if wiring.monitor:
        steps.append(
            f"in Cloud Monitor: a Generic Webhook callback URL {target.name!r} to it, with CALLBACK_TOKEN as its token"
        )
    for what, chosen in (("event rules", wiring.event_rules), ("alarm policies", wiring.alarm_policies)):
        if chosen is not None:
            steps.append(f"tick it in the {what} {', '.join(chosen)}, keeping everything else they have")
    return steps


@dataclass(frozen=True)
class Existing:
    """A function as veFaaS has it: what a re-run compares against."""

    id: str
    description: str
    settings: dict[str, str]
    shape: dict[str, Any]


@dataclass
class Deployer:
    """The deploy steps, against the official SDKs' clients (sdk_clients): veFaaS and the universal API,
    and for the wiring, API gateway and Cloud Monitor."""

    api: Any
    universal: Any
    models: Any
    put: Callable[..., Any]
    out: TextIO
    sleep: Callable[[float], None] = time.sleep
    store: Callable[[config.DeadLetter, Mapping[str, str]], Store] = Store
    gateway: Any = None  # API gateway: .api (2021-03-03), .routes (2022-11-12), .models, .route_models
    monitor: Any = None  # Cloud Monitor: .api, .models
    changes: list[str] = field(default_factory=list)

    def deploy(self, target: Target, code: bytes) -> str | None:
        found = self._find(target)
        environment = target.wanted_environment(found.settings if found else {})
        settings = config.load(environment)
        _refuse_what_cannot_work(settings, environment)
        wanted_description = description(code)
        if found is None:
            function_id = self._create(target, environment, wanted_description)
            code_changed = True
        else:
            function_id = found.id
            self._update(found, target, environment, wanted_description)
            code_changed = found.description != wanted_description
        if code_changed:
            self._upload(function_id, code)
        else:
            self._say(f"code: unchanged (package {_digest(code)})")
        if settings.deadletter is not None:
            self._probe(settings.deadletter, environment)
        if self.changes:
            self._release(function_id)
        else:
            self._say("release: nothing changed, nothing released")
        triggers = self._triggers(function_id)
        token = environment.get("CALLBACK_TOKEN")
        if settings.deadletter is not None:
            self._timer(function_id, triggers, DRAIN_TIMER, target.request_timeout, token)
        if environment.get("VOLCENGINE_ACCESS_KEY"):
            self._timer(function_id, triggers, RECONCILE_TIMER, target.request_timeout, token)
        wiring = target.wiring
        if wiring.gateway:
            url = self._route(function_id, target.name, wiring.gateway)
        else:
            url = next(
                (u for t in triggers for u in re.findall(r"https?://[^\s\"'\\]+", t.detailed_config or "")), None
            )
        if wiring.monitor:
            if url is None:
                raise DeployError(
                    "Cloud Monitor needs the function's URL, and it has none yet: pass --gateway NAME (an API "
                    "gateway in this region) so that the deploy routes one to it."
                )
            token_changed = found is None or found.settings.get("CALLBACK_TOKEN") != token
            webhook_id = self._webhook(target.name, url, token, token_changed)
            self._tick(webhook_id, wiring)
        return url

    # Steps ----------------------------------------------------------------------------------

    def _find(self, target: Target) -> Existing | None:
        name = target.name
        request = self.models.ListFunctionsRequest(
            filters=[self.models.FilterForListFunctionsInput(name="Name", values=[name])], page_size=100
        )
        items = self._call("list functions", lambda: self.api.list_functions(request).items) or []
        function_id = next((item.id for item in items if item.name == name), None)
        self._say(f"function {name!r}: " + (f"found ({function_id})" if function_id else "not found, creating it"))
        if function_id is None:
            return None
        function = self._call(
            "read function", lambda: self.api.get_function(self.models.GetFunctionRequest(id=function_id))
        )
        return Existing(
            id=function_id,
            description=function.description or "",
            settings={e.key: e.value for e in function.envs or []},
            shape={field_name: getattr(function, field_name) for field_name in target.shape},
        )

    def _create(self, target: Target, environment: dict[str, str], wanted_description: str) -> str:
        function_id: str = self._call(
            "create function",
            lambda: (
                self.api.create_function(
                    self.models.CreateFunctionRequest(
                        name=target.name,
                        runtime=target.runtime,
                        description=wanted_description,
                        envs=[self.models.EnvForCreateFunctionInput(key=k, value=v) for k, v in environment.items()],
                        **target.shape,
                    )
                ).id
            ),
        )
        self.changes.append("function created")
        self._say(f"function: created ({function_id}) with settings {sorted(environment)}")
        return function_id

    def _update(self, found: Existing, target: Target, environment: dict[str, str], wanted_description: str) -> None:
        shape = target.shape
        differs = [name for name, value in shape.items() if found.shape.get(name) != value]
        changed_settings = sorted(
            name
            for name in environment.keys() | found.settings.keys()
            if environment.get(name) != found.settings.get(name)
        )
        if found.description != wanted_description:
            differs.append("description")
        if not differs and not changed_settings:
            self._say("function: configuration unchanged")
            return
        self._call(
            "update function",
            lambda: self.api.update_function(
                self.models.UpdateFunctionRequest(
                    id=found.id,
                    description=wanted_description,
                    envs=[self.models.EnvForUpdateFunctionInput(key=k, value=v) for k, v in environment.items()],
                    **shape,
                )
            ),
        )
        kept = sorted(found.settings.keys() - target.environment.keys() - target.unset)
        self.changes.append("function updated")
        self._say(
            f"function: updated {', '.join(differs + [f'setting {n}' for n in changed_settings])}"
            + (f"; kept its own {kept}" if kept else "")
        )

    def _upload(self, function_id: str, code: bytes) -> None:
        address = self._call(
            "get code upload address",
            lambda: (
                self.api.get_code_upload_address(
                    self.models.GetCodeUploadAddressRequest(function_id=function_id, content_length=len(code))
                ).upload_address
            ),
        )
        response = self._call(
            "upload code package",
            lambda: self.put(address, data=code, headers={"Content-Type": "application/zip"}, timeout=120),
        )
        if not 200 <= response.status_code < 300:
            raise DeployError(f"uploading the code package failed with HTTP {response.status_code}")
        self._call(
            "attach code",
            lambda: self.universal.do_call(
                self.models.UniversalInfo(
                    method="POST",
                    service="vefaas",
                    version=API_VERSION,
                    action="CodeUploadCallback",
                    content_type="application/json",
                ),
                {"FunctionId": function_id},
            ),
        )
        self._call(
            "install dependencies",
            lambda: self.api.create_dependency_install_task(
                self.models.CreateDependencyInstallTaskRequest(function_id=function_id)
            ),
        )
        self._wait(
            "dependency install",
            lambda: (
                self.api.get_dependency_install_task_status(
                    self.models.GetDependencyInstallTaskStatusRequest(function_id=function_id)
                ).status
            ),
        )
        self.changes.append("code")
        self._say(f"code: uploaded {len(code)} bytes and installed requirements.txt")

    def _probe(self, location: config.DeadLetter, environment: Mapping[str, str]) -> None:
        credentials = {
            "aws_access_key_id": environment.get("AWS_ACCESS_KEY_ID"),
            "aws_secret_access_key": environment.get("AWS_SECRET_ACCESS_KEY"),
            "region_name": environment.get("AWS_REGION"),
        }
        try:
            self.store(location, {k: v for k, v in credentials.items() if v}).probe()
        except StoreError as error:
            raise DeployError(
                f"the dead-letter store refused the function's credentials ({error}). Give "
                f"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY a key that may write, read, list and delete "
                f"under s3://{location.bucket}/{location.prefix}, and check DEADLETTER_ENDPOINT_URL and "
                "AWS_REGION. Nothing was released."
            ) from None
        self._say(f"dead-letter store: s3://{location.bucket}/{location.prefix} takes a write and a delete")

    def _release(self, function_id: str) -> None:
        self._call(
            "release",
            lambda: self.api.release(
                self.models.ReleaseRequest(function_id=function_id, revision_number=0, description=f"relay {VERSION}")
            ),
        )  # 0: the current code
        self._wait(
            "release",
            lambda: self.api.get_release_status(self.models.GetReleaseStatusRequest(function_id=function_id)).status,
        )
        self._say(f"release: done ({', '.join(self.changes)})")

    def _triggers(self, function_id: str) -> list[Any]:
        return (
            self._call(
                "list triggers",
                lambda: self.api.list_triggers(self.models.ListTriggersRequest(function_id=function_id)).items,
            )
            or []
        )

    def _timer(
        self, function_id: str, triggers: list[Any], timer: tuple[str, str, str, str], timeout: int, token: str | None
    ) -> None:
        """A timer whose payload the relay reads (callback.Relay._timer): a bounded run within the timeout."""
        name, runs, crontab, does = timer
        payload = json.dumps({"relay": runs, "seconds": timeout, **({"token": token} if token else {})})
        wanted = {"crontab": crontab, "payload": payload, "enabled": True}
        found = next((t for t in triggers if t.name == name and str(t.type).lower() == "timer"), None)
        if found is None:
            self._call(
                "create timer",
                lambda: self.api.create_timer(
                    self.models.CreateTimerRequest(function_id=function_id, name=name, **wanted)
                ),
            )
            self._say(f"timer {name!r}: created, {does}")
            return
        current = self._call(
            "read timer", lambda: self.api.get_timer(self.models.GetTimerRequest(function_id=function_id, id=found.id))
        )
        if all(getattr(current, field_name) == value for field_name, value in wanted.items()):
            self._say(f"timer {name!r}: unchanged")
            return
        self._call(
            "update timer",
            lambda: self.api.update_timer(
                self.models.UpdateTimerRequest(function_id=function_id, id=found.id, **wanted)
            ),
        )
        self._say(f"timer {name!r}: updated")

    def _route(self, function_id: str, name: str, gateway_name: str) -> str | None:
        """A route from the named API gateway to the function: VeFaas upstream, service, route; its URL."""
        api, models = self.gateway.api, self.gateway.models
        gateways = self._call(
            "list API gateways",
            lambda: (
                api.list_gateways(
                    models.ListGatewaysRequest(
                        filter=models.FilterForListGatewaysInput(name=gateway_name), page_size=100
                    )
                ).items
            ),
        )
        gateway_id = next((g.id for g in gateways or [] if g.name == gateway_name), None)
        if gateway_id is None:
            raise DeployError(
                f"API gateway {gateway_name!r} is not in this region: create one in the API gateway console "
                "(it is billed as an instance), or name an existing one with --gateway."
            )
        self._say(f"API gateway {gateway_name!r}: found ({gateway_id})")
        upstream_id = self._upstream(gateway_id, function_id, name)
        service = self._service(gateway_id, name)
        self._route_to(service.id, upstream_id, name)
        domains = sorted(service.domains or [], key=lambda d: "public" not in str(d.type).lower())
        if not domains:
            self._say(f"service {name!r}: no domain yet (the gateway is still assigning it): run the deploy again")
            return None
        domain = domains[0].domain
        scheme = "https" if "HTTPS" in (service.protocol or []) else "http"
        return domain if "://" in domain else f"{scheme}://{domain}/"

    def _upstream(self, gateway_id: str, function_id: str, name: str) -> str:
        api, models = self.gateway.api, self.gateway.models
        upstreams = self._call(
            "list upstreams",
            lambda: (
                api.list_upstreams(
                    models.ListUpstreamsRequest(
                        gateway_id=gateway_id, filter=models.FilterForListUpstreamsInput(name=name), page_size=100
                    )
                ).items
            ),
        )
        found = next((u for u in upstreams or [] if u.name == name), None)
        if found is None:
            upstream_id: str = self._call(
                "create upstream",
                lambda: (
                    api.create_upstream(
                        models.CreateUpstreamRequest(
                            gateway_id=gateway_id, name=name, **_upstream_fields(models, "Create", function_id)
                        )
                    ).id
                ),
            )
            self.changes.append("upstream created")
            self._say(f"upstream {name!r}: created ({upstream_id}), to function {function_id}")
            return upstream_id
        spec = found.upstream_spec.ve_faas if found.upstream_spec else None
        if spec is not None and spec.function_id == function_id:
            self._say(f"upstream {name!r}: found ({found.id}), to this function")
            return str(found.id)
        self._call(
            "update upstream",
            lambda: api.update_upstream(
                models.UpdateUpstreamRequest(id=found.id, name=name, **_upstream_fields(models, "Update", function_id))
            ),
        )
        self._say(f"upstream {name!r}: updated ({found.id}), now to function {function_id}")
        return str(found.id)

    def _service(self, gateway_id: str, name: str) -> Any:
        api, models = self.gateway.api, self.gateway.models

        def find() -> Any:
            services = self._call(
                "list gateway services",
                lambda: (
                    api.list_gateway_services(
                        models.ListGatewayServicesRequest(
                            gateway_id=gateway_id,
                            filter=models.FilterForListGatewayServicesInput(name=name),
                            page_size=100,
                        )
                    ).items
                ),
            )
            return next((s for s in services or [] if s.name == name), None)

        found = find()
        if found is not None:
            self._say(f"service {name!r}: found ({found.id})")
            return found
        service_id = self._call(
            "create gateway service",
            lambda: (
                api.create_gateway_service(
                    models.CreateGatewayServiceRequest(
                        gateway_id=gateway_id,
                        service_name=name,
                        protocol=["HTTP", "HTTPS"],
                        # The relay checks CALLBACK_TOKEN itself; the gateway's own auth would refuse Cloud Monitor.
                        auth_spec=models.AuthSpecForCreateGatewayServiceInput(enable=False),
                    )
                ).id
            ),
        )
        self.changes.append("service created")
        self._say(f"service {name!r}: created ({service_id})")
        return find()

    def _route_to(self, service_id: str, upstream_id: str, name: str) -> None:
        routes, models = self.gateway.routes, self.gateway.route_models
        found = next(
            (
                r
                for r in self._call(
                    "list routes",
                    lambda: (
                        routes.list_routes(
                            models.ListRoutesRequest(
                                service_id=service_id, filter=models.FilterForListRoutesInput(name=name), page_size=100
                            )
                        ).items
                    ),
                )
                or []
                if r.name == name
            ),
            None,
        )
        wanted = {**ROUTE_MATCH, "upstream_id": upstream_id}
        if found is None:
            self._call(
                "create route",
                lambda: routes.create_route(
                    models.CreateRouteRequest(
                        service_id=service_id, name=name, **_route_fields(models, "Create", upstream_id)
                    )
                ),
            )
            self.changes.append("route created")
            self._say(f"route {name!r}: created, POST and GET / to upstream {upstream_id}")
            return
        rule = found.match_rule
        have = {
            "match_type": rule.path.match_type if rule and rule.path else None,
            "match_content": rule.path.match_content if rule and rule.path else None,
            "method": sorted(rule.method or []) if rule else [],
            "upstream_id": next((u.upstream_id for u in found.upstream_list or []), None),
        }
        if have == wanted and len(found.upstream_list) == 1 and found.enable:
            self._say(f"route {name!r}: unchanged")
            return
        self._call(
            "update route",
            lambda: routes.update_route(
                models.UpdateRouteRequest(id=found.id, name=name, **_route_fields(models, "Update", upstream_id))
            ),
        )
        self._say(f"route {name!r}: updated, POST and GET / to upstream {upstream_id}")

    def _webhook(self, name: str, url: str, token: str | None, token_changed: bool) -> str:
        """Cloud Monitor's callback URL to the relay. Its token cannot be read back, so it is set when
        the webhook is made, and again when this deploy changes the function's CALLBACK_TOKEN."""
        api, models = self.monitor.api, self.monitor.models
        webhooks = self._pages(
            "list callback URLs",
            lambda page: api.list_webhooks(models.ListWebhooksRequest(name=name, page_number=page, page_size=100)),
        )
        same_name = sorted((w for w in webhooks if w.name == name), key=lambda w: w.url != url)
        if not same_name:
            created = self._call(
                "create callback URL",
                lambda: (
                    api.create_webhook(
                        models.CreateWebhookRequest(
                            name=name, type=WEBHOOK_TYPE, url=url, **({"token": token} if token else {})
                        )
                    ).data
                ),
            )
            self._say(f"callback URL {name!r}: created ({created[0]}) to {url}" + (", with the token" if token else ""))
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
            self._say(f"callback URL {name!r}: found ({found.id}), unchanged")
            return str(found.id)
        self._call(
            "update callback URL",
            lambda: api.update_webhook(
                models.UpdateWebhookRequest(
                    id=found.id, name=name, type=WEBHOOK_TYPE, url=url, with_token=bool(token), token=token or None
                )
            ),
        )
        self._say(f"callback URL {name!r}: updated its {', '.join(differs)} ({found.id})")
        return str(found.id)

    def _tick(self, webhook_id: str, wiring: Wiring) -> None:
        """The webhook ticked in each named event rule and alarm policy; each rule keeps all it had."""
        api, models = self.monitor.api, self.monitor.models
        chosen = []  # every name is resolved before any rule changes
        if wiring.event_rules is not None:
            rules = self._pages(
                "list event rules",
                lambda page: api.list_event_rules(models.ListEventRulesRequest(page_number=page, page_size=100)),
            )
            chosen += [
                ("event rule", r, "UpdateEventRule")
                for r in _choose(rules, wiring.event_rules, "rule_id", "event rule")
            ]
        if wiring.alarm_policies is not None:
            rules = self._pages(
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
                self._say(f"{what} {rule.rule_name!r}: already calls the relay")
                continue
            body = _update_body(wire, action, models)
            body["WebhookIds"] = [*(wire.get("WebhookIds") or []), webhook_id]
            body[methods_field] = sorted({*(wire.get(methods_field) or []), "Webhook"})
            info = self.models.UniversalInfo(
                method="POST",
                service="cloudmonitor",
                version=MONITOR_VERSION,
                action=action,
                content_type="application/json",
            )
            self._call(f"update {what} {rule.rule_name!r}", functools.partial(self.universal.do_call, info, body))
            self._say(f"{what} {rule.rule_name!r}: now calls the relay")

    # Plumbing -------------------------------------------------------------------------------

    def _pages(self, what: str, fetch: Callable[[int], Any]) -> list[Any]:
        return volcengine_api.pages(lambda page: self._call(what, functools.partial(fetch, page)))

    def _say(self, line: str) -> None:
        print(f"- {line}", file=self.out, flush=True)

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except self.models.ApiException as error:
            raise DeployError(_explain(what, error)) from None
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException) as error:
            # Their text may hold the signed upload URL: say only what kind of failure it was.
            raise DeployError(
                f"{what}: cannot reach Volcengine ({type(error).__name__}); check the network, the region "
                "and VOLCENGINE_OPENAPI_ENDPOINT"
            ) from None

    def _wait(self, what: str, status: Callable[[], str]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            state = str(self._call(f"{what}: status", status) or "")
            # The SDK documents no status values: Succeeded / Done, Failed / Error are what it sends.
            if "succ" in state.lower() or state.lower() == "done":
                return
            if "fail" in state.lower() or "error" in state.lower():
                raise DeployError(f"{what} ended {state}: see the function's page in the veFaaS console")
            if time.monotonic() > deadline:
                raise DeployError(f"{what} did not finish within {WAIT_SECONDS:.0f} s (last status {state!r})")
            self.sleep(POLL_SECONDS)


def _upstream_fields(models: Any, verb: str, function_id: str) -> dict[str, Any]:
    """An upstream to the function, as CreateUpstream and UpdateUpstream (verb) both take it."""
    spec = getattr(models, f"UpstreamSpecFor{verb}UpstreamInput")
    function = getattr(models, f"VeFaasFor{verb}UpstreamInput")
    return {"source_type": "VeFaas", "upstream_spec": spec(ve_faas=function(function_id=function_id))}


def _route_fields(models: Any, verb: str, upstream_id: str) -> dict[str, Any]:
    """The relay's route (ROUTE_MATCH, to one upstream), as CreateRoute and UpdateRoute (verb) both take it."""
    path = getattr(models, f"PathFor{verb}RouteInput")(
        match_type=ROUTE_MATCH["match_type"], match_content=ROUTE_MATCH["match_content"]
    )
    return {
        "enable": True,
        "match_rule": getattr(models, f"MatchRuleFor{verb}RouteInput")(method=ROUTE_MATCH["method"], path=path),
        "upstream_list": [getattr(models, f"UpstreamListFor{verb}RouteInput")(upstream_id=upstream_id, weight=100)],
    }


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


def _refuse_what_cannot_work(settings: config.Settings, environment: Mapping[str, str]) -> None:
    """A function that would answer Volcengine 200 and deliver nothing, or fail on its first outage."""
    if settings.dry_run and not environment.get("DRY_RUN"):
        raise DeployError(
            "FLASHDUTY_INTEGRATION_KEY (or ROUTES) is set neither in this shell nor on the function: it would "
            "answer every callback and deliver nothing. Set it, or pass --dry-run-function to deploy a dry run."
        )
    if environment.get("VOLCENGINE_ACCESS_KEY") and settings.deadletter is None:
        raise DeployError(
            "RECONCILE_ACCESS_KEY is set, but DEADLETTER_URI is not: reconcile reads the store's records of "
            "what the relay sent, so that it sends nothing twice. Set DEADLETTER_URI, or --unset "
            "VOLCENGINE_ACCESS_KEY --unset VOLCENGINE_SECRET_KEY to turn reconcile off."
        )
    if settings.deadletter is not None and not (
        environment.get("AWS_ACCESS_KEY_ID") and environment.get("AWS_SECRET_ACCESS_KEY")
    ):
        raise DeployError(
            "DEADLETTER_URI is set, but the function would have no credentials for the store: set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for TOS, an access key limited to the bucket) and "
            "AWS_REGION in this shell."
        )


def _explain(what: str, error: Any) -> str:
    code, denied = volcengine_api.refusal(error)
    if denied:
        return (
            f"{what}: Volcengine refused it ({code}). Check VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY, and "
            f"that the key's policy allows this action in this region (README: Deploy -> permissions)."
        )
    return f"{what} failed: {code}"


def sdk_clients(access_key: str, secret_key: str, region: str, endpoint: str) -> dict[str, Any]:
    """The real SDKs' clients, as Deployer takes them."""
    import volcenginesdkapig
    import volcenginesdkapig20221112
    import volcenginesdkcloudmonitor
    import volcenginesdkvefaas
    from volcenginesdkcore.universal import UniversalApi

    client = volcengine_api.client(access_key, secret_key, region, endpoint)
    return {
        "api": volcenginesdkvefaas.VEFAASApi(client),
        "universal": UniversalApi(client),
        "models": volcengine_api.models(volcenginesdkvefaas),
        "gateway": argparse.Namespace(
            api=volcenginesdkapig.APIGApi(client),
            models=volcengine_api.models(volcenginesdkapig),
            routes=volcenginesdkapig20221112.APIG20221112Api(client),
            route_models=volcengine_api.models(volcenginesdkapig20221112),
        ),
        "monitor": argparse.Namespace(
            api=volcenginesdkcloudmonitor.CLOUDMONITORApi(client),
            models=volcengine_api.models(volcenginesdkcloudmonitor),
        ),
    }


def wiring_callbacks() -> tuple[dict[str, Any], dict[str, Any]]:
    """A firing and its recovery that the relay marks as a test: Info, `test=true`, never filtered."""
    policy = {
        mapping.WIRING_TEST: True,
        "RuleName": "volc-flashduty-relay wiring test",
        "RuleId": "relay-wiring-test",
        "Namespace": "VCM_Relay",
        "Level": "notice",
        "RuleCondition": "python -m deploy test",
    }
    resource = {
        "Id": "relay-wiring-test",
        "Name": "volc-flashduty-relay",
        "Metrics": [{"Name": "WiringTest", "CurrentValue": 1, "Threshold": 0}],
    }
    return (
        {**policy, "Type": "Metric", "Resources": [resource]},
        {**policy, "Type": "MetricRecovered", "RecoveredResources": [resource]},
    )


def wiring_test(url: str, token: str | None, out: TextIO) -> int:
    """Send a test event and its Ok through the deployed relay; 0 when Flashduty took both."""
    delivered = 0
    for what, callback in zip(("test event (Info, test=true)", "its Ok"), wiring_callbacks(), strict=True):
        headers = {"Content-Type": "application/json", "x-volc-trace-id": f"wiring-test-{os.getpid()}"}
        if token:
            headers["Token"] = token
        try:
            response = requests.post(url, data=json.dumps(callback), headers=headers, timeout=15)
        except requests.RequestException as error:
            print(f"- {what}: cannot reach {url} ({type(error).__name__})", file=out)
            return 1
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        said = {k: answer[k] for k in ("delivered", "failed", "dry_run", "error", "trace_id") if k in answer}
        print(f"- {what}: HTTP {response.status_code} {json.dumps(said)}", file=out)
        if answer.get("dry_run"):
            print("the relay is a dry run: nothing reached Flashduty (set FLASHDUTY_INTEGRATION_KEY)", file=out)
            return 1
        delivered += response.status_code == 200 and answer.get("delivered") == 1
    print("wiring works: Flashduty took both" if delivered == 2 else "wiring failed: see the answers above", file=out)
    return 0 if delivered == 2 else 1


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:
        tester = argparse.ArgumentParser(
            prog="python -m deploy test", description="send a test event and its Ok through the deployed relay"
        )
        tester.add_argument("--url", required=True, help="the callback URL (what Cloud Monitor posts to)")
        tester.add_argument("--token", default=os.environ.get("CALLBACK_TOKEN"), help="default: $CALLBACK_TOKEN")
        test_args = tester.parse_args(argv[1:])
        return wiring_test(test_args.url, test_args.token, out)
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"volc-flashduty-relay {VERSION}")
    parser.add_argument("--name", default=os.environ.get("VEFAAS_FUNCTION_NAME", "volc-flashduty-relay"))
    parser.add_argument("--region", default=os.environ.get("VOLCENGINE_REGION", "cn-beijing"))
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, help="veFaaS web-server runtime")
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument(
        "--timeout", type=int, default=30, help="request timeout, seconds (above the delivery deadline)"
    )
    parser.add_argument(
        "--unset", action="append", default=[], metavar="NAME", help="remove this setting from the function"
    )
    parser.add_argument(
        "--dry-run-function",
        action="store_true",
        help="deploy a function that translates and delivers nothing (DRY_RUN=true), even without a key",
    )
    parser.add_argument(
        "--gateway",
        default=os.environ.get("APIG_GATEWAY_NAME"),
        metavar="NAME",
        help="route this API gateway (an existing one, in the region) to the function: its URL is the callback URL",
    )
    parser.add_argument(
        "--event-rules",
        type=_names,
        metavar="ID|NAME,...|all",
        help="tick the relay's callback URL in these Cloud Monitor event rules",
    )
    parser.add_argument(
        "--alarm-policies",
        type=_names,
        metavar="ID|NAME,...|all",
        help="tick the relay's callback URL in these Cloud Monitor alarm policies",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; call nothing")
    args = parser.parse_args(argv)

    low, found = minimum_python(), runtime_python(args.runtime)
    if found is None or found < low:
        parser.exit(2, f"deploy: runtime {args.runtime} runs Python older than the {low[0]}.{low[1]} the code needs\n")
    names = (*config.VARIABLES, *STORE_CREDENTIALS)
    environment = {name: os.environ[name] for name in names if os.environ.get(name)}
    # Reconcile's key reaches the function only as given for it: never this shell's deploying key.
    reconcile_key = {to: os.environ[given] for given, to in RECONCILE_CREDENTIALS.items() if os.environ.get(given)}
    if reconcile_key:
        if len(reconcile_key) < 2:
            parser.exit(2, "deploy: set both RECONCILE_ACCESS_KEY and RECONCILE_SECRET_KEY (a read-only key)\n")
        if reconcile_key["VOLCENGINE_ACCESS_KEY"] == os.environ.get("VOLCENGINE_ACCESS_KEY"):
            parser.exit(
                2,
                "deploy: RECONCILE_ACCESS_KEY is the deploying key: give reconcile a key of its own, "
                "allowed only Cloud Monitor's ListWebhooks and ListAlertGroup\n",
            )
        environment.update(reconcile_key, VOLCENGINE_REGION=args.region, RECONCILE_WEBHOOK=args.name)
    try:
        config.load(environment)  # a setting the function would refuse at start is refused here
        endpoint = volcengine_api.endpoint(os.environ)
    except (config.ConfigError, ValueError) as error:
        parser.exit(2, f"deploy: {error}\n")
    target = Target(
        args.name,
        args.region,
        args.runtime,
        args.memory_mb,
        args.timeout,
        environment,
        frozenset(args.unset),
        args.dry_run_function,
        Wiring(args.gateway, args.event_rules, args.alarm_policies),
    )
    code = package()
    if args.dry_run:
        print(f"would deploy volc-flashduty-relay {VERSION} ({len(code)} bytes) to veFaaS via {endpoint}:", file=out)
        for step in plan(target):
            print(f"- {step}", file=out)
        if not ({"FLASHDUTY_INTEGRATION_KEY", "ROUTES"} & environment.keys() or args.dry_run_function):
            print(
                "note: FLASHDUTY_INTEGRATION_KEY (or ROUTES) is not set in this shell: the deploy would refuse "
                "unless the function already has it, or --dry-run-function is given.",
                file=out,
            )
        return 0

    access_key, secret_key = os.environ.get("VOLCENGINE_ACCESS_KEY"), os.environ.get("VOLCENGINE_SECRET_KEY")
    if not (access_key and secret_key):
        parser.exit(
            2, "deploy: set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY (an access key allowed to use veFaaS)\n"
        )
    try:
        url = Deployer(put=requests.put, out=out, **sdk_clients(access_key, secret_key, args.region, endpoint)).deploy(
            target, code
        )
    except DeployError as error:
        parser.exit(1, f"deploy: {error}\n")
    if url:
        print(f"\ndeployed. Callback URL for Cloud Monitor: {url}", file=out)
    else:
        print(
            "\ndeployed. The function has no URL yet: run this again with --gateway NAME (an API gateway in this "
            "region) to route one to it.",
            file=out,
        )
    return 0


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names or ("all" in names and len(names) > 1):
        raise argparse.ArgumentTypeError("give ids or names, comma-separated, or all")
    return names


if __name__ == "__main__":
    sys.exit(main())
