"""DATA/alerts.db: the rules, the alerts (open, suppressed and resolved) and the service's own audit rows.

One SQLite file, private like every other store (:func:`broker.core.sqlite_db.connect`),
opened by the alerts service alone. A new file gets :data:`broker.alerts.rules.DEFAULT_RULES`.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from broker.alerts.rules import Rule, check, defaults
from broker.core import sqlite_db

ALERTS_FILE = "alerts.db"
#: where an alert stands: told (open), expected and not told (suppressed), over (resolved)
OPEN, SUPPRESSED, RESOLVED = "open", "suppressed", "resolved"
LIVE_STATES = (OPEN, SUPPRESSED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rules (name TEXT PRIMARY KEY, body TEXT NOT NULL, updated REAL NOT NULL, updated_by TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL, target TEXT NOT NULL, state TEXT NOT NULL,
    severity TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL, value TEXT NOT NULL DEFAULT 'null',
    opened_at REAL NOT NULL, updated_at REAL NOT NULL, resolved_at REAL, notified_at REAL,
    suppressed TEXT NOT NULL DEFAULT '', acked_by TEXT NOT NULL DEFAULT '', acked_name TEXT NOT NULL DEFAULT '',
    ack_reason TEXT NOT NULL DEFAULT '', acked_at REAL, details TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS alerts_live ON alerts (state, rule, target);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, person_id TEXT NOT NULL, person_name TEXT NOT NULL,
    role TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_JSON_COLUMNS = ("value", "details")


def _row(row: sqlite3.Row) -> dict:
    out = dict(row)
    for column in _JSON_COLUMNS:
        out[column] = json.loads(out[column])
    return out


class AlertBook:
    """Rules, alerts and audit rows in one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = sqlite_db.connect(self.path)
        self.conn.executescript(SCHEMA)
        if self.conn.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is None:
            with self.conn:
                self.conn.execute("BEGIN")
                for rule in defaults():
                    self._put(rule, "defaults", 0.0)
                self.conn.execute("INSERT INTO meta VALUES ('seeded', '1')")

    def close(self) -> None:
        self.conn.close()

    # -- rules --------------------------------------------------------------------------
    def rules(self) -> list[Rule]:
        return [check(json.loads(r["body"])) for r in self.conn.execute("SELECT body FROM rules ORDER BY name")]

    def put_rule(self, rule: Rule, by: str, now: float) -> None:
        self._put(rule, by, now)

    def _put(self, rule: Rule, by: str, now: float) -> None:
        self.conn.execute("INSERT OR REPLACE INTO rules VALUES (?, ?, ?, ?)", (rule.name, json.dumps(rule.as_dict()), now, by))

    def remove_rule(self, name: str) -> bool:
        return self.conn.execute("DELETE FROM rules WHERE name = ?", (name,)).rowcount > 0

    # -- alerts -------------------------------------------------------------------------
    def open(self, rule: str, target: str, state: str, severity: str, title: str, text: str, value, now: float,
             suppressed: str = "", details: dict | None = None) -> dict:
        """A new alert row (``state`` OPEN or SUPPRESSED); the row as a map."""
        cur = self.conn.execute(
            "INSERT INTO alerts (rule, target, state, severity, title, text, value, opened_at, updated_at, notified_at,"
            " suppressed, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rule, target, state, severity, title, text, json.dumps(value), now, now, now if state == OPEN else None,
             suppressed, json.dumps(details or {})))
        return self.get(cur.lastrowid)

    def save(self, alert: dict) -> dict:
        """Write back the changeable columns of ``alert``; the stored row."""
        self.conn.execute(
            "UPDATE alerts SET state = ?, title = ?, text = ?, value = ?, updated_at = ?, resolved_at = ?, notified_at = ?,"
            " suppressed = ?, acked_by = ?, acked_name = ?, ack_reason = ?, acked_at = ?, details = ? WHERE id = ?",
            (alert["state"], alert["title"], alert["text"], json.dumps(alert["value"]), alert["updated_at"],
             alert["resolved_at"], alert["notified_at"], alert["suppressed"], alert["acked_by"], alert["acked_name"],
             alert["ack_reason"], alert["acked_at"], json.dumps(alert["details"]), alert["id"]))
        return self.get(alert["id"])

    def get(self, alert_id: int) -> dict | None:
        row = self.conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return _row(row) if row else None

    def live(self) -> list[dict]:
        """Every open or suppressed alert (what the engine restores on start)."""
        return [_row(r) for r in self.conn.execute("SELECT * FROM alerts WHERE state IN (?, ?) ORDER BY id", LIVE_STATES)]

    def listing(self, everything: bool, limit: int, target: str = "") -> list[dict]:
        """Open alerts (``everything``: every alert, suppressed and resolved too), newest first."""
        where, params = ("1 = 1", []) if everything else ("state = ?", [OPEN])
        if target:
            where, params = where + " AND target = ?", params + [target]
        sql = f"SELECT * FROM alerts WHERE {where} ORDER BY id DESC LIMIT ?"
        return [_row(r) for r in self.conn.execute(sql, (*params, limit))]

    # -- audit --------------------------------------------------------------------------
    def audit(self, requester: dict, action: str, detail: dict, now: float) -> None:
        """An admin's or operator's action on alerts, named (kept here as well as in the bus's audit trail)."""
        self.conn.execute("INSERT INTO audit (ts, person_id, person_name, role, action, detail) VALUES (?, ?, ?, ?, ?, ?)",
                          (now, str(requester.get("client_id", "?")), str(requester.get("name") or ""),
                           str(requester.get("role", "")), action, json.dumps(detail)))

    def audit_rows(self, limit: int = 100) -> list[dict]:
        rows = self.conn.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]
