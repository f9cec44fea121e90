"""The veFaaS package as a platform runs it: unzipped alone, its requirements.txt installed in a fresh
virtual environment, started by its run.sh on the platform's port; and its timer entries, the drain
and reconcile."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

from deploy import package
from tests.support import s3
from tests.support.callbacks import ROOT
from tests.support.flashduty import APP_KEY, FlashdutyStub
from tests.support.openapi import ACCESS_KEY, SECRET_KEY, OpenAPIStub
from tests.support.servers import free_port, wait_until_up
from tests.support.venvs import fresh_venv


def test_the_vefaas_package_alone_serves_drains_and_reconciles(
    tmp_path: Path, stub: FlashdutyStub, store: dict[str, str], openapi: OpenAPIStub
) -> None:
    app = tmp_path / "app"
    zipfile.ZipFile(io.BytesIO(package.zipped())).extractall(app)
    (app / "run.sh").chmod(0o755)  # zipfile does not restore modes; veFaaS does
    python = fresh_venv(tmp_path / "venv", app / "requirements.txt")
    port = free_port()
    env = {
        "PATH": f"{python.parent}:/usr/bin:/bin",
        "_FAAS_RUNTIME_PORT": str(port),
        "FLASHDUTY_INTEGRATION_KEY": "key-1",
        "FLASHDUTY_PUSH_URL": stub.url,
        **store,
        **s3.CREDENTIALS,
    }
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(["./run.sh"], cwd=app, env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_up(url, server)
            request = urllib.request.Request(url, data=(ROOT / "samples/metric.json").read_bytes())
            answer = json.loads(urllib.request.urlopen(request, timeout=10).read())
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert answer["delivered"] == 2 and len(stub.accepted()) == 2

    drain = "import index, json; print(json.dumps(index.drain({}, None)))"
    ran = subprocess.run([str(python), "-c", drain], cwd=app, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1])["exit_code"] == 0  # the timer entry runs from the package

    # The reconcile timer entry, with the Cloud Monitor SDK as requirements.txt installed it.
    rule = openapi.add_alarm_policy("cpu-high")
    openapi.webhooks["1"] = {"Id": "1", "Name": "volc-flashduty-relay", "Url": url, "RuleIds": [rule["Id"]]}
    openapi.add_alert_group(rule, "i-lost", int(time.time()) - 600)
    env.update(VOLCENGINE_ACCESS_KEY=ACCESS_KEY, VOLCENGINE_SECRET_KEY=SECRET_KEY)
    env.update(FLASHDUTY_APP_KEY=APP_KEY, FLASHDUTY_API_URL=stub.origin)
    env.update(VOLCENGINE_OPENAPI_ENDPOINT=openapi.origin)
    reconciling = "import index, json; print(json.dumps(index.reconcile({}, None)))"
    ran = subprocess.run([str(python), "-c", reconciling], cwd=app, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1])["exit_code"] == 0, ran.stdout
    assert stub.accepted()[-1].event["labels"]["resource_id"] == "i-lost"
    assert not (set(os.listdir(app)) - set(package.PACKAGE) - {"__pycache__"})
