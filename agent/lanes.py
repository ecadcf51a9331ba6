"""Command handlers run off the agent's loop, in order within a lane.

The agent's loop must keep polling the bus (heartbeats, acks, live view)
while a command runs: an OS update can take an hour. Handlers therefore
run on worker threads: one *slow* lane for power and update commands and
one lane for everything else, each a single thread so commands of a lane
run in the order they arrived (chat messages stay in order). Handlers never
touch the bus client; their results come back to the loop through
:meth:`CommandLanes.finished`.
"""
from __future__ import annotations

import queue
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

SLOW_COMMANDS = frozenset({"update.check", "update.apply", "power.reboot", "power.shutdown"})


class CommandLanes:
    def __init__(self) -> None:
        self._fast = ThreadPoolExecutor(1, thread_name_prefix="ems-command")
        self._slow = ThreadPoolExecutor(1, thread_name_prefix="ems-command-slow")
        self._done: queue.SimpleQueue[tuple[str, str, str, Future]] = queue.SimpleQueue()
        self.running = 0

    def submit(self, cmd_id: str, name: str, sender: str, work: Callable[[], dict]) -> None:
        """Run ``work`` (returns the result map) in the command's lane."""
        lane = self._slow if name in SLOW_COMMANDS else self._fast
        self.running += 1
        future = lane.submit(work)
        future.add_done_callback(lambda f: self._done.put((cmd_id, name, sender, f)))

    def finished(self) -> list[tuple[str, str, str, dict]]:
        """Commands that completed since the last call: (id, name, sender, result)."""
        out = []
        while True:
            try:
                cmd_id, name, sender, future = self._done.get_nowait()
            except queue.Empty:
                return out
            self.running -= 1
            out.append((cmd_id, name, sender, future.result()))

    def shutdown(self) -> None:
        """Stop taking work; a command still running is left to finish on its own."""
        for lane in (self._fast, self._slow):
            lane.shutdown(wait=False, cancel_futures=True)
