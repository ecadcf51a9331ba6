"""Grabbing the screen and encoding it as JPEG.

:class:`ScreenSource` is the capability's interface; :class:`MssSource`
implements it with mss on all three platforms (X11 on Linux, GDI on
Windows, CoreGraphics on macOS). :func:`platform_support` is the one place
that knows which platforms can capture and what they need (on Linux an X
display). Nothing here touches a display at import time: without one,
:meth:`ScreenSource.available` answers ``(False, reason)`` and
:meth:`ScreenSource.grab` raises :class:`ScreenUnavailable`.

JPEG encoding uses simplejpeg straight from BGRA with 4:2:0 chroma
subsampling when it is installed, Pillow otherwise (or on request);
resizing (``max_width`` / ``scale``) always goes through Pillow::

    source = MssSource()
    ok, reason = source.available()
    frame = source.grab(1)
    jpeg = encode_jpeg(frame, quality=70, max_width=1280)
"""
from __future__ import annotations

import functools
import io
import logging
import os
import sys
from dataclasses import dataclass
from typing import Mapping, Protocol

from broker.core.errors import EmsError

log = logging.getLogger(__name__)

#: JPEG encoders :func:`encode_jpeg` knows, best first.
ENCODERS = ("simplejpeg", "pillow")


class ScreenUnavailable(EmsError):
    """The screen cannot be captured here (no display, unsupported platform, lost display)."""


@dataclass(slots=True)
class Frame:
    """One grabbed screen: ``bgra`` holds ``height`` rows of ``width * 4`` bytes (B, G, R, A/X).

    ``bgra`` is any bytes-like buffer (mss hands over a fresh ``bytearray``
    per grab, kept as is to avoid an 8 MB copy at 1080p). Treat it as
    read-only.
    """

    width: int
    height: int
    bgra: bytes | bytearray
    monitor: int = 1

    @property
    def stride(self) -> int:
        return self.width * 4

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        """The (R, G, B) value at ``x, y``."""
        o = y * self.stride + x * 4
        b, g, r = self.bgra[o], self.bgra[o + 1], self.bgra[o + 2]
        return r, g, b


class ScreenSource(Protocol):
    """What the agent needs from a screen: is it there, and its pixels."""

    def available(self) -> tuple[bool, str]:
        """``(True, "")`` if :meth:`grab` can work now, else ``(False, reason)``. Never raises."""
        ...

    def grab(self, monitor: int = 1) -> Frame:
        """The current pixels of ``monitor`` (1 = first; 0 = all monitors as one).

        Raises :class:`ScreenUnavailable` if the screen cannot be read and
        :class:`ValueError` for a monitor that does not exist.
        """
        ...

    def close(self) -> None:
        """Release the display connection (the source reopens it when used again)."""
        ...


def platform_support(system: str | None = None, env: Mapping[str, str] | None = None) -> tuple[bool, str]:
    """Whether this platform can capture the screen at all, and if not why.

    The only place with platform knowledge: Linux needs an X display
    (Xorg or XWayland via ``DISPLAY``); Windows and macOS capture through
    mss directly (on Windows the agent must run in the user's session, on
    macOS it needs the Screen Recording permission).
    """
    system = sys.platform if system is None else system
    env = os.environ if env is None else env
    if system.startswith("linux"):
        if env.get("DISPLAY"):
            return True, ""
        if env.get("WAYLAND_DISPLAY"):
            return False, "Wayland session without an X display (DISPLAY is not set); only X11 or XWayland screens can be captured"
        return False, "no X display (DISPLAY is not set): headless machine or nobody logged in graphically"
    if system in ("win32", "darwin"):
        return True, ""
    return False, f"screen capture is not supported on {system}"


class MssSource:
    """:class:`ScreenSource` backed by mss; opens the display lazily and reopens it after a failure.

    On Linux the display is whatever ``DISPLAY`` says at the time of use:
    if it changes (another user session), the connection is reopened.
    Use from one thread.
    """

    def __init__(self) -> None:
        self._sct = None
        self._display: str | None = None

    def available(self) -> tuple[bool, str]:
        try:
            self._open()
        except ScreenUnavailable as exc:
            return False, str(exc)
        return True, ""

    def monitor_count(self) -> int:
        """How many monitors there are (index 0, "all together", not counted)."""
        return len(self._open().monitors) - 1

    def grab(self, monitor: int = 1) -> Frame:
        sct = self._open()
        monitors = sct.monitors
        if type(monitor) is not int or not 0 <= monitor < len(monitors):
            raise ValueError(f"no monitor {monitor!r}: this screen has monitors 1..{len(monitors) - 1} (0 = all together)")
        try:
            shot = sct.grab(monitors[monitor])
        except Exception as exc:  # mss raises ScreenShotError and ctypes/xcb errors
            self.close()
            raise ScreenUnavailable(f"screen grab failed: {exc}") from exc
        return Frame(shot.width, shot.height, shot.raw, monitor)

    def close(self) -> None:
        sct, self._sct = self._sct, None
        if sct is not None:
            try:
                sct.close()
            except Exception as exc:  # a dead display may fail to close cleanly
                log.debug("closing the screen connection: %s", exc)

    def __enter__(self) -> "MssSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self):
        ok, reason = platform_support()
        if not ok:
            self.close()
            raise ScreenUnavailable(reason)
        display = os.environ.get("DISPLAY")
        if self._sct is not None and display != self._display:
            log.info("DISPLAY changed from %s to %s: reopening the screen", self._display, display)
            self.close()
        if self._sct is None:
            try:
                import mss  # lazily: importing must never depend on a display

                sct = mss.MSS()
                count = len(sct.monitors)
            except Exception as exc:
                raise ScreenUnavailable(f"cannot open the screen{_on(display)}: {exc}") from exc
            if count < 2:
                sct.close()
                raise ScreenUnavailable(f"no monitor found{_on(display)}")
            self._sct, self._display = sct, display
        return self._sct


def _on(display: str | None) -> str:
    return f" on display {display}" if display and sys.platform.startswith("linux") else ""


# -- JPEG -------------------------------------------------------------------

@functools.cache
def _simplejpeg() -> tuple | None:
    """``(simplejpeg, numpy)`` if importable, else None (checked once)."""
    try:
        import numpy
        import simplejpeg
    except ImportError as exc:
        log.info("simplejpeg is not available (%s): JPEG encoding falls back to Pillow", exc)
        return None
    return simplejpeg, numpy


def default_encoder() -> str:
    """``"simplejpeg"`` when it is installed, else ``"pillow"``."""
    return "simplejpeg" if _simplejpeg() else "pillow"


def check_quality(quality) -> int:
    """A JPEG quality as an int in 1..95 (Pillow's useful range), or ValueError."""
    if type(quality) is not int or not 1 <= quality <= 95:
        raise ValueError(f"quality must be an integer from 1 to 95, not {quality!r}")
    return quality


def output_size(width: int, height: int, max_width: int | None = None, scale: float | None = None) -> tuple[int, int]:
    """The size a frame is encoded at: ``scale`` first, then capped at ``max_width`` (aspect kept).

    Never enlarges. Raises ValueError for a scale outside (0, 1] or a
    max_width below 1.
    """
    factor = 1.0
    if scale is not None:
        if type(scale) not in (int, float) or not 0 < scale <= 1:
            raise ValueError(f"scale must be a number in (0, 1], not {scale!r}")
        factor = float(scale)
    if max_width is not None:
        if type(max_width) is not int or max_width < 1:
            raise ValueError(f"max_width must be a positive integer, not {max_width!r}")
        factor = min(factor, max_width / width)
    if factor >= 1.0:
        return width, height
    return max(1, round(width * factor)), max(1, round(height * factor))


def encode_jpeg(frame: Frame, quality: int, max_width: int | None = None, scale: float | None = None,
                *, encoder: str | None = None) -> bytes:
    """The frame as JPEG (4:2:0), resized if ``max_width`` / ``scale`` ask for it.

    ``encoder`` is ``"simplejpeg"`` (default when installed) or ``"pillow"``.
    """
    check_quality(quality)
    encoder = _pick(encoder)
    size = output_size(frame.width, frame.height, max_width, scale)
    if size == (frame.width, frame.height):
        return encode_region(frame, 0, 0, frame.width, frame.height, quality, encoder=encoder)
    from PIL import Image

    image = _pil_rgb(frame).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    if encoder == "simplejpeg":
        simplejpeg, numpy = _simplejpeg()
        return simplejpeg.encode_jpeg(numpy.asarray(image), quality=quality, colorspace="RGB", colorsubsampling="420")
    return _pil_save(image, quality)


def encode_region(frame: Frame, x: int, y: int, w: int, h: int, quality: int, *, encoder: str | None = None) -> bytes:
    """The ``w`` x ``h`` rectangle at ``x, y`` of the frame as JPEG (4:2:0), at full resolution.

    With simplejpeg the rectangle is encoded in place from the BGRA buffer
    (no copy); with Pillow its rows are gathered first.
    """
    if not (0 <= x and 0 <= y and 0 < w and 0 < h and x + w <= frame.width and y + h <= frame.height):
        raise ValueError(f"region {x},{y} {w}x{h} is outside the {frame.width}x{frame.height} frame")
    encoder = _pick(encoder)
    if encoder == "simplejpeg":
        simplejpeg, numpy = _simplejpeg()
        pixels = numpy.frombuffer(frame.bgra, numpy.uint8).reshape(frame.height, frame.width, 4)
        return simplejpeg.encode_jpeg(pixels[y:y + h, x:x + w], quality=quality, colorspace="BGRA", colorsubsampling="420")
    from PIL import Image

    if (x, y, w, h) == (0, 0, frame.width, frame.height):
        image = _pil_rgb(frame)
    else:
        view, stride = memoryview(frame.bgra), frame.stride
        rows = b"".join(view[o:o + w * 4] for o in range(y * stride + x * 4, (y + h) * stride, stride))
        image = Image.frombuffer("RGB", (w, h), rows, "raw", "BGRX", 0, 1)
    return _pil_save(image, quality)


def _pick(encoder: str | None) -> str:
    if encoder is None:
        return default_encoder()
    if encoder not in ENCODERS:
        raise ValueError(f"unknown JPEG encoder {encoder!r}; known: {', '.join(ENCODERS)}")
    if encoder == "simplejpeg" and not _simplejpeg():
        raise ValueError("simplejpeg is not installed")
    return encoder


def _pil_rgb(frame: Frame):
    from PIL import Image

    return Image.frombuffer("RGB", (frame.width, frame.height), frame.bgra, "raw", "BGRX", 0, 1)


def _pil_save(image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, subsampling=2)  # 2 = 4:2:0, as simplejpeg
    return out.getvalue()
