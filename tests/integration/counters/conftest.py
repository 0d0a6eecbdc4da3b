"""A real redis-server on a loopback port (Debian's, scripts/install-servers.sh)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatprovider_tools.redisserver import RedisServer, RedisServerError


def _start() -> RedisServer:
    try:
        server = RedisServer()
        server.start()
    except RedisServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the module (tests use keys of their own)."""
    server = _start()
    try:
        yield server
    finally:
        server.close()  # SIGTERM, SIGKILL after 5 s


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for one test, which may kill and restart it."""
    server = _start()
    try:
        yield server
    finally:
        server.close()
