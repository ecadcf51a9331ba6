"""The chat window: ``python -m agent.chat.window --operator NAME``.

One window per operator conversation, at the bottom right of the screen.
It talks JSON lines with the agent (see :mod:`agent.chat.channel`):

stdin (agent -> window)::

    {"cmd": "show", "message_id": "...", "text": "...", "ts": 1700000000.0}
    {"cmd": "delete", "message_id": "..."}
    {"cmd": "close"}

stdout (window -> agent)::

    {"event": "shown", "message_id": "..."}    the message is on screen
    {"event": "read", "message_id": "..."}     the user pressed Read (or replied)
    {"event": "reply", "text": "...", "in_reply_to": "..."}
    {"event": "closed"}                        the window is going away

Messages appear in the order they arrive. "Read" marks every message on
screen as read and closes the window; "Send" (or Enter) sends the reply
and marks what is on screen as read. When the agent goes away (end of
stdin) the window stays, but replies are switched off.
"""
from __future__ import annotations

import argparse
import queue
import sys
import threading
import time

from agent.child_lines import read_commands, write_event

WIDTH_PX = 440
HEIGHT_PX = 300
MARGIN_PX = 16
MAX_REPLY_CHARS = 4000
TITLE_PREFIX = "EMS message from "
PUMP_MS = 40


class ChatWindow:
    """The Tk side: a transcript, a reply line, Send and Read."""

    def __init__(self, root, operator: str, commands: queue.Queue):
        import tkinter as tk

        self.root = root
        self.operator = operator
        self.commands = commands
        self.on_screen: list[str] = []  # message ids, in order
        self.unread: list[str] = []
        self.unannounced: list[str] = []  # shown in the widget, "shown" not yet reported
        self.connected = True
        self.closing = False

        root.title(TITLE_PREFIX + operator)
        root.attributes("-topmost", True)
        root.protocol("WM_DELETE_WINDOW", self.close)
        bottom = tk.Frame(root, padx=8, pady=6)
        bottom.pack(side="bottom", fill="x")
        self.status = tk.Label(bottom, text="", anchor="w", fg="#555")
        self.status.pack(side="left", fill="x", expand=True)
        tk.Button(bottom, text="Read", width=8, command=self.read).pack(side="right")
        reply = tk.Frame(root, padx=8)
        reply.pack(side="bottom", fill="x")
        self.send_button = tk.Button(reply, text="Send", width=8, command=self.send_reply)
        self.send_button.pack(side="right")
        self.entry = tk.Entry(reply)
        self.entry.pack(side="left", fill="x", expand=True, padx=(0, 6))
        self.entry.bind("<Return>", lambda _e: self.send_reply())
        self.text = tk.Text(root, wrap="word", height=10, padx=8, pady=6, state="disabled", relief="flat", bg="#f7f7f7")
        self.text.tag_configure("meta", foreground="#666")
        self.text.tag_configure("mine", foreground="#225")
        self.text.pack(side="top", fill="both", expand=True, padx=8, pady=(8, 6))
        x = max(0, root.winfo_screenwidth() - WIDTH_PX - MARGIN_PX)
        y = max(0, root.winfo_screenheight() - HEIGHT_PX - 3 * MARGIN_PX)
        root.geometry(f"{WIDTH_PX}x{HEIGHT_PX}+{x}+{y}")
        self.entry.focus_set()
        root.after(PUMP_MS, self.pump)

    # -- talking to the agent ---------------------------------------------------------
    def emit(self, **event) -> None:
        if not self.connected:
            return
        if not write_event(event):
            self.disconnected()

    def pump(self) -> None:
        """Apply the agent's commands, report what became visible; runs every PUMP_MS."""
        while not self.closing:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                break
            if command is None:
                self.disconnected()
                continue
            self.apply(command)
        if self.closing:
            return
        if self.unannounced and self.root.winfo_viewable():
            for message_id in self.unannounced:
                self.emit(event="shown", message_id=message_id)
            self.unannounced.clear()
        self.root.after(PUMP_MS, self.pump)

    def apply(self, command: dict) -> None:
        kind = command.get("cmd")
        if kind == "show":
            self.show(str(command.get("message_id", "")), str(command.get("text", "")), command.get("ts"))
        elif kind == "delete":
            self.delete(str(command.get("message_id", "")))
        elif kind == "close":
            self.close()

    # -- the messages -------------------------------------------------------------------
    def show(self, message_id: str, text: str, ts) -> None:
        if not message_id or message_id in self.on_screen:
            return
        when = time.strftime("%H:%M", time.localtime(ts if isinstance(ts, (int, float)) else time.time()))
        tag = "m-" + message_id
        self._append((f"{when}  {self.operator}\n", ("meta", tag)), (text + "\n\n", (tag,)))
        self.on_screen.append(message_id)
        self.unread.append(message_id)
        self.unannounced.append(message_id)
        self.root.deiconify()
        self.root.lift()

    def delete(self, message_id: str) -> None:
        if message_id not in self.on_screen:
            return
        ranges = self.text.tag_ranges("m-" + message_id)
        self.text.configure(state="normal")
        if ranges:
            self.text.delete(ranges[0], ranges[-1])
        self.text.configure(state="disabled")
        self.on_screen.remove(message_id)
        for pending in (self.unread, self.unannounced):
            if message_id in pending:
                pending.remove(message_id)
        if not self.on_screen:
            self.close()

    def _append(self, *parts) -> None:
        self.text.configure(state="normal")
        for chunk, tags in parts:
            self.text.insert("end", chunk, tags)
        self.text.configure(state="disabled")
        self.text.see("end")

    # -- the user ----------------------------------------------------------------------
    def mark_read(self) -> None:
        for message_id in self.unread:
            self.emit(event="read", message_id=message_id)
        self.unread.clear()

    def read(self) -> None:
        self.mark_read()
        self.close()

    def send_reply(self) -> None:
        text = self.entry.get().strip()
        if not text or not self.connected:
            return
        if len(text) > MAX_REPLY_CHARS:
            self.status.configure(text=f"A reply can have at most {MAX_REPLY_CHARS} characters.")
            return
        in_reply_to = self.on_screen[-1] if self.on_screen else None
        self.mark_read()
        self.emit(event="reply", text=text, in_reply_to=in_reply_to)
        self.entry.delete(0, "end")
        self._append((f"{time.strftime('%H:%M')}  You\n", ("meta",)), (text + "\n\n", ("mine",)))
        self.status.configure(text="Reply sent.")

    def disconnected(self) -> None:
        if not self.connected:
            return
        self.connected = False
        self.entry.configure(state="disabled")
        self.send_button.configure(state="disabled")
        self.status.configure(text="The EMS agent has stopped: replies cannot be sent.")

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.emit(event="closed")
        self.root.destroy()



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.chat.window", description="EMS chat window (talks JSON lines on stdin/stdout)")
    parser.add_argument("--operator", required=True)
    args = parser.parse_args(argv)
    try:
        import tkinter as tk

        root = tk.Tk(className="EMSChat")
    except Exception as exc:  # ImportError or TclError: nowhere to show it
        sys.stderr.write(f"EMS chat window: cannot open a window: {exc}\n")
        return 2
    commands: queue.Queue = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), name="stdin", daemon=True).start()
    ChatWindow(root, args.operator, commands)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
