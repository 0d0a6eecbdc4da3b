"""Choosing whether a request goes through ``spec.proxy`` (the ``noProxy`` rules)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from chatprovider.domain.egress import parse_ip

__all__ = ["bypasses_proxy", "proxy_for"]


def bypasses_proxy(host: str, no_proxy: Sequence[str]) -> bool:
    """True when ``host`` matches a noProxy entry: ``*``, an exact host, a domain suffix
    (``.corp.example`` or ``corp.example`` both match ``a.corp.example``), or a CIDR that
    contains the host's IP address."""
    host = host.lower().rstrip(".")
    ip = parse_ip(host)
    for entry in no_proxy:
        p = entry.lower().strip().rstrip(".")
        if not p:
            continue
        if p == "*" or host == p.lstrip("."):
            return True
        if "/" in p and ip is not None:
            try:
                net = ipaddress.ip_network(p, strict=False)
            except ValueError:
                continue
            if ip.version == net.version and ip in net:
                return True
            continue
        suffix = p if p.startswith(".") else "." + p
        if host.endswith(suffix):
            return True
    return False


def proxy_for(host: str, proxy_url: str | None, no_proxy: Sequence[str]) -> str | None:
    """The proxy URL to use for ``host``, or None to connect directly."""
    if proxy_url is None or bypasses_proxy(host, no_proxy):
        return None
    return proxy_url
