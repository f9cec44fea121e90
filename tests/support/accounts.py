"""A busy account, as reconcile meets it at scale: thousands of alarms on in Cloud Monitor, their
alerts open in Flashduty, but for the firings and recoveries an outage of the relay lost. The
reconcile test and benchmark build it here, at their own sizes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import alert_groups
from tests.support.flashduty import FlashdutyStub
from tests.support.openapi import OpenAPIStub

SPREAD = timedelta(days=10)  # the alarms on started over this long: most long before any outage
AGO = 600  # seconds: how long ago the relay delivered what Flashduty holds


@dataclass(frozen=True)
class Account:
    on: list[dict[str, Any]]  # the alarms on, as ListAlertGroup gives them
    lost_firings: list[dict[str, Any]]  # of those, the ones with nothing open in Flashduty
    lost_recoveries: list[dict[str, Any]]  # alarms ended whose alerts Flashduty still holds open
    keys_on: frozenset[str]  # the alert keys of the alarms on

    def matched(self, flashduty: FlashdutyStub) -> bool:
        """Whether Flashduty holds open exactly the alerts of the alarms on."""
        return {a["alert_key"] for a in flashduty.open_alert_records()} == self.keys_on


def busy(
    openapi: OpenAPIStub,
    flashduty: FlashdutyStub,
    policy: dict[str, Any],
    integration_key: str,
    *,
    on: int,
    lost_firings: int,
    lost_recoveries: int,
) -> Account:
    """`on` alarms on, started over SPREAD, every (on / lost_firings)th of them a lost firing: they
    are spread over every page, not gathered where a reader looks first. Half the lost recoveries
    are of alarms triggered and ended within the last 30 minutes, half of alarms that started days
    ago (in no window reconcile asks ListAlertGroup for ended alarms)."""
    now = datetime.now(UTC)
    alarms = [openapi.add_alert_group(policy, f"i-{n:05d}", _epoch(now - SPREAD * (on - n) / on)) for n in range(on)]
    lost = alarms[on // lost_firings // 2 :: on // lost_firings][:lost_firings]
    ended = []
    for n in range(lost_recoveries):
        recent = n % 2 == 0
        started = now - (timedelta(minutes=20) if recent else timedelta(days=3))
        ended_at = now - (timedelta(minutes=5) if recent else timedelta(hours=1))
        ended.append(
            openapi.add_alert_group(
                policy, f"i-ended-{n:03d}", _epoch(started), AlertState="Recovered", EndAt=_epoch(ended_at)
            )
        )
    lost_keys = {g["Id"] for g in lost}
    delivered = [_firing(g, policy) for g in alarms + ended if g["Id"] not in lost_keys]
    flashduty.delivered(delivered, integration_key)
    flashduty.age_alerts(AGO)
    return Account(alarms, lost, ended, frozenset(_firing(g, policy)["alert_key"] for g in alarms))


def _firing(group: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """The firing the relay sent for this alarm (its alert key is reconcile's too)."""
    (event,) = alert_groups.reconciled(alert_groups.alert_group(group, policy).firing)
    return event


def _epoch(at: datetime) -> int:
    return int(at.timestamp())
