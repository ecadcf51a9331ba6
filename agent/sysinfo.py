"""What an agent reports about its machine (the full set grows in the agent issue)."""
from __future__ import annotations

import getpass
import platform
import socket
import time

import psutil


def logged_in_user() -> str:
    users = psutil.users()
    if users:
        return users[0].name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def collect() -> dict:
    """Hostname, OS, logged-in user, uptime, CPU and memory."""
    mem = psutil.virtual_memory()
    return {
        "hostname": socket.gethostname(),
        "os": platform.system(),
        "os_version": platform.release(),
        "platform": platform.platform(),
        "logged_in_user": logged_in_user(),
        "uptime_seconds": int(time.time() - psutil.boot_time()),
        "cpu_count": psutil.cpu_count() or 0,
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_total": mem.total,
        "memory_percent": mem.percent,
    }
