"""The window "What IT did on this computer": ``python -m agent.access_log_window [--data-dir DIR | --log FILE]``.

Opened from the on-screen indicator's "Access log" button (a child
process, like every EMS window, so a toolkit crash never reaches the
agent). It shows the access log as plain sentences, newest first
(:mod:`agent.access_summary`), found where ``ems agent access-log`` finds
it (:mod:`agent.access_location`), with Refresh, Export (Ctrl+E:
writes ``~/ems-access-log-<date>.txt`` and says where), Save as… (a file the
user picks), Close (Esc) and Refresh (F5). Exit status 0, or 2 when no window could be opened.
"""
from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from agent.access_location import find_access_log
from agent.access_log import AccessLog
from agent.access_summary import summary_text
from broker.core.errors import EmsError

WINDOW_TITLE = "What IT did on this computer"
WIDTH_PX, HEIGHT_PX = 760, 480


def export_text(log: AccessLog) -> str:
    """What Export writes: a heading, where the log is, the sentences."""
    return f"{WINDOW_TITLE} (from {log.path}, exported {date.today().isoformat()}), newest first:\n\n" + summary_text(log.entries())


def default_export_path(home: Path | None = None) -> Path:
    """``~/ems-access-log-<date>.txt``, or ``...-2.txt`` and on when that exists."""
    home = Path.home() if home is None else home
    base = home / f"ems-access-log-{date.today().isoformat()}"
    path, n = base.with_suffix(".txt"), 2
    while path.exists():
        path, n = base.parent / f"{base.name}-{n}.txt", n + 1
    return path


class AccessLogWindow:
    """The window's widgets and its buttons' actions."""

    def __init__(self, root, log: AccessLog):
        import tkinter as tk

        self.root, self.log = root, log
        root.title(WINDOW_TITLE)
        root.geometry(f"{WIDTH_PX}x{HEIGHT_PX}")
        root.minsize(480, 240)
        top = tk.Frame(root, padx=12, pady=8)
        top.pack(fill="x")
        tk.Label(top, text=WINDOW_TITLE, font=("TkDefaultFont", 13, "bold"), anchor="w").pack(fill="x")
        tk.Label(top, text=f"Every look at or action on this computer by your IT team, newest first. Kept in {log.path}",
                 anchor="w", justify="left", wraplength=WIDTH_PX - 30).pack(fill="x")
        bottom = tk.Frame(root, padx=12, pady=8)
        bottom.pack(side="bottom", fill="x")  # before the text, so a long log never pushes the buttons away
        body = tk.Frame(root, padx=12)
        body.pack(fill="both", expand=True)
        scroll = tk.Scrollbar(body)
        scroll.pack(side="right", fill="y")
        self.text = tk.Text(body, wrap="word", yscrollcommand=scroll.set, padx=8, pady=6, spacing1=2, spacing3=4,
                            height=10, font=("TkDefaultFont", 10))
        self.text.pack(fill="both", expand=True)
        scroll.config(command=self.text.yview)
        for label, action in (("Close", root.destroy), ("Save as\u2026", self.save_as), ("Export", self.export),
                              ("Refresh", self.refresh)):
            tk.Button(bottom, text=label, command=action).pack(side="right", padx=(6, 0))
        self.status = tk.Label(bottom, text="", anchor="w", width=1)  # takes the room the buttons leave
        self.status.pack(side="left", fill="x", expand=True)
        root.bind("<Escape>", lambda _e: root.destroy())
        root.bind("<Control-e>", lambda _e: self.export())
        root.bind("<F5>", lambda _e: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """Read the log again and show its sentences."""
        try:
            content = summary_text(self.log.entries())
        except EmsError as exc:
            content = str(exc)
        self.text.config(state="normal")
        self.text.delete("1.0", "end")
        self.text.insert("1.0", content)
        self.text.config(state="disabled")

    def export(self) -> None:
        """Write the sentences to ``~/ems-access-log-<date>.txt`` and say where."""
        self._write(default_export_path())

    def save_as(self) -> None:
        """Write the sentences to a file the user picks."""
        from tkinter import filedialog

        chosen = filedialog.asksaveasfilename(parent=self.root, title="Export the access log",
                                              initialfile=default_export_path().name, defaultextension=".txt")
        if chosen:
            self._write(Path(chosen))

    def _write(self, path: Path) -> None:
        try:
            path.write_text(export_text(self.log), encoding="utf-8")
        except (OSError, EmsError) as exc:
            self.status.config(text=f"Could not export: {exc}")
            return
        home = str(Path.home())
        shown = "~" + str(path)[len(home):] if str(path).startswith(home + "/") else str(path)
        self.status.config(text=f"Exported to {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.access_log_window", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="an agent data dir to read instead of the usual places")
    parser.add_argument("--log", help="an access-log file to read")
    args = parser.parse_args(argv)
    log = AccessLog(Path(args.log) if args.log else find_access_log(args.data_dir))
    try:
        import tkinter as tk

        root = tk.Tk(className="EMSAccessLog")
    except Exception as exc:  # ImportError or TclError: nowhere to show it
        sys.stderr.write(f"EMS access log window: cannot open a window: {exc}\n")
        return 2
    AccessLogWindow(root, log)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
