"""Reconcile Flashduty with Cloud Monitor, reading both: `python -m reconcile`.

Callbacks are edge-triggered and Volcengine retries one only 3 times, so a relay out of reach loses
firings and recoveries. Reconcile asks both services what they hold and sends what makes Flashduty
match Cloud Monitor:

1. Cloud Monitor: the relay's callback URLs (ListWebhooks: the one named RECONCILE_WEBHOOK and those
   on the same host) name the alarm policies and, by their path, the route (ROUTES) each feeds.
   ListRules gives the policies' project and tags; ListAlertGroup the alarms that are on now
   (AlertStates alerting, however long ago they started: those triggered within --since first) and
   those triggered within --since. The event rules calling them (ListEventRules) and their events
   (ListEvents) are read as the Event Center callbacks those rules would have sent (event_rules.py).
2. Flashduty (its Open API, FLASHDUTY_APP_KEY): the relay's open alerts of those policies, and the
   alerts of every alarm's key (the relay's alert key, so the two meet). Each route's integration is
   learned from where those alerts are.
3. Per alarm, and per open alert no alarm read accounts for, `decisions.decide` (the decision table):
   an event that changes what on-call sees, an Ok above all, only on positive evidence, and never one
   whose effect Flashduty already shows. An Ok goes only where Cloud Monitor shows the alarm ended:
   its own alert group says so, or (for an alert no alarm read accounts for) a complete read of its
   policy and resource's alarms has none of its key on and holds its own alert group, ended. A read
   is complete only where the API marks its end (a short page), never by a count. An alarm that
   cannot be read keeps every alert of its policy and resource as it is, said in the report.

The parts read alone: CloudMonitor, AlarmReader and EventReader (Cloud Monitor's side), AlertReader and
Integrations (Flashduty's), decisions.decide (deciding), Sender (sending); Run ties them together.
Each page of alarms is decided and sent as it comes, the next few being read meanwhile; lost
firings (the alarms on, the newest first) before lost recoveries; then the events' lifecycles (an
EventReader's). A bounded run stops in time and the next run carries on. Read-only keys:
VOLCENGINE_ACCESS_KEY / VOLCENGINE_SECRET_KEY (ListWebhooks, ListRules, ListAlertGroup,
ListEventRules, ListEvents) and FLASHDUTY_APP_KEY (Channels Read).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import itertools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO
from urllib.parse import urlsplit

import alert_groups
import config
import event_center
import event_rules
import flashduty
import logs
import mapping
import metric_alarms
import volcengine_api
from clocks import Clock
from decisions import (
    ACTIONS,
    BY_HAND,
    CHANGED,
    CLOCK_SKEW,
    ESCALATED,
    KEPT,
    LOST_FIRING,
    LOST_RECOVERY,
    MATCHING,
    MISSED,
    UNPROVEN,
    UNREADABLE,
    Alarm,
    Known,
    decide,
)
from flashduty_alerts import DEFAULT_API_URL, Alert, AlertReader, ReadError
from replay import duration, positive_seconds

DEFAULT_WEBHOOK = "volc-flashduty-relay"
DEFAULT_SINCE = timedelta(minutes=30)
# How far back an alarm that is still on is looked for: ListAlertGroup documents no widest window.
HISTORY = timedelta(days=365)
PAGE_SIZE = 100  # the largest ListAlertGroup page is not documented: the common 100
# ListAlertGroup pages on their way at once. Cloud Monitor documents no rate limit for it; a 429 is
# asked again (flashduty.read_retry). 5,000 alarms on are 50 pages: at 0.6 s a page, 4 s instead of 30.
PAGES_AT_ONCE = 8
STALE_BATCH = 4 * PAGES_AT_ONCE  # policies and resources whose stale alerts are read, then closed, at a time
GROUP_LIMIT = 5000  # ListAlertGroup gives at most this many entries for one query: a wider window is split
MIN_WINDOW = timedelta(minutes=2)  # a window under one minute would mean "the last 7 days" to the API
TIMER_SECONDS = 240.0  # a timer every 5 minutes: a run ends well before the next
# veFaaS's request timeout when a function sets none: all a timer run told nothing may count on.
PLATFORM_DEFAULT_SECONDS = 30.0
CALL_TIMEOUT_SECONDS = 20.0  # one OpenAPI call; never past the run's deadline
logger = logging.getLogger("relay.reconcile")
KEPT_BECAUSE = {
    UNREADABLE: "an alarm of its policy and resource could not be read",
    UNPROVEN: "Cloud Monitor does not show its alarm ended (docs/reconcile.md: the guarantee)",
}


class ReconcileError(Exception):
    """What stopped the run, said so that the operator knows what to do (never a secret)."""


class CannotRun(Exception):
    """A timer run that could do nothing (exit 2): its one line, never a secret."""


@dataclass
class Report:
    on: int = 0  # alarms on in Cloud Monitor
    ended: int = 0  # alarms triggered and ended within --since, not on now
    events: int = 0  # Event Center events of the relay's event rules read
    open_in_flashduty: int = 0  # the relay's open alerts of the reconciled policies
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    stale_closed: int = 0  # open in Flashduty, on nowhere in Cloud Monitor: its Ok sent
    sent: int = 0  # events Flashduty accepted
    left: int = 0  # alerts whose events were not all delivered: the next run's
    unread: int = 0  # alarms or alerts not read in this run: the next run's
    errors: list[str] = field(default_factory=list)

    def line(self) -> dict[str, Any]:
        return {
            "message": "reconcile",
            "on_in_cloud_monitor": self.on,
            "ended_in_window": self.ended,
            "events_read": self.events,
            "open_in_flashduty": self.open_in_flashduty,
            **self.found,
            "stale_closed": self.stale_closed,
            "sent": self.sent,
            "left": self.left,
            "unread": self.unread,
            **({"errors": self.errors} if self.errors else {}),
        }


@dataclass
class CloudMonitor:
    """Cloud Monitor's read-only actions, through the official SDK, within the run's deadline."""

    api: Any
    models: Any
    universal: Any  # the SDK's UniversalApi: actions called by name, their answers as JSON
    deadline: float
    clock: Clock = field(default_factory=lambda: Clock("Cloud Monitor"))  # its answers' Date headers

    def wiring(
        self, webhook: str, settings: config.Settings, report: Report
    ) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        """Each alarm policy, and each event rule, that calls the relay, and the routes it feeds: from
        the callback URL named `webhook` and every callback URL on its host (other routes' paths)."""
        hooks = self._pages(
            "ListWebhooks",
            "list callback URLs",
            lambda page: self.models.ListWebhooksRequest(page_number=page, page_size=PAGE_SIZE),
        )
        hosts = {urlsplit(h.url or "").netloc for h in hooks if h.name == webhook}
        routes: dict[str, set[str]] = {}
        event_routes: dict[str, set[str]] = {}
        for hook in hooks:
            url = urlsplit(hook.url or "")  # never printed: its query may hold the callback token
            if url.netloc not in hosts or not (hook.rule_ids or hook.event_rule_ids):
                continue
            route = settings.route_of(url.path)
            if route is None:
                report.errors.append(f"callback URL {hook.name!r} names a route ROUTES does not have: not reconciled")
                continue
            for table, ids in ((routes, hook.rule_ids), (event_routes, hook.event_rule_ids)):
                for rule_id in ids or []:
                    table.setdefault(rule_id, set()).add(route)
        return routes, event_routes

    def policies(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """These alarm policies as ListRules gives them (their project and tags)."""
        rules = self._pages(
            "ListRules",
            "list alarm policies",
            lambda page: self.models.ListRulesRequest(page_number=page, page_size=PAGE_SIZE),
        )
        return {rule.id: volcengine_api.wire(rule) for rule in rules if rule.id in ids}

    def event_rules(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        """These event rules as ListEventRules gives them (their source, types, level, pattern, hours),
        as JSON: the SDK's models would drop or choke on what they do not foresee."""
        rules: list[dict[str, Any]] = []
        for page in itertools.count(1):
            answer = self._call_json("ListEventRules", "list event rules", {"PageNumber": page, "PageSize": PAGE_SIZE})
            data = [r for r in answer.get("Data") or [] if isinstance(r, dict)]
            rules += data
            if not data or (len(data) < PAGE_SIZE and len(rules) >= int(answer.get("TotalCount") or 0)):
                break
        return {str(r.get("RuleId")): r for r in rules if str(r.get("RuleId")) in ids}

    def events(
        self, sources: list[str], types: list[str], start: datetime, end: datetime
    ) -> Iterator[list[dict[str, Any]]]:
        """The events of these sources and types that happened in [start, end], oldest first, a page at
        a time, as the API spells them. As with alarms, a read ends at an empty page, or a short one
        with no more than TotalCount read."""
        read = 0
        for page in itertools.count(1):
            body = {
                "Source": sources,
                "EventType": types,
                "StartTime": int(start.timestamp()),
                "EndTime": int(end.timestamp()),
                "OrderBy": "HappenTime",
                "Asc": True,
                "PageNumber": page,
                "PageSize": PAGE_SIZE,
            }
            answer = self._call_json("ListEvents", "list events", body)
            batch = [e for e in answer.get("Data") or [] if isinstance(e, dict)]
            read += len(batch)
            if batch:
                yield batch
            # Its largest page is not documented: a page is short against the size the answer says it served.
            served = min(PAGE_SIZE, int(answer.get("PageSize") or PAGE_SIZE))
            if not batch or (len(batch) < served and read >= int(answer.get("TotalCount") or 0)):
                return

    def groups(
        self,
        rule_ids: list[str],
        start: datetime,
        end: datetime,
        states: list[str],
        report: Report,
        resource_id: str = "",
    ) -> Iterator[list[dict[str, Any]]]:
        """The alarms of these policies (of this resource, if given) triggered in [start, end], a page
        at a time, as the API spells them, the next pages read meanwhile (_read_ahead). A window with
        more than one query gives (GROUP_LIMIT) is read as two halves.

        A read is complete only where the API itself marks its end: a page shorter than PAGE_SIZE (or
        empty). TotalCount alone is no evidence (an answer may leave it out, or give one page's count):
        a read the limit stops before a short page counts in `report.unread`, so no Ok is sent on it."""

        def fetch(page: int) -> Any:
            request = self.models.ListAlertGroupRequest(
                rule_ids=rule_ids,
                resource_id=resource_id or None,
                start_at=int(start.timestamp()),
                end_at=int(end.timestamp()),
                alert_states=states or None,
                page_number=page,
                page_size=PAGE_SIZE,
            )
            return self._call("ListAlertGroup", "list alarm history", request)

        first = fetch(1)
        total = first.total_count or 0
        if total > GROUP_LIMIT and end - start >= 2 * MIN_WINDOW:
            middle = start + (end - start) / 2
            yield from self.groups(rule_ids, start, middle, states, report, resource_id)
            yield from self.groups(rule_ids, middle, end, states, report, resource_id)
            return
        read = 0
        # Read ahead as far as the limit allows. A page shorter than asked for ends the read, unless
        # TotalCount says there is more (an API that serves smaller pages than asked: read on to an
        # empty page); an empty page ends it, and a TotalCount above what was read then leaves it
        # incomplete. TotalCount never proves a read complete; it may show one is not.
        for response in itertools.chain([first], _read_ahead(fetch, range(2, GROUP_LIMIT // PAGE_SIZE + 1))):
            batch = list(response.data or [])
            read += len(batch)
            if batch:
                yield [volcengine_api.wire(g) for g in batch]
            if not batch or (len(batch) < PAGE_SIZE and read >= total):
                report.unread += max(0, total - read)
                return
        report.unread += max(1, total - read)  # past the limit in a minimal window

    def _pages(self, action: str, what: str, request_of: Callable[[int], Any]) -> list[Any]:
        return volcengine_api.pages(lambda page: self._call(action, what, request_of(page)))

    def _call(self, action: str, what: str, request: Any) -> Any:
        """The SDK's answer to one action (its `<action>_with_http_info`, which gives the headers too)."""
        method = getattr(self.api, f"{re.sub(r'(?<!^)(?=[A-Z])', '_', action).lower()}_with_http_info")
        return self._send(action, what, lambda timeout: method(request, _request_timeout=timeout))

    def _call_json(self, action: str, what: str, body: dict[str, Any]) -> dict[str, Any]:
        """One action called by name with a JSON body (the SDK's universal API), its Result as JSON."""
        info = self.models.UniversalInfo(
            method="POST", service="cloudmonitor", version="2018-01-01", action=action, content_type="application/json"
        )
        answer = self._send(
            action, what, lambda timeout: self.universal.do_call_with_http_info(info, body, _request_timeout=timeout)
        )
        if not isinstance(answer, dict):
            raise ReconcileError(f"{what} ({action}): Cloud Monitor's answer is not as documented")
        return answer

    def _send(self, action: str, what: str, send: Callable[[tuple[float, float]], Any]) -> Any:
        """One call within the run's deadline, its answer's Date header heard by the clock."""
        import urllib3

        remaining = min(CALL_TIMEOUT_SECONDS, self.deadline - time.monotonic())
        if remaining < 1.0:
            raise TimeoutError(f"no time left to {what}")
        with flashduty.watched(self.deadline) as progress:  # an answer still arriving then is cut off
            try:
                data, _, headers = send((min(5.0, remaining), remaining))
                self.clock.heard(headers.get("Date"), time.time())
                return data
            except self.models.ApiException as error:
                code, denied = volcengine_api.refusal(error)
                if denied:
                    raise ReconcileError(
                        f"{what}: Cloud Monitor refused it ({code}). The key in VOLCENGINE_ACCESS_KEY needs the "
                        f"read-only action {action} (docs/reconcile.md: least privilege)."
                    ) from None
                raise ReconcileError(f"{what} ({action}) failed: {code}") from None
            except (urllib3.exceptions.HTTPError, OSError) as error:  # its text may hold the URL
                raise _unanswered(what, action, error) from None
            except (AttributeError, TypeError, ValueError, KeyError) as error:  # the SDK's model could not read it
                raise ReconcileError(
                    f"{what} ({action}): Cloud Monitor's answer is not as documented ({type(error).__name__})"
                ) from None
            finally:
                if progress.cut:  # shut mid-answer, perhaps mid-headers: whatever came of it is not the answer
                    raise TimeoutError(f"{action} was still answering at the run's deadline: cut off")


def _read_ahead(fetch: Callable[[int], Any], pages: Iterable[int]) -> Iterator[Any]:
    """fetch(page) of each page, in order, PAGES_AT_ONCE of them on their way at once: while one page
    is decided and sent, the next are read. Those not asked for yet when it stops never are."""
    ahead = iter(pages)
    pool = ThreadPoolExecutor(PAGES_AT_ONCE, thread_name_prefix="reconcile-read")
    try:
        pending = collections.deque(pool.submit(fetch, page) for page in itertools.islice(ahead, PAGES_AT_ONCE))
        while pending:
            answer = pending.popleft().result()  # its TimeoutError or ReconcileError, raised here
            pending.extend(pool.submit(fetch, page) for page in itertools.islice(ahead, 1))
            yield answer
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a read under way ends by the run's deadline


def _unanswered(what: str, action: str, error: Exception) -> Exception:
    """A call that got no answer: the run's time ran out (TimeoutError), or it never reached
    Volcengine (its kind only)."""
    import urllib3

    reason = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) else error
    if isinstance(reason, flashduty.PastDeadline):
        return TimeoutError(f"{action} {reason}")
    slow = isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError))
    if slow and not isinstance(reason, urllib3.exceptions.NewConnectionError):  # urllib3's kind of timeout
        return TimeoutError(f"{action} did not answer in time")
    return ReconcileError(
        f"{what} ({action}): cannot reach Volcengine ({type(reason).__name__}); check the network, "
        "VOLCENGINE_REGION and VOLCENGINE_OPENAPI_ENDPOINT"
    )


# Reading Cloud Monitor's alarms ---------------------------------------------------------------------


@dataclass
class AlarmReader:
    """ListAlertGroup's entries as the alarms the relay would have sent, per route; and the policy and
    resource of each entry that cannot be read, so that no Ok goes to any alert of theirs this run."""

    routes: dict[str, set[str]]  # alarm policy id: the routes it feeds
    policies: dict[str, dict[str, Any]]
    options: mapping.Options
    report: Report
    unreadable: set[tuple[str, str]] = field(default_factory=set)  # (policy, resource); resource "": any

    def alarms(self, page: list[dict[str, Any]], on: bool = False) -> list[Alarm]:
        """A page of ListAlertGroup as alarms per route, the latest per (route, key). `on`: the page
        answers AlertStates=alerting, so each of its alarms is on, whatever its state's spelling says."""
        latest: dict[tuple[str, str], Alarm] = {}
        for raw in page:
            for alarm in self.of(raw):
                if on:
                    alarm = dataclasses.replace(alarm, ended=None)
                known = latest.get((alarm.route, alarm.key))
                if known is None or known.started <= alarm.started:
                    latest[(alarm.route, alarm.key)] = alarm
        return list(latest.values())

    def of(self, raw: dict[str, Any]) -> list[Alarm]:
        """One entry as an alarm of each route its policy feeds; none when it cannot be read (said in
        the report)."""
        rule_id = str(raw.get("RuleId") or "")
        try:
            group = alert_groups.alert_group(raw, self.policies.get(rule_id))
        except ValueError as error:
            self.unreadable.add((rule_id, str(raw.get("ResourceId") or "")))
            self.report.errors.append(f"alarm {str(raw.get('Id'))[:40]!r} left out: {error}")
            return []
        firings = alert_groups.reconciled(group.firing, self.options)
        paged = bool(firings)  # MIN_SEVERITY drops it, as the relay does
        (firing,) = firings or alert_groups.reconciled(group.firing, self.options._replace(min_severity=mapping.INFO))
        oks = alert_groups.reconciled(group.recovery, self.options)
        before: mapping.Event = {**oks[0], "alert_key": group.key_before_levels}
        # And the alert 0.3 opened for it, under its key of then: known, so never taken for stale.
        closing = {before["alert_key"]: before, **{e["alert_key"]: e for e in oks}}
        return [
            Alarm(route, firing["alert_key"], group.started_at, group.ended_at, firing, closing, paged)
            for route in sorted(self.routes.get(rule_id, ()))
        ]

    def cannot_read(self, labels: Mapping[str, str]) -> bool:
        """Whether an alarm of the policy and resource these labels name could not be read."""
        rule_id = labels.get("rule_id", "")
        return bool({(rule_id, ""), (rule_id, labels.get("resource_id", ""))} & self.unreadable)


@dataclass
class EventReader:
    """ListEvents' events as the Event Center callbacks the relay's event rules would have sent, per
    route and lifecycle (an event type on a resource): one alarm each, for decisions.decide. Its last
    event says what Flashduty should show: an opening (or an incident) on, an ending ended."""

    routes: dict[str, set[str]]  # event rule id: the routes it feeds
    rules: dict[str, dict[str, Any]]  # event rule id: the rule, as ListEventRules gives it
    options: mapping.Options
    report: Report
    unsure: collections.Counter[str] = field(default_factory=collections.Counter)  # why, how many events

    def alarms(self, events: Iterable[dict[str, Any]]) -> list[Alarm]:
        lifecycles: dict[tuple[str, tuple[str, ...]], list[tuple[datetime, bool, dict[str, Any]]]] = {}
        by_route: dict[str, list[dict[str, Any]]] = {}
        for rule_id, rule in self.rules.items():
            for route in self.routes.get(rule_id, ()):
                by_route.setdefault(route, []).append(rule)
        for event in events:
            try:
                happened = alert_groups.moment(event.get("HappenTime"))  # seconds or milliseconds
            except ValueError:
                happened = None
            if happened is None:
                self.unsure[f"an event of {str(event.get('EventType'))[:80]} whose HappenTime cannot be read"] += 1
                continue
            ending = event_center.is_ending(str(event.get("EventType") or ""), self.options)
            for route, rules in sorted(by_route.items()):
                match = event_rules.matching(event, rules, happened)
                self.unsure.update(match.unsure)
                if match.rules:
                    body = event_rules.callback(event, match.rules, happened)
                    keys = tuple(event_center.lifecycle_keys(body, self.options))
                    lifecycles.setdefault((route, keys), []).append((happened, ending, body))
        # In time order; within one second (HappenTime's grain), an opening before its ending.
        return [
            self._alarm(route, keys, [(at, body) for at, _, body in sorted(bodies, key=lambda b: b[:2])])
            for (route, keys), bodies in lifecycles.items()
        ]

    def said(self) -> None:
        """What it could not judge, a line per reason with how many events (not a line per event)."""
        for reason, count in sorted(self.unsure.items()):
            self.report.errors.append(f"{count} event(s) not judged: {reason}")

    def _alarm(self, route: str, keys: tuple[str, ...], bodies: list[tuple[datetime, dict[str, Any]]]) -> Alarm:
        """One lifecycle's alarm: on since its last opening, or ended by its last event. The read holds
        all of it since its alert opened (complete): see _events."""
        every_level = self.options._replace(min_severity=mapping.INFO)
        translated = [(at, alert_groups.reconciled(body, every_level)[0], body) for at, body in bodies]
        at, last, _ = translated[-1]
        if last["event_status"] != mapping.OK:
            oks: dict[str, mapping.Event] = {k: {**last, "event_status": mapping.OK, "alert_key": k} for k in keys}
            return Alarm(route, last["alert_key"], at, None, last, oks, self._paged(bodies[-1][1]), complete=True)
        closing: dict[str, mapping.Event] = {k: {**last, "alert_key": k} for k in keys}
        # The firing that opened it, where the read holds it; else its Ok stands in, and is never sent.
        opened = [(t, e, b) for t, e, b in translated if e["event_status"] != mapping.OK]
        started, firing, body = opened[-1] if opened else translated[-1]
        paged = bool(opened) and self._paged(body)
        return Alarm(route, firing["alert_key"], started, at, firing, closing, paged, complete=True)

    def _paged(self, body: dict[str, Any]) -> bool:
        """Whether the relay sends this callback's firing (MIN_SEVERITY)."""
        return bool(alert_groups.reconciled(body, self.options))


# Reading Flashduty's side ---------------------------------------------------------------------------


@dataclass
class Integrations:
    """Which Flashduty integration is each route's: learned from where the relay's alerts are, as
    Flashduty's documented answers do not say which integration a key is."""

    settings: config.Settings
    routes: dict[str, set[str]]  # alarm policy id: the routes it feeds
    event_routes: dict[str, set[str]] = field(default_factory=dict)  # event rule id: the routes it feeds
    seen: dict[str, tuple[datetime, int]] = field(default_factory=dict)  # route: (seen, integration id)

    def ours(self, alert: Alert) -> bool:
        """An alert the relay made for a reconciled alarm policy (a metric or no-data alert) or event
        rule (an event alert), and pushed (where it says: its stamp) to one of this deployment's
        integrations."""
        kind = alert.labels.get("kind")
        return (
            alert.labels.get("source") == "volcengine"
            and (kind in metric_alarms.RECOVERY_TYPES or kind == event_center.EVENT)
            and any(self.mine(route, alert) for route in self.rule_routes(alert.labels))
        )

    def rule_routes(self, labels: Mapping[str, str]) -> set[str]:
        """The routes the rule that made an alert feeds (its `rule_id`: a policy's, or an event rule's)."""
        table = self.event_routes if labels.get("kind") == event_center.EVENT else self.routes
        return table.get(labels.get("rule_id", ""), set())

    def mine(self, route: str, alert: Alert) -> bool:
        """Whether this alert may be of this route's integration: its stamp (flashduty.STAMP_LABEL) is
        the route's key's; an alert pushed before the stamp has none, and is judged by where it is."""
        stamp = alert.labels.get(flashduty.STAMP_LABEL)
        key = self.settings.integration_key_for(route)
        return stamp is None or (key is not None and stamp == flashduty.stamp(key))

    def learn_stamped(self, alert: Alert) -> None:
        """A stamped alert is, for certain, of the integration of each route of its policy whose key
        has that stamp."""
        if flashduty.STAMP_LABEL in alert.labels:
            for route in self.rule_routes(alert.labels):
                self.learn(route, alert)

    def learn(self, route: str, alert: Alert) -> None:
        """An alert of this route's: its integration is the route's (the latest seen wins, as after a
        route was moved to another integration). Another deployment's (another stamp) teaches nothing."""
        if not self.mine(route, alert):
            return
        seen = self.seen.get(route)
        if seen is None or seen[0] < alert.updated_at:
            self.seen[route] = (alert.updated_at, alert.integration_id)

    def routes_of(self, alert: Alert) -> list[str]:
        """The routes whose integration holds this alert; where none is known to, each route of its
        policy whose integration is not known yet (an Ok where nothing is open opens nothing)."""
        known = [r for r, (_, i) in self.seen.items() if i == alert.integration_id and self.mine(r, alert)]
        return known or sorted(r for r in self.rule_routes(alert.labels) if r not in self.seen and self.mine(r, alert))

    def theirs(self, alarm: Alarm, by_key: Mapping[str, Mapping[str, Alert]], routes: set[str]) -> list[Alert]:
        """Flashduty's alerts of this alarm's keys in its route's integration (where that is not known,
        in any integration no other route's key is). `routes`: the routes its key feeds."""
        integration = self.seen.get(alarm.route, (None, None))[1]
        key = self.settings.integration_key_for(alarm.route)
        others = {i for r, (_, i) in self.seen.items() if self.settings.integration_key_for(r) != key}
        theirs = [
            a
            for k in alarm.closing
            for a in by_key.get(k, {}).values()
            if self.mine(alarm.route, a)
            and (a.integration_id == integration or (integration is None and a.integration_id not in others))
        ]
        if alarm.ended is None and self._unsure(alarm, routes, theirs):
            # One policy feeds several routes whose integrations are not known: an open alert may be
            # another route's, so each such route gets the firing (it merges into one already open).
            theirs = [a for a in theirs if not a.active]
        return theirs

    def _unsure(self, alarm: Alarm, routes: set[str], alerts: Sequence[Alert]) -> bool:
        """Whether, of the routes this alarm's key feeds, those whose integration is not known yet may
        lack the open alert: fewer integrations hold one open than there are such routes."""
        unknown = {self.settings.integration_key_for(r) for r in routes if r not in self.seen}
        holding = {a.integration_id for a in alerts if a.active}
        return alarm.route not in self.seen and len(holding) < len(unknown)


# Sending ----------------------------------------------------------------------------------------------


@dataclass
class Sender:
    """Delivers what is due to each route's integration, within the run's deadline (nothing in a dry run)."""

    settings: config.Settings
    deadline: float
    dry_run: bool
    out: TextIO
    report: Report

    def send(self, due: dict[str, list[mapping.Event]]) -> set[str]:
        """Deliver what is due to each route; the alert keys not all delivered."""
        failed: set[str] = set()
        report = self.report
        for route, events in due.items():
            if not events:
                continue
            if self.dry_run:
                for event in events:
                    print(f"  would send {event['event_status']} {event['title_rule']} (route {route})", file=self.out)
                report.left += len({e["alert_key"] for e in events})
                continue
            integration_key = self.settings.integration_key_for(route)
            if integration_key is None:
                report.errors.append(f"route {route!r} has no integration key: set it (ROUTES)")
                report.left += len({e["alert_key"] for e in events})
                failed |= {e["alert_key"] for e in events}
                continue
            outcomes = flashduty.deliver(
                events,
                push_url=self.settings.push_url,
                integration_key=integration_key,
                deadline=self.deadline,
                concurrency=self.settings.concurrency,
                limits=self.settings.limits,
            )
            undelivered = {o.alert_key for o in outcomes if not o.delivered}
            report.sent += sum(o.delivered for o in outcomes)
            report.left += len(undelivered)
            report.errors += sorted({o.cause for o in outcomes if not o.delivered} - set(report.errors))
            failed |= undelivered
        return failed


# One run: each side read, each alarm and alert decided (decisions.decide), what is due sent ----------


@dataclass
class Run:
    """One reconcile run: its reads of both sides, and what it has decided and sent so far."""

    monitor: CloudMonitor
    reader: AlertReader
    cloud: AlarmReader
    integrations: Integrations
    sender: Sender
    report: Report
    on_keys: set[tuple[str, str]] = field(default_factory=set)  # (route, key) of every alert of an alarm on now
    handled: set[tuple[str, str]] = field(default_factory=set)
    blind: set[str] = field(default_factory=set)  # routes whose integration the APP key cannot see

    def ask(self, keys: Iterable[str], since: datetime) -> list[Alert]:
        """What Flashduty holds now of these alert keys, changed since (less the clocks' skew)."""
        return self.reader.alerts_of(sorted(set(keys)), since - CLOCK_SKEW, self.reader.clock.now() + CLOCK_SKEW)

    def settle(self, alarms: list[Alarm], read_at: datetime, known: Sequence[Alert] = ()) -> None:
        """Decide each alarm against what Flashduty holds of its keys now, and send what is due. An
        alarm that `known` (what Flashduty was seen to hold open) already shows matching is not asked
        about again: at thousands of alarms on, asking for all their keys would take the run's time."""
        decided = [d for d in self._decide(alarms, known, read_at) if d[1] == MATCHING] if known else []
        settled = {id(alarm) for alarm, _, _ in decided}
        rest = [alarm for alarm in alarms if id(alarm) not in settled]
        if rest:
            asked = self.ask((k for a in rest for k in a.closing), min(a.started for a in rest))
            decided += self._decide(rest, [*known, *asked], read_at)
        due: dict[str, list[list[mapping.Event]]] = {}
        for alarm, action, events in decided:
            self.found(action, alarm.firing["title_rule"])
            self.handled |= {(alarm.route, k) for k in alarm.closing}
            if events:
                due.setdefault(alarm.route, []).append(events)
        self.send(due)

    def send(self, due: dict[str, list[list[mapping.Event]]]) -> None:
        """Send each alarm's events (a list an alarm) to its route. To a route whose integration no alert
        read has shown yet, one alarm's go first (an alarm on's firing, which merges into an alert the
        relay opened, before a missed alarm's pair), and Flashduty is asked whether it shows them: if
        not, the APP key cannot see that integration's channel, nor what the relay delivered there, and
        nothing more goes to that route this run (said in the report)."""
        ready: dict[str, list[mapping.Event]] = {}
        for route, alarms in due.items():
            if route not in self.integrations.seen and route not in self.blind and not self.sender.dry_run:
                first, *alarms = sorted(alarms, key=len)
                self.probe(route, first)
            if route in self.blind:
                self.report.left += len({e["alert_key"] for events in alarms for e in events})
                continue
            ready[route] = [e for events in alarms for e in events]
        self.sender.send(ready)

    def probe(self, route: str, events: list[mapping.Event]) -> None:
        """Send one alarm's events to a route whose integration is not known, and learn it from where
        Flashduty shows them; where it shows none, the route is blind to the APP key."""
        sent_at = self.reader.clock.now()
        if self.sender.send({route: events}):
            return  # not delivered: no word on what the APP key sees
        shown = self.ask((e["alert_key"] for e in events), sent_at)
        if len({a.integration_id for a in shown}) == 1:
            self.integrations.learn(route, max(shown, key=lambda a: a.updated_at))
        elif not shown:
            self.blind.add(route)
            self.report.errors.append(
                f"route {route!r}: what reconcile just sent to its integration does not show in Flashduty's alert "
                "list: FLASHDUTY_APP_KEY cannot see that integration's channel, so what the relay delivered there "
                "is invisible to reconcile, and nothing more is sent to it. Give the APP key's role Channels Read "
                "on that channel (docs/reconcile.md: least privilege)"
            )

    def _decide(
        self, alarms: list[Alarm], alerts: Sequence[Alert], read_at: datetime
    ) -> list[tuple[Alarm, str, list[mapping.Event]]]:
        """Each alarm's decision against these alerts of Flashduty's."""
        routes_of_key: dict[str, set[str]] = {}
        for alarm in alarms:
            for alert_key in alarm.closing:
                routes_of_key.setdefault(alert_key, set()).add(alarm.route)
        for alert in alerts:
            self.integrations.learn_stamped(alert)
            if len(routes_of_key.get(alert.alert_key, ())) == 1:
                self.integrations.learn(next(iter(routes_of_key[alert.alert_key])), alert)
        by_key: dict[str, dict[str, Alert]] = {}
        for alert in alerts:  # the freshest record of each alert
            by_key.setdefault(alert.alert_key, {})[alert.alert_id] = alert
        decided = []
        for alarm in alarms:
            theirs = self.integrations.theirs(alarm, by_key, routes_of_key[alarm.key])
            known = Known(read_at, unreadable=self.cloud.cannot_read(alarm.firing.get("labels", {})))
            decided.append((alarm, *decide(alarm, theirs, known)))
        return decided

    def close_stale(self, open_alerts: list[Alert], read_at: datetime) -> None:
        """Each open alert of the relay's that no alarm read accounts for: its Ok where Cloud Monitor
        shows every alarm of its key ended, once Flashduty, asked again just before, says nothing
        changed it since Cloud Monitor was read."""
        seen = self.on_keys | self.handled
        stale = [
            (route, alert)
            for alert in open_alerts
            for route in self.integrations.routes_of(alert)
            if not any((r, alert.alert_key) in seen for r in self.integrations.routes_of(alert))
        ]
        # A batch of policies and resources at a time, each batch's Oks sent once its evidence is read:
        # a run out of time before the last has closed the first, and the next run the rest.
        by_source: dict[tuple[str, str], list[tuple[str, Alert]]] = {}
        for route, alert in stale:
            by_source.setdefault(_source(alert), []).append((route, alert))
        sources = sorted(by_source)
        for first in range(0, len(sources), STALE_BATCH):
            batch = [item for source in sources[first : first + STALE_BATCH] for item in by_source[source]]
            self._close_stale(batch, read_at)

    def _close_stale(self, stale: list[tuple[str, Alert]], read_at: datetime) -> None:
        if not stale:
            return
        shown_ended = self.shown_ended({alert.alert_id: alert for _, alert in stale}.values())
        asked = self.ask((alert.alert_key for _, alert in stale), min(alert.updated_at for _, alert in stale))
        due: dict[str, list[mapping.Event]] = {}
        closing: dict[str, Alert] = {}  # alert id: the alert (an alert of several routes is sent to each)
        decided: set[str] = set()
        for route, alert in stale:
            records = [a for a in asked if (a.alert_key, a.integration_id) == (alert.alert_key, alert.integration_id)]
            known = Known(read_at, self.cloud.cannot_read(alert.labels), alert.alert_id in shown_ended)
            action, events = decide(None, records or [alert], known)
            if alert.alert_id not in decided:
                decided.add(alert.alert_id)
                self.found(action, alert.title)
            if events:
                closing[alert.alert_id] = alert
                due.setdefault(route, []).extend(events)
        failed = self.sender.send(due)
        if self.sender.dry_run or not closing:
            return
        # An Ok closes an alert only in the integration its key pushes to: ask whether it did.
        closed_since = min(alert.updated_at for alert in closing.values())
        still_open = {a.alert_id for a in self.ask((a.alert_key for a in closing.values()), closed_since) if a.active}
        for alert in closing.values():
            if alert.alert_key in failed:
                continue
            if alert.alert_id in still_open:
                self.report.errors.append(
                    f"alert {alert.title[:80]!r} in integration {alert.integration_name!r} is still open after its "
                    "Ok: no route pushes to that integration now (was a route moved?): close it in Flashduty"
                )
            else:
                self.report.stale_closed += 1

    def shown_ended(self, alerts: Iterable[Alert]) -> set[str]:
        """The ids of these alerts whose every alarm Cloud Monitor shows ended: a complete read of their
        policy and resource's alarms (a year of them: ListAlertGroup by ResourceId) has none of their
        key on, and holds the alert's own alert group, where its labels name one."""
        by_source: dict[tuple[str, str], list[Alert]] = {}
        for alert in alerts:
            by_source.setdefault(_source(alert), []).append(alert)

        def read(source: tuple[str, str]) -> tuple[int, set[str], set[str]]:
            """How many it could not read, the keys of its alarms on, and its ended alert groups."""
            rule_id, resource_id = source
            local = Report()
            on_keys: set[str] = set()
            ended: set[str] = set()  # the ids of its ended alert groups, and their keys
            now = self.monitor.clock.now()  # read now: an alarm that started during the run is in it
            for page in self.monitor.groups([rule_id], now - HISTORY, now + CLOCK_SKEW, [], local, resource_id):
                for raw in page:
                    for alarm in self.cloud.of(raw):
                        if alarm.ended is None:
                            on_keys |= set(alarm.closing)
                        else:
                            ended |= {str(raw.get("Id") or ""), *alarm.closing}
            return local.unread, on_keys, ended

        sources = sorted(source for source in by_source if source[1])
        shown: set[str] = set()
        with ThreadPoolExecutor(PAGES_AT_ONCE, thread_name_prefix="reconcile-stale") as pool:
            for source, (unread, on_keys, ended) in zip(sources, pool.map(read, sources), strict=True):
                if unread:
                    self.report.unread += unread
                    continue  # not read to its end: absence proves nothing
                # Its own alert group ended, where its labels name one; else an ended alarm of its key:
                # an alarm absent from the read (on for over a year, its history gone) proves nothing.
                shown |= {
                    a.alert_id
                    for a in by_source[source]
                    if a.alert_key not in on_keys and (a.labels.get("alert_group_id") or a.alert_key) in ended
                }
        return shown

    def found(self, action: str, title: str) -> None:
        """Count a decision; one that keeps an alert as it is for want of evidence says why."""
        self.report.found[action] += 1
        if action in KEPT:
            self.report.errors.append(f"alert {title[:80]!r} kept as it is: {KEPT_BECAUSE[action]}")


def reconcile(
    monitor: CloudMonitor,
    reader: AlertReader,
    settings: config.Settings,
    *,
    webhook: str,
    since: timedelta,
    dry_run: bool,
    out: TextIO,
    report: Report,
) -> Report:
    """One run: read both sides, and send what makes Flashduty match Cloud Monitor. `report` is filled
    as it goes, so that a run that stops midway (a failure, TimeoutError when its time runs out)
    still says what it sent."""
    routes, event_routes = monitor.wiring(webhook, settings, report)
    if not routes and not event_routes:
        raise ReconcileError(
            f"no alarm policy or event rule calls the callback URL {webhook!r} (RECONCILE_WEBHOOK): nothing to "
            "reconcile. Run the deploy with --alarm-policies or --event-rules, or set RECONCILE_WEBHOOK to your "
            "callback URL's name."
        )
    cloud = AlarmReader(routes, monitor.policies(set(routes)) if routes else {}, settings.mapping, report)
    integrations = Integrations(settings, routes, event_routes)
    sender = Sender(settings, reader.deadline, dry_run, out, report)
    run = Run(monitor, reader, cloud, integrations, sender, report)
    open_alerts = [a for a in reader.open_alerts(HISTORY) if integrations.ours(a)]
    report.open_in_flashduty = len(open_alerts)
    for alert in open_alerts:  # where a rule feeds one route, its alerts say that route's integration
        integrations.learn_stamped(alert)
        if len(integrations.rule_routes(alert.labels)) == 1:
            integrations.learn(next(iter(integrations.rule_routes(alert.labels))), alert)
    # What matters most first: the alarms on (lost firings), then the events (lost incidents first),
    # then the alarms ended (lost recoveries) and the stale alerts, which may take runs to close.
    on_read_at = reader.clock.now()
    if routes:
        _alarms_on(run, sorted(routes), since, open_alerts)
    if event_routes:
        try:
            _events(run, monitor.event_rules(set(event_routes)), since, open_alerts)
        except ReconcileError as failure:
            if not routes:
                raise
            # The alarms' work stands (a key made before 0.4.1 was allowed neither read): said, exit 1.
            report.errors.append(f"Event Center events not reconciled: {failure}")
    if routes and not report.unread:  # what is on is not all known: no Ok may be sent on its absence
        _alarms_ended(run, sorted(routes), since, open_alerts, on_read_at)
    return report


def _alarms_on(run: Run, rule_ids: list[str], since: timedelta, open_alerts: list[Alert]) -> None:
    """The alarm policies' alarms on now, those triggered within `since` first: lost firings."""
    monitor, reader, report = run.monitor, run.reader, run.report
    # Each time is said in the clock of the service it is compared with (clocks.py): Cloud Monitor's
    # for its windows (its answers so far told it), Flashduty's for its windows and for "when Cloud
    # Monitor was read", which its alerts' updated_at is held against.
    for start, end in _newest_first(monitor.clock.now(), since):
        for page in monitor.groups(rule_ids, start, end, ["alerting"], report):
            alarms = run.cloud.alarms(page, on=True)
            report.on += len(alarms)
            run.on_keys |= {(a.route, k) for a in alarms for k in a.closing}
            keys = {k for a in alarms for k in a.closing}
            run.settle(alarms, reader.clock.now(), [a for a in open_alerts if a.alert_key in keys])


def _alarms_ended(
    run: Run, rule_ids: list[str], since: timedelta, open_alerts: list[Alert], on_read_at: datetime
) -> None:
    """The alarms triggered within `since` and ended (lost recoveries, missed alarms), then the open
    alerts no alarm read accounts for."""
    now = run.monitor.clock.now()
    for page in run.monitor.groups(rule_ids, now - since, now + CLOCK_SKEW, [], run.report):
        alarms = [a for a in run.cloud.alarms(page) if a.ended and (a.route, a.key) not in run.on_keys]
        run.report.ended += len(alarms)
        run.settle(alarms, run.reader.clock.now())
    run.close_stale([a for a in open_alerts if a.labels.get("kind") != event_center.EVENT], on_read_at)


def _events(run: Run, rules: dict[str, dict[str, Any]], since: timedelta, open_alerts: list[Alert]) -> None:
    """The event rules' events of the last `since`, each lifecycle's last event deciding, lost
    incidents first; then, for each open alert of a lifecycle that ends and that read did not
    account for, the events of its type since `since` before it opened (its ending may have been
    lost before, or its opening delivered after it), for those alerts only. Each read is whole, so
    a lifecycle's read holds all of it since its alert opened (an alert updated after the
    lifecycle's end was an earlier event delivered late). An open event alert no event read
    accounts for is left as it is."""
    routes = run.integrations.event_routes
    for rule_id in sorted(set(routes) - set(rules)):
        run.report.errors.append(f"event rule {rule_id} calls the relay, but ListEventRules does not list it")
    enabled = {i: r for i, r in rules.items() if str(r.get("EnableState") or "").lower() == event_rules.ENABLED}
    events = EventReader(routes, enabled, run.cloud.options, run.report)
    if enabled:
        now = run.monitor.clock.now()
        sources = sorted({str(r.get("Source") or "") for r in enabled.values()} - {""})
        types = sorted({t for r in enabled.values() for t in event_rules.types(r)})
        recent = _settle_events(run, events, sources, types, now - since, now + CLOCK_SKEW, open_alerts)
        older = [
            a
            for a in open_alerts
            if a.labels.get("kind") == event_center.EVENT
            and event_center.ends(a.labels.get("check", ""), events.options)
            and a.alert_key not in recent
        ]
        checks = {a.labels.get("check", "").lower() for a in older}
        of_them = [t for t in types if event_center.check_of(t, events.options).lower() in checks]
        if older and of_them:
            # From `since` before it opened: an opening delivered late (a retry, the drain) opens it after its end.
            start = max(now - HISTORY, min(a.started_at for a in older) - since - CLOCK_SKEW)
            keys = {a.alert_key for a in older}
            _settle_events(run, events, sources, of_them, start, now + CLOCK_SKEW, open_alerts, only=keys)
    events.said()


def _settle_events(
    run: Run,
    events: EventReader,
    sources: list[str],
    types: list[str],
    start: datetime,
    end: datetime,
    open_alerts: list[Alert],
    only: set[str] | None = None,
) -> set[str]:
    """Read these events whole, decide each lifecycle (of these alert keys, if `only`), send what is
    due; the alert keys of the lifecycles read."""
    read_at = run.reader.clock.now()  # before the read: a delivery the relay makes while it reads is seen
    read = [e for page in run.monitor.events(sources, types, start, end) for e in page]
    run.report.events += len(read)
    alarms = [a for a in events.alarms(read) if only is None or only & set(a.closing)]
    alarms.sort(key=lambda a: a.ended is not None)
    for first in range(0, len(alarms), PAGE_SIZE):
        chunk = alarms[first : first + PAGE_SIZE]
        keys = {k for a in chunk for k in a.closing}
        run.settle(chunk, read_at, [a for a in open_alerts if a.alert_key in keys])
    return {k for a in alarms for k in a.closing}


def _source(alert: Alert) -> tuple[str, str]:
    """The alarm policy and resource an alert of the relay's is of, as its labels name them."""
    return alert.labels.get("rule_id", ""), alert.labels.get("resource_id", "")


def _newest_first(now: datetime, since: timedelta) -> list[tuple[datetime, datetime]]:
    """Where the alarms on now are looked for, in turn: those triggered within `since` first (an
    outage's lost firings are there; a page nobody got matters most), then the rest of HISTORY. The
    two windows do not overlap (the API's bounds are whole seconds, both included). They end a
    CLOCK_SKEW past `now` (Cloud Monitor's, as its answers show it): the allowance for what its Date
    headers cannot say to the second."""
    until = now + CLOCK_SKEW
    if not MIN_WINDOW <= since < HISTORY:
        return [(now - HISTORY, until)]
    return [(now - since, until), (now - HISTORY, now - since - timedelta(seconds=1))]


def run(environ: Mapping[str, str], *, since: timedelta, max_seconds: float, dry_run: bool, out: TextIO) -> int:
    """0 when Flashduty matches Cloud Monitor, 1 when something is left for the next run, 2 when it
    cannot run: it stopped (a setting, a refusal, a service out of reach or failing, its time ran
    out) before it could send anything. Either way, one JSON summary line in the log."""
    deadline = time.monotonic() + max_seconds
    report = Report()
    try:
        _run(environ, report, since=since, deadline=deadline, dry_run=dry_run, out=out)
    except (ReconcileError, ReadError, config.ConfigError, ValueError, TimeoutError) as failure:
        stopped = f"stopped: {failure}" if isinstance(failure, TimeoutError) else str(failure)
        if not report.sent:  # nothing done: the next run would meet the same
            print(f"reconcile: {stopped}", file=out)
            logger.error(json.dumps({**report.line(), "exit_code": 2, "error": stopped}, ensure_ascii=False))
            return 2
        report.unread += 1  # what it sent stands, and is reported; the rest is the next run's
        report.errors.append(stopped)
    code = 1 if report.left or report.unread or report.errors else 0
    for error in report.errors:
        print(f"  {error}", file=out)
    found = report.found
    print(
        f"done: {report.sent} events sent ({found[LOST_FIRING]} lost firings, {found[ESCALATED]} escalations, "
        f"{found[LOST_RECOVERY] + report.stale_closed} recoveries, {found[MISSED]} missed alarms); "
        f"{found[MATCHING]} already matching, {found[BY_HAND]} closed by hand and left alone, "
        f"{found[CHANGED]} changed while reading, {found[UNREADABLE] + found[UNPROVEN]} kept as they are for want "
        f"of evidence, {report.left} left for the next run",
        file=out,
    )
    logger.info(json.dumps({**report.line(), "exit_code": code}, ensure_ascii=False))
    return code


def _run(
    environ: Mapping[str, str],
    report: Report,
    *,
    since: timedelta,
    deadline: float,
    dry_run: bool,
    out: TextIO,
) -> None:
    settings = config.load(environ)
    endpoint = volcengine_api.endpoint(environ)
    access_key, secret_key = environ.get("VOLCENGINE_ACCESS_KEY"), environ.get("VOLCENGINE_SECRET_KEY")
    if not (access_key and secret_key):
        raise ReconcileError("set VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY (a read-only Cloud Monitor key)")
    app_key = environ.get("FLASHDUTY_APP_KEY", "").strip()
    if not app_key:
        raise ReconcileError(
            "set FLASHDUTY_APP_KEY: an APP key of your Flashduty account whose role has Channels Read "
            "(reconcile reads the alerts Flashduty holds)"
        )
    api_url = environ.get("FLASHDUTY_API_URL", "").strip() or DEFAULT_API_URL
    if urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).netloc:
        raise ReconcileError(f"FLASHDUTY_API_URL must be a URL such as {DEFAULT_API_URL}")
    import volcenginesdkcloudmonitor  # deferred: the callback path never needs it

    region = environ.get("VOLCENGINE_REGION", "cn-beijing")
    client = volcengine_api.client(access_key, secret_key, region, endpoint, reads=flashduty.read_retry(deadline))
    from volcenginesdkcore.universal import UniversalApi

    api, models = volcenginesdkcloudmonitor.CLOUDMONITORApi(client), volcengine_api.models(volcenginesdkcloudmonitor)
    monitor = CloudMonitor(api, models, UniversalApi(client), deadline)
    webhook = environ.get("RECONCILE_WEBHOOK", "").strip() or DEFAULT_WEBHOOK
    reader = AlertReader(api_url, app_key, deadline)
    reconcile(monitor, reader, settings, webhook=webhook, since=since, dry_run=dry_run, out=out, report=report)
    print(
        f"Cloud Monitor: {report.on} alarms on, {report.ended} triggered and ended in the last {since}; "
        f"Flashduty: {report.open_in_flashduty} of their alerts open",
        file=out,
    )
    for line in filter(None, (monitor.clock.notable(), reader.clock.notable())):
        print(f"  {line}", file=out)


def timer_seconds(seconds_left: float | None) -> float:
    """How long a timer run may take: 5 s inside what the platform says the invocation has left
    (Lambda's context; on veFaaS, the function's request timeout, which the deploy puts in the timer's
    payload), and when it says nothing, inside veFaaS's default request timeout; never over
    TIMER_SECONDS, so that a run ends before the next."""
    given = PLATFORM_DEFAULT_SECONDS if seconds_left is None else seconds_left
    return min(TIMER_SECONDS, max(1.0, given - 5.0))


def timer(environ: Mapping[str, str], seconds_left: float | None = None) -> dict[str, Any]:
    """A bounded run for a timer trigger: what it printed and how it ended. A run that cannot run
    raises CannotRun, so that the platform counts the invocation as failed and its alarms see it."""
    out = io.StringIO()
    code = run(environ, since=DEFAULT_SINCE, max_seconds=timer_seconds(seconds_left), dry_run=False, out=out)
    lines = out.getvalue().splitlines()
    if code == 2:
        raise CannotRun(lines[-1].removeprefix("reconcile: "))  # its one line
    return {"exit_code": code, "output": lines}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconcile", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--since", type=duration, default=DEFAULT_SINCE, help="alarms that fired and ended: 30m (default), 2h, 1d"
    )
    parser.add_argument(
        "--max-seconds", type=positive_seconds, default=TIMER_SECONDS, help="stop within this many seconds"
    )
    parser.add_argument("--dry-run", action="store_true", help="read both sides and show what would be sent")
    args = parser.parse_args(argv)
    logs.configure()  # the run's summary is also one JSON line on stderr
    return run(os.environ, since=args.since, max_seconds=args.max_seconds, dry_run=args.dry_run, out=out or sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
