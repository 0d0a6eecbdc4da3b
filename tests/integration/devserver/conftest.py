"""Fixtures for the dev server tests: started servers and an httpx client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from devserver_helpers import KEY

from chatprovider_tools.devserver import DevServer


@pytest.fixture
def vllm() -> Iterator[DevServer]:
    """A vLLM-shaped server that wants the key ``KEY``."""
    with DevServer("vllm", api_keys={KEY}) as srv:
        yield srv


@pytest.fixture
def generic() -> Iterator[DevServer]:
    """A generic server without auth."""
    with DevServer("generic") as srv:
        yield srv


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as c:
        yield c


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}
