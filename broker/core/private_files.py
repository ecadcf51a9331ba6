"""Files at rest are private: directories 0700, files 0600, in every process.

What a data dir holds (keys, databases with their ``-wal`` and ``-shm``
files, logs, the operator profile, the agent's outbox) is for the account
that runs EMS and nobody else. Three layers keep it so:

* :func:`restrict_umask` (umask 077) at the start of every entry point, so
  whatever a process creates, by whichever library, is private from birth;
* :func:`private_dir` and :func:`private_db` create directories 0700 and
  database files 0600 explicitly (SQLite gives ``-wal`` and ``-shm`` the
  database file's own mode, whatever the umask says);
* :func:`secure_tree` on start takes group and other permissions away from
  whatever an older EMS left readable, and says so in one log line.

The one exception is the employee's access log (:data:`GROUP_READABLE`):
mode 0640 in an agent data dir of mode 0710. The agent often runs as root
or a service account while the employee is another user, and the access
log exists so that the employee can read it. The group decides who: by
default the agent's own group (so it is as private as the rest); an
installer that gives the agent's data dir the employee's group
(``chgrp GROUP DIR``) lets that group read the access log and nothing else
(every other file stays 0600; 0710 lets the group reach a file by name but
not list the directory). Nobody else can read it.
"""
from __future__ import annotations

import fnmatch
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
#: files the group of their directory may read, by name, and their mode
GROUP_READABLE = {"access.log": 0o640}
#: the mode of a directory that holds a :data:`GROUP_READABLE` file
SHARED_DIR_MODE = 0o710
#: SQLite's companions of a database file, all with the database's content
DB_COMPANIONS = ("", "-wal", "-shm", "-journal")
#: what EMS makes in a data dir: these directories (``agent`` is a nested data dir) ...
EMS_DIRS = frozenset({"keys", "logs", "agent"})
#: ... and files named like these (databases, profile, policy, endpoints, keys, logs, temporary files)
EMS_FILES = ("*.db", "*.db-wal", "*.db-shm", "*.db-journal", "*.json", "*.endpoint", "*.public", "*.secret",
             "*.log", "*.out", "*.tmp")


def restrict_umask() -> int:
    """Make everything this process creates private (umask 077); the previous umask."""
    return os.umask(PRIVATE_UMASK)


def allowed_mode(path: Path, is_dir: bool) -> int:
    """The most a file or directory of a data dir may allow (see the module docstring)."""
    if not is_dir:
        return GROUP_READABLE.get(path.name, FILE_MODE)
    if any((path / name).exists() for name in GROUP_READABLE):
        return SHARED_DIR_MODE
    return DIR_MODE


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700; an existing one is tightened."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, allowed_mode(path, True))
    return path


def private_db(path: Path) -> list[str]:
    """Make a database file and its ``-wal``/``-shm`` 0600 before SQLite opens it.

    A missing database file is created empty with mode 0600, so that the
    companions SQLite creates later copy that mode. Returns the names it
    had to tighten (logged as a warning).
    """
    path = Path(path)
    changed = []
    if not path.exists() and path.parent.is_dir():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            pass  # another process made it a moment ago: tightened below
    for suffix in DB_COMPANIONS:
        companion = path.with_name(path.name + suffix)
        if _tighten(companion, FILE_MODE):
            changed.append(companion.name)
    if changed:
        log.warning("made %s private (0600): other users could read them", ", ".join(changed))
    return changed


def secure_tree(root: Path) -> list[Path]:
    """Take group/other permissions beyond :func:`allowed_mode` from what EMS keeps in ``root``.

    Only what EMS makes is touched (:func:`is_ems_entry`: keys/, logs/, a
    nested agent/ data dir, databases, JSON, logs, endpoint and key files);
    ``root`` itself is closed to 0700 only if it holds nothing else, so a
    data dir pointed at a shared directory by mistake (``./var`` run from
    ``/``) never closes that directory. Symbolic links are never followed;
    files of other owners are left alone unless this process runs as root.
    Logs one warning naming what changed; returns the changed paths.
    """
    root = Path(root)
    if not root.is_dir() or root.is_symlink():
        return []
    changed: list[Path] = []
    _secure_dir(root, changed)
    if changed:
        shown = ", ".join(str(p.relative_to(root)) or "." for p in changed[:8])
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        log.warning("tightened permissions of %d paths in %s that other users could read (left by an older EMS "
                    "or made by hand): %s%s; directories are now 0700 and files 0600", len(changed), root, shown, more)
    return changed


def is_ems_entry(name: str, is_dir: bool) -> bool:
    """True for a name EMS makes in a data dir (the directories and file patterns above)."""
    if is_dir:
        return name in EMS_DIRS
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in EMS_FILES)


def _secure_dir(path: Path, changed: list[Path]) -> None:
    """Tighten the EMS entries of one data dir (recursing into agent/), then the dir if it is all EMS's."""
    try:
        entries = list(os.scandir(path))
    except OSError as exc:
        _walk_error(exc, path)
        return
    foreign = []
    for entry in entries:
        is_dir = entry.is_dir(follow_symlinks=False)
        if entry.is_symlink() or not is_ems_entry(entry.name, is_dir):
            foreign.append(entry.name)
        elif entry.name == "agent":
            _secure_dir(Path(entry.path), changed)
        elif is_dir:
            _secure_all(Path(entry.path), changed)
        elif _tighten(Path(entry.path), allowed_mode(Path(entry.path), False)):
            changed.append(Path(entry.path))
    if foreign:
        log.info("%s also holds what EMS did not make (%s): left those and the directory's own mode alone",
                 path, ", ".join(sorted(foreign)[:5]))
    elif _tighten(path, allowed_mode(path, True)):
        changed.append(path)


def _secure_all(path: Path, changed: list[Path]) -> None:
    """Tighten a directory EMS owns outright (keys/, logs/) and everything in it."""
    if _tighten(path, allowed_mode(path, True)):
        changed.append(path)
    for dirpath, dirnames, filenames in os.walk(path, onerror=_walk_error):
        base = Path(dirpath)
        for name in dirnames:
            if _tighten(base / name, allowed_mode(base / name, True)):
                changed.append(base / name)
        for name in filenames:
            if _tighten(base / name, allowed_mode(base / name, False)):
                changed.append(base / name)


def share_with_dir_group(path: Path) -> None:
    """Give a :data:`GROUP_READABLE` file its mode and its directory's group, and let
    that group reach it (directory 0710). Best effort: a failure is logged."""
    path = Path(path)
    mode = GROUP_READABLE[path.name]
    try:
        parent = path.parent.stat()
        st = path.stat()
        if st.st_gid != parent.st_gid and _owned(st):
            os.chown(path, -1, parent.st_gid)
        if stat.S_IMODE(st.st_mode) != mode and _owned(st):
            os.chmod(path, mode)
        if stat.S_IMODE(parent.st_mode) != SHARED_DIR_MODE and _owned(parent):
            os.chmod(path.parent, SHARED_DIR_MODE)
    except OSError as exc:
        log.warning("could not make %s readable by its directory's group: %s", path, exc)


def _tighten(path: Path, allowed: int) -> bool:
    """Remove from ``path``'s mode every bit ``allowed`` lacks; True if it changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode) or not _owned(st):
        return False
    mode = stat.S_IMODE(st.st_mode)
    wanted = mode & (allowed | 0o700)
    if wanted == mode:
        return False
    try:
        os.chmod(path, wanted)
    except OSError as exc:
        log.warning("could not make %s private (mode %04o): %s", path, mode, exc)
        return False
    return True


def _owned(st: os.stat_result) -> bool:
    return os.geteuid() == 0 or st.st_uid == os.geteuid()


def _walk_error(exc: OSError, path: Path | None = None) -> None:
    log.warning("could not look into %s to make it private: %s", path or exc.filename, exc)
