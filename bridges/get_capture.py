"""``python -m bridges.get_capture ID --operator NAME --reason TEXT``: a stored capture, as a JPEG on stdout.

For the web UI's Captures tab. The pictures stay in this server's store
(SQLite, encrypted); the web UI asks for them through this bridge (service
key ``DATA/keys/capture.*``, client id ``web-capture``) for the person it
names, so every look is audited by the persister with that person, the
bridge as ``via`` and the reason (``broker.persister.history_answers``).

* ``ID`` (the store's capture id, the ``id`` of ``snapshot_captures``): the
  full picture (``store.capture``, audited as ``capture.view``).
* ``--preview ID [ID ...]`` (at most :data:`MAX_PREVIEWS`): the small
  previews the store keeps, as JSON on stdout::

      {"previews": {"ID": "<base64 JPEG>", ...}, "missing": {"ID": "why", ...}}

  each read with ``store.query`` ``thumbnails`` for exactly that capture
  (audited as ``capture.thumbnails``, naming the capture).

An id the store does not have exits :data:`Exit.UNKNOWN_CAPTURE` (full
picture) or is listed under ``missing`` (previews). Exit codes:
:class:`bridges.bridge_call.Exit`.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys

from bridges.bridge_call import CAPTURE, BridgeCall, BridgeFailure, Exit, add_common_args, add_person_args, person_of, run

#: previews one call reads (a page of the Captures tab)
MAX_PREVIEWS = 200
NO_SUCH_CAPTURE = "this server's store has no capture"


def full_picture(call: BridgeCall, capture_id: int, person: dict) -> bytes:
    """The stored JPEG of capture ``capture_id``, read for ``person`` (``{"operator", "reason"}``)."""
    capture = call.request("store.capture", id=capture_id, **person)
    if not capture or not capture.get("image"):
        raise BridgeFailure(Exit.UNKNOWN_CAPTURE, f"{NO_SUCH_CAPTURE} {capture_id} (purged, or another server's)")
    return capture["image"]


def previews(call: BridgeCall, capture_ids: list[int], person: dict) -> dict:
    """``{"previews": {id: base64}, "missing": {id: why}}`` for ``capture_ids``, each read for ``person``."""
    found, missing = {}, {}
    for capture_id in capture_ids:
        rows = call.request("store.query", kind="captures", before_id=capture_id + 1, limit=1, order="desc",
                            thumbnails=True, **person)
        row = rows[0] if rows and rows[0].get("id") == capture_id else None
        if row is None:
            missing[str(capture_id)] = f"{NO_SUCH_CAPTURE} {capture_id}"
        elif row.get("thumbnail") is None:
            missing[str(capture_id)] = str(row.get("thumbnail_error") or "no preview")
        else:
            found[str(capture_id)] = base64.b64encode(row["thumbnail"]).decode("ascii")
    return {"previews": found, "missing": missing}


def _capture_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value < 2 ** 63 - 1:
        raise argparse.ArgumentTypeError(f"a capture id is a positive whole number, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bridges.get_capture", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="+", type=_capture_id, metavar="ID", help="the store's capture id (several with --preview)")
    p.add_argument("--preview", action="store_true", help="the small previews as JSON instead of one full picture")
    add_person_args(p)
    add_common_args(p)
    args = p.parse_args(argv)
    if not args.preview and len(args.ids) != 1:
        p.error("one ID for a full picture (--preview for several)")
    if len(args.ids) > MAX_PREVIEWS:
        p.error(f"at most {MAX_PREVIEWS} previews at a time")
    person = {"operator": person_of(args), "reason": args.reason}

    def work(call: BridgeCall) -> None:
        if args.preview:
            sys.stdout.write(json.dumps(previews(call, args.ids, person)) + "\n")
            sys.stdout.flush()
        else:
            sys.stdout.buffer.write(full_picture(call, args.ids[0], person))
            sys.stdout.buffer.flush()

    return run(CAPTURE, args, work)


if __name__ == "__main__":
    sys.exit(main())
