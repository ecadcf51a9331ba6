"""Changing the tree: ``files.move`` and ``files.delete`` (links are acted on, never followed)."""
from __future__ import annotations

import os
import shutil
import stat

from agent.context import AgentContext, CommandError
from agent.files.descriptors import entry, kind_of, lstat_entry, os_errors, place, sync_dir
from agent.files.paths import resolve
from agent.files.record import audited, flag


@audited("move")
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
    overwrite = flag(args, "overwrite")
    with os_errors(src.path), entry(src) as src_loc, entry(dst) as dst_loc:
        st = os.stat(src_loc.name, dir_fd=src_loc.dir_fd, follow_symlinks=False)
        record["size"] = st.st_size
        existing = lstat_entry(dst_loc)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise CommandError(f"{dst.path} is an existing directory; give the full new path (e.g. {dst.path / src.path.name})")
        place(src_loc, dst_loc, overwrite, dst.path)
        sync_dir(dst_loc.dir_fd)
    return {"path": str(src.path), "dest": str(dst.path), "type": kind_of(st.st_mode)}


@audited("delete")
def delete(args: dict, ctx: AgentContext, record: dict) -> dict:
    """Delete ``path``: a file or link; a directory only if empty unless ``recursive: true``.

    A symbolic link is deleted itself, never what it points to; a recursive
    delete does not follow links either. Roots themselves cannot be deleted.
    """
    target = resolve(ctx.policy, args.get("path"))
    record["path"] = str(target.path)
    recursive = flag(args, "recursive")
    with os_errors(target.path), entry(target) as loc:
        st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
        kind = kind_of(st.st_mode)
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
