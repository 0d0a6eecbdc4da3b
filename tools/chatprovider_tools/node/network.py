"""The host side of the node's network: its bridge, the routes and firewall rules pods need,
the sysctls the kubelet rewrites, and their removal.

Everything here is undone by :func:`remove`, which also cleans what a killed session left (it is
called before :func:`create` too): the bridge by name, our FORWARD rule by its comment, every
``KUBE-*`` and ``CNI-*`` chain (kube-proxy's, the kubelet's, the portmap plugin's; Docker's own
chains are left alone).
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

__all__ = ["BRIDGE", "GATEWAY", "POD_CIDR", "SERVICE_CIDR", "create", "leftovers", "remove"]

BRIDGE = "cpnode0"
#: The bridge's own address: the node's IP, where the API server, kubelet and CoreDNS listen.
GATEWAY = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.0.0.0/24"
_RULE = ["FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-m", "comment", "--comment",
         "chatprovider node: pod to pod", "-j", "ACCEPT"]
#: What the kubelet sets at start (it protects no kernel defaults), restored on stop.
_SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
            "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def create(saved_sysctls: Path) -> None:
    """The bridge with the node's address, the Service CIDR routed onto it, pod-to-pod
    forwarding allowed (Docker sets the FORWARD policy to DROP), and the sysctls saved."""
    remove(saved_sysctls)
    values = _run("sysctl", "-e", *_SYSCTLS).stdout
    saved_sysctls.write_text("".join(line.replace(" ", "") + "\n"
                                     for line in values.splitlines() if "=" in line))
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{GATEWAY}/16", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    # Service addresses never leave the host, even before kube-proxy has written its rules.
    _run("ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE)
    _run("iptables", "-I", *_RULE[:1], "1", *_RULE[1:])


def remove(saved_sysctls: Path) -> None:
    """Undo :func:`create` and every chain kube-proxy, the kubelet and CNI wrote (idempotent)."""
    _run("ip", "link", "del", BRIDGE, check=False)
    while _run("iptables", "-D", *_RULE, check=False).returncode == 0:
        pass
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            _remove_chains(tool, table)
    if saved_sysctls.exists():
        settings = saved_sysctls.read_text().split()
        if settings:
            _run("sysctl", "-q", "-w", *settings, check=False)
        saved_sysctls.unlink()


def leftovers() -> list[str]:
    """The bridge, our rule or any ``KUBE-*``/``CNI-*`` chain, where they remain."""
    found = [f"link {BRIDGE}"] if _run("ip", "link", "show", BRIDGE,
                                       check=False).returncode == 0 else []
    if _run("iptables", "-C", *_RULE, check=False).returncode == 0:
        found.append("the FORWARD rule")
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            found += [f"{tool} -t {table} chain {r.split()[1]}" for r in _run(
                tool, "-t", table, "-S", check=False).stdout.splitlines()
                if r.startswith("-N ") and r.split()[1].startswith(("KUBE-", "CNI-"))]
    return found


def _remove_chains(tool: str, table: str) -> None:
    rules = _run(tool, "-t", table, "-S", check=False).stdout.splitlines()
    chains = [r.split()[1] for r in rules if r.startswith("-N ") and r.split()[1].startswith(
        ("KUBE-", "CNI-"))]
    if not chains:
        return
    for rule in rules:  # the jumps into them, from any chain
        words = shlex.split(rule)
        if words[0] == "-A" and "-j" in words and words[words.index("-j") + 1] in chains:
            _run(tool, "-t", table, "-D", *words[1:], check=False)
    for chain in chains:
        _run(tool, "-t", table, "-F", chain, check=False)
    for chain in chains:
        _run(tool, "-t", table, "-X", chain, check=False)
