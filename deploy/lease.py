"""One deploy at a time: a lease in the cloud, which a second deploy (CI and a person, two checkouts)
waits for, or refuses with a line saying who holds it and until when.

The lease is an empty veFaaS function named `volc-flashduty-relay-deploy-lease`, whatever the relay's
name: two relays (staging, production) may tick the same policies, so their deploys take turns too. It
is never released (it runs nothing):
veFaaS function names are unique in a region, so creating it is the one atomic step the APIs the deploy
already uses offer (a Cloud Monitor callback URL's name is not unique). Its description says who holds
it and until when; a lease past that time is stale (its deploy died): it is deleted by its id, so that
of two deploys finding it stale only one takes it over, and created again.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deploy.calls import Caller, DeployError

LEASE_NAME = "volc-flashduty-relay-deploy-lease"
LEASE_SECONDS = 1800  # longer than a deploy may take (deploy.yml's job stops it at 20 minutes)
PREFIX = "volc-flashduty-relay deploy lease, held by "


@dataclass
class Lease:
    caller: Caller
    api: Any
    models: Any
    runtime: str
    clock: Callable[[], float] = time.time
    holder: str = ""

    def __post_init__(self) -> None:
        self.holder = self.holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    @contextmanager
    def held(self, wait_seconds: float) -> Iterator[None]:
        """The lease for what the block does; waits up to `wait_seconds` for another deploy's."""
        lease_name = LEASE_NAME
        deadline = time.monotonic() + wait_seconds
        while True:
            lease_id = self._take(lease_name)
            if lease_id is not None:
                break
            holder, until = self._holder(lease_name)
            if time.monotonic() >= deadline:
                raise DeployError(
                    f"another deploy is running (lease held by {holder}, until {_when(until)}): "
                    "nothing was changed. Run again once it is done (--lease-wait SECONDS waits for it); a "
                    f"deploy that died leaves its lease to expire at that time, or delete function {lease_name!r}"
                )
            self.caller.sleep(min(3.0, max(0.0, deadline - time.monotonic())))
        self.caller.say(f"lease: held for this deploy ({lease_name}) until {_when(self.clock() + LEASE_SECONDS)}")
        try:
            yield
        finally:
            self.caller.write(
                "release the deploy lease",
                lambda: self.api.delete_function(self.models.DeleteFunctionRequest(id=lease_id)),
            )

    def _take(self, lease_name: str) -> str | None:
        """The lease's id if this deploy now holds it; None while another holds it."""
        found = self._find(lease_name)
        if found is not None:
            _, until = _read(found.description)
            if until > self.clock():
                return None
            self.caller.say(f"lease: {lease_name} expired (its deploy died): taking it over")
            try:  # by its id: a lease another deploy took over meanwhile has a new one, and stays
                self.caller.write(
                    "delete the stale deploy lease",
                    lambda: self.api.delete_function(self.models.DeleteFunctionRequest(id=found.id)),
                )
            except DeployError:
                return None
        description = f"{PREFIX}{self.holder} until {self.clock() + LEASE_SECONDS:.0f}"
        try:
            return str(
                self.caller.write(
                    "take the deploy lease",
                    lambda: (
                        self.api.create_function(
                            self.models.CreateFunctionRequest(
                                name=lease_name,
                                runtime=self.runtime,
                                description=description,
                                command="./run.sh",
                                port=8000,
                            )
                        ).id
                    ),
                    adopt=lambda: self._mine(lease_name),
                )
            )
        except DeployError:
            if self._find(lease_name) is None:
                raise  # refused for another reason (a permission): said as it was
            return None  # another deploy created it first (the name is unique)

    def _mine(self, lease_name: str) -> str | None:
        found = self._find(lease_name)
        return str(found.id) if found is not None and _read(found.description)[0] == self.holder else None

    def _holder(self, lease_name: str) -> tuple[str, float]:
        found = self._find(lease_name)
        return _read(found.description) if found is not None else ("nobody", 0.0)

    def _find(self, lease_name: str) -> Any:
        request = self.models.ListFunctionsRequest(
            filters=[self.models.FilterForListFunctionsInput(name="Name", values=[lease_name])], page_size=100
        )
        items = self.caller.call("read the deploy lease", lambda: self.api.list_functions(request).items) or []
        function_id = next((item.id for item in items if item.name == lease_name), None)
        if function_id is None:
            return None
        return self.caller.call(
            "read the deploy lease", lambda: self.api.get_function(self.models.GetFunctionRequest(id=function_id))
        )


def _read(description: str | None) -> tuple[str, float]:
    """Who holds a lease and until when (epoch seconds); a description not of this form never expires."""
    text = (description or "").removeprefix(PREFIX)
    holder, _, until = text.rpartition(" until ")
    try:
        return holder, float(until)
    except ValueError:
        return text or "someone", float("inf")


def _when(epoch: float) -> str:
    return "never" if epoch == float("inf") else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
