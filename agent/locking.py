"""A decorator for objects shared by the agent's loop thread and its command lanes."""
from __future__ import annotations

import functools


def serialised(method):
    """Run ``method`` holding ``self._lock`` (the object's one lock)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked
