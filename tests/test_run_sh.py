"""run.sh: the production server (gunicorn via functions-framework) on the port veFaaS gives."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest

from tests.support.callbacks import ROOT
from tests.support.servers import production_server


@pytest.mark.parametrize("variable", ["_FAAS_RUNTIME_PORT", "_BYTEFAAS_RUNTIME_PORT"])
def test_run_sh_serves_the_relay(variable: str) -> None:
    with production_server({"DRY_RUN": "true", "THREADS": "4"}, port_variable=variable) as (url, _, _):
        health = json.loads(urllib.request.urlopen(url, timeout=10).read())
        assert health["status"] == "ok" and health["dry_run"] is True
        request = urllib.request.Request(url, data=(ROOT / "samples/metric.json").read_bytes())
        answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
        assert answer["events"] == 2 and answer["kind"] == "metric"
        # The README's next step: post every sample and see the translated events.
        posted = subprocess.run(
            [sys.executable, "samples/post.py", "--url", url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert posted.returncode == 0, posted.stdout + posted.stderr
        assert posted.stdout.count("HTTP 200") == len(list((ROOT / "samples").glob("*.json")))
        assert '"translated"' in posted.stdout
