"""Replay the dead-letter store: `python -m replay list` and `python -m replay send`.

Reads the same environment as the relay (DEADLETTER_URI, FLASHDUTY_INTEGRATION_KEY, ROUTES ...).
`send` deletes a stored object only after Flashduty accepted what it holds, so running it twice, or
twice at once, never loses an event: at worst one is sent twice, and Flashduty discards the repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TextIO

import config
import flashduty
import mapping
from deadletter import Entry, Store, StoreError

BATCH = 100  # events sent between progress lines
BATCH_DEADLINE_SECONDS = 60.0
AGES = (("< 1h", timedelta(hours=1)), ("< 1d", timedelta(days=1)), ("< 7d", timedelta(days=7)), (">= 7d", None))
_DURATION = re.compile(r"^(\d+)([smhd])$")


def duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 12h or 7d")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
    return timedelta(**{unit: int(match[1])})


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
            and (self.error is None or entry.error == self.error)
        )


def list_store(store: Store, now: datetime, out: TextIO) -> int:
    entries = list(store.entries())
    events = [e for e in entries if e.is_event]
    callbacks = {e.group for e in entries if not e.is_event}
    print(
        f"{len(events)} undelivered events from {len(callbacks)} callbacks in "
        f"s3://{store.location.bucket}/{store.location.prefix}",
        file=out,
    )
    if not events:
        return 0
    by_error = Counter(e.error for e in events)
    by_age = Counter(_age_bucket(now - e.stored_at) for e in events)
    print("\nby error:", file=out)
    for error, count in by_error.most_common():
        print(f"  {error:<28} {count}", file=out)
    print("\nby age:", file=out)
    for name, _ in AGES:
        if by_age[name]:
            print(f"  {name:<28} {by_age[name]}", file=out)
    print(f"\noldest: {min(e.stored_at for e in events):%Y-%m-%d %H:%M:%S} UTC", file=out)
    return 0


def _age_bucket(age: timedelta) -> str:
    return next(name for name, limit in AGES if limit is None or age < limit)


def send(
    store: Store,
    settings: config.Settings,
    selection: Selection,
    *,
    retranslate: bool,
    dry_run: bool,
    now: datetime,
    out: TextIO,
) -> int:
    """Re-send what the selection picks; 0 when all of it was accepted (or nothing was picked)."""
    entries = list(store.entries())
    chosen_groups = {e.group for e in entries if e.is_event and selection.matches(e, now)}
    by_group: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.group in chosen_groups:
            by_group[entry.group].append(entry)

    # Work items: (route, events to send, objects to delete once they are all accepted).
    work: list[tuple[str, list[mapping.Event], list[str]]] = []
    for _, members in sorted(by_group.items()):
        event_entries = [e for e in members if e.is_event and selection.matches(e, now)]
        callback_entry = next((e for e in members if not e.is_event), None)
        if retranslate and callback_entry is not None:
            stored = store.read(callback_entry.key)
            # The relay stores only bodies it parsed as a JSON object.
            translation = mapping.translate(json.loads(stored["body"]), settings.mapping)
            # Every event of the callback, as today's mapping sees it; the delivered ones come
            # again and, where unchanged, Flashduty discards them.
            work.append((stored["route"], translation.events, [e.key for e in members]))
        else:
            for entry in event_entries:
                stored = store.read(entry.key)
                work.append((stored["route"], [stored["event"]], [entry.key]))

    total = sum(len(events) for _, events, _ in work)
    print(f"{'would send' if dry_run else 'sending'} {total} events from {len(by_group)} callbacks", file=out)
    if dry_run:
        for route, events, _ in work:
            for event in events:
                print(f"  [{route}] {event.get('event_status')} {event.get('title_rule')}", file=out)
        return 0

    accepted = failed = sent = 0
    by_route: dict[str, list[tuple[list[mapping.Event], list[str]]]] = defaultdict(list)
    for route, events, keys in work:
        by_route[route].append((events, keys))
    for route, items in by_route.items():
        integration_key = settings.integration_key_for(route)
        count = sum(len(events) for events, _ in items)
        if integration_key is None:
            print(f"  route {route!r}: no integration key configured now, {count} events left in the store", file=out)
            failed += count
            continue
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            events = [event for events, _ in batch for event in events]
            outcomes = iter(
                flashduty.deliver(
                    events,
                    push_url=settings.push_url,
                    integration_key=integration_key,
                    deadline=time.monotonic() + BATCH_DEADLINE_SECONDS,
                    concurrency=settings.concurrency,
                    max_rps=settings.max_rps,
                )
            )
            for item_events, keys in batch:
                results = [next(outcomes) for _ in item_events]
                if all(o.delivered for o in results):
                    for key in keys:
                        store.delete(key)  # only now: Flashduty has it
                accepted += sum(o.delivered for o in results)
                failed += sum(not o.delivered for o in results)
            sent += len(events)
            print(f"  {sent}/{total} sent: {accepted} accepted, {failed} not", file=out)

    _delete_orphaned_callbacks(store)
    print(f"done: {accepted} accepted, {failed} left in the store", file=out)
    return 0 if failed == 0 else 1


def _delete_orphaned_callbacks(store: Store) -> None:
    """A raw body is kept only while an event of its callback is still undelivered."""
    entries = list(store.entries())
    with_events = {e.group for e in entries if e.is_event}
    for entry in entries:
        if not entry.is_event and entry.group not in with_events:
            store.delete(entry.key)


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
        return send(store, settings, selection, retranslate=args.retranslate, dry_run=args.dry_run, now=now, out=out)
    except StoreError as error:
        parser.exit(2, f"replay: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
