"""What the console's Operations window shows: one tab per list the broker (or a
service) answers, and what an operator may do to a row, as data.

The window (:mod:`gui.operations_view`) builds a table per :class:`OpsTab`
and a button per :class:`RowAction`; nothing here is a widget. An action
that changes something asks for a reason first: the broker or the service
writes it to the audit trail with the operator's name.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RowAction:
    """A button under a tab's table, for the selected row."""

    label: str
    op: str
    #: the request's arguments from the selected row (the reason is added after the dialog)
    args: Callable[[dict], dict]
    #: what the confirmation says; ``{...}`` fields come from the row
    explain: str
    destructive: bool = False
    #: rows it applies to (e.g. only pending requests)
    applies: Callable[[dict], bool] = lambda row: True
    #: whether it changes something others see (asks for a reason, audited); marking your own inbox read does not
    needs_reason: bool = True


@dataclass(frozen=True)
class OpsTab:
    """One list: the request that fills it, the columns it shows, what its rows offer."""

    key: str
    title: str
    op: str
    columns: tuple[str, ...]
    explain: str
    args: dict = field(default_factory=dict)
    actions: tuple[RowAction, ...] = ()
    #: the tab's title counts rows where this is true ("Approvals (2)"); None: no count
    counts: Callable[[dict], bool] | None = None
    #: the rows in an answer (most answers are the list itself)
    rows: Callable[[Any], list] = lambda answer: answer if isinstance(answer, list) else []
    #: what names a row, and what orders the rows (newest first)
    key_column: str = "id"
    order_column: str = "created"


def _pending(row: dict) -> bool:
    return row.get("state") == "pending"


def _running(row: dict) -> bool:
    return row.get("state") in ("running", "held")


APPROVALS = OpsTab(
    "approvals", "Approvals", "approvals.list",
    ("created", "state", "summary", "requester_name", "reason", "expires", "decided_name", "decided_reason", "id"),
    "Actions that wait for a second operator. You cannot approve or deny your own; both names and both reasons "
    "are kept in the audit trail.",
    args={"state": "all", "limit": 200},
    actions=(
        RowAction("Approve", "approvals.decide", lambda row: {"id": row["id"], "approve": True},
                  "Lets {summary} go ahead, asked by {requester_name}: {reason}", destructive=True, applies=_pending),
        RowAction("Deny", "approvals.decide", lambda row: {"id": row["id"], "approve": False},
                  "Ends {summary} unrun, asked by {requester_name}: {reason}", applies=_pending),
    ),
    counts=_pending,
)

BULK_RUNS = OpsTab(
    "bulk", "Bulk runs", "bulk.list",
    ("created", "state", "name", "selector", "count", "counts", "sender", "why", "id"),
    "One command to many agents (ems send SELECTOR ...): paced, with canaries and a halt on failures.",
    args={"limit": 200},
    actions=(
        RowAction("Cancel run", "bulk.cancel", lambda row: {"id": row["id"]},
                  "Stops run {id} ({name} on {selector}): nothing more starts; what already runs finishes.",
                  destructive=True, applies=_running),
    ),
    counts=_running,
)

INBOX = OpsTab(
    "inbox", "Inbox", "inbox.list",
    ("ts", "read", "severity", "kind", "state", "title", "target", "text", "id"),
    "Alerts and approval requests for you (the alerts service; ems inbox). Approval requests are decided in "
    "the Approvals tab.",
    args={"limit": 200},
    actions=(
        RowAction("Mark read", "inbox.read", lambda row: {"ids": [row["id"]]}, "", applies=lambda row: not row.get("read"),
                  needs_reason=False),
        RowAction("Mark all read", "inbox.read", lambda row: {"all": True}, "", needs_reason=False),
    ),
    counts=lambda row: not row.get("read"),
    order_column="ts",
)

ALERTS = OpsTab(
    "alerts", "Alerts", "alerts.list",
    ("opened_at", "state", "severity", "rule", "target", "title", "text", "acked_name", "ack_reason", "suppressed", "id"),
    "Open alerts first, then the history: suppressed ones say which operator's action explained them.",
    args={"all": True, "limit": 200},
    actions=(
        RowAction("Acknowledge", "alerts.ack", lambda row: {"id": row["id"]},
                  "Acknowledges {title} on {target}: your name and reason are kept with it.",
                  applies=lambda row: row.get("state") == "open" and not row.get("acked_by")),
    ),
    counts=lambda row: row.get("state") == "open",
    order_column="opened_at",
)

PLAYBOOKS = OpsTab(
    "playbooks", "Playbooks", "playbooks.list",
    ("name", "steps", "description"),
    "Ordered template steps run per target (ems playbook add / run NAME SELECTOR / show RUN). Admins define them.",
    key_column="name", order_column="updated",
)

def _schedule_action(label: str, op: str, explain: str, applies: Callable[[dict], bool], destructive: bool = False) -> RowAction:
    return RowAction(label, op, lambda row: {"id": row["id"]}, explain, destructive=destructive, applies=applies)


SCHEDULES = OpsTab(
    "schedules", "Schedules", "schedules.list",
    ("name", "state", "next_due_text", "cron", "tz", "op", "owner_name", "reason", "why", "id"),
    "Runs the broker starts at a time or on a cron expression, as the person who made them (ems schedule add). "
    "Missed while the broker was down: skipped, or run once, as each schedule says.",
    args={"limit": 500},
    actions=(
        _schedule_action("Pause", "schedules.pause", "Pauses schedule {name}: no slot starts until it is resumed.",
                         lambda row: row.get("state") == "enabled"),
        _schedule_action("Resume", "schedules.resume", "Resumes schedule {name} from its next slot (missed ones are not made up).",
                         lambda row: row.get("state") == "paused"),
        _schedule_action("Remove", "schedules.remove", "Deletes schedule {name}; runs it already started go on.",
                         lambda row: True, destructive=True),
    ),
    counts=lambda row: row.get("state") == "paused",
)

BROADCASTS = OpsTab(
    "broadcasts", "Broadcasts", "broadcast.list",
    ("created", "state", "person", "selector", "count", "counts", "text", "reason", "id"),
    "One message to many users (ems broadcast send SELECTOR TEXT): who has it delivered, who has read it.",
    args={"limit": 200},
    actions=(
        RowAction("Cancel broadcast", "broadcast.cancel", lambda row: {"id": row["id"]},
                  "Stops broadcast {id}: recipients not reached yet never get it; what was shown stays shown.",
                  destructive=True, applies=lambda row: row.get("state") == "open"),
    ),
)

TEMPLATES = OpsTab(
    "templates", "Templates", "templates.list",
    ("name", "command", "params", "approval", "description"),
    "Named commands with typed parameters (ems template add / run). Admins define them.",
    key_column="name", order_column="updated",
)

#: the tabs, in the order shown
OPS_TABS: tuple[OpsTab, ...] = (INBOX, APPROVALS, ALERTS, BULK_RUNS, SCHEDULES, BROADCASTS, PLAYBOOKS, TEMPLATES)
