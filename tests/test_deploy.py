"""`python -m deploy` (veFaaS): the real official SDK against a local stand-in of Volcengine's OpenAPI."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import callback
import reconcile
from deploy import cli, package
from deploy.function import STORE_CREDENTIALS
from tests.support.callbacks import ROOT
from tests.support.flashduty import APP_KEY
from tests.support.github import GitHubStub
from tests.support.openapi import ACCESS_KEY, NOT_UPDATED, READER_KEY, SECRET_KEY, Function, OpenAPIStub
from tests.support.servers import free_port, production_server
from tests.support.venvs import fresh_venv

FIRST_DEPLOY = [
    "ListFunctions",
    "CreateFunction",
    "GetCodeUploadAddress",
    "CodeUploadCallback",
    "CreateDependencyInstallTask",
    "GetDependencyInstallTaskStatus",
    "Release",
    "GetReleaseStatus",
    "ListTriggers",
]


@pytest.fixture
def run(openapi: OpenAPIStub, environment, monkeypatch, capsys, tmp_path) -> Callable[..., tuple[int, str]]:
    """`python -m deploy <args>` with these relay settings in the shell; its exit code and everything it printed."""

    def deploy_with(*args: str, **settings: str) -> tuple[int, str]:
        environment(**settings)
        monkeypatch.setenv("DEPLOY_BACKUP_DIR", str(tmp_path / "backups"))
        monkeypatch.setenv("VOLCENGINE_ACCESS_KEY", ACCESS_KEY)
        monkeypatch.setenv("VOLCENGINE_SECRET_KEY", SECRET_KEY)
        monkeypatch.setenv("VOLCENGINE_OPENAPI_ENDPOINT", openapi.origin)
        out = io.StringIO()
        try:
            code = cli.main(list(args), out=out)
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        printed = capsys.readouterr()
        return code, out.getvalue() + printed.out + printed.err

    return deploy_with


def serverless_yml() -> dict:
    """serverless.yml, with CloudFormation's short forms (!Ref, !Join...) read as nothing."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda *_: None)
    return yaml.load((ROOT / "serverless.yml").read_text(), Loader=Loader)


def envs(openapi: OpenAPIStub, name: str = "volc-flashduty-relay") -> dict[str, str]:
    return {e["Key"]: e["Value"] for e in openapi.function(name).fields["Envs"]}


def test_package_holds_the_relay_and_nothing_else() -> None:
    code = package.zipped()
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        assert sorted(infos) == sorted(package.PACKAGE)
        assert (infos["run.sh"].external_attr >> 16) & 0o111  # executable: veFaaS runs ./run.sh
    assert not any(name.startswith(("tests/", "samples/", "bench/")) for name in infos)
    assert package.zipped() == code  # same code, same package


def test_the_first_deploy_creates_uploads_installs_and_releases(run, openapi) -> None:
    code, out = run("--name", "relay-prod", FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok")
    assert code == 0, out
    assert openapi.deploy_actions() == FIRST_DEPLOY and openapi.violations == []
    function = openapi.function("relay-prod")
    assert function.runtime == package.DEFAULT_RUNTIME
    assert (function.fields["Command"], function.fields["Port"]) == ("./run.sh", 8000)
    assert envs(openapi, "relay-prod") == {"FLASHDUTY_INTEGRATION_KEY": "fd-key", "CALLBACK_TOKEN": "tok"}
    assert function.released == package.zipped()  # uploaded, then released
    assert "fd-key" not in out and "tok" not in out.replace("token", "")  # names, never values
    assert "has no URL yet" in out and "--gateway" in out


def test_a_second_run_changes_nothing(run, openapi) -> None:
    run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    openapi.calls.clear()
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 0, out
    assert openapi.deploy_actions() == [
        "ListFunctions",
        "GetFunction",
        "GetReleaseStatus",
        "GetRevision",
        "ListTriggers",
    ]
    assert "configuration unchanged" in out and "nothing released" in out


def test_a_changed_setting_updates_only_that(run, openapi) -> None:
    run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    openapi.calls.clear()
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key", MIN_SEVERITY="Warning")
    assert code == 0, out
    assert "UpdateFunction" in openapi.deploy_actions() and "GetCodeUploadAddress" not in openapi.deploy_actions()
    assert openapi.deploy_actions()[-3:] == ["Release", "GetReleaseStatus", "ListTriggers"]
    assert "updated setting MIN_SEVERITY" in out
    assert envs(openapi)["MIN_SEVERITY"] == "Warning"


def test_a_redeploy_keeps_the_functions_own_settings_unless_asked(run, openapi) -> None:
    run(FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok")
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key")  # a shell without CALLBACK_TOKEN
    assert code == 0 and envs(openapi)["CALLBACK_TOKEN"] == "tok"
    code, out = run("--unset", "CALLBACK_TOKEN", FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 0 and "CALLBACK_TOKEN" not in envs(openapi)


def test_a_deploy_without_a_key_refuses(run, openapi) -> None:
    code, out = run()
    assert code == 1 and "FLASHDUTY_INTEGRATION_KEY" in out and "--dry-run-function" in out
    assert openapi.deploy_actions() == ["ListFunctions"]  # nothing created


def test_a_dry_run_function_is_deployed_only_when_asked(run, openapi) -> None:
    code, out = run("--dry-run-function")
    assert code == 0, out
    assert envs(openapi) == {"DRY_RUN": "true"}


def test_a_redeploy_without_the_key_in_the_shell_keeps_the_functions(run, openapi) -> None:
    run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    code, out = run()
    assert code == 0, out
    assert envs(openapi) == {"FLASHDUTY_INTEGRATION_KEY": "fd-key"}


def test_dry_run_calls_nothing_and_says_it_would_refuse(run, openapi) -> None:
    code, out = run("--dry-run", CALLBACK_TOKEN="tok")
    assert code == 0 and openapi.calls == []
    assert "would deploy" in out and "CALLBACK_TOKEN" in out and "tok\n" not in out
    assert "would refuse: FLASHDUTY_INTEGRATION_KEY (or ROUTES) is set neither" in out


def test_a_missing_permission_says_which(run, openapi) -> None:
    openapi.deny.add("CreateFunction")
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 1
    # The first write is the deploy's lease (deploy.lease: an empty function of its own).
    assert "take the deploy lease: Volcengine refused it (AccessDenied)" in out and "policy allows this action" in out


def test_bad_credentials_give_a_clear_message(run, openapi, monkeypatch) -> None:
    monkeypatch.setattr("tests.support.openapi.ACCESS_KEY", "AKLTsomeoneelse")  # the key we send is unknown
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 1 and "refused it (InvalidAccessKey)" in out and "VOLCENGINE_ACCESS_KEY" in out
    assert SECRET_KEY not in out


def test_a_failed_release_is_reported(run, openapi) -> None:
    openapi.release_status = "Failed"
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 1 and "release ended Failed" in out


def test_an_unreachable_api_gives_a_clear_message(run, openapi, monkeypatch) -> None:
    monkeypatch.setattr(OpenAPIStub, "origin", f"http://127.0.0.1:{free_port()}")
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert (
        code == 1 and "read the deploy lease: cannot reach Volcengine" in out and "VOLCENGINE_OPENAPI_ENDPOINT" in out
    )


def test_a_failed_upload_never_shows_the_signed_url(run, openapi) -> None:
    openapi.upload_base = f"http://127.0.0.1:{free_port()}"
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 1 and "upload code package: cannot reach Volcengine" in out
    assert "secret-signature" not in out
    assert "Release" not in openapi.deploy_actions()


def test_the_store_is_proved_before_the_release(run, openapi, store) -> None:
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key", **store)
    assert code == 0, out
    assert "takes a write and a delete" in out
    function_env = envs(openapi)
    assert function_env["AWS_ACCESS_KEY_ID"] and function_env["AWS_SECRET_ACCESS_KEY"]  # the store's credentials

    openapi.calls.clear()
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key", **{**store, "DEADLETTER_URI": "s3://no-such-bucket/relay"})
    assert code == 1 and "dead-letter store refused" in out and "NoSuchBucket" in out and "Nothing was released" in out
    assert "Release" not in openapi.deploy_actions()


def test_a_store_without_credentials_is_refused(run, openapi, monkeypatch) -> None:
    for name in STORE_CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key", DEADLETTER_URI="s3://bucket/relay")
    assert code == 1 and "AWS_ACCESS_KEY_ID" in out and "no credentials" in out


def test_a_bad_setting_is_refused_before_deploying(run, openapi) -> None:
    code, out = run("--dry-run", MIN_SEVERITY="Loud")
    assert code == 2 and "MIN_SEVERITY" in out


def test_the_version_is_said(run) -> None:
    code, out = run("--version")
    assert code == 0 and out.strip() == f"volc-flashduty-relay {callback.VERSION}"


# The runtime fits the code ----------------------------------------------------------------------


def test_a_runtime_older_than_the_code_is_refused(run, openapi) -> None:
    code, out = run("--runtime", "native-python3.10/v1", FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 2 and "older than the 3.11" in out and openapi.calls == []


def test_every_deploy_targets_runtime_satisfies_requires_python() -> None:
    minimum = package.minimum_python()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == f">={minimum[0]}.{minimum[1]}"
    serverless = serverless_yml()
    runtimes = {"veFaaS default": package.DEFAULT_RUNTIME, "serverless.yml": serverless["provider"]["runtime"]}
    for workflow in (ROOT / ".github/workflows").glob("*.yml"):
        for number, version in enumerate(re.findall(r"python-version:\s*\"?([0-9.]+)", workflow.read_text())):
            runtimes[f"{workflow.name} #{number}"] = version
    assert len(runtimes) >= 3
    too_old = {
        where: runtime for where, runtime in runtimes.items() if (package.runtime_python(runtime) or (0, 0)) < minimum
    }
    assert not too_old, f"older than requires-python: {too_old}"
    assert sys.version_info[:2] >= minimum  # and what runs this suite


# What ships, as shipped ---------------------------------------------------------------------------


def test_serverless_ships_the_same_modules() -> None:
    patterns = serverless_yml()["package"]["patterns"]
    assert patterns[0] == "!**"
    assert sorted(patterns[1:]) == sorted(package.MODULES)


def test_the_modules_are_every_runtime_module() -> None:
    """Every module the entry points import, and nothing the relay does not run (the deploy itself)."""
    probe = "import sys, main, index, replay, reconcile; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    ours = {f"{name}.py" for name in loaded.stdout.split()} & {p.name for p in ROOT.glob("*.py")}
    assert ours == set(package.MODULES)


def test_the_deploy_tool_runs_from_its_own_requirements(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv", ROOT / "requirements-deploy.txt")
    env = {"PATH": str(python.parent), "FLASHDUTY_INTEGRATION_KEY": "k"}
    result = subprocess.run(
        [str(python), "-m", "deploy", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "would deploy volc-flashduty-relay" in result.stdout


# The wiring test ----------------------------------------------------------------------------------


def test_the_wiring_test_sends_exactly_a_labelled_test_event_and_its_ok(stub) -> None:
    env = {"FLASHDUTY_INTEGRATION_KEY": "key-wiring", "FLASHDUTY_PUSH_URL": stub.url, "CALLBACK_TOKEN": "tok-w"}
    env["MIN_SEVERITY"] = "Critical"  # a test pages nobody, and is not filtered either
    with production_server(env) as (url, _, _):
        out = io.StringIO()
        assert cli.main(["test", "--url", url, "--token", "tok-w"], out=out) == 0, out.getvalue()
    fired, *closed = [r.event for r in stub.accepted()]
    assert (fired["event_status"], {e["event_status"] for e in closed}) == ("Info", {"Ok"})
    assert fired["alert_key"] in {e["alert_key"] for e in closed}
    assert all(e["labels"]["test"] == "true" and e["title_rule"].startswith("[TEST") for e in (fired, *closed))
    assert "wiring works" in out.getvalue() and stub.open_alerts() == []


def test_the_wiring_test_says_when_the_relay_is_a_dry_run() -> None:
    with production_server({"DRY_RUN": "true"}) as (url, _, _):
        out = io.StringIO()
        assert cli.main(["test", "--url", url], out=out) == 1
    assert "dry run: nothing reached Flashduty" in out.getvalue()


def test_with_a_store_a_timer_drains_it_every_minute_with_a_secret_of_its_own(run, openapi, store, client) -> None:
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-timer", **store)
    assert code == 0, out
    (timer,) = openapi.function("volc-flashduty-relay").triggers
    assert (timer["Name"], timer["Crontab"], timer["Enabled"]) == ("relay-drain", "*/1 * * * *", True)
    timer_token = envs(openapi)["TIMER_TOKEN"]
    assert len(timer_token) >= 40 and json.loads(timer["Payload"])["token"] == timer_token
    assert "tok-timer" not in timer["Payload"]  # who may read triggers learns nothing that posts alerts
    assert "tok-timer" not in out and timer_token not in out

    openapi.calls.clear()
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-new", **store)
    assert "CreateTimer" not in openapi.deploy_actions() and "UpdateTimer" not in openapi.deploy_actions()
    assert "timer 'relay-drain': unchanged" in out and envs(openapi)["TIMER_TOKEN"] == timer_token

    # What the timer posts, as veFaaS posts it to the web-server function: the relay drains.
    event = {"id": "1", "source": f"/faas/event/timer/{timer['Id']}", "specversion": "1.0"}
    event.update(type="faas.timer.event", datacontenttype="application/octet-stream", data=timer["Payload"])
    app = client(FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-new", TIMER_TOKEN=timer_token, **store)
    answer = app.post("/", json=event)
    assert answer.status_code == 200 and answer.get_json()["exit_code"] == 0
    forged = {**event, "data": json.dumps({"relay": "drain", "token": "guess"})}
    assert app.post("/", json=forged).status_code == 401
    # The timer's secret starts a drain, and posts no alert.
    alert = app.post("/", data=(ROOT / "samples/metric.json").read_bytes(), headers={"Token": timer_token})
    assert alert.status_code == 401


# No console clicks: the API gateway route and Cloud Monitor's callback URL, ticked in the rules -----

WIRING_WRITES = {
    "CreateUpstream",
    "UpdateUpstream",
    "CreateGatewayService",
    "CreateRoute",
    "UpdateRoute",
    "CreateWebhook",
    "UpdateWebhook",
    "UpdateEventRule",
    "UpdateRule",
}


@pytest.fixture
def wired(openapi: OpenAPIStub) -> OpenAPIStub:
    """A gateway, two event rules and two alarm policies, one of them already calling another webhook."""
    openapi.add_gateway("prod-gateway")
    openapi.add_event_rule("disk-redeploy")
    openapi.add_event_rule("instance-down", ContactMethods=["Phone", "Webhook"], WebhookIds=["999"])
    openapi.add_alarm_policy("cpu-high")
    openapi.add_alarm_policy("disk-full", Level="warning")
    return openapi


def test_the_deploy_routes_the_gateway_and_ticks_the_callback_url_in_the_rules(run, wired) -> None:
    before_rules = {k: dict(v) for k, v in wired.event_rules.items()}
    before_policies = {k: dict(v) for k, v in wired.alarm_policies.items()}
    args = ("--gateway", "prod-gateway", "--event-rules", "all", "--alarm-policies", "cpu-high")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-wire")
    assert code == 0, out
    assert wired.violations == []
    # UpdateRule drops a policy's tags (and refuses them): TagResources puts them back; nothing else is lost.
    assert wired.lost == [f"{next(iter(wired.alarm_policies))}: Tags"]

    (gateway,) = wired.gateways.values()
    (upstream,) = gateway["Upstreams"].values()
    assert upstream["UpstreamSpec"]["VeFaas"]["FunctionId"] == wired.function("volc-flashduty-relay").id
    (service,) = gateway["Services"].values()
    assert service["AuthSpec"] == {"Enable": False}  # the relay checks the token itself
    (route,) = wired.routes.values()
    assert route["ServiceId"] == service["Id"] and route["UpstreamList"][0]["UpstreamId"] == upstream["Id"]
    assert route["MatchRule"]["Path"] == {"MatchType": "Prefix", "MatchContent": "/"}
    assert "POST" in route["MatchRule"]["Method"]
    url = f"https://{service['Domains'][0]['Domain']}/"  # the public domain, not the private one
    assert f"Callback URL for Cloud Monitor: {url}" in out

    (webhook,) = wired.webhooks.values()
    assert (webhook["Name"], webhook["Type"], webhook["Url"], webhook["Token"]) == (
        "volc-flashduty-relay",
        "custom",
        url,
        "tok-wire",
    )
    for rule_id, rule in wired.event_rules.items():  # all: both, each keeping what it had
        old = before_rules[rule_id]
        assert rule["WebhookIds"] == [*old["WebhookIds"], webhook["Id"]]
        assert set(rule["ContactMethods"]) == {*old["ContactMethods"], "Webhook"}
        unchanged = {k: v for k, v in rule.items() if k not in ("WebhookIds", "ContactMethods")}
        assert unchanged == {k: v for k, v in old.items() if k not in ("WebhookIds", "ContactMethods")}
    cpu, disk = wired.alarm_policies.values()
    assert cpu["WebhookIds"] == [webhook["Id"]] and cpu["AlertMethods"] == ["Email", "Webhook"]
    assert {k: v for k, v in cpu.items() if k not in ("WebhookIds", "AlertMethods")} == {
        k: v for k, v in before_policies[cpu["Id"]].items() if k not in ("WebhookIds", "AlertMethods")
    }
    assert disk == before_policies[disk["Id"]]  # not named: untouched
    assert "tok-wire" not in out

    assert "nothing else changed" in out
    (backup,) = (Path(os.environ["DEPLOY_BACKUP_DIR"])).glob("*.json")
    assert f"saved the 3 rules it will write, whole, to {backup}" in out
    assert (backup.stat().st_mode & 0o777) == 0o600  # a rule is someone else's configuration

    wired.calls.clear()
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="fd-key")  # a second run, from a shell without the token
    assert code == 0, out
    # The token cannot be read back: every run sets it (and only it).
    assert [a for a in wired.deploy_actions() if a in WIRING_WRITES] == ["UpdateWebhook"], wired.deploy_actions()
    assert webhook["Token"] == "tok-wire"
    assert "route 'volc-flashduty-relay': unchanged" in out and "already calls the relay" in out


def test_a_changed_token_reaches_the_callback_url(run, wired) -> None:
    args = ("--gateway", "prod-gateway", "--alarm-policies", "all")
    run(*args, FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-old")
    wired.calls.clear()
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-new")
    assert code == 0, out
    (webhook,) = wired.webhooks.values()
    assert webhook["Token"] == "tok-new" and "token set" in out
    assert [a for a in wired.deploy_actions() if a in WIRING_WRITES] == ["UpdateWebhook"]


def test_a_rule_that_does_not_exist_ticks_nothing(run, wired) -> None:
    args = ("--gateway", "prod-gateway", "--event-rules", "disk-redeploy,no-such-rule")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 1 and "no event rule has the id or name no-such-rule" in out
    assert "UpdateEventRule" not in wired.deploy_actions()


def test_a_gateway_that_does_not_exist_is_named(run, wired) -> None:
    code, out = run("--gateway", "staging-gateway", FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 1 and "API gateway 'staging-gateway' is not in this region" in out


def test_cloud_monitor_without_a_url_asks_for_a_gateway(run, wired) -> None:
    code, out = run("--alarm-policies", "all", FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 1 and "pass --gateway NAME" in out
    assert not {"CreateWebhook", "UpdateRule"} & set(wired.deploy_actions())


@pytest.mark.parametrize(
    ("action", "step"),
    [
        ("CreateRoute", "create route"),
        ("CreateWebhook", "create callback URL"),
        ("UpdateRule", "update alarm policy 'cpu-high'"),
    ],
)
def test_a_wiring_step_refused_says_which(run, wired, action: str, step: str) -> None:
    wired.deny.add(action)
    args = ("--gateway", "prod-gateway", "--alarm-policies", "cpu-high")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-wire")
    assert code == 1 and step in out and "Volcengine refused it (AccessDenied)" in out
    assert "tok-wire" not in out


def test_dry_run_prints_the_wiring_and_calls_nothing(run, wired) -> None:
    args = ("--dry-run", "--gateway", "prod-gateway", "--event-rules", "all", "--alarm-policies", "cpu-high,ar9")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 0 and wired.calls == []
    assert "on API gateway 'prod-gateway'" in out and "Generic Webhook" in out
    assert "tick it in the event rules all" in out and "alarm policies cpu-high, ar9" in out


def test_reconcile_gets_its_own_key_and_a_timer_every_5_minutes(run, openapi, stub, client) -> None:
    rule = openapi.add_alarm_policy("cpu-high")
    openapi.webhooks["1"] = {
        "Id": "1",
        "Name": "volc-flashduty-relay",
        "Url": "https://relay/",
        "RuleIds": [rule["Id"]],
    }
    reconcile_key = {
        "RECONCILE_ACCESS_KEY": READER_KEY,
        "RECONCILE_SECRET_KEY": SECRET_KEY,
        "FLASHDUTY_APP_KEY": APP_KEY,
    }
    code, out = run(
        FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok-r", FLASHDUTY_API_URL=stub.origin, **reconcile_key
    )
    assert code == 0, out
    function_env = envs(openapi)
    assert function_env["VOLCENGINE_ACCESS_KEY"] == READER_KEY and ACCESS_KEY not in function_env.values()
    assert function_env["FLASHDUTY_APP_KEY"] == APP_KEY and APP_KEY not in out
    assert function_env["RECONCILE_WEBHOOK"] == "volc-flashduty-relay"
    timers = {t["Name"]: t for t in openapi.function("volc-flashduty-relay").triggers}
    assert timers["relay-reconcile"]["Crontab"] == "*/5 * * * *" and "relay-drain" not in timers  # no store
    assert SECRET_KEY not in out

    # The function's request timeout is what the timer says it has: reconcile's whole budget, not
    # veFaaS's default 30 s (25 s of work: 5,000 alarms on took longer to read).
    timer = timers["relay-reconcile"]
    seconds = json.loads(timer["Payload"])["seconds"]
    assert openapi.function("volc-flashduty-relay").fields["RequestTimeout"] == seconds
    assert reconcile.timer_seconds(seconds) == reconcile.TIMER_SECONDS

    # What the timer posts runs reconcile in the relay (here against the stand-ins).
    event = {"id": "2", "source": f"/faas/event/timer/{timer['Id']}", "specversion": "1.0"}
    event.update(type="faas.timer.event", datacontenttype="application/octet-stream", data=timer["Payload"])
    app = client(
        FLASHDUTY_PUSH_URL=stub.url,
        VOLCENGINE_OPENAPI_ENDPOINT=openapi.origin,
        **{k: v for k, v in function_env.items() if k.startswith(("VOLCENGINE", "RECONCILE", "FLASHDUTY", "TIMER"))},
    )
    answer = app.post("/", json=event)
    assert answer.status_code == 200 and answer.get_json()["exit_code"] == 0, answer.get_json()
    assert "ListAlertGroup" in openapi.deploy_actions() and stub.list_calls


def test_reconcile_never_gets_the_deploying_key(run, openapi, store) -> None:
    code, out = run(
        FLASHDUTY_INTEGRATION_KEY="fd-key", RECONCILE_ACCESS_KEY=ACCESS_KEY, RECONCILE_SECRET_KEY="s", **store
    )
    assert code == 2 and "RECONCILE_ACCESS_KEY is the deploying key" in out and openapi.calls == []
    code, out = run(FLASHDUTY_INTEGRATION_KEY="fd-key", RECONCILE_ACCESS_KEY="AKLTreader", RECONCILE_SECRET_KEY="s")
    assert code == 1 and "FLASHDUTY_APP_KEY is not" in out and "Channels Read" in out


def test_a_route_changed_by_hand_and_a_new_function_are_put_right(run, wired) -> None:
    run("--gateway", "prod-gateway", FLASHDUTY_INTEGRATION_KEY="fd-key")
    (route,) = wired.routes.values()
    route["Enable"] = False  # someone turned it off in the console
    function = wired.function("volc-flashduty-relay")
    del wired.functions[function.id]  # and the function was deleted: the deploy makes a new one
    wired.calls.clear()
    code, out = run("--gateway", "prod-gateway", FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 0, out
    new_id = wired.function("volc-flashduty-relay").id
    (upstream,) = next(iter(wired.gateways.values()))["Upstreams"].values()
    assert upstream["UpstreamSpec"]["VeFaas"]["FunctionId"] == new_id != function.id
    assert route["Enable"] is True and len(wired.routes) == 1
    assert [a for a in wired.deploy_actions() if a in WIRING_WRITES] == ["UpdateUpstream", "UpdateRoute"]
    assert wired.violations == []


# Nothing it does not own changes; a way back; no door left open ------------------------------------


def test_a_change_made_between_the_deploys_read_and_its_write_is_kept(run, wired) -> None:
    policy = next(iter(wired.alarm_policies.values()))

    def operator_lowers_the_threshold() -> None:
        policy["Conditions"][0]["Threshold"] = "70"

    wired.after["ListRules"] = operator_lowers_the_threshold  # just after the deploy's first read
    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "cpu-high", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0, out
    assert policy["Conditions"][0]["Threshold"] == "70" and len(policy["WebhookIds"]) == 1


def test_every_rule_that_would_lose_something_is_named_before_anything_is_written(run, wired) -> None:
    wired.add_alarm_policy("old-style", WebHook="https://hooks.example/alert", AlertMethods=["Webhook"])
    wired.add_alarm_policy("full", WebhookIds=[str(n) for n in range(8)], AlertMethods=["Webhook"])
    conditions = [{"MetricName": "CpuTotal", "Threshold": "90", "EvaluationWindow": 300}]
    wired.add_alarm_policy("windowed", Conditions=conditions)
    before = json.dumps(wired.alarm_policies, sort_keys=True)
    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "all", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 1 and "nothing was changed" in out
    assert "alarm policy 'old-style'" in out and "old-style webhook URL" in out
    assert "alarm policy 'full'" in out and "8 callback URLs" in out
    assert "alarm policy 'windowed'" in out and "Conditions[].EvaluationWindow" in out
    assert "'cpu-high'" not in out.split("nothing was changed")[1]  # a rule that can take it is not named
    assert json.dumps(wired.alarm_policies, sort_keys=True) == before
    assert not {"CreateFunction", "CreateRoute", "CreateWebhook", "UpdateRule"} & set(wired.deploy_actions())


def test_a_write_that_changes_more_than_the_tick_is_put_back_and_named(run, wired, monkeypatch) -> None:
    # A service that drops a field the SDK says UpdateRule takes: only reading back can tell.
    monkeypatch.setitem(NOT_UPDATED["UpdateRule"], "NotifyTemplates", ("Channel",))
    policy = next(iter(wired.alarm_policies.values()))
    before = json.loads(json.dumps(policy))
    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "cpu-high", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 1 and f"alarm policy 'cpu-high' ({policy['Id']}): writing the tick changed NotifyTemplates" in out
    assert "put back as it was, without the relay" not in out  # the same write loses it again: said so
    assert "restore it from the saved copy" in out
    assert policy["WebhookIds"] == [] and policy["AlertMethods"] == before["AlertMethods"]


def test_unwire_and_restore_are_the_way_back(run, wired) -> None:
    before_rules = json.loads(json.dumps(wired.event_rules))
    before_policies = json.loads(json.dumps(wired.alarm_policies))
    args = ("--gateway", "prod-gateway", "--event-rules", "all", "--alarm-policies", "all")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0, out
    saved = re.search(r"restore (\S+);", out)[1]
    (webhook,) = wired.webhooks.values()
    assert all(webhook["Id"] in r["WebhookIds"] for r in [*wired.event_rules.values(), *wired.alarm_policies.values()])

    code, out = run("unwire")
    assert code == 0, out
    assert "4 rules no longer call callback URL 'volc-flashduty-relay'" in out
    assert wired.event_rules == before_rules and wired.alarm_policies == before_policies  # as they were

    run(*args, FLASHDUTY_INTEGRATION_KEY="k")
    code, out = run("restore", saved)
    assert code == 0, out
    assert wired.event_rules == before_rules and wired.alarm_policies == before_policies
    code, out = run("restore", saved)  # again: nothing to write
    assert code == 0 and "UpdateRule" not in wired.deploy_actions()[-6:]


def test_a_public_route_without_a_token_gets_a_strong_one_shown_once(run, wired, client) -> None:
    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "cpu-high", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0, out
    token = envs(wired)["CALLBACK_TOKEN"]
    assert len(token) >= 40 and out.count(token) == 1 and "shown only this once" in out
    (webhook,) = wired.webhooks.values()
    assert webhook["Token"] == token
    code, out = run("--gateway", "prod-gateway", FLASHDUTY_INTEGRATION_KEY="k")
    assert envs(wired)["CALLBACK_TOKEN"] == token and token not in out  # kept, never shown again
    forged = client(FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN=token).post(
        "/", data=(ROOT / "samples/metric.json").read_bytes()
    )
    assert forged.status_code == 401


@pytest.mark.parametrize(
    "action",
    [
        "UpdateFunction",
        "GetCodeUploadAddress",
        "CreateDependencyInstallTask",
        "Release",
        "CreateTimer",
        "UpdateUpstream",
        "UpdateRoute",
        "UpdateWebhook",
        "UpdateRule",
        "TagResources",
        "UpdateEventRule",
    ],
)
def test_a_deploy_interrupted_at_any_write_converges_when_run_again(run, wired, store, action) -> None:
    args = ("--gateway", "prod-gateway", "--event-rules", "all", "--alarm-policies", "cpu-high")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok-1")
    assert code == 0, out
    (route,) = wired.routes.values()
    route["Enable"] = False  # so that the next run writes the route too
    upstream = next(iter(next(iter(wired.gateways.values()))["Upstreams"].values()))
    upstream["UpstreamSpec"]["VeFaas"]["FunctionId"] = "fn-elsewhere"  # and the upstream
    policy = next(iter(wired.alarm_policies.values()))
    policy["WebhookIds"], policy["AlertMethods"] = [], ["Email"]  # someone unticked it
    event_rule = next(iter(wired.event_rules.values()))
    event_rule["WebhookIds"], event_rule["ContactMethods"] = [], ["Phone"]
    wanted_policy = {k: v for k, v in policy.items() if k not in ("WebhookIds", "AlertMethods", "UpdatedAt")}
    function = wired.function("volc-flashduty-relay")
    function.fields["Description"], function.code = "relay 0.2.0 (package older)", b"older code"
    wired.release(function)  # an older version runs: the next run uploads new code too

    wired.deny.add(action)  # a rotation (and a store, for a timer) refused at this write, once
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok-2", **store)
    assert code == 1 and "refused it (AccessDenied)" in out, out
    wired.deny.clear()
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k", **store)  # run again, from a shell without the token
    assert code == 0, out

    (webhook,) = wired.webhooks.values()
    assert webhook["Token"] == envs(wired)["CALLBACK_TOKEN"]  # tok-2, or tok-1 where the rotation was refused
    # What serves traffic, not only the function's draft: its token, its code (an update or an upload
    # takes effect only once released).
    assert function.live is not None and function.live["Envs"] == function.fields["Envs"]
    assert function.released == function.code == package.zipped()
    assert webhook["Id"] in policy["WebhookIds"] and webhook["Id"] in event_rule["WebhookIds"]
    assert route["Enable"] is True
    assert {k: v for k, v in policy.items() if k not in ("WebhookIds", "AlertMethods", "UpdatedAt")} == wanted_policy


def test_a_rule_changed_after_the_check_is_checked_again_and_saved_as_it_is_then(run, wired) -> None:
    _, policy = wired.alarm_policies.values()

    def operator_adds_a_window() -> None:  # while the function is being deployed
        policy["Conditions"][0]["EvaluationWindow"] = 300

    wired.after["ListRules"] = operator_adds_a_window  # just after the check of every rule
    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "all", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 1 and "no rule was written" in out
    assert f"alarm policy 'disk-full' ({policy['Id']})" in out and "EvaluationWindow" in out
    assert wired.lost == [] and "UpdateRule" not in wired.deploy_actions()  # not even the other, unchanged one
    assert policy["Conditions"][0]["EvaluationWindow"] == 300

    del policy["Conditions"][0]["EvaluationWindow"]
    wired.after["ListRulesByIds"] = operator_adds_a_window  # after the second check, before the write
    args = ("--gateway", "prod-gateway", "--alarm-policies", "disk-full")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 1 and "nothing was written to it" in out and "EvaluationWindow" in out
    assert wired.lost == [] and "UpdateRule" not in wired.deploy_actions()

    def operator_lowers_the_threshold() -> None:
        policy["Conditions"][0]["Threshold"] = "70"

    del policy["Conditions"][0]["EvaluationWindow"]
    wired.after["ListRules"] = operator_lowers_the_threshold
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0, out
    saved = json.loads(Path(re.search(r"restore (\S+);", out)[1]).read_text())
    (entry,) = saved["rules"]
    assert entry["rule"]["Conditions"][0]["Threshold"] == "70"  # the way back keeps the operator's change


def test_restore_never_overwrites_a_change_made_since_the_save_unless_told(run, wired) -> None:
    args = ("--gateway", "prod-gateway", "--alarm-policies", "all")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0, out
    saved = re.search(r"restore (\S+);", out)[1]
    cpu, disk = wired.alarm_policies.values()
    disk["Conditions"][0]["Threshold"] = "70"  # an operator's change, after the deploy
    wired.calls.clear()
    code, out = run("restore", saved)
    assert code == 1 and f"alarm policy 'disk-full' ({disk['Id']}): changed since it was saved (Conditions)" in out
    assert "--force" in out and "'cpu-high'" not in out  # only the relay's tick differs in that one
    assert not {"UpdateRule", "TagResources"} & set(wired.deploy_actions())  # nothing half-done
    assert disk["Conditions"][0]["Threshold"] == "70" and cpu["WebhookIds"]

    code, out = run("restore", saved, "--force")
    assert code == 0, out
    assert disk["Conditions"][0]["Threshold"] == "90" and cpu["WebhookIds"] == disk["WebhookIds"] == []


def test_tags_a_stopped_run_took_come_back_in_a_run_that_starts_with_no_files(run, wired, tmp_path) -> None:
    """As in CI: each run starts with an empty folder, takes the newest artifact (deploy.yml's step,
    with gh standing in), deploys, and keeps its folder as the next artifact."""
    steps = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())["jobs"]["vefaas"]["steps"]
    (bring,) = [s for s in steps if "gh run download" in s.get("run", "")]
    backups = Path(os.environ.get("DEPLOY_BACKUP_DIR") or tmp_path / "backups")
    github = GitHubStub(tmp_path / "github")

    def ci_run(number: int, *args: str) -> tuple[int, str]:
        env = {**os.environ, **bring["env"], **github.env(), "DEPLOY_BACKUP_DIR": str(backups)}
        subprocess.run(["bash", "-eo", "pipefail", "-c", bring["run"]], env=env, check=True)
        result = run("--gateway", "prod-gateway", *args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok")
        if backups.exists():  # upload-artifact, if: always()
            github.upload(number, bring["env"]["ARTIFACT"], backups, f"2026-01-0{number}T00:00:00Z")
            shutil.rmtree(backups)
        return result

    cpu, disk = wired.alarm_policies.values()
    assert ci_run(1, "--alarm-policies", "disk-full")[0] == 0  # an earlier deploy kept its file
    wired.deny.add("TagResources")  # refused once, after the UpdateRule that dropped the tags
    code, out = ci_run(2, "--alarm-policies", "cpu-high")
    assert code == 1 and not cpu.get("Tags"), out  # UpdateRule dropped them
    wired.deny.clear()
    cpu["Tags"] = [{"Key": "owner", "Value": "ana"}]  # meanwhile an operator tags it,
    cpu["NotifyTemplates"] = []  # and drops its templates

    code, out = ci_run(3, "--alarm-policies", "cpu-high")
    assert code == 0, out
    assert sorted(cpu["Tags"], key=str) == [{"Key": "owner", "Value": "ana"}, {"Key": "team", "Value": "sre"}]
    assert cpu["NotifyTemplates"] == [] and "put back its tags team" in out  # exactly what was lost
    assert disk["Tags"] == [{"Key": "team", "Value": "sre"}]
    wired.calls.clear()
    assert ci_run(4, "--alarm-policies", "cpu-high")[0] == 0  # the note is cleared: nothing to put back
    assert "TagResources" not in wired.deploy_actions()


def test_a_file_the_deploy_did_not_write_is_never_acted_on(run, wired, tmp_path) -> None:
    """A saved file is signed with a key from the deploying secret key: one planted in the folder (an
    artifact from elsewhere), or altered, makes the deploy tag nothing; it is set aside and named."""
    backups = tmp_path / "backups"  # the run fixture's
    cpu, disk = wired.alarm_policies.values()
    wired.deny.add("TagResources")  # a run stops between UpdateRule and TagResources: its note is real
    assert run("--gateway", "prod-gateway", "--alarm-policies", "cpu-high", FLASHDUTY_INTEGRATION_KEY="k")[0] == 1
    wired.deny.clear()
    (real,) = backups.glob("*-rules-*.json")
    altered = json.loads(real.read_text())
    altered["tags_in_flight"][cpu["Id"]]["Tags"].append({"Key": "owner", "Value": "stranger"})
    real.write_text(json.dumps(altered))  # its note altered: no longer what the deploy signed
    planted = dict(altered, rules=[{"kind": "alarm policy", "rule": disk}], signature="0" * 64)
    planted["tags_in_flight"] = {disk["Id"]: {"RuleName": disk["RuleName"], "Tags": [{"Key": "owner", "Value": "x"}]}}
    (backups / real.name.replace("-rules-", "-rules-2099")).write_text(json.dumps(planted))
    disk["Tags"] = []
    wired.calls.clear()

    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "cpu-high", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0 and out.count("not a file this deploy wrote") == 2, out
    assert disk["Tags"] == [] and {"Key": "owner", "Value": "stranger"} not in (cpu.get("Tags") or []), out
    assert [p.name.endswith(".refused") for p in backups.glob("*-rules-*")] == [True, True]  # never read again
    assert "python -m deploy restore" in out  # the way back, for a person who knows the file is theirs


def test_the_pipeline_brings_only_its_own_runs_artifact(tmp_path) -> None:
    """deploy.yml's step takes the newest artifact of its own runs (this workflow, a push or a
    dispatch, this repository): never a newer one a pull request's run uploaded under the same name,
    a fork's least of all (it runs the fork's own workflow)."""
    steps = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())["jobs"]["vefaas"]["steps"]
    (bring,) = [s for s in steps if "gh run download" in s.get("run", "")]
    github = GitHubStub(tmp_path / "github")
    dispatched = {"event": "workflow_dispatch", "head_branch": "main"}
    others = [
        (3, "fork", {"fork": True}),
        (4, "pr", {"event": "pull_request", "head_branch": "feature"}),
        (5, "branch", {"event": "workflow_dispatch", "head_branch": "feature"}),  # a branch's own deploy.yml
        (6, "branch-push", {"event": "push", "head_branch": "feature"}),
    ]
    for number, owner, kind in [(1, "tag", {}), (2, "ours", dispatched), *others]:
        folder = tmp_path / owner
        folder.mkdir()
        (folder / "saved.json").write_text(json.dumps({"from": owner}))
        path = ".github/workflows/ci.yml" if owner == "pr" else ".github/workflows/deploy.yml"
        github.upload(number, bring["env"]["ARTIFACT"], folder, f"2026-01-0{number}T00:00:00Z", path=path, **kind)
    backups = tmp_path / "backups"
    env = {**os.environ, **bring["env"], **github.env(), "DEPLOY_BACKUP_DIR": str(backups), "DEFAULT_BRANCH": "main"}
    subprocess.run(["bash", "-eo", "pipefail", "-c", bring["run"]], env=env, check=True)
    assert json.loads((backups / "saved.json").read_text()) == {"from": "ours"}


def test_no_credential_is_saved_and_restore_keeps_the_rules_own(run, wired) -> None:
    before = json.loads(json.dumps(wired.event_rules))
    code, out = run("--gateway", "prod-gateway", "--event-rules", "all", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0, out
    path = Path(re.search(r"restore (\S+);", out)[1])
    text = path.read_text()
    for credential in ("kafka-secret", '"relay"', "SCRAM-SHA-256"):
        assert credential not in text, credential
    assert json.loads(text)["rules"][0]["rule"]["MessageQueue"][0]["Password"].startswith("(withheld")
    rule = next(iter(wired.event_rules.values()))
    rule["MessageQueue"][0]["Password"] = "rotated-since"  # the queue's owner rotates its password

    code, out = run("restore", str(path))
    assert code == 0, out
    assert rule["MessageQueue"][0]["Password"] == "rotated-since"  # kept as the cloud has it, never blanked
    before[rule["RuleId"]]["MessageQueue"][0]["Password"] = "rotated-since"
    assert wired.event_rules == before and "withheld" not in json.dumps(wired.event_rules)

    rule["MessageQueue"][0]["Topic"] = "moved"  # a queue the saved copy cannot be matched to
    wired.calls.clear()
    code, out = run("restore", str(path), "--force")
    assert code == 1 and "message queue (topic 'alerts'" in out and "nothing was restored" in out
    assert "UpdateEventRule" not in wired.deploy_actions()


def test_a_token_of_blanks_is_no_token_and_the_deploy_makes_a_real_one(run, wired, client) -> None:
    code, out = run(
        "--gateway", "prod-gateway", "--alarm-policies", "cpu-high", FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN=" \n"
    )
    assert code == 0, out
    token = envs(wired)["CALLBACK_TOKEN"]
    assert token.strip() == token and len(token) >= 40 and "shown only this once" in out
    (webhook,) = wired.webhooks.values()
    assert webhook["Token"] == token
    forged = client(FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN=token).post(
        "/", data=(ROOT / "samples/metric.json").read_bytes()
    )
    assert forged.status_code == 401


def test_a_blank_setting_on_the_function_is_unset(run, openapi) -> None:
    assert run(FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="\t ")[0] == 0
    assert "CALLBACK_TOKEN" not in envs(openapi)  # blank in the shell: not set on the function
    openapi.function("volc-flashduty-relay").fields["Envs"].append({"Key": "CALLBACK_TOKEN", "Value": " \n"})
    openapi.add_gateway("prod-gateway")
    code, out = run("--gateway", "prod-gateway", FLASHDUTY_INTEGRATION_KEY="fd-key")
    assert code == 0, out
    assert envs(openapi)["CALLBACK_TOKEN"].strip() and "shown only this once" in out


# Every write happens once: an answer lost after the write is read for, never sent blind again -------


@pytest.mark.parametrize(
    "action",
    ["CreateFunction", "CreateUpstream", "CreateGatewayService", "CreateRoute", "CreateWebhook", "CreateTimer"],
)
def test_a_create_whose_answer_is_lost_is_found_and_adopted_never_made_twice(run, wired, store, action) -> None:
    wired.lose_answers[action] = 1  # done, and the connection drops before the answer
    args = ("--gateway", "prod-gateway", "--event-rules", "all", "--alarm-policies", "all")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok", **store)
    assert code == 0, out
    assert wired.deploy_actions().count(action) == 1 and "the answer was lost" in out
    (gateway,) = wired.gateways.values()
    assert len(wired.functions) == len(gateway["Upstreams"]) == len(gateway["Services"]) == len(wired.routes) == 1
    (webhook,) = wired.webhooks.values()
    assert len(wired.function("volc-flashduty-relay").triggers) == 1
    rules = [*wired.event_rules.values(), *wired.alarm_policies.values()]
    assert all(rule["WebhookIds"].count(webhook["Id"]) == 1 for rule in rules) and wired.violations == []


@pytest.mark.parametrize("action", ["UpdateFunction", "UpdateWebhook", "UpdateRule", "TagResources", "Release"])
def test_an_update_whose_answer_is_lost_is_not_sent_again_blind_and_the_next_run_finishes(run, wired, action) -> None:
    args = ("--gateway", "prod-gateway", "--alarm-policies", "cpu-high")
    assert run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok-1")[0] == 0
    policy = next(iter(wired.alarm_policies.values()))
    policy["WebhookIds"], policy["AlertMethods"] = [], ["Email"]  # unticked, so the next run writes it
    wired.calls.clear()
    wired.lose_answers[action] = 1
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok-2", MIN_SEVERITY="Warning")
    assert code == 1 and "whether it took effect is unknown" in out and "run the deploy again" in out, out
    assert wired.deploy_actions().count(action) == 1  # never twice blind
    assert run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok-2", MIN_SEVERITY="Warning")[0] == 0
    (webhook,) = wired.webhooks.values()
    assert webhook["Token"] == envs(wired)["CALLBACK_TOKEN"] == "tok-2"
    assert policy["WebhookIds"] == [webhook["Id"]] and policy["Tags"] == [{"Key": "team", "Value": "sre"}]


def test_duplicate_callback_urls_the_deploy_made_are_merged_and_unwire_takes_out_every_one(run, wired) -> None:
    args = ("--gateway", "prod-gateway", "--event-rules", "all", "--alarm-policies", "all")
    assert run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok")[0] == 0
    (first,) = wired.webhooks.values()
    # What an SDK's blind retry of CreateWebhook left: a second callback URL of the same name and URL,
    # ticked in one policy by a deploy that found it first.
    second = {**first, "Id": "9" * 19, "RuleIds": [], "EventRuleIds": []}
    wired.webhooks[second["Id"]] = second
    cpu, disk = wired.alarm_policies.values()
    disk["WebhookIds"] = [second["Id"]]
    second["RuleIds"] = [disk["Id"]]
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok")
    assert code == 0, out
    assert list(wired.webhooks) == [first["Id"]] and "duplicate" in out
    assert cpu["WebhookIds"] == disk["WebhookIds"] == [first["Id"]]  # every alarm delivered once

    wired.webhooks[second["Id"]] = {**second, "RuleIds": [disk["Id"]]}
    disk["WebhookIds"] = [first["Id"], second["Id"]]
    code, out = run("unwire")
    assert code == 0 and "4 rules no longer call" in out, out
    rules = [*wired.event_rules.values(), *wired.alarm_policies.values()]
    assert not any({first["Id"], second["Id"]} & set(rule["WebhookIds"]) for rule in rules)


# Every route wired to its own URL -------------------------------------------------------------------

ROUTES = json.dumps({"team-a": "key-a", "team-b": "key-b"})


def test_rules_wired_to_a_route_that_cannot_deliver_are_refused_before_anything_is_written(run, wired) -> None:
    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "cpu-high", ROUTES=ROUTES, CALLBACK_TOKEN="t")
    assert code == 1 and "default route ('/')" in out and "team-a=cpu-high" in out, out
    code, out = run("--gateway", "prod-gateway", "--alarm-policies", "team-c=cpu-high", ROUTES=ROUTES)
    assert code == 1 and "ROUTES has no 'team-c'" in out, out
    assert not {"CreateFunction", "CreateRoute", "CreateWebhook", "UpdateRule"} & set(wired.deploy_actions())


def test_each_route_gets_its_own_callback_url_and_the_rules_named_for_it(run, wired, stub, client) -> None:
    args = ("--gateway", "prod-gateway", "--alarm-policies", "team-a=cpu-high", "--event-rules", "team-a=all")
    code, out = run(*args, ROUTES=ROUTES, CALLBACK_TOKEN="tok", DEPLOY_ALARM_POLICIES="x=ignored-for-the-option")
    assert code == 0, out
    code, out = run("--gateway", "prod-gateway", ROUTES=ROUTES, DEPLOY_ALARM_POLICIES="team-b=disk-full")
    assert code == 0, out
    named = {w["Name"]: w for w in wired.webhooks.values()}
    assert sorted(named) == ["volc-flashduty-relay.team-a", "volc-flashduty-relay.team-b"]
    team_a, team_b = named["volc-flashduty-relay.team-a"], named["volc-flashduty-relay.team-b"]
    assert team_a["Url"].endswith("/team-a") and team_b["Url"].endswith("/team-b")
    cpu, disk = wired.alarm_policies.values()
    assert cpu["WebhookIds"] == [team_a["Id"]] and disk["WebhookIds"] == [team_b["Id"]]
    assert all(team_a["Id"] in rule["WebhookIds"] for rule in wired.event_rules.values())
    assert "--route team-b" in out
    # What Cloud Monitor posts to each URL reaches that route's integration, not a 404.
    app = client(ROUTES=ROUTES, CALLBACK_TOKEN="tok", FLASHDUTY_PUSH_URL=stub.url)
    for webhook, key in ((team_a, "key-a"), (team_b, "key-b")):
        path = "/" + webhook["Url"].split("/", 3)[3]
        answer = app.post(path, data=(ROOT / "samples/metric.json").read_bytes(), headers={"Token": "tok"})
        assert answer.status_code == 200 and answer.get_json()["failed"] == 0, answer.get_json()
        assert key in {r.integration_key for r in stub.accepted()}

    code, out = run("unwire")
    assert code == 0 and "4 rules no longer call" in out, out  # every route's callback URL


def test_the_wiring_test_tests_every_route(stub) -> None:
    env = {"ROUTES": ROUTES, "FLASHDUTY_PUSH_URL": stub.url, "CALLBACK_TOKEN": "tok-w"}
    with production_server(env) as (url, _, _):
        out = io.StringIO()
        args = ["test", "--url", url, "--token", "tok-w", "--route", "team-a", "--route", "team-b"]
        assert cli.main(args, out=out) == 0, out.getvalue()
        assert "every route works" in out.getvalue()
        assert cli.main([*args, "--route", "default"], out=out) == 1  # no default key: said, not passed
    assert "routes failing: default" in out.getvalue()
    assert {r.integration_key for r in stub.accepted()} == {"key-a", "key-b"}


# What is not ours stays as it is ------------------------------------------------------------------

BOT_HOOK = "https://open.feishu.cn/open-apis/bot/v2/hook/bot-secret-0123"


def test_an_event_rules_old_style_endpoint_is_refused_and_never_saved(run, wired, tmp_path) -> None:
    wired.add_event_rule("bot-alerts", Endpoint=BOT_HOOK, ContactMethods=["Webhook"])
    before = json.dumps(wired.event_rules, sort_keys=True)
    code, out = run("--gateway", "prod-gateway", "--event-rules", "all", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 1 and "event rule 'bot-alerts'" in out and "old-style webhook URL" in out, out
    assert json.dumps(wired.event_rules, sort_keys=True) == before
    # One that an older deploy ticked anyway (both were sent): unwire saves it, without the URL.
    (rule,) = [r for r in wired.event_rules.values() if r["RuleName"] == "bot-alerts"]
    assert run("--gateway", "prod-gateway", "--event-rules", "disk-redeploy", FLASHDUTY_INTEGRATION_KEY="k")[0] == 0
    (webhook,) = wired.webhooks.values()
    rule["WebhookIds"] = [webhook["Id"]]
    code, out = run("unwire")
    assert code == 0 and "2 rules no longer call" in out, out
    files = [path.read_text() for path in Path(os.environ["DEPLOY_BACKUP_DIR"]).glob("*.json")]
    assert len(files) == 2 and not any("bot-secret" in text for text in files)
    assert rule["Endpoint"] == BOT_HOOK  # the rule keeps its own


def test_a_callback_url_made_by_hand_is_never_repointed_unasked(run, wired) -> None:
    wired.webhooks["42"] = {
        "Id": "42",
        "Name": "volc-flashduty-relay",  # as docs/setup.md told, to a route's path
        "Type": "custom",
        "Url": "https://relay.example/team-a",
        "RuleIds": [],
        "EventRuleIds": [],
    }
    args = ("--gateway", "prod-gateway", "--alarm-policies", "cpu-high")
    code, out = run(*args, FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok")
    assert code == 1 and "--repoint-callback-url" in out and "no rule was written" in out, out
    assert wired.webhooks["42"]["Url"] == "https://relay.example/team-a" and len(wired.webhooks) == 1
    assert "UpdateRule" not in wired.deploy_actions()
    code, out = run(*args, "--repoint-callback-url", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0, out
    assert wired.webhooks["42"]["Url"].endswith(".volceapi.com/")


def test_restore_keeps_tags_the_owner_removed_since_and_finishes_a_stopped_restore(run, wired) -> None:
    assert run("--gateway", "prod-gateway", "--alarm-policies", "all", FLASHDUTY_INTEGRATION_KEY="k")[0] == 0
    saved = sorted(Path(os.environ["DEPLOY_BACKUP_DIR"]).glob("*.json"))[-1]
    cpu, disk = wired.alarm_policies.values()
    cpu["Tags"] = []  # the owner removes the tags after the save
    code, out = run("restore", str(saved))
    assert code == 1 and f"alarm policy 'cpu-high' ({cpu['Id']}): changed since it was saved (Tags)" in out, out
    assert cpu["Tags"] == [] and cpu["WebhookIds"]  # nothing restored

    cpu["Tags"] = [{"Key": "team", "Value": "sre"}]
    wired.deny.add("TagResources")  # a restore stopped between UpdateRule and TagResources
    code, out = run("restore", str(saved))
    assert code == 1 and "refused it (AccessDenied)" in out
    assert not cpu.get("Tags")
    wired.deny.clear()
    code, out = run("restore", str(saved))
    assert code == 0, out
    assert cpu["Tags"] == disk["Tags"] == [{"Key": "team", "Value": "sre"}]
    assert cpu["WebhookIds"] == disk["WebhookIds"] == []


def test_a_policy_holding_the_relays_id_without_the_method_gets_it_once(run, wired) -> None:
    args = ("--gateway", "prod-gateway", "--alarm-policies", "cpu-high")
    assert run(*args, FLASHDUTY_INTEGRATION_KEY="k")[0] == 0
    cpu = next(iter(wired.alarm_policies.values()))
    cpu["AlertMethods"] = ["Email"]  # someone turned the callback method off, the id stays
    assert run(*args, FLASHDUTY_INTEGRATION_KEY="k")[0] == 0
    (webhook,) = wired.webhooks.values()
    assert cpu["WebhookIds"] == [webhook["Id"]] and cpu["AlertMethods"] == ["Email", "Webhook"]


# One deploy at a time -----------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("volc-flashduty-relay",) * 2, ("relay-staging", "relay-production")])
def test_two_deploys_at_once_take_turns_and_make_one_callback_url(run, wired, names) -> None:
    """CI and a person deploying at once: the second waits for the first's lease, then finds its work.
    Two relays (staging, production) ticking the same policies take turns too: no tag is lost."""
    assert run("--version", FLASHDUTY_INTEGRATION_KEY="k", CALLBACK_TOKEN="tok")[0] == 0  # the shell both share
    contended, listed = threading.Event(), []

    def observe(action: str, body: dict, status: int) -> None:
        names = [body.get("Name"), *(v for f in body.get("Filters") or [] for v in f.get("Values") or [])]
        if listed and any(str(name).endswith("-deploy-lease") for name in names):
            contended.set()  # the second, while the first works, asks for the lease
        if action == "ListWebhooks":
            listed.append(action)
            if len(listed) == 1:
                assert contended.wait(30)  # the first holds here until the second is in its way
            else:
                contended.set()  # the second got this far too: nothing kept it out

    wired.observe = observe
    args = ["--gateway", "prod-gateway", "--alarm-policies", "all", "--lease-wait", "60"]
    codes: list[int] = []

    def deploy(name: str) -> None:
        try:
            codes.append(cli.main([*args, "--name", name], out=io.StringIO()))
        except SystemExit as exit_:
            codes.append(int(exit_.code or 0))

    threads = [threading.Thread(target=deploy, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert codes == [0, 0]
    webhooks = sorted(w["Id"] for w in wired.webhooks.values())
    assert len(webhooks) == len(set(names))  # one callback URL a relay
    assert all(sorted(policy["WebhookIds"]) == webhooks for policy in wired.alarm_policies.values())
    assert all(policy["Tags"] == [{"Key": "team", "Value": "sre"}] for policy in wired.alarm_policies.values())
    actions = wired.actions()
    released = actions.index("DeleteFunction")  # the first's lease, given back: only then the second works
    assert actions[:released].count("ListWebhooks") == actions[released:].count("ListWebhooks") == len(listed) / 2
    assert not wired.lease_ids & set(wired.functions)  # no lease left behind


def test_a_deploy_refuses_while_another_holds_the_lease_and_a_stale_lease_expires(run, wired) -> None:
    wired.functions["fn-lease"] = Function(
        "fn-lease",
        "volc-flashduty-relay-deploy-lease",
        package.DEFAULT_RUNTIME,
        {"Description": f"volc-flashduty-relay deploy lease, held by ci-runner:7:ab until {time.time() + 600:.0f}"},
    )
    wired.lease_ids.add("fn-lease")
    code, out = run("--lease-wait", "0", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 1 and "another deploy is running (lease held by ci-runner:7:ab" in out, out
    assert wired.deploy_actions() == [] and "fn-lease" in wired.functions
    held_by = "volc-flashduty-relay deploy lease, held by ci-runner:7:ab until"
    wired.functions["fn-lease"].fields["Description"] = f"{held_by} {time.time() - 1:.0f}"  # its deploy died
    code, out = run("--lease-wait", "0", FLASHDUTY_INTEGRATION_KEY="k")
    assert code == 0 and "expired (its deploy died): taking it over" in out, out
    assert "fn-lease" not in wired.functions and len(wired.functions) == 1


def test_wiring_without_the_gateway_is_refused_before_the_function_is_written(run, wired) -> None:
    assert run("--gateway", "prod-gateway", "--alarm-policies", "all", FLASHDUTY_INTEGRATION_KEY="k")[0] == 0
    wired.calls.clear()
    code, out = run("--alarm-policies", "all", FLASHDUTY_INTEGRATION_KEY="k", MIN_SEVERITY="Warning")
    assert code == 1 and "APIG_GATEWAY_NAME" in out and "Nothing was changed" in out, out
    assert not {"UpdateFunction", "Release", "UpdateWebhook", "UpdateRule"} & set(wired.deploy_actions())
