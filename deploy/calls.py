"""Calling Volcengine through the official SDKs: their clients, a refusal said so that the user knows
what to do, and each step's line of output (never a secret)."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import requests
import urllib3

import volcengine_api

POLL_SECONDS = 3.0
WAIT_SECONDS = 600.0


class DeployError(Exception):
    """What went wrong, said so that the user knows what to do."""


# Answers after which a call's outcome is unknown: the service was busy or failed part-way.
UNKNOWN_STATUSES = frozenset({429, 500, 502, 503, 504})
READ_ATTEMPTS = 3
# A create whose answer was lost and that, read for, had not landed, is sent again at most this often.
CREATE_ATTEMPTS = 3


class _Unknown(Exception):
    """A call whose answer never came (a dropped connection, a timeout) or said the service failed."""


@dataclass
class Caller:
    """Calls one step at a time: a refusal or an unreachable API becomes a DeployError naming the step.
    The SDK's own retries are off (sdk_clients): it would send a write again blind, and a lost answer to
    a create would make two. A read is tried again; a write never is without reading first."""

    api_exception: type[Exception]
    out: TextIO
    sleep: Callable[[float], None] = time.sleep

    def call(self, what: str, call: Callable[[], Any]) -> Any:
        """A read (or a write that is the same whenever sent): tried again on a failure that may pass."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return self._once(what, call)
            except _Unknown as error:
                if attempt == READ_ATTEMPTS - 1:
                    raise DeployError(
                        f"{what}: cannot reach Volcengine ({error}); check the network, the region and "
                        "VOLCENGINE_OPENAPI_ENDPOINT"
                    ) from None
                self.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def write(self, what: str, call: Callable[[], Any], adopt: Callable[[], Any] | None = None) -> Any:
        """A write, sent once. When its answer is lost, `adopt` (a read) finds what it made, if it landed:
        that is used, and only a create that did not land is sent again. Without `adopt` (an update, a
        release), the deploy stops: the next run reads what is there and finishes."""
        for _ in range(CREATE_ATTEMPTS):
            try:
                return self._once(what, call)
            except _Unknown as error:
                if adopt is None:
                    raise DeployError(
                        f"{what}: the answer was lost ({error}), so whether it took effect is unknown, and a "
                        "write is never sent twice blind: run the deploy again, which reads what is there"
                    ) from None
                found = adopt()
                if found is not None:
                    self.say(f"{what}: the answer was lost ({error}); it had taken effect: using what it made")
                    return found
                self.say(f"{what}: the answer was lost ({error}); it had not taken effect: sending it again")
        raise DeployError(f"{what}: no answer after {CREATE_ATTEMPTS} tries, and nothing made: run the deploy again")

    def _once(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except self.api_exception as error:
            status = getattr(error, "status", None)
            if status in UNKNOWN_STATUSES:
                raise _Unknown(f"HTTP {status}") from None
            raise DeployError(explain(what, error)) from None
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException) as error:
            # Their text may hold the signed upload URL: say only what kind of failure it was.
            raise _Unknown(type(error).__name__) from None

    def pages(self, what: str, fetch: Callable[[int], Any]) -> list[Any]:
        return volcengine_api.pages(lambda page: self.call(what, functools.partial(fetch, page)))

    def say(self, line: str) -> None:
        print(f"- {line}", file=self.out, flush=True)

    def wait(self, what: str, status: Callable[[], str]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            state = str(self.call(f"{what}: status", status) or "")
            # The SDK documents no status values: Succeeded / Done, Failed / Error are what it sends.
            if "succ" in state.lower() or state.lower() == "done":
                return
            if "fail" in state.lower() or "error" in state.lower():
                raise DeployError(f"{what} ended {state}: see the function's page in the veFaaS console")
            if time.monotonic() > deadline:
                raise DeployError(f"{what} did not finish within {WAIT_SECONDS:.0f} s (last status {state!r})")
            self.sleep(POLL_SECONDS)


def explain(what: str, error: Any) -> str:
    code, denied = volcengine_api.refusal(error)
    if denied:
        return (
            f"{what}: Volcengine refused it ({code}). Check VOLCENGINE_ACCESS_KEY and VOLCENGINE_SECRET_KEY, and "
            f"that the key's policy allows this action in this region (docs/deploy.md: permissions)."
        )
    return f"{what} failed: {code}"


def sdk_clients(access_key: str, secret_key: str, region: str, endpoint: str) -> argparse.Namespace:
    """The real SDKs' clients: veFaaS (and the universal API, for actions called by name), API
    gateway (2021-03-03, and 2022-11-12 for routes) and Cloud Monitor, with their model classes."""
    import volcenginesdkapig
    import volcenginesdkapig20221112
    import volcenginesdkcloudmonitor
    import volcenginesdkvefaas
    from volcenginesdkcore.universal import UniversalApi

    client = volcengine_api.client(access_key, secret_key, region, endpoint, retries=False)
    return argparse.Namespace(
        faas=volcenginesdkvefaas.VEFAASApi(client),
        faas_models=volcengine_api.models(volcenginesdkvefaas),
        universal=UniversalApi(client),
        gateway=volcenginesdkapig.APIGApi(client),
        gateway_models=volcengine_api.models(volcenginesdkapig),
        routes=volcenginesdkapig20221112.APIG20221112Api(client),
        route_models=volcengine_api.models(volcenginesdkapig20221112),
        monitor=volcenginesdkcloudmonitor.CLOUDMONITORApi(client),
        monitor_models=volcengine_api.models(volcenginesdkcloudmonitor),
    )
