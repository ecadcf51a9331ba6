"""A scriptable test pattern on a real X display, for tests and benchmarks.

:class:`Pattern` runs this file (``python bench/harness/pattern.py``: stdlib
only, so it needs no checkout on the path) on a display:
a borderless Tk window covering the screen, a real X client drawing real
pixels. It is scripted with one JSON command per line on stdin and answers
each on stdout once the X server has drawn it (Tk redraws, then a
round trip to the server), so a screen grab after the answer sees the
change::

    with Xvfb(1280, 720) as x, Pattern(x.display, 1280, 720) as p:
        p.rect("a", 100, 100, 200, 120, "#ff0000")   # create or update
        p.rect("a", 100, 100, 200, 120, "#0000ff")   # recolour: exactly that box changes
        p.window("doc", 40, 40, 800, 600)            # a text "window"
        p.scroll("doc", step_px=8, interval_ms=40)   # ...scrolling
        p.move("doc", dx=6, interval_ms=40, x_max=900)

Animations run inside the Tk process (``after`` timers), so the screen
keeps changing while the test or benchmark does something else.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time

#: words for the text in windows: deterministic content for repeatable benchmarks
_WORDS = ("the agent reports events logs and security records to the broker which routes them to the "
          "persister operators watch screens send commands and read history over one bus frames flow only "
          "while someone watches").split()


class PatternError(RuntimeError):
    """The pattern process failed, refused a command or did not answer in time."""


class Pattern:
    """Driver of one pattern process on ``display``."""

    def __init__(self, display: str, width: int, height: int, background: str = "#202020", timeout_s: float = 10.0):
        self.display, self.width, self.height, self.initial_background = display, width, height, background
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen | None = None
        self._buf = b""
        self._errors = None

    def start(self) -> "Pattern":
        self._errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--width", str(self.width), "--height", str(self.height),
             "--background", self.initial_background],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errors,
            env={**os.environ, "DISPLAY": self.display},
        )
        try:
            self.sync()
        except BaseException:
            self.close()
            raise
        return self

    # -- commands ---------------------------------------------------------------
    def sync(self) -> None:
        """Return once everything drawn so far is on the screen."""
        self._call("sync")

    def background(self, fill: str) -> None:
        self._call("background", fill=fill)

    def rect(self, name: str, x: int, y: int, w: int, h: int, fill: str) -> None:
        """Create or update a filled rectangle covering exactly ``x..x+w-1``, ``y..y+h-1``."""
        self._call("rect", name=name, x=x, y=y, w=w, h=h, fill=fill)

    def window(self, name: str, x: int, y: int, w: int, h: int, lines: int = 200, seed: int = 1,
               fill: str = "#ffffff", title: str = "") -> None:
        """A window-like child: a title bar and ``lines`` of deterministic text."""
        self._call("window", name=name, x=x, y=y, w=w, h=h, lines=lines, seed=seed, fill=fill, title=title or name)

    def scroll(self, name: str, step_px: int = 8, interval_ms: int = 40) -> None:
        """Scroll a window's text by ``step_px`` every ``interval_ms`` (wrapping at the end)."""
        self._call("scroll", name=name, step_px=step_px, interval_ms=interval_ms)

    def scroll_by(self, name: str, px: int) -> None:
        """Scroll a window's text down by ``px`` pixels now (content moves up)."""
        self._call("scroll_by", name=name, px=px)

    def move(self, name: str, dx: int = 0, dy: int = 0, interval_ms: int = 40, x_max: int | None = None,
             y_max: int | None = None) -> None:
        """Move a window by ``dx, dy`` every ``interval_ms``, bouncing back at ``x_max`` / ``y_max``."""
        self._call("move", name=name, dx=dx, dy=dy, interval_ms=interval_ms, x_max=x_max, y_max=y_max)

    def place(self, name: str, x: int, y: int) -> None:
        """Move a window to ``x, y`` now."""
        self._call("place", name=name, x=x, y=y)

    def stop(self, name: str | None = None) -> None:
        """Stop the animations of ``name`` (all if None)."""
        self._call("stop", name=name)

    def delete(self, name: str) -> None:
        self._call("delete", name=name)

    def clear(self) -> None:
        """Stop every animation and remove everything drawn."""
        self._call("clear")

    # -- process --------------------------------------------------------------------
    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.stdin.write(b'{"op": "quit"}\n')
                    proc.stdin.flush()
                except OSError:
                    pass
                try:
                    proc.wait(self.timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(self.timeout_s)
            for pipe in (proc.stdin, proc.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def __enter__(self) -> "Pattern":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, op: str, **args) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            raise PatternError(f"the pattern process is not running{self._stderr()}")
        try:
            self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise PatternError(f"the pattern process is gone: {exc}{self._stderr()}") from exc
        answer = json.loads(self._read_line())
        if not answer.get("ok"):
            raise PatternError(f"{op}: {answer.get('error')}")
        return answer

    def _read_line(self) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PatternError(f"no answer from the pattern process within {self.timeout_s} s{self._stderr()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise PatternError(f"the pattern process exited{self._stderr()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _stderr(self) -> str:
        if self._errors is None:
            return ""
        self._errors.seek(0)
        text = self._errors.read().decode(errors="replace").strip()
        return f": {text[-800:]}" if text else ""


# -- the X client itself (runs in its own process) ------------------------------------
class _Screen:
    def __init__(self, width: int, height: int, background: str):
        import tkinter

        self.tk = tkinter
        self.root = tkinter.Tk()
        self.root.overrideredirect(True)
        self.root.geometry(f"{width}x{height}+0+0")
        self.canvas = tkinter.Canvas(self.root, width=width, height=height, bg=background, highlightthickness=0, bd=0)
        self.canvas.place(x=0, y=0)
        self.items: dict[str, int] = {}
        self.windows: dict[str, object] = {}
        self.timers: dict[tuple[str, str], str] = {}  # (name, animation) -> Tk timer
        self._buf = b""
        self.root.tk.createfilehandler(sys.stdin.fileno(), tkinter.READABLE, self._readable)

    def run(self) -> None:
        self.root.mainloop()

    def _readable(self, fd, _mask) -> None:
        chunk = os.read(fd, 65536)
        if not chunk:
            self.root.destroy()
            return
        self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self._command(line)

    def _command(self, line: bytes) -> None:
        try:
            cmd = json.loads(line)
            op = cmd.pop("op")
            if op == "quit":
                self.root.destroy()
                return
            getattr(self, "op_" + op)(**cmd)
            self.root.update_idletasks()
            self.root.winfo_pointerxy()  # a round trip: the server has drawn everything before it
            answer = {"ok": True}
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    def op_sync(self) -> None:
        pass

    def op_background(self, fill: str) -> None:
        self.canvas.configure(bg=fill)

    def op_rect(self, name: str, x: int, y: int, w: int, h: int, fill: str) -> None:
        # Tk fills a rectangle from x1, y1 up to, not including, x2, y2
        if name in self.items:
            self.canvas.coords(self.items[name], x, y, x + w, y + h)
            self.canvas.itemconfigure(self.items[name], fill=fill)
        else:
            self.items[name] = self.canvas.create_rectangle(x, y, x + w, y + h, fill=fill, outline="")

    def op_window(self, name: str, x: int, y: int, w: int, h: int, lines: int, seed: int, fill: str, title: str) -> None:
        if name in self.windows:
            self.windows[name].destroy()
        frame = self.tk.Frame(self.root, bd=0, highlightthickness=0, bg="#2b5797")
        frame.place(x=x, y=y, width=w, height=h)
        self.tk.Label(frame, text=title, bg="#2b5797", fg="#ffffff", anchor="w").place(x=0, y=0, width=w, height=24)
        text = self.tk.Canvas(frame, bg=fill, highlightthickness=0, bd=0)
        text.place(x=0, y=24, width=w, height=h - 24)
        rng = random.Random(seed)
        line_h = 18
        for i in range(lines):
            words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 14)))
            text.create_text(8, 4 + i * line_h, text=f"{i + 1:4d}  {words}", anchor="nw", fill="#000000")
        text.configure(scrollregion=(0, 0, w, 8 + lines * line_h))
        frame.text = text
        self.windows[name] = frame

    def op_scroll(self, name: str, step_px: int, interval_ms: int) -> None:
        text = self.windows[name].text
        text.configure(yscrollincrement=step_px)

        def step() -> None:
            if text.yview()[1] >= 1.0:
                text.yview_moveto(0)
            else:
                text.yview_scroll(1, "units")
            self._after(name, "scroll", interval_ms, step)

        self._after(name, "scroll", interval_ms, step)

    def op_scroll_by(self, name: str, px: int) -> None:
        text = self.windows[name].text
        text.configure(yscrollincrement=px)
        text.yview_scroll(1, "units")

    def op_move(self, name: str, dx: int, dy: int, interval_ms: int, x_max: int | None, y_max: int | None) -> None:
        frame = self.windows[name]
        info = frame.place_info()
        pos = {"x": int(info["x"]), "y": int(info["y"]), "dx": dx, "dy": dy}
        lo = dict(pos)

        def step() -> None:
            for axis, limit in (("x", x_max), ("y", y_max)):
                d = "d" + axis
                nxt = pos[axis] + pos[d]
                if (limit is not None and nxt > limit) or nxt < lo[axis]:
                    pos[d] = -pos[d]
                    nxt = pos[axis] + pos[d]
                pos[axis] = nxt
            frame.place_configure(x=pos["x"], y=pos["y"])
            self._after(name, "move", interval_ms, step)

        self._after(name, "move", interval_ms, step)

    def op_place(self, name: str, x: int, y: int) -> None:
        self.windows[name].place_configure(x=x, y=y)

    def op_stop(self, name: str | None) -> None:
        for key in [k for k in self.timers if name is None or k[0] == name]:
            self.root.after_cancel(self.timers.pop(key))

    def op_delete(self, name: str) -> None:
        self.op_stop(name)
        if name in self.items:
            self.canvas.delete(self.items.pop(name))
        if name in self.windows:
            self.windows.pop(name).destroy()

    def op_clear(self) -> None:
        for name in list(self.items) + list(self.windows):
            self.op_delete(name)
        self.op_stop(None)

    def _after(self, name: str, kind: str, interval_ms: int, fn) -> None:
        self.timers[(name, kind)] = self.root.after(interval_ms, fn)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="EMS screen test pattern (a Tk X client scripted on stdin)")
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--background", default="#202020")
    args = parser.parse_args(argv)
    _Screen(args.width, args.height, args.background).run()


if __name__ == "__main__":
    main()
