"""Hardening: whatever Flashduty's side answers, and whatever a caller sends, ends in a clear answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import flashduty
import mapping
from tests.support.callbacks import ROOT, metric_callback
from tests.support.flashduty import Fault, FlashdutyStub
from tests.support.s3 import pending
from tests.support.servers import production_server, unreachable_push_url, worker_rss_kib

KEY = "fd-hardening-key-0123456789"
EVENT = (ROOT / "samples/event.json").read_bytes()


@pytest.fixture
def other_host():
    server = FlashdutyStub().start()
    yield server
    server.stop()


ANSWERS = {
    "302 to itself": lambda stub, other: Fault(302, headers={"Location": stub.url}, body=b""),
    "301 to another host": lambda stub, other: Fault(301, headers={"Location": other.url}, body=b""),
    "200 with an error object": lambda stub, other: Fault(
        200, body=b'{"request_id": "r", "error": {"code": "InvalidParameter", "message": "m"}}'
    ),
    "200 with a proxy's HTML page": lambda stub, other: Fault(200, body=b"<html><body>Welcome</body></html>"),
    "200 with JSON that is not an object": lambda stub, other: Fault(200, body=b"[1, 2]"),
    "400 with an error nested too deeply to read": lambda stub, other: Fault(
        400, body=b'{"error": ' * 100_000 + b"1" + b"}" * 100_000
    ),
    "400 with a body that is not UTF-8": lambda stub, other: Fault(400, body=b"\xff\xfe\xfd"),
}
EXPECTED_ERROR = {
    "302 to itself": "HTTP 302",
    "301 to another host": "HTTP 301",
    "200 with an error object": "InvalidParameter",
    "200 with a proxy's HTML page": "not-flashduty",
    "200 with JSON that is not an object": "not-flashduty",
    "400 with an error nested too deeply to read": "HTTP 400",
    "400 with a body that is not UTF-8": "HTTP 400",
}


@pytest.mark.parametrize("with_store", [False, True], ids=["no store", "store"])
@pytest.mark.parametrize("name", list(ANSWERS))
def test_only_flashdutys_success_counts_as_delivered(
    client, stub, other_host, s3_endpoint, bucket, name: str, with_store: bool
) -> None:
    stub.fault_source = lambda: ANSWERS[name](stub, other_host)  # every attempt, retries included
    settings = {"FLASHDUTY_INTEGRATION_KEY": KEY, "FLASHDUTY_PUSH_URL": stub.url, "DELIVERY_DEADLINE_SECONDS": "2"}
    if with_store:
        settings.update(DEADLETTER_URI=f"s3://{bucket}/h", DEADLETTER_ENDPOINT_URL=s3_endpoint)
    answer = client(**settings).post("/", data=EVENT)
    summary = answer.get_json()
    assert answer.status_code == (202 if with_store else 503), summary
    assert summary["delivered"] == 0 and summary["failures"][0]["error"] == EXPECTED_ERROR[name]
    assert other_host.received == [] and stub.received[0].event["event_status"]  # never followed
    if with_store:
        assert len(pending(bucket, s3_endpoint)) == 1


def test_a_number_too_long_to_convert_is_a_clear_400(client) -> None:
    answer = client().post("/", data=b'{"Type": "Metric", "Level": ' + b"9" * 5000 + b"}")
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "body is not usable JSON: a number in it is too long"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5b0e6a3e-4b1f-4b5e-9a47-0c0f1e2d3c4b", "5b0e6a3e-4b1f-4b5e-9a47-0c0f1e2d3c4b"),
        ("trace\ud800/../x", "trace-x"),
        ("t" * 5000, "t" * 64),
        ("\n\r\t", None),  # nothing usable: a new one
    ],
)
def test_a_trace_id_is_sanitised_and_capped_before_it_reaches_a_log_or_a_name(
    event_main, stub, s3_endpoint, bucket, header: str, expected: str | None
) -> None:
    main = event_main(
        FLASHDUTY_INTEGRATION_KEY=KEY,
        FLASHDUTY_PUSH_URL=stub.url,
        DEADLETTER_URI=f"s3://{bucket}/t",
        DEADLETTER_ENDPOINT_URL=s3_endpoint,
    )
    stub.script(Fault(400, "InvalidParameter"))
    event = {"httpMethod": "POST", "path": "/", "headers": {"x-volc-trace-id": header}, "body": EVENT.decode()}
    answer = main.handler(event)
    assert answer["statusCode"] == 202
    trace_id = json.loads(answer["body"])["trace_id"]
    if expected is None:
        assert len(trace_id) == 32 and trace_id.isalnum()
    else:
        assert trace_id == expected
    (name,) = pending(bucket, s3_endpoint)
    assert f"Z_{trace_id}_" in name and name.count("/") == 1


SUCCESS = b'{"request_id": "r", "data": {"alert_key": "k"}}'
MALFORMED_HEADER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nthis line is no header\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(SUCCESS)
    + SUCCESS
)


@pytest.mark.parametrize(
    "what",
    ["retries after 500s", "a malformed header line", "connection refused", "a reset", "a hang"],
)
def test_no_log_line_holds_the_key_or_the_token_whatever_urllib3_logs(client, stub, caplog, what: str) -> None:
    caplog.set_level("DEBUG")
    faults = {
        "retries after 500s": [Fault(500), Fault(502)],
        "a malformed header line": [Fault(wire=MALFORMED_HEADER)],
        "a reset": [Fault(reset=True)],
        "a hang": [Fault(delay=3)],
    }
    stub.script(*faults.get(what, []))
    push_url = unreachable_push_url() if what == "connection refused" else stub.url
    app = client(
        FLASHDUTY_INTEGRATION_KEY=KEY,
        FLASHDUTY_PUSH_URL=push_url,
        CALLBACK_TOKEN="tok-secret-42",
        DELIVERY_DEADLINE_SECONDS="2",
    )
    app.post("/?token=tok-secret-42", data=EVENT)
    urllib3_lines = [r for r in caplog.records if r.name.startswith("urllib3")]
    assert urllib3_lines, "urllib3 logged something to check"
    if what == "a malformed header line":
        assert any("Failed to parse headers" in r.getMessage() for r in urllib3_lines)
    assert "integration_key=<redacted>" in caplog.text or what == "connection refused"
    assert KEY not in caplog.text and "tok-secret-42" not in caplog.text


def hostile(resources: list[dict], tags: int = 0) -> bytes:
    callback = {"Type": "Metric", "RuleId": "r1", "Level": "critical", "Resources": resources}
    callback["Tags"] = [{"Key": f"k{n}", "Value": "v"} for n in range(tags)]
    return json.dumps(callback, separators=(",", ":")).encode()


def test_identical_resources_are_one_alert_and_callback_wide_parts_are_built_once(client) -> None:
    empty = hostile([{}] * 349_000)  # 1 MiB of identical resources: 349,505 events before
    started = time.monotonic()
    answer = client().post("/", data=empty)
    assert answer.status_code == 200 and answer.get_json()["events"] == 1
    tagged = hostile([{"Id": f"i-{n}"} for n in range(2000)], tags=2000)  # 54 KB: 6.1 s to translate before
    answer = client().post("/", data=tagged)
    assert answer.status_code == 200 and answer.get_json()["events"] == 2000
    assert time.monotonic() - started < 8
    assert len(answer.get_data()) < 200_000  # 100 of the events shown, not 2,000


def test_resources_past_the_cap_are_counted_and_said_not_dropped(client, stub) -> None:
    app = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=stub.url, DRY_RUN="true")
    answer = app.post("/", data=hostile([{"Id": f"i-{n}"} for n in range(mapping.RESOURCES_MAX + 1234)]))
    summary = answer.get_json()
    assert answer.status_code == 200 and summary["over_cap"] == 1234
    assert summary["events"] == mapping.RESOURCES_MAX + 1  # and one that says how many were not sent
    assert summary["listed"] == 100 and len(summary["translated"]) == 100
    (notice,) = [
        e
        for e in mapping.translate(json.loads(hostile([{"Id": f"i-{n}"} for n in range(5001)]))).events
        if "over_cap" in e["labels"]
    ]
    assert notice["labels"]["over_cap"] == "1" and "1 more resources" in notice["title_rule"]


def test_a_hostile_megabyte_is_answered_in_time_within_a_memory_bound() -> None:
    body = hostile([{"Id": f"{n:x}"} for n in range(70_000)])  # distinct, tiny: about 1 MiB
    assert 900_000 < len(body) <= 1024 * 1024
    with production_server({"DRY_RUN": "true"}) as (url, process, _):
        started = time.monotonic()
        answer = urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30)
        elapsed = time.monotonic() - started
        summary = json.loads(answer.read())
        peak_kib = worker_rss_kib(process)
    assert elapsed < 8 and summary["over_cap"] == 70_000 - mapping.RESOURCES_MAX
    assert peak_kib < 250 * 1024, f"peak RSS {peak_kib} KiB"


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def test_a_dripping_flashduty_leaves_no_thread_or_socket_behind(stub) -> None:
    settings = {"FLASHDUTY_INTEGRATION_KEY": KEY, "FLASHDUTY_PUSH_URL": stub.url, "DELIVERY_DEADLINE_SECONDS": "1"}
    bodies = [json.dumps(metric_callback(4, f"drip{n}-")).encode() for n in range(36)]
    with production_server(settings) as (url, process, _):
        worker = int(Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()[0])

        def callbacks(batch: list[bytes]) -> set[int]:
            with ThreadPoolExecutor(8) as clients:
                return set(clients.map(lambda b: post_status(url, b), batch))

        def settle(level: tuple[int, int]) -> tuple[int, int]:
            end = time.monotonic() + 5
            while (threads(worker), open_files(worker)) > level and time.monotonic() < end:
                time.sleep(0.1)  # the last callbacks' requests are cut off at their deadline
            return threads(worker), open_files(worker)

        assert callbacks(bodies[:4]) == {200}
        quiet_files = open_files(worker)  # no request in flight
        stub.fault_source = lambda: Fault(drip=0.2)  # a byte every 0.2 s, under every read timeout
        assert callbacks(bodies[4:12]) == {503}  # the server's and the delivery pool's threads now exist
        before = threads(worker), quiet_files
        started = time.monotonic()
        assert callbacks(bodies[12:]) == {503} and time.monotonic() - started < 30
        after = settle(before)
    # Before, each dripping callback left 8 threads and sockets behind for good (785 after 96). Now the
    # threads are those of fixed pools (gunicorn's 16, the delivery pool's 32, the watchdog, the
    # worker's own), which fill lazily up to that ceiling whatever the number of callbacks, and every
    # socket is closed by the deadline: open files are back to their level with nothing in flight.
    ceiling = 16 + flashduty.MAX_CONCURRENCY + 1 + 3
    assert before[0] <= ceiling and after[0] <= ceiling, (before, after)
    assert after[1] <= before[1] + 2, (before, after)


def post_status(url: str, body: bytes) -> int:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(
    "at_once",
    [
        pytest.param(0, id="from its status line"),
        # The status line whole, then its headers a byte at a time: cut there, http.client takes the
        # headers read so far as all of them, and the empty body for a 2xx that is not Flashduty's.
        pytest.param(len(b"HTTP/1.1 200 OK\r\n"), id="in its headers"),
    ],
)
def test_a_dripped_answer_is_cut_off_at_the_deadline_and_named(client, stub, at_once: int) -> None:
    stub.fault_source = lambda: Fault(drip=0.2, drip_from=at_once)
    started = time.monotonic()
    answer = client(FLASHDUTY_INTEGRATION_KEY=KEY, FLASHDUTY_PUSH_URL=stub.url, DELIVERY_DEADLINE_SECONDS="1").post(
        "/", data=EVENT
    )
    assert answer.status_code == 503 and time.monotonic() - started < 2  # one event: sent on this very thread
    assert answer.get_json()["failures"][0]["error"] == "slow-answer"


def test_replay_exits_when_it_says_it_is_done_even_against_a_dripping_flashduty(
    client, stub, s3_endpoint, bucket
) -> None:
    settings = {
        "FLASHDUTY_INTEGRATION_KEY": KEY,
        "FLASHDUTY_PUSH_URL": stub.url,
        "DEADLETTER_URI": f"s3://{bucket}/drip",
        "DEADLETTER_ENDPOINT_URL": s3_endpoint,
    }
    stub.script(*[Fault(400, "InvalidParameter")] * 4)
    assert client(**settings).post("/", data=json.dumps(metric_callback(4)).encode()).status_code == 202
    stub.fault_source = lambda: Fault(drip=0.2)
    env = {**os.environ, **settings}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "replay", "send", "--max-seconds", "4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "4 left in the store" in done.stdout, done.stdout + done.stderr
    assert time.monotonic() - started < 8  # it printed "done" within its 4 s and then exited
