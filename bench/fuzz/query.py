"""Fuzz target (c): the persister's history queries, ``Persister._answer``.

A :class:`Persister` over a temp store seeded with rows of every kind
answers hostile requests: any op (``store.query``, ``store.capture``,
``store.stats``, unknown ones), hostile arguments for every history kind,
and a ``requester`` of any role (the broker stamps it). Its bus is a
recorder of what it sends: thousands of requests a second reach the
store's query code, where the dispatch target, over real sockets, sends
about a hundred. Invariants (else
:class:`~bench.fuzz.findings.Finding`):

* ``_answer`` raises nothing and sends exactly one REPLY or ERROR,
  correlated to the request;
* a REPLY to ``store.query`` is a list of rows of a kind the requester's
  role may read (``broker.core.permissions.HISTORY_READERS``), and a text search
  returns only rows that contain the text;
* the audit records a query leaves behind are written (or refused) by the
  store without an exception.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fuzz import hostile
from bench.fuzz.findings import Finding, from_exception
from bench.fuzz.hostile import Chooser, mapping, pick
from bench.fuzz.ingest import image
from broker.core import permissions
from broker.core.envelope import Envelope, Header, Kind, pack_body, unpack_body
from broker.persister.crypto import SecurityManager
from broker.persister.service import Persister, PersisterConfig
from broker.persister.store import VIEWS, Record, Store, StoreUnavailable

OPS = ("store.query", "store.query", "store.query", "store.capture", "store.stats", "store.nope", "", "status")
ARGS = {
    "store.query": ("kind", "client_id", "since", "until", "limit", "before_id", "order", "text", "include_deleted",
                    "thumbnails"),
    "store.capture": ("id", "purpose"),
    "store.stats": ("group_by", "client_id", "since", "until"),
}
ROLES = ("viewer", "operator", "admin", "service", "agent", "pending", "", "x")


@dataclass(frozen=True)
class QueryCase:
    """The body of a forwarded REQUEST: ``{"op", "args", "requester"}`` (or anything)."""

    request: Any


def query_case(ch: Chooser) -> QueryCase:
    """A request as the broker forwards it: ``args`` a map (the broker checks
    that), ``requester`` stamped with a client id and any role."""
    op = pick(ch, OPS)
    # mostly a kind and a few hostile fields, so that they reach the store
    args = {"kind": pick(ch, hostile.KINDS)} if op == "store.query" else {}
    args.update(mapping(ch, 1, ARGS.get(op, ARGS["store.query"]), 3))
    requester = {"client_id": pick(ch, ("op-1", "op-2", "fz-agent")), "role": pick(ch, ("admin", "service", *ROLES[:6]))}
    return QueryCase({"op": op, "args": args, "requester": requester})


class _Recorder:
    """The persister's bus, reduced to what ``_answer`` uses: ``send`` is recorded."""

    client_id = "persister"

    def __init__(self):
        self.sent: list[tuple[Kind, bytes, str | None]] = []

    def send(self, kind: Kind, topic: str = "", data: Any = None, *, body: bytes | None = None, msg_id: str | None = None,
             corr: str | None = None, expires: float | None = None) -> str:
        self.sent.append((kind, body if body is not None else pack_body(data), corr))
        return msg_id or "sent"


def seed(client: str, n: int, now: float) -> list[Record]:
    """A record of every kind and event route for ``client`` (``n`` makes ids unique)."""
    def rec(kind: str, msg: str, topic: str, data: dict, cid: str = client) -> Record:
        return Record(kind, cid, f"{msg}-{n}", now + n, topic, data)

    return [
        rec("event", "sys", f"event.{client}.sysinfo", {"hostname": "desk-7", "os": "Linux", "cpu_percent": 12.5}),
        rec("event", "cap", f"event.{client}.capture", {"image": image("jpeg"), "width": 32, "height": 24,
                                                         "format": "jpeg", "operator": "op-1"}),
        rec("event", "chat", f"event.{client}.chat", {"body": "Hello Anna, your 100% report_final", "direction": "out",
                                                       "operator": "op-1"}),
        rec("event", "file", f"event.{client}.fileop", {"op": "download", "path": "/home/anna/report.txt",
                                                         "operator": "op-1"}),
        rec("event", "app", f"event.{client}.app", {"window": "Mail", "nested": {"k": ["Anna"]}}),
        rec("log", "log", f"log.{client}", {"level": "WARNING", "logger": "agent", "message": "disk almost full"}),
        rec("security", "sec", f"security.{client}", {"event": "login_failed", "severity": "high"}),
        rec("security", "bsec", "security.broker", {"event": "forbidden", "client_id": client}, ""),
        rec("audit", "aud", "audit.op-1", {"operator": "op-1", "role": "operator", "action": "command",
                                           "target": client, "reason": "ticket 7"}, "op-1"),
        rec("presence", "pres", f"presence.{client}", {"state": "online", "info": {"user": "anna", "os": "Linux"}}),
        rec("command_status", "cmd", f"command.{client}", {"id": f"c-{client}-{n}", "status": "done", "name": "ping",
                                                           "operator": "op-1", "result": {"ok": True}}),
    ]


class QueryTarget:
    """A seeded store under ``root`` and a persister answering into a recorder."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.store = Store(root / "store.db", SecurityManager(root / "store-keys.json"))
        now = time.time() - 3600
        for n in range(3):
            for client in ("agent-1", "agent-2"):
                self.store.write_batch(seed(client, n, now))
        self.bus = _Recorder()
        self.persister = Persister(self.bus, self.store, PersisterConfig())
        self.count = 0

    def close(self) -> None:
        self.store.close()

    def run(self, case: QueryCase) -> None:
        """Answer ``case`` and check the answer; raises :class:`Finding`."""
        self.count += 1
        msg_id = f"q-{self.count}"
        try:
            body = pack_body(hostile.materialise(case.request))
        except (ValueError, TypeError, OverflowError):
            return  # msgpack cannot carry it
        env = Envelope(Header(Kind.REQUEST, "store.query", msg_id, time.time()), body, "")
        self.bus.sent.clear()
        try:
            self.persister._answer(env)
        except Exception as exc:
            raise from_exception("_answer raised", exc) from exc
        self._check_answer(case, msg_id)
        self._flush()

    def _check_answer(self, case: QueryCase, msg_id: str) -> None:
        sent = self.bus.sent
        if len(sent) != 1 or sent[0][0] not in (Kind.REPLY, Kind.ERROR) or sent[0][2] != msg_id:
            raise Finding("not exactly one correlated answer", repr([(k.name, c) for k, _, c in sent]))
        kind, body, _ = sent[0]
        request = hostile.materialise(case.request)
        if kind is not Kind.REPLY or not isinstance(request, dict) or request.get("op") != "store.query":
            return
        args, requester = request.get("args") or {}, request.get("requester") or {}
        if not isinstance(args, dict) or not isinstance(requester, dict):
            return
        rows, what, role = unpack_body(body, 64 * 2**20), args.get("kind"), requester.get("role")
        role = role if isinstance(role, str) else None
        if not isinstance(rows, list):
            raise Finding("store.query answered something other than a list", type(rows).__name__)
        if not (isinstance(what, str) and permissions.may_read_history(role, what)):
            raise Finding("a role read a history kind it may not", f"role {role!r} read {what!r}",
                          f"role {role!r} read {what!r}")
        text = args.get("text")
        if isinstance(text, str) and text and what in VIEWS:
            misses = [r for r in rows if not any(_mentions(r.get(c), text) for c in VIEWS[what].text)]
            if misses:
                raise Finding("a text search returned rows without the text",
                              f"text {text!r} in {what}: {len(misses)} of {len(rows)} rows do not contain it",
                              f"text search of {what} returned rows without the text")

    def _flush(self) -> None:
        """Write the audit records the answer left (as the persister's next commit would)."""
        if not self.persister.batch:
            return
        try:
            self.persister.flush()
        except StoreUnavailable:
            self.persister.batch = []
        except Exception as exc:
            self.persister.batch = []
            raise from_exception("committing the persister's audit records raised", exc) from exc


def _mentions(value: Any, text: str) -> bool:
    """Whether ``text`` appears (case-insensitively) in a string anywhere inside ``value``."""
    stack, needle = [value], text.casefold()
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if needle in v.casefold() or text.lower() in v.lower():
                return True
        elif isinstance(v, dict):
            stack += [*v.keys(), *v.values()]
        elif isinstance(v, (list, tuple)):
            stack += list(v)
    return False
