"""A stable client id for this machine.

Derived from the machine id and the primary MAC address through a salted
hash, so it is the same across agent restarts and reinstalls on the same
hardware, and reveals neither value. Platform specifics stay in
``_machine_id``.
"""
from __future__ import annotations

import hashlib
import sys
import uuid
from pathlib import Path

_SALT = b"ems-client-id-v1"


def _machine_id() -> str:
    if sys.platform.startswith("linux"):
        for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
            try:
                text = Path(path).read_text().strip()
            except OSError:
                continue
            if text:
                return text
    if sys.platform == "win32":
        try:
            import winreg  # noqa: PLC0415 - Windows only

            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography") as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0])
        except OSError:
            pass
    if sys.platform == "darwin":
        import subprocess  # noqa: PLC0415 - macOS only

        try:
            out = subprocess.run(["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"], capture_output=True, text=True, timeout=5).stdout
            for line in out.splitlines():
                if "IOPlatformUUID" in line:
                    return line.split('"')[-2]
        except (OSError, subprocess.SubprocessError):
            pass
    return ""


def client_id() -> str:
    """16 hex chars: sha256(salt, machine id, primary MAC)."""
    mac = uuid.getnode()
    digest = hashlib.sha256(_SALT + _machine_id().encode() + mac.to_bytes(6, "big")).hexdigest()
    return digest[:16]
