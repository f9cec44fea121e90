"""The HTTP contract of the relay, through the real functions-framework app and the event handler."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest

import callback
import config
from tests.support.callbacks import ROOT, load_json

SAMPLE = (ROOT / "samples/metric.json").read_bytes()


def test_health_check(client) -> None:
    answer = client().get("/")
    assert answer.status_code == 200
    assert answer.get_json() == {"status": "ok", "version": callback.VERSION, "dry_run": True}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_refused(client, method: str) -> None:
    answer = client().open("/", method=method, data=SAMPLE)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "GET, HEAD, POST"
    assert method in answer.get_json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "empty body"),
        (b"   \n", 400, "empty body"),
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "got an array"),
        (b'"text"', 400, "got a string"),
        (b"null", 400, "got null"),
        (b'{"a": "\xff\xfe"}', 400, "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
        (b'{"a": "' + b"x" * (1024 * 1024) + b'"}', 413, "larger than"),
    ],
)
def test_bad_bodies_get_a_clear_4xx(client, body: bytes, status: int, says: str) -> None:
    answer = client().post("/", data=body, content_type="application/json")
    assert answer.status_code == status
    assert says in answer.get_json()["error"]
    assert "Traceback" not in answer.get_data(as_text=True)


def test_dry_run_shows_the_translated_events(client) -> None:
    answer = client().post("/", data=SAMPLE, headers={"x-volc-trace-id": "trace-1"})
    assert answer.status_code == 200
    summary = answer.get_json()
    assert summary["dry_run"] is True and summary["trace_id"] == "trace-1"
    assert summary["kind"] == "metric" and summary["events"] == 2
    assert [e["alert_key"] for e in summary["translated"]] == summary["alert_keys"]
    assert summary["translated"][0]["event_status"] == "Critical"


def test_dry_run_even_with_a_key_when_asked(client, stub) -> None:
    answer = client(FLASHDUTY_INTEGRATION_KEY="k", FLASHDUTY_PUSH_URL=stub.url, DRY_RUN="true").post("/", data=SAMPLE)
    assert answer.status_code == 200 and answer.get_json()["dry_run"] is True
    assert stub.received == []


def test_callback_token(client) -> None:
    app = client(CALLBACK_TOKEN="s3cret")
    assert app.post("/", data=SAMPLE).status_code == 401
    assert app.post("/", data=SAMPLE, headers={"Token": "wrong"}).status_code == 401
    assert "token" in app.post("/?token=nope", data=SAMPLE).get_json()["error"]
    assert app.post("/", data=SAMPLE, headers={"Token": "s3cret"}).status_code == 200
    assert app.post("/?token=s3cret", data=SAMPLE).status_code == 200
    assert app.get("/").status_code == 200  # the health check needs no token


def test_routes_pick_the_integration_by_path(client, stub) -> None:
    app = client(
        FLASHDUTY_PUSH_URL=stub.url,
        FLASHDUTY_INTEGRATION_KEY="key-default",
        ROUTES=json.dumps({"team-a": "key-a", "team-b": "key-b"}),
    )
    assert app.post("/team-b", data=SAMPLE).get_json()["route"] == "team-b"
    assert app.post("/prod/team-a/", data=SAMPLE).status_code == 200
    assert app.post("/", data=SAMPLE).get_json()["route"] == "default"
    unknown = app.post("/team-c", data=SAMPLE)
    assert unknown.status_code == 404 and "/team-a, /team-b" in unknown.get_json()["error"]
    assert [r.integration_key for r in stub.received] == ["key-b"] * 2 + ["key-a"] * 2 + ["key-default"] * 2


def test_routes_without_a_default_key_refuse_the_root_path(client, stub) -> None:
    app = client(FLASHDUTY_PUSH_URL=stub.url, ROUTES='{"team-a": "key-a"}')
    assert app.post("/", data=SAMPLE).status_code == 404
    assert app.post("/team-a", data=SAMPLE).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DELIVERY_DEADLINE_SECONDS", "10"),
        ("DELIVERY_DEADLINE_SECONDS", "soon"),
        ("DELIVERY_CONCURRENCY", "0"),
        ("FLASHDUTY_MAX_RPS", "500"),
        ("FLASHDUTY_MAX_PER_MINUTE", "1001"),
        ("FLASHDUTY_MAX_PER_MINUTE", "0"),
        ("FLASHDUTY_MINUTE_SECONDS", "0.5"),
        ("DRY_RUN", "maybe"),
        ("ROUTES", "[1]"),
        ("ROUTES", '{"a/b": "k"}'),
        ("SEVERITY_OVERRIDES", '{"notice": "Major"}'),
        ("MIN_SEVERITY", "Ok"),
        ("FLASHDUTY_PUSH_URL", "ftp://example"),
        ("FLASHDUTY_PUSH_URL", "https://api.flashcat.cloud/event/push/alert/standard?integration_key=x"),
    ],
)
def test_a_bad_setting_stops_the_start_and_names_it(client, name: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=name):
        client(**{name: value})


def test_a_bad_setting_never_echoes_a_secret(client) -> None:
    with pytest.raises(config.ConfigError) as error:
        client(ROUTES='{"team-a": ["secret-key-123"]}')
    assert "secret-key-123" not in str(error.value)


def test_our_own_fault_is_a_500_without_internals(client, monkeypatch) -> None:
    app = client()
    import mapping

    def broken(*_args, **_kwargs):
        raise RuntimeError("internal detail /srv/secret")

    monkeypatch.setattr(mapping, "translate", broken)  # inject a fault: nothing else raises
    answer = app.post("/", data=SAMPLE, headers={"x-volc-trace-id": "t-500"})
    assert answer.status_code == 500
    assert answer.get_json() == {"error": "internal error", "trace_id": "t-500"}


def test_one_json_log_line_per_callback(client, caplog) -> None:
    caplog.set_level("INFO", logger="relay")
    client().post("/", data=SAMPLE, headers={"x-volc-trace-id": "trace-log"})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "relay"]
    assert len(lines) == 1
    line = lines[0]
    assert line["trace_id"] == "trace-log" and line["kind"] == "metric" and line["status"] == 200
    assert line["events"] == 2 and isinstance(line["duration_ms"], int)
    assert len(line["translated"]) == 2 and line["route"] == "default" and "alert_keys" not in line


# The event-function entry behaves exactly like the functions-framework target ---------------


def lambda_v2(method: str, path: str, body: bytes, headers: dict, query: str = "") -> dict:
    encoded = base64.b64encode(body).decode()
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": query,
        "queryStringParameters": dict(p.split("=", 1) for p in query.split("&") if p) or None,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": method, "path": path}},
        "body": encoded,
        "isBase64Encoded": True,
    }


def vefaas(method: str, path: str, body: bytes, headers: dict, query: str = "") -> dict:
    return {
        "httpMethod": method,
        "path": path,
        "queryStringParameters": dict(p.split("=", 1) for p in query.split("&") if p),
        "headers": headers,
        "body": body.decode("utf-8", "surrogateescape"),
    }


REQUESTS = [
    ("GET", "/", b"", {}, ""),
    ("PUT", "/", SAMPLE, {}, ""),
    ("POST", "/", SAMPLE, {}, ""),
    ("POST", "/", SAMPLE, {"Token": "wrong"}, ""),
    ("POST", "/", SAMPLE, {"Token": "tok"}, ""),
    ("POST", "/", SAMPLE, {}, "token=tok"),
    ("POST", "/team-a", SAMPLE, {"Token": "tok"}, ""),
    ("POST", "/x", SAMPLE, {"Token": "tok"}, ""),
    ("POST", "/", b"{bad", {"Token": "tok"}, ""),
    ("POST", "/", b"[]", {"Token": "tok"}, ""),
    ("POST", "/", b"", {"Token": "tok"}, ""),
    ("POST", "/", json.dumps(load_json("tests/events/unrecognised.json")).encode(), {"Token": "tok"}, ""),
]


@pytest.mark.parametrize("shape", [lambda_v2, vefaas])
@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r[0]}{r[1]}-{len(r[2])}-{r[4]}")
def test_handler_answers_exactly_like_relay(client, event_main, shape, request_) -> None:
    method, path, body, headers, query = request_
    settings = {"CALLBACK_TOKEN": "tok", "ROUTES": '{"team-a": "k"}', "DRY_RUN": "true"}
    headers = {**headers, "x-volc-trace-id": "same-trace"}
    via_http = client(**settings).open(path + (f"?{query}" if query else ""), method=method, data=body, headers=headers)
    via_event = event_main(**settings).handler(shape(method, path, body, headers, query), None)
    assert via_event["statusCode"] == via_http.status_code
    assert json.loads(via_event["body"]) == via_http.get_json()
    assert via_event["headers"]["Content-Type"] == "application/json"


def test_lambda_rest_v1_event_and_bad_base64(event_main) -> None:
    main = event_main()
    v1 = {
        "httpMethod": "POST",
        "path": "/",
        "headers": None,
        "queryStringParameters": None,
        "multiValueHeaders": {},
        "body": SAMPLE.decode(),
        "isBase64Encoded": False,
    }
    assert main.handler(v1, None)["statusCode"] == 200
    broken = {**v1, "body": "not base64!", "isBase64Encoded": True}
    answer = main.handler(broken, None)
    assert answer["statusCode"] == 400 and "base64" in json.loads(answer["body"])["error"]
    assert main.handler({"requestContext": "odd"}, None)["statusCode"] == 405
    assert main.handler(None, None)["statusCode"] == 405


def test_importing_main_loads_no_web_framework_or_boto3() -> None:
    heavy = ("flask", "functions_framework", "boto3", "botocore", "werkzeug")
    probe = f"import sys, main; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_variables_lists_exactly_what_the_settings_read() -> None:
    class Recording(dict):
        def get(self, name, default=None):
            read.add(name)
            return super().get(name, default)

    read: set[str] = set()
    config.load(Recording())
    assert read == set(config.VARIABLES)


def test_a_timer_event_is_recognised_before_the_route_check(client) -> None:
    # ROUTES alone, no default key: veFaaS's timer still posts to `/`, and the drain must run.
    app = client(ROUTES='{"team-a": "key-a"}', CALLBACK_TOKEN="tok-callback", TIMER_TOKEN="tok-timer-routes")
    timer = {"type": "faas.timer.event", "specversion": "1.0", "id": "1", "source": "/faas/event/timer/t-1"}
    timer["data"] = json.dumps({"relay": "drain", "seconds": 5, "token": "tok-timer-routes"})
    answer = app.post("/", data=json.dumps(timer))
    assert answer.status_code == 200, answer.get_json()
    assert "DEADLETTER_URI is not set" in answer.get_json()["output"][0]  # the drain ran (and had no store)
    timer["data"] = json.dumps({"relay": "drain", "token": "wrong"})
    assert app.post("/", data=json.dumps(timer)).status_code == 401


@pytest.mark.parametrize("size", ["small", "large"])  # a small body is read (it may be a timer event); a large one not
def test_a_caller_without_the_token_learns_nothing_about_routes(client, size: str) -> None:
    app = client(ROUTES='{"team-a": "key-a", "team-b": "key-b"}', CALLBACK_TOKEN="tok-routes", DRY_RUN="true")
    data = SAMPLE if size == "small" else SAMPLE + b" " * 8192
    for path in ("/team-c", "/"):
        refused = app.post(path, data=data)
        assert refused.status_code == 401 and "team-" not in refused.get_data(as_text=True)
        assert refused.headers["Connection"] == "close"
    listed = app.post("/team-c", data=data, headers={"Token": "tok-routes"})
    assert listed.status_code == 404 and "/team-a, /team-b" in listed.get_json()["error"]
    assert app.post("/team-a", data=data, headers={"Token": "tok-routes"}).status_code == 200
