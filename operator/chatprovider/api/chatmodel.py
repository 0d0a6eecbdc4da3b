"""``ChatModel`` in ``ai.chatprovider.dev/v1alpha1``: a stable model name over a set of backends.

A ChatModel named ``llama3`` in namespace ``team-a`` is what clients ask for as ``team-a/llama3``
(or ``llama3``); the relay sends each request to one of its backends, a (ChatProvider, upstream
model) pair in the same namespace, split by weight, with an ordered failover list for when no
weighted backend is usable. Callers need RBAC verb ``use`` on the ChatModel, not on its
providers (docs/security.md).

Like :mod:`chatprovider.api.v1alpha1`, this module is the single source of the CRD
(``make crds``): attribute docstrings are what ``kubectl explain`` shows, CEL rules sit next to
the fields they guard.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chatprovider.api.v1alpha1 import Condition, ObjectName, _list_map, _Model

__all__ = [
    "CHATMODEL_KIND",
    "CHATMODEL_PLURAL",
    "MAX_BACKENDS",
    "MAX_WEIGHT",
    "Backend",
    "BackendStatus",
    "ChatModel",
    "ChatModelSpec",
    "ChatModelStatus",
    "FailoverTarget",
]

CHATMODEL_KIND = "ChatModel"
CHATMODEL_PLURAL = "chatmodels"
MAX_BACKENDS = 16
MAX_WEIGHT = 10000

UpstreamModel = Annotated[str, Field(min_length=1, max_length=256)]


class FailoverTarget(_Model):
    """A ChatProvider of the ChatModel's namespace and one of its models."""

    provider: ObjectName
    """Name of a ChatProvider in the same namespace as the ChatModel."""
    model: UpstreamModel
    """The model id as that provider names it (one of its status.models), such as
    meta-llama/Llama-3.1-8B-Instruct or llama3:8b."""


class Backend(FailoverTarget):
    """A weighted backend: a provider's model that takes a share of the traffic."""

    weight: int = Field(default=1, ge=0, le=MAX_WEIGHT)
    """Share of the requests, relative to the other usable backends' weights (0 to 10000; 0
    takes no traffic, as in the first step of a blue/green rollout)."""


class ChatModelSpec(_Model):
    """Desired state of a ChatModel: its backends, their weights and the failover order."""

    model_config = _Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.backends.exists(b, b.weight > 0)"
                    " || (has(self.failover) && size(self.failover) > 0)",
                    "message": "at least one backend needs a weight above 0, or set failover",
                    "fieldPath": ".backends",
                    "reason": "FieldValueInvalid",
                }
            ]
        }
    }

    backends: list[Backend] = Field(
        min_length=1, max_length=MAX_BACKENDS, json_schema_extra=_list_map("provider", "model")
    )
    """The backends that share the traffic by weight (1 to 16, each provider/model pair once).
    Only usable backends take traffic: their provider is Ready and offers the model."""
    failover: list[FailoverTarget] = Field(
        default_factory=list, max_length=MAX_BACKENDS,
        json_schema_extra=_list_map("provider", "model"),
    )
    """Tried in this order when no weighted backend is usable, and after the weighted backends
    when the chosen one fails before the request was sent (connection refused, for example)."""


class BackendStatus(_Model):
    """Whether one backend or failover entry is usable, as the operator sees its provider."""

    provider: ObjectName
    """Name of the ChatProvider."""
    model: UpstreamModel
    """The upstream model id."""
    role: Literal["weighted", "failover"]
    """weighted (from spec.backends) or failover (from spec.failover)."""
    weight: int | None = Field(default=None, ge=0, le=MAX_WEIGHT)
    """The weight, for a weighted backend."""
    ready: bool
    """True when the provider is Ready (for its generation) and offers the model."""
    reason: str = Field(max_length=64)
    """Usable, ProviderNotFound, ProviderNotReady or ModelNotOffered."""


class ChatModelStatus(_Model):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(default=None, ge=0)
    """metadata.generation of the spec last evaluated."""
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, json_schema_extra=_list_map("type")
    )
    """Ready: True while at least one backend or failover entry is usable."""
    backends: list[BackendStatus] = Field(default_factory=list, max_length=2 * MAX_BACKENDS)
    """Each backend, then each failover entry, and whether it is usable."""
    summary: str | None = Field(default=None, max_length=4096)
    """The backends in one line, as kubectl get shows them: provider/model=weight for each
    weighted backend, then the failover entries; (not ready) marks one that is not usable."""


class ChatModel(_Model):
    """A stable model name served by a set of ChatProvider backends, with weights and
    failover."""

    model_config = _Model.model_config | {"extra": "allow"}

    api_version: Literal["ai.chatprovider.dev/v1alpha1"] = "ai.chatprovider.dev/v1alpha1"
    """APIVersion defines the versioned schema of this representation of an object. Servers
    should convert recognized schemas to the latest internal value, and may reject unrecognized
    values. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"""
    kind: Literal["ChatModel"] = "ChatModel"
    """Kind is a string value representing the REST resource this object represents. Servers may
    infer this from the endpoint the client submits requests to. Cannot be updated. In
    CamelCase. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata (name, namespace, labels, annotations, ...). The name is the
    model name clients use: <namespace>/<name>, or <name> alone."""
    spec: ChatModelSpec
    status: ChatModelStatus = Field(default_factory=ChatModelStatus)
