"""Hosts on one machine for deployment tests: Linux network namespaces on a private bridge.

    with HostNetwork(["h1", "h2"]) as net:
        net.control_address                 # 10.X.Y.1: this process's side (root namespace)
        net.hosts["h1"].address             # 10.X.Y.2: a host of its own, its own ports
        subprocess.Popen([*net.hosts["h1"].exec_prefix, "python", ...])
        net.hosts["h1"].lose()              # SIGKILL everything in it, cut its link

The network is a bridge in the root namespace holding the first address of a free 10.X.Y.0/24
(services of the "control host" bind there) and one veth pair per host, its inner end in the
host's namespace with the next address. Every process of a host is started through ``ip netns
exec``, so it sees only the host's interfaces and ports: two hosts may both listen on port 4000.
Leaving the block kills every process left in the namespaces and deletes them, the veths and the
bridge, also after a failure; names carry a random tag, so concurrent test runs do not collide.
Needs root (``CAP_NET_ADMIN``) and ``ip`` (iproute2).
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ccxt_questdb_assets.core.errors import ServiceError

__all__ = ["HostNetwork", "NamespaceHost", "require_network_namespaces"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise ServiceError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def require_network_namespaces() -> None:
    """Raise :class:`ServiceError` saying why hosts cannot be made here (not root, no ``ip``)."""
    if shutil.which("ip") is None:
        raise ServiceError("the deployment test needs iproute2's `ip` (apt-get install iproute2)")
    if os.geteuid() != 0:
        raise ServiceError("the deployment test makes network namespaces: it must run as root (CAP_NET_ADMIN)")


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for item in json.loads(_ip("-j", "-4", "addr").stdout or "[]"):
        for a in item.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{a['local']}/{a['prefixlen']}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route").stdout or "[]"):
        dst = route.get("dst")
        if dst and dst != "default":
            nets.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    return nets


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(160, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise ServiceError("no free 10.X.Y.0/24 for the test network")


@dataclass
class NamespaceHost:
    """One host: a network namespace with one address on the bridge."""

    name: str
    namespace: str
    address: str
    outer_link: str
    inner_link: str
    lost: bool = field(default=False)

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix of a command line that runs it on this host."""
        return ["ip", "netns", "exec", self.namespace]

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.namespace, check=False).stdout
        return [int(p) for p in out.split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process in the namespace (repeatedly, until none is left); their pids."""
        killed: list[int] = []
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        return sorted(set(killed))

    def lose(self) -> list[int]:
        """The host dies: every process in it is SIGKILLed and its link goes down (its address stops
        answering, as a powered-off machine's). Returns the killed pids."""
        self.lost = True
        _ip("link", "set", self.outer_link, "down", check=False)
        return self.kill_all()


class HostNetwork:
    """A bridge with this process's address and one network namespace per host name."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = list(names)
        self.tag = secrets.token_hex(3)
        self.bridge = f"cqb{self.tag}"
        self.subnet = _free_subnet()
        addresses = list(self.subnet.hosts())
        self.control_address = str(addresses[0])
        self.hosts: dict[str, NamespaceHost] = {}
        for i, name in enumerate(self.names, start=1):
            self.hosts[name] = NamespaceHost(
                name=name,
                namespace=f"cq{self.tag}-{name}",
                address=str(addresses[i]),
                outer_link=f"cq{self.tag}o{i}",
                inner_link=f"cq{self.tag}i{i}",
            )

    def start(self) -> HostNetwork:
        require_network_namespaces()
        try:
            prefix = self.subnet.prefixlen
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.control_address}/{prefix}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in self.hosts.values():
                _ip("netns", "add", host.namespace)
                _ip("link", "add", host.outer_link, "type", "veth", "peer", "name", host.inner_link)
                _ip("link", "set", host.inner_link, "netns", host.namespace)
                _ip("link", "set", host.outer_link, "master", self.bridge)
                _ip("link", "set", host.outer_link, "up")
                inside = ["netns", "exec", host.namespace, "ip"]
                _ip(*inside, "addr", "add", f"{host.address}/{prefix}", "dev", host.inner_link)
                _ip(*inside, "link", "set", host.inner_link, "up")
                _ip(*inside, "link", "set", "lo", "up")
            self._wait_reachable()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_reachable(self, timeout_s: float = 10.0) -> None:
        """Until each host opens a TCP connection to the bridge address (a listener of this process)."""
        with socket.socket() as listener:
            listener.bind((self.control_address, 0))
            listener.listen(8)
            port = listener.getsockname()[1]
            probe = f"import socket; socket.create_connection(({self.control_address!r}, {port}), timeout=2).close()"
            for host in self.hosts.values():
                deadline = time.monotonic() + timeout_s
                while True:
                    command = [*host.exec_prefix, sys.executable, "-S", "-c", probe]
                    done = subprocess.run(command, capture_output=True, text=True, timeout=10)
                    if done.returncode == 0:
                        break
                    if time.monotonic() > deadline:
                        why = done.stderr[-500:]
                        raise ServiceError(
                            f"host {host.name} ({host.address}) cannot reach {self.control_address}: {why}"
                        )
                    time.sleep(0.2)

    def close(self) -> None:
        """Kill what runs in the namespaces, delete them, their links and the bridge. Idempotent."""
        for host in self.hosts.values():
            if _ip("netns", "pids", host.namespace, check=False).returncode == 0:
                host.kill_all()
                _ip("netns", "del", host.namespace, check=False)
            _ip("link", "del", host.outer_link, check=False)  # gone with its peer's namespace, normally
        _ip("link", "del", self.bridge, check=False)

    def __enter__(self) -> HostNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
