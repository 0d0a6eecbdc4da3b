"""The browser playground of the relay: a chat page at ``/`` and ``GET /v1/providers``.

Mounted by :class:`~chatprovider.relay.Relay` when ``RelaySettings.playground`` is true (off by
default; ``chatprovider up`` turns it on). The page is three static files in ``static/`` (HTML,
CSS, JavaScript; no build step, nothing fetched from elsewhere) that talk to the relay's own
OpenAI-compatible API with the caller's token, so it shows exactly what that caller may use.

Routes added: ``GET /`` (the page), ``GET /playground/playground.{css,js}``,
``GET /v1/providers`` (:mod:`.providers`).
"""

from __future__ import annotations

from aiohttp import web

from chatprovider.registry import Registry
from chatprovider.relay.auth import Access
from chatprovider.relay.playground.assets import FILES, AssetHandler, load_assets
from chatprovider.relay.playground.providers import ProvidersHandler

__all__ = ["PROVIDERS_PATH", "mount_playground"]

PROVIDERS_PATH = "/v1/providers"


def mount_playground(app: web.Application, registry: Registry, access: Access) -> None:
    """Add the playground's routes to the relay's application (before it is started)."""
    assets = AssetHandler(load_assets())
    for path in FILES:
        app.router.add_get(path, assets.get, allow_head=False)
    app.router.add_get(PROVIDERS_PATH, ProvidersHandler(registry, access).list_providers,
                       allow_head=False)
