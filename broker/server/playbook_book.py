"""Playbook definitions at rest (:mod:`broker.core.playbooks`), in ``broker.db``'s ``playbooks`` table.

Like templates, definitions are not secret (template names, parameter values
an admin wrote, conditions), so they are kept in clear; what a run fills in
travels sealed with the run (:mod:`broker.server.playbook_runs`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from broker.server.broker_tables import BrokerTables

_SCHEMA = """
CREATE TABLE IF NOT EXISTS playbooks (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    steps       TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    updated     REAL NOT NULL
);
"""


@dataclass
class Playbook:
    name: str
    steps: list[dict] = field(default_factory=list)  # each {template, params, when}
    description: str = ""
    updated_by: str = ""
    updated: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class PlaybookBook(BrokerTables):
    """Every playbook, in memory and in ``broker.db`` (the broker is the only writer)."""

    SCHEMA = _SCHEMA

    def __init__(self, path: Path):
        super().__init__(path)
        self.playbooks = {row["name"]: Playbook(row["name"], json.loads(row["steps"]), row["description"], row["updated_by"],
                                                row["updated"])
                          for row in self._db.execute("SELECT * FROM playbooks")}

    def put(self, playbook: Playbook) -> bool:
        """Add or replace ``playbook``; True if it is new."""
        playbook.updated = time.time()
        new = playbook.name not in self.playbooks
        with self._db:
            self._db.execute(
                "INSERT INTO playbooks (name, description, steps, updated_by, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET description = excluded.description, steps = excluded.steps,"
                " updated_by = excluded.updated_by, updated = excluded.updated",
                (playbook.name, playbook.description, json.dumps(playbook.steps), playbook.updated_by, playbook.updated))
        self.playbooks[playbook.name] = playbook
        return new

    def remove(self, name: str) -> bool:
        with self._db:
            gone = self._db.execute("DELETE FROM playbooks WHERE name = ?", (name,)).rowcount > 0
        self.playbooks.pop(name, None)
        return gone
