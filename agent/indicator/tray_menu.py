"""The tray icon's menu where the tray backend has none (XEmbed trays on X11): a Tk popup menu.

:class:`PopupMenu` owns a Tk interpreter on its own thread (every Tk call is
made there); :meth:`PopupMenu.open` posts the entries at the pointer, and
once the menu is on screen it reports ``{"event": "shown", "count": n,
"buttons": {"access_log": [x, y, w, h], "end:KEY": [...]}}``, like the
privacy bar does for its buttons.
"""
from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable

PUMP_MS = 50


class PopupMenu:
    """Posts menus (label, event or None, button name; an empty label is a separator) at the pointer; a click on an entry sends its event."""

    def __init__(self, emit: Callable[..., None]):
        self.emit = emit
        self.requests: queue.Queue = queue.Queue()
        self.root = None
        self.menu = None
        threading.Thread(target=self._run, name="tray-menu", daemon=True).start()

    def open(self, entries: list, count: int) -> None:
        """Show ``entries`` (``count`` accesses) at the pointer; called from any thread."""
        self.requests.put((entries, count))

    def close(self) -> None:
        self.requests.put(None)

    # -- the Tk thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            import tkinter

            self.root = tkinter.Tk(className="EMSTrayMenu")
        except Exception as exc:  # ImportError or TclError: no menu, the icon stays
            sys.stderr.write(f"EMS tray indicator: cannot open its menu: {exc}\n")
            return
        self.root.withdraw()
        self.root.after(PUMP_MS, self._pump)
        self.root.mainloop()

    def _pump(self) -> None:
        request = ()
        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                break
            if request is None:
                self.root.destroy()
                return
        if request:
            self._post(*request)
        self.root.after(PUMP_MS, self._pump)

    def _post(self, entries: list, count: int) -> None:
        import tkinter

        if self.menu is not None:
            self.menu.unpost()
            self.menu.destroy()
        self.menu = menu = tkinter.Menu(self.root, tearoff=0)
        places: dict[str, int] = {}
        for label, event, name in entries:
            if not label:
                menu.add_separator()
            elif event is None:
                menu.add_command(label=label, state="disabled")
            else:
                menu.add_command(label=label, command=lambda e=event: self.emit(**e))
            if name:
                places[name] = menu.index("end")
        menu.tk_popup(*self.root.winfo_pointerxy())
        self.root.after(PUMP_MS, lambda: self._report(menu, places, count))

    def _report(self, menu, places: dict[str, int], count: int) -> None:
        """Once the menu is on screen: where its entries are."""
        if menu is not self.menu:
            return
        if not menu.winfo_viewable():
            self.root.after(PUMP_MS, lambda: self._report(menu, places, count))
            return
        menu.update_idletasks()
        last = menu.index("end")
        buttons = {}
        for name, index in places.items():
            top = menu.yposition(index)
            bottom = menu.yposition(index + 1) if index < last else menu.winfo_height()
            buttons[name] = [menu.winfo_rootx(), menu.winfo_rooty() + top, menu.winfo_width(), bottom - top]
        self.emit(event="shown", count=count, buttons=buttons)
