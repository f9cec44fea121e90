"""Reconcile at full size, as deployed: an account with 5,000 alarms on whose relay lost 100 firings
(spread over every page) and 30 recoveries, Cloud Monitor answering each ListAlertGroup page in
0.6 s, Flashduty at its real limits, and timer runs every 5 minutes with the time the deployed timer
gets: the deploy's request timeout (veFaaS) or serverless.yml's (Lambda), less reconcile's 5 s. Beside
it, the same with veFaaS's default request timeout (30 s), as a function deployed with --timeout 30 has.
And an Event Center storm: 1,000 incidents (InstanceFailure) whose callbacks were all lost, paged by
one timer run, beside the floor that reading their ListEvents pages one after another and pushing
them at Flashduty's limits (less the relay's headroom) sets.

The figure is the time from the first run's start until Flashduty holds exactly the alerts of the
alarms on, counting the 5 minutes between runs (not slept: the alerts are aged instead), beside the
floor that reading every page of the alarms on, PAGES_AT_ONCE at a time, sets.
"""

from __future__ import annotations

import math
import time

import reconcile
from bench.common import table
from config import FLASHDUTY_MINUTE_LIMIT, FLASHDUTY_RATE_LIMIT
from deploy.function import REQUEST_TIMEOUT
from flashduty import RATE_HEADROOM
from tests.support import accounts
from tests.support.flashduty import APP_KEY, FlashdutyStub
from tests.support.openapi import ACCESS_KEY, SECRET_KEY, OpenAPIStub

ON = 5000
LOST_FIRINGS = 100
LOST_RECOVERIES = 30
PAGE_SECONDS = 0.6
TIMER_EVERY = 300.0
RUNS = 3  # a run past the second is a failure of the requirement; the third says whether it converges
KEY = "fd-bench-key"
# Its own integration: the run above filled the minute of KEY's push limit, which this would wait out.
EVENT_KEY = "fd-bench-events-key"
LOST_EVENTS = 1000


def run() -> None:
    rows = [
        _converge(f"the deploy's, {REQUEST_TIMEOUT} s (serverless.yml's alike)", REQUEST_TIMEOUT),
        _converge("veFaaS's default, 30 s", 30),
    ]
    floor = math.ceil(ON / reconcile.PAGE_SIZE / reconcile.PAGES_AT_ONCE) * PAGE_SECONDS
    table(
        f"Reconcile: {ON:,} alarms on, {LOST_FIRINGS} lost firings and {LOST_RECOVERIES} lost recoveries, "
        f"{PAGE_SECONDS} s per ListAlertGroup page, a timer run every 5 min",
        ("request timeout", "run's budget (s)", "timer runs (exit codes)", "until Flashduty matches (s)", "floor (s)"),
        [(*row, floor) for row in rows],
    )


def event_storm() -> None:
    """1,000 lost incidents, each a resource's, read from ListEvents and paged in one timer run."""
    openapi, flashduty = OpenAPIStub().start(), FlashdutyStub().start()
    try:
        types = ["ecs:Instance:InstanceFailure:Succeeded"]
        rule = openapi.add_event_rule("ecs failures", EventType=types, FilterPattern={"source": "ecs", "types": types})
        openapi.webhooks["1"] = {"Id": "1", "Name": reconcile.DEFAULT_WEBHOOK, "Url": "https://relay.example/"}
        openapi.webhooks["1"].update(Type="custom", RuleIds=[], EventRuleIds=[rule["RuleId"]])
        now = int(time.time())
        for n in range(LOST_EVENTS):
            openapi.add_event(types[0], f"i-{n:05d}", now - 1500 + n)
        openapi.delays["ListEvents"] = PAGE_SECONDS
        started = time.monotonic()
        code = reconcile.timer(
            {**_environ(openapi, flashduty), "FLASHDUTY_INTEGRATION_KEY": EVENT_KEY}, REQUEST_TIMEOUT
        )["exit_code"]
        paged = len(flashduty.open_alerts())
        took = max((r.at for r in flashduty.received), default=started) - started
    finally:
        openapi.stop()
        flashduty.stop()
    # Reading the pages one after another, then the pushes as the relay's limiter spaces them (a
    # second's limit, less its headroom), and a minute's window for each minute's limit past the first.
    pages = LOST_EVENTS / reconcile.PAGE_SIZE * PAGE_SECONDS
    spaced = LOST_EVENTS / (FLASHDUTY_RATE_LIMIT * RATE_HEADROOM)
    floor = pages + spaced + (LOST_EVENTS - 1) // FLASHDUTY_MINUTE_LIMIT * 60.0 / RATE_HEADROOM
    table(
        f"Reconcile, Event Center: {LOST_EVENTS:,} lost incidents, {PAGE_SECONDS} s per ListEvents page, one timer run",
        ("exit code", "incidents paged", "until the last is paged (s)", "floor (s)", "ratio"),
        [(code, paged, took, floor, took / floor)],
    )


def _environ(openapi: OpenAPIStub, flashduty: FlashdutyStub) -> dict[str, str]:
    return {
        "FLASHDUTY_INTEGRATION_KEY": KEY,
        "FLASHDUTY_PUSH_URL": flashduty.url,
        "FLASHDUTY_APP_KEY": APP_KEY,
        "FLASHDUTY_API_URL": flashduty.origin,
        "VOLCENGINE_ACCESS_KEY": ACCESS_KEY,
        "VOLCENGINE_SECRET_KEY": SECRET_KEY,
        "VOLCENGINE_OPENAPI_ENDPOINT": openapi.origin,
    }


def _converge(timeout: str, seconds: float) -> tuple:
    """Timer runs as the platform starts them, told `seconds` (the timer's payload on veFaaS, the
    context's time left on Lambda), until Flashduty matches or RUNS have run."""
    openapi, flashduty = OpenAPIStub().start(), FlashdutyStub().start()  # Flashduty's own limits
    try:
        policy = openapi.add_alarm_policy("cpu-high")
        openapi.webhooks["1"] = {"Id": "1", "Name": reconcile.DEFAULT_WEBHOOK, "Url": "https://relay.example/"}
        openapi.webhooks["1"].update(Type="custom", RuleIds=[policy["Id"]], EventRuleIds=[])
        account = accounts.busy(
            openapi, flashduty, policy, KEY, on=ON, lost_firings=LOST_FIRINGS, lost_recoveries=LOST_RECOVERIES
        )
        openapi.delays["ListAlertGroup"] = PAGE_SECONDS
        environ = _environ(openapi, flashduty)
        codes: list[int] = []
        matched = float("nan")
        while len(codes) < RUNS:
            if codes:
                flashduty.age_alerts(int(TIMER_EVERY))  # the 5 minutes to the next run
            started = time.monotonic()
            try:
                codes.append(reconcile.timer(environ, seconds)["exit_code"])
            except reconcile.CannotRun:
                codes.append(2)
            if account.matched(flashduty):
                last = max((r.at for r in flashduty.received), default=started)
                matched = (len(codes) - 1) * TIMER_EVERY + max(0.0, last - started)
                break
    finally:
        openapi.stop()
        flashduty.stop()
    return timeout, reconcile.timer_seconds(seconds), f"{len(codes)} ({', '.join(map(str, codes))})", matched


if __name__ == "__main__":
    run()
