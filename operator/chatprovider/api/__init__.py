"""The ChatProvider API (``ai.chatprovider.dev/v1alpha1``): pydantic models and their CRD."""

from chatprovider.api.v1alpha1 import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ChatProvider,
    ChatProviderSpec,
    ChatProviderStatus,
    Condition,
    DiscoveredModel,
    ServerType,
)

__all__ = [
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "ChatProvider",
    "ChatProviderSpec",
    "ChatProviderStatus",
    "Condition",
    "DiscoveredModel",
    "ServerType",
]
