"""The child's side of the JSON-lines channel between the agent and its window processes.

The chat window, the privacy bar, the tray icon and the consent prompt run as
child processes (a crash there cannot reach the agent). The agent writes one
JSON object a line to their stdin; they answer one JSON object a line on
stdout. The agent's side is :class:`agent.chat.channel.WindowProcess`.
"""
from __future__ import annotations

import json
import queue
import sys


def read_commands(commands: queue.Queue) -> None:
    """stdin lines -> the command queue; None at end of file (the agent is gone). Run on its own thread."""
    try:
        for line in sys.stdin:
            try:
                command = json.loads(line)
            except ValueError:
                continue
            if isinstance(command, dict):
                commands.put(command)
    except (OSError, ValueError):
        pass
    commands.put(None)


def write_event(event: dict) -> bool:
    """One event line to the agent; False when the agent is gone (stdout closed)."""
    try:
        sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return True
    except (OSError, ValueError):
        return False
