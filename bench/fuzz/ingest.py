"""Fuzz target (b): the persister's ingest path, ``record_for`` + ``Store.write_batch``.

An :class:`IngestCase` is a few messages as the persister receives them
(kind, topic, message id, timestamp, the broker-stamped sender and a
hostile body), covering every record kind the store takes and every event
route (:data:`broker.persister.prepare._EVENT_ROUTES`: sysinfo, capture, chat,
fileop, and activity for any other name). Each body goes through msgpack
first, as it would on the wire. Invariants (else
:class:`~bench.fuzz.findings.Finding`):

* ``record_for`` returns a record or None, nothing else escapes;
* ``write_batch`` ends in its documented outcomes only: each record is
  durable (stored or duplicate), rejected or waiting, exactly once; or the
  whole batch raises :class:`StoreUnavailable`;
* afterwards every history kind can still be queried, text-searched and
  counted (``stats``) without an exception.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.fuzz import hostile
from bench.fuzz.findings import Finding, from_exception
from bench.fuzz.hostile import Chooser, field_value, mapping, pick
from broker.core.envelope import Kind, pack_body, unpack_body
from broker.core.errors import ProtocolError
from broker.persister.crypto import SecurityManager
from broker.persister.service import record_for
from broker.persister.store import STATS, VIEWS, Store, StoreUnavailable

#: authenticated senders as the broker stamps them: agent ids (1-64 of [A-Za-z0-9_-]), "" (the broker's
#: own records), and the persister's own id
SENDERS = ("agent-1", "agent-2", "a" * 64, "", "persister")
#: the fields each record kind and event route reads
ROUTE_FIELDS = {
    "sysinfo": ("hostname", "os", "os_version", "logged_in_user", "version", "cpu_percent", "memory_percent",
                "disk_percent"),
    "capture": ("width", "height", "quality", "format", "image", "operator"),
    "chat": ("body", "direction", "operator", "status", "ref", "deleted"),
    "fileop": ("op", "path", "size", "ok", "error", "operator"),
    "log": ("level", "logger", "message"),
    "security": ("event", "severity", "origin", "client_id", "detail"),
    "audit": ("operator", "role", "action", "target", "reason", "detail"),
    "presence": ("state", "reason", "info"),
    "command": ("id", "status", "name", "operator", "sender", "args", "result", "created", "target"),
}
#: message ids pass decode_header: strings of 1-64 characters
MSG_IDS = ("m1", "m2", "m3", "x" * 64, "m\x00", "é")
#: the stores' queries after each batch: every kind, plain and text-searched, and every stats grouping
CHECKS = [(kind, None) for kind in VIEWS] + [(kind, "zq~") for kind, v in VIEWS.items() if v.text]


@dataclass(frozen=True)
class Message:
    """One message as the persister gets it (``data`` before msgpack)."""

    kind: Kind
    topic: str
    msg_id: str
    ts: float
    sender: str
    data: Any


@dataclass(frozen=True)
class IngestCase:
    messages: tuple[Message, ...]


# -- generation ---------------------------------------------------------------------
def ingest_case(ch: Chooser) -> IngestCase:
    return IngestCase(tuple(message(ch) for _ in range(ch.int_in(1, 4))))


def message(ch: Chooser) -> Message:
    kind = pick(ch, (Kind.EVENT, Kind.EVENT, Kind.EVENT, Kind.LOG, Kind.SECURITY, Kind.PRESENCE, Kind.COMMAND_STATUS,
                     Kind.FRAME))
    sender = pick(ch, SENDERS)
    topic, route = topic_for(ch, kind, sender)
    ts = time.time() if ch.int_in(0, 3) else pick(ch, (0.0, -1.0, 1.0, 1e308, 5e-324, 2.0**63))
    # mostly fresh ids (a repeated one is a duplicate: stored before, not looked at again)
    msg_id = pick(ch, MSG_IDS) if not ch.int_in(0, 3) else f"m-{ch.int_in(0, 2**48)}-{ch.text(6)}"
    if kind in (Kind.PRESENCE, Kind.COMMAND_STATUS):  # made by the broker, not by peers
        return Message(kind, topic, msg_id, ts, "", broker_body(ch, kind))
    return Message(kind, topic, msg_id, ts, sender, body_for(ch, route))


def broker_body(ch: Chooser, kind: Kind) -> dict:
    """What the broker's own presence and command-status records hold: its
    shape is fixed, the strings in it come from peers."""
    if kind is Kind.PRESENCE:
        info = {f: ch.text(30) for f in ("client_id", "label", "hostname", "version", "os", "user")[:ch.int_in(0, 6)]}
        return {"client_id": "agent-1", "state": pick(ch, ("online", "offline")), "reason": pick(ch, ("hello", "x")),
                "ts": time.time(), "info": info}
    return {"id": pick(ch, ("c1", "c2", "x" * 64)), "target": pick(ch, ("agent-1", "agent-2")),
            "name": pick(ch, ("ping", "thumbnail", ch.text(20))),
            "status": pick(ch, ("queued", "sent", "delivered", "done", "failed", "expired")), "updated": time.time()}


def topic_for(ch: Chooser, kind: Kind, sender: str) -> tuple[str, str]:
    """A topic for ``kind`` (mostly the one the store expects) and the route it takes."""
    if kind is Kind.EVENT:
        if ch.int_in(0, 5) == 0:
            return f"audit.{pick(ch, ('op-1', 'admin', ''))}", "audit"
        name = pick(ch, hostile.EVENT_NAMES) if ch.int_in(0, 5) else ch.text(20)
        return (f"event.{sender}.{name}" if name else f"event.{sender}"), name
    if kind is Kind.PRESENCE:
        return pick(ch, ("presence.agent-1", "presence.agent-2")), "presence"
    if kind is Kind.COMMAND_STATUS:
        return pick(ch, ("command.agent-1", "command.agent-2")), "command"
    return {Kind.LOG: f"log.{sender}", Kind.SECURITY: f"security.{sender}"}.get(kind, "x"), kind.name.lower()


def body_for(ch: Chooser, route: str) -> Any:
    fields = ROUTE_FIELDS.get(route, ())
    if not ch.int_in(0, 7):
        return hostile.value(ch)
    body = mapping(ch, 1, fields, 7)
    if route == "capture" and ch.int_in(0, 2):
        body["image"] = pick(ch, IMAGES)
    if route == "presence" and ch.int_in(0, 1):
        body["info"] = {f: field_value(ch, f, 2) for f in ("user", "hostname", "os", "version", "label")[:ch.int_in(0, 5)]}
    return body


#: capture images: names of :func:`image` outputs, and junk
IMAGES = ("jpeg", "jpeg-bomb", "png", b"\xff\xd8\xff", b"\x00", b"")


@lru_cache(maxsize=None)
def image(name: str) -> bytes:
    """A small real image, or one whose header claims 60,000 x 60,000 pixels."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(out, "PNG" if name == "png" else "JPEG")
    data = out.getvalue()
    if name == "jpeg-bomb":
        sof = data.index(b"\xff\xc0")
        data = data[:sof + 5] + (60000).to_bytes(2, "big") * 2 + data[sof + 9:]
    return data


def wire(data: Any) -> Any:
    """``data`` as the persister unpacks it after the wire (markers expanded, images made)."""
    data = hostile.materialise(data)
    if isinstance(data, dict) and data.get("image") in ("jpeg", "jpeg-bomb", "png"):
        data = {**data, "image": image(data["image"])}
    return unpack_body(pack_body(data), 64 * 2**20)


# -- the target ---------------------------------------------------------------------
class IngestTarget:
    """A temp store under ``root``, renewed every ``renew_every`` cases so it stays small."""

    def __init__(self, root: Path, renew_every: int = 100):
        self.root, self.renew_every = root, renew_every
        self.generation, self.cases = 0, 0
        self.store: Store | None = None
        self._renew()

    def _renew(self) -> None:
        if self.store is not None:
            self.store.close()
        self.generation += 1
        path = self.root / f"ingest-{self.generation}"
        path.mkdir(parents=True, exist_ok=True)
        self.store = Store(path / "store.db", SecurityManager(path / "store-keys.json"))

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def run(self, case: IngestCase) -> None:
        """Ingest ``case``'s messages as one batch, then query everything."""
        self.cases += 1
        if self.cases % self.renew_every == 0:
            self._renew()
        records = []
        for m in case.messages:
            try:
                data = wire(m.data)
            except (ProtocolError, ValueError, TypeError, OverflowError):
                continue  # msgpack cannot carry it: no peer can send it
            try:
                item = record_for(m.kind, m.topic, m.msg_id, m.ts, m.sender, data)
            except Exception as exc:
                raise from_exception("record_for raised", exc) from exc
            if item is not None:
                records.append(item[0])
        self._write(records)
        self._query_all()

    def _write(self, records: list) -> None:
        try:
            result = self.store.write_batch(records)
        except StoreUnavailable:
            return
        except Exception as exc:
            self._renew()
            raise from_exception("write_batch raised", exc) from exc
        counted = len(result.durable) + len(result.rejected) + len(result.waiting)
        if counted != len(records):
            raise Finding("write_batch lost count of records", f"{len(records)} in, {counted} accounted for",
                          "write_batch lost count of records")

    def _query_all(self) -> None:
        for kind, text in CHECKS:
            try:
                self.store.query(kind, text=text)
            except StoreUnavailable:
                pass
            except Exception as exc:
                self._renew()  # a poisoned store stays poisoned: go on with a clean one
                raise from_exception(f"query {kind}{' text search' if text else ''} raised after ingest", exc) from exc
        for group in ("kind", *STATS):
            try:
                self.store.stats(group)
            except StoreUnavailable:
                pass
            except Exception as exc:
                self._renew()
                raise from_exception(f"stats {group} raised after ingest", exc) from exc
