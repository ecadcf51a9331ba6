"""``command.get`` and ``command.list``: commands as the asker may see them."""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import bounds, permissions
from broker.server.command_queue import Command

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker


def get(broker: "Broker", peer: "Peer", args: dict) -> dict:
    """``command.get``: one command by ``id``; its args and result only for its
    sender or an admin (anyone else gets the rest, with ``redacted`` naming
    what is left out)."""
    cmd_id = bounds.text(args.get("id"), "id", 200, empty=False)
    cmd = broker.commands.get(cmd_id)
    if cmd is None:
        held = broker.approvals.view(cmd_id)  # held for approval, or ended unrun (denied, expired)
        if held is None:
            raise ValueError(f"no command {cmd_id!r}")
        return held if permissions.sees_whole_command(peer.role, peer.client_id, held["sender"]) else \
            {k: v for k, v in held.items() if k != "result"}
    return visible(peer, cmd)


def list_(broker: "Broker", peer: "Peer", args: dict) -> list[dict]:
    """``command.list``: the newest commands (``limit`` ≤ 1000, default 50),
    optionally of one ``target`` and only ``names``; redacted as ``command.get``."""
    limit = bounds.limit(args.get("limit"), "limit", 50, 1, 1000)
    target = bounds.optional_text(args.get("target"), "target")
    names = [] if args.get("names") is None else bounds.text_list(args["names"], "names", 16, 64)
    return [visible(peer, c) for c in broker.commands.recent(target, limit, tuple(names))]


def visible(peer: "Peer", cmd: Command) -> dict:
    """``cmd`` as ``peer`` may see it: whole for its sender, an admin or a
    service; without ``permissions.COMMAND_PRIVATE_FIELDS`` for anyone else."""
    record = cmd.as_dict()
    if permissions.sees_whole_command(peer.role, peer.client_id, cmd.sender):
        return record
    for name in permissions.COMMAND_PRIVATE_FIELDS:
        record.pop(name, None)
    record["redacted"] = list(permissions.COMMAND_PRIVATE_FIELDS)
    return record
