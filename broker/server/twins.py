"""Two live machines claiming one agent id: a cloned VM, or a copied key.

An agent's HELLO carries two fingerprints (:func:`agent.identity.fingerprints`):
``hardware`` (machine id + MAC hash) and ``install`` (a hash of the salt
made at the install's first start). A machine that reconnects shows the
same ones; so :class:`TwinWatch` flags, as security events the broker
stores:

* ``agent_id_clone`` — a new connection for an id that is live right now
  with other fingerprints (two installs, or one install copied to other
  hardware, behind one id);
* ``agent_id_twin`` — a connection that a newer one replaced keeps
  sending: the same key is in use at two places at once (a VM cloned with
  its keys and its identity file).

It only watches; the newer connection still replaces the older (an admin
decides: revoke the key, re-enrol the clones).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.server.peers import Peer

#: the HELLO fields that tell two installs apart
FINGERPRINTS = ("hardware", "install")
#: replaced connections remembered (oldest forgotten first)
MAX_REPLACED = 4096


class TwinWatch:
    """Remembers replaced agent connections; says when evidence of two machines shows up."""

    def __init__(self, max_replaced: int = MAX_REPLACED):
        self.max_replaced = max_replaced
        self._replaced: OrderedDict[bytes, tuple[str, str]] = OrderedDict()

    def replacing(self, old: "Peer", new: "Peer") -> str:
        """``new`` replaces ``old`` (one agent id): the evidence of a clone, or "" for a reconnect."""
        self._replaced[old.rid] = (old.client_id, old.address)
        while len(self._replaced) > self.max_replaced:
            self._replaced.popitem(last=False)
        differs = [f for f in FINGERPRINTS if old.info.get(f) and new.info.get(f) and old.info[f] != new.info[f]]
        if not differs:
            return ""
        return (f"{new.client_id} is connected from {old.address or '?'} and now from {new.address or '?'} with another "
                f"{' and '.join(differs)} fingerprint ({', '.join(f'{old.info[f]} vs {new.info[f]}' for f in differs)}): "
                "two machines claim this id (a cloned VM?)")

    def speaks_again(self, rid: bytes, client_id: str, address: str) -> str:
        """A frame from ``rid``: the evidence of a twin when a replaced connection of the id still sends, else ""."""
        replaced = self._replaced.pop(rid, None)
        if replaced is None or replaced[0] != client_id:
            return ""
        return (f"{client_id}'s key is in use at two places at once: a connection from {replaced[1] or '?'} that a newer "
                f"one replaced still sends (from {address or '?'}); a VM cloned with its keys?")
