"""``ems gui``: the operator console (PySide6)."""
from __future__ import annotations

import argparse

from broker.core.cli_common import add_data_dir
from broker.core.errors import EmsError


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Open the operator console. It connects with the operator profile in the data dir "
        "(the one `ems up` writes), shows every agent as a tile (online/offline, user, CPU, memory) and, "
        "for the selected one, its stored history (sessions, captures, messages, file operations, "
        "security events, logs, the audit trail) and a CPU/memory chart, kept live from the bus. "
        "Actions (capture, reboot, shutdown, updates) go to the selected client; the disruptive ones ask "
        "for a reason, which the audit trail records. Needs the gui extra (PySide6)."
    )
    p.epilog = (
        "keys:  Ctrl+F search   F5 refresh   Ctrl+1/Ctrl+2 tiles/table   Ctrl+T dark/light\n"
        "       Ctrl+3 tile thumbnails on/off\n"
        "       Ctrl+Shift+C capture   Ctrl+R reboot   Ctrl+Shift+S shut down   Ctrl+U / Ctrl+Shift+U updates"
    )
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add_data_dir(p)
    p.add_argument("--server", help="broker endpoint (default: from the profile)")
    p.add_argument("--theme", choices=["dark", "light"], default="dark", help="colour theme (default %(default)s; Ctrl+T switches)")
    p.add_argument("--thumbnails-s", type=_thumbnail_seconds, default=None, metavar="SECONDS",
                   help="refresh a small picture of the screen on each visible online tile this often (default 15; "
                   "0: none; Ctrl+3 switches). Each agent tells its user who looks and refuses more than its local "
                   "policy allows")
    p.set_defaults(run=run, owns_data_dir=True)


def _thumbnail_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds != 0 and not 5 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 (no thumbnails) or 5 to 3600 seconds")
    return seconds


def run(args) -> int:
    try:
        from gui.app import run_console
        from gui.bus_worker import profile_client_factory
        from gui.thumbnails import ThumbnailConfig
    except ImportError as exc:
        raise EmsError(f"the console needs PySide6 ({exc}): install the gui extra, e.g. "
                       "`.venv/bin/pip install -e '.[gui]'` or `make dev`") from exc
    factory = profile_client_factory(args.data_dir, args.server)  # a bad data dir fails here, before any window
    thumbnails = ThumbnailConfig() if args.thumbnails_s is None else ThumbnailConfig(interval_s=args.thumbnails_s)
    return run_console(factory, theme_name=args.theme, thumbnails=thumbnails)
