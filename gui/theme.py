"""Dark and light palettes for the console (Fusion style, so they look the same everywhere)."""
from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from gui import qtcompat  # noqa: F401  (guards the Qt binding before any Qt call)

DARK = "dark"
LIGHT = "light"

_DARK_COLOURS = {
    QPalette.ColorRole.Window: "#1f2329",
    QPalette.ColorRole.WindowText: "#e6edf3",
    QPalette.ColorRole.Base: "#161a1f",
    QPalette.ColorRole.AlternateBase: "#242a31",
    QPalette.ColorRole.ToolTipBase: "#2d333b",
    QPalette.ColorRole.ToolTipText: "#e6edf3",
    QPalette.ColorRole.PlaceholderText: "#8b949e",
    QPalette.ColorRole.Text: "#e6edf3",
    QPalette.ColorRole.Button: "#2a3038",
    QPalette.ColorRole.ButtonText: "#e6edf3",
    QPalette.ColorRole.BrightText: "#ff7b72",
    QPalette.ColorRole.Light: "#3b434d",
    QPalette.ColorRole.Midlight: "#323941",
    QPalette.ColorRole.Mid: "#3d444d",
    QPalette.ColorRole.Dark: "#111418",
    QPalette.ColorRole.Shadow: "#000000",
    QPalette.ColorRole.Highlight: "#2f81f7",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#58a6ff",
    QPalette.ColorRole.LinkVisited: "#bc8cff",
}

_LIGHT_COLOURS = {
    QPalette.ColorRole.Window: "#f3f4f6",
    QPalette.ColorRole.WindowText: "#1f2328",
    QPalette.ColorRole.Base: "#ffffff",
    QPalette.ColorRole.AlternateBase: "#f6f8fa",
    QPalette.ColorRole.ToolTipBase: "#ffffff",
    QPalette.ColorRole.ToolTipText: "#1f2328",
    QPalette.ColorRole.PlaceholderText: "#6e7781",
    QPalette.ColorRole.Text: "#1f2328",
    QPalette.ColorRole.Button: "#eaeef2",
    QPalette.ColorRole.ButtonText: "#1f2328",
    QPalette.ColorRole.BrightText: "#cf222e",
    QPalette.ColorRole.Light: "#ffffff",
    QPalette.ColorRole.Midlight: "#e6e9ed",
    QPalette.ColorRole.Mid: "#d0d7de",
    QPalette.ColorRole.Dark: "#8c959f",
    QPalette.ColorRole.Shadow: "#6e7781",
    QPalette.ColorRole.Highlight: "#0969da",
    QPalette.ColorRole.HighlightedText: "#ffffff",
    QPalette.ColorRole.Link: "#0969da",
    QPalette.ColorRole.LinkVisited: "#8250df",
}


def palette(name: str) -> QPalette:
    """The palette for ``dark`` or ``light``; disabled widgets are greyed."""
    colours = _DARK_COLOURS if name == DARK else _LIGHT_COLOURS
    pal = QPalette()
    for role, colour in colours.items():
        pal.setColor(role, QColor(colour))
    muted = QColor(colours[QPalette.ColorRole.PlaceholderText])
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, muted)
    return pal


def apply(app: QApplication, name: str) -> None:
    """Switch the whole application to theme ``name``."""
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")
    app.setPalette(palette(name))
