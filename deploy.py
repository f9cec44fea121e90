"""Deploy the relay to veFaaS with the official Python SDK: `python -m deploy`.

Finds the web-server function (started by run.sh), else creates it, else updates what differs;
uploads the package, installs requirements.txt and releases only when the code changed; proves the
dead-letter store works before it releases; prints the callback URL. Settings present in this shell
(config.VARIABLES, and the store's credentials) become the function's environment; settings the
function already has and this shell lacks are kept. `--dry-run` prints the plan and calls nothing.
Each step says what it found and what it changed, and never prints a secret.
"""

from __future__ import annotations

import argparse
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
from urllib.parse import urlsplit

import requests
import urllib3

import config
import mapping
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
)
# ...and what a veFaaS web-server function needs beside them: its start command and what it installs.
VEFAAS_FILES = ("run.sh", "gunicorn.conf.py", "requirements.txt")
PACKAGE = MODULES + VEFAAS_FILES
DEFAULT_RUNTIME = "native-python3.12/v1"
DEFAULT_ENDPOINT = "https://open.volcengineapi.com"
# The dead-letter store's credentials (an S3-compatible key: a TOS access key limited to the bucket).
STORE_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
API_VERSION = "2024-06-06"
DRAIN_TIMER = "relay-drain"
DRAIN_CRONTAB = "*/1 * * * *"  # every minute: a drain runs at most its request timeout less 5 s
PORT = 8000  # what run.sh listens on when veFaaS gives no port
COMMAND = "./run.sh"
POLL_SECONDS = 3.0
WAIT_SECONDS = 600.0


class DeployError(Exception):
    """What went wrong, said so that the user knows what to do."""


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
        "release and wait for it; with DEADLETTER_URI, a timer that drains the store every minute; "
        "print the callback URL of its API gateway trigger",
    ]


@dataclass(frozen=True)
class Existing:
    """A function as veFaaS has it: what a re-run compares against."""

    id: str
    description: str
    settings: dict[str, str]
    shape: dict[str, Any]


@dataclass
class Deployer:
    """The deploy steps against a veFaaS API client (VEFAASApi) and the SDK's universal API."""

    api: Any
    universal: Any
    models: Any
    put: Callable[..., Any]
    out: TextIO
    sleep: Callable[[float], None] = time.sleep
    store: Callable[[config.DeadLetter, Mapping[str, str]], Store] = Store
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
        if settings.deadletter is not None:
            self._timer(function_id, triggers, target.request_timeout, environment.get("CALLBACK_TOKEN"))
        return next(
            (url for t in triggers for url in re.findall(r"https?://[^\s\"'\\]+", t.detailed_config or "")), None
        )

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

    def _timer(self, function_id: str, triggers: list[Any], timeout: int, token: str | None) -> None:
        """The store's drain every minute: a timer whose payload the relay reads (callback.Relay._timer)."""
        payload = json.dumps({"relay": "drain", "seconds": timeout, **({"token": token} if token else {})})
        wanted = {"crontab": DRAIN_CRONTAB, "payload": payload, "enabled": True}
        found = next((t for t in triggers if t.name == DRAIN_TIMER and str(t.type).lower() == "timer"), None)
        if found is None:
            self._call(
                "create timer",
                lambda: self.api.create_timer(
                    self.models.CreateTimerRequest(function_id=function_id, name=DRAIN_TIMER, **wanted)
                ),
            )
            self._say(f"timer {DRAIN_TIMER!r}: created, drains the dead-letter store every minute")
            return
        timer = self._call(
            "read timer", lambda: self.api.get_timer(self.models.GetTimerRequest(function_id=function_id, id=found.id))
        )
        if all(getattr(timer, name) == value for name, value in wanted.items()):
            self._say(f"timer {DRAIN_TIMER!r}: unchanged")
            return
        self._call(
            "update timer",
            lambda: self.api.update_timer(
                self.models.UpdateTimerRequest(function_id=function_id, id=found.id, **wanted)
            ),
        )
        self._say(f"timer {DRAIN_TIMER!r}: updated")

    # Plumbing -------------------------------------------------------------------------------

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
                f"{what}: cannot reach veFaaS ({type(error).__name__}); check the network, the region "
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


def _refuse_what_cannot_work(settings: config.Settings, environment: Mapping[str, str]) -> None:
    """A function that would answer Volcengine 200 and deliver nothing, or fail on its first outage."""
    if settings.dry_run and not environment.get("DRY_RUN"):
        raise DeployError(
            "FLASHDUTY_INTEGRATION_KEY (or ROUTES) is set neither in this shell nor on the function: it would "
            "answer every callback and deliver nothing. Set it, or pass --dry-run-function to deploy a dry run."
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
    try:
        code = json.loads(error.body)["ResponseMetadata"]["Error"]["Code"]
    except (TypeError, ValueError, KeyError):
        code = error.reason or f"HTTP {error.status}"
    if error.status in (401, 403) or any(w in str(code) for w in ("AccessKey", "Signature", "Authorization", "Denied")):
        return (
            f"{what}: veFaaS refused it ({code}). Check VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY, and "
            f"that the key's policy allows this action in this region (README: Deploy -> permissions)."
        )
    return f"{what} failed: {code}"


def sdk_clients(access_key: str, secret_key: str, region: str, endpoint: str) -> tuple[Any, Any, Any]:
    """The real SDK: imported here so the relay's own code never needs it."""
    import volcenginesdkcore
    import volcenginesdkvefaas
    from volcenginesdkcore.rest import ApiException
    from volcenginesdkcore.universal import UniversalApi, UniversalInfo

    configuration = volcenginesdkcore.Configuration()
    _give_logging_back(configuration)
    configuration.ak, configuration.sk, configuration.region = access_key, secret_key, region
    parts = urlsplit(endpoint)
    configuration.scheme, configuration.host = parts.scheme, parts.netloc
    client = volcenginesdkcore.ApiClient(configuration)
    models = argparse.Namespace(
        **{n: getattr(volcenginesdkvefaas, n) for n in dir(volcenginesdkvefaas) if n[0].isupper()},
        UniversalInfo=UniversalInfo,
        ApiException=ApiException,
    )
    return volcenginesdkvefaas.VEFAASApi(client), UniversalApi(client), models


def _give_logging_back(configuration: Any) -> None:
    """The SDK's Configuration puts its own stderr handler on urllib3's logger and stops it propagating:
    that would print urllib3's lines outside the JSON log (logs.py) and past its redaction. Undo it."""
    for logger in configuration.logger.values():
        for handler in [h for h in logger.handlers if getattr(h, "_volcengine_sdk_handler", False)]:
            logger.removeHandler(handler)
        logger.propagate = True


def _endpoint(environ: Mapping[str, str]) -> str:
    endpoint = environ.get("VOLCENGINE_OPENAPI_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"VOLCENGINE_OPENAPI_ENDPOINT must be a URL such as {DEFAULT_ENDPOINT}, got {endpoint!r}")
    return endpoint


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


def main(
    argv: list[str] | None = None, out: TextIO = sys.stdout, clients: Callable[..., tuple[Any, Any, Any]] = sdk_clients
) -> int:
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
    parser.add_argument("--dry-run", action="store_true", help="print the plan; call nothing")
    args = parser.parse_args(argv)

    low, found = minimum_python(), runtime_python(args.runtime)
    if found is None or found < low:
        parser.exit(2, f"deploy: runtime {args.runtime} runs Python older than the {low[0]}.{low[1]} the code needs\n")
    names = (*config.VARIABLES, *STORE_CREDENTIALS)
    environment = {name: os.environ[name] for name in names if os.environ.get(name)}
    try:
        config.load(environment)  # a setting the function would refuse at start is refused here
        endpoint = _endpoint(os.environ)
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
    api, universal, models = clients(access_key, secret_key, args.region, endpoint)
    try:
        url = Deployer(api, universal, models, requests.put, out).deploy(target, code)
    except DeployError as error:
        parser.exit(1, f"deploy: {error}\n")
    if url:
        print(f"\ndeployed. Callback URL for Cloud Monitor: {url}", file=out)
    else:
        print(
            "\ndeployed. The function has no API gateway trigger yet: add one in the veFaaS console "
            "(Triggers -> API gateway, POST), then run this again to print its URL.",
            file=out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
