"""serverless.yml: `osls package` builds it offline; the template and the zip are what Lambda needs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import reconcile
from deploy.package import MODULES
from tests.support import s3
from tests.support.callbacks import ROOT

OSLS = ROOT / "node_modules/.bin/osls"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    assert OSLS.exists(), "node_modules is missing: `make test` installs it (npm ci)"
    out = tmp_path_factory.mktemp("sls")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "dummy",
        "AWS_SECRET_ACCESS_KEY": "dummy",
        "PYTHON_BIN": sys.executable,
        "SLS_TELEMETRY_DISABLED": "1",
    }
    env.pop("AWS_PROFILE", None)
    result = subprocess.run(
        [str(OSLS), "package", "--stage", "ci", "--package", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def resources(package: Path) -> dict:
    return json.loads((package / "cloudformation-template-update-stack.json").read_text())["Resources"]


def test_the_function_and_its_endpoint(package: Path) -> None:
    res = resources(package)
    function = res["RelayLambdaFunction"]["Properties"]
    assert function["Handler"] == "main.handler" and function["Runtime"].startswith("python3.1")
    assert function["Timeout"] > 6  # above the delivery deadline
    assert res["RelayLambdaFunctionUrl"]["Properties"]["AuthType"] == "NONE"  # the relay checks its token


def test_secrets_come_from_ssm_and_the_store_from_the_bucket(package: Path) -> None:
    variables = resources(package)["RelayLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert (
        variables["FLASHDUTY_INTEGRATION_KEY"] == "{{resolve:ssm:/volc-flashduty-relay/ci/flashduty-integration-key}}"
    )
    assert variables["CALLBACK_TOKEN"] == "{{resolve:ssm:/volc-flashduty-relay/ci/callback-token}}"
    assert variables["DEADLETTER_URI"] == {"Fn::Join": ["", ["s3://", {"Ref": "DeadLetterBucket"}, "/ci"]]}


def test_least_privilege_on_the_dead_letter_bucket(package: Path) -> None:
    res = resources(package)
    bucket = res["DeadLetterBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket" and bucket["DeletionPolicy"] == "Retain"
    assert all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
    statements = res["IamRoleLambdaExecution"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    s3 = [s for s in statements if any(a.startswith("s3:") for a in s["Action"])]
    assert s3 == [
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["DeadLetterBucket", "Arn"]}, "/ci/*"]]},
        }
    ]


def test_the_zip_holds_our_modules_and_requirements_and_nothing_else(package: Path) -> None:
    names = zipfile.ZipFile(package / "volc-flashduty-relay.zip").namelist()
    top = {n.split("/")[0] for n in names}
    assert set(MODULES) <= top  # the relay's modules, the drain's (replay.py) among them
    assert {"requests", "urllib3", "boto3"} <= top
    assert not top & {
        "tests",
        "samples",
        "bench",
        "node_modules",
        "flask",
        "functions_framework",
        "deploy",
    }


def test_every_compiled_module_in_the_zip_is_for_the_runtimes_python_and_architecture(package: Path) -> None:
    function = resources(package)["RelayLambdaFunction"]["Properties"]
    python = function["Runtime"].removeprefix("python").replace(".", "")  # python3.12 -> 312
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[function.get("Architectures", ["x86_64"])[0]]
    archive = zipfile.ZipFile(package / "volc-flashduty-relay.zip")
    compiled = [name for name in archive.namelist() if name.endswith(".so")]
    assert compiled, "no compiled module at all (charset_normalizer ships some): this test would check nothing"
    other = [name for name in compiled if not name.endswith((f".cpython-{python}-{machine}-linux-gnu.so", ".abi3.so"))]
    assert not other, f"built for another Python than {function['Runtime']} on {machine}: {other[:5]}"
    tags = [
        line.removeprefix("Tag: ")
        for name in archive.namelist()
        if name.endswith(".dist-info/WHEEL")
        for line in archive.read(name).decode().splitlines()
        if line.startswith("Tag: ")
    ]
    binary = [tag for tag in tags if not tag.endswith("-none-any")]
    assert binary and all(tag.startswith(f"cp{python}-") or "-abi3-" in tag for tag in binary), binary
    assert all(tag.endswith(f"_{machine}") for tag in binary), binary


def test_the_zip_carries_no_bytecode_but_the_runtimes(package: Path) -> None:
    """pip compiles what it installs for the Python that runs it, not for the runtime: dead weight."""
    python = resources(package)["RelayLambdaFunction"]["Properties"]["Runtime"].removeprefix("python")
    names = zipfile.ZipFile(package / "volc-flashduty-relay.zip").namelist()
    other = [n for n in names if n.endswith(".pyc") and f".cpython-{python.replace('.', '')}." not in n]
    assert not other, f"{len(other)} compiled for another Python than {python}: {other[:3]}"


def test_the_handler_runs_from_the_zip_alone(package: Path, tmp_path: Path) -> None:
    zipfile.ZipFile(package / "volc-flashduty-relay.zip").extractall(tmp_path)
    event = {
        "version": "2.0",
        "rawPath": "/",
        "requestContext": {"http": {"method": "POST"}},
        "body": (ROOT / "samples/event.json").read_text(),
        "isBase64Encoded": False,
    }
    probe = f"import main; print(main.handler({event!r}, None)['statusCode'])"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(tmp_path), "DRY_RUN": "true"}
    # -S: no site-packages, so everything the handler imports must come from the zip
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "200", result.stderr


def pins(path: str) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in (ROOT / path).read_text().splitlines()]
    return dict(re.match(r"([A-Za-z0-9_.-]+)(.*)", line).groups() for line in lines if line)


@pytest.mark.parametrize("path", ["requirements-lambda.txt", "requirements-deploy.txt"])
def test_other_requirements_pin_what_requirements_txt_pins(path: str) -> None:
    theirs, runtime = pins(path), pins("requirements.txt")
    shared = theirs.keys() & runtime.keys()
    assert {"requests", "urllib3", "boto3"} <= shared
    assert {name: theirs[name] for name in shared} == {name: runtime[name] for name in shared}


def test_the_drain_runs_from_the_zip_alone(package: Path, tmp_path: Path, store: dict[str, str]) -> None:
    """The EventBridge schedule's entry: `main.drain` with nothing but the zip (boto3 included)."""
    zipfile.ZipFile(package / "volc-flashduty-relay.zip").extractall(tmp_path)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(tmp_path),
        "FLASHDUTY_INTEGRATION_KEY": "k",
        **store,
        **s3.CREDENTIALS,
    }
    probe = "import json, main; print(json.dumps(main.drain({}, None)))"
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["exit_code"] == 0


def test_the_drain_runs_every_minute_with_the_least_rights(package: Path) -> None:
    res = resources(package)
    drain = res["DrainLambdaFunction"]["Properties"]
    assert drain["Handler"] == "main.drain" and drain["Role"] == {"Fn::GetAtt": ["DrainRole", "Arn"]}
    assert drain["Timeout"] >= 55  # the drain's own limit (50 s) fits
    schedules = {
        r["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]: r["Properties"]["ScheduleExpression"]
        for r in res.values()
        if r["Type"] == "AWS::Events::Rule"
    }
    assert schedules == {"DrainLambdaFunction": "rate(1 minute)", "ReconcileLambdaFunction": "rate(5 minutes)"}
    statements = res["DrainRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    under_stage = {"Fn::Join": ["", [{"Fn::GetAtt": ["DeadLetterBucket", "Arn"]}, "/ci/*"]]}
    s3 = [
        s
        for s in statements
        if any(a.startswith("s3:") for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    ]
    assert s3 == [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": under_stage},
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": {"Fn::GetAtt": ["DeadLetterBucket", "Arn"]},
            "Condition": {"StringLike": {"s3:prefix": "ci/*"}},
        },
    ]
    assert "Fn::Join" in str(statements[-1]["Resource"]) and "-ci-*" in json.dumps(statements[-1]["Resource"])


def test_reconcile_runs_every_5_minutes_with_its_own_read_only_key_from_ssm(package: Path) -> None:
    res = resources(package)
    function = res["ReconcileLambdaFunction"]["Properties"]
    assert function["Handler"] == "main.reconcile" and function["Role"] == {"Fn::GetAtt": ["ReconcileRole", "Arn"]}
    (policy,) = res["ReconcileRole"]["Properties"]["Policies"]
    actions = [a for s in policy["PolicyDocument"]["Statement"] for a in s["Action"]]
    assert actions == ["logs:CreateLogStream", "logs:PutLogEvents"]  # its logs, nothing of the store
    assert function["Timeout"] > reconcile.TIMER_SECONDS + 5  # its own limit fits
    variables = function["Environment"]["Variables"]
    for name, parameter in (
        ("VOLCENGINE_ACCESS_KEY", "reconcile-access-key"),
        ("VOLCENGINE_SECRET_KEY", "reconcile-secret-key"),
        ("VOLCENGINE_REGION", "reconcile-region"),
        ("FLASHDUTY_APP_KEY", "flashduty-app-key"),
    ):
        assert variables[name] == f"{{{{resolve:ssm:/volc-flashduty-relay/ci/{parameter}}}}}"
    relay = res["RelayLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert not {"VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY", "FLASHDUTY_APP_KEY"} & relay.keys()  # nor the relay
