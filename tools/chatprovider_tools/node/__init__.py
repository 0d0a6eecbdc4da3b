"""A real single-node cluster for the e2e tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, a kubelet on its own containerd (runc, CNI bridge), kube-proxy and CoreDNS, all
built or installed from package registries by ``scripts/install-node.sh``.

    with NodeCluster() as node:
        node.load_image("chatprovider-operator:dev")   # from docker into the node's containerd
        node.kubectl("get", "nodes")

Pods get addresses on a bridge the harness creates (:data:`network.POD_CIDR`); Services are
routed onto it and never leave the host; pods reach nothing else. :meth:`NodeCluster.stop`
removes every process, mount, cgroup, network namespace, iptables chain and sysctl change it
made. See docs/development.md, "The real node".
"""

from chatprovider_tools.node.cluster import NodeCluster, NodeError
from chatprovider_tools.node.network import GATEWAY, POD_CIDR, SERVICE_CIDR

__all__ = ["GATEWAY", "POD_CIDR", "SERVICE_CIDR", "NodeCluster", "NodeError"]
