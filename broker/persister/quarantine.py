"""Ingest limits: what a record may hold before the store keeps it, and the
quarantine for what does not.

Every record the persister takes (an agent's message or BATCH record, a
broker journal record, a service's event) is checked by
:func:`broker.core.bounds.tree_problem` before anything is stored: nesting depth,
item count, string and bytes sizes, int64 integers, string map keys. A
record that fails is not stored as what it claims to be; instead a
``quarantine`` row keeps only what is safe to keep:

* who sent it (the authenticated client id), its message id, its kind and
  topic, its size in bytes and why it was refused, and when it arrived;
* a SHA-256 of the raw body, so repeats of one payload can be told apart.

The body itself is dropped, not sealed: it failed the limits precisely
because decoding or walking it is dangerous, nothing should ever read it
back, and keeping it would keep whatever personal data it carries with no
reader and no retention story. The quarantine row is committed like any
record and then acknowledged, so the agent deletes it from its outbox
instead of resending it forever.
"""
from __future__ import annotations

import hashlib
import time

from broker.core.bounds import TreeLimits, tree_problem

#: the record kind (and history kind) of quarantine rows
QUARANTINE = "quarantine"
DEFAULT_LIMITS = TreeLimits()


def problem(data, limits: TreeLimits = DEFAULT_LIMITS) -> str | None:
    """Why decoded ``data`` may not be stored, or None."""
    return tree_problem(data, limits)


def quarantine_data(kind: str, topic: str, body: bytes, reason: str) -> dict:
    """The ``data`` of a quarantine record: what is kept of a refused body."""
    return {
        "kind": kind,
        "topic": topic,
        "size": len(body),
        "reason": reason[:200],
        "sha256": hashlib.sha256(body).hexdigest(),
        "received": time.time(),
    }
