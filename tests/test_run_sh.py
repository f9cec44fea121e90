"""run.sh: the production server (gunicorn via functions-framework) on the port veFaaS gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
from conftest import ROOT
from local_ports import free_port, wait_until_up


@pytest.mark.parametrize("variable", ["_FAAS_RUNTIME_PORT", "_BYTEFAAS_RUNTIME_PORT"])
def test_run_sh_serves_the_relay(variable: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("_FAAS_RUNTIME_PORT", "_BYTEFAAS_RUNTIME_PORT")}
    env.update({variable: str(port), "PYTHON": sys.executable, "DRY_RUN": "true", "THREADS": "4"})
    process = subprocess.Popen(["./run.sh"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        health = json.loads(wait_until_up(f"http://127.0.0.1:{port}/", process))
        assert health["status"] == "ok" and health["dry_run"] is True
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=(ROOT / "samples/metric.json").read_bytes())
        answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert answer["events"] == 2 and answer["kind"] == "metric"
        # The README's next step: post every sample and see the translated events.
        posted = subprocess.run(
            [sys.executable, "samples/post.py", "--url", f"http://127.0.0.1:{port}/"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert posted.returncode == 0, posted.stdout + posted.stderr
        assert posted.stdout.count("HTTP 200") == len(list((ROOT / "samples").glob("*.json")))
        assert '"translated"' in posted.stdout
    finally:
        process.terminate()
        process.wait(timeout=10)
