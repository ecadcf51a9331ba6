"""What the bus carries, as the engine's observations and approval notices.

* ``presence.<agent>`` (online/offline) -> :meth:`Engine.presence`;
* ``event.<agent>.sysinfo`` -> :meth:`Engine.sysinfo`;
* ``security.*`` -> :meth:`Engine.security`, about the record's ``client_id`` (else its sender);
* ``audit.*``: an ordered reboot, shutdown or update makes the target's offline expected
  (:meth:`Engine.expect_offline`); ``approval.request`` becomes an approval notice and
  ``approval.approve``/``deny``/``expire`` resolve it.

Anything else, and any record whose fields are not what they should be, is ignored
(counted by the service): a bad record from one agent never stops the alerts.
"""
from __future__ import annotations

from broker.alerts import wording
from broker.alerts.engine import Engine
from broker.alerts.notices import APPROVAL, OPENED, RESOLVED, Notice
from broker.core.envelope import Envelope, Kind

#: commands whose target is expected to go offline, and the word for what was ordered
EXPECTED_OFFLINE = {"power.reboot": "reboot", "power.shutdown": "shutdown", "update.apply": "update"}
APPROVAL_ENDS = {"approval.approve": "approved", "approval.deny": "denied", "approval.expire": "expired"}


def _text(value, limit: int = 200) -> str:
    return value[:limit] if type(value) is str else ""


class Signals:
    """Turn one bus message into notices (through ``engine``); ``offline_expected_s`` is the suppression window."""

    def __init__(self, engine: Engine, offline_expected_s: float):
        self.engine, self.offline_expected_s = engine, offline_expected_s

    def take(self, env: Envelope, data) -> list[Notice] | None:
        """The notices ``env`` (its body unpacked: ``data``) causes; None if it means nothing here."""
        if type(data) is not dict:
            return None
        root, _, rest = env.topic.partition(".")
        if env.kind is Kind.PRESENCE and rest:
            state = data.get("state")
            return self.engine.presence(rest, state == "online") if state in ("online", "offline") else None
        if env.kind is Kind.EVENT and root == "event" and env.sender and rest == f"{env.sender}.sysinfo":
            return self.engine.sysinfo(env.sender, data)
        if env.kind is Kind.SECURITY and type(data.get("event")) is str:
            target = _text(data.get("client_id")) or env.sender or "server"
            return self.engine.security(target, data["event"][:64], _text(data.get("detail"), 500))
        if env.kind is Kind.EVENT and root == "audit":
            return self._audit(data)
        return None

    def _audit(self, data: dict) -> list[Notice] | None:
        action, detail = data.get("action"), data.get("detail")
        if type(detail) is not dict:
            return None
        person = _text(data.get("operator_name")) or _text(data.get("operator"))
        if action == "command" and detail.get("name") in EXPECTED_OFFLINE and _text(detail.get("target")):
            why = wording.ordered(EXPECTED_OFFLINE[detail["name"]], person, _text(detail.get("reason"), 500))
            self.engine.expect_offline(detail["target"], self.offline_expected_s, why)
            return []
        if action == "approval.request" and _text(detail.get("id")):
            return [self._approval(data, detail, person)]
        if action in APPROVAL_ENDS and _text(detail.get("id")):
            return [self._approval_end(data, detail, person, APPROVAL_ENDS[action])]
        return None

    def _approval(self, data: dict, detail: dict, person: str) -> Notice:
        summary, reason = _text(detail.get("summary"), 300), _text(detail.get("reason"), 500)
        return Notice(APPROVAL, f"approval:{detail['id']}", OPENED, "approval", "warning",
                      f"approval needed: {summary}", f"{person} asks for a second person: {reason or 'no reason given'}"
                      f" (ems approve {detail['id']} --reason ...)", _text(data.get("target")), self.engine.clock(),
                      {"id": detail["id"], "requester": _text(data.get("operator")), "requester_name": person,
                       "summary": summary, "reason": reason})

    def _approval_end(self, data: dict, detail: dict, person: str, how: str) -> Notice:
        summary, reason = _text(detail.get("summary"), 300), _text(detail.get("reason"), 500)
        who = f" by {person}" if how != "expired" else ""
        return Notice(APPROVAL, f"approval:{detail['id']}", RESOLVED, "approval", "info", f"approval {how}: {summary}",
                      f"{how}{who}: {reason or 'no reason given'}", _text(data.get("target")), self.engine.clock(),
                      {"id": detail["id"], "requester": _text(detail.get("requester")) or _text(data.get("operator")),
                       "decided_by": person, "reason": reason})
