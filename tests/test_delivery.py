"""Delivery to a real local HTTP server that checks Flashduty's documented contract."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from config import RateLimits
from flashduty import RateLimiter
from tests.support.callbacks import body, load_json, metric_callback
from tests.support.flashduty import Fault, FlashdutyStub, stub_process
from tests.support.proxy import ProxyStub
from tests.support.servers import production_server, self_signed_certificate, unreachable_push_url

KEY = "fd-integration-key-0123456789"
SAMPLE = load_json("samples/metric.json")


@pytest.fixture
def relay(client, stub):
    def make(**settings: str):
        return client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=stub.url, **settings)

    return make


def test_every_event_is_delivered_to_the_documented_api(relay, stub) -> None:
    answer = relay().post("/", data=body(SAMPLE), headers={"x-volc-trace-id": "t1"})
    assert answer.status_code == 200
    summary = answer.get_json()
    assert (summary["events"], summary["delivered"], summary["failed"]) == (2, 2, 0)
    assert stub.violations == []
    assert sorted(r.event["alert_key"] for r in stub.accepted()) == sorted(summary["alert_keys"])
    assert {r.integration_key for r in stub.received} == {KEY}


def test_5xx_is_retried_until_accepted(relay, stub) -> None:
    stub.script(Fault(500), Fault(502))
    answer = relay().post("/", data=body(load_json("samples/event.json")))
    assert answer.status_code == 200
    assert [r.answered for r in stub.received] == [500, 502, 200]


def test_429_waits_for_retry_after(relay, stub) -> None:
    stub.script(Fault(429, "RequestTooFrequently", {"Retry-After": "1"}))
    answer = relay().post("/", data=body(load_json("samples/event.json")))
    assert answer.status_code == 200
    first, second = stub.received
    assert (first.answered, second.answered) == (429, 200)
    assert second.at - first.at >= 0.95


def test_a_long_retry_after_is_capped(relay, stub) -> None:
    stub.script(Fault(429, "RequestTooFrequently", {"Retry-After": "3600"}))
    started = time.monotonic()
    answer = relay(DELIVERY_DEADLINE_SECONDS="7").post("/", data=body(load_json("samples/event.json")))
    assert answer.status_code == 200
    assert stub.received[1].at - stub.received[0].at < 3.5
    assert time.monotonic() - started < 7


@pytest.mark.parametrize(("status", "code"), [(400, "InvalidParameter"), (401, "Unauthorized"), (403, "AccessDenied")])
def test_other_4xx_is_not_retried_and_the_caller_is_told_to_retry(relay, stub, status: int, code: str) -> None:
    stub.script(Fault(status, code))
    answer = relay().post("/", data=body(load_json("samples/event.json")))
    assert answer.status_code == 503
    assert len(stub.received) == 1
    (failure,) = answer.get_json()["failures"]
    assert (failure["status"], failure["error"], failure["attempts"]) == (status, code, 1)


def test_persistent_5xx_gives_up_after_three_retries(relay, stub) -> None:
    stub.script(*[Fault(500)] * 4)
    answer = relay().post("/", data=body(load_json("samples/event.json")))
    assert answer.status_code == 503
    assert len(stub.received) == 4
    assert answer.get_json()["failures"][0]["attempts"] == 4


def test_partial_failure_is_a_retry_for_the_whole_callback(relay, stub) -> None:
    stub.script(Fault(400, "InvalidParameter"))  # one of the two events is refused
    answer = relay().post("/", data=body(SAMPLE))
    summary = answer.get_json()
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert (summary["delivered"], summary["failed"]) == (1, 1)


def test_connection_reset_is_retried(relay, stub) -> None:
    stub.script(Fault(reset=True))
    assert relay().post("/", data=body(load_json("samples/event.json"))).status_code == 200
    assert [r.answered for r in stub.received] == [0, 200]


def test_unreachable_flashduty_is_a_503_and_the_key_never_reaches_a_log(client, caplog) -> None:
    caplog.set_level("DEBUG")
    app = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=unreachable_push_url(), CALLBACK_TOKEN="tok-secret")
    answer = app.post("/?token=tok-secret", data=body(load_json("samples/event.json")))
    assert answer.status_code == 503
    (failure,) = answer.get_json()["failures"]
    assert failure["status"] is None and failure["error"] == "NewConnectionError"
    assert "Retrying" in caplog.text  # urllib3 did log its retries...
    assert KEY not in caplog.text and "tok-secret" not in caplog.text  # ...without the secrets
    assert KEY not in answer.get_data(as_text=True)


def test_failing_responses_never_log_the_key(relay, stub, caplog) -> None:
    caplog.set_level("DEBUG")
    stub.script(Fault(500), Fault(429, headers={"Retry-After": "0"}), Fault(400))
    relay().post("/", data=body(load_json("samples/event.json")))
    assert len(stub.received) == 3
    assert KEY not in caplog.text


def test_a_hanging_flashduty_is_cut_off_at_the_deadline(relay, stub) -> None:
    stub.script(Fault(delay=5))
    started = time.monotonic()
    answer = relay(DELIVERY_DEADLINE_SECONDS="1").post("/", data=body(load_json("samples/event.json")))
    elapsed = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.get_json()["failures"][0]["error"] in ("deadline", "ReadTimeoutError")
    assert elapsed < 1.5


def test_fan_out_200_resources_concurrently_within_the_rate_limit(client) -> None:
    # The stand-in runs in its own process (Flashduty answering in 50 ms), so arrival times are
    # taken as Flashduty would take them, not whenever the relay's threads let it run.
    with stub_process(delay=0.05) as push_url:
        started = time.monotonic()
        answer = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=push_url, DELIVERY_CONCURRENCY="16").post(
            "/", data=body(metric_callback(200))
        )
        elapsed = time.monotonic() - started
        seen = json.loads(urllib.request.urlopen(push_url, timeout=10).read())
    assert answer.status_code == 200, answer.get_json().get("failures")
    assert answer.get_json()["delivered"] == 200
    assert len({event["alert_key"] for event in seen["accepted"]}) == 200
    assert seen["peak_in_flight"] > 1  # concurrent, not one by one
    arrivals = sorted(seen["arrivals"])
    # At most Flashduty's 100 per second: the span of all 200 starts, and any one second of them (a few
    # over 100 in a window is arrival jitter on a loaded machine; without the limit it would be ~200).
    assert arrivals[-1] - arrivals[0] >= 1.9
    assert max(sum(1 for t in arrivals if a <= t < a + 1) for a in arrivals) <= 105
    assert elapsed < 6  # within the default deadline; sequentially it would take 10 s


def test_retries_wait_for_the_rate_limit_too(relay, stub) -> None:
    # urllib3 retries a reset at once (no backoff before the first retry); at 2 requests/s the
    # retry must still wait for its slot.
    stub.script(Fault(reset=True))
    assert relay(FLASHDUTY_MAX_RPS="2").post("/", data=body(load_json("samples/event.json"))).status_code == 200
    first, second = stub.received
    assert second.at - first.at >= 0.45


def test_a_retry_that_cannot_start_before_the_deadline_is_given_up(relay, stub) -> None:
    stub.script(Fault(500))  # the next slot at 0.5 requests/s is 2 s away, past the 1 s deadline
    started = time.monotonic()
    answer = relay(FLASHDUTY_MAX_RPS="0.5", DELIVERY_DEADLINE_SECONDS="1").post(
        "/", data=body(load_json("samples/event.json"))
    )
    assert answer.status_code == 503 and time.monotonic() - started < 1.5
    # The cause it met, not just that time ran out.
    (failure,) = answer.get_json()["failures"]
    assert (failure["error"], failure["attempts"]) == ("HTTP 500", 1)
    assert len(stub.received) == 1


def test_a_lower_rate_limit_is_kept(client) -> None:
    with stub_process() as push_url:
        answer = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=push_url, FLASHDUTY_MAX_RPS="20").post(
            "/", data=body(metric_callback(21))
        )
        arrivals = sorted(json.loads(urllib.request.urlopen(push_url, timeout=10).read())["arrivals"])
    assert answer.status_code == 200
    assert arrivals[-1] - arrivals[0] >= 0.95  # 21 starts at 20/s span at least 1 s


def test_events_past_the_deadline_are_reported_not_lost(relay, stub) -> None:
    # 30 events at 10/s cannot all start within 1 s: the rest must be counted as failed
    answer = relay(FLASHDUTY_MAX_RPS="10", DELIVERY_DEADLINE_SECONDS="1").post("/", data=body(metric_callback(30)))
    summary = answer.get_json()
    assert answer.status_code == 503
    assert summary["delivered"] + summary["failed"] == 30
    assert summary["delivered"] == len(stub.accepted())
    assert {f["error"] for f in summary["failures"]} == {"rate-limit"}  # no slot left before the deadline


def test_rate_limit_holds_through_a_process_stall() -> None:
    # sorted() of a big list is one C call that holds the GIL: every thread stalls, as in a GC pause
    # or on a busy machine. Threads that were due meanwhile must not then all send at once.
    limiter = RateLimiter(RateLimits(per_second=100))
    data = list(range(3_000_000))
    random.Random(1).shuffle(data)
    starts: list[float] = []

    def sender() -> None:
        for _ in range(10):
            assert limiter.wait_for_slot(time.monotonic() + 30)
            starts.append(time.monotonic())

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for thread in threads:
        thread.start()
    while len(starts) < 10:  # the senders are under way
        time.sleep(0.005)
    stalled = time.monotonic()
    sorted(data)
    assert time.monotonic() - stalled > 0.1  # the stall was real
    for thread in threads:
        thread.join()
    starts.sort()
    assert max(sum(1 for t in starts if a <= t < a + 0.1) for a in starts) <= 12


def test_the_environments_proxy_is_used_and_no_proxy_respected(client, stub, monkeypatch) -> None:
    # The stand-in plays the proxy: a request for an unresolvable host reaches it only through HTTP_PROXY.
    proxy = stub.url.split("/event/")[0]
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
    sample = body(load_json("samples/event.json"))
    app = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL="http://flashduty.invalid/event/push/alert/standard")
    assert app.post("/", data=sample).status_code == 200
    assert len(stub.accepted()) == 1
    bypassed = client(
        FLASHDUTY_INTEGRATION_KEY=KEY,
        FLASHDUTY_PUSH_URL="http://bypassed.invalid/event/push/alert/standard",
        DELIVERY_DEADLINE_SECONDS="1",
    )
    assert bypassed.post("/", data=sample).status_code == 503  # straight to a host that does not exist
    assert len(stub.received) == 1


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def clear_proxy_settings(monkeypatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.parametrize(
    ("variable", "proxy_url"),
    [
        ("HTTP_PROXY", "http://relay:s%40cret@{address}"),  # credentials in the URL, quoted as URLs must
        ("HTTP_PROXY", "{address}"),  # no scheme: http, as curl and requests read it
        ("ALL_PROXY", "http://{address}"),  # for every scheme without its own
        ("all_proxy", "http://relay:s%40cret@{address}"),
    ],
)
def test_the_proxy_is_used_as_its_environment_variable_says(
    client, stub, monkeypatch, variable: str, proxy_url: str
) -> None:
    clear_proxy_settings(monkeypatch)
    with_credentials = "@" in proxy_url
    proxy = ProxyStub(credentials="relay:s@cret" if with_credentials else None).start()
    try:
        monkeypatch.setenv(variable, proxy_url.format(address=proxy.origin.removeprefix("http://")))
        app = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=stub.url, DELIVERY_DEADLINE_SECONDS="3")
        answer = app.post("/", data=body(load_json("samples/event.json")))
    finally:
        proxy.stop()
    assert answer.status_code == 200, answer.get_json()
    assert (len(stub.accepted()), proxy.refused) == (1, 0)
    assert [f.authorized for f in proxy.forwarded] == [with_credentials]


def test_no_proxy_takes_an_address_range(client, stub, monkeypatch) -> None:
    # A push URL by address (a private endpoint) that NO_PROXY's range excludes goes straight there:
    # through the proxy it would leave the network, integration key and all.
    clear_proxy_settings(monkeypatch)
    proxy = ProxyStub().start()
    try:
        monkeypatch.setenv("HTTP_PROXY", proxy.origin)
        monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,127.0.0.0/8")
        app = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=stub.url, DELIVERY_DEADLINE_SECONDS="3")
        answer = app.post("/", data=body(load_json("samples/event.json")))
    finally:
        proxy.stop()
    assert answer.status_code == 200
    assert (len(stub.accepted()), proxy.forwarded) == (1, [])


@pytest.mark.parametrize("bundle", ["none", "file", "directory"])
def test_tls_is_verified_against_the_environments_ca_bundle(tmp_path, bundle: str) -> None:
    # A push URL whose certificate no CA vouches for is never delivered to, unless the bundle named
    # by REQUESTS_CA_BUNDLE holds it: as a file, or as a hashed directory (/etc/ssl/certs is one).
    certificate, key = self_signed_certificate(tmp_path)
    authorities = tmp_path / "authorities"
    authorities.mkdir()
    (authorities / "ours.pem").write_bytes(certificate.read_bytes())
    subprocess.run(["openssl", "rehash", str(authorities)], check=True)
    named = {"none": "", "file": str(certificate), "directory": str(authorities)}[bundle]
    server = FlashdutyStub().serve_tls(certificate, key).start()
    try:
        settings = {
            "FLASHDUTY_INTEGRATION_KEY": KEY,
            "FLASHDUTY_PUSH_URL": server.url,
            "DELIVERY_DEADLINE_SECONDS": "2",
            "REQUESTS_CA_BUNDLE": named,
            "CURL_CA_BUNDLE": "",
        }
        with production_server(settings) as (url, _, _):
            request = urllib.request.Request(url, data=body(load_json("samples/event.json")), method="POST")
            try:
                status = urllib.request.urlopen(request, timeout=30).status
            except urllib.error.HTTPError as refused:
                status = refused.code
    finally:
        server.stop()
    assert (status, len(server.accepted())) == ((503, 0) if bundle == "none" else (200, 1))
