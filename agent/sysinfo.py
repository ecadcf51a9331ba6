"""The system report an agent sends every minute (``event.<agent>.sysinfo``).

:func:`collect` gathers it with psutil: host and OS, logged-in users,
uptime, CPU, memory, load, disks, network interfaces and the agent's
version. :class:`SystemInfo` is the capability the runner owns: the
``sysinfo`` command and the periodic report. The store reads these
keys of it: ``hostname``, ``os``, ``os_version``, ``logged_in_user``,
``version`` (the agent's), ``cpu_percent``, ``memory_percent`` and
``disk_percent``; the whole map is kept as the client's last sysinfo.

``disk_percent`` is the use of the *fullest* local disk (the one an
operator must act on first), and ``disk_percent_mount`` says which mount
point that is. Every disk is listed in ``disks``.

Disks are the mounted local filesystems: pseudo filesystems (proc, tmpfs,
cgroup, overlay layers other than ``/``, squashfs snap images...) are
skipped, and so are network filesystems (NFS, SMB, sshfs...), whose
``statvfs`` can hang for minutes when the server is gone.

Cost: one call reads a few files under /proc and /sys and one ``statvfs``
per disk; about 1-3 ms on a typical Linux desktop (see the test suite),
cheap enough for the 60 s report.
"""
from __future__ import annotations

import functools
import getpass
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from importlib import metadata

import psutil

from agent.capability import Capability, Handler
from agent.context import AgentContext
from agent.outbox import OutboxError
from broker.core.envelope import Kind

log = logging.getLogger(__name__)

#: Filesystem types that are not disks.
PSEUDO_FILESYSTEMS = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devfs", "devpts", "devtmpfs",
    "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc", "procfs", "pstore", "ramfs",
    "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs", "fuse.gvfsd-fuse",
    "fuse.portal", "fuse.lxcfs", "nullfs", "map", "lofs",
})
#: Network filesystems: not this machine's disks, and statvfs on them may hang.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smbfs", "smb3", "afs", "9p", "ceph", "glusterfs", "fuse.sshfs", "sshfs",
    "davfs", "fuse.rclone", "webdav",
})

# cpu_percent(None) measures since the previous call: prime it now so the
# first report says something true instead of 0.0.
psutil.cpu_percent(interval=None)


@functools.lru_cache(maxsize=1)
def logged_in_user() -> str:
    users = psutil.users()
    if users:
        return users[0].name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def package_version() -> str:
    """The installed EMS version (``ems`` distribution), or ``unknown``."""
    try:
        return metadata.version("ems")
    except metadata.PackageNotFoundError:
        return "unknown"


def os_facts() -> dict:
    """OS name, version and a readable description."""
    system = platform.system()
    version = platform.release()
    description = platform.platform()
    if system == "Linux":
        try:
            release = platform.freedesktop_os_release()
            description = release.get("PRETTY_NAME", description)
        except OSError:
            pass
    elif system == "Darwin":
        version = platform.mac_ver()[0] or version
        description = f"macOS {version}"
    elif system == "Windows":
        version = platform.version()
        description = f"Windows {platform.release()} ({version})"
    return {"os": system, "os_version": version, "os_description": description, "kernel": platform.release()}


def network_info() -> list[dict]:
    """Each interface: name, MAC, IPv4/IPv6 addresses (with netmask), up, speed in Mbit/s, MTU."""
    try:
        stats = psutil.net_if_stats()
    except OSError as exc:
        log.debug("could not read interface statistics: %s", exc)
        stats = {}
    interfaces = []
    for name, addrs in sorted(psutil.net_if_addrs().items()):
        entry: dict = {"name": name, "mac": None, "ipv4": [], "ipv6": []}
        for addr in addrs:
            if addr.family == psutil.AF_LINK:
                entry["mac"] = addr.address
            elif addr.family == socket.AF_INET:
                entry["ipv4"].append({"address": addr.address, "netmask": addr.netmask})
            elif addr.family == socket.AF_INET6:
                entry["ipv6"].append({"address": addr.address.split("%", 1)[0], "netmask": addr.netmask})
        st = stats.get(name)
        if st is not None:
            entry.update(up=st.isup, speed_mbps=st.speed, mtu=st.mtu)
        interfaces.append(entry)
    return interfaces


def disks() -> list[dict]:
    """Local disks by mount point: device, fstype, total/used/free bytes and percent."""
    seen_devices: set[str] = set()
    result = []
    partitions = sorted(psutil.disk_partitions(all=True), key=lambda p: len(p.mountpoint))
    for part in partitions:
        fstype = part.fstype.lower()
        if fstype in NETWORK_FILESYSTEMS or (fstype in PSEUDO_FILESYSTEMS and part.mountpoint != "/"):
            continue
        if sys.platform != "win32" and not part.device.startswith("/") and part.mountpoint != "/":
            continue  # "none", "proc"... devices that are not block devices
        if part.device in seen_devices and sys.platform != "win32":
            continue  # bind mounts and btrfs subvolumes: the same space counted once
        if "cdrom" in part.opts or not part.fstype:  # Windows: empty drives
            continue
        if sys.platform == "darwin" and part.mountpoint.startswith("/System/Volumes/") and part.mountpoint != "/System/Volumes/Data":
            continue  # APFS system volumes (VM, Preboot, Update...) share the Data volume's space
        try:
            usage = psutil.disk_usage(part.mountpoint)
        except (OSError, PermissionError) as exc:
            log.debug("could not read the usage of %s: %s", part.mountpoint, exc)
            continue
        if usage.total == 0:
            continue
        seen_devices.add(part.device)
        result.append({
            "mount": part.mountpoint,
            "device": part.device,
            "fstype": part.fstype,
            "total": usage.total,
            "used": usage.used,
            "free": usage.free,
            "percent": usage.percent,
        })
    return result


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    if not hasattr(os, "getloadavg"):
        return None  # Windows: psutil would start a sampling thread for it
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def collect(agent_version: str | None = None) -> dict:
    """The full report; ``agent_version`` defaults to the installed package's version."""
    mem = psutil.virtual_memory()
    swap = psutil.swap_memory()
    disk_list = disks()
    fullest = max(disk_list, key=lambda d: d["percent"], default=None)
    users = sorted({u.name for u in psutil.users() if u.name})
    boot = psutil.boot_time()
    version = agent_version or package_version()
    return {
        "hostname": socket.gethostname(),
        **os_facts(),
        "platform": platform.platform(),
        "architecture": platform.machine(),
        "logged_in_user": logged_in_user(),
        "logged_in_users": users,
        "boot_time": boot,
        "uptime_seconds": int(time.time() - boot),
        "cpu_count": psutil.cpu_count() or 0,
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "cpu_percent": psutil.cpu_percent(interval=None),
        "load_average": load_average(),
        "memory_total": mem.total,
        "memory_available": mem.available,
        "memory_percent": mem.percent,
        "swap_total": swap.total,
        "swap_percent": swap.percent,
        "disks": disk_list,
        "disk_percent": fullest["percent"] if fullest else None,
        "disk_percent_mount": fullest["mount"] if fullest else None,
        "network_info": network_info(),
        "version": version,
        "agent_version": version,
        "python_version": platform.python_version(),
        "collected_at": time.time(),
    }


class SystemInfo(Capability):
    """The ``sysinfo`` command, and the report every ``interval_s`` (at once after each new connection).

    ``ready()`` says whether the bus is connected and ``generation()``
    counts its connections (a new one means: report now); reports go
    through ``ctx.report`` (the durable outbox). ``after_report()`` runs
    after each periodic report (the runner has the outbox's drops reported
    at the same pace).
    """

    name = "sysinfo"

    def __init__(self, version: str, interval_s: float, *, ready: Callable[[], bool], generation: Callable[[], int],
                 after_report: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic):
        self.version = version
        self.interval_s = interval_s
        self._ready, self._generation, self._after_report, self._clock = ready, generation, after_report, clock
        self._seen_generation = 0
        self._next_report = 0.0

    def handlers(self) -> dict[str, Handler]:
        return {"sysinfo": self.now}

    def now(self, args: dict, ctx: AgentContext) -> dict:
        """Collect and return the full system information now."""
        return collect()

    def poll(self, ctx: AgentContext) -> None:
        if self._generation() != self._seen_generation:
            self._seen_generation = self._generation()
            self._next_report = 0.0  # report right after (re)connecting
        if self._ready() and self._clock() >= self._next_report:
            self._report(ctx)

    def _report(self, ctx: AgentContext) -> None:
        self._next_report = self._clock() + self.interval_s
        try:
            ctx.report(Kind.EVENT, "sysinfo", collect(self.version))
        except OutboxError as exc:  # reporting must never stop the agent
            log.warning("could not keep a sysinfo report: %s", exc)
        self._after_report()
