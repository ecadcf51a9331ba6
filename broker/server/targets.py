"""Targets: tags and groups operators put on agents, the facts agents last reported, and selector expansion.

Kept in ``broker.db`` beside the key registry (the broker is the only writer):

* ``client_tags``: (client id, kind ``tag`` or ``group``, name), who set it and when. A group is a set of
  machines an organisation names ("finance"); a tag is a property an operator notes ("kiosk"). Both are
  matched by selectors (``group:finance``, ``tag:kiosk``);
* ``client_facts``: each agent's OS and version from its last HELLO, so ``os:`` and ``version:`` select
  offline agents too.

:meth:`TargetBook.resolve` expands a :class:`broker.core.selectors.Selector` against the registry's
accepted agents, sorted by id.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Iterable

from broker.core.selectors import Selector, TargetFacts
from broker.server.broker_tables import BrokerTables
from broker.server.registry import ACCEPTED, KeyRegistry

KINDS = ("tag", "group")
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
#: tags and groups one agent may carry (a selector tests each)
MAX_PER_CLIENT = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS client_tags (
    client_id TEXT NOT NULL,
    kind      TEXT NOT NULL,
    name      TEXT NOT NULL,
    added_by  TEXT NOT NULL,
    created   REAL NOT NULL,
    PRIMARY KEY (client_id, kind, name)
);
CREATE INDEX IF NOT EXISTS client_tags_name ON client_tags (kind, name);
CREATE TABLE IF NOT EXISTS client_facts (
    client_id TEXT PRIMARY KEY,
    os        TEXT NOT NULL DEFAULT '',
    version   TEXT NOT NULL DEFAULT '',
    updated   REAL NOT NULL
);
"""


def check_name(kind: str, name: object) -> str:
    """A tag or group name as given, or ValueError saying what a name may hold."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"a {kind} name is 1-64 letters, digits, '.', '_' or '-', not {name!r}")
    return name


class TargetBook(BrokerTables):
    """Tags, groups and last-known facts of agents; selector expansion."""

    SCHEMA = _SCHEMA

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        super().__init__(path)
        self.clock = clock
        self._labels: dict[str, dict[str, set[str]]] = {kind: {} for kind in KINDS}  # kind -> client -> names
        for row in self._db.execute("SELECT client_id, kind, name FROM client_tags"):
            self._labels.setdefault(row["kind"], {}).setdefault(row["client_id"], set()).add(row["name"])
        self._facts = {row["client_id"]: (row["os"], row["version"])
                       for row in self._db.execute("SELECT client_id, os, version FROM client_facts")}

    # -- facts ---------------------------------------------------------------------------
    def remember(self, client_id: str, info: dict) -> None:
        """An agent's OS and version from its HELLO (written only when they changed)."""
        facts = (str(info.get("os") or "")[:128], str(info.get("version") or "")[:64])
        if self._facts.get(client_id) == facts:
            return
        self._facts[client_id] = facts
        with self._db:
            self._db.execute("INSERT INTO client_facts (client_id, os, version, updated) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (client_id) DO UPDATE SET os = excluded.os, version = excluded.version,"
                             " updated = excluded.updated", (client_id, *facts, self.clock()))

    # -- tags and groups -------------------------------------------------------------------
    def names_of(self, kind: str, client_id: str) -> frozenset[str]:
        return frozenset(self._labels[kind].get(client_id, ()))

    def add(self, kind: str, name: str, client_ids: Iterable[str], by: str) -> list[str]:
        """Put ``kind:name`` on each of ``client_ids``; returns those that did not have it yet."""
        check_name(kind, name)
        added = []
        with self._db:
            for client_id in client_ids:
                names = self._labels[kind].setdefault(client_id, set())
                if name in names:
                    continue
                if len(names) >= MAX_PER_CLIENT:
                    raise ValueError(f"{client_id} has {MAX_PER_CLIENT} {kind}s already: remove one first")
                self._db.execute("INSERT INTO client_tags (client_id, kind, name, added_by, created) VALUES (?, ?, ?, ?, ?)",
                                 (client_id, kind, name, by, self.clock()))
                names.add(name)
                added.append(client_id)
        return added

    def remove(self, kind: str, name: str, client_ids: Iterable[str]) -> list[str]:
        """Take ``kind:name`` off each of ``client_ids``; returns those that had it."""
        check_name(kind, name)
        removed = []
        with self._db:
            for client_id in client_ids:
                names = self._labels[kind].get(client_id, set())
                if name in names:
                    self._db.execute("DELETE FROM client_tags WHERE client_id = ? AND kind = ? AND name = ?",
                                     (client_id, kind, name))
                    names.discard(name)
                    removed.append(client_id)
        return removed

    def summary(self) -> list[dict]:
        """Every tag and group with how many agents carry it, sorted by kind and name."""
        counts: dict[tuple[str, str], int] = {}
        for kind, clients in self._labels.items():
            for names in clients.values():
                for name in names:
                    counts[(kind, name)] = counts.get((kind, name), 0) + 1
        return [{"kind": kind, "name": name, "agents": n} for (kind, name), n in sorted(counts.items())]

    # -- selectors ---------------------------------------------------------------------------
    def facts(self, registry: KeyRegistry, online: Iterable[str]) -> list[TargetFacts]:
        """What selectors test, for every accepted agent."""
        online = set(online)
        out = []
        for record in registry.all():
            if record.role != "agent" or record.state != ACCEPTED:
                continue
            os_name, version = self._facts.get(record.client_id, ("", ""))
            out.append(TargetFacts(record.client_id, record.client_id in online, record.label, record.hostname, os_name,
                                   version, self.names_of("tag", record.client_id), self.names_of("group", record.client_id)))
        return out

    def resolve(self, selector: Selector, registry: KeyRegistry, online: Iterable[str]) -> list[TargetFacts]:
        """The accepted agents ``selector`` matches, sorted by client id."""
        return sorted((f for f in self.facts(registry, online) if selector.matches(f)), key=lambda f: f.client_id)
