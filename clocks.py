"""A service's clock, as the Date headers of its answers show it against this machine's.

Reconcile compares times from three clocks: Cloud Monitor's (when an alarm started), Flashduty's
(when an alert changed) and this machine's (when it read). A machine whose clock is minutes off
would ask for windows that end before the service's now, and would not see the relay's deliveries
made while it read. So each window, and each "when it read", is said in the clock of the service it
is compared with: this machine's clock plus that service's offset.
"""

from __future__ import annotations

import threading
import time
from bisect import insort
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# Said in the run's output when a service's clock is this far from this machine's (seconds).
NOTABLE_SECONDS = 5.0


class Clock:
    """One service's clock: this machine's, plus the offset its answers show (none until one says)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._bounds: list[float] = []
        self._lock = threading.Lock()

    def heard(self, date: str | None, received: float) -> None:
        """An answer's Date header, the answer received at `received` (time.time()). A Date is the
        second the answer was made in, before it arrived: the service's clock on arrival was at least
        that, and within a second and the answer's way of it. The offset is the median of these
        bounds, so that one answer dated far off (a proxy's, a cache's) moves nothing."""
        try:
            stamped = parsedate_to_datetime(date or "")
        except (TypeError, ValueError, IndexError, OverflowError):
            return  # no Date (a proxy dropped it), or not one: nothing learned
        if stamped.tzinfo is None:  # asctime's form, or -0000: UTC (RFC 9110), never this machine's zone
            stamped = stamped.replace(tzinfo=UTC)
        with self._lock:
            insort(self._bounds, stamped.timestamp() - received)

    @property
    def offset(self) -> float:
        """Seconds the service's clock is ahead of this machine's (0 while no answer has said)."""
        with self._lock:
            return self._bounds[(len(self._bounds) - 1) // 2] if self._bounds else 0.0

    def now(self) -> datetime:
        """Now, by the service's clock (at most a second behind it, where its answers gave a Date)."""
        return datetime.fromtimestamp(time.time() + self.offset, UTC)

    def notable(self) -> str | None:
        """A line for the run's output when this machine's clock is notably off the service's."""
        if abs(self.offset) < NOTABLE_SECONDS:
            return None
        way = "behind" if self.offset > 0 else "ahead of"
        seconds, service = abs(self.offset), self.service
        return f"this machine's clock is {seconds:.0f} s {way} {service}'s: times are read in {service}'s"
