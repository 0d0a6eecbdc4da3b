"""The watch of ChatProviders, through kopf: the operator and the standalone relay both run it.

:class:`ProviderWatch` first lists the providers itself (so that a process knows when it has
seen them all: the relay is ready only then, and after the Secrets they reference are loaded),
then lets kopf watch.

Handlers are registered on a registry built here (no import-time registration into kopf's global
registry), and each is a thin adapter: ChatProvider events go to an observer (the operator's
reconciler, or the relay's feed). Only ``on.event`` is used: it stores nothing on the objects
(no ``last-handled-configuration`` annotation, no finalizer), so the status the operator applies
is its only write, and deleting a provider is never blocked.

Other resources of the API group that a process needs to know before it serves (the relay's
ChatQuotas) are passed as ``others``, a mapping of plural to observer: they are listed with the
providers (so :meth:`ProviderWatch.synced` waits for them too) and watched by the same kopf.

kopf announces no deletion that happened while a watch was gone: every event passes through
an :class:`~chatprovider.inventory.Inventory`, and its :class:`~chatprovider.inventory.Sweeper`
forgets what is gone after kopf's lists and every ``watch_sweep_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, cast

import kopf

from chatprovider.api.v1alpha1 import GROUP, PLURAL, VERSION
from chatprovider.inventory import Inventory, Observer, Sweeper
from chatprovider.kube.client import ApiError, KubeClient
from chatprovider.kube.config import KubeConfig
from chatprovider.kube.objects import ReferencedObjects
from chatprovider.settings import OperatorSettings

__all__ = ["KopfLogin", "NoDiffBase", "Observer", "ProviderWatch", "build_kopf_registry",
           "configure_kopf", "run_kopf"]

log = logging.getLogger(__name__)


def configure_kopf(settings: kopf.OperatorSettings, ours: OperatorSettings | None = None
                   ) -> None:
    """kopf settings shared by the operator and the standalone relay (watch timeouts from
    ``ours``)."""
    ours = ours or OperatorSettings()
    # A watch that goes silent (nolar/kopf#585) is re-established: the server ends each watch
    # after server_timeout, the client gives up after client_timeout in total, or after
    # inactivity_timeout without any event (the API server sends bookmarks in between).
    settings.watching.server_timeout = int(ours.watch_server_timeout)  # timeoutSeconds
    settings.watching.client_timeout = ours.watch_client_timeout
    settings.watching.inactivity_timeout = ours.watch_inactivity_timeout
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    # kopf would otherwise post its log lines as Kubernetes Events; we post our own, deliberately.
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.networking.request_timeout = 30


class NoDiffBase(kopf.DiffBaseStorage):
    """No "diff base": kopf builds one at every event of every object (a deep copy of the whole
    object, status and managedFields included) for ``on.create``/``on.update`` handlers to
    compare against. Only ``on.event`` handlers are registered here, which never read it; with
    10,000 providers that copy was a large part of the watch's CPU time."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
              ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class KopfLogin:
    """kopf's credentials, from the same :class:`KubeConfig` (and token source) our own client
    uses. kopf calls the login handler at start, when the credential it holds reaches its
    ``expiration`` (an exec plugin's ``expirationTimestamp``), and after a 401; a call while the
    token last handed out is still current is such a rejection, so that token is renewed (a
    token file re-read, an exec plugin run again)."""

    def __init__(self, config: KubeConfig) -> None:
        self._config = config
        self._given: str | None = None

    async def __call__(self) -> kopf.ConnectionInfo:
        credentials = self._config.credentials
        if self._given is None:
            token = await credentials.token()
        else:
            token = await credentials.renew(self._given)
        self._given = token
        c = self._config
        return kopf.ConnectionInfo(
            server=c.server,
            ca_path=c.ca_file,
            ca_data=c.ca_data,
            insecure=not c.verify_ssl,
            scheme="Bearer" if token else None,
            token=token,
            certificate_path=c.cert_file,
            certificate_data=c.cert_data,
            private_key_path=c.key_file,
            private_key_data=c.key_data,
            default_namespace=c.namespace,
            expiration=credentials.expires_at,
        )


def build_kopf_registry(observe: Observer, *, config: KubeConfig, liveness: Callable[[], int],
                        settings: OperatorSettings | None = None,
                        others: Mapping[str, Observer] | None = None,
                        listing: Callable[[str], None] = lambda plural: None
                        ) -> kopf.OperatorRegistry:
    """A registry whose ChatProvider events go to ``observe(event_type, body)``, and the events
    of each plural of ``others`` (same group and version) to its observer. An object that kopf
    lists (rather than watches) comes as ADDED, after ``listing(plural)``."""
    registry = kopf.OperatorRegistry()
    ours = settings

    @kopf.on.startup(registry=registry)
    async def _configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_kopf(settings, ours)

    login = KopfLogin(config)

    @kopf.on.login(registry=registry)
    async def _login(**_: Any) -> kopf.ConnectionInfo:
        return await login()

    for plural, observer in {PLURAL: observe, **(others or {})}.items():
        async def _on_event(type: str | None, body: kopf.Body, _observer: Observer = observer,
                            _plural: str = plural, **_: Any) -> None:
            if type is None:
                listing(_plural)
            _observer(type or "ADDED", body)

        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"{plural}-events")(_on_event)

    @kopf.on.probe(id="providers", registry=registry)
    async def _providers(**_: Any) -> int:
        return liveness()

    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    return registry


async def run_kopf(registry: kopf.OperatorRegistry, settings: OperatorSettings,
                   stop_flag: asyncio.Event, liveness_port: int | None = None) -> None:
    """Watch until ``stop_flag``. Every replica watches (kopf's peering is off): the operator's
    replicas coordinate through their own Lease (:mod:`chatprovider.controller.leader`)."""
    await kopf.operator(
        registry=registry,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=True,
        # kopf would otherwise call getpass.getuser(), which fails for a uid with no passwd
        # entry (any non-root uid in a slim image).
        identity=cast(Any, f"{socket.gethostname()}/{os.getpid()}"),  # kopf's Identity NewType
        stop_flag=stop_flag,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
    )


def _log_list_failure(exc: Exception, said: set[str], plural: str = PLURAL) -> None:
    """Say each kind of start-up failure once, as a warning with what to do, then retry
    quietly: a missing CRD, an API server that cannot be reached or refuses us. A CRD's storage
    that is still initialising (429, for a moment after the CRD is applied) is expected: INFO."""
    if isinstance(exc, ApiError) and exc.status == 429:
        log.info("ChatProviders are not served yet (%s); retrying", exc)
        return
    if isinstance(exc, ApiError) and exc.status == 404 and plural != PLURAL:
        kind = f"crd-{plural}"
        message = (f"the CRD of {plural}.{GROUP} is not installed in this cluster: install "
                   "every CRD of the release (the Helm chart, or `kubectl apply --server-side "
                   "-f crds/`); waiting for it, not ready until then (the relay never serves "
                   "before it knows the quotas)")
    elif isinstance(exc, ApiError) and exc.status == 404:
        kind = "crd"
        message = ("the ChatProvider CRD is not installed in this cluster: install it with "
                   "`chatprovider crd | kubectl apply --server-side -f -` (or the Helm chart); "
                   "waiting for it")
    else:
        kind = "api"
        message = (f"cannot list ChatProviders ({exc}): is the API server reachable, and may "
                   "this identity list them? Retrying with back-off")
    if kind in said:
        log.debug("listing ChatProviders failed (%s); retrying", exc)
    else:
        said.add(kind)
        log.warning(message)


class ProviderWatch:
    """ChatProviders, listed once and then watched, handed to ``observe``; :meth:`synced` says
    whether every provider has been seen and every object they reference read."""

    def __init__(self, settings: OperatorSettings, config: KubeConfig, kube: KubeClient,
                 objects: ReferencedObjects, observe: Observer,
                 liveness: Callable[[], int],
                 others: Mapping[str, Observer] | None = None) -> None:
        self._settings, self._kube, self._objects = settings, kube, objects
        self._plurals = [PLURAL, *(others or {})]
        self.inventory = Inventory(kube, {PLURAL: observe, **(others or {})},
                                   settings.namespaces)
        self.sweeper = Sweeper(self.inventory, self._plurals, settings.watch_sweep_interval)
        self._registry = build_kopf_registry(
            partial(self.inventory.deliver, PLURAL), config=config, liveness=liveness,
            settings=settings, listing=self.sweeper.listing,
            others={p: partial(self.inventory.deliver, p) for p in self._plurals[1:]})
        self.listed = asyncio.Event()
        self._synced = False
        self._listing = PLURAL  # what list_once is listing (for its failure's message)

    def synced(self) -> bool:
        """Latched: once everything was loaded, a provider added later that references a new
        Secret does not make this replica (and every other at once) unready while it is read."""
        if not self._synced:
            self._synced = self.listed.is_set() and self._objects.loaded()
        return self._synced

    async def list_once(self) -> int:
        """List every ChatProvider in scope (and every object of ``others``) and observe each;
        the number of providers listed. It runs before kopf starts (:meth:`run`), so nothing
        newer can have been delivered yet."""
        listed: dict[str, list[dict[str, Any]]] = {}
        for plural in self._plurals:
            self._listing = plural
            bodies: list[dict[str, Any]] = []
            for path in self.inventory.collection_paths(plural):
                bodies.extend((await self._kube.get(path)).get("items") or [])
            listed[plural] = bodies
        for plural, bodies in listed.items():
            for body in bodies:
                self.inventory.deliver(plural, "ADDED", body)
        self.listed.set()
        return len(listed[PLURAL])

    async def _list_until_done(self, stop: asyncio.Event) -> None:
        delay, said = 0.5, set[str]()
        while not stop.is_set():
            try:
                count = await self.list_once()
            except asyncio.CancelledError:
                raise
            except (ApiError, OSError, TimeoutError) as exc:  # the API server is not there yet
                _log_list_failure(exc, said, self._listing)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await stop.wait()
                delay = min(delay * 2, 10.0)
                continue
            log.info("listed %d ChatProviders", count)
            return

    async def run(self, stop: asyncio.Event, liveness_port: int | None = None) -> None:
        """List, then watch with kopf until ``stop``.

        kopf starts only once the list has succeeded, that is once ChatProviders are served:
        kopf resolves the resource when it starts and again on each change of a CRD, and a CRD
        applied after it started is often still unserved at its last change (Established comes
        before discovery and storage are ready), so that kopf would never watch it."""
        await self._list_until_done(stop)
        if stop.is_set():
            return
        # Started before kopf: kopf waits, when it stops, for the tasks started after it.
        sweeper = asyncio.create_task(self.sweeper.run(), name="watch sweeper")
        try:
            await run_kopf(self._registry, self._settings, stop, liveness_port)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
