"""A notice window: ``python -m agent.notice.window [--seconds N] [--slot K] -- TITLE TEXT``.

A small always-on-top Tk window in the top-right corner of the screen with
the notice and an OK button; it closes itself after ``--seconds``. ``--slot``
stacks it below notices that are still open. Exit status 0, or 2 when no
window could be opened (no display, no Tk).
"""
from __future__ import annotations

import argparse
import sys

WIDTH_PX = 380
MARGIN_PX = 16
#: vertical room reserved per stacked notice
SLOT_PX = 150
WINDOW_TITLE_PREFIX = "EMS notice: "


def build(root, title: str, text: str, seconds: float, slot: int) -> None:
    """Lay out the notice in ``root`` and schedule its closing."""
    import tkinter as tk

    root.title(WINDOW_TITLE_PREFIX + title)
    root.attributes("-topmost", True)
    root.resizable(False, False)
    frame = tk.Frame(root, padx=14, pady=10, bg="#fff4cc", highlightthickness=2, highlightbackground="#c98a00")
    frame.pack(fill="both", expand=True)
    tk.Label(frame, text=title, font=("TkDefaultFont", 11, "bold"), bg="#fff4cc", anchor="w", justify="left",
             wraplength=WIDTH_PX - 40).pack(fill="x")
    tk.Label(frame, text=text, bg="#fff4cc", anchor="w", justify="left", wraplength=WIDTH_PX - 40).pack(fill="x", pady=(4, 8))
    ok = tk.Button(frame, text="OK", width=8, command=root.destroy)
    ok.pack(side="right")
    root.bind("<Escape>", lambda _e: root.destroy())
    root.update_idletasks()
    height = root.winfo_reqheight()
    x = max(0, root.winfo_screenwidth() - WIDTH_PX - MARGIN_PX)
    y = MARGIN_PX + (slot % 4) * SLOT_PX
    root.geometry(f"{WIDTH_PX}x{height}+{x}+{y}")
    root.after(max(1, int(seconds * 1000)), root.destroy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.notice.window", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--slot", type=int, default=0)
    parser.add_argument("title")
    parser.add_argument("text")
    args = parser.parse_args(argv)
    try:
        import tkinter as tk

        root = tk.Tk(className="EMSNotice")
    except Exception as exc:  # ImportError or TclError: nowhere to show it
        sys.stderr.write(f"EMS notice window: cannot open a window: {exc}\n")
        return 2
    build(root, args.title, args.text, args.seconds, args.slot)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
