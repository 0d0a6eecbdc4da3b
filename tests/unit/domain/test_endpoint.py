"""``spec.endpoint`` normalisation: every accepted form of an endpoint resolves to one set of
URLs; everything else is refused with a message that says why."""

from __future__ import annotations

import dataclasses
import ipaddress
import string
from urllib.parse import urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chatprovider.domain.endpoint import InvalidEndpoint, ResolvedEndpoint, resolve_endpoint

VLLM = ResolvedEndpoint(
    base_url="http://vllm:8000/v1",
    chat_completions_url="http://vllm:8000/v1/chat/completions",
    models_url="http://vllm:8000/v1/models",
    completions_url="http://vllm:8000/v1/completions",
    embeddings_url="http://vllm:8000/v1/embeddings",
    scheme="http",
    host="vllm",
    port=8000,
)


# --- the accepted forms ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://vllm:8000/v1/chat/completions",
        "http://vllm:8000/v1/chat/completions/",
        "http://vllm:8000/v1",
        "http://vllm:8000/v1/",
        "http://vllm:8000/v1//",
        "http://vllm:8000",
        "http://vllm:8000/",
        "http://vllm:8000/chat/completions",
        "HTTP://VLLM:8000/v1",
        "Http://Vllm:8000/v1/chat/completions",
        "http://vllm:08000/v1",
    ],
)
def test_every_form_of_an_endpoint_resolves_to_the_same_urls(endpoint: str) -> None:
    assert resolve_endpoint(endpoint) == VLLM


@pytest.mark.parametrize(
    ("endpoint", "base_url"),
    [
        ("https://api.example.com/openai/v1", "https://api.example.com/openai/v1"),
        ("https://api.example.com/openai/v1/chat/completions", "https://api.example.com/openai/v1"),
        ("http://gateway/prefix", "http://gateway/prefix/v1"),
        ("http://gateway/prefix/", "http://gateway/prefix/v1"),
        ("http://gateway/prefix/chat/completions", "http://gateway/prefix/v1"),
        ("http://gateway/a/b/c", "http://gateway/a/b/c/v1"),
        ("http://h/v2", "http://h/v2"),
        ("http://h/v10/chat/completions", "http://h/v10"),
        ("http://h/api/v3/", "http://h/api/v3"),
        # Only v<digits> is a version segment.
        ("http://h/v1beta", "http://h/v1beta/v1"),
        ("http://h/V1", "http://h/V1/v1"),
        ("http://h/version1", "http://h/version1/v1"),
        # A suffix is stripped once; only the exact route counts.
        ("http://h/chat", "http://h/chat/v1"),
        ("http://h/v1/completions", "http://h/v1/completions/v1"),
        ("http://h/x/chat/completions/chat/completions", "http://h/x/chat/completions/v1"),
        ("http://h/chatx/completions", "http://h/chatx/completions/v1"),
    ],
)
def test_the_api_base_is_the_path_up_to_a_version_segment(endpoint: str, base_url: str) -> None:
    resolved = resolve_endpoint(endpoint)
    assert resolved.base_url == base_url
    assert resolved.chat_completions_url == base_url + "/chat/completions"


def test_every_route_hangs_off_the_base_url() -> None:
    resolved = resolve_endpoint("https://llm.example.com/openai/v1/chat/completions")
    assert resolved.base_url == "https://llm.example.com/openai/v1"
    assert resolved.chat_completions_url == "https://llm.example.com/openai/v1/chat/completions"
    assert resolved.models_url == "https://llm.example.com/openai/v1/models"
    assert resolved.completions_url == "https://llm.example.com/openai/v1/completions"
    assert resolved.embeddings_url == "https://llm.example.com/openai/v1/embeddings"


@pytest.mark.parametrize(
    ("endpoint", "base_url", "port"),
    [
        ("http://h:80/v1", "http://h/v1", 80),
        ("https://h:443/v1", "https://h/v1", 443),
        ("http://h:443/v1", "http://h:443/v1", 443),
        ("https://h:80/v1", "https://h:80/v1", 80),
        ("https://h/v1", "https://h/v1", 443),
        ("http://h:65535", "http://h:65535/v1", 65535),
        ("http://h:1", "http://h:1/v1", 1),
    ],
)
def test_default_ports_are_dropped_and_the_port_is_always_known(
    endpoint: str, base_url: str, port: int
) -> None:
    resolved = resolve_endpoint(endpoint)
    assert (resolved.base_url, resolved.port) == (base_url, port)


@pytest.mark.parametrize(
    ("endpoint", "base_url", "host"),
    [
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1", "::1"),
        ("http://[::1]", "http://[::1]/v1", "::1"),
        ("https://[::1]:443/v1", "https://[::1]/v1", "::1"),
        ("http://[FE80::AB:1]:8000", "http://[fe80::ab:1]:8000/v1", "fe80::ab:1"),
        ("http://[::FFFF:10.0.0.1]:8000", "http://[::ffff:10.0.0.1]:8000/v1", "::ffff:10.0.0.1"),
        ("http://10.0.0.7:8000", "http://10.0.0.7:8000/v1", "10.0.0.7"),
        ("http://127.0.0.1", "http://127.0.0.1/v1", "127.0.0.1"),
    ],
)
def test_ip_literals_keep_their_brackets_in_urls_but_not_in_host(
    endpoint: str, base_url: str, host: str
) -> None:
    resolved = resolve_endpoint(endpoint)
    assert (resolved.base_url, resolved.host) == (base_url, host)
    ipaddress.ip_address(resolved.host)


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("https://bücher.example/v1", "xn--bcher-kva.example"),
        ("https://BÜCHER.example/v1", "xn--bcher-kva.example"),
        ("https://例え.jp", "xn--r8jz45g.jp"),
        # UTS #46 non-transitional, as browsers and httpx: ß stays ß (it is not mapped to ss).
        ("https://straße.de", "xn--strae-oqa.de"),
        ("https://xn--bcher-kva.example/v1", "xn--bcher-kva.example"),
    ],
)
def test_unicode_hosts_are_idna_encoded(endpoint: str, host: str) -> None:
    resolved = resolve_endpoint(endpoint)
    assert resolved.host == host
    assert resolved.base_url.isascii()


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("http://vllm.default.svc.cluster.local:8000", "vllm.default.svc.cluster.local"),
        ("http://vllm.default.svc.cluster.local.:8000", "vllm.default.svc.cluster.local."),
        ("http://my_service:8000", "my_service"),
        ("http://a-b.c-d:8000", "a-b.c-d"),
        ("http://" + "a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_host_names(endpoint: str, host: str) -> None:
    assert resolve_endpoint(endpoint).host == host


@pytest.mark.parametrize(
    ("endpoint", "base_url"),
    [
        ("http://h/caf%c3%a9", "http://h/caf%C3%A9/v1"),
        ("http://h/café", "http://h/caf%C3%A9/v1"),
        ("http://h/a%2Fb", "http://h/a%2Fb/v1"),
        ("http://h/a b".replace(" ", "%20"), "http://h/a%20b/v1"),
        ("http://h/a|b", "http://h/a%7Cb/v1"),
        ("http://h/a\\b", "http://h/a%5Cb/v1"),
        ("http://h/~user/v1", "http://h/~user/v1"),
        ("http://h/a:b@c/v1", "http://h/a:b@c/v1"),
        ("http://h/.well-known/v1", "http://h/.well-known/v1"),
        ("http://h/...", "http://h/.../v1"),
        ("http://h/a//b", "http://h/a//b/v1"),
    ],
)
def test_paths_are_escaped_canonically(endpoint: str, base_url: str) -> None:
    assert resolve_endpoint(endpoint).base_url == base_url


def test_the_result_is_immutable() -> None:
    resolved = resolve_endpoint("http://vllm:8000/v1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        resolved.base_url = "http://evil/v1"  # type: ignore[misc]


# --- what is refused, and what the message says -----------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("", "empty"),
        ("vllm:8000/v1", "must start with http:// or https://"),
        ("//vllm:8000/v1", "must start with http:// or https://"),
        ("http:/vllm/v1", "must start with http:// or https://"),
        ("http:vllm/v1", "must start with http:// or https://"),
        ("ftp://vllm/v1", "scheme 'ftp' is not supported"),
        ("ws://vllm/v1", "scheme 'ws' is not supported"),
        ("file:///etc/passwd", "scheme 'file' is not supported"),
        ("1http://vllm/v1", "must start with http:// or https://"),
        ("http://user:secret@vllm/v1", "credentials"),
        ("http://user@vllm/v1", "credentials"),
        ("http://@vllm/v1", "credentials"),
        ("http://vllm/v1?api-version=2024", "query"),
        ("http://vllm/v1?", "query"),
        ("http://vllm?x", "query"),
        ("http://vllm/v1#top", "fragment"),
        ("http://vllm#", "fragment"),
        ("http://", "no host"),
        ("http:///v1", "no host"),
        ("http://:8000/v1", "no host"),
        ("http://vllm:/v1", "empty port"),
        ("http://vllm:0/v1", "port must be a number from 1 to 65535"),
        ("http://vllm:65536/v1", "port must be a number from 1 to 65535"),
        ("http://vllm:123456/v1", "port must be a number from 1 to 65535"),
        ("http://vllm:-1/v1", "port must be a number from 1 to 65535"),
        ("http://vllm:+80/v1", "port must be a number from 1 to 65535"),
        ("http://vllm:8o/v1", "port must be a number from 1 to 65535"),
        ("http://vllm:８０/v1", "port must be a number from 1 to 65535"),
        ("http://::1/v1", "IPv6 address without brackets"),
        ("http://[::1/v1", "without its closing ]"),
        ("http://[::1]x/v1", "unexpected characters after the IPv6 address"),
        ("http://[::g]/v1", "not a valid IPv6 address"),
        ("http://[1.2.3.4]/v1", "not a valid IPv6 address"),
        ("http://[]/v1", "not a valid IPv6 address"),
        ("http://[fe80::1%25eth0]/v1", "zone identifier"),
        ("http://256.1.1.1/v1", "not a valid IPv4 address"),
        ("http://1.2.3/v1", "not a valid IPv4 address"),
        ("http://a..b/v1", "not a valid host name"),
        ("http://-a.example/v1", "not a valid host name"),
        ("http://a-.example/v1", "not a valid host name"),
        ("http://" + "a" * 64 + ".example/v1", "not a valid host name"),
        ("http://" + "a." * 127 + "bb/v1", "not a valid host name"),
        ("http://a%2eb/v1", "not a valid host name"),
        ("http://a\\b/v1", "not a valid host name"),
        ("http://a,b/v1", "not a valid host name"),
        ("http://ex／ample.com/v1", "not a valid internationalised domain name"),
        ("http://\N{SNOWMAN}.com/v1", "not a valid internationalised domain name"),
        ("http://vllm/a/../v1", ". or .. segments"),
        ("http://vllm/..", ". or .. segments"),
        ("http://vllm/./v1", ". or .. segments"),
        ("http://vllm/%2e%2E/v1", ". or .. segments"),
        ("http://vllm/%2e/v1", ". or .. segments"),
        ("http://vllm/a%zz", "does not start an escape"),
        ("http://vllm/a%", "does not start an escape"),
        (" http://vllm/v1", "whitespace"),
        ("http://vllm/v1 ", "whitespace"),
        ("http://vl lm/v1", "whitespace"),
        ("http://vllm/v1\n", "U+000A"),
        ("http://vllm/\tv1", "U+0009"),
        ("http://vllm/v1\x00", "U+0000"),
        ("http://vllm/v1\x7f", "U+007F"),
        ("http://vllm\u200b/v1", "U+200B"),
        ("http://vllm/\u202ev1", "U+202E"),
        ("http://vllm/v1\u00a0", "whitespace"),
        ("http://vllm/v1\u2028", "whitespace"),
    ],
)
def test_bad_endpoints_are_refused_with_a_reason(endpoint: str, message: str) -> None:
    with pytest.raises(InvalidEndpoint) as info:
        resolve_endpoint(endpoint)
    assert message in str(info.value)
    assert str(info.value).startswith("endpoint")


def test_invalid_endpoint_is_a_value_error() -> None:
    assert issubclass(InvalidEndpoint, ValueError)


@pytest.mark.parametrize(
    "endpoint",
    ["http://admin:hunter2@vllm/v1", "http://vllm/v1?key=hunter2", "http://vllm/v1#hunter2"],
)
def test_messages_never_repeat_the_url(endpoint: str) -> None:
    with pytest.raises(InvalidEndpoint) as info:
        resolve_endpoint(endpoint)
    assert "hunter2" not in str(info.value)


# --- properties ---------------------------------------------------------------------------------

_LABEL_ALPHABET = string.ascii_letters + string.digits
labels = st.text(_LABEL_ALPHABET, min_size=1, max_size=20) | st.builds(
    lambda a, b: f"{a}-{b}",
    st.text(_LABEL_ALPHABET, min_size=1, max_size=10),
    st.text(_LABEL_ALPHABET, min_size=1, max_size=10),
)
dns_names = st.lists(labels, min_size=1, max_size=4).map(".".join).filter(
    lambda name: not name.replace(".", "").isdigit()
)
unicode_names = st.sampled_from(
    ["bücher.example", "例え.jp", "straße.de", "παράδειγμα.δοκιμή", "münchen.DE", "xn--bcher.ch"]
)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda ip: f"[{ip}]")
hosts = dns_names | unicode_names | ipv4 | ipv6
ports = st.none() | st.integers(min_value=1, max_value=65535)
segments = st.text(
    string.ascii_letters + string.digits + "-_~!$&'()*+,;=:@é%20", min_size=1, max_size=12
).filter(lambda s: s not in (".", "..") and "%" not in s.replace("%20", ""))
prefixes = st.lists(segments | st.sampled_from(["v1", "v2", "openai", "api"]), max_size=4)
schemes = st.sampled_from(["http", "https", "HTTP", "Https"])


@st.composite
def base_urls(draw: st.DrawFn) -> str:
    port = draw(ports)
    netloc = draw(hosts) + ("" if port is None else f":{port}")
    path = "".join(f"/{s}" for s in draw(prefixes))
    return f"{draw(schemes)}://{netloc}{path}"


@given(base_urls(), st.sampled_from(["", "/", "//"]))
@example("http://vllm:8000", "")
@example("http://vllm:8000/v1", "/")
def test_a_base_url_and_its_chat_completions_url_resolve_alike(base: str, slashes: str) -> None:
    resolved = resolve_endpoint(base + slashes)
    assert resolve_endpoint(base + "/chat/completions" + slashes) == resolved
    assert resolve_endpoint(resolved.base_url) == resolved
    assert resolve_endpoint(resolved.chat_completions_url) == resolved


@given(base_urls())
def test_outputs_are_plain_ascii_urls_that_agree_with_the_parts(base: str) -> None:
    resolved = resolve_endpoint(base)
    for url in (
        resolved.base_url,
        resolved.chat_completions_url,
        resolved.models_url,
        resolved.completions_url,
        resolved.embeddings_url,
    ):
        assert url.isascii() and url.isprintable() and " " not in url
        assert url.startswith(resolved.base_url)
        parts = urlsplit(url)
        assert parts.scheme == resolved.scheme
        assert parts.hostname == resolved.host
        assert (parts.port or {"http": 80, "https": 443}[resolved.scheme]) == resolved.port
        assert parts.port != {"http": 80, "https": 443}[resolved.scheme]
        assert not parts.query and not parts.fragment and not parts.username
    assert resolved.base_url.rsplit("/", 1)[1][0] == "v"


@given(st.text(max_size=60))
@example("http://[::1]:99999999999999999999/")
@example("https://ex\uff0fample.com")
def test_any_text_is_either_refused_or_resolved_to_a_fixed_point(text: str) -> None:
    _refused_or_fixed_point(text)


@given(schemes, st.text(max_size=60))
def test_any_text_after_a_scheme_is_either_refused_or_resolved_to_a_fixed_point(
    scheme: str, rest: str
) -> None:
    _refused_or_fixed_point(f"{scheme}://{rest}")


def _refused_or_fixed_point(text: str) -> None:
    try:
        resolved = resolve_endpoint(text)
    except InvalidEndpoint:
        return
    assert resolve_endpoint(resolved.base_url) == resolved
    assert resolve_endpoint(resolved.chat_completions_url) == resolved
