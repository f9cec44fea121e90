"""Fixtures: the real functions-framework app, the event handler, a local Flashduty, S3 on moto.

Only fixtures live here; the helpers they use are the tests.support package.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from functions_framework import create_app

import config
from tests.support import s3
from tests.support.callbacks import ROOT
from tests.support.flashduty import FlashdutyStub
from tests.support.openapi import OpenAPIStub


@pytest.fixture(autouse=True)
def no_secret_in_any_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test: no captured log line (urllib3's too, tracebacks included) holds a key or a token."""
    caplog.set_level(logging.DEBUG, logger="urllib3")
    yield
    unredacted = re.compile(r"(?:integration_key|app_key|token)=(?!<redacted>)[^&\s'\"]+", re.IGNORECASE)
    leaked = [line for line in caplog.text.splitlines() if unredacted.search(line)]
    assert not leaked, f"a secret reached the log: {leaked[:3]}"


@pytest.fixture
def stub() -> Iterator[FlashdutyStub]:
    server = FlashdutyStub().start()
    yield server
    server.stop()


@pytest.fixture
def openapi() -> Iterator[OpenAPIStub]:
    """A local stand-in of Volcengine's OpenAPI, for the official SDKs."""
    server = OpenAPIStub().start()
    yield server
    server.stop()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set the relay's settings for this test, and only these."""

    def apply(**settings: str) -> None:
        for name in config.VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in settings.items():
            monkeypatch.setenv(name, value)

    return apply


@pytest.fixture
def client(environment: Callable[..., None]) -> Callable[..., Any]:
    """A test client of the real functions-framework app, started with these settings."""

    def make(**settings: str) -> Any:
        environment(**settings)
        return create_app(target="relay", source=str(ROOT / "main.py")).test_client()

    return make


@pytest.fixture
def event_main(environment: Callable[..., None]) -> Callable[..., ModuleType]:
    """A freshly imported main module (as a FaaS runtime imports it), started with these settings."""

    def make(**settings: str) -> ModuleType:
        environment(**settings)
        spec = importlib.util.spec_from_file_location("main_under_test", ROOT / "main.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return make


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3.CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with s3.moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def store(bucket: str, s3_endpoint: str) -> dict[str, str]:
    """The relay's settings for a dead-letter store in that bucket (credentials: aws_credentials)."""
    return {
        "DEADLETTER_URI": f"s3://{bucket}/relay",
        "DEADLETTER_ENDPOINT_URL": s3_endpoint,
        "DEADLETTER_ADDRESSING_STYLE": "path",
    }


@pytest.fixture
def bucket(s3_endpoint: str, aws_credentials: None) -> str:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"relay-dlq-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name
