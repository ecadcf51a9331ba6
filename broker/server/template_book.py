"""Command templates at rest (:mod:`broker.core.templates`), in ``broker.db``'s ``templates`` table.

Definitions are not secret (a command name, fixed arguments, parameter
specs), so they are stored in clear like the key registry; what a run fills
in travels as the command's arguments, sealed in the command queue.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from broker.server.broker_tables import BrokerTables

_SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    name        TEXT PRIMARY KEY,
    command     TEXT NOT NULL,
    args        TEXT NOT NULL,
    params      TEXT NOT NULL,
    approval    INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    updated_by  TEXT NOT NULL,
    updated     REAL NOT NULL
);
"""


@dataclass
class Template:
    name: str
    command: str
    args: dict
    params: dict
    approval: bool = False
    description: str = ""
    updated_by: str = ""
    updated: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class TemplateBook(BrokerTables):
    """Every template, in memory and in ``broker.db`` (the broker is the only writer)."""

    SCHEMA = _SCHEMA

    def __init__(self, path: Path):
        super().__init__(path)
        self.templates = {row["name"]: Template(row["name"], row["command"], json.loads(row["args"]), json.loads(row["params"]),
                                                bool(row["approval"]), row["description"], row["updated_by"], row["updated"])
                          for row in self._db.execute("SELECT * FROM templates")}

    def put(self, template: Template) -> bool:
        """Add or replace ``template``; True if it is new."""
        template.updated = time.time()
        new = template.name not in self.templates
        with self._db:
            self._db.execute(
                "INSERT INTO templates (name, command, args, params, approval, description, updated_by, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET command = excluded.command,"
                " args = excluded.args, params = excluded.params, approval = excluded.approval,"
                " description = excluded.description, updated_by = excluded.updated_by, updated = excluded.updated",
                (template.name, template.command, json.dumps(template.args), json.dumps(template.params), int(template.approval),
                 template.description, template.updated_by, template.updated))
        self.templates[template.name] = template
        return new

    def remove(self, name: str) -> bool:
        with self._db:
            gone = self._db.execute("DELETE FROM templates WHERE name = ?", (name,)).rowcount > 0
        self.templates.pop(name, None)
        return gone
