"""Normalising ``spec.endpoint`` into the URLs the operator and the relay call.

Users write either the full chat completions URL or a base URL; all forms of one endpoint
resolve to the same :class:`ResolvedEndpoint`::

    http://vllm:8000/v1/chat/completions  ─┐
    http://vllm:8000/v1/                   ├─►  base_url             http://vllm:8000/v1
    HTTP://VLLM:8000                       ┘    chat_completions_url http://vllm:8000/v1/chat/completions

Path rule: strip trailing ``/``; strip a trailing ``/chat/completions``; if the last path segment
is then ``v<digits>`` the path is the API base, otherwise ``/v1`` is appended
(``http://gw/prefix`` → ``http://gw/prefix/v1``).

Normal form: lower-case scheme and host, no default port (80 for http, 443 for https), Unicode
host names IDNA-encoded (UTS #46, as browsers and httpx do), IPv6 literals kept in brackets,
percent-escapes upper-cased and characters that are not allowed in a path percent-encoded.
Resolving any output URL again gives the same result (it is a fixed point).

Refused with :class:`InvalidEndpoint`: schemes other than http and https, credentials
(``user:password@``), a query or fragment, an empty host, a bad port, whitespace or control
characters, and ``.``/``..`` path segments. Messages never repeat the URL, which could hold a
password.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote

import idna

__all__ = ["InvalidEndpoint", "ResolvedEndpoint", "resolve_endpoint"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_CHAT_COMPLETIONS = "/chat/completions"
_VERSION_SEGMENT = re.compile(r"v[0-9]+")
_DEFAULT_VERSION = "/v1"
#: One DNS label, lower case. Underscores are tolerated: Docker Compose service names use them.
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
_PORT = re.compile(r"[0-9]{1,5}")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
#: What a path may hold unescaped (RFC 3986 pchar and "/"); "%" because escapes are kept.
_PATH_SAFE = "/%-._~!$&'()*+,;=:@"
#: Invisible characters: controls, format characters (bidi overrides, zero-width joiners) and
#: line/paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


class InvalidEndpoint(ValueError):
    """``spec.endpoint`` cannot be used as given; the message says what to fix.

    The spec is wrong, so retrying does not help: report it in the status and wait for an edit.
    """


@dataclass(frozen=True, slots=True)
class ResolvedEndpoint:
    """The URLs of one OpenAI-compatible endpoint, in normal form."""

    base_url: str
    """API base, such as ``http://vllm:8000/v1``; every other URL is this plus a route."""
    chat_completions_url: str
    """``<base_url>/chat/completions``."""
    models_url: str
    """``<base_url>/models``."""
    completions_url: str
    """``<base_url>/completions`` (legacy text completions)."""
    embeddings_url: str
    """``<base_url>/embeddings``."""
    scheme: str
    """``http`` or ``https``."""
    host: str
    """Host name (lower case, IDNA-encoded) or IP address; IPv6 without the URL's brackets, so
    that it can be handed to :mod:`ipaddress` or a resolver as is."""
    port: int
    """TCP port, the scheme's default (80 or 443) when the URL has none."""


def resolve_endpoint(endpoint: str) -> ResolvedEndpoint:
    """Normalise ``spec.endpoint`` or raise :class:`InvalidEndpoint` saying what is wrong."""
    _check_characters(endpoint)
    scheme, rest = _split_scheme(endpoint)
    if "#" in rest:
        raise InvalidEndpoint("endpoint must not have a fragment (#...)")
    if "?" in rest:
        raise InvalidEndpoint("endpoint must not have a query string (?...)")
    authority, slash, path = rest.partition("/")
    host, port = _parse_authority(authority, scheme)
    base_path = _api_base_path(_normalize_path(slash + path))

    netloc = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    base = f"{scheme}://{netloc}{base_path}"
    return ResolvedEndpoint(
        base_url=base,
        chat_completions_url=base + _CHAT_COMPLETIONS,
        models_url=base + "/models",
        completions_url=base + "/completions",
        embeddings_url=base + "/embeddings",
        scheme=scheme,
        host=host,
        port=port,
    )


def _check_characters(endpoint: str) -> None:
    if not endpoint:
        raise InvalidEndpoint("endpoint is empty")
    for position, char in enumerate(endpoint):
        if char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            raise InvalidEndpoint(
                f"endpoint contains whitespace or an invisible character (U+{ord(char):04X})"
                f" at position {position}"
            )


def _split_scheme(endpoint: str) -> tuple[str, str]:
    scheme, separator, rest = endpoint.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        raise InvalidEndpoint("endpoint must start with http:// or https://")
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidEndpoint(f"endpoint scheme {scheme!r} is not supported; use http or https")
    return scheme, rest


def _parse_authority(authority: str, scheme: str) -> tuple[str, int]:
    if "@" in authority:
        raise InvalidEndpoint(
            "endpoint must not contain credentials (user:password@); use apiKeySecretRef"
        )
    if authority.startswith("["):
        literal, bracket, after = authority[1:].partition("]")
        if not bracket:
            raise InvalidEndpoint("endpoint has an IPv6 address without its closing ]")
        if after and not after.startswith(":"):
            raise InvalidEndpoint("endpoint has unexpected characters after the IPv6 address")
        return _ipv6(literal), _port(after[1:] if after else None, scheme)
    name, colon, port = authority.partition(":")
    if ":" in port:
        raise InvalidEndpoint(
            "endpoint has an IPv6 address without brackets; write it as http://[::1]:8000"
        )
    return _hostname(name), _port(port if colon else None, scheme)


def _ipv6(literal: str) -> str:
    if "%" in literal:
        raise InvalidEndpoint("endpoint has an IPv6 zone identifier, which is not supported")
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        raise InvalidEndpoint("endpoint host is not a valid IPv6 address") from None
    return literal.lower()


def _hostname(name: str) -> str:
    if not name:
        raise InvalidEndpoint("endpoint has no host")
    if name.isascii():
        host = name.lower()
    else:
        try:
            host = idna.encode(name, uts46=True).decode("ascii")
        except UnicodeError:  # idna.IDNAError is a UnicodeError
            raise InvalidEndpoint(
                "endpoint host is not a valid internationalised domain name"
            ) from None
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise InvalidEndpoint(
            "endpoint host is not a valid host name (letters, digits, '-' and '.';"
            " labels of 1 to 63 characters)"
        )
    if _DOTTED_NUMBERS.fullmatch(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidEndpoint("endpoint host is not a valid IPv4 address") from None
    return host


def _port(text: str | None, scheme: str) -> int:
    if text is None:
        return _DEFAULT_PORTS[scheme]
    if not text:
        raise InvalidEndpoint("endpoint has an empty port after ':'")
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise InvalidEndpoint("endpoint port must be a number from 1 to 65535")
    return int(text)


def _normalize_path(path: str) -> str:
    if _PERCENT.search(path):
        raise InvalidEndpoint("endpoint path has a '%' that does not start an escape such as %2F")
    path = quote(_ESCAPE.sub(lambda m: m.group().upper(), path), safe=_PATH_SAFE)
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        raise InvalidEndpoint("endpoint path must not contain . or .. segments")
    return path


def _api_base_path(path: str) -> str:
    path = path.rstrip("/")
    if path.endswith(_CHAT_COMPLETIONS):
        path = path.removesuffix(_CHAT_COMPLETIONS).rstrip("/")
    if not _VERSION_SEGMENT.fullmatch(path.rpartition("/")[2]):
        path += _DEFAULT_VERSION
    return path
