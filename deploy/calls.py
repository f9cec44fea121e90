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


@dataclass
class Caller:
    """Calls one step at a time: a refusal or an unreachable API becomes a DeployError naming the step."""

    api_exception: type[Exception]
    out: TextIO
    sleep: Callable[[float], None] = time.sleep

    def call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except self.api_exception as error:
            raise DeployError(explain(what, error)) from None
        except (OSError, urllib3.exceptions.HTTPError, requests.RequestException) as error:
            # Their text may hold the signed upload URL: say only what kind of failure it was.
            raise DeployError(
                f"{what}: cannot reach Volcengine ({type(error).__name__}); check the network, the region "
                "and VOLCENGINE_OPENAPI_ENDPOINT"
            ) from None

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

    client = volcengine_api.client(access_key, secret_key, region, endpoint)
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
