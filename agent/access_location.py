"""Where this computer's access log is: one documented place, found without flags.

The agent writes ``access.log`` into its *access dir*, chosen at start
(:func:`access_dir_for_agent`):

1. ``$EMS_ACCESS_DIR`` when set (an installer's or a test's choice);
2. the system-wide place, when the agent may write there (it runs as root,
   or an installer made the directory writable for the agent's account):
   ``/var/lib/ems/access`` on Linux and other Unix systems,
   ``%ProgramData%\\EMS\\access`` on Windows,
   ``/Library/Application Support/EMS/access`` on macOS;
3. otherwise the agent account's user-data dir:
   ``$XDG_DATA_HOME/ems/access`` (``~/.local/share/ems/access``),
   ``%LOCALAPPDATA%\\EMS\\access`` on Windows.

``ems agent access-log`` and the "What IT did on this computer" window look
in the same places in the same order (:func:`find_access_log`), then in the
agent data dirs of older versions (``$EMS_HOME``, ``./var``, ``./var/agent``).
The file is 0640 in a 0710 directory (:mod:`broker.core.private_files`): the
agent writes it, the directory's group reads it; an installer lets the
employees read it with ``chgrp GROUP /var/lib/ems/access``. Parents the
agent creates for the system place are 0711 (passable, not listable).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from broker.core.config import resolve_data_dir

ACCESS_DIR_ENV = "EMS_ACCESS_DIR"
FILE_NAME = "access.log"
#: the mode of parent directories created on the way to the system-wide place
PASSABLE_DIR_MODE = 0o711


def system_dir(platform: str | None = None, env: dict | None = None) -> Path:
    """The system-wide access dir of this platform."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    if platform == "win32":
        return Path(env.get("ProgramData", r"C:\ProgramData")) / "EMS" / "access"
    if platform == "darwin":
        return Path("/Library/Application Support/EMS/access")
    return Path("/var/lib/ems/access")


def user_dir(platform: str | None = None, env: dict | None = None) -> Path:
    """The access dir in the agent account's user-data dir."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    if platform == "win32" and env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "EMS" / "access"
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ems" / "access"


def access_dir_for_agent() -> Path:
    """Where a starting agent keeps its access log (the order in the module docstring)."""
    if os.environ.get(ACCESS_DIR_ENV):
        return Path(os.environ[ACCESS_DIR_ENV]).expanduser().resolve()
    system = system_dir()
    if _may_write(system):
        _make_parents(system)
        return system
    return user_dir()


def candidates(data_dir: str | None = None) -> list[Path]:
    """The access-log files to look at, in order (an explicit data dir only: that one)."""
    if data_dir:
        root = resolve_data_dir(data_dir)
        return [root / FILE_NAME, root / "agent" / FILE_NAME]
    places = []
    if os.environ.get(ACCESS_DIR_ENV):
        places.append(Path(os.environ[ACCESS_DIR_ENV]).expanduser() / FILE_NAME)
    places += [system_dir() / FILE_NAME, user_dir() / FILE_NAME]
    legacy = resolve_data_dir(None)
    places += [legacy / FILE_NAME, legacy / "agent" / FILE_NAME]
    return places


def find_access_log(data_dir: str | None = None) -> Path:
    """The first candidate that exists (readable or not: reading says why not), else the first."""
    places = candidates(data_dir)
    for path in places:
        try:
            if path.exists():
                return path
        except PermissionError:  # a directory on the way is closed to us: the file is there, not ours to read
            return path
    return places[0]


def _may_write(path: Path) -> bool:
    """True when this process may create or write ``path`` (root, or an existing writable dir)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return True
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def _make_parents(path: Path) -> None:
    """Create the missing parents of ``path`` passable for everyone (0711)."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    for parent in missing:
        parent.mkdir(mode=PASSABLE_DIR_MODE, exist_ok=True)
        os.chmod(parent, PASSABLE_DIR_MODE)
