"""veFaaS: the relay's web-server function (create, or update what differs), its code, its release,
and the timers that drain the dead-letter store and reconcile."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import config
from callback import VERSION
from deadletter import Store, StoreError
from deploy.calls import Caller, DeployError
from deploy.package import digest

API_VERSION = "2024-06-06"
# The dead-letter store's credentials (an S3-compatible key: a TOS access key limited to the bucket).
STORE_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
# The timers the relay reads (callback.Relay._timer): name, what it runs, cron, what it does.
DRAIN_TIMER = ("relay-drain", "drain", "*/1 * * * *", "drains the dead-letter store every minute")
RECONCILE_TIMER = ("relay-reconcile", "reconcile", "*/5 * * * *", "reconciles with Cloud Monitor every 5 minutes")
PORT = 8000  # what run.sh listens on when veFaaS gives no port
# The function's request timeout, seconds: its timers' payload says it, and reconcile's run takes 5 s
# inside it, up to its 240 s (veFaaS's default, 30 s, left it 25: not enough to read 5,000 alarms on).
# A callback is not held longer by it: it ends by its delivery deadline (DELIVERY_DEADLINE_SECONDS).
REQUEST_TIMEOUT = 250
COMMAND = "./run.sh"


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

    @property
    def shape(self) -> dict[str, Any]:
        """How the function runs: what a create sets and an update compares."""
        return {"command": COMMAND, "port": PORT, "memory_mb": self.memory_mb, "request_timeout": self.request_timeout}

    def wanted_environment(self, existing: Mapping[str, str]) -> dict[str, str]:
        """The function's environment: what it has, then this shell's settings, less what the user unsets
        and less a blank setting, which the relay reads as unset (a token of blanks is no token)."""
        merged = {**existing, **self.environment}
        if self.dry_run_function:
            merged["DRY_RUN"] = "true"
        return {k: v for k, v in sorted(merged.items()) if k not in self.unset and v.strip()}


@dataclass(frozen=True)
class Existing:
    """A function as veFaaS has it: what a re-run compares against."""

    id: str
    description: str
    settings: dict[str, str]
    shape: dict[str, Any]
    # The revision that serves traffic (description, settings), None before the first release: an
    # update and an upload change only the draft above until a release, which a run may not reach.
    live: tuple[str, dict[str, str]] | None = None

    def released(self, description: str, settings: dict[str, str]) -> bool:
        return self.live == (description, settings)


@dataclass
class Function:
    """The function's steps, against veFaaS's SDK client (api, models) and the universal API."""

    caller: Caller
    api: Any
    models: Any
    universal: Any
    put: Callable[..., Any]
    store: Callable[[config.DeadLetter, Mapping[str, str]], Store] = Store
    changes: list[str] = field(default_factory=list)

    def _id_of(self, name: str) -> str | None:
        request = self.models.ListFunctionsRequest(
            filters=[self.models.FilterForListFunctionsInput(name="Name", values=[name])], page_size=100
        )
        items = self.caller.call("list functions", lambda: self.api.list_functions(request).items) or []
        return next((str(item.id) for item in items if item.name == name), None)

    def find(self, target: Target) -> Existing | None:
        name = target.name
        function_id = self._id_of(name)
        found = f"found ({function_id})" if function_id else "not found, creating it"
        self.caller.say(f"function {name!r}: {found}")
        if function_id is None:
            return None
        function = self.caller.call(
            "read function", lambda: self.api.get_function(self.models.GetFunctionRequest(id=function_id))
        )
        return Existing(
            id=function_id,
            description=function.description or "",
            settings={e.key: e.value for e in function.envs or []},
            shape={field_name: getattr(function, field_name) for field_name in target.shape},
            live=self._live(function_id),
        )

    def _live(self, function_id: str) -> tuple[str, dict[str, str]] | None:
        status = self.caller.call(
            "read release",
            lambda: self.api.get_release_status(self.models.GetReleaseStatusRequest(function_id=function_id)),
        )
        number = status.stable_revision_number
        if not number:
            return None
        revision = self.caller.call(
            "read released revision",
            lambda: self.api.get_revision(
                self.models.GetRevisionRequest(function_id=function_id, revision_number=number)
            ),
        )
        return revision.description or "", {e.key: e.value for e in revision.envs or []}

    def create(self, target: Target, environment: dict[str, str], wanted_description: str) -> str:
        function_id: str = self.caller.write(
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
            adopt=lambda: self._id_of(target.name),
        )
        self.changes.append("function created")
        self.caller.say(f"function: created ({function_id}) with settings {sorted(environment)}")
        return function_id

    def update(self, found: Existing, target: Target, environment: dict[str, str], wanted_description: str) -> None:
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
            if found.released(wanted_description, environment):
                self.caller.say("function: configuration unchanged")
            else:
                self.changes.append("what an earlier run left unreleased")
                self.caller.say("function: configuration unchanged, but not what serves traffic: releasing it")
            return
        self.caller.write(
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
        self.caller.say(
            f"function: updated {', '.join(differs + [f'setting {n}' for n in changed_settings])}"
            + (f"; kept its own {kept}" if kept else "")
        )

    def upload(self, function_id: str, code: bytes) -> None:
        address = self.caller.call(
            "get code upload address",
            lambda: (
                self.api.get_code_upload_address(
                    self.models.GetCodeUploadAddressRequest(function_id=function_id, content_length=len(code))
                ).upload_address
            ),
        )
        # The same bytes to the same address, and attaching them again, land the same however often sent.
        response = self.caller.call(
            "upload code package",
            lambda: self.put(address, data=code, headers={"Content-Type": "application/zip"}, timeout=120),
        )
        if not 200 <= response.status_code < 300:
            raise DeployError(f"uploading the code package failed with HTTP {response.status_code}")
        self.caller.call(
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
        self.caller.write(
            "install dependencies",
            lambda: self.api.create_dependency_install_task(
                self.models.CreateDependencyInstallTaskRequest(function_id=function_id)
            ),
        )
        self.caller.wait(
            "dependency install",
            lambda: (
                self.api.get_dependency_install_task_status(
                    self.models.GetDependencyInstallTaskStatusRequest(function_id=function_id)
                ).status
            ),
        )
        self.changes.append("code")
        self.caller.say(f"code: uploaded {len(code)} bytes and installed requirements.txt")

    def unchanged_code(self, code: bytes) -> None:
        self.caller.say(f"code: unchanged (package {digest(code)})")

    def probe(self, location: config.DeadLetter, environment: Mapping[str, str]) -> None:
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
        self.caller.say(f"dead-letter store: s3://{location.bucket}/{location.prefix} takes a write and a delete")

    def release(self, function_id: str) -> None:
        if not self.changes:
            self.caller.say("release: nothing changed, nothing released")
            return
        self.caller.write(
            "release",
            lambda: self.api.release(
                self.models.ReleaseRequest(function_id=function_id, revision_number=0, description=f"relay {VERSION}")
            ),
        )  # 0: the current code
        self.caller.wait(
            "release",
            lambda: self.api.get_release_status(self.models.GetReleaseStatusRequest(function_id=function_id)).status,
        )
        self.caller.say(f"release: done ({', '.join(self.changes)})")

    def triggers(self, function_id: str) -> list[Any]:
        return (
            self.caller.call(
                "list triggers",
                lambda: self.api.list_triggers(self.models.ListTriggersRequest(function_id=function_id)).items,
            )
            or []
        )

    def timer(
        self, function_id: str, triggers: list[Any], timer: tuple[str, str, str, str], timeout: int, token: str | None
    ) -> None:
        """A timer whose payload the relay reads (callback.Relay._timer): a bounded run within the timeout."""
        name, runs, crontab, does = timer
        payload = json.dumps({"relay": runs, "seconds": timeout, **({"token": token} if token else {})})
        wanted = {"crontab": crontab, "payload": payload, "enabled": True}
        found = next((t for t in triggers if t.name == name and str(t.type).lower() == "timer"), None)
        if found is None:
            self.caller.write(
                "create timer",
                lambda: self.api.create_timer(
                    self.models.CreateTimerRequest(function_id=function_id, name=name, **wanted)
                ),
                adopt=lambda: next((t for t in self.triggers(function_id) if t.name == name), None),
            )
            self.caller.say(f"timer {name!r}: created, {does}")
            return
        current = self.caller.call(
            "read timer", lambda: self.api.get_timer(self.models.GetTimerRequest(function_id=function_id, id=found.id))
        )
        if all(getattr(current, field_name) == value for field_name, value in wanted.items()):
            self.caller.say(f"timer {name!r}: unchanged")
            return
        self.caller.write(
            "update timer",
            lambda: self.api.update_timer(
                self.models.UpdateTimerRequest(function_id=function_id, id=found.id, **wanted)
            ),
        )
        self.caller.say(f"timer {name!r}: updated")


def refuse_what_cannot_work(settings: config.Settings, environment: Mapping[str, str]) -> None:
    """A function that would answer Volcengine 200 and deliver nothing, or fail on its first outage."""
    if settings.dry_run and not environment.get("DRY_RUN"):
        raise DeployError(
            "FLASHDUTY_INTEGRATION_KEY (or ROUTES) is set neither in this shell nor on the function: it would "
            "answer every callback and deliver nothing. Set it, or pass --dry-run-function to deploy a dry run."
        )
    if environment.get("VOLCENGINE_ACCESS_KEY") and not environment.get("FLASHDUTY_APP_KEY"):
        raise DeployError(
            "RECONCILE_ACCESS_KEY is set, but FLASHDUTY_APP_KEY is not: reconcile reads the alerts Flashduty "
            "holds, with an APP key whose role has Channels Read. Set FLASHDUTY_APP_KEY, or --unset "
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
