"""A small asyncio Kubernetes API client over aiohttp: just what the operator and relay call.

Requests return plain JSON dicts. Credentials come from the pod's ServiceAccount (its projected
token re-read as kubelet rotates it) or a kubeconfig (token, token file, client certificate, or
an exec plugin run again before its token expires); docs/decisions/kube-client.md says why this
is our own code rather than a client library.

Errors, by what the caller should do::

    ApiError                  the API server answered >= 400: see .status (404, 409, 410 ...)
    KubeConfigError           (ValueError) the kubeconfig lacks or garbles a field: fix it
    CredentialsError          (ConnectionError) no credential just now: retry
     +-- ExecPluginError      the exec plugin failed or printed no usable ExecCredential
"""

from chatprovider.kube.client import ApiError, KubeClient, WatchEvent
from chatprovider.kube.config import KubeConfig
from chatprovider.kube.credentials import CredentialsError, ExecPluginError
from chatprovider.kube.kubeconfig import KubeConfigError

__all__ = ["ApiError", "CredentialsError", "ExecPluginError", "KubeClient", "KubeConfig",
           "KubeConfigError", "WatchEvent"]
