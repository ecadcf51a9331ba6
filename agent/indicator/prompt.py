"""The consent prompt: ``python -m agent.indicator.prompt --timeout S -- QUESTION REASON``.

A window in the middle of the screen, above everything: "Jane Doe wants to
control this computer", the reason, [Allow] [Decline] and how long is left.
It prints one JSON line, ``{"answer": "allow" | "decline" | "timeout"}``,
and exits 0. Closing the window declines; no answer in time is "timeout".
Exit status 2 when no window could be opened.
"""
from __future__ import annotations

import argparse
import sys

from agent.child_lines import write_event

WINDOW_TITLE = "EMS: permission asked"
WIDTH_PX = 520
BG = "#fff4cc"


class ConsentPrompt:
    """The Tk side: the question, the reason, two buttons and a countdown."""

    def __init__(self, root, question: str, reason: str, timeout_s: float):
        import tkinter as tk

        self.root = root
        self.answer = "timeout"
        self.left_s = max(1, int(timeout_s))
        root.title(WINDOW_TITLE)
        root.attributes("-topmost", True)
        root.resizable(False, False)
        root.protocol("WM_DELETE_WINDOW", lambda: self.done("decline"))
        frame = tk.Frame(root, padx=18, pady=14, bg=BG, highlightthickness=2, highlightbackground="#c98a00")
        frame.pack(fill="both", expand=True)
        tk.Label(frame, text=question, font=("TkDefaultFont", 12, "bold"), bg=BG, anchor="w", justify="left",
                 wraplength=WIDTH_PX - 40).pack(fill="x")
        tk.Label(frame, text=f"Reason: {reason}" if reason else "No reason was given.", bg=BG, anchor="w", justify="left",
                 wraplength=WIDTH_PX - 40).pack(fill="x", pady=(6, 4))
        self.countdown = tk.Label(frame, bg=BG, fg="#555", anchor="w")
        self.countdown.pack(fill="x", pady=(0, 10))
        buttons = tk.Frame(frame, bg=BG)
        buttons.pack(fill="x")
        tk.Button(buttons, text="Decline", width=10, command=lambda: self.done("decline")).pack(side="right")
        tk.Button(buttons, text="Allow", width=10, command=lambda: self.done("allow")).pack(side="right", padx=(0, 8))
        root.bind("<Escape>", lambda _e: self.done("decline"))
        root.update_idletasks()
        height = root.winfo_reqheight()
        x = max(0, (root.winfo_screenwidth() - WIDTH_PX) // 2)
        y = max(0, (root.winfo_screenheight() - height) // 3)
        root.geometry(f"{WIDTH_PX}x{height}+{x}+{y}")
        self.tick()

    def tick(self) -> None:
        if self.left_s <= 0:
            self.done("timeout")
            return
        self.countdown.configure(text=f"If you do not answer within {self.left_s} s, the answer is no.")
        self.left_s -= 1
        self.root.after(1000, self.tick)

    def done(self, answer: str) -> None:
        self.answer = answer
        self.root.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.indicator.prompt", description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("question")
    parser.add_argument("reason")
    args = parser.parse_args(argv)
    try:
        import tkinter as tk

        root = tk.Tk(className="EMSConsent")
    except Exception as exc:  # ImportError or TclError: nowhere to ask
        sys.stderr.write(f"EMS consent prompt: cannot open a window: {exc}\n")
        return 2
    prompt = ConsentPrompt(root, args.question, args.reason, args.timeout)
    root.mainloop()
    write_event({"answer": prompt.answer})
    return 0


if __name__ == "__main__":
    sys.exit(main())
