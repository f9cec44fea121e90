"""Reconcile at full size: 6,000 alarms whose firings were all lost, Cloud Monitor answering each
ListAlertGroup page in 0.4 s, Flashduty at its real limits (100 a second, 1,000 a minute), and timer
runs of 240 s every 5 minutes, as the deploy schedules them.

The figure is the time until Flashduty holds all 6,000 alerts, beside the floor Flashduty's push
limits set (6,000 events at 1,000 a minute: 6 minutes).
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import reconcile
from bench.common import table
from tests.support.flashduty import APP_KEY, Limits, stub_process
from tests.support.openapi import ACCESS_KEY, SECRET_KEY, OpenAPIStub

ALARMS = 6000
PAGE_SECONDS = 0.4
TIMER_EVERY = 300.0
LIMITS = Limits()  # Flashduty's own: 100 a second, 1,000 a minute


def run() -> None:
    openapi = OpenAPIStub().start()
    try:
        policy = openapi.add_alarm_policy("cpu-high")
        openapi.webhooks["1"] = {"Id": "1", "Name": reconcile.DEFAULT_WEBHOOK, "Url": "https://relay.example/"}
        openapi.webhooks["1"].update(Type="custom", RuleIds=[policy["Id"]], EventRuleIds=[])
        now = datetime.now(UTC)
        for n in range(ALARMS):
            openapi.add_alert_group(policy, f"i-{n:05d}", int((now - timedelta(minutes=29 - n / 300)).timestamp()))
        openapi.delays["ListAlertGroup"] = PAGE_SECONDS
        with stub_process(limits=LIMITS) as push_url:
            environ = {
                "FLASHDUTY_INTEGRATION_KEY": "fd-bench-key",
                "FLASHDUTY_PUSH_URL": push_url,
                "FLASHDUTY_APP_KEY": APP_KEY,
                "FLASHDUTY_API_URL": push_url.split("/event/")[0],
                "VOLCENGINE_ACCESS_KEY": ACCESS_KEY,
                "VOLCENGINE_SECRET_KEY": SECRET_KEY,
                "VOLCENGINE_OPENAPI_ENDPOINT": openapi.origin,
            }
            started, runs, codes = time.monotonic(), 0, []
            while len(_accepted(push_url)) < ALARMS and runs < 4:
                time.sleep(max(0.0, started + runs * TIMER_EVERY - time.monotonic()))  # the timer's schedule
                codes.append(reconcile.timer(environ)["exit_code"])
                runs += 1
            seen = json.loads(urllib.request.urlopen(push_url, timeout=10).read())
    finally:
        openapi.stop()
    keys = {event["alert_key"] for event in seen["accepted"]}
    matched = max(seen["arrivals"]) - started if len(keys) >= ALARMS else float("nan")
    floor = ALARMS / LIMITS.per_minute * LIMITS.minute_seconds
    table(
        f"Reconcile: {ALARMS:,} lost firings, {PAGE_SECONDS} s per ListAlertGroup page, 240 s timer runs every 5 min",
        ("alerts in Flashduty", "timer runs (exit codes)", "until Flashduty matches (s)", "floor (s)", "ratio"),
        [(f"{len(keys):,}", f"{runs} ({', '.join(map(str, codes))})", matched, floor, matched / floor)],
    )


def _accepted(push_url: str) -> list[dict]:
    return json.loads(urllib.request.urlopen(push_url, timeout=10).read())["accepted"]


if __name__ == "__main__":
    run()
