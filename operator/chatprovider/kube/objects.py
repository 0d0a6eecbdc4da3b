"""Secrets and ConfigMaps that ChatProviders reference, each kept fresh by a single-object watch.

The operator and the relay read only the objects a provider references, in that provider's
namespace: every watch is ``fieldSelector=metadata.name=<name>`` on one namespace, which RBAC
authorizes per resource name. Nothing watches or caches every Secret in the cluster.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chatprovider.domain.routing import ProviderRef
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.logs import SecretValues
from chatprovider.registry import ObjectRef

__all__ = ["SECRET_OPT_IN_LABEL", "SECRET_OPT_IN_VALUE", "ObjectSnapshot", "ReferencedObjects"]

log = logging.getLogger(__name__)

_PATHS = {"Secret": "secrets", "ConfigMap": "configmaps"}
#: With ``require_secret_label``, only Secrets labelled so are read (defence in depth for
#: clusters that cannot run the admission policy; see docs/security.md).
SECRET_OPT_IN_LABEL = "ai.chatprovider.dev/provider-secret"
SECRET_OPT_IN_VALUE = "true"


@dataclass(frozen=True)
class ObjectSnapshot:
    """What a reference resolved to. ``data`` values are decoded bytes; never log them."""

    ref: ObjectRef
    exists: bool
    data: dict[str, bytes] = field(default_factory=dict, repr=False)
    resource_version: str = ""
    error: str | None = None  # e.g. "forbidden" when RBAC refuses the read

    def __repr__(self) -> str:  # keys only, never values
        return (f"ObjectSnapshot({self.ref}, exists={self.exists}, keys={sorted(self.data)}, "
                f"resourceVersion={self.resource_version!r}, error={self.error!r})")


def _decode(kind: str, obj: dict[str, object]) -> dict[str, bytes]:
    raw = obj.get("data") or {}
    assert isinstance(raw, dict)
    if kind == "Secret":
        return {str(k): base64.b64decode(str(v)) for k, v in raw.items()}
    out = {str(k): str(v).encode() for k, v in raw.items()}
    binary = obj.get("binaryData") or {}
    assert isinstance(binary, dict)
    out.update({str(k): base64.b64decode(str(v)) for k, v in binary.items()})
    return out


Callback = Callable[[ObjectRef, ObjectSnapshot], None]


class ReferencedObjects:
    """Tracks which providers reference which objects, watches each object while referenced."""

    def __init__(self, client: KubeClient, on_change: Callback | None = None, *,
                 watch_timeout: int = 300, secret_values: SecretValues | None = None,
                 require_secret_label: bool = False) -> None:
        """``watch_timeout``: the API server ends each watch after this many seconds; a watch
        silent for longer (plus a margin) is presumed dead and re-established.
        ``secret_values``: every value read from a Secret is added to it (the log filter masks
        them). ``require_secret_label``: a Secret without the label
        :data:`SECRET_OPT_IN_LABEL` = ``true`` is treated exactly as a missing one (its data is
        not kept)."""
        self.require_secret_label = require_secret_label
        self._client = client
        self._secret_values = secret_values
        self._on_change = on_change
        self._watch_timeout = watch_timeout
        self._owners: dict[ObjectRef, set[ProviderRef]] = {}
        self._snapshots: dict[ObjectRef, ObjectSnapshot] = {}
        self._tasks: dict[ObjectRef, asyncio.Task[None]] = {}
        self._ready: dict[ObjectRef, asyncio.Event] = {}

    # -- references ---------------------------------------------------------------------------
    def set_references(self, owner: ProviderRef, refs: tuple[ObjectRef, ...]) -> None:
        """Declare the complete set of objects ``owner`` needs (an empty tuple forgets it)."""
        wanted = set(refs)
        for ref in list(self._owners):
            owners = self._owners[ref]
            if owner in owners and ref not in wanted:
                owners.discard(owner)
                if not owners:
                    self._stop(ref)
        for ref in wanted:
            owners = self._owners.setdefault(ref, set())
            owners.add(owner)
            if ref not in self._tasks:
                self._ready[ref] = asyncio.Event()
                self._tasks[ref] = asyncio.create_task(self._watch(ref), name=f"watch {ref}")

    def loaded(self) -> bool:
        """Whether every referenced object has been read at least once (present or not)."""
        return all(event.is_set() for event in self._ready.values())

    def owners(self, ref: ObjectRef) -> frozenset[ProviderRef]:
        return frozenset(self._owners.get(ref, ()))

    def _stop(self, ref: ObjectRef) -> None:
        self._owners.pop(ref, None)
        self._snapshots.pop(ref, None)
        self._ready.pop(ref, None)
        task = self._tasks.pop(ref, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for ref in list(self._tasks):
            self._stop(ref)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- reads --------------------------------------------------------------------------------
    def peek(self, ref: ObjectRef) -> ObjectSnapshot | None:
        """The cached snapshot, if the watch has delivered one (hot path: no I/O)."""
        return self._snapshots.get(ref)

    async def get(self, ref: ObjectRef, timeout: float = 5.0) -> ObjectSnapshot:
        """The current snapshot; waits for the first list of a new watch (bounded)."""
        snap = self._snapshots.get(ref)
        if snap is not None:
            return snap
        ready = self._ready.get(ref)
        if ready is not None:
            try:
                async with asyncio.timeout(timeout):
                    await ready.wait()
            except TimeoutError:
                pass
            snap = self._snapshots.get(ref)
            if snap is not None:
                return snap
        return await self._fetch(ref)

    async def _fetch(self, ref: ObjectRef) -> ObjectSnapshot:
        path = f"/api/v1/namespaces/{ref.namespace}/{_PATHS[ref.kind]}/{ref.name}"
        try:
            obj = await self._client.get(path)
        except ApiError as exc:
            if exc.not_found:
                return ObjectSnapshot(ref, exists=False)
            if exc.forbidden:
                return ObjectSnapshot(ref, exists=False, error="forbidden")
            raise
        snap = self._snapshot(ref, obj)
        self._remember_secret_values(snap)
        return snap

    def _snapshot(self, ref: ObjectRef, obj: dict[str, Any]) -> ObjectSnapshot:
        """The snapshot of an object read from the API server (opt-in label applied)."""
        meta = obj.get("metadata") or {}
        if self.require_secret_label and ref.kind == "Secret" and \
                (meta.get("labels") or {}).get(SECRET_OPT_IN_LABEL) != SECRET_OPT_IN_VALUE:
            return ObjectSnapshot(ref, exists=False)
        return ObjectSnapshot(ref, True, _decode(ref.kind, obj), str(meta.get("resourceVersion")))

    # -- the watch loop -----------------------------------------------------------------------
    def _remember_secret_values(self, snap: ObjectSnapshot) -> None:
        if self._secret_values is None or snap.ref.kind != "Secret":
            return
        for value in snap.data.values():
            try:
                self._secret_values.add(value.decode("utf-8"))
            except UnicodeDecodeError:
                continue

    def _store(self, ref: ObjectRef, snap: ObjectSnapshot) -> None:
        self._remember_secret_values(snap)
        old = self._snapshots.get(ref)
        self._snapshots[ref] = snap
        ready = self._ready.get(ref)
        if ready is not None:
            ready.set()
        changed = old is not None and (
            old.exists != snap.exists or old.data != snap.data or old.error != snap.error
        )
        if changed and self._on_change is not None and ref in self._owners:
            self._on_change(ref, snap)

    async def _watch(self, ref: ObjectRef) -> None:
        path = f"/api/v1/namespaces/{ref.namespace}/{_PATHS[ref.kind]}"
        selector = {"fieldSelector": f"metadata.name={ref.name}"}
        backoff = 0.5
        while True:
            try:
                listing = await self._client.get(path, params=selector)
                items = listing.get("items") or []
                if items:
                    self._store(ref, self._snapshot(ref, items[0]))
                else:
                    self._store(ref, ObjectSnapshot(ref, exists=False))
                version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                async for event in self._client.watch(path, resource_version=version,
                                                      params=selector,
                                                      timeout_seconds=self._watch_timeout):
                    backoff = 0.5
                    obj = event.object
                    if event.type == "BOOKMARK":
                        continue
                    if event.type == "DELETED":
                        self._store(ref, ObjectSnapshot(ref, exists=False))
                    else:
                        self._store(ref, self._snapshot(ref, obj))
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.forbidden:
                    self._store(ref, ObjectSnapshot(ref, exists=False, error="forbidden"))
                if not exc.gone:
                    log.warning("watch of %s failed: %s %s", ref, exc.status, exc.reason)
                    await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                    backoff = min(backoff * 2, 30.0)
            except Exception as exc:  # connection loss, API server restart: re-list and re-watch
                log.info("watch of %s interrupted (%s); re-listing", ref, type(exc).__name__)
                await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
                backoff = min(backoff * 2, 30.0)
