"""The files capability: the table of ``files.*`` commands the runner owns.

Every command is a function of ``(args, ctx)`` with no state of its own (the
allowed roots and size limits come from ``ctx.policy`` on each call), so
:class:`Files` has no periodic work and nothing to close.

=================  ==========================================
``files.roots``    :func:`agent.files.listing.roots`
``files.list``     :func:`agent.files.listing.list_dir`
``files.stat``     :func:`agent.files.listing.stat_path`
``files.download`` :func:`agent.files.transfer.download`
``files.upload``   :func:`agent.files.transfer.upload`
``files.move``     :func:`agent.files.changes.move`
``files.delete``   :func:`agent.files.changes.delete`
=================  ==========================================
"""
from __future__ import annotations

from agent.capability import Capability, Handler
from agent.files import changes, listing, transfer


class Files(Capability):
    """File operations inside the allowed roots (``files.*``)."""

    name = "files"

    def handlers(self) -> dict[str, Handler]:
        return {
            "files.roots": listing.roots,
            "files.list": listing.list_dir,
            "files.stat": listing.stat_path,
            "files.download": transfer.download,
            "files.upload": transfer.upload,
            "files.move": changes.move,
            "files.delete": changes.delete,
        }
