"""Counters in Redis (or Valkey): exact across any number of relay replicas.

Each operation is one Lua script (:mod:`chatprovider.counters.scripts`), which Redis runs
atomically: a reservation reads every counter it charges, checks them all and charges them all
in one step, so racing relays can neither both take the last room nor half-charge a request.
Counter keys carry an absolute expiry (``PEXPIREAT``) at their window's end plus a grace
minute; lease sets expire with their latest lease. All keys share the hash tag of
:data:`DEFAULT_PREFIX`, so the scripts also run on a Redis Cluster (on one shard).

The client is redis-py's asyncio client (docs/quotas.md says why); the two scripts of the
relay's hot path, reserve and settle, go straight on a connection of its pool (one EVALSHA,
one reply), and a settlement lets its caller go on as soon as it is written (see
:meth:`~chatprovider.counters.store.CounterStore.settle`). Every call is bounded by
``timeout``; a refused, lost or silent connection, a server still loading its data or a
read-only replica become :class:`~chatprovider.counters.store.CounterStoreUnavailable`. The
pool replaces the connections that die when Redis restarts as it hands them out, and loads the
scripts on every new connection; a reservation or a settlement is sent once, never again after
a time-out or a lost connection (Redis may have run it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import Connection, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from chatprovider.counters import scripts
from chatprovider.counters.store import CounterStoreUnavailable, mark_sent
from chatprovider.domain.quota.ledger import Adjustment, Charge, Outcome

__all__ = ["DEFAULT_PREFIX", "RedisCounterStore"]

#: Prepended to every key; the braces are a Redis Cluster hash tag.
DEFAULT_PREFIX = "chatprovider:{quota}:"
_GLOB = re.compile(r"([*?\[\]\\])")
_UNAVAILABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError,
                redis_errors.ReadOnlyError, redis_errors.BusyLoadingError, OSError,
                TimeoutError)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _where(url: str) -> str:
    """The URL without credentials, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or parts.path or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


class RedisCounterStore:
    """A :class:`~chatprovider.counters.store.CounterStore` on a Redis server at ``url``
    (``redis://[:password@]host:port/db``, ``rediss://`` for TLS, ``unix:///path``)."""

    suspends = True

    def __init__(self, url: str, *, password: str | None = None, prefix: str = DEFAULT_PREFIX,
                 timeout: float = 0.5) -> None:
        self._where = _where(url)
        self._prefix = prefix
        self._timeout = timeout
        self._redis: Redis = Redis.from_url(
            url, password=password or None, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1), retry_on_error=[redis_errors.ConnectionError],
            health_check_interval=0, decode_responses=True, redis_connect_func=self._prepare)
        self._reserve = self._redis.register_script(scripts.RESERVE)
        self._settle = self._redis.register_script(scripts.SETTLE)
        self._read = self._redis.register_script(scripts.READ)

    def __repr__(self) -> str:
        return f"RedisCounterStore({self._where!r})"

    @property
    def where(self) -> str:
        """The server's address, without credentials (``redis://host:6379``)."""
        return self._where

    async def _call(self, what: str, coroutine: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout * 4):
                return await coroutine
        except _UNAVAILABLE as exc:
            raise CounterStoreUnavailable(
                f"the Redis counter store at {self._where} is unavailable ({what}:"
                f" {type(exc).__name__})") from None

    async def reserve(self, charges: Sequence[Charge], now: float) -> Outcome:
        if not charges:
            return Outcome(True, ())
        args: list[str | int] = [_ms(now)]
        for c in charges:
            args += [c.amount, c.capacity, _ms(c.expires_at), c.lease or ""]
        reply = await self._call("reserve", self._run(
            self._reserve, [self._prefix + c.key for c in charges], args))
        used = tuple(int(v) for v in reply[2:])
        return Outcome(bool(reply[0]), used, int(reply[1]) - 1 if not reply[0] else None)

    async def settle(self, adjustments: Sequence[Adjustment], now: float,
                     sent: asyncio.Future[None] | None = None) -> None:
        if not adjustments:
            mark_sent(sent)
            return
        args: list[str | int] = [_ms(now)]
        for a in adjustments:
            args += [a.delta, _ms(a.expires_at), a.lease or ""]
        try:
            await self._call("settle", self._run(
                self._settle, [self._prefix + a.key for a in adjustments], args, sent))
        finally:
            mark_sent(sent)

    async def _prepare(self, conn: Connection) -> None:
        """A new connection: the client's own set-up (authentication, database), then the
        hot path's scripts loaded on it, ahead of anything else it sends. Redis runs a
        connection's commands in order, and a restarted server only ever sees new
        connections, so reserve and settle never meet NOSCRIPT: a settlement runs the moment
        it is written, as ``sent`` promises."""
        await conn.on_connect()
        for script in (self._reserve, self._settle):
            await conn.send_command("SCRIPT", "LOAD", script.script)
            await conn.read_response()

    async def _run(self, script: AsyncScript, keys: list[str], args: list[str | int],
                   sent: asyncio.Future[None] | None = None) -> Any:
        """``script`` (EVALSHA) on a connection of the pool, straight on the connection rather
        than through the client's per-command machinery (the relay's hot path); ``sent``
        resolved once the script is written: Redis runs it before any command that reaches it
        later, on any connection.

        The script is sent once. The pool hands out only connections that are still open (a
        restart's dead ones are replaced as they are taken); once written, whatever happens to
        its reply (a time-out, a connection lost), Redis may have run it, and a settlement run
        twice would refund twice. Only a server that answers NOSCRIPT (its scripts flushed
        since the connection was made) did not run it: the script is loaded, and sent again;
        ``sent`` was resolved early then."""
        try:
            return await self._send(script, keys, args, sent)
        except redis_errors.NoScriptError:
            await self._redis.script_load(script.script)
        return await self._send(script, keys, args, sent)

    async def _send(self, script: AsyncScript, keys: list[str], args: list[str | int],
                    sent: asyncio.Future[None] | None) -> Any:
        pool = self._redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        clean = False
        try:
            await conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            mark_sent(sent)
            reply = await conn.read_response()
            clean = True
            return reply
        except redis_errors.NoScriptError:
            clean = True  # an error reply, read whole: the connection can serve again
            raise
        finally:
            if not clean:
                await conn.disconnect(nowait=True)
            await pool.release(conn)

    async def read(self, keys: Sequence[str], now: float) -> list[int]:
        if not keys:
            return []
        reply = await self._call("read", self._read(
            keys=[self._prefix + k for k in keys], args=[_ms(now)]))
        return [int(v) for v in reply]

    async def scan(self, prefix: str, now: float) -> dict[str, int]:
        pattern = _GLOB.sub(r"\\\1", self._prefix + prefix) + "*"

        async def keys() -> list[str]:
            return [k async for k in self._redis.scan_iter(match=pattern, count=1000)]

        found = [k.removeprefix(self._prefix) for k in await self._call("scan", keys())]
        values = await self.read(found, now)
        return {k: v for k, v in zip(found, values, strict=True)}

    async def aclose(self) -> None:
        await self._redis.aclose()
