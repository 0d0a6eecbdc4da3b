"""Async requests to the Kubernetes API: get, list, create, patch, watch."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from chatprovider.kube.config import KubeConfig

__all__ = ["ApiError", "KubeClient", "WatchEvent"]

JSON = dict[str, Any]
#: A list as metadata only (the form controller-runtime's metadata-only informers ask for),
#: else the full list.
_METADATA_LIST = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                  "application/json")


class ApiError(Exception):
    """The API server answered with an error status (its ``Status`` message is kept)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: JSON


class KubeClient:
    """One pooled HTTP session to the API server. Create inside a running event loop."""

    def __init__(self, config: KubeConfig, *, timeout: float = 30.0, pool: int = 50) -> None:
        self.config = config
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self._session = aiohttp.ClientSession(
            base_url=config.server,
            connector=aiohttp.TCPConnector(ssl=config.ssl_context(), limit=pool),
            raise_for_status=False,
        )

    async def close(self) -> None:
        await self._session.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    def _headers(token: str | None, content_type: str | None = None,
                 accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    @contextlib.asynccontextmanager
    async def _send(self, method: str, path: str, *, data: bytes | None = None,
                    content_type: str | None = None, params: Mapping[str, str] | None = None,
                    timeout: aiohttp.ClientTimeout, accept: str = "application/json"
                    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request; on a 401 once more with a renewed token (a rotated token file, an
        exec plugin run again), unless the credentials have nothing newer."""
        credentials = self.config.credentials
        token = await credentials.token()
        for attempt in (1, 2):
            # A fresh BytesIO per attempt: aiohttp warns that a large bytes body would block the
            # loop while it is copied, and a stream can be sent once only.
            async with self._session.request(
                method, path, data=None if data is None else io.BytesIO(data), params=params,
                timeout=timeout,
                headers=self._headers(token, content_type, accept),
                server_hostname=self.config.tls_server_name,
            ) as resp:
                if resp.status == 401 and attempt == 1:
                    renewed = await credentials.renew(token)
                    if renewed != token:
                        token = renewed
                        continue
                yield resp
                return

    async def request(
        self, method: str, path: str, *, body: Any = None, content_type: str = "application/json",
        params: Mapping[str, str] | None = None, accept: str = "application/json",
    ) -> JSON:
        data = None if body is None else _dumps(body)
        async with self._send(method, path, data=data, params=params, timeout=self._timeout,
                              content_type=content_type if data is not None else None,
                              accept=accept) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise _api_error(resp.status, text)
            return json.loads(text) if text else {}

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        return await self.request("GET", path, params=params)

    async def list_metadata(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        """A list of ``path``'s objects with their metadata only (a ``PartialObjectMetadataList``:
        no spec, no status), for a caller that needs to know which objects exist; an API server
        that cannot serve that form answers the full list, with the same ``items[].metadata``."""
        return await self.request("GET", path, params=params, accept=_METADATA_LIST)

    async def create(self, path: str, body: JSON) -> JSON:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: JSON) -> JSON:
        """PUT: with ``metadata.resourceVersion`` set, a compare-and-swap (409 if stale)."""
        return await self.request("PUT", path, body=body)

    async def apply(self, path: str, body: JSON, *, field_manager: str,
                    force: bool = True) -> JSON:
        """Server-side apply of ``body`` (a whole object, as its field manager wants it)."""
        return await self.request(
            "PATCH", path, body=body, content_type="application/apply-patch+yaml",
            params={"fieldManager": field_manager, "force": "true" if force else "false"})

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        return await self.request("PATCH", path, body=body,
                                  content_type="application/merge-patch+json")

    async def watch(
        self, path: str, *, resource_version: str | None = None,
        params: Mapping[str, str] | None = None, timeout_seconds: int = 300,
    ) -> AsyncIterator[WatchEvent]:
        """Yield events until the server ends the watch (after ``timeout_seconds``).

        The caller re-lists and re-watches; :class:`ApiError` with ``gone`` means the
        resourceVersion is too old. A watch silent for ``timeout_seconds`` plus a margin (at
        most 30 s) is dead (a connection lost without a FIN): it raises a timeout. Events are
        split on newlines from the raw stream, with no line-length limit: an object can be as
        large as the API server stores (about 1.5 MiB in etcd by default).
        """
        query = {"watch": "true", "allowWatchBookmarks": "true",
                 "timeoutSeconds": str(timeout_seconds), **(params or {})}
        if resource_version:
            query["resourceVersion"] = resource_version
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10,
                                        sock_read=timeout_seconds + min(30, timeout_seconds))
        async with self._send("GET", path, params=query, timeout=timeout) as resp:
            if resp.status >= 400:
                raise _api_error(resp.status, await resp.text())
            async for line in _lines(resp.content):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    obj = event.get("object") or {}
                    raise ApiError(int(obj.get("code", 500)), str(obj.get("reason", "")),
                                   str(obj.get("message", "")))
                yield WatchEvent(event["type"], event["object"])


def _dumps(body: Any) -> bytes:
    """Compact JSON, UTF-8 as is: a \\u escape would triple the size of non-ASCII text, and
    the API server limits a request's body (3 MiB)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Non-empty newline-terminated lines of ``stream``, however long (aiohttp's own line
    reader refuses lines over its buffer limit, 512 KiB in aiohttp 3.14)."""
    pending: list[bytes] = []
    async for chunk in stream.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            pending.append(chunk[start:end])
            line = b"".join(pending)
            pending.clear()
            if line.strip():
                yield line
            start = end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
    if (rest := b"".join(pending)).strip():
        yield rest


def _api_error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
        return ApiError(status, str(body.get("reason", "")), str(body.get("message", text)))
    except (ValueError, AttributeError):
        return ApiError(status, "", text[:500])


