"""`python -m deploy` (veFaaS): the package, the plan, the SDK calls and their order, bad credentials."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

import deploy
from tests.support.servers import free_port


def test_package_holds_the_relay_and_nothing_else() -> None:
    code = deploy.package()
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        assert sorted(infos) == sorted(deploy.PACKAGE)
        assert (infos["run.sh"].external_attr >> 16) & 0o111  # executable: veFaaS runs ./run.sh
        assert archive.read("index.py").startswith(b'"""veFaaS')
    assert not any(name.startswith(("tests/", "samples/", "bench/")) for name in infos)
    assert deploy.package() == code  # same code, same package


class Recorder(BaseHTTPRequestHandler):
    """A local HTTP server: the presigned upload URL, or a Volcengine API endpoint refusing a key."""

    received: list[tuple[str, str, bytes, str]] = []

    def log_message(self, *args) -> None:
        pass

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Recorder.received.append((self.command, self.path, body, self.headers.get("Content-Type", "")))

    def do_PUT(self) -> None:
        self._record()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:  # what the open API answers an unknown access key
        self._record()
        body = json.dumps(
            {
                "ResponseMetadata": {
                    "RequestId": "r",
                    "Action": "ListFunctions",
                    "Service": "vefaas",
                    "Error": {"Code": "InvalidAccessKey", "Message": "bad key"},
                }
            }
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def local_server():
    Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class FakeVefaas:
    """Stands in for VEFAASApi and UniversalApi: records each call, in order, with its request."""

    def __init__(self, existing: list[tuple[str, str]], upload_url: str, trigger_config: str | None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.existing, self.upload_url, self.trigger_config = existing, upload_url, trigger_config
        self.statuses = {"dependency": ["InProgress", "Succeeded"], "release": ["inprogress", "succeeded"]}

    def _call(self, name: str, request: object, result: object = None) -> object:
        self.calls.append((name, request))
        return result

    def list_functions(self, request):
        return self._call(
            "list_functions", request, SimpleNamespace(items=[SimpleNamespace(id=i, name=n) for i, n in self.existing])
        )

    def create_function(self, request):
        return self._call("create_function", request, SimpleNamespace(id="fn-new"))

    def update_function(self, request):
        return self._call("update_function", request)

    def get_code_upload_address(self, request):
        return self._call("get_code_upload_address", request, SimpleNamespace(upload_address=self.upload_url))

    def do_call(self, info, body):
        return self._call(f"universal:{info.action}", body)

    def create_dependency_install_task(self, request):
        return self._call("create_dependency_install_task", request)

    def get_dependency_install_task_status(self, request):
        return self._call(
            "get_dependency_install_task_status", request, SimpleNamespace(status=self.statuses["dependency"].pop(0))
        )

    def release(self, request):
        return self._call("release", request)

    def get_release_status(self, request):
        return self._call("get_release_status", request, SimpleNamespace(status=self.statuses["release"].pop(0)))

    def list_triggers(self, request):
        items = [SimpleNamespace(type="apig", detailed_config=self.trigger_config)] if self.trigger_config else []
        return self._call("list_triggers", request, SimpleNamespace(items=items))


def real_models():
    _, _, models = deploy.sdk_clients("ak", "sk", "cn-beijing")
    return models


def run(fake: FakeVefaas, monkeypatch, *argv: str, **environment: str) -> tuple[int, str]:
    for name, value in {"VOLCENGINE_ACCESS_KEY": "ak", "VOLCENGINE_SECRET_KEY": "sk", **environment}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(deploy, "POLL_SECONDS", 0.0)
    out = io.StringIO()
    code = deploy.main(list(argv), out=out, clients=lambda *_: (fake, fake, real_models()))
    return code, out.getvalue()


CREATE_ORDER = [
    "list_functions",
    "create_function",
    "get_code_upload_address",
    "universal:CodeUploadCallback",
    "create_dependency_install_task",
    "get_dependency_install_task_status",
    "get_dependency_install_task_status",
    "release",
    "get_release_status",
    "get_release_status",
    "list_triggers",
]


def test_a_new_function_is_created_uploaded_installed_released(local_server, environment, monkeypatch) -> None:
    environment(FLASHDUTY_INTEGRATION_KEY="fd-key", CALLBACK_TOKEN="tok")
    fake = FakeVefaas(
        [],
        f"http://{local_server}/upload?sig=x",
        json.dumps({"routes": [{"url": "https://sd1234.apigateway-cn-beijing.volceapi.com/"}]}),
    )
    code, out = run(fake, monkeypatch, "--name", "relay-prod")
    assert code == 0, out
    assert [name for name, _ in fake.calls] == CREATE_ORDER
    created = fake.calls[1][1]
    assert (created.name, created.command, created.port) == ("relay-prod", "./run.sh", 8000)
    assert {(e.key, e.value) for e in created.envs} == {
        ("FLASHDUTY_INTEGRATION_KEY", "fd-key"),
        ("CALLBACK_TOKEN", "tok"),
    }
    assert fake.calls[2][1].content_length == len(deploy.package())
    assert fake.calls[3][1] == {"FunctionId": "fn-new"}
    assert fake.calls[7][1].revision_number == 0
    (put,) = Recorder.received
    assert put[:2] == ("PUT", "/upload?sig=x") and put[2] == deploy.package() and put[3] == "application/zip"
    assert "Callback URL for Cloud Monitor: https://sd1234.apigateway-cn-beijing.volceapi.com/" in out


def test_an_existing_function_is_updated(local_server, environment, monkeypatch) -> None:
    environment(FLASHDUTY_INTEGRATION_KEY="fd-key")
    fake = FakeVefaas([("fn-other", "relay-old"), ("fn-7", "volc-flashduty-relay")], f"http://{local_server}/u", None)
    code, out = run(fake, monkeypatch)
    assert code == 0
    names = [name for name, _ in fake.calls]
    assert names[:2] == ["list_functions", "update_function"] and "create_function" not in names
    assert fake.calls[1][1].id == "fn-7"
    assert "no API gateway trigger yet" in out


def test_a_failed_release_is_reported(local_server, environment, monkeypatch, capsys) -> None:
    environment(FLASHDUTY_INTEGRATION_KEY="fd-key")
    fake = FakeVefaas([], f"http://{local_server}/u", None)
    fake.statuses["release"] = ["Failed"]
    with pytest.raises(SystemExit) as exit_:
        run(fake, monkeypatch)
    assert exit_.value.code == 1 and "release ended Failed" in capsys.readouterr().err


def test_dry_run_calls_nothing(environment) -> None:
    environment(FLASHDUTY_INTEGRATION_KEY="fd-key")

    def no_clients(*_):
        raise AssertionError("a dry run must not reach veFaaS")

    out = io.StringIO()
    assert deploy.main(["--dry-run"], out=out, clients=no_clients) == 0
    assert "would deploy" in out.getvalue() and "FLASHDUTY_INTEGRATION_KEY" in out.getvalue()
    assert "fd-key" not in out.getvalue()  # names of settings, never their values


def test_missing_credentials_say_what_to_set(environment, monkeypatch, capsys) -> None:
    environment()
    monkeypatch.delenv("VOLCENGINE_ACCESS_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_:
        deploy.main([], clients=lambda *_: pytest.fail("no client without credentials"))
    assert exit_.value.code == 2 and "VOLCENGINE_ACCESS_KEY" in capsys.readouterr().err


def test_a_bad_setting_is_refused_before_deploying(environment, capsys) -> None:
    environment(MIN_SEVERITY="Loud")
    with pytest.raises(SystemExit) as exit_:
        deploy.main(["--dry-run"])
    assert exit_.value.code == 2 and "MIN_SEVERITY" in capsys.readouterr().err


def test_bad_credentials_through_the_real_sdk_give_a_clear_message(
    local_server, environment, monkeypatch, capsys
) -> None:
    environment()
    monkeypatch.setenv("VOLCENGINE_ACCESS_KEY", "AKLTwrong")
    monkeypatch.setenv("VOLCENGINE_SECRET_KEY", "wrong-secret")

    def local_sdk(access_key: str, secret_key: str, region: str):
        api, universal, models = deploy.sdk_clients(access_key, secret_key, region)
        api.api_client.configuration.host = local_server  # the open API, played by the local server
        api.api_client.configuration.scheme = "http"
        return api, universal, models

    with pytest.raises(SystemExit) as exit_:
        deploy.main([], clients=local_sdk)
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "refused the credentials (InvalidAccessKey)" in err and "VOLCENGINE_ACCESS_KEY" in err
    assert "wrong-secret" not in err
    assert Recorder.received and Recorder.received[0][0] == "POST"  # the SDK really called out


def test_an_unreachable_api_gives_a_clear_message(environment, monkeypatch, capsys) -> None:
    environment()
    monkeypatch.setenv("VOLCENGINE_ACCESS_KEY", "AKLTx")
    monkeypatch.setenv("VOLCENGINE_SECRET_KEY", "s")

    def nowhere(access_key: str, secret_key: str, region: str):
        api, universal, models = deploy.sdk_clients(access_key, secret_key, region)
        api.api_client.configuration.host = f"127.0.0.1:{free_port()}"
        api.api_client.configuration.scheme = "http"
        return api, universal, models

    with pytest.raises(SystemExit) as exit_:
        deploy.main([], clients=nowhere)
    assert exit_.value.code == 1 and "list functions: cannot reach veFaaS" in capsys.readouterr().err


def test_a_failed_upload_never_shows_the_signed_url(environment, monkeypatch, capsys) -> None:
    environment(FLASHDUTY_INTEGRATION_KEY="fd-key")
    fake = FakeVefaas([], f"http://127.0.0.1:{free_port()}/upload?signature=top-secret", None)
    with pytest.raises(SystemExit) as exit_:
        run(fake, monkeypatch)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "upload code package: cannot reach veFaaS" in err
    assert "top-secret" not in err
