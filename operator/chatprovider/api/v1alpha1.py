"""``ChatProvider`` in ``ai.chatprovider.dev/v1alpha1``: the single source of the CRD schema.

Attribute docstrings become the schema descriptions that ``kubectl explain`` shows; constraints and
``x-kubernetes-validations`` (CEL) rules declared here are enforced by the API server. Run
``python -m chatprovider_tools.generators.crd`` (``make crds``) after changing this module.
"""

from __future__ import annotations

import typing
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from chatprovider.api.durations import DURATION_PATTERN, Duration, format_duration, parse_duration

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ApiKeySecretRef",
    "CABundle",
    "ChatProvider",
    "ChatProviderSpec",
    "ChatProviderStatus",
    "Condition",
    "ConfigMapKeySelector",
    "CredentialHeader",
    "Discovery",
    "DiscoveredModel",
    "EndpointStatus",
    "Header",
    "LastCheck",
    "Models",
    "Proxy",
    "SecretKeySelector",
    "ServerType",
    "TLS",
    "Timeouts",
    "Verification",
]

GROUP = "ai.chatprovider.dev"
VERSION = "v1alpha1"
KIND = "ChatProvider"
PLURAL = "chatproviders"

#: A DNS-1123 subdomain, the rule for Secret and ConfigMap names.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: A key in a Secret's or ConfigMap's data.
KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
#: HTTP header names that carry credentials and may never be set through ``spec.headers``.
CredentialHeader = Literal[
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"
]
SPEC_CREDENTIAL_HEADERS: tuple[str, ...] = typing.get_args(CredentialHeader)

#: The URL of an endpoint: http(s), a non-empty authority, no whitespace, query or fragment.
ENDPOINT_PATTERN = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
#: metav1.Condition's rule for a condition type (a CamelCase name, optionally domain-prefixed).
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
#: metav1.Condition's rule for a reason (a CamelCase identifier).
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

#: Field-level schema extras that make the API server treat a list as a set, or as a map keyed
#: by some of its items' fields (duplicates are then refused, and server-side apply merges
#: entries instead of replacing the whole list).
_LIST_SET: JsonDict = {"x-kubernetes-list-type": "set"}


def _list_map(*keys: str) -> JsonDict:
    """Schema extras for a list of objects that is a map keyed by ``keys``."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


def _positive_duration_rule(field: str) -> JsonDict:
    """A CEL rule: the duration ``field`` (once it is well-formed) is greater than zero."""
    return {
        "rule": f"!self.{field}.matches(r'{DURATION_PATTERN}')"
        f" || duration(self.{field}) > duration('0s')",
        "message": "must be greater than 0",
        "fieldPath": f".{field}",
        "reason": "FieldValueInvalid",
    }


def _default_duration(text: str) -> Any:
    """A duration field's default, written as the schema shows it (validated into a timedelta
    like any value). It must be the canonical form the field is written back in, or the API
    server's default and a status or spec written by us would differ ("60s" against "1m")."""
    if format_duration(parse_duration(text)) != text:
        raise ValueError(f"write the default {text!r} as "
                         f"{format_duration(parse_duration(text))!r}")
    return Field(default=text, validate_default=True)


ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=NAME_PATTERN)]
DataKey = Annotated[str, Field(min_length=1, max_length=253, pattern=KEY_PATTERN)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
        alias_generator=lambda name: name.split("_")[0]
        + "".join(part.title() for part in name.split("_")[1:]),
    )


class ServerType(StrEnum):
    """The kind of server behind the endpoint (what each adds: domain/server_types.py)."""

    GENERIC = "generic"
    VLLM = "vllm"
    OLLAMA = "ollama"
    TGI = "tgi"
    OPENAI = "openai"
    LITELLM = "litellm"
    LLAMACPP = "llamacpp"


class SecretKeySelector(_Model):
    """A key of a Secret in the ChatProvider's own namespace."""

    name: ObjectName
    """Name of the Secret, in the same namespace as the ChatProvider."""
    key: DataKey
    """Key within the Secret's data."""


class ApiKeySecretRef(_Model):
    """Where the API key lives. It is sent upstream as ``Authorization: Bearer <key>``."""

    name: ObjectName
    """Name of the Secret, in the same namespace as the ChatProvider."""
    key: DataKey = "apiKey"
    """Key within the Secret's data that holds the API key."""


class ConfigMapKeySelector(_Model):
    """A key of a ConfigMap in the ChatProvider's own namespace."""

    name: ObjectName
    """Name of the ConfigMap, in the same namespace as the ChatProvider."""
    key: DataKey
    """Key within the ConfigMap's data."""


class CABundle(_Model):
    """A PEM bundle of certificate authorities, from exactly one of a Secret or a ConfigMap."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.secretKeyRef) || has(self.configMapKeyRef)",
                    "message": "set one of secretKeyRef or configMapKeyRef",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": "!(has(self.secretKeyRef) && has(self.configMapKeyRef))",
                    "message": "secretKeyRef and configMapKeyRef are mutually exclusive",
                    "fieldPath": ".configMapKeyRef",
                    "reason": "FieldValueForbidden",
                },
            ]
        }
    )

    secret_key_ref: SecretKeySelector | None = None
    """A key of a Secret that holds the PEM-encoded CA certificates."""
    config_map_key_ref: ConfigMapKeySelector | None = None
    """A key of a ConfigMap that holds the PEM-encoded CA certificates."""


class TLS(_Model):
    """How the endpoint's TLS certificate is checked. By default, against the system's CAs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.caBundle) && has(self.insecureSkipVerify)"
                    " && self.insecureSkipVerify)",
                    "message": "caBundle and insecureSkipVerify are mutually exclusive",
                    "fieldPath": ".insecureSkipVerify",
                    "reason": "FieldValueForbidden",
                }
            ]
        }
    )

    ca_bundle: CABundle | None = None
    """Trust these certificate authorities instead of the system's (for a private CA)."""
    insecure_skip_verify: bool = False
    """DANGEROUS: do not verify the server's certificate at all. Anyone on the network path can
    then read the API key and the conversations. For short-lived experiments only; prefer
    caBundle."""


class Timeouts(_Model):
    """Time limits for calls to the endpoint (Go-style durations such as 5s or 2m)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _positive_duration_rule(name) for name in ("connect", "request", "streamIdle")
            ]
        }
    )

    connect: Duration = _default_duration("5s")
    """Time to open the TCP (and TLS) connection."""
    request: Duration = _default_duration("30s")
    """Time to receive the response headers of a request (the first byte of a stream)."""
    stream_idle: Duration = _default_duration("1m")
    """Longest silence allowed between two frames of a streamed answer. No total cap applies,
    so long streams are never cut while they keep producing."""


class Proxy(_Model):
    """An outbound HTTP(S) proxy for reaching the endpoint (for corporate networks)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.url.contains('@')",
                    "message": "url must not contain credentials (user:password@)",
                    "fieldPath": ".url",
                    "reason": "FieldValueForbidden",
                }
            ]
        }
    )

    # "@" passes the pattern on purpose: the CEL rule above refuses credentials with a message
    # that, unlike a pattern mismatch, does not echo the password.
    url: str = Field(max_length=2048, pattern=r"^https?://[^\s/?#]+/?$")
    """URL of the proxy, such as http://proxy.corp:3128 (no credentials in the URL)."""
    no_proxy: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64, json_schema_extra=_LIST_SET
    )
    """Hosts, domain suffixes (.corp.example) and CIDRs that are reached directly."""


class Header(_Model):
    """An extra, non-secret HTTP header sent with every request to the endpoint."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!(self.name.lowerAscii() in {list(SPEC_CREDENTIAL_HEADERS)!r})",
                    "message": "credential headers (Authorization, Cookie, X-Api-Key, ...) are"
                    " refused; use apiKeySecretRef",
                    "fieldPath": ".name",
                    "reason": "FieldValueForbidden",
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    """Header name. Credential headers (Authorization, Cookie, X-Api-Key, ...) are refused:
    use apiKeySecretRef."""
    value: str = Field(max_length=1024, pattern=r"^[^\r\n\x00]*$")
    """Header value, on one line (no carriage return, line feed or NUL: they would end the
    header and start another). It is stored in plain text in the resource, so it must not be
    secret."""


class Discovery(_Model):
    """Model discovery through ``GET /v1/models`` and the periodic health re-check."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    # Only a well-formed duration reaches duration(); the pattern reports the rest.
                    "rule": f"!self.interval.matches(r'{DURATION_PATTERN}')"
                    " || duration(self.interval) >= duration('10s')",
                    "message": "must be at least 10s",
                    "fieldPath": ".interval",
                    "reason": "FieldValueInvalid",
                }
            ]
        }
    )

    enabled: bool = True
    """Query GET /v1/models. When the server does not offer the route (404/405) the provider can
    still be Ready with models.static."""
    interval: Duration = _default_duration("5m")
    """How often the endpoint is re-checked and the model list refreshed (at least 10s; a
    random jitter of up to 10% is added so that providers are not probed in lock-step)."""


class Models(_Model):
    """Which models the provider offers to clients."""

    static: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=256, json_schema_extra=_LIST_SET
    )
    """Model ids to offer even when they are not discovered (for servers without
    GET /v1/models), for example llama3:8b for Ollama."""
    allow: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=64, json_schema_extra=_LIST_SET
    )
    """If set, only models whose id matches one of these glob patterns (such as llama3* or
    meta-llama/*) are offered. Applies to discovered and static models alike."""


class Verification(_Model):
    """Verify the provider by sending a test message (a one-token chat completion)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.enabled || has(self.model)",
                    "message": "model is required when verification is enabled",
                    "fieldPath": ".model",
                    "reason": "FieldValueRequired",
                }
            ]
        }
    )

    enabled: bool = False
    """Send a test message on each check. Off by default: it costs one inference per interval."""
    model: str | None = Field(default=None, min_length=1, max_length=256)
    """Model to send the test message to."""
    max_tokens: int = Field(default=1, ge=1, le=16)
    """Token budget of the test answer."""


class ChatProviderSpec(_Model):
    """Desired state of a ChatProvider: an OpenAI-compatible chat endpoint and how to reach it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.endpoint.matches('^https?://[^/?#]*@')",
                    "message": "endpoint must not contain user:password; use apiKeySecretRef",
                    "fieldPath": ".endpoint",
                    "reason": "FieldValueInvalid",
                },
                {
                    "rule": "!self.endpoint.matches('/[.][.]?(/|$)')",
                    "message": "endpoint must not contain . or .. path segments",
                    "fieldPath": ".endpoint",
                    "reason": "FieldValueInvalid",
                },
            ]
        }
    )

    # As for the proxy, user:password@ is refused by a CEL rule rather than by the pattern, so that
    # the error message does not echo the password.
    endpoint: str = Field(min_length=8, max_length=2048, pattern=ENDPOINT_PATTERN)
    """URL of the endpoint: either the full chat completions URL
    (http://host:8000/v1/chat/completions) or a base URL (http://host:8000/v1). A base URL whose
    last path segment is not a version such as v1 gets /v1 appended: http://host:8000 means
    http://host:8000/v1, and http://gateway/openai means http://gateway/openai/v1. All forms
    resolve to the same chat and models URLs (see status.endpoints). http or https only; no
    credentials, query or fragment."""
    display_name: str | None = Field(default=None, min_length=1, max_length=128)
    """Human-readable name, for example "vLLM Llama 3"."""
    description: str | None = Field(default=None, max_length=1024)
    """Free-text description of the provider."""
    tags: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(
        default_factory=list, max_length=32, json_schema_extra=_LIST_SET
    )
    """Free-form tags for grouping and search."""
    server_type: ServerType = ServerType.GENERIC
    """Kind of server (generic, vllm, ollama, tgi, openai, litellm, llamacpp). Any
    OpenAI-compatible server works as generic; ollama and tgi add their own model list (GET
    /api/tags, GET /info) for a server that does not answer GET /v1/models."""
    api_key_secret_ref: ApiKeySecretRef | None = None
    """Secret key holding the API key, sent as Authorization: Bearer. Omit for servers that need
    no key (such as a local Ollama)."""
    discovery: Discovery = Field(default_factory=Discovery)
    """Model discovery and periodic re-check."""
    models: Models = Field(default_factory=Models)
    """Static models and the allow-list."""
    verification: Verification = Field(default_factory=Verification)
    """Optional test message on each check."""
    tls: TLS = Field(default_factory=TLS)
    """TLS verification settings."""
    timeouts: Timeouts = Field(default_factory=Timeouts)
    """Time limits for calls to the endpoint."""
    proxy: Proxy | None = None
    """Outbound HTTP proxy, if the endpoint is only reachable through one."""
    headers: list[Header] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={
            **_list_map("name"),
            "x-kubernetes-validations": [
                {
                    # HTTP header names are case-insensitive; the list-map key is not.
                    "rule": "self.all(h, self.filter(o, o.name.lowerAscii() =="
                    " h.name.lowerAscii()).size() == 1)",
                    "message": "header names must be unique (case-insensitive)",
                    "reason": "FieldValueInvalid",
                }
            ],
        },
    )
    """Extra non-secret headers sent with every request (such as an organisation id). Names are
    unique, case-insensitively."""


class Condition(_Model):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(min_length=1, max_length=316, pattern=CONDITION_TYPE_PATTERN)
    """Type of the condition: Ready, SecretResolved, EndpointReachable, Authenticated,
    ModelsDiscovered or Verified."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)
    """A CamelCase reason, stable across releases (see docs/troubleshooting.md)."""
    message: str = Field(default="", max_length=32768)
    """A human-readable explanation."""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    """When the status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """metadata.generation of the spec the condition was computed from."""


class DiscoveredModel(_Model):
    """A model offered by the provider."""

    id: str = Field(max_length=256)
    """Model id as the upstream server names it."""
    source: Literal["discovered", "static"] = "discovered"
    """discovered (from GET /v1/models) or static (from spec.models.static)."""
    owned_by: str | None = Field(default=None, max_length=256)
    """owned_by as reported by the server, if any."""


class EndpointStatus(_Model):
    """The URLs resolved from spec.endpoint."""

    chat_completions: str | None = Field(default=None, max_length=2048)
    """The chat completions URL."""
    models: str | None = Field(default=None, max_length=2048)
    """The models URL."""


class LastCheck(_Model):
    """The most recent check of the endpoint."""

    time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When it finished (RFC 3339)."""
    latency_ms: int | None = Field(default=None, ge=0)
    """How long the models request (or the first request) took, in milliseconds."""
    verification_latency_ms: int | None = Field(default=None, ge=0)
    """How long the test message took, in milliseconds, when verification is enabled."""


class ChatProviderStatus(_Model):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(default=None, ge=0)
    """metadata.generation of the spec last checked."""
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, json_schema_extra=_list_map("type")
    )
    """Ready summarises SecretResolved, EndpointReachable, Authenticated, ModelsDiscovered and
    Verified."""
    endpoints: EndpointStatus | None = None
    """Resolved chat completions and models URLs."""
    models: list[DiscoveredModel] = Field(default_factory=list, max_length=500)
    """Models offered to clients (at most 500)."""
    model_count: int | None = Field(default=None, ge=0)
    """Number of models offered."""
    apis: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=16, json_schema_extra=_LIST_SET)
    """The routes under /v1 the server answers: chat/completions, and which of completions,
    embeddings, responses, messages and messages/count_tokens it offers, found at each check by
    a request without input (refused on a route a server offers, 404, 405 or 501 on one it does
    not). The relay answers 404 api_not_offered for the others. Empty: not known (the models
    were not listed), and every route is relayed."""
    last_check: LastCheck | None = None
    """The most recent check."""
    credential_version: str | None = Field(default=None, max_length=128)
    """Which version of the API key is in use: the Secret's name and resourceVersion. It reveals
    nothing about the key itself."""


class ChatProvider(_Model):
    """An OpenAI-compatible chat endpoint registered with the cluster."""

    model_config = ConfigDict(extra="allow")

    api_version: Literal["ai.chatprovider.dev/v1alpha1"] = "ai.chatprovider.dev/v1alpha1"
    """APIVersion defines the versioned schema of this representation of an object. Servers
    should convert recognized schemas to the latest internal value, and may reject unrecognized
    values. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"""
    kind: Literal["ChatProvider"] = "ChatProvider"
    """Kind is a string value representing the REST resource this object represents. Servers may
    infer this from the endpoint the client submits requests to. Cannot be updated. In
    CamelCase. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata (name, namespace, labels, annotations, ...)."""
    spec: ChatProviderSpec
    status: ChatProviderStatus = Field(default_factory=ChatProviderStatus)
