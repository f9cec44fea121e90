"""Reconcile's decision table: what to send for one alarm Cloud Monitor holds, or for one alert
Flashduty holds open that no alarm read in the run accounts for, given Flashduty's alerts of its keys
and what the run knows. docs/reconcile.md's table is `decide`, row for row.

The rule of it: an event that changes what on-call sees, an Ok above all, is sent only on positive
evidence, and never when Flashduty already shows its effect. Where the evidence is missing, the alert
stays as it is and the decision says why.

Pure: no I/O, no clock, no environment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import alert_groups
from flashduty_alerts import Alert
from mapping import OK, SEVERITY_RANK, Event

# Volcengine's clock and Flashduty's: what Flashduty did this long before an alarm started counts as after.
CLOCK_SKEW = timedelta(seconds=60)

# What a decision found; the report counts each.
MATCHING = "matching"  # Flashduty already shows it
LOST_FIRING = "lost_firing"
ESCALATED = "escalated"  # on at a higher level than any alert Flashduty shows open
LOST_RECOVERY = "lost_recovery"
MISSED = "missed"  # fired and ended with nothing of it in Flashduty: the firing, then the Ok
BY_HAND = "closed_by_hand"  # a person closed it after the alarm started: left alone
CHANGED = "changed_while_reading"  # left to the next run
STALE = "stale"  # open, and Cloud Monitor shows every alarm of its key ended: its Ok
UNREADABLE = "kept_unreadable"  # an alarm of its policy and resource could not be read: no Ok this run
UNPROVEN = "kept_unproven"  # open, and Cloud Monitor does not show its alarm ended: kept
BELOW_MINIMUM = "below_min_severity"  # its firing is below MIN_SEVERITY: the relay sends it no more than the callback
ACTIONS = (
    MATCHING,
    LOST_FIRING,
    ESCALATED,
    LOST_RECOVERY,
    MISSED,
    BY_HAND,
    CHANGED,
    STALE,
    UNREADABLE,
    UNPROVEN,
    BELOW_MINIMUM,
)
KEPT = (UNREADABLE, UNPROVEN)  # an alert left as it is for want of evidence: the run ends 1


@dataclass(frozen=True)
class Alarm:
    """A Cloud Monitor alarm as the relay would have sent it to one route; or an Event Center
    lifecycle (an event type on a resource), on since its opening (an incident: since it happened),
    ended by its ending."""

    route: str
    key: str  # its firing's
    started: datetime
    ended: datetime | None  # None while it is on; set only when its own alert group (or event) says it ended
    # Its firing; for a lifecycle whose opening the read does not hold, its ending's Ok (never sent).
    firing: Event
    # The Ok of each alert the relay may have opened for it (one a level and identity), by alert key.
    closing: dict[str, Event]
    # Its firing passes MIN_SEVERITY. One that does not is still an alarm: an alert it opened at another
    # level (before a de-escalation) stays open while it is on, and closes when it ends.
    paged: bool = True
    # The read holds everything Cloud Monitor has of it since its alert opened (an Event Center
    # lifecycle's events): an alert updated after its end is an earlier event delivered late (a
    # retried callback, the drain), not a new episode.
    complete: bool = False


@dataclass(frozen=True)
class Known:
    """What the run knows besides the alarm and the alerts."""

    read_at: datetime  # when Cloud Monitor was read
    # An alarm of the same policy and resource could not be read (a time without its zone, ...): it
    # may be on, and may hold any of these keys.
    unreadable: bool = False
    # For an alert no alarm read accounts for: a complete read of its policy and resource's alarms
    # (ended by a short last page) shows none of its key on, and its own alert group, where its labels
    # name one, among them, ended.
    shown_ended: bool = False


def decide(alarm: Alarm | None, alerts: Sequence[Alert], known: Known) -> tuple[str, list[Event]]:
    """What to send: for `alarm`, given Flashduty's alerts of its keys in its route's integration; or,
    with no alarm, for the open alert in `alerts` (its key's alerts, just read) that none accounts for."""
    if any(a.updated_at >= known.read_at - CLOCK_SKEW for a in alerts):
        return CHANGED, []  # the relay delivered something since: the next run judges
    open_ = [a for a in alerts if a.active]
    if alarm is None:
        if not open_:
            return MATCHING, []  # closed since it was listed
        if known.unreadable:
            return UNREADABLE, []
        if not known.shown_ended:
            return UNPROVEN, []
        return STALE, list({a.alert_key: alert_groups.closing(a.alert_key, a.title, a.labels) for a in open_}.values())
    if alarm.ended is None:
        level = _rank(alarm.firing["event_status"])
        if any(_rank(a.status) >= level for a in open_):
            return MATCHING, []  # on-call sees it at its level, or above (kept until it recovers)
        if not alarm.paged:
            return BELOW_MINIMUM, []
        # A person's close of the alert of this level, or above (the level it opened at), is theirs to
        # keep; a close of a lower level's alert is not a word on this one. Only a close clearly after
        # this alarm started counts: one before it, or within the clocks' skew of it, may be the Ok of
        # the alarm's episode before (a flap whose new firing was lost), and the labels that tell an Ok
        # from a person's close are an undocumented reading. Paging is the safe side of that doubt.
        latest = max((a for a in alerts if _rank(a.severity) >= level), key=lambda a: a.updated_at, default=None)
        if (
            latest
            and latest.end_time
            and latest.end_time > alarm.started + CLOCK_SKEW
            and not alert_groups.recovered_by_event(latest.labels)
        ):
            return BY_HAND, []
        return (ESCALATED if open_ else LOST_FIRING), [alarm.firing]
    if open_:
        if not alarm.complete and any(a.updated_at > alarm.ended + CLOCK_SKEW for a in open_):
            return CHANGED, []  # something came after it ended (it fired again): not this end's to close
        if known.unreadable:
            return UNREADABLE, []
        return LOST_RECOVERY, list({a.alert_key: alarm.closing[a.alert_key] for a in open_}.values())
    if alarm.firing["event_status"] == OK:
        return MATCHING, []  # an Event Center lifecycle whose opening the read does not hold: nothing to show
    if not alarm.paged:
        return BELOW_MINIMUM, []
    if any(a.updated_at >= alarm.started - CLOCK_SKEW for a in alerts):
        return MATCHING, []
    if known.unreadable:
        return UNREADABLE, []
    return MISSED, [alarm.firing, alarm.closing[alarm.key]]


def _rank(level: str) -> int:
    return next((rank for name, rank in SEVERITY_RANK.items() if name == level), -1)
