"""Deploy the relay to veFaaS with the official Python SDK: `python -m deploy`.

Packages the code, creates the web-server function (started by run.sh) or updates it, uploads the
package, installs requirements.txt, releases, waits for the release, and prints the callback URL to
paste into Cloud Monitor. The relay's settings present in this environment (config.VARIABLES) become
the function's environment. `--dry-run` prints the plan and calls nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests
import urllib3

import config

ROOT = Path(__file__).resolve().parent
PACKAGE = (
    "main.py",
    "index.py",
    "callback.py",
    "mapping.py",
    "flashduty.py",
    "config.py",
    "logs.py",
    "deadletter.py",
    "run.sh",
    "gunicorn.conf.py",
    "requirements.txt",
)
API_VERSION = "2024-06-06"
PORT = 8000  # what run.sh listens on when veFaaS gives no port
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
    environment: dict[str, str]


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


def plan(target: Target) -> list[str]:
    return [
        f"find function {target.name!r} in {target.region}",
        f"create or update it: runtime {target.runtime}, command ./run.sh, port {PORT}, {target.memory_mb} MB, "
        f"timeout {target.request_timeout} s, environment {sorted(target.environment) or 'none'}",
        f"upload the code package ({', '.join(PACKAGE)})",
        "install requirements.txt",
        "release the new code and wait for it",
        "print the callback URL of its API gateway trigger",
    ]


class Deployer:
    """The deploy steps against a veFaaS API client (VEFAASApi) and the SDK's universal API."""

    def __init__(
        self,
        api: Any,
        universal: Any,
        models: Any,
        put: Callable[..., Any],
        out: TextIO,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api, self.universal, self.models, self.put, self.out, self.sleep = api, universal, models, put, out, sleep

    def deploy(self, target: Target, code: bytes) -> str | None:
        function_id = self._find(target.name)
        if function_id is None:
            function_id = self._step(
                "create function",
                lambda: (
                    self.api.create_function(
                        self.models.CreateFunctionRequest(
                            name=target.name,
                            runtime=target.runtime,
                            command="./run.sh",
                            port=PORT,
                            memory_mb=target.memory_mb,
                            request_timeout=target.request_timeout,
                            description="Volcengine Cloud Monitor callbacks to Flashduty",
                            envs=[
                                self.models.EnvForCreateFunctionInput(key=k, value=v)
                                for k, v in sorted(target.environment.items())
                            ],
                        )
                    ).id
                ),
            )
        else:
            self._step(
                "update function",
                lambda: self.api.update_function(
                    self.models.UpdateFunctionRequest(
                        id=function_id,
                        command="./run.sh",
                        port=PORT,
                        memory_mb=target.memory_mb,
                        request_timeout=target.request_timeout,
                        envs=[
                            self.models.EnvForUpdateFunctionInput(key=k, value=v)
                            for k, v in sorted(target.environment.items())
                        ],
                    )
                ),
            )
        address = self._step(
            "get code upload address",
            lambda: (
                self.api.get_code_upload_address(
                    self.models.GetCodeUploadAddressRequest(function_id=function_id, content_length=len(code))
                ).upload_address
            ),
        )
        response = self._step(
            "upload code package",
            lambda: self.put(address, data=code, headers={"Content-Type": "application/zip"}, timeout=120),
        )
        if not 200 <= response.status_code < 300:
            raise DeployError(f"uploading the code package failed with HTTP {response.status_code}")
        self._step(
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
        self._step(
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
        self._step(
            "release",
            lambda: self.api.release(
                self.models.ReleaseRequest(function_id=function_id, revision_number=0, description="python -m deploy")
            ),
        )  # 0: the current code
        self._wait(
            "release",
            lambda: self.api.get_release_status(self.models.GetReleaseStatusRequest(function_id=function_id)).status,
        )
        triggers = (
            self._step(
                "list triggers",
                lambda: self.api.list_triggers(self.models.ListTriggersRequest(function_id=function_id)).items,
            )
            or []
        )
        return next(
            (url for t in triggers for url in re.findall(r"https?://[^\s\"'\\]+", t.detailed_config or "")), None
        )

    def _find(self, name: str) -> str | None:
        request = self.models.ListFunctionsRequest(
            filters=[self.models.FilterForListFunctionsInput(name="Name", values=[name])], page_size=100
        )
        items = self._step("list functions", lambda: self.api.list_functions(request).items) or []
        return next((item.id for item in items if item.name == name), None)

    def _step(self, what: str, call: Callable[[], Any]) -> Any:
        print(f"- {what}", file=self.out, flush=True)
        try:
            return call()
        except self.models.ApiException as error:
            raise DeployError(_explain(what, error)) from None
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException) as error:
            # Their text may hold the signed upload URL: say only what kind of failure it was.
            raise DeployError(
                f"{what}: cannot reach veFaaS ({type(error).__name__}); check the network and region"
            ) from None

    def _wait(self, what: str, status: Callable[[], str]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            state = str(self._step(f"{what}: status", status) or "")
            # The SDK documents no status values: Succeeded / Done, Failed / Error are what it sends.
            if "succ" in state.lower() or state.lower() == "done":
                return
            if "fail" in state.lower() or "error" in state.lower():
                raise DeployError(f"{what} ended {state}: see the function's page in the veFaaS console")
            if time.monotonic() > deadline:
                raise DeployError(f"{what} did not finish within {WAIT_SECONDS:.0f} s (last status {state!r})")
            self.sleep(POLL_SECONDS)


def _explain(what: str, error: Any) -> str:
    try:
        code = json.loads(error.body)["ResponseMetadata"]["Error"]["Code"]
    except (TypeError, ValueError, KeyError):
        code = error.reason or f"HTTP {error.status}"
    if error.status in (401, 403) or any(w in str(code) for w in ("AccessKey", "Signature", "Authorization", "Denied")):
        return (
            f"{what}: veFaaS refused the credentials ({code}). Check VOLCENGINE_ACCESS_KEY and "
            f"VOLCENGINE_SECRET_KEY, and that the key may use veFaaS in this region."
        )
    return f"{what} failed: {code}"


def sdk_clients(access_key: str, secret_key: str, region: str) -> tuple[Any, Any, Any]:
    """The real SDK: imported here so the relay's own code never needs it."""
    import volcenginesdkcore
    import volcenginesdkvefaas
    from volcenginesdkcore.rest import ApiException
    from volcenginesdkcore.universal import UniversalApi, UniversalInfo

    configuration = volcenginesdkcore.Configuration()
    configuration.ak, configuration.sk, configuration.region = access_key, secret_key, region
    client = volcenginesdkcore.ApiClient(configuration)
    models = argparse.Namespace(
        **{n: getattr(volcenginesdkvefaas, n) for n in dir(volcenginesdkvefaas) if n[0].isupper()},
        UniversalInfo=UniversalInfo,
        ApiException=ApiException,
    )
    return volcenginesdkvefaas.VEFAASApi(client), UniversalApi(client), models


def main(
    argv: list[str] | None = None, out: TextIO = sys.stdout, clients: Callable[..., tuple[Any, Any, Any]] = sdk_clients
) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=os.environ.get("VEFAAS_FUNCTION_NAME", "volc-flashduty-relay"))
    parser.add_argument("--region", default=os.environ.get("VOLCENGINE_REGION", "cn-beijing"))
    parser.add_argument("--runtime", default="native-python3.10/v1", help="veFaaS web-server runtime")
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument(
        "--timeout", type=int, default=30, help="request timeout, seconds (above the delivery deadline)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; call nothing")
    args = parser.parse_args(argv)

    environment = {name: os.environ[name] for name in config.VARIABLES if os.environ.get(name)}
    try:
        config.load(environment)  # a setting the function would refuse at start is refused here
    except config.ConfigError as error:
        parser.exit(2, f"deploy: {error}\n")
    target = Target(args.name, args.region, args.runtime, args.memory_mb, args.timeout, environment)
    code = package()
    if args.dry_run:
        print(f"would deploy {len(code)} bytes to veFaaS:", file=out)
        for step in plan(target):
            print(f"- {step}", file=out)
        return 0

    access_key, secret_key = os.environ.get("VOLCENGINE_ACCESS_KEY"), os.environ.get("VOLCENGINE_SECRET_KEY")
    if not (access_key and secret_key):
        parser.exit(
            2, "deploy: set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY (an access key allowed to use veFaaS)\n"
        )
    api, universal, models = clients(access_key, secret_key, args.region)
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
