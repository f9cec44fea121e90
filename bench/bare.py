"""Baselines for the benchmarks, as functions-framework functions.

`ok` only answers: the framework's own ceiling (cold start). `forward` is a bare forwarder: it reads
the body and posts one fixed event to Flashduty with a module-level session, for the route the path
names, as the relay would, but with nothing else: no parsing, translation, retries or rate limit.
"""

import json
import os

import requests

_SESSION = requests.Session()
_EVENT = json.dumps({"title_rule": "bench", "event_status": "Info", "alert_key": "bench"}).encode()
_ROUTES = json.loads(os.environ.get("ROUTES", "{}"))


def ok(request):
    return "ok"


def forward(request):
    if request.method != "POST":
        return "ok"  # the health check that start-up waits for
    request.get_data()
    key = _ROUTES.get(request.path.rsplit("/", 1)[-1], "")
    answer = _SESSION.post(
        os.environ["FLASHDUTY_PUSH_URL"],
        params={"integration_key": key},
        data=_EVENT,
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    return answer.text, answer.status_code
