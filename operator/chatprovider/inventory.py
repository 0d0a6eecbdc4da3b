"""What the watch has told a process exists, and the sweep that finds what it failed to say.

kopf lists again when a watch ends with ``410 Gone`` (its resourceVersion is older than the API
server keeps), and replays only the objects that still exist: an object deleted during that gap
never gets a DELETED event (kopf 1.45, ``_cogs/clients/watching.py``: the listed objects are
yielded as events of type None, and nothing is compared with what was known). A ChatProvider
deleted then would stay in the registry: the relay would still route to it, and the operator
would still send its key to its endpoint at every check, until a restart.

:class:`Inventory` keeps, for each kind watched, the uid of every object its observer was told
about. :meth:`Inventory.sweep` lists the kind's objects (metadata only) and forgets, with a
DELETED event to the observer, each known object that is not there, once a GET confirms that
it is gone (the list may be older than an object the watch delivered since); and it hands over,
as it is now, each listed object the observer does not hold as listed (a name known under an
older uid, or, a minute after its creation, not known at all).

:class:`Sweeper` decides when: after each of kopf's lists that lists anything, once its events
have stopped for :data:`SWEEP_QUIET` seconds, and every ``interval`` since every kind was last
swept (a list that finds nothing gives no event to go by: the last ChatQuota deleted in a gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from chatprovider.api.v1alpha1 import GROUP, VERSION
from chatprovider.kube.client import ApiError, KubeClient

__all__ = ["SWEEP_QUIET", "Inventory", "Key", "Observer", "Sweeper"]

Observer = Callable[[str, Mapping[str, Any]], None]
Key = tuple[str, str]
"""An object's namespace and name."""

log = logging.getLogger(__name__)

#: How many GETs a sweep has in flight at once (each confirms that one object is gone).
_CONFIRMING = 8
#: How long kopf's listing events must have stopped before the sweep after a list runs.
SWEEP_QUIET = 2.0
#: Failures of a sweep that are the API server's (logged without a traceback).
_EXPECTED = (ApiError, OSError, TimeoutError, aiohttp.ClientError)


def _key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _uid(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid", ""))


class Inventory:
    """Events of each plural of ``observers`` go through :meth:`deliver`, which remembers the
    uid of what exists; ``namespaces`` is the scope watched (empty: every namespace).
    ``settle``: how old (seconds) a listed object must be before a sweep reads one the watch
    has not delivered (a younger one is most likely still on its way through the watch)."""

    def __init__(self, kube: KubeClient, observers: Mapping[str, Observer],
                 namespaces: Sequence[str] = (), *, settle: float = 60.0) -> None:
        self._kube, self._settle = kube, settle
        self._observers = dict(observers)
        self._namespaces = tuple(namespaces)
        self._known: dict[str, dict[Key, str]] = {p: {} for p in self._observers}

    def deliver(self, plural: str, event_type: str, body: Mapping[str, Any]) -> None:
        """Hand one event of ``plural`` to its observer, and remember what now exists. The
        DELETED of an object whose name a newer object already has (kopf handles each uid on
        its own, so the two may come in either order) is not passed on: the observers know
        objects by name, and would drop the newer one."""
        key, uid, known = _key_of(body), _uid(body), self._known[plural]
        if event_type == "DELETED":
            if uid and known.get(key, uid) != uid:
                return
            known.pop(key, None)
        else:
            known[key] = uid
        self._observers[plural](event_type, body)

    def known(self, plural: str) -> Mapping[Key, str]:
        """The objects of ``plural`` the observer was told exist, with their uids."""
        return self._known[plural]

    def collection_paths(self, plural: str) -> list[str]:
        """Where ``plural`` is listed: in each namespace watched, or across the cluster."""
        return ([f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{plural}" for ns in self._namespaces]
                or [f"/apis/{GROUP}/{VERSION}/{plural}"])

    async def sweep(self, plural: str) -> list[Key]:
        """Forget each known object of ``plural`` that no longer exists (the observer gets a
        DELETED event for it), and hand over each listed one the observer does not hold (not
        known, or known as an older object of the same name) as it is now; the objects
        forgotten. Raises what the API server raises."""
        listed: dict[Key, str] = {}
        settled: set[Key] = set()  # created long enough ago for the watch to have said so
        before = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=self._settle)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        for path in self.collection_paths(plural):
            for item in (await self._kube.list_metadata(path)).get("items") or []:
                key = _key_of(item)
                listed[key] = _uid(item)
                if str((item.get("metadata") or {}).get("creationTimestamp", "")) < before:
                    settled.add(key)
        known = self._known[plural]
        # Known but not listed; or listed as another object of the same name, or (if settled)
        # not known at all: kopf handles each uid on its own, so the old object's last events
        # can come after the new one's first, and leave the observers with the old object or
        # with none.
        doubtful = [(key, uid) for key, uid in known.items() if listed.get(key) != uid]
        doubtful += [(key, "") for key in (listed.keys() & settled) - known.keys()]
        room = asyncio.Semaphore(_CONFIRMING)

        async def current(key: Key) -> Mapping[str, Any] | None:
            async with room:
                return await self._get(plural, key)

        bodies = await asyncio.gather(*(current(key) for key, _ in doubtful))
        forgotten: list[Key] = []
        for (key, uid), body in zip(doubtful, bodies, strict=True):
            if known.get(key, "") != uid:
                continue  # the watch said something newer meanwhile
            if body is None and uid:
                log.info("%s %s/%s was deleted while the watch was reconnecting: forgetting it",
                         plural, *key)
                self.deliver(plural, "DELETED", {"metadata": {
                    "namespace": key[0], "name": key[1], "uid": uid}})
                forgotten.append(key)
            elif body is not None and _uid(body) != uid:
                log.info("%s %s/%s is not the object the watch last said: taking it as it is "
                         "now", plural, *key)
                self.deliver(plural, "MODIFIED" if uid else "ADDED", body)
        return forgotten

    async def _get(self, plural: str, key: Key) -> Mapping[str, Any] | None:
        """The object ``key`` as it is now (None: there is none)."""
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{key[0]}/{plural}/{key[1]}"
        try:
            return await self._kube.get(path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise


class Sweeper:
    """Runs :meth:`Inventory.sweep` for each of ``plurals`` when due: call :meth:`listing`
    for each object kopf lists (rather than watches), and :meth:`run` until cancelled."""

    def __init__(self, inventory: Inventory, plurals: Iterable[str], interval: float) -> None:
        self._inventory, self._interval = inventory, interval
        self._plurals = frozenset(plurals)
        self._unswept: set[str] = set()  # listed by kopf since their last sweep
        self._listed = asyncio.Event()
        self.sweeps = 0
        """Rounds of sweeps that all succeeded."""

    def listing(self, plural: str) -> None:
        self._unswept.add(plural)
        self._listed.set()

    async def _listing_settled(self) -> None:
        """Until kopf has listed something, and then listed nothing for SWEEP_QUIET seconds."""
        await self._listed.wait()
        while self._listed.is_set():
            self._listed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SWEEP_QUIET):
                    await self._listed.wait()

    async def run(self) -> None:
        """Sweep when due until cancelled. A kind whose sweep fails is retried with back-off
        (1 s, doubling up to 30 s) on its own: the others keep their schedule. The first
        failure of a run of them is a warning, the rest DEBUG, the recovery INFO."""
        loop = asyncio.get_running_loop()
        full_at = loop.time() + self._interval
        retry: set[str] = set()  # kinds whose last sweep failed
        retry_at, delay = math.inf, 1.0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(min(full_at, retry_at)):
                    await self._listing_settled()
            due, self._unswept = self._unswept, set()
            now = loop.time()
            full = now >= full_at
            if full:
                due |= self._plurals
            if now >= retry_at:
                due |= retry
            if not due:
                continue
            failing = bool(retry)
            failed = {plural for plural in sorted(due) if not await self._sweep(plural, failing)}
            if full:
                full_at = loop.time() + self._interval
            retry = (retry - due) | failed
            if failed:
                retry_at, delay = loop.time() + delay, min(delay * 2, 30.0)
                continue
            self.sweeps += 1
            if failing and not retry:
                log.info("the watched objects are swept again")
                retry_at, delay = math.inf, 1.0

    async def _sweep(self, plural: str, failing: bool) -> bool:
        try:
            await self._inventory.sweep(plural)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the API server away, or a bug: never stop sweeping
            log.log(logging.DEBUG if failing else logging.WARNING,
                    "could not list the %s to forget deleted ones (%s); retrying with back-off",
                    plural, str(exc) or type(exc).__name__,
                    exc_info=not isinstance(exc, _EXPECTED))
            return False
        return True
