"""What one notification is: the contract between what raises it (alert rules,
approval requests) and what delivers it (inbox, e-mail, webhook)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: what a notice is about
ALERT, APPROVAL = "alert", "approval"
#: where an alert or a request is in its life; each is told once
OPENED, UPDATED, RESOLVED = "opened", "updated", "resolved"
#: how loud: quiet hours hold back all but ``critical``
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Notice:
    """One thing to tell operators.

    ``key`` names the alert or request (the same for its opened, updated and
    resolved notices: ``offline:laptop-7``, ``approval:<id>``); ``rule`` the
    rule that raised it (routing is per rule; approvals use ``approval``);
    ``target`` the client it is about (``""`` for none); ``ts`` wall-clock
    seconds; ``details`` plain values only (sent as JSON to webhooks).
    """

    kind: str
    key: str
    state: str
    rule: str
    severity: str
    title: str
    text: str
    target: str = ""
    ts: float = 0.0
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Plain values, for msgpack, JSON and the inbox's table."""
        return asdict(self)
