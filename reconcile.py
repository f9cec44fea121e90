"""Reconcile Flashduty with Cloud Monitor's alarm history: `python -m reconcile`.

Callbacks are edge-triggered and Volcengine retries one only 3 times, so a relay that was out of
reach loses every firing and recovery of that time. Cloud Monitor keeps the state: ListAlertGroup
lists each alarm (alert group) per resource, with its rule, level, state, start and end. For the
alarm policies that call this relay's callback URL (RECONCILE_WEBHOOK, the deploy names it as the
function), each alarm that changed in the window becomes the event the relay would have sent for
its current state (mapping.alert_group: the same alert key, so that the two meet on one alert),
and is sent unless the relay already had an event of that alert since the change: the dead-letter
store's sent/ records (what the relay and the drain sent) say that, so reconcile needs the store,
and records what it sends there too. Running it twice, or beside a healthy relay, sends nothing.

Read-only credentials: VOLCENGINE_ACCESS_KEY / VOLCENGINE_SECRET_KEY / VOLCENGINE_REGION (Cloud
Monitor's ListWebhooks and ListAlertGroup). VOLCENGINE_OPENAPI_ENDPOINT as for the deploy.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import config
import flashduty
import logs
import mapping
import volcengine_api
from deadletter import Store, StoreError
from replay import duration, positive_seconds

DEFAULT_WEBHOOK = "volc-flashduty-relay"
DEFAULT_SINCE = timedelta(minutes=30)
PAGE_SIZE = 100
GROUP_LIMIT = 5000  # ListAlertGroup gives at most this many entries for one query: a wider window is split
MIN_WINDOW = timedelta(minutes=2)  # a window under one minute would mean "the last 7 days" to the API
TIMER_SECONDS = 240.0  # a timer every 5 minutes: a run ends well before the next
SETTLE_RESERVE_SECONDS = 5.0  # of a bounded run, kept for writing the record of what was sent
logger = logging.getLogger("relay.reconcile")


class ReconcileError(Exception):
    """What stopped the run, said so that the operator knows what to do (never a secret)."""


@dataclass
class Report:
    found: int = 0  # alarms in the window, the latest per alert
    sent: int = 0
    already: int = 0  # the relay had an event of the alert since the change
    filtered: int = 0  # below MIN_SEVERITY, as the relay would have dropped them
    left: int = 0  # not sent in this run: failed, or no time left
    unread: int = 0  # alarms the run had no time (or no query) to read: the next run reads them
    oldest_gap: datetime | None = None  # the oldest change this run gave Flashduty
    errors: list[str] = field(default_factory=list)

    def line(self, now: datetime) -> dict[str, Any]:
        gap = self.oldest_gap
        return {
            "message": "reconcile",
            "found": self.found,
            "sent": self.sent,
            "already_delivered": self.already,
            "filtered": self.filtered,
            "left": self.left,
            "unread": self.unread,
            "oldest_gap_closed": gap.isoformat() if gap else None,
            "oldest_gap_minutes": round((now - gap).total_seconds() / 60, 1) if gap else None,
            **({"errors": self.errors} if self.errors else {}),
        }


@dataclass
class CloudMonitor:
    """Cloud Monitor's read-only actions, through the official SDK."""

    api: Any
    models: Any

    def rule_ids(self, webhook: str) -> list[str]:
        """The alarm policies that call the callback URL (webhook) of this name."""
        found: list[str] = []
        fetch = functools.partial(self._webhooks, webhook)
        webhooks = volcengine_api.pages(
            lambda page: self._call("ListWebhooks", "list callback URLs", functools.partial(fetch, page))
        )
        for item in webhooks:
            if item.name == webhook:
                found += [r for r in item.rule_ids or [] if r not in found]
        return found

    def alert_groups(
        self, rule_ids: list[str], start: datetime, end: datetime, stop: float, report: Report
    ) -> dict[str, dict[str, Any]]:
        """Every alarm of these rules that changed in [start, end], by id, as the API spells its fields.
        A window with more than one query gives (GROUP_LIMIT) is read as two halves."""
        fetch = functools.partial(self._groups, rule_ids, start, end)
        first = self._call("ListAlertGroup", "list alarm history", functools.partial(fetch, 1))
        total = first.total_count or 0
        if total > GROUP_LIMIT and end - start >= 2 * MIN_WINDOW:
            middle = start + (end - start) / 2
            return {
                **self.alert_groups(rule_ids, start, middle, stop, report),
                **self.alert_groups(rule_ids, middle, end, stop, report),
            }
        groups = list(first.data or [])
        page = 1
        while len(groups) < min(total, GROUP_LIMIT) and time.monotonic() < stop:
            page += 1
            batch = self._call("ListAlertGroup", "list alarm history", functools.partial(fetch, page)).data or []
            if not batch:
                break
            groups += batch
        report.unread += max(0, total - len(groups))  # past the limit in a minimal window, or out of time
        return {g.id: volcengine_api.wire(g) for g in groups}

    def _webhooks(self, name: str, page: int) -> Any:
        return self.api.list_webhooks(self.models.ListWebhooksRequest(name=name, page_number=page, page_size=PAGE_SIZE))

    def _groups(self, rule_ids: list[str], start: datetime, end: datetime, page: int) -> Any:
        request = self.models.ListAlertGroupRequest(
            rule_ids=rule_ids,
            start_at=int(start.timestamp()),
            end_at=int(end.timestamp()),
            page_number=page,
            page_size=PAGE_SIZE,
        )
        return self.api.list_alert_group(request)

    def _call(self, action: str, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except self.models.ApiException as error:
            code, denied = volcengine_api.refusal(error)
            if denied:
                raise ReconcileError(
                    f"{what}: Cloud Monitor refused it ({code}). The key in VOLCENGINE_ACCESS_KEY needs the "
                    f"read-only action {action} (README: Reconcile -> permissions)."
                ) from None
            raise ReconcileError(f"{what} failed: {code}") from None
        except OSError as error:
            raise ReconcileError(
                f"{what}: cannot reach Volcengine ({type(error).__name__}); check the network, "
                "VOLCENGINE_REGION and VOLCENGINE_OPENAPI_ENDPOINT"
            ) from None


def reconcile(
    monitor: CloudMonitor,
    store: Store,
    settings: config.Settings,
    *,
    webhook: str,
    since: timedelta,
    max_seconds: float,
    dry_run: bool,
    now: datetime,
    out: TextIO,
) -> Report:
    """One run: what changed in the last `since`, sent unless the relay already had it."""
    stop = time.monotonic() + max_seconds - min(SETTLE_RESERVE_SECONDS, max_seconds / 4)
    integration_key = settings.integration_key_for(config.DEFAULT_ROUTE)
    if integration_key is None and not dry_run:
        raise ReconcileError("FLASHDUTY_INTEGRATION_KEY is not set: reconcile sends to the default integration")
    rule_ids = monitor.rule_ids(webhook)
    if not rule_ids:
        raise ReconcileError(
            f"no alarm policy calls the callback URL {webhook!r} (RECONCILE_WEBHOOK): nothing to reconcile. "
            "Run the deploy with --alarm-policies, or set RECONCILE_WEBHOOK to your callback URL's name."
        )
    report = Report()
    groups = list(monitor.alert_groups(rule_ids, now - since, now, stop, report).values())
    latest: dict[str, mapping.AlertGroup] = {}  # per alert: its latest alarm, the state it has now
    for raw in groups:
        group = mapping.alert_group(raw)
        key = mapping.translate(group.firing).events[0].get("alert_key", "")
        if key not in latest or (latest[key].started_at or now) <= (group.started_at or now):
            latest[key] = group
    report.found = len(latest)
    sent = store.sent()
    due: dict[str, tuple[datetime, list[mapping.Event]]] = {}  # per alert: when it last changed, what to send
    for key, group in latest.items():
        had = sent.latest.get(key)  # the relay's last event of the alert (sent, or stored for the drain)
        started = group.started_at or now
        changed = started if group.recovery is None else group.ended_at or now
        firing = mapping.reconciled(group.firing, settings.mapping)
        recovery = mapping.reconciled(group.recovery, settings.mapping) if group.recovery is not None else None
        chain = [e for e in (firing if had is None or had < started else None, recovery) if e is not None]
        if had is not None and had >= changed:
            report.already += 1
        elif not chain:
            report.filtered += 1
        else:
            due[key] = (changed, chain)
    print(
        f"{len(groups)} alarms of {len(rule_ids)} alarm policies in the last {since}: {report.found} alerts, "
        f"{report.already} already with the relay, {len(due)} to send",
        file=out,
    )
    if dry_run:
        for changed, events in due.values():
            for event in events:
                print(f"  would send {event['event_status']} {event['title_rule']} (changed {changed})", file=out)
        report.left = len(due)
        return report
    if due and integration_key is not None:
        chains = sorted(due.items(), key=lambda item: item[1][0])  # the oldest gap first
        events = [event for _, (_, chain) in chains for event in chain]
        outcomes = flashduty.deliver(
            events,
            push_url=settings.push_url,
            integration_key=integration_key,
            deadline=stop,
            concurrency=settings.concurrency,
            limits=settings.limits,
        )
        failed = {o.alert_key for o in outcomes if not o.delivered}
        delivered = {key: changed for key, (changed, _) in due.items() if key not in failed}
        report.errors = sorted({o.cause for o in outcomes if not o.delivered})
        if delivered:
            store.record_changes(delivered, now)
            report.oldest_gap = min(delivered.values())
        report.sent = sum(o.delivered for o in outcomes)
        report.left = len(due) - len(delivered)
    if report.unread:
        print(f"  {report.unread} alarms not read in this run (time, or more than one query gives)", file=out)
    print(f"done: {report.sent} events sent, {report.left} alerts left for the next run", file=out)
    return report


def run(environ: Mapping[str, str], *, since: timedelta, max_seconds: float, dry_run: bool, out: TextIO) -> int:
    """0 when everything found was sent or already with the relay, 1 when some is left, 2 when it cannot run."""
    now = datetime.now(UTC)
    try:
        settings = config.load(environ)
        endpoint = volcengine_api.endpoint(environ)
    except (config.ConfigError, ValueError) as error:
        print(f"reconcile: {error}", file=out)
        return 2
    access_key, secret_key = environ.get("VOLCENGINE_ACCESS_KEY"), environ.get("VOLCENGINE_SECRET_KEY")
    if not (access_key and secret_key):
        print(
            "reconcile: set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY (a read-only Cloud Monitor key)", file=out
        )
        return 2
    if settings.deadletter is None:
        print(
            "reconcile: DEADLETTER_URI is not set: the store's records of what the relay sent are how "
            "reconcile knows what Flashduty already has",
            file=out,
        )
        return 2
    import volcenginesdkcloudmonitor  # deferred: the callback path never needs it

    client = volcengine_api.client(access_key, secret_key, environ.get("VOLCENGINE_REGION", "cn-beijing"), endpoint)
    monitor = CloudMonitor(
        volcenginesdkcloudmonitor.CLOUDMONITORApi(client), volcengine_api.models(volcenginesdkcloudmonitor)
    )
    try:
        report = reconcile(
            monitor,
            Store(settings.deadletter),
            settings,
            webhook=environ.get("RECONCILE_WEBHOOK", "").strip() or DEFAULT_WEBHOOK,
            since=since,
            max_seconds=max_seconds,
            dry_run=dry_run,
            now=now,
            out=out,
        )
    except (ReconcileError, StoreError) as error:
        print(f"reconcile: {error}", file=out)
        logger.error(json.dumps({"message": "reconcile", "exit_code": 2, "error": str(error)}))
        return 2
    code = 1 if report.left or report.unread else 0
    logger.info(json.dumps({**report.line(now), "exit_code": code}, ensure_ascii=False))
    return code


def timer(environ: Mapping[str, str], seconds_left: float | None = None) -> dict[str, Any]:
    """A bounded run for a timer trigger: what it printed and how it ended."""
    seconds = TIMER_SECONDS if seconds_left is None else min(TIMER_SECONDS, max(1.0, seconds_left - 5.0))
    out = io.StringIO()
    code = run(environ, since=DEFAULT_SINCE, max_seconds=seconds, dry_run=False, out=out)
    return {"exit_code": code, "output": out.getvalue().splitlines()}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconcile", description=__doc__.splitlines()[0])
    parser.add_argument("--since", type=duration, default=DEFAULT_SINCE, help="the window: 30m (default), 2h, 1d")
    parser.add_argument(
        "--max-seconds", type=positive_seconds, default=TIMER_SECONDS, help="stop within this many seconds"
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be sent; send and record nothing")
    args = parser.parse_args(argv)
    logs.configure()  # the run's summary is also one JSON line on stderr
    return run(os.environ, since=args.since, max_seconds=args.max_seconds, dry_run=args.dry_run, out=out or sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
