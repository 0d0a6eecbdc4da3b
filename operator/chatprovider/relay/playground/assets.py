"""The playground's static files: read once when the relay is built, served from memory.

Only the files listed in :data:`FILES` are served (no directory listing, no path from the
request ever reaches the file system). Every answer carries :data:`SECURITY_HEADERS`: a strict
Content-Security-Policy (scripts, styles and fetches from this origin only, no inline code, no
framing, Trusted Types required), ``nosniff``, no referrer, no framing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

__all__ = ["CSP", "FILES", "SECURITY_HEADERS", "Asset", "AssetHandler", "load_assets"]

#: URL path → (file in ``static/``, content type).
FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/playground/playground.css": ("playground.css", "text/css; charset=utf-8"),
    "/playground/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
}

CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
])

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    # Small files that change with the package: revalidate each time (ETag makes that cheap).
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Read every file of :data:`FILES` from the package (raises if one is missing)."""
    folder = resources.files(__package__ or "chatprovider.relay.playground") / "static"
    assets: dict[str, Asset] = {}
    for path, (name, content_type) in FILES.items():
        body = (folder / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[path] = Asset(body, content_type, etag)
    return assets


class AssetHandler:
    """Serves the loaded assets; ``GET`` only, with ``ETag``/``If-None-Match``."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self._assets = assets

    async def get(self, request: web.Request) -> web.Response:
        asset = self._assets.get(request.path)
        if asset is None:  # only registered paths are routed here
            raise web.HTTPNotFound()
        headers = {**SECURITY_HEADERS, "ETag": asset.etag}
        wanted = {tag.strip() for value in request.headers.getall("If-None-Match", [])
                  for tag in value.split(",")}
        if asset.etag in wanted or "*" in wanted:
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = asset.content_type
        return web.Response(body=asset.body, headers=headers)
