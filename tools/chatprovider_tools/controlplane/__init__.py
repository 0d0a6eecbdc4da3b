"""A local Kubernetes control plane (etcd + kube-apiserver) for tests and the demo.

It plays the part controller-runtime's envtest plays for Go operators: real processes, no kubelet,
no Docker. See :class:`ControlPlane`.
"""

from chatprovider_tools.controlplane.binaries import Binaries, BinariesNotFound, find_binaries
from chatprovider_tools.controlplane.plane import ControlPlane, ControlPlaneError

__all__ = [
    "Binaries",
    "BinariesNotFound",
    "ControlPlane",
    "ControlPlaneError",
    "find_binaries",
]
