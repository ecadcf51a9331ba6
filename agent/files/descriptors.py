"""Acting on a checked path without following a link swapped in after the check.

Where the OS supports it (:data:`FD_RELATIVE`), the root is opened and the
parent directory reached one component at a time with ``O_NOFOLLOW |
O_DIRECTORY``; the final name is then used relative to that descriptor.
Also here: the entry-level operations several commands share (``lstat``,
an atomic no-replace rename, quiet unlink, directory fsync) and the
OSError -> :class:`CommandError` texts.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.context import CommandError
from agent.files.paths import PathRefused, Target


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
BINARY = getattr(os, "O_BINARY", 0)
DIR_FLAGS = os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC
#: True where operations can be done relative to directory descriptors.
FD_RELATIVE = (
    os.open in os.supports_dir_fd
    and os.stat in os.supports_dir_fd
    and os.scandir in os.supports_fd
    and bool(NOFOLLOW and DIRECTORY)
)


@dataclass(frozen=True)
class Loc:
    """Where to find an entry: ``name`` relative to ``dir_fd`` (or a full path when ``dir_fd`` is None)."""

    dir_fd: int | None
    name: str


def already_exists(shown: object) -> str:
    """The refusal when a file operation would replace something without ``overwrite``."""
    return f"{shown} already exists; pass overwrite: true to replace it"


@contextmanager
def parent_dir(target: Target) -> Iterator[int | None]:
    """A descriptor of ``target.parent`` reached from the root without following links.

    Yields None where directory descriptors are not supported.
    """
    if not FD_RELATIVE:
        yield None
        return
    fd = _open_dir_at(target, str(target.root), None)
    try:
        for part in target.parent.relative_to(target.root).parts:
            child = _open_dir_at(target, part, fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


@contextmanager
def entry(target: Target) -> Iterator[Loc]:
    """The location of ``target``'s final name, relative to its safely opened parent."""
    if target.name is None:
        raise CommandError(f"{target.root} is an allowed root itself; that operation is not allowed on a root")
    with parent_dir(target) as fd:
        yield Loc(fd, target.name) if fd is not None else Loc(None, str(target.path))


@contextmanager
def directory(target: Target) -> Iterator[int | str]:
    """An open descriptor of the directory ``target`` names (a path without fd support)."""
    if not FD_RELATIVE:
        yield str(target.path)
        return
    if target.name is None:
        fd = _open_dir_at(target, str(target.root), None)
    else:
        with parent_dir(target) as parent:
            fd = _open_dir_at(target, target.name, parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir_at(target: Target, name: str, dir_fd: int | None) -> int:
    """Open the directory ``name`` without following a link (Linux says ENOTDIR for one)."""
    with refusing_swaps(target):
        try:
            return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except NotADirectoryError:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise OSError(errno.ELOOP, "a symbolic link where a directory was checked") from None
            raise


@contextmanager
def refusing_swaps(target: Target) -> Iterator[None]:
    """A symbolic link met where a checked directory or file was: refuse."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: FreeBSD's O_NOFOLLOW
            raise PathRefused(
                f"{target.path}: a symbolic link is in the way (it was not there when the path was "
                "checked, or the operation does not follow links); refused"
            ) from exc
        raise


_ERRNO_TEXT = {
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "already exists (pass overwrite: true to replace it)",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory (or a component of the path is not one)",
    errno.ENOTEMPTY: "the directory is not empty (pass recursive: true to delete it with everything in it)",
    errno.EXDEV: "source and destination are on different filesystems; download and upload instead",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the filesystem is read-only",
    errno.EBUSY: "the file or directory is in use",
    errno.EINVAL: "invalid operation (moving a directory into itself?)",
    errno.ENAMETOOLONG: "the name is too long",
}


@contextmanager
def os_errors(path: Path | str) -> Iterator[None]:
    """OSError -> CommandError with a short text the operator can act on."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, CommandError):
            raise
        text = _ERRNO_TEXT.get(exc.errno) or exc.strerror or str(exc)
        raise CommandError(f"{path}: {text}") from exc


def kind_of(mode: int) -> str:
    """``file``, ``dir``, ``link`` or ``other`` for a stat mode."""
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def lstat_entry(loc: Loc) -> os.stat_result | None:
    """The entry's own stat (a link is not followed), or None if it does not exist."""
    try:
        return os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def place(src: Loc, dst: Loc, overwrite: bool, shown: Path) -> None:
    """Rename ``src`` to ``dst``; without ``overwrite`` never replace an existing entry.

    No-replace uses a hard link (atomic: fails if the name exists) where
    the filesystem allows it, else a check right before the rename.
    """
    if overwrite:
        os.replace(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)
        return
    try:
        os.link(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise CommandError(already_exists(shown)) from None
    except (OSError, NotImplementedError):  # directories, FAT, some network filesystems
        if lstat_entry(dst) is not None:
            raise CommandError(already_exists(shown)) from None
        os.rename(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)
    else:
        os.unlink(src.name, dir_fd=src.dir_fd)


def unlink_quietly(loc: Loc) -> None:
    """Remove the entry; one already gone is fine."""
    try:
        os.unlink(loc.name, dir_fd=loc.dir_fd)
    except FileNotFoundError:
        pass


def sync_dir(dir_fd: int | None) -> None:
    """Make a rename or creation in the directory durable, where the filesystem allows it."""
    if dir_fd is not None:
        try:
            os.fsync(dir_fd)
        except OSError:  # some filesystems refuse fsync on directories
            pass
