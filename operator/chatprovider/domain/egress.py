"""Which addresses the operator and relay may connect to (the outbound, anti-SSRF policy).

Checked on every resolved address, after DNS, so that a name resolving to a metadata address is
refused too; the connection is then made to exactly the address that was checked (no rebinding).

Decision order for an address:

1. in a configured deny CIDR → refused;
2. configured allow CIDRs exist: inside one → allowed, else refused;
3. in the built-in deny list (link-local, cloud metadata, unspecified, multicast) → refused;
4. otherwise allowed.

IPv6 addresses that stand for an IPv4 host are checked as that IPv4 address: IPv4-mapped
(``::ffff:a.b.c.d``), IPv4-translated (``::ffff:0:a.b.c.d``, RFC 2765), IPv4-compatible
(``::a.b.c.d``) and NAT64 with the well-known prefix (``64:ff9b::/96``). IPv6 addresses that
*embed* an IPv4 address a translator or tunnel may deliver to are checked both as themselves and
as every IPv4 address they embed, and refused if any of them is: 6to4 (``2002::/16``), Teredo
(``2001::/32``: its server and its client address), the local-use NAT64 prefix
``64:ff9b:1::/48`` (RFC 8215; the IPv4 address may sit at any RFC 6052 position, so every one is
checked) and ISATAP interface identifiers (``::0:5efe:a.b.c.d``, ``::200:5efe:a.b.c.d``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["BUILTIN_DENY", "EgressDecision", "EgressPolicy", "IPNetwork", "embedded_ipv4",
           "parse_ip"]

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
#: The local-use NAT64 prefix (RFC 8215), in which a network picks its own prefix length.
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
#: IPv4-translated addresses (RFC 2765, SIIT).
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
#: Deprecated IPv4-compatible addresses (RFC 4291 2.5.5.1): ::169.254.169.254 is the metadata
#: address to a host that still tunnels them.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
#: ISATAP interface identifiers (RFC 5214): the upper 32 bits of the last 64, for a local or a
#: universal IPv4 address.
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)
#: NAT64 prefix lengths of RFC 6052 that fit inside the local-use /48.
_LOCAL_NAT64_PREFIXES = (48, 56, 64, 96)


def parse_ip(text: str) -> IPAddress | None:
    """An IP address literal (brackets and zone ids allowed), or None for a host name."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _canonical(address: IPAddress) -> IPAddress:
    """The IPv4 host an IPv6 address stands for, or the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64 or address in _IPV4_TRANSLATED:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _IPV4_COMPATIBLE and int(address) > 1:  # ::a.b.c.d (not :: or ::1)
            return ipaddress.IPv4Address(int(address))
    return address


def _rfc6052(address: ipaddress.IPv6Address, prefix: int) -> ipaddress.IPv4Address | None:
    """The IPv4 address RFC 6052 embeds after a ``prefix``-bit NAT64 prefix, or None when the
    address is not of that form (below /96 the "u" octet, bits 64-71, and the suffix after the
    IPv4 address must be zero)."""
    octets = int(address).to_bytes(16, "big")
    if prefix == 96:
        return ipaddress.IPv4Address(octets[12:])
    start = prefix // 8
    body = [o for i, o in enumerate(octets[start:], start) if i != 8]
    if octets[8] != 0 or any(body[4:]):
        return None
    return ipaddress.IPv4Address(bytes(body[:4]))


def embedded_ipv4(address: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address embeds for a tunnel or a translator to deliver to
    (6to4, Teredo, local-use NAT64, ISATAP); empty for anything else."""
    if not isinstance(address, ipaddress.IPv6Address):
        return ()
    found: list[ipaddress.IPv4Address] = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64_LOCAL:
        found.extend(v4 for p in _LOCAL_NAT64_PREFIXES if (v4 := _rfc6052(address, p)))
    if (int(address) >> 32) & 0xFFFFFFFF in _ISATAP_IDS:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return tuple(dict.fromkeys(found))


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
        decision = self._check_one(ip)
        for inner in embedded_ipv4(ip):
            if not decision:
                break
            embedded = self._check_one(inner)
            if not embedded:
                decision = EgressDecision(False, f"{ip} embeds {inner}: {embedded.reason}")
        return decision

    def _check_one(self, ip: IPAddress) -> EgressDecision:
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
