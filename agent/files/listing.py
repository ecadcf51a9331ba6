"""Looking without changing: ``files.roots``, ``files.list``, ``files.stat``."""
from __future__ import annotations

import os
import stat

from agent.context import AgentContext
from agent.files.descriptors import directory, entry, kind_of, os_errors
from agent.files.paths import PathRefused, allowed_roots, follow, resolve
from agent.files.record import audited, number


#: Entries per ``files.list`` page unless the caller asks for fewer.
LIST_PAGE_DEFAULT = 200
LIST_PAGE_MAX = 1000


def roots(args: dict, ctx: AgentContext) -> dict:
    """List the allowed roots (as configured, and where they resolve to)."""
    return {
        "roots": [
            {"path": str(conf), "resolved": str(real), "exists": real.is_dir()}
            for conf, real in allowed_roots(ctx.policy)
        ]
    }


def describe(name: str, st: os.stat_result) -> dict:
    """What a listing says of one entry: name, type, size, mtime."""
    return {"name": name, "type": kind_of(st.st_mode), "size": st.st_size, "mtime": st.st_mtime}


@audited("list")
def list_dir(args: dict, ctx: AgentContext, record: dict) -> dict:
    """List a directory: ``path``, ``offset`` (0), ``limit`` (200, at most 1000).

    Entries are sorted by name and carry name, type (file, dir, link,
    other), size and mtime; links also carry their target. ``next_offset``
    is the offset of the next page, or None after the last one.
    """
    target = follow(ctx.policy, resolve(ctx.policy, args.get("path")))
    record["path"] = str(target.path)
    offset = number(args, "offset", 0)
    limit = min(number(args, "limit", LIST_PAGE_DEFAULT, minimum=1), LIST_PAGE_MAX)
    with os_errors(target.path), directory(target) as where:
        with os.scandir(where) as it:
            entries = sorted(it, key=lambda e: e.name)
        page = []
        for found in entries[offset : offset + limit]:
            try:
                item = describe(found.name, found.stat(follow_symlinks=False))
                if item["type"] == "link":
                    item["target"] = os.readlink(found.name, dir_fd=where) if isinstance(where, int) else os.readlink(found.path)
            except OSError as exc:  # removed while listing, or unreadable: still listed
                item = {"name": found.name, "type": "unknown", "size": None, "mtime": None, "error": exc.strerror}
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


@audited("stat")
def stat_path(args: dict, ctx: AgentContext, record: dict) -> dict:
    """Describe one entry (``path``) without following a final symbolic link.

    Returns name, type, size, mtime and mode; a link also gives its target
    and whether that target is inside the allowed roots.
    """
    target = resolve(ctx.policy, args.get("path"))
    record["path"] = str(target.path)
    with os_errors(target.path):
        if target.name is None:
            with directory(target) as where:
                st = os.stat(where)
        else:
            with entry(target) as loc:
                st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
                link = os.readlink(loc.name, dir_fd=loc.dir_fd) if stat.S_ISLNK(st.st_mode) else None
    result = {"path": str(target.path), **describe(target.path.name, st), "mode": oct(stat.S_IMODE(st.st_mode))}
    if target.name is not None and link is not None:
        result["target"] = link
        try:
            follow(ctx.policy, target)
            result["target_inside_roots"] = True
        except PathRefused:
            result["target_inside_roots"] = False
    record["size"] = st.st_size
    return result
