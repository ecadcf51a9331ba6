"""A network namespace wired to the host by a veth pair, whose link can be black-holed.

For network-fault runs (``bench.netcut``, ``tests/test_network_cut.py``)::

    with NetNamespace.create() as ns:
        server binds on ns.host_address (the host end of the pair)
        Popen(ns.command([sys.executable, "-m", "..."]))    # runs inside the namespace
        ns.cut()    # silent black hole: frames leave, nothing arrives, no RST, no ICMP
        ns.heal()

The black hole swaps each end's neighbour entry for the other end to a MAC
address that does not exist, so both sides keep sending normally (no local
error, no qdisc drop that TCP would notice) and the receiving veth discards
every frame as "not for this host" (``ip -s -s link``: RX otherhost). That
is a dead switch port or a router that drops silently, built from iproute2
alone: ``tc netem`` is not in every kernel (not in this project's CI), and
iptables is not installed.

Needs root and ``ip`` (iproute2; ``installer/install.sh --dev`` installs
it). Names carry the creating process's pid (``emsnc<pid><seq>``);
:func:`remove_stale` deletes those whose process is gone (a killed run) and
runs on every :meth:`NetNamespace.create`. :meth:`NetNamespace.close` (also
run at exit) stops what still runs inside, then deletes the pair and the
namespace.
"""
from __future__ import annotations

import atexit
import fcntl
import ipaddress
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from broker.core.errors import EmsError

PREFIX = "emsnc"
#: the /16 our /30s come from (private, and unlikely to be used on a host)
POOL = ipaddress.ip_network("10.231.0.0/16")
#: a locally administered unicast MAC that no interface here has
NOWHERE_MAC = "02:00:5e:00:de:ad"
_NAME = re.compile(rf"^{PREFIX}([0-9a-f]{{7}})([0-9a-f]{{2}})[hn]?$")
_LOCK = Path(tempfile.gettempdir()) / "ems-netns.lock"
_seq = 0


class NetnsError(EmsError):
    """A namespace could not be made, changed or removed."""


def ip(*args: str, netns: str | None = None) -> str:
    """Run ``ip ARGS`` (inside ``netns`` if given); its stdout, or NetnsError with what to do."""
    if shutil.which("ip") is None:
        raise NetnsError("`ip` (iproute2) is not installed: run installer/install.sh --dev or apt-get install iproute2")
    argv = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        hint = " (network namespaces need root)" if os.geteuid() != 0 else ""
        raise NetnsError(f"`{' '.join(argv)}` failed{hint}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _owner_alive(name: str) -> bool:
    match = _NAME.match(name)
    if match is None:
        return True  # not ours: never touched
    pid = int(match.group(1), 16)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def _links() -> list[str]:
    return [line.split(": ")[1].split("@")[0] for line in ip("-o", "link", "show").splitlines()]


def _stop_processes_in(netns: str, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, each process still running inside ``netns`` (by pid)."""
    try:
        pids = [int(p) for p in ip("netns", "pids", netns).split()]
    except NetnsError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _running(p)]
            if alive:
                time.sleep(0.05)
        pids = alive
        if not pids:
            return


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours is gone for this purpose
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def remove_stale() -> list[str]:
    """Delete namespaces and veth links of ours whose creating process is gone; their names."""
    removed = []
    for name in _namespaces():
        if not _owner_alive(name):
            _stop_processes_in(name)
            ip("netns", "del", name)
            removed.append(name)
    for name in _links():
        if not _owner_alive(name):
            try:
                ip("link", "del", name)
                removed.append(name)
            except NetnsError:
                pass  # its peer went first and took it along
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    used = [ipaddress.ip_interface(line.split()[3]).network
            for line in ip("-o", "-4", "addr", "show").splitlines()]
    candidates = list(POOL.subnets(new_prefix=30))
    random.shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsError(f"no free /30 left in {POOL}: remove old namespaces with `ip netns list` / `ip netns del`")


@dataclass
class NetNamespace:
    """One namespace ``name`` joined to the host by ``host_if`` <-> ``ns_if``."""

    name: str
    host_if: str
    ns_if: str
    host_address: str
    ns_address: str
    host_mac: str = ""
    ns_mac: str = ""
    is_cut: bool = False
    closed: bool = field(default=False, repr=False)

    @classmethod
    def create(cls) -> "NetNamespace":
        """A new namespace with a veth pair on a free /30 from 10.231.0.0/16 (removed at exit)."""
        global _seq
        stem = f"{PREFIX}{os.getpid():07x}{_seq % 256:02x}"
        _seq += 1
        with _LOCK.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs must not pick the same /30
            remove_stale()
            net = _free_subnet()
            host_addr, ns_addr = list(net.hosts())
            ns = cls(stem, stem + "h", stem + "n", str(host_addr), str(ns_addr))
            atexit.register(ns.close)
            try:
                ns._build(net.prefixlen)
            except BaseException:
                ns.close()
                raise
        return ns

    def _build(self, prefixlen: int) -> None:
        ip("netns", "add", self.name)
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        ip("link", "set", self.ns_if, "netns", self.name)
        ip("addr", "add", f"{self.host_address}/{prefixlen}", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ip("addr", "add", f"{self.ns_address}/{prefixlen}", "dev", self.ns_if, netns=self.name)
        ip("link", "set", self.ns_if, "up", netns=self.name)
        ip("link", "set", "lo", "up", netns=self.name)
        self.host_mac = self._mac(self.host_if)
        self.ns_mac = self._mac(self.ns_if, self.name)
        self._point_neighbours(self.ns_mac, self.host_mac)  # static: no ARP to wait for, before or after a cut

    @staticmethod
    def _mac(ifname: str, netns: str | None = None) -> str:
        fields = ip("-o", "link", "show", ifname, netns=netns).split()
        return fields[fields.index("link/ether") + 1]

    def _point_neighbours(self, mac_of_ns: str, mac_of_host: str) -> None:
        ip("neigh", "replace", self.ns_address, "lladdr", mac_of_ns, "dev", self.host_if, "nud", "permanent")
        ip("neigh", "replace", self.host_address, "lladdr", mac_of_host, "dev", self.ns_if, "nud", "permanent",
           netns=self.name)

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: the Popen pid is the program's)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def cut(self) -> None:
        """Black-hole the link both ways: every frame is sent, none is received."""
        self._point_neighbours(NOWHERE_MAC, NOWHERE_MAC)
        self.is_cut = True

    def heal(self) -> None:
        """Restore the link."""
        self._point_neighbours(self.ns_mac, self.host_mac)
        self.is_cut = False

    def discarded(self) -> int:
        """Frames the two ends discarded as not addressed to them (what the black hole ate)."""
        total = 0
        for ifname, netns in ((self.host_if, None), (self.ns_if, self.name)):
            text = ip("-s", "-s", "link", "show", ifname, netns=netns).split("\n")
            for i, line in enumerate(text):
                if "otherhost" in line:
                    total += int(text[i + 1].split()[line.split().index("otherhost") - 2])
        return total

    def close(self) -> None:
        """Stop what runs inside, delete the pair and the namespace (idempotent)."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        if self.name in _namespaces():
            _stop_processes_in(self.name)
        if self.host_if in _links():
            ip("link", "del", self.host_if)  # takes the namespace end along, at once
        if self.name in _namespaces():
            ip("netns", "del", self.name)

    def __enter__(self) -> "NetNamespace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
