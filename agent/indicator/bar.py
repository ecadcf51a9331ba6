"""The privacy bar: ``python -m agent.indicator.bar``.

An always-on-top bar across the bottom of the screen (notices stack at the
top right, so they never cover its buttons) for as long as anyone
views, controls, transfers files or takes thumbnails. One line per access:
who, what, why and since when, with an End button where the agent allows
one; an "Access log" button at the right. The user cannot close the bar
itself: it goes away when the last access ends. It talks JSON lines with the
agent (the same framing as :mod:`agent.chat.channel`):

stdin (agent -> bar)::

    {"cmd": "show", "accesses": [{"key": "...", "text": "Jane Doe is controlling this computer",
                                  "reason": "...", "since": 1700000000.0, "endable": true}, ...]}
    {"cmd": "close"}

stdout (bar -> agent)::

    {"event": "shown", "count": 2,         the bar shows that many accesses; where its buttons are
     "buttons": {"access_log": [x, y, w, h], "end:KEY": [x, y, w, h]}}
    {"event": "end", "key": "..."}         the user pressed End on that line
    {"event": "access_log"}                the user pressed Access log

End of stdin (the agent is gone) closes the bar.
"""
from __future__ import annotations

import queue
import sys
import threading
import time

from agent.child_lines import read_commands, write_event

WINDOW_TITLE = "EMS: your computer is being accessed"
ROW_PX = 34
PAD_PX = 6
PUMP_MS = 50
BG = "#7a1f1f"
FG = "#ffffff"
MAX_TEXT_CHARS = 160


class PrivacyBar:
    """The Tk side: one row per access, the Access log button, nothing the user can dismiss."""

    def __init__(self, root, commands: queue.Queue):
        import tkinter as tk

        self.tk = tk
        self.root = root
        self.commands = commands
        self.closing = False
        self.shown = -1
        self.buttons: dict[str, object] = {}
        root.title(WINDOW_TITLE)
        root.configure(bg=BG)
        root.resizable(False, False)
        root.attributes("-topmost", True)
        try:
            root.attributes("-type", "dock")  # X11: no decorations, kept above by window managers
        except tk.TclError:
            pass
        root.protocol("WM_DELETE_WINDOW", lambda: None)  # only the agent takes the bar away
        side = tk.Frame(root, bg=BG, padx=PAD_PX)
        side.pack(side="right", fill="y")
        self.buttons["access_log"] = tk.Button(side, text="Access log", command=lambda: self.emit(event="access_log"))
        self.buttons["access_log"].pack(side="top", pady=PAD_PX)
        self.rows = tk.Frame(root, bg=BG, padx=PAD_PX)
        self.rows.pack(side="left", fill="both", expand=True)
        self.place(1)
        root.after(PUMP_MS, self.pump)

    def place(self, count: int) -> None:
        """Full screen width at the bottom; as tall as its rows."""
        height = max(1, count) * ROW_PX + 2 * PAD_PX
        self.root.geometry(f"{self.root.winfo_screenwidth()}x{height}+0+{self.root.winfo_screenheight() - height}")

    def show(self, accesses: list) -> None:
        tk = self.tk
        for child in self.rows.winfo_children():
            child.destroy()
        self.buttons = {"access_log": self.buttons["access_log"]}
        for access in accesses:
            if not isinstance(access, dict):
                continue
            row = tk.Frame(self.rows, bg=BG, height=ROW_PX)
            row.pack(side="top", fill="x")
            if access.get("endable"):
                key = str(access.get("key", ""))
                end = self.buttons["end:" + key] = tk.Button(row, text="End", width=6, command=lambda k=key: self.emit(event="end", key=k))
                end.pack(side="right", padx=4)
            tk.Label(row, text=_line(access), bg=BG, fg=FG, anchor="w", font=("TkDefaultFont", 11, "bold")).pack(
                side="left", fill="x", expand=True, pady=4)
        self.place(len(accesses))
        self.root.deiconify()
        self.root.lift()
        self.shown = -1  # reported again once it is on screen

    # -- talking to the agent -------------------------------------------------------
    def emit(self, **event) -> None:
        if not write_event(event):
            self.close()

    def pump(self) -> None:
        while not self.closing:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                break
            if command is None or command.get("cmd") == "close":
                self.close()
            elif command.get("cmd") == "show" and isinstance(command.get("accesses"), list):
                self.show(command["accesses"])
        if self.closing:
            return
        count = len(self.rows.winfo_children())
        if count != self.shown and self.root.winfo_viewable():
            self.root.update_idletasks()  # the buttons' final places
            self.shown = count
            self.emit(event="shown", count=count, buttons={name: _geometry(button) for name, button in self.buttons.items()})
        self.root.after(PUMP_MS, self.pump)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self.root.destroy()


def _geometry(widget) -> list[int]:
    """Where ``widget`` is on the screen: x, y, width, height."""
    return [widget.winfo_rootx(), widget.winfo_rooty(), widget.winfo_width(), widget.winfo_height()]


def _line(access: dict) -> str:
    """"Jane Doe is controlling this computer · Reason: ticket 42 · since 10:02"."""
    text = str(access.get("text", ""))[:MAX_TEXT_CHARS]
    reason = str(access.get("reason", "")).strip()[:MAX_TEXT_CHARS]
    since = access.get("since")
    parts = [text, f"Reason: {reason}" if reason else "No reason given"]
    if isinstance(since, (int, float)):
        parts.append("since " + time.strftime("%H:%M", time.localtime(since)))
    return "  \u00b7  ".join(parts)



def main(argv: list[str] | None = None) -> int:
    try:
        import tkinter as tk

        root = tk.Tk(className="EMSPrivacyBar")
    except Exception as exc:  # ImportError or TclError: nowhere to show it
        sys.stderr.write(f"EMS privacy bar: cannot open a window: {exc}\n")
        return 2
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), name="stdin", daemon=True).start()
    PrivacyBar(root, commands)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
