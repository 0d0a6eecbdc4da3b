"""Building quotas and callers for the quota tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatprovider.api.quota import ChatQuotaSpec
from chatprovider.domain.quota.limits import Quota
from chatprovider.domain.routing import ProviderRef

PROVIDER = ProviderRef("llm", "vllm")


@dataclass(frozen=True)
class Caller:
    username: str
    groups: tuple[str, ...] = ()


ALICE = Caller("alice", ("team-a", "system:authenticated"))
APP = Caller("system:serviceaccount:team-b:app")


def quota(name: str = "q", namespace: str = "llm", **spec: Any) -> Quota:
    body = {"providers": {"names": ["vllm"]}, "subjects": [{"kind": "User", "name": "alice"}],
            "limits": {"requestsPerMinute": 10}, **spec}
    return Quota(namespace, name, ChatQuotaSpec.model_validate(body))
