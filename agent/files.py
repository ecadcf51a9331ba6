"""File operations an operator may run on the agent's machine, inside the allowed roots only.

Commands (each handler's docstring is its help): ``files.roots``,
``files.list``, ``files.stat``, ``files.download``, ``files.upload``,
``files.move``, ``files.delete``. Every one of them is refused until the
agent's local configuration names at least one allowed root
(:attr:`LocalPolicy.allowed_roots`); the server cannot add roots.

Where a path may point
----------------------
A path is absolute (it must lie under one of the roots) or relative (to the
first root). :func:`resolve` resolves the *parent directory* with
``os.path.realpath`` and requires it to be inside a resolved root, so
``..`` escapes, absolute paths elsewhere and symbolic links (at any depth)
that lead out of a root are refused. The final component is not resolved:

* operations on the entry itself (``stat``, ``delete``, ``move``, the
  replacing of ``upload``) act on a symbolic link, never on what it points to;
* operations on the content (``list``, ``download``) follow a final
  symbolic link only if its target is inside a root (:func:`follow`).

A root that is itself a symbolic link is resolved on every command: its
target is the root, and paths are reported by their resolved form.

Time of check, time of use
--------------------------
A checked path can change before it is used (a local user swaps a directory
for a symbolic link to ``/etc``). Where the OS supports it (Linux, macOS,
the BSDs) every operation opens the resolved root and walks down to the
parent directory one component at a time with ``O_NOFOLLOW | O_DIRECTORY``,
then acts on the final name relative to that directory descriptor
(``openat``/``unlinkat``/``renameat``...), opening files with
``O_NOFOLLOW``: a component swapped for a link after the check makes the
operation fail with a refusal instead of following it. Without directory
descriptors (Windows) the operations use the checked paths; creating
symbolic links there needs a privilege ordinary users lack.

The record
----------
Every operation, refused ones included, is kept for the store as
``event.<agent>.fileop`` (``file_operations``) with the operator's id, and
written to the employee-readable access log.
"""
from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.context import AgentContext, CommandError, LocalPolicy
from agent.outbox import Priority
from broker.envelope import Kind

log = logging.getLogger(__name__)

#: Largest download chunk: a result must fit in the bus's 8 MiB body limit.
MAX_CHUNK_BYTES = 4 * 1024 * 1024
#: Entries per ``files.list`` page unless the caller asks for fewer.
LIST_PAGE_DEFAULT = 200
LIST_PAGE_MAX = 1000

NO_ROOTS = (
    "file access is turned off on this agent: no allowed roots are configured. "
    "An administrator of this machine sets them at install, in the agent's local "
    "configuration: \"allowed_roots\": [\"/srv/share\"] in the agent's policy.json, or ems agent --allow-root DIR; "
    "the server cannot change them"
)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
#: True where operations can be done relative to directory descriptors.
FD_RELATIVE = (
    os.open in os.supports_dir_fd
    and os.stat in os.supports_dir_fd
    and os.scandir in os.supports_fd
    and bool(_NOFOLLOW and _DIRECTORY)
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


@dataclass(frozen=True)
class _Loc:
    """Where to find an entry: ``name`` relative to ``dir_fd`` (or a full path when ``dir_fd`` is None)."""

    dir_fd: int | None
    name: str


# -- path checks -----------------------------------------------------------------


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


# -- safe opening ----------------------------------------------------------------


@contextmanager
def _parent_dir(target: Target) -> Iterator[int | None]:
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
def _entry(target: Target) -> Iterator[_Loc]:
    """The location of ``target``'s final name, relative to its safely opened parent."""
    if target.name is None:
        raise CommandError(f"{target.root} is an allowed root itself; that operation is not allowed on a root")
    with _parent_dir(target) as fd:
        yield _Loc(fd, target.name) if fd is not None else _Loc(None, str(target.path))


@contextmanager
def _directory(target: Target) -> Iterator[int | str]:
    """An open descriptor of the directory ``target`` names (a path without fd support)."""
    if not FD_RELATIVE:
        yield str(target.path)
        return
    if target.name is None:
        fd = _open_dir_at(target, str(target.root), None)
    else:
        with _parent_dir(target) as parent:
            fd = _open_dir_at(target, target.name, parent)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dir_at(target: Target, name: str, dir_fd: int | None) -> int:
    """Open the directory ``name`` without following a link (Linux says ENOTDIR for one)."""
    with _refusing_swaps(target):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except NotADirectoryError:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise OSError(errno.ELOOP, "a symbolic link where a directory was checked") from None
            raise


@contextmanager
def _refusing_swaps(target: Target) -> Iterator[None]:
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
def _os_errors(path: Path | str) -> Iterator[None]:
    """OSError -> CommandError with a short text the operator can act on."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, CommandError):
            raise
        text = _ERRNO_TEXT.get(exc.errno) or exc.strerror or str(exc)
        raise CommandError(f"{path}: {text}") from exc


# -- arguments -------------------------------------------------------------------


def _flag(args: dict, key: str) -> bool:
    value = args.get(key, False)
    if type(value) is not bool:
        raise CommandError(f"{key} must be true or false")
    return value


def _number(args: dict, key: str, default: int | None, minimum: int = 0) -> int | None:
    value = args.get(key, default)
    if value is None:
        return None
    if type(value) is not int or value < minimum:
        raise CommandError(f"{key} must be an integer >= {minimum}")
    return value


# -- the record ------------------------------------------------------------------


def _audited(op: str) -> Callable:
    """Keep a ``fileop`` record (and an access-log line) for every call, refused ones too."""

    def wrap(body: Callable[[dict, AgentContext, dict], dict]) -> Callable[[dict, AgentContext], dict]:
        @functools.wraps(body)
        def handler(args: dict, ctx: AgentContext) -> dict:
            raw = args.get("path") if isinstance(args, dict) else None
            record: dict[str, Any] = {"op": op, "path": raw if type(raw) is str and raw else repr(raw), "size": None}
            try:
                if not isinstance(args, dict):
                    raise CommandError("arguments must be a map")
                result = body(args, ctx, record)
            except Exception as exc:
                error = str(exc) if isinstance(exc, CommandError) else f"{type(exc).__name__}: {exc}"
                _keep_record(ctx, record, False, error)
                raise
            _keep_record(ctx, record, True, None)
            return result

        return handler

    return wrap


def _keep_record(ctx: AgentContext, record: dict, ok: bool, error: str | None) -> None:
    data = {**record, "ok": ok, "error": error, "operator": ctx.operator, "command": ctx.command_id}
    try:
        ctx.report(Kind.EVENT, "fileop", data, priority=Priority.IMPORTANT)
    except Exception as exc:  # noqa: BLE001 - the operation's outcome still goes back to the operator
        log.error("could not keep the record of file %s %s: %s", record["op"], record["path"], exc)
    detail = f"by {ctx.operator_label}: {record['path']}" + ("" if ok else f" (refused: {error})")
    try:
        ctx.access_log(f"file {record['op']}", detail)
    except Exception as exc:  # noqa: BLE001 - as above
        log.error("could not write the access log: %s", exc)


# -- handlers --------------------------------------------------------------------


def roots(args: dict, ctx: AgentContext) -> dict:
    """List the allowed roots (as configured, and where they resolve to)."""
    return {
        "roots": [
            {"path": str(conf), "resolved": str(real), "exists": real.is_dir()}
            for conf, real in allowed_roots(ctx.policy)
        ]
    }


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def _describe(name: str, st: os.stat_result) -> dict:
    return {"name": name, "type": _kind(st.st_mode), "size": st.st_size, "mtime": st.st_mtime}


@_audited("list")
def list_dir(args: dict, ctx: AgentContext, record: dict) -> dict:
    """List a directory: ``path``, ``offset`` (0), ``limit`` (200, at most 1000).

    Entries are sorted by name and carry name, type (file, dir, link,
    other), size and mtime; links also carry their target. ``next_offset``
    is the offset of the next page, or None after the last one.
    """
    target = follow(ctx.policy, resolve(ctx.policy, args.get("path")))
    record["path"] = str(target.path)
    offset = _number(args, "offset", 0)
    limit = min(_number(args, "limit", LIST_PAGE_DEFAULT, minimum=1), LIST_PAGE_MAX)
    with _os_errors(target.path), _directory(target) as where:
        with os.scandir(where) as it:
            entries = sorted(it, key=lambda e: e.name)
        page = []
        for entry in entries[offset : offset + limit]:
            try:
                item = _describe(entry.name, entry.stat(follow_symlinks=False))
                if item["type"] == "link":
                    item["target"] = os.readlink(entry.name, dir_fd=where) if FD_RELATIVE else os.readlink(entry.path)
            except OSError as exc:  # removed while listing, or unreadable: still listed
                item = {"name": entry.name, "type": "unknown", "size": None, "mtime": None, "error": exc.strerror}
            page.append(item)
    record["count"] = len(page)
    end = offset + len(page)
    return {
        "path": str(target.path),
        "entries": page,
        "total": len(entries),
        "offset": offset,
        "next_offset": end if end < len(entries) else None,
    }


@_audited("stat")
def stat_path(args: dict, ctx: AgentContext, record: dict) -> dict:
    """Describe one entry (``path``) without following a final symbolic link.

    Returns name, type, size, mtime and mode; a link also gives its target
    and whether that target is inside the allowed roots.
    """
    target = resolve(ctx.policy, args.get("path"))
    record["path"] = str(target.path)
    with _os_errors(target.path):
        if target.name is None:
            with _directory(target) as where:
                st = os.stat(where)
        else:
            with _entry(target) as loc:
                st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
                link = os.readlink(loc.name, dir_fd=loc.dir_fd) if stat.S_ISLNK(st.st_mode) else None
    result = {"path": str(target.path), **_describe(target.path.name, st), "mode": oct(stat.S_IMODE(st.st_mode))}
    if target.name is not None and link is not None:
        result["target"] = link
        try:
            follow(ctx.policy, target)
            result["target_inside_roots"] = True
        except PathRefused:
            result["target_inside_roots"] = False
    record["size"] = st.st_size
    return result


@_audited("download")
def download(args: dict, ctx: AgentContext, record: dict) -> dict:
    """Read a file: ``path``, ``offset`` (0), ``length`` (to the end, at most 4 MiB per call).

    Files larger than the agent's ``max_file_bytes`` are refused. Returns
    ``data`` (bytes), ``size`` (the whole file), ``offset``, ``length``,
    ``eof``, ``next_offset`` (None at the end) and ``mtime``: fetch a big
    file by calling again with ``offset=next_offset`` while ``mtime`` stays
    the same.
    """
    target = follow(ctx.policy, resolve(ctx.policy, args.get("path")))
    record["path"] = str(target.path)
    offset = _number(args, "offset", 0)
    length = _number(args, "length", None)
    record["offset"] = offset
    data, st = read_chunk(target, offset, length, ctx.policy.max_file_bytes)
    size = st.st_size
    end = offset + len(data)
    record["size"] = len(data)
    return {
        "path": str(target.path),
        "data": data,
        "size": size,
        "offset": offset,
        "length": len(data),
        "eof": end >= size,
        "next_offset": None if end >= size else end,
        "mtime": st.st_mtime,
    }


def read_chunk(target: Target, offset: int, length: int | None, limit: int) -> tuple[bytes, os.stat_result]:
    """Up to ``length`` bytes (at most :data:`MAX_CHUNK_BYTES`) of the regular file ``target`` from ``offset``.

    The file is opened without following a final symbolic link; files over
    ``limit`` bytes are refused. Returns the data and the file's stat.
    """
    with _os_errors(target.path), _entry(target) as loc:
        with _refusing_swaps(target):
            fd = os.open(loc.name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY, dir_fd=loc.dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CommandError(f"{target.path} is not a regular file ({_kind(st.st_mode)})")
            if st.st_size > limit:
                raise CommandError(f"{target.path} is {st.st_size} bytes; this agent allows downloads up to {limit} bytes")
            if offset > st.st_size:
                raise CommandError(f"offset {offset} is past the end of {target.path} ({st.st_size} bytes)")
            want = min(st.st_size - offset, MAX_CHUNK_BYTES if length is None else min(length, MAX_CHUNK_BYTES))
            return _read_at(fd, offset, want), st
        finally:
            os.close(fd)


def _read_at(fd: int, offset: int, length: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)
    chunks, left = [], length
    while left > 0:
        chunk = os.read(fd, min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _part_name(name: str) -> str:
    """The hidden file an upload is written to before it takes its name."""
    return f".ems-upload-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}.part"


@_audited("upload")
def upload(args: dict, ctx: AgentContext, record: dict) -> dict:
    """Write a file: ``path``, ``data`` (bytes), ``overwrite`` (false).

    An existing file is replaced only with ``overwrite: true`` (never a
    directory). The file appears whole or not at all: data goes to a hidden
    part file in the same directory, which then takes the name atomically.
    Big files come in chunks: pass ``total_size`` and each chunk's
    ``offset`` (0, then the previous offset + length, in order); the file
    takes its name with the last chunk. Sizes above the agent's
    ``max_file_bytes`` are refused.
    """
    target = resolve(ctx.policy, args.get("path"))
    record["path"] = str(target.path)
    data = args.get("data")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CommandError("data must be bytes")
    data = bytes(data)
    overwrite = _flag(args, "overwrite")
    offset = _number(args, "offset", 0)
    total = _number(args, "total_size", None)
    if total is None:
        if offset:
            raise CommandError("a chunked upload needs total_size")
        total = len(data)
    limit = ctx.policy.max_file_bytes
    if total > limit:
        raise CommandError(f"{total} bytes is over this agent's upload limit of {limit} bytes")
    end = offset + len(data)
    if end > total:
        raise CommandError(f"chunk ends at {end}, past total_size {total}")
    record.update(size=len(data), offset=offset, total_size=total)
    part = _part_name(target.name or "")
    with _os_errors(target.path), _entry(target) as loc:
        part_loc = _Loc(loc.dir_fd, part if loc.dir_fd is not None else str(target.parent / part))
        existing = _lstat(loc)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise CommandError(f"{target.path} is a directory")
        if existing is not None and not overwrite:
            if offset:
                _unlink_quietly(part_loc)  # this upload cannot finish
            raise CommandError(f"{target.path} already exists; pass overwrite: true to replace it")
        fd = _open_part(target, part_loc, offset)
        try:
            try:
                _write_all(fd, data)
                if end < total:
                    return {"path": str(target.path), "complete": False, "received": end, "total_size": total}
                os.fsync(fd)
                _set_owner_and_mode(fd, existing, loc)
            finally:
                os.close(fd)
            _place(part_loc, loc, overwrite, target.path)
        except BaseException:
            _unlink_quietly(part_loc)
            raise
        _sync_dir(loc.dir_fd)
    return {"path": str(target.path), "complete": True, "size": total, "replaced": existing is not None}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _lstat(loc: _Loc) -> os.stat_result | None:
    try:
        return os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_part(target: Target, part: _Loc, offset: int) -> int:
    flags = os.O_WRONLY | _NOFOLLOW | _CLOEXEC | _BINARY
    with _refusing_swaps(target):
        if offset == 0:  # a fresh start: never reuse whatever has the part name
            _unlink_quietly(part)
            return os.open(part.name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=part.dir_fd)
        try:
            fd = os.open(part.name, flags | os.O_APPEND, dir_fd=part.dir_fd)
        except FileNotFoundError:
            raise CommandError(f"no upload of {target.path} in progress; start again at offset 0") from None
    have = os.fstat(fd).st_size
    if have != offset:
        os.close(fd)
        raise CommandError(f"chunk out of order for {target.path}: the agent has {have} bytes, the chunk starts at {offset}")
    return fd


def _set_owner_and_mode(fd: int, existing: os.stat_result | None, loc: _Loc) -> None:
    """A replaced file keeps its mode (and owner); a new one gets 0644 and the directory's owner."""
    if not hasattr(os, "fchmod"):
        return
    if existing is not None and stat.S_ISREG(existing.st_mode):
        mode, owner = stat.S_IMODE(existing.st_mode) & 0o777, (existing.st_uid, existing.st_gid)
    else:
        parent = os.fstat(loc.dir_fd) if loc.dir_fd is not None else os.stat(os.path.dirname(loc.name))
        mode, owner = 0o644, (parent.st_uid, parent.st_gid)
    os.fchmod(fd, mode)
    if os.geteuid() == 0:
        try:
            os.fchown(fd, *owner)
        except OSError as exc:
            log.warning("could not give the uploaded file its owner: %s", exc)


def _place(src: _Loc, dst: _Loc, overwrite: bool, shown: Path) -> None:
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
        raise CommandError(f"{shown} already exists; pass overwrite: true to replace it") from None
    except (OSError, NotImplementedError):  # directories, FAT, some network filesystems
        if _lstat(dst) is not None:
            raise CommandError(f"{shown} already exists; pass overwrite: true to replace it") from None
        os.rename(src.name, dst.name, src_dir_fd=src.dir_fd, dst_dir_fd=dst.dir_fd)
    else:
        os.unlink(src.name, dir_fd=src.dir_fd)


def _unlink_quietly(loc: _Loc) -> None:
    try:
        os.unlink(loc.name, dir_fd=loc.dir_fd)
    except FileNotFoundError:
        pass


def _sync_dir(dir_fd: int | None) -> None:
    if dir_fd is not None:
        try:
            os.fsync(dir_fd)
        except OSError:  # some filesystems refuse fsync on directories
            pass


@_audited("move")
def move(args: dict, ctx: AgentContext, record: dict) -> dict:
    """Move or rename ``path`` to ``dest`` (a full new path); ``overwrite`` (false).

    Both must be inside the allowed roots; a symbolic link is moved as a
    link. Roots themselves cannot be moved or replaced.
    """
    src = resolve(ctx.policy, args.get("path"))
    record["path"] = str(src.path)
    dest_raw = args.get("dest")
    record["src"], record["dest"] = str(src.path), dest_raw if type(dest_raw) is str else repr(dest_raw)
    record["path"] = f"{src.path} -> {record['dest']}"
    dst = resolve(ctx.policy, dest_raw)
    record.update(path=f"{src.path} -> {dst.path}", dest=str(dst.path))
    overwrite = _flag(args, "overwrite")
    with _os_errors(src.path), _entry(src) as src_loc, _entry(dst) as dst_loc:
        st = os.stat(src_loc.name, dir_fd=src_loc.dir_fd, follow_symlinks=False)
        record["size"] = st.st_size
        existing = _lstat(dst_loc)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise CommandError(f"{dst.path} is an existing directory; give the full new path (e.g. {dst.path / src.path.name})")
        _place(src_loc, dst_loc, overwrite, dst.path)
        _sync_dir(dst_loc.dir_fd)
    return {"path": str(src.path), "dest": str(dst.path), "type": _kind(st.st_mode)}


@_audited("delete")
def delete(args: dict, ctx: AgentContext, record: dict) -> dict:
    """Delete ``path``: a file or link; a directory only if empty unless ``recursive: true``.

    A symbolic link is deleted itself, never what it points to; a recursive
    delete does not follow links either. Roots themselves cannot be deleted.
    """
    target = resolve(ctx.policy, args.get("path"))
    record["path"] = str(target.path)
    recursive = _flag(args, "recursive")
    with _os_errors(target.path), _entry(target) as loc:
        st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
        kind = _kind(st.st_mode)
        if kind == "dir":
            record["recursive"] = recursive
            if recursive:
                shutil.rmtree(loc.name, dir_fd=loc.dir_fd)
            else:
                os.rmdir(loc.name, dir_fd=loc.dir_fd)
        else:
            record["size"] = st.st_size
            os.unlink(loc.name, dir_fd=loc.dir_fd)
    return {"path": str(target.path), "deleted": kind}


HANDLERS: dict[str, Callable[[dict, AgentContext], dict]] = {
    "files.roots": roots,
    "files.list": list_dir,
    "files.stat": stat_path,
    "files.download": download,
    "files.upload": upload,
    "files.move": move,
    "files.delete": delete,
}
