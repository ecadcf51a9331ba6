"""Where a path may point: the allowed roots, and checking a path against them.

A path is absolute (it must lie under one of the roots) or relative (to the
first root). :func:`resolve` resolves the *parent directory* and requires it
to be inside a resolved root; the final component is not resolved (see
:mod:`agent.files`). :func:`follow` follows a final symbolic link only to a
place inside a root.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.context import CommandError, LocalPolicy

log = logging.getLogger(__name__)


NO_ROOTS = (
    "file access is turned off on this agent: no allowed roots are configured. "
    "An administrator of this machine sets them at install, in the agent's local "
    "configuration: \"allowed_roots\": [\"/srv/share\"] in the agent's policy.json, or ems agent --allow-root DIR; "
    "the server cannot change them"
)


class PathRefused(CommandError):
    """A path outside the allowed roots (or one that changed into such a path)."""


@dataclass(frozen=True)
class Target:
    """A checked path: ``name`` in the directory ``parent``, inside ``root``.

    All three paths are resolved (no symbolic links in them); ``name`` is
    the unresolved final component, or ``None`` for the root itself.
    """

    root: Path
    parent: Path
    name: str | None

    @property
    def path(self) -> Path:
        return self.root if self.name is None else self.parent / self.name


def allowed_roots(policy: LocalPolicy) -> list[tuple[Path, Path]]:
    """The configured roots as ``(as configured, resolved)``; refuses when there are none."""
    roots = []
    for root in policy.allowed_roots:
        root = Path(root)
        if not root.is_absolute():
            log.warning("ignoring the allowed root %s: roots must be absolute paths", root)
            continue
        roots.append((root, Path(os.path.realpath(root))))
    if not roots:
        raise CommandError(NO_ROOTS)
    return roots


def resolve(policy: LocalPolicy, raw: Any) -> Target:
    """Check ``raw`` against the allowed roots; the :class:`Target` it names.

    Raises :class:`PathRefused` for anything that is not inside a root.
    """
    if type(raw) is not str or not raw or "\0" in raw:
        raise CommandError("path must be a non-empty string")
    roots = allowed_roots(policy)
    given = Path(raw)
    if given.is_absolute():
        if not any(_under(given, conf) or _under(given, real) for conf, real in roots):
            raise PathRefused(f"{raw} is outside the allowed roots ({_list_roots(roots)})")
        full = given
    else:
        full = roots[0][1] / given
    name = full.name
    if name in ("", ".."):  # ".." or "/" as the last component: resolve it entirely
        full = Path(os.path.realpath(full))
        name = full.name
    parent = Path(os.path.realpath(full.parent))
    real_roots = [real for _conf, real in roots]
    if name and parent / name in real_roots:  # a root nested in another root: still a root
        return Target(parent / name, parent / name, None)
    inside = [real for real in real_roots if name and parent.is_relative_to(real)]
    if inside:
        return Target(max(inside, key=lambda r: len(r.parts)), parent, name)
    whole = Path(os.path.realpath(full))
    if whole in real_roots:
        return Target(whole, whole, None)
    raise PathRefused(f"{raw} leads outside the allowed roots (to {whole}); allowed: {_list_roots(roots)}")


def follow(policy: LocalPolicy, target: Target) -> Target:
    """``target``, or what it points to if it is a symbolic link to a place inside a root."""
    if target.name is None:
        return target
    try:
        is_link = stat.S_ISLNK(os.lstat(target.path).st_mode)
    except OSError:
        return target  # the operation itself reports a missing entry
    if not is_link:
        return target
    real = os.path.realpath(target.path)
    try:
        followed = resolve(policy, real)
    except PathRefused:
        raise PathRefused(f"{target.path} is a symbolic link to {real}, outside the allowed roots") from None
    if followed.name is not None and os.path.islink(followed.path):
        raise PathRefused(f"{target.path} changed while it was being checked")
    return followed


def _under(path: Path, root: Path) -> bool:
    return path.is_relative_to(root)


def _list_roots(roots: list[tuple[Path, Path]]) -> str:
    return ", ".join(str(conf) for conf, _real in roots)
