"""A client id for this install that survives restarts and differs between clones.

The id is a hash of the machine id, the primary MAC address and a random
salt made at the install's first start (kept in ``DATA/identity.json``),
so it is the same across agent restarts, reveals none of those values,
and two VMs cloned from one image (same machine id, maybe the same MAC)
still get different ids. An install that ran before the salt existed
keeps the id it had (its data dir already holds the agent's keys): the
broker knows it by that id. :func:`fingerprints` are what HELLO tells the
broker so that two live machines claiming one id can be told apart.
Platform specifics stay in ``_machine_id``.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import uuid
from pathlib import Path

from broker.core.errors import EmsError

_SALT = b"ems-client-id-v1"
#: the file in the agent's data dir that keeps the id and the install salt
IDENTITY_FILE = "identity.json"


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


def hardware_fingerprint() -> str:
    """16 hex chars: sha256(salt, machine id, primary MAC); the id of agents before the install salt."""
    mac = uuid.getnode()
    return hashlib.sha256(_SALT + _machine_id().encode() + mac.to_bytes(6, "big")).hexdigest()[:16]


def client_id(data_dir: Path | None = None) -> str:
    """This install's id: kept in ``data_dir``, made there at the first start.

    Without a data dir it is the hardware fingerprint (what older agents used).
    """
    if data_dir is None:
        return hardware_fingerprint()
    return load_or_create(Path(data_dir))["client_id"]


def fingerprints(data_dir: Path) -> dict[str, str]:
    """What HELLO says about this install: ``hardware`` (machine id + MAC) and ``install`` (salt) hashes."""
    salt = load_or_create(Path(data_dir))["install_salt"]
    return {"hardware": hardware_fingerprint(), "install": hashlib.sha256(b"ems-install-v1" + bytes.fromhex(salt)).hexdigest()[:16]}


def load_or_create(data_dir: Path) -> dict[str, str]:
    """The identity kept in ``data_dir`` (``client_id``, ``install_salt``); made on the first start.

    A data dir that already holds agent keys but no identity file belongs
    to an install from before the salt: it keeps its hardware-derived id.
    """
    path = data_dir / IDENTITY_FILE
    try:
        kept = json.loads(path.read_text())
        if isinstance(kept.get("client_id"), str) and isinstance(kept.get("install_salt"), str):
            return kept
        raise ValueError("client_id or install_salt missing")
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise EmsError(f"{path} is damaged ({exc}); restore it from a backup, or remove it to get a new client id") from exc
    salt = secrets.token_bytes(16)
    existing = (data_dir / "keys" / "agent.secret").exists()
    cid = hardware_fingerprint() if existing else hashlib.sha256(
        _SALT + _machine_id().encode() + uuid.getnode().to_bytes(6, "big") + salt).hexdigest()[:16]
    identity = {"client_id": cid, "install_salt": salt.hex()}
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(identity, handle)
    os.replace(tmp, path)
    return identity
