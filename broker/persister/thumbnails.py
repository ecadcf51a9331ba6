"""Small previews of screen captures, made once when a capture is stored.

Why here and then: the console's Captures tab shows a preview on every row.
Made on the fly from the full images, a tab of 200 busy 1080p captures
(JPEG quality 70, ~0.75 MB each) would move ~150 MB over the bus and
decode them all (seconds of a worker thread) to show pictures 160 px wide.
Made by the persister when a capture arrives, a preview is 2-6 KB: the
same tab is ~1 MB in one ``store.query`` answer, decoded two orders of
magnitude faster (``python -m bench.capture_previews`` measures both in
one run). The cost
moves to the persister, once per capture, and is about one full decode of
the image (draft-mode decoding saves little: entropy decoding dominates);
captures are taken on demand, a few a minute at most. Previews are stored
encrypted, like the image they show (``capture_thumbnails``, see
:mod:`broker.persister.schema`).

:func:`make_thumbnail` works on bytes and raises :class:`ThumbnailError`
with a short reason for anything it cannot read, so a broken image yields
a stored reason instead of a preview, never an exception in the persister.
"""
from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from broker.core.errors import EmsError

#: preview width in pixels (the height keeps the aspect ratio)
THUMBNAIL_WIDTH = 160
#: JPEG quality of a preview
THUMBNAIL_QUALITY = 75
#: images with more pixels than this are not decoded (a crafted header can
#: claim gigapixels); 64 M pixels is an 8K x 8K screen
MAX_PIXELS = 64_000_000


class ThumbnailError(EmsError):
    """The image cannot be made into a preview; the message says why."""


def make_thumbnail(image: bytes, width: int = THUMBNAIL_WIDTH) -> bytes:
    """A JPEG ``width`` pixels wide (never wider than the image) of ``image``.

    JPEGs are decoded at a reduced scale (Pillow's draft mode), which skips
    most of the full-size work. Raises :class:`ThumbnailError`.
    """
    try:
        with Image.open(io.BytesIO(image)) as picture:  # reads the header only
            w, h = picture.size
            if w < 1 or h < 1 or w * h > MAX_PIXELS:
                raise ThumbnailError(f"the image claims {w}x{h} pixels: not decoded")
            size = (min(width, w), max(1, round(h * min(width, w) / w)))
            picture.thumbnail(size)
            out = io.BytesIO()
            picture.convert("RGB").save(out, "JPEG", quality=THUMBNAIL_QUALITY)
    except ThumbnailError:
        raise
    except UnidentifiedImageError:
        raise ThumbnailError("the image cannot be decoded: not a picture format this store knows") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"the image cannot be decoded: {exc}") from None
    return out.getvalue()


def thumbnail_or_reason(image: bytes) -> tuple[bytes | None, str | None]:
    """(preview JPEG, None) or (None, why there is none)."""
    try:
        return make_thumbnail(image), None
    except ThumbnailError as exc:
        return None, str(exc)
