"""A small asyncio Kubernetes API client over aiohttp: just what the operator and relay call.

The official ``kubernetes`` package is used only to load credentials (kubeconfig, in-cluster, exec
plugins); requests go through one pooled aiohttp session so that nothing blocks the event loop.
"""

from chatprovider.kube.client import ApiError, KubeClient, WatchEvent
from chatprovider.kube.config import KubeConfig

__all__ = ["ApiError", "KubeClient", "KubeConfig", "WatchEvent"]
