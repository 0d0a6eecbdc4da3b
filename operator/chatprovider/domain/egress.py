"""Which addresses the operator and relay may connect to (the outbound, anti-SSRF policy).

Checked on every resolved address, after DNS, so that a name resolving to a metadata address is
refused too; the connection is then made to exactly the address that was checked (no rebinding).

Decision order for an address (IPv4-mapped, IPv4-compatible and NAT64 IPv6 forms are checked as
their IPv4):

1. in a configured deny CIDR → refused;
2. configured allow CIDRs exist: inside one → allowed, else refused;
3. in the built-in deny list (link-local, cloud metadata, unspecified, multicast) → refused;
4. otherwise allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["BUILTIN_DENY", "EgressDecision", "EgressPolicy", "IPNetwork", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Refused unless explicitly allowed: link-local (incl. 169.254.169.254), cloud metadata services,
#: "this network", multicast and broadcast.
BUILTIN_DENY: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",     # IPv4 link-local; AWS, GCP, Azure, OpenStack metadata
        "fe80::/10",          # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "192.0.0.192/32",     # Oracle Cloud metadata
        "0.0.0.0/8",          # "this network"; 0.0.0.0 reaches the local host
        "::/128",
        "224.0.0.0/4",        # multicast
        "ff00::/8",
        "255.255.255.255/32",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Deprecated IPv4-compatible addresses (RFC 4291 2.5.5.1): ::169.254.169.254 is the metadata
#: address to a host that still tunnels them.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def parse_ip(text: str) -> IPAddress | None:
    """An IP address literal (brackets and zone ids allowed), or None for a host name."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _canonical(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _IPV4_COMPATIBLE and int(address) > 1:  # ::a.b.c.d (not :: or ::1)
            return ipaddress.IPv4Address(int(address))
    return address


@dataclass(frozen=True)
class EgressDecision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class EgressPolicy:
    """Allow and deny CIDR lists on top of the built-in deny list."""

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()
    builtin_deny: tuple[IPNetwork, ...] = field(default=BUILTIN_DENY)

    @classmethod
    def from_strings(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> EgressPolicy:
        """Build from CIDR strings; raises ValueError naming a bad entry."""
        def nets(items: Iterable[str]) -> tuple[IPNetwork, ...]:
            out = []
            for item in items:
                try:
                    out.append(ipaddress.ip_network(item.strip(), strict=False))
                except ValueError as exc:
                    raise ValueError(f"invalid CIDR {item!r}: {exc}") from None
            return tuple(out)

        return cls(allow=nets(allow), deny=nets(deny))

    def check(self, address: IPAddress | str) -> EgressDecision:
        ip = parse_ip(address) if isinstance(address, str) else address
        if ip is None:
            return EgressDecision(False, f"{address!r} is not an IP address")
        ip = _canonical(ip)
        if any(_contains(n, ip) for n in self.deny):
            return EgressDecision(False, f"{ip} is in a denied CIDR")
        if self.allow:
            if any(_contains(n, ip) for n in self.allow):
                return EgressDecision(True, f"{ip} is in an allowed CIDR")
            return EgressDecision(False, f"{ip} is not in any allowed CIDR")
        if any(_contains(n, ip) for n in self.builtin_deny):
            return EgressDecision(False, f"{ip} is a link-local, metadata or reserved address")
        return EgressDecision(True, "allowed")


def _contains(network: IPNetwork, ip: IPAddress) -> bool:
    return ip.version == network.version and ip in network
