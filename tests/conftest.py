"""Shared fixtures: the real functions-framework app, the event handler, a local Flashduty."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from functions_framework import create_app

from flashduty_stub import FlashdutyStub

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = (
    "FLASHDUTY_INTEGRATION_KEY", "FLASHDUTY_PUSH_URL", "ROUTES", "DRY_RUN", "CALLBACK_TOKEN",
    "DELIVERY_DEADLINE_SECONDS", "DELIVERY_CONCURRENCY", "FLASHDUTY_MAX_RPS",
    "SEVERITY_OVERRIDES", "MIN_SEVERITY",
)


def load_json(path: str) -> dict[str, Any]:
    """A callback body from samples/ or tests/events/, by path relative to the repository."""
    return json.loads((ROOT / path).read_text(encoding="utf-8"))


@pytest.fixture
def stub() -> Iterator[FlashdutyStub]:
    server = FlashdutyStub().start()
    yield server
    server.stop()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set the relay's settings for this test, and only these."""

    def apply(**settings: str) -> None:
        for name in SETTINGS:
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
