"""Capture previews: what the Captures tab costs with stored previews, beside
the same tab built from the full images, measured in one run.

    python -m bench.capture_previews [--rows 200] [--reps 20]

Two drawn 1920x1080 desktops (a plain one and a busy one full of text
and boxes, the worst case for JPEG) saved as the agent saves a capture
(JPEG quality 70). For each, median of --reps runs:

* store side: making the preview (``make_thumbnail``) beside one full
  decode of the image with Pillow (the peer: what any use of the picture
  costs at least);
* console side, for --rows rows: bytes on the bus (previews vs full
  images) and the time to decode them into QImages in the worker thread
  (QImage.fromData on every preview vs on every full image).

Offscreen Qt; no bus, no store: the cost of the data itself.
"""
from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PIL import Image, ImageDraw  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage  # noqa: E402

from broker.persister.thumbnails import make_thumbnail  # noqa: E402
from bench.harness.demo import DEMO_AGENTS, desktop_picture  # noqa: E402


def busy_desktop(seed: int = 1) -> bytes:
    rng = random.Random(seed)
    picture = Image.new("RGB", (1920, 1080), (30, 30, 40))
    draw = ImageDraw.Draw(picture)
    for _ in range(400):
        x, y = rng.randrange(1900), rng.randrange(1060)
        draw.rectangle((x, y, x + rng.randrange(300), y + rng.randrange(200)), fill=tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(3000):
        draw.text((rng.randrange(1900), rng.randrange(1070)), "the quick brown fox", fill=(255, 255, 255))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=70)
    return out.getvalue()


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def full_decode(image: bytes) -> None:
    with Image.open(io.BytesIO(image)) as picture:
        picture.load()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=200, help="captures in the tab (default %(default)s, the store's cap)")
    p.add_argument("--reps", type=int, default=20, help="runs per figure (default %(default)s)")
    args = p.parse_args(argv)
    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841  (Qt's image plugins)
    plain = desktop_picture(DEMO_AGENTS[0], random.Random(3), frozen=True, size=(1920, 1080))
    print(f"{'1080p desktop':14} {'image KB':>9} {'preview KB':>11} {'preview ms':>11} {'full decode ms':>15} "
          f"{'tab MB (previews / full)':>26} {'tab decode ms (previews / full)':>33}")
    for name, image in (("plain", plain), ("busy", busy_desktop())):
        preview = make_thumbnail(image)
        make_ms = median_ms(lambda: make_thumbnail(image), args.reps)
        decode_ms = median_ms(lambda: full_decode(image), args.reps)
        tab_previews = median_ms(lambda: [QImage.fromData(preview) for _ in range(args.rows)], max(3, args.reps // 4))
        tab_full = median_ms(lambda: [QImage.fromData(image) for _ in range(args.rows)], 3)
        print(f"{name:14} {len(image) / 1024:9.0f} {len(preview) / 1024:11.1f} {make_ms:11.2f} {decode_ms:15.2f} "
              f"{len(preview) * args.rows / 1e6:12.2f} / {len(image) * args.rows / 1e6:<11.1f} "
              f"{tab_previews:16.1f} / {tab_full:<14.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
