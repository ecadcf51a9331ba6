"""REQUEST routing: check who asks, answer from the op table or forward.

:class:`Requests` checks a REQUEST against ``permissions`` (the op's least
role, and for history reads the kind read), answers the broker's own ops
from :data:`broker.server.request_ops.OPS`, and forwards ``store.*`` ops to the
service providing them, routing its REPLY or ERROR back to whoever asked.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from broker.core import permissions
from broker.core.envelope import ErrorCode, Header, Kind, pack_body, pack_header
from broker.core.errors import Refused
from broker.server import operators
from broker.server.registry import RegistryError
from broker.server.request_ops import OPS

if TYPE_CHECKING:
    from broker.server.peers import Peer
    from broker.server.loop import Broker

#: forwarded requests awaiting their service's answer, at most
MAX_FORWARDED = 10_000
#: what an op may raise for a bad request (``bounds.BoundsError`` is a ValueError): answered BAD_REQUEST
BAD_REQUEST_ERRORS = (RegistryError, ValueError, KeyError, TypeError, OverflowError)


class Requests:
    """The broker's REQUEST handling, and requests forwarded to services."""

    def __init__(self, broker: "Broker"):
        self.broker = broker
        self.counters = broker.counters
        self.peers, self.providers = broker.peer_table.peers, broker.peer_table.providers
        #: forwarded request id -> (requester, service routing id, give-up time)
        self.forwarded: dict[str, tuple[bytes, bytes, float]] = {}

    def on_request(self, peer: "Peer", header: Header, frames) -> None:
        """REQUEST ``{op, args}``: refused unless this role may call ``op``
        (and read the history kind it names); then answered or forwarded."""
        broker = self.broker
        data = broker.read_body(peer, header, frames)
        if data is None:
            return
        op, args = data.get("op"), data.get("args") or {}
        if not isinstance(op, str) or not isinstance(args, dict):
            broker.refuse(peer, header, ErrorCode.BAD_REQUEST, "request needs op (string) and args (map)")
            return
        if op not in permissions.REQUEST_OPS:
            broker.send_error(peer.rid, header, ErrorCode.BAD_REQUEST, f"unknown operation {op!r}")
            return
        if not permissions.may_request(peer.role, op):
            self._forbid(peer, header, permissions.refusal(peer.role, f"call {op}"))
            return
        kind = permissions.history_kind(op, args)
        if kind is not None and not permissions.may_read_history(peer.role, kind):
            self._forbid(peer, header, permissions.history_refusal(peer.role, kind))
            return
        if peer.role in permissions.VOUCHING_ROLES and op in permissions.PERSON_OPS and args.get("operator") is None:
            self._forbid(peer, header, permissions.refusal(peer.role, f"call {op} for no one (name the person: args.operator)"))
            return
        if op.startswith(permissions.SERVICE_PREFIXES):
            self._forward_for(peer, header, op, args)
            return
        try:
            result = OPS[op](broker, peer, args)
        except Refused as refusal:
            broker.send_error(peer.rid, header, refusal.code, refusal.message[:500])
            return
        except BAD_REQUEST_ERRORS as exc:
            self.counters["bad_requests"] += 1
            broker.send_error(peer.rid, header, ErrorCode.BAD_REQUEST, str(exc)[:500])
            return
        broker.reply(peer, header, result)

    def _forbid(self, peer: "Peer", header: Header, why: str) -> None:
        """FORBIDDEN, counted and a security event."""
        self.counters["refused_role"] += 1
        self.broker.records.security(peer, "forbidden", why)
        self.broker.send_error(peer.rid, header, ErrorCode.FORBIDDEN, why)

    def _forward_for(self, peer: "Peer", header: Header, op: str, args: dict) -> None:
        """Forward ``op`` for the person behind ``peer`` (see :meth:`_requester`), if their role may call it."""
        try:
            requester = self._requester(peer, op, args)
        except ValueError as exc:
            self.broker.send_error(peer.rid, header, ErrorCode.BAD_REQUEST, str(exc)[:500])
            return
        if not permissions.may_request(requester["role"], op):
            self._forbid(peer, header, permissions.refusal(requester["role"], f"call {op} (as {requester['name']})"))
            return
        self._forward(peer, header, op, args, requester)

    def _requester(self, peer: "Peer", op: str, args: dict) -> dict:
        """Who asks, as the service is told: the key's own person; for a person-only op
        (:data:`permissions.PERSON_OPS`) called by a vouching service, the person it names in ``args.operator``
        (taken out of ``args``) with the role the broker stands behind for them (:func:`permissions.vouched_role`)
        and the service as ``via``. ValueError when it names no one, or names a key's client id."""
        registry = self.broker.registry
        if peer.role not in permissions.VOUCHING_ROLES or op not in permissions.PERSON_OPS:
            return {"client_id": peer.client_id, "role": peer.role, "name": operators.person_of(registry, peer)}
        claimed = args.pop("operator", None)
        stamp, problem = operators.stamp(peer.role, peer.client_id, "", {"operator": claimed})
        if not stamp:
            raise ValueError(f"{op} is a person's: {problem}")
        if registry.holders(stamp["id"]):
            raise ValueError(f"{peer.client_id} may not act as {stamp['id']!r}: that is a key's client id (name the web person)")
        return {"client_id": stamp["id"], "role": permissions.vouched_role(claimed.get("role")), "name": stamp["name"],
                "via": peer.client_id}

    def _forward(self, peer: "Peer", header: Header, op: str, args: dict, requester: dict) -> None:
        """Hand a service operation to its provider, stamped with who asks."""
        broker = self.broker
        service = op.split(".", 1)[0]
        rid = self.providers.get(service)
        if rid is None or rid not in self.peers:
            self.counters["service_unavailable"] += 1
            broker.send_error(peer.rid, header, ErrorCode.UNAVAILABLE, f"no {service} service is connected (ems up starts it)")
            return
        if len(self.forwarded) >= MAX_FORWARDED:
            broker.send_error(peer.rid, header, ErrorCode.THROTTLED, "too many requests in flight")
            return
        body = pack_body({"op": op, "args": args, "requester": requester})
        fwd = pack_header(Kind.REQUEST, op, msg_id=header.msg_id)
        if broker.send(rid, peer.sender, fwd, body):
            self.forwarded[header.msg_id] = (peer.rid, rid, broker.clock() + broker.config.timing.request_timeout_s * 3)
            self.counters["forwarded_requests"] += 1
        else:
            broker.send_error(peer.rid, header, ErrorCode.UNAVAILABLE, f"the {service} service is not keeping up")

    def on_service_reply(self, peer: "Peer", header: Header, frames) -> None:
        """A service answers a forwarded request: route it to whoever asked."""
        waiting = self.forwarded.get(header.corr or "")
        if waiting is None or waiting[1] != peer.rid:  # only the service asked may answer
            self.counters["reply_unroutable"] += 1
            return
        del self.forwarded[header.corr]
        self.broker.send(waiting[0], peer.sender, frames[1], frames[2])

    def give_up(self, now: float) -> None:
        """Forget forwarded requests past their give-up time."""
        for msg_id in [m for m, (_, _, until) in self.forwarded.items() if until < now]:
            del self.forwarded[msg_id]
