"""Finding the names of pending updates in each package manager's output (:data:`PARSERS`).
"""
from __future__ import annotations

from collections.abc import Callable


def _parse_apt(text: str) -> list[str]:
    # "bash/stable 5.2.15-2+b7 amd64 [upgradable from: 5.2.15-2+b2]"
    return [line.split("/", 1)[0] for line in text.splitlines() if "[upgradable from" in line]


def _parse_apt_simulate(text: str) -> list[str]:
    # "Inst bash [5.2.15-2+b2] (5.2.15-2+b7 Debian:12.5/stable [amd64])"
    return [line.split()[1] for line in text.splitlines() if line.startswith("Inst ") and len(line.split()) > 1]


def _parse_dnf(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or line.startswith((" ", "Last metadata", "Obsoleting", "Security:")):
            if line.startswith("Obsoleting"):
                break
            continue
        if len(parts) == 3 and "." in parts[0]:
            names.append(parts[0])
    return names


def _parse_zypper(text: str) -> list[str]:
    # "v | repo | name | current | available | arch"
    names = []
    for line in text.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) >= 5 and cols[0] == "v":
            names.append(cols[2])
    return names


def _parse_first_word(text: str) -> list[str]:
    # pacman -Qu / checkupdates: "name old -> new"
    return [line.split()[0] for line in text.splitlines() if line.strip() and "->" in line]


def _parse_apk(text: str) -> list[str]:
    # "musl-1.2.4-r1 < 1.2.4-r2"
    return [line.split()[0] for line in text.splitlines() if " < " in line]


def _parse_softwareupdate(text: str) -> list[str]:
    # "* Label: macOS Ventura 13.6.1-22G313"
    names = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("* Label:"):
            names.append(line[len("* Label:") :].strip())
        elif line.startswith("* ") and ":" not in line:
            names.append(line[2:].strip())
    return names


def _parse_windows(text: str) -> list[str]:
    return [line[len("UPDATE: ") :].strip() for line in text.splitlines() if line.startswith("UPDATE: ")]


PARSERS: dict[str, Callable[[str], list[str]]] = {
    "apt": _parse_apt,
    "apt-simulate": _parse_apt_simulate,
    "dnf": _parse_dnf,
    "zypper": _parse_zypper,
    "pacman": _parse_first_word,
    "apk": _parse_apk,
    "softwareupdate": _parse_softwareupdate,
    "windows": _parse_windows,
}
