"""Start and stop a real single-node cluster (see the package's docstring)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatprovider_tools.controlplane.binaries import DEFAULT_K8S_VERSION, cache_root
from chatprovider_tools.controlplane.certs import issue, make_ca, pem_key
from chatprovider_tools.controlplane.plane import LoggedProcess, free_port, write_kubeconfig
from chatprovider_tools.node import network
from chatprovider_tools.node.network import GATEWAY, POD_CIDR, SERVICE_CIDR

__all__ = ["NodeCluster", "NodeError"]

NODE_NAME = "node1"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
DOCKER = "/usr/bin/docker"
CNI_BIN = Path("/usr/lib/cni")
_K8S = ("etcd", "kube-apiserver", "kubectl", "kubelet", "kube-controller-manager",
        "kube-scheduler", "kube-proxy", "coredns")
#: Each component's identity (user, groups) in the API server's token file.
_IDENTITIES = {
    "admin": ("admin", "system:masters"),
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "controller-manager": ("system:kube-controller-manager", ""),
    "scheduler": ("system:kube-scheduler", ""),
    "kube-proxy": ("system:kube-proxy", ""),
}


class NodeError(RuntimeError):
    """A piece is missing, or did not start; the message says which and how to get it."""


@dataclass(frozen=True)
class _Binaries:
    paths: dict[str, Path]

    @classmethod
    def find(cls, version: str = DEFAULT_K8S_VERSION) -> _Binaries:
        bin_dir = cache_root() / "k8s" / version / "bin"
        paths = {name: bin_dir / name for name in _K8S}
        for name in ("containerd", "ctr", "runc", "iptables"):
            found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
            paths[name] = Path(found) if found else Path("/usr/bin") / name
        paths |= {f"cni {p}": CNI_BIN / p for p in ("bridge", "host-local", "portmap",
                                                    "loopback")}
        paths["docker"] = Path(DOCKER)
        missing = [f"{name} ({path})" for name, path in paths.items()
                   if not (path.is_file() and os.access(path, os.X_OK))]
        if missing:
            raise NodeError("the node's pieces are missing: " + ", ".join(missing)
                            + ". Install them with `bash scripts/install-node.sh` (make setup).")
        return cls(paths)

    def __getitem__(self, name: str) -> str:
        return str(self.paths[name])


class NodeCluster:
    """etcd, kube-apiserver and one node named ``node1`` on the bridge address
    :data:`GATEWAY`; admin access through :attr:`kubeconfig`."""

    def __init__(self, start_timeout: float = 120.0) -> None:
        if os.geteuid() != 0:
            raise NodeError("the node harness needs root (network namespaces, mounts, cgroups)")
        self.bins = _Binaries.find()
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="chatprovider-node-"))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.saved_sysctls = cache_root() / "node" / "sysctl.saved"
        self.saved_sysctls.parent.mkdir(parents=True, exist_ok=True)
        self.containerd_socket = self.dir / "containerd.sock"
        self.ports = {name: free_port() for name in (
            "etcd", "etcd-peer", "apiserver", "kubelet", "kubelet-healthz", "proxy-healthz",
            "proxy-metrics", "controller-manager", "scheduler")}
        self.server = f"https://{GATEWAY}:{self.ports['apiserver']}"
        self.tokens = {name: secrets.token_urlsafe(32) for name in _IDENTITIES}
        self._write_pki()
        self.kubeconfigs = {
            name: write_kubeconfig(self.dir / f"{name}.kubeconfig", self.server,
                                   self.pki / "ca.crt", self.tokens[name], name)
            for name in _IDENTITIES}
        self.kubeconfig = self.kubeconfigs["admin"]
        self._processes: list[LoggedProcess] = []
        self.startup_seconds: float | None = None

    # -- files ---------------------------------------------------------------------------------
    def _write_pki(self) -> None:
        self.pki = self.dir / "pki"
        self.pki.mkdir()
        ca, ca_key = make_ca("chatprovider-node-ca")
        pem = serialization.Encoding.PEM
        (self.pki / "ca.crt").write_bytes(ca.public_bytes(pem))
        (self.pki / "ca.key").write_bytes(pem_key(ca_key))  # kept: the controller-manager signs
        names = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local")
        serving, serving_key = issue(ca, ca_key, "kube-apiserver", dns_names=names,
                                     ip_addresses=("127.0.0.1", GATEWAY, "10.0.0.1"))
        (self.pki / "apiserver.crt").write_bytes(serving.public_bytes(pem))
        (self.pki / "apiserver.key").write_bytes(pem_key(serving_key))
        # the API server's identity towards the kubelet (logs, exec)
        client, client_key = issue(ca, ca_key, "kube-apiserver-kubelet-client",
                                   organizations=("system:masters",), client=True)
        (self.pki / "kubelet-client.crt").write_bytes(client.public_bytes(pem))
        (self.pki / "kubelet-client.key").write_bytes(pem_key(client_key))
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.pki / "sa.key").write_bytes(pem_key(sa))
        (self.pki / "sa.pub").write_bytes(sa.public_key().public_bytes(
            pem, serialization.PublicFormat.SubjectPublicKeyInfo))
        for key in self.pki.glob("*.key"):
            key.chmod(0o600)
        lines = [f'{self.tokens[n]},{user},{n}-uid,"{groups}"'
                 for n, (user, groups) in _IDENTITIES.items()]
        self.token_file = self.dir / "tokens.csv"
        self.token_file.write_text("\n".join(lines) + "\n")
        self.token_file.chmod(0o600)

    def _write_configs(self) -> None:
        d = self.dir
        (d / "cni" / "net.d").mkdir(parents=True)
        (d / "cni" / "net.d" / "10-bridge.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "chatprovider-node",
            "plugins": [
                {"type": "bridge", "bridge": network.BRIDGE, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(d / "cni" / "ipam"),
                          "ranges": [[{"subnet": POD_CIDR, "gateway": GATEWAY}]],
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ]}, indent=2))
        (d / "containerd.toml").write_text(f"""version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
oom_score = 0
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # runc cannot set oom_score_adj below its own without CAP_SYS_RESOURCE
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{self.bins['runc']}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{d}/cni/net.d"
    max_conf_num = 1
""")
        cgroup_v1 = not Path("/sys/fs/cgroup/cgroup.controllers").exists()
        (d / "kubelet.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": not cgroup_v1, "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "imageServiceEndpoint": f"unix://{self.containerd_socket}",
            "podLogsDir": str(d / "pod-logs"),
            "address": GATEWAY, "port": self.ports["kubelet"], "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.ports["kubelet-healthz"],
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local", "clusterDNS": [GATEWAY],
            "failSwapOn": False, "cgroupsPerQOS": True, "enforceNodeAllocatable": ["pods"],
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%",
                             "imagefs.available": "2%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 60,
        }, indent=2))
        (d / "kube-proxy.yaml").write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "iptables", "hostnameOverride": NODE_NAME, "clusterCIDR": POD_CIDR,
            "clientConnection": {"kubeconfig": str(self.kubeconfigs["kube-proxy"])},
            "bindAddress": "127.0.0.1",
            "healthzBindAddress": f"127.0.0.1:{self.ports['proxy-healthz']}",
            "metricsBindAddress": f"127.0.0.1:{self.ports['proxy-metrics']}",
            "nodePortAddresses": [f"{GATEWAY}/32"],
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
            # leave the host's conntrack sysctls alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
        }, indent=2))
        # Cluster DNS on the node's address; no forwarding: pods resolve cluster names only.
        (d / "Corefile").write_text(f""".:53 {{
    bind {GATEWAY}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.kubeconfig} chatprovider-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
""")

    # -- command lines ---------------------------------------------------------------------------
    def _argv(self) -> dict[str, list[str]]:
        b, p, d, ports = self.bins, self.pki, self.dir, self.ports
        etcd = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        component = ["--bind-address=127.0.0.1", "--leader-elect=false", "--v=1"]
        return {
            "containerd": [b["containerd"], "--config", str(d / "containerd.toml")],
            "etcd": [b["etcd"], f"--data-dir={d / 'etcd'}", f"--listen-client-urls={etcd}",
                     f"--advertise-client-urls={etcd}", f"--listen-peer-urls={peer}",
                     f"--initial-advertise-peer-urls={peer}",
                     f"--initial-cluster=default={peer}", "--unsafe-no-fsync=true",
                     "--log-level=warn", "--listen-metrics-urls="],
            "kube-apiserver": [
                b["kube-apiserver"], f"--etcd-servers={etcd}", f"--bind-address={GATEWAY}",
                f"--advertise-address={GATEWAY}", f"--secure-port={ports['apiserver']}",
                f"--cert-dir={p}", f"--tls-cert-file={p / 'apiserver.crt'}",
                f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}", f"--token-auth-file={self.token_file}",
                f"--kubelet-client-certificate={p / 'kubelet-client.crt'}",
                f"--kubelet-client-key={p / 'kubelet-client.key'}",
                # otherwise `kubectl logs` resolves the node's name with the host's resolver
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--enable-priority-and-fairness=false", "--v=1"],
            "kube-controller-manager": [
                b["kube-controller-manager"],
                *(f"--{flag}={self.kubeconfigs['controller-manager']}" for flag in (
                    "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig")),
                *component, f"--secure-port={ports['controller-manager']}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p / 'sa.key'}",
                f"--root-ca-file={p / 'ca.crt'}", f"--cluster-signing-cert-file={p / 'ca.crt'}",
                f"--cluster-signing-key-file={p / 'ca.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}"],
            "kube-scheduler": [
                b["kube-scheduler"],
                *(f"--{flag}={self.kubeconfigs['scheduler']}" for flag in (
                    "kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig")),
                *component, f"--secure-port={ports['scheduler']}"],
            "kubelet": [b["kubelet"], f"--config={d / 'kubelet.yaml'}",
                        f"--kubeconfig={self.kubeconfigs['kubelet']}",
                        f"--root-dir={d / 'kubelet'}", f"--hostname-override={NODE_NAME}",
                        f"--node-ip={GATEWAY}", "--v=1"],
            "coredns": [b["coredns"], "-conf", str(d / "Corefile")],
            "kube-proxy": [b["kube-proxy"], f"--config={d / 'kube-proxy.yaml'}", "--v=1"],
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> NodeCluster:
        began = time.monotonic()
        try:
            self._write_configs()
            network.create(self.saved_sysctls)
            argv = self._argv()
            self._start("containerd", argv)
            self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0)
            self.load_image(PAUSE_IMAGE)
            self._start("etcd", argv)
            self._start("kube-apiserver", argv)
            self._wait("kube-apiserver", lambda: self.kubectl(
                "get", "--raw", "/readyz", check=False).returncode == 0)
            for name in ("kube-controller-manager", "kube-scheduler", "kubelet", "coredns",
                         "kube-proxy"):
                self._start(name, argv)
            self._wait("node Ready", self._node_ready)
            self._wait("the default ServiceAccount", lambda: self.kubectl(
                "get", "serviceaccount", "default", check=False).returncode == 0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start(self, name: str, argv: dict[str, list[str]]) -> None:
        process = LoggedProcess(name, argv[name], self.logs / f"{name}.log")
        process.start()
        self._processes.append(process)

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            dead = [p for p in self._processes if not p.alive()]
            if dead:
                raise NodeError(f"{dead[0].name} exited while waiting for {what}; its last log "
                                f"lines:\n{dead[0].tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise NodeError(f"{what} not ready after {self.start_timeout:.0f}s; logs in {self.logs}:"
                        + "".join(f"\n--- {p.name}\n{p.tail(8)}" for p in self._processes))

    def _node_ready(self) -> bool:
        proc = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if proc.returncode != 0:
            return False
        conditions = json.loads(proc.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def stop(self) -> None:
        """Stop everything and remove what it made (bounded: about 30 s at worst)."""
        by_name = {p.name: p for p in self._processes}
        if all(n in by_name and by_name[n].alive() for n in ("kube-apiserver", "kubelet")):
            # the kubelet tears pods down properly (CNI DEL frees addresses, veths, netns)
            self.kubectl("delete", "pods", "--all", "-A", "--force", "--grace-period=0",
                         "--wait=false", check=False)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._running_tasks():
                time.sleep(0.3)
        for name in ("kube-proxy", "coredns", "kube-scheduler", "kube-controller-manager",
                     "kubelet"):
            if name in by_name:
                by_name[name].stop(timeout=5)
        if "containerd" in by_name and by_name["containerd"].alive():
            for task in self._running_tasks(all_tasks=True):
                self.ctr("tasks", "kill", "-s", "KILL", task, check=False)
            for task in self._running_tasks(all_tasks=True):
                self.ctr("tasks", "delete", "-f", task, check=False)
        for name in ("containerd", "kube-apiserver", "etcd"):
            if name in by_name:
                by_name[name].stop(timeout=5)
        self._processes.clear()
        self._kill_shims()
        self._unmount()
        self._remove_cgroups()
        network.remove(self.saved_sysctls)
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What :meth:`stop` should have removed and did not (empty after a clean stop)."""
        found = network.leftovers()
        prefix = f"{self.dir}/"
        found += [f"mount {line.split()[1]}" for line in
                  Path("/proc/self/mounts").read_text().splitlines()
                  if line.split()[1].startswith(prefix)]
        needle = str(self.containerd_socket).encode()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes():
                    found.append(f"process {entry.name}")
            except OSError:
                continue
        if self.dir.exists():
            found.append(f"directory {self.dir}")
        return found

    def _running_tasks(self, all_tasks: bool = False) -> list[str]:
        proc = self.ctr("tasks", "ls", check=False)
        rows = [line.split() for line in proc.stdout.splitlines()[1:]]
        return [r[0] for r in rows if r and (all_tasks or r[-1] == "RUNNING")]

    def _kill_shims(self) -> None:
        """The runc shims outlive containerd by design; ours name its socket."""
        needle = str(self.containerd_socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), 9)
            except (OSError, ProcessLookupError):
                continue

    def _unmount(self) -> None:
        prefix = f"{self.dir}/"
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            if subprocess.run(["umount", target], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", target], capture_output=True)

    @staticmethod
    def _remove_cgroups() -> None:
        """The kubelet's ``kubepods`` hierarchy, deepest first, in each cgroup v1 controller
        (or the v2 tree); a cgroup still holding a process is left, which stop() prevents."""
        cgroups = Path("/sys/fs/cgroup")
        for root in [*cgroups.glob("*/kubepods"), cgroups / "kubepods"]:
            if not root.is_dir():
                continue
            directories = [p for p in root.rglob("*") if p.is_dir()]
            for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True) + [root]:
                try:
                    directory.rmdir()
                except OSError:
                    pass

    def __enter__(self) -> NodeCluster:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- tools -------------------------------------------------------------------------------------
    def kubectl(self, *args: str, check: bool = True, timeout: float = 60,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.bins["kubectl"], f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([self.bins["ctr"], "-a", str(self.containerd_socket), "-n",
                               "k8s.io", *args], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def load_image(self, image: str) -> str:
        """Copy ``image`` from Docker into the node's containerd; its name there (pods use it
        with ``imagePullPolicy: Never``)."""
        name = image if "/" in image.split(":")[0] else f"docker.io/library/{image}"
        save = subprocess.Popen([self.bins["docker"], "save", image], stdout=subprocess.PIPE)
        try:
            imported = subprocess.run(
                [self.bins["ctr"], "-a", str(self.containerd_socket), "-n", "k8s.io", "images",
                 "import", "-"], stdin=save.stdout, capture_output=True, text=True, timeout=300)
        finally:
            assert save.stdout is not None
            save.stdout.close()
            save.wait(timeout=60)
        if save.returncode != 0 or imported.returncode != 0:
            raise NodeError(f"loading {image} into the node failed: {imported.stderr.strip()} "
                            "(is it built? `bash scripts/install-node.sh`)")
        return name

    def log_tails(self, lines: int = 20) -> str:
        return "".join(f"\n--- {log.stem}\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-lines:])
            for log in sorted(self.logs.glob("*.log")))
