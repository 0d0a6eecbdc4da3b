from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatprovider.domain.egress import EgressPolicy, parse_ip

DEFAULT = EgressPolicy()


@pytest.mark.parametrize("address", [
    "169.254.169.254", "169.254.0.1", "::ffff:169.254.169.254", "[::ffff:169.254.169.254]",
    "fd00:ec2::254", "fe80::1", "fe80::1%eth0", "100.100.100.200", "192.0.0.192", "0.0.0.0",
    "::", "224.0.0.1", "255.255.255.255", "64:ff9b::a9fe:a9fe",
])
def test_metadata_link_local_and_reserved_addresses_are_refused(address):
    decision = DEFAULT.check(address)
    assert not decision and decision.reason


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.1.10", "8.8.8.8", "::1"])
def test_ordinary_addresses_are_allowed_by_default(address):
    assert DEFAULT.check(address)


def test_configured_deny_wins_and_allow_list_is_exclusive():
    policy = EgressPolicy.from_strings(allow=["10.0.0.0/8", "169.254.1.0/24"],
                                       deny=["10.9.0.0/16"])
    assert policy.check("10.1.1.1")
    assert not policy.check("10.9.1.1")
    assert not policy.check("192.168.0.1")
    assert policy.check("169.254.1.7")  # explicitly allowed over the built-in list
    assert not policy.check("169.254.169.254")


def test_deny_loopback_as_the_chart_does():
    policy = EgressPolicy.from_strings(deny=["127.0.0.0/8", "::1/128"])
    assert not policy.check("127.0.0.1")
    assert not policy.check("::ffff:127.0.0.1")
    assert not policy.check("::1")


def test_bad_cidr_is_named():
    with pytest.raises(ValueError, match="10.0.0.300/8"):
        EgressPolicy.from_strings(deny=["10.0.0.300/8"])


def test_host_names_are_not_ip_addresses():
    assert parse_ip("example.com") is None
    assert not DEFAULT.check("example.com")


@given(st.integers(min_value=0, max_value=2**16 - 1))
def test_every_ipv4_mapped_link_local_form_is_refused(low):
    v4 = ipaddress.IPv4Address((169 << 24) | (254 << 16) | low)
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    assert not DEFAULT.check(mapped)
    assert not DEFAULT.check(f"[{mapped}]")


@pytest.mark.parametrize("address", [
    "2002:a9fe:a9fe::1",               # 6to4 embedding the metadata address
    "2002:7f00:1::",                   # 6to4 embedding loopback (denied below)
    "2001:0:a9fe:a9fe::1",             # Teredo with the metadata address as its server
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1 (bits inverted)
    "64:ff9b:1::a9fe:a9fe",            # local-use NAT64, /96 form
    "64:ff9b:1:a9fe:a9:fe00::",        # local-use NAT64, /48 form
    "64:ff9b::7f00:1",                 # well-known NAT64
    "::ffff:0:7f00:1",                 # IPv4-translated (SIIT)
    "2001:db8::5efe:7f00:1",           # ISATAP interface identifier
    "2001:db8::200:5efe:a9fe:a9fe",
])
def test_ipv6_forms_that_embed_a_denied_ipv4_address_are_refused(address):
    policy = EgressPolicy.from_strings(deny=["127.0.0.0/8"])
    decision = policy.check(address)
    assert not decision, decision.reason


@pytest.mark.parametrize("address", ["2002:808:808::1", "64:ff9b:1::808:808", "2001:db8::1",
                                     "2001:0:4136:e378:8000:63bf:3fff:fdd2"])
def test_ipv6_forms_that_embed_an_allowed_ipv4_address_are_allowed(address):
    assert EgressPolicy.from_strings(deny=["127.0.0.0/8"]).check(address)


def test_an_allow_list_is_not_widened_by_an_embedded_address():
    policy = EgressPolicy.from_strings(allow=["10.0.0.0/8"])
    assert not policy.check("2002:a00:1::1")  # embeds 10.0.0.1, but is not itself allowed
    assert policy.check("::ffff:10.0.0.1")    # the same host as 10.0.0.1


@given(st.integers(min_value=0, max_value=2**16 - 1), st.integers(min_value=0, max_value=2**80 - 1))
def test_every_6to4_form_of_the_metadata_range_is_refused(low, rest):
    v4 = (169 << 24) | (254 << 16) | low
    assert not DEFAULT.check(ipaddress.IPv6Address((0x2002 << 112) | (v4 << 80) | rest))
