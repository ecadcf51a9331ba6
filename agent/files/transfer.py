"""Moving content across the bus: ``files.download`` (in chunks) and ``files.upload`` (whole or in order)."""
from __future__ import annotations

import hashlib
import logging
import os
import stat

from agent.context import AgentContext, CommandError
from agent.files.descriptors import (
    already_exists,
    BINARY,
    CLOEXEC,
    NOFOLLOW,
    NONBLOCK,
    Loc,
    entry,
    kind_of,
    lstat_entry,
    os_errors,
    place,
    refusing_swaps,
    sync_dir,
    unlink_quietly,
)
from agent.files.paths import Target, follow, resolve
from agent.files.record import audited, flag, number

log = logging.getLogger(__name__)


#: Largest download chunk: a result must fit in the bus's 8 MiB body limit.
MAX_CHUNK_BYTES = 4 * 1024 * 1024


@audited("download")
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
    offset = number(args, "offset", 0)
    length = number(args, "length", None)
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
    with os_errors(target.path), entry(target) as loc:
        with refusing_swaps(target):
            fd = os.open(loc.name, os.O_RDONLY | NOFOLLOW | NONBLOCK | CLOEXEC | BINARY, dir_fd=loc.dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CommandError(f"{target.path} is not a regular file ({kind_of(st.st_mode)})")
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


@audited("upload")
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
    overwrite = flag(args, "overwrite")
    offset = number(args, "offset", 0)
    total = number(args, "total_size", None)
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
    with os_errors(target.path), entry(target) as loc:
        part_loc = Loc(loc.dir_fd, part if loc.dir_fd is not None else str(target.parent / part))
        existing = lstat_entry(loc)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise CommandError(f"{target.path} is a directory")
        if existing is not None and not overwrite:
            if offset:
                unlink_quietly(part_loc)  # this upload cannot finish
            raise CommandError(already_exists(target.path))
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
            place(part_loc, loc, overwrite, target.path)
        except BaseException:
            unlink_quietly(part_loc)
            raise
        sync_dir(loc.dir_fd)
    return {"path": str(target.path), "complete": True, "size": total, "replaced": existing is not None}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_part(target: Target, part: Loc, offset: int) -> int:
    flags = os.O_WRONLY | NOFOLLOW | CLOEXEC | BINARY
    with refusing_swaps(target):
        if offset == 0:  # a fresh start: never reuse whatever has the part name
            unlink_quietly(part)
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


def _set_owner_and_mode(fd: int, existing: os.stat_result | None, loc: Loc) -> None:
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
