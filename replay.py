"""Replay the dead-letter store: `python -m replay list` and `python -m replay send`.

Reads the same environment as the relay (DEADLETTER_URI, FLASHDUTY_INTEGRATION_KEY, ROUTES ...).
`send` removes a stored event only once Flashduty accepted it or a newer event of its alert reached
the relay (then sending it would undo the newer one). Events of one alert go in the order they
happened, one after another. Running it twice, or twice at once, or beside the relay, loses
nothing: at worst an event is sent twice, and Flashduty discards the identical repeat.
`send --max-seconds N` is a bounded run for a timer: what it has no time for stays for the next.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import config
import flashduty
import mapping
from deadletter import Entry, FormatError, Pending, Sent, Store, StoredEvent, StoreError

BATCH = 100  # events sent between progress lines (and between looks at what the relay sent)
SETTLE_RESERVE_SECONDS = 10.0  # of a bounded run, kept for rewriting and deleting what was sent
UNBOUNDED_SECONDS = 24 * 3600.0  # a run without --max-seconds
TIMER_SECONDS = 50.0  # a drain started by a timer every minute ends before the next one starts
logger = logging.getLogger("relay.drain")
AGES = (("< 1h", timedelta(hours=1)), ("< 1d", timedelta(days=1)), ("< 7d", timedelta(days=7)), (">= 7d", None))
_DURATION = re.compile(r"^(\d+)([smhd])$")


def duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 12h or 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


@dataclass
class Selection:
    min_age: timedelta | None = None
    max_age: timedelta | None = None
    trace_id: str | None = None
    error: str | None = None

    def matches(self, entry: Entry, now: datetime) -> bool:
        age = now - entry.stored_at
        return (
            (self.min_age is None or age >= self.min_age)
            and (self.max_age is None or age <= self.max_age)
            and (self.trace_id is None or entry.trace_id == self.trace_id)
            and (self.error is None or self.error in entry.errors)
        )

    def options(self) -> str:
        """The options that narrowed it, as given on the command line."""
        given = (
            ("--min-age", self.min_age),
            ("--max-age", self.max_age),
            ("--trace-id", self.trace_id),
            ("--error", self.error),
        )
        return ", ".join(name for name, value in given if value is not None)


def list_store(store: Store, now: datetime, out: TextIO) -> int:
    entries = [e for e in store.entries() if e.events]
    print(
        f"{sum(e.events for e in entries)} undelivered events from {len(entries)} callbacks in "
        f"s3://{store.location.bucket}/{store.location.prefix}",
        file=out,
    )
    if not entries:
        return 0
    by_error: Counter[str] = Counter()
    by_age: Counter[str] = Counter()
    for entry in entries:
        by_error.update(entry.errors)
        by_age[_age_bucket(now - entry.stored_at)] += entry.events
    print("\nby error:", file=out)
    for error, count in by_error.most_common():
        print(f"  {error:<28} {count}", file=out)
    print("\nby age:", file=out)
    for name, _ in AGES:
        if by_age[name]:
            print(f"  {name:<28} {by_age[name]}", file=out)
    print(f"\noldest: {min(e.stored_at for e in entries):%Y-%m-%d %H:%M:%S} UTC", file=out)
    return 0


# The labels that name an event's alarm, whatever its alert key (labels kept their names across versions).
_ALARM_LABELS = frozenset({"kind", "check", "rule_id", "resource", "alert_group_id"})


def _alarm_of(event: mapping.Event) -> tuple[tuple[str, str], ...]:
    labels = event.get("labels", {})
    return tuple(sorted((k, v) for k, v in labels.items() if k in _ALARM_LABELS or k.startswith("dim_")))


def _age_bucket(age: timedelta) -> str:
    return next(name for name, limit in AGES if limit is None or age < limit)


@dataclass
class _Work:
    """One stored callback: what to send for it, and, once sent, which of its stored events stay."""

    pending: Pending
    stored: list[StoredEvent]  # not superseded: what stays unless Flashduty accepts it now
    to_send: list[mapping.Event]
    whole: bool = False  # to_send is today's translation of the callback, none of it filtered out
    accepted: set[int] = field(default_factory=set)  # indexes into to_send

    def remaining(self, retranslated: bool) -> list[StoredEvent]:
        if retranslated:
            if self.whole and len(self.accepted) == len(self.to_send):
                return []  # today's translation of the whole callback went: its keys may differ (a level's)
            keys = {self.to_send[i].get("alert_key") for i in self.accepted}  # else what went under the same key
            return [s for s in self.stored if s.event.get("alert_key") not in keys]
        done = {id(self.to_send[i]) for i in self.accepted}  # to_send holds the stored events themselves
        return [s for s in self.stored if id(s.event) not in done]


def send(
    store: Store,
    settings: config.Settings,
    selection: Selection,
    *,
    retranslate: bool,
    dry_run: bool,
    max_seconds: float | None,
    now: datetime,
    out: TextIO,
) -> int:
    """Re-send what the selection picks: 0 when none of it is left, 1 when some is, 2 when some is unreadable.

    What the selection passes over stays in the store, counted in what is left, and does not change the answer.
    """
    seconds = max_seconds or UNBOUNDED_SECONDS
    stop = time.monotonic() + seconds - min(SETTLE_RESERVE_SECONDS, seconds / 4)
    sent = store.sent()
    # Every stored callback is read, chosen or not: whether a record's newer event reached Flashduty
    # depends on whether that event is itself still stored.
    loaded: list[Pending] = []
    left = 0  # chosen events this run leaves in the store
    passed_over = 0  # events the selection did not choose: they stay in it too
    unreadable = False
    for entry in store.entries():
        chosen = selection.matches(entry, now)
        passed_over += 0 if chosen else entry.events
        if time.monotonic() >= stop:
            sent.unread.add(entry.stored_at)
            left += entry.events if chosen else 0  # for the next run
            continue
        try:
            pending = store.load(entry)
        except FormatError as error:
            sent.unread.add(entry.stored_at)
            if chosen:
                print(f"  left as it is: {error}", file=out)
                left += entry.events
                unreadable = True
            continue
        if pending is not None:  # else another replay has settled it
            sent.still_stored(pending)
            if chosen:
                loaded.append(pending)
    work: list[_Work] = []
    superseded = 0
    held: set[str] = set()  # alerts with an event that stays unsent: a later one must not overtake it
    for pending in loaded:
        at = pending.entry.stored_at
        verdicts = [sent.supersedes(s.event, at) for s in pending.events]
        stored = [s for s, verdict in zip(pending.events, verdicts, strict=True) if verdict is not True]
        superseded += verdicts.count(True)
        held |= {s.event.get("alert_key", "") for s, v in zip(pending.events, verdicts, strict=True) if v is None}
        if retranslate:
            fresh = mapping.translate(json.loads(pending.body), settings.mapping)
            # Keys change between versions (0.4 put the level in them): an alarm whose stored event is
            # superseded is superseded under its new keys too.
            gone = {_alarm_of(s.event) for s, verdict in zip(pending.events, verdicts, strict=True) if verdict}
            fresh_verdicts = [True if _alarm_of(e) in gone else sent.supersedes(e, at) for e in fresh.events]
            to_send = [e for e, verdict in zip(fresh.events, fresh_verdicts, strict=True) if verdict is False]
            work.append(_Work(pending, stored, to_send, whole=not fresh.filtered and None not in fresh_verdicts))
        else:
            to_send = [s.event for s, verdict in zip(pending.events, verdicts, strict=True) if verdict is False]
            work.append(_Work(pending, stored, to_send))

    total = sum(len(w.to_send) for w in work)
    print(f"{'would send' if dry_run else 'sending'} {total} events from {len(work)} callbacks", file=out)
    if superseded:
        print(f"  {superseded} superseded by newer events of their alerts: removed, not sent", file=out)
    if passed_over:
        print(f"  {passed_over} not chosen by {selection.options()}: they stay in the store", file=out)
    if dry_run:
        for item in work:
            for event in item.to_send:
                print(f"  [{item.pending.route}] {event['event_status']} {event['title_rule']}", file=out)
        return 2 if unreadable else 0

    accepted = _deliver(store, settings, sent, work, held, stop, out)
    for item in work:
        remaining = item.remaining(retranslate)
        store.settle(item.pending, remaining)
        left += len(remaining)
    store.compact(sent, now)
    not_chosen = f" ({passed_over} not chosen)" if passed_over else ""
    print(f"done: {accepted} accepted, {left + passed_over} left in the store{not_chosen}", file=out)
    return 2 if unreadable else 1 if left else 0


def _deliver(
    store: Store, settings: config.Settings, sent: Sent, work: list[_Work], held: set[str], stop: float, out: TextIO
) -> int:
    """Send in batches, oldest first; an alert whose event failed (or is `held`) sends nothing more in this run."""
    total = sum(len(w.to_send) for w in work)
    accepted = failed = done = 0
    # Batches of whole callbacks, in order, so that events of one alert keep their order.
    batches: list[list[_Work]] = []
    for item in work:
        if not batches or sum(len(w.to_send) for w in batches[-1]) >= BATCH:
            batches.append([])
        batches[-1].append(item)
    for items in batches:
        if time.monotonic() >= stop:
            break
        store.refresh(sent)  # what the relay sent meanwhile supersedes too
        for route in dict.fromkeys(item.pending.route for item in items):
            chosen = []
            for item in (item for item in items if item.pending.route == route):
                for i, event in enumerate(item.to_send):
                    key = event.get("alert_key", "")
                    if key not in held and sent.supersedes(event, item.pending.entry.stored_at) is False:
                        chosen.append((item, i))
                    else:  # held, or superseded since the run began: it stays, and so do its alert's later events
                        held.add(key)
            integration_key = settings.integration_key_for(route)
            if integration_key is None:
                print(f"  route {route!r}: no integration key configured now, its events stay in the store", file=out)
                held |= {item.to_send[i].get("alert_key", "") for item, i in chosen}
                continue
            outcomes = flashduty.deliver(
                [item.to_send[i] for item, i in chosen],
                push_url=settings.push_url,
                integration_key=integration_key,
                deadline=stop,
                concurrency=settings.concurrency,
                limits=settings.limits,
            )
            for (item, i), outcome in zip(chosen, outcomes, strict=True):
                if outcome.delivered:
                    item.accepted.add(i)
                    accepted += 1
                else:
                    failed += 1
                    if not outcome.refused:
                        held.add(outcome.alert_key)
        done += sum(len(item.to_send) for item in items)
        print(f"  {done}/{total} sent: {accepted} accepted, {failed} not", file=out)
    return accepted


def drain(settings: config.Settings, seconds_left: float | None = None) -> dict[str, Any]:
    """A bounded `send` for a timer trigger: what it printed and how it ended, also logged as one line."""
    seconds = TIMER_SECONDS if seconds_left is None else min(TIMER_SECONDS, max(1.0, seconds_left - 5.0))
    out = io.StringIO()
    if settings.deadletter is None:
        code = 2
        print("DEADLETTER_URI is not set: nothing to drain", file=out)
    else:
        store = Store(settings.deadletter)
        try:
            code = send(
                store,
                settings,
                Selection(),
                retranslate=False,
                dry_run=False,
                max_seconds=seconds,
                now=datetime.now(UTC),
                out=out,
            )
        except StoreError as error:
            code = 2
            print(error, file=out)
    result = {"message": "drain", "exit_code": code, "store_empty": code == 0, "output": out.getvalue().splitlines()}
    logger.log(logging.INFO if code < 2 else logging.ERROR, json.dumps(result, ensure_ascii=False))
    return result


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="python -m replay", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="what is in the store: counts by error and age")
    send_parser = commands.add_parser("send", help="re-send stored events to Flashduty")
    send_parser.add_argument(
        "--min-age", type=duration, help="only events stored at least this long ago (30m, 12h, 7d)"
    )
    send_parser.add_argument("--max-age", type=duration, help="only events stored at most this long ago")
    send_parser.add_argument("--trace-id", help="only the events of this callback (x-volc-trace-id)")
    send_parser.add_argument("--error", help="only events that failed with this error, as `list` shows it")
    send_parser.add_argument(
        "--retranslate", action="store_true", help="translate the stored raw callbacks again with today's mapping"
    )
    send_parser.add_argument("--dry-run", action="store_true", help="show what would be sent; send and delete nothing")
    send_parser.add_argument(
        "--max-seconds",
        type=positive_seconds,
        help="stop within this many seconds, leaving what is unsent for the next run (for a timer)",
    )
    args = parser.parse_args(argv)

    try:
        settings = config.load(os.environ)
    except config.ConfigError as error:
        parser.exit(2, f"replay: {error}\n")
    if settings.deadletter is None:
        parser.exit(2, "replay: DEADLETTER_URI is not set: nothing to replay from\n")
    store = Store(settings.deadletter)
    now = datetime.now(UTC)
    try:
        if args.command == "list":
            return list_store(store, now, out)
        selection = Selection(args.min_age, args.max_age, args.trace_id, args.error)
        return send(
            store,
            settings,
            selection,
            retranslate=args.retranslate,
            dry_run=args.dry_run,
            max_seconds=args.max_seconds,
            now=now,
            out=out,
        )
    except StoreError as error:
        parser.exit(2, f"replay: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
