"""Volcengine's OpenAPI through the official SDKs: one signed client, its endpoint, its refusals.

Shared by the deploy (veFaaS, API gateway, Cloud Monitor) and reconcile (Cloud Monitor, read-only).
The SDKs are imported inside these functions, so that the relay's callback path never loads them.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import flashduty

if TYPE_CHECKING:
    from urllib3.util.retry import Retry

DEFAULT_ENDPOINT = "https://open.volcengineapi.com"
DENIED_WORDS = ("AccessKey", "Signature", "Authorization", "Denied", "Forbidden")


def endpoint(environ: Mapping[str, str]) -> str:
    """VOLCENGINE_OPENAPI_ENDPOINT (a private endpoint, or the tests' stand-in), else the public one."""
    value = environ.get("VOLCENGINE_OPENAPI_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"VOLCENGINE_OPENAPI_ENDPOINT must be a URL such as {DEFAULT_ENDPOINT}, got {value!r}")
    return value


def client(
    access_key: str, secret_key: str, region: str, url: str, *, reads: Retry | None = None, retries: bool = True
) -> Any:
    """A signed ApiClient for every SDK (they share volcenginesdkcore). With `reads` (a bounded run's
    read-only calls), the SDK's own retries are off: a call is tried again as that urllib3 Retry
    says, on connections whose answer flashduty.watched() cuts at the run's deadline. `retries=False`
    turns them off for a caller that writes (the deploy): the SDK would send a write again blind."""
    import volcenginesdkcore

    configuration = volcenginesdkcore.Configuration()
    configuration.auto_retry = reads is None and retries
    _give_logging_back(configuration)
    configuration.ak, configuration.sk, configuration.region = access_key, secret_key, region
    parts = urlsplit(url)
    configuration.scheme, configuration.host = parts.scheme, parts.netloc
    api_client = volcenginesdkcore.ApiClient(configuration)
    if reads is not None:
        pool = api_client.rest_client.pool_manager  # the SDK's urllib3 PoolManager: its calls' retries
        pool.connection_pool_kw["retries"] = reads
        flashduty.watch(pool)
    return api_client


def models(*modules: ModuleType) -> argparse.Namespace:
    """An SDK module's model classes by name, with the core's UniversalInfo and ApiException."""
    from volcenginesdkcore.rest import ApiException
    from volcenginesdkcore.universal import UniversalInfo

    names = {n: getattr(m, n) for m in modules for n in dir(m) if n[0].isupper()}
    return argparse.Namespace(**names, UniversalInfo=UniversalInfo, ApiException=ApiException)


def wire(model: Any) -> Any:
    """An SDK model as the OpenAPI spells it (Result's JSON field names), for a read-modify-write."""
    from volcenginesdkcore.model import canonical_str

    return canonical_str(model)


def pages(fetch: Callable[[int], Any], size: int = 100) -> list[Any]:
    """Every item of a list (its Data and TotalCount), asking page 1, 2... of `fetch` (`size` a page).
    A read ends at an empty page, or a short one with TotalCount read: an answer without TotalCount
    is read on to its short page."""
    items: list[Any] = []
    for page in itertools.count(1):
        response = fetch(page)
        data = response.data or []
        items += data
        if not data or (len(data) < size and len(items) >= (response.total_count or 0)):
            break
    return items


def refusal(error: Any) -> tuple[str, bool]:
    """An ApiException's error code, and whether it says the key may not do this (or is not valid)."""
    try:
        code = str(json.loads(error.body)["ResponseMetadata"]["Error"]["Code"])
    except (TypeError, ValueError, KeyError):
        code = error.reason or f"HTTP {error.status}"
    return code, error.status in (401, 403) or any(w in code for w in DENIED_WORDS)


def _give_logging_back(configuration: Any) -> None:
    """The SDK's Configuration puts its own stderr handler on urllib3's logger and stops it propagating:
    that would print urllib3's lines outside the JSON log (logs.py) and past its redaction. Undo it."""
    for logger in configuration.logger.values():
        for handler in [h for h in logger.handlers if getattr(h, "_volcengine_sdk_handler", False)]:
            logger.removeHandler(handler)
        logger.propagate = True
