"""Capture previews in the store: made when a capture is stored, encrypted,
migrated into an older database, served in bulk and audited over the bus."""
from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from test_persister_bus import persister  # noqa: F401  (fixture)
from test_store_support import make_store

from broker.core.envelope import Kind
from broker.core.errors import RemoteError
from broker.persister import schema
from broker.core.store_queries import MAX_THUMBNAIL_ROWS
from broker.persister.store import THUMBNAIL_BACKFILL, Record
from broker.persister.thumbnails import THUMBNAIL_WIDTH, ThumbnailError, make_thumbnail

from conftest import wait_for


def jpeg(width: int, height: int, colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=85)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (and holds almost nothing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def capture(client: str, msg_id: str, image: bytes, ts: float = 1000.0) -> Record:
    return Record("event", client, msg_id, ts, f"event.{client}.capture",
                  {"width": 1, "height": 1, "format": "jpeg", "image": image, "operator": "op"})


def previews(store, client: str = "a1") -> dict[str, tuple]:
    """msg_id -> (preview size or None, error) for every capture of ``client``."""
    out = {}
    for row in store.with_thumbnails(store.query("captures", client_id=client)):
        size = Image.open(io.BytesIO(row["thumbnail"])).size if row["thumbnail"] is not None else None
        out[row["msg_id"]] = (size, row["thumbnail_error"])
    return out


def test_make_thumbnail_keeps_the_aspect_and_refuses_what_it_cannot_read():
    """Tried: a 1920x1080 JPEG, a picture narrower than a preview, bytes that
    are no picture, a truncated JPEG, PNG headers claiming 9000^2 and 100000^2 pixels."""
    assert Image.open(io.BytesIO(make_thumbnail(jpeg(1920, 1080)))).size == (THUMBNAIL_WIDTH, 90)
    assert Image.open(io.BytesIO(make_thumbnail(jpeg(100, 40)))).size == (100, 40)  # never enlarged
    for bad, reason in ((b"hello", "cannot be decoded"), (jpeg(640, 480)[:300], "cannot be decoded"),
                        (png_claiming(9000, 9000), "claims 9000x9000 pixels"),
                        (png_claiming(100_000, 100_000), "cannot be decoded: .*decompression bomb")):
        with pytest.raises(ThumbnailError, match=reason):
            make_thumbnail(bad)


def test_a_stored_capture_gets_an_encrypted_preview_or_the_reason_it_has_none(tmp_path):
    store = make_store(tmp_path)
    result = store.write_batch([capture("a1", "good", jpeg(1280, 720)), capture("a1", "junk", b"\x00not-a-picture"),
                                capture("a1", "bomb", png_claiming(9000, 9000))])
    assert (result.new, result.rejected) == (3, [])  # a capture is stored whatever its preview
    assert previews(store) == {
        "good": ((160, 90), None),
        "junk": (None, "the image cannot be decoded: not a picture format this store knows"),
        "bomb": (None, "the image claims 9000x9000 pixels: not decoded"),
    }
    preview = store.with_thumbnails(store.query("captures", client_id="a1"))[-1]["thumbnail"]
    raw = store.path.read_bytes() + store.path.with_name(store.path.name + "-wal").read_bytes()
    assert preview[200:240] not in raw  # stored encrypted, like the image
    assert store.write_batch([capture("a1", "good", jpeg(8, 8))]).duplicates == 1  # a resend makes no second preview
    assert store.connection.execute("SELECT count(*) FROM capture_thumbnails").fetchone()[0] == 3
    store.close()


def test_a_tampered_preview_is_reported_on_its_row_and_the_others_still_show(tmp_path):
    store = make_store(tmp_path)
    store.write_batch([capture("a1", "one", jpeg(320, 180)), capture("a1", "two", jpeg(320, 180), ts=1001.0)])
    row_id, blob = store.connection.execute("SELECT id, thumbnail FROM capture_thumbnails ORDER BY id LIMIT 1").fetchone()
    store.connection.execute("UPDATE capture_thumbnails SET thumbnail = ? WHERE id = ?", (blob[:-1] + bytes([blob[-1] ^ 1]), row_id))
    shown = previews(store)
    assert shown["two"] == ((160, 90), None)
    assert shown["one"][0] is None
    assert shown["one"][1].startswith(f"the preview cannot be decrypted: capture_thumbnails row {row_id} (thumbnail)")
    store.close()


def test_previews_go_with_their_capture_and_rotate_with_the_key(tmp_path):
    store = make_store(tmp_path)
    store.write_batch([capture("a1", "old", jpeg(64, 64), ts=10.0), capture("a1", "new", jpeg(64, 64), ts=5000.0),
                       capture("a2", "other", jpeg(64, 64), ts=5000.0)])
    store.crypto.rotate_key()
    assert store.rotate_encryption() == 6  # three images, three previews
    assert {store.crypto.key_id_of(b) for (b,) in store.connection.execute("SELECT thumbnail FROM capture_thumbnails")} == {"k2"}
    assert previews(store)["new"] == ((64, 64), None)
    assert store.purge({"captures": 1000.0}, now=5500.0) == {"captures": 1}
    store.delete_client("a2")
    assert [r[0] for r in store.connection.execute("SELECT msg_id FROM capture_thumbnails")] == ["new"]
    store.close()


def test_a_version_2_database_migrates_and_gets_previews_when_first_asked(tmp_path):
    """A store as EMS left it before previews (schema 2, captures, no
    capture_thumbnails table) opens at version 3; previews are made on the
    first queries, at most THUMBNAIL_BACKFILL per call, and kept."""
    store = make_store(tmp_path)
    count = THUMBNAIL_BACKFILL + 3
    store.write_batch([capture("a1", f"c{n}", jpeg(640, 360), ts=1000.0 + n) for n in range(count)]
                      + [capture("a1", "junk", b"junk", ts=2000.0)])
    store.connection.execute("DROP TABLE capture_thumbnails")
    for table, (_version, lines) in schema.ADDED_COLUMNS.items():  # later than version 2 too
        for line in lines:
            store.connection.execute(f"ALTER TABLE {table} DROP COLUMN {line.split()[0]}")
    store.connection.execute("DELETE FROM schema_version WHERE version >= 3")
    assert schema.current_version(store.connection) == 2
    store.close()

    store = make_store(tmp_path)  # opening migrates
    assert schema.current_version(store.connection) == schema.LATEST >= 3
    assert store.connection.execute("SELECT count(*) FROM capture_thumbnails").fetchone()[0] == 0
    first = previews(store)
    made = [m for m, (size, _) in first.items() if size == (160, 90)]
    waiting = [m for m, (_, error) in first.items() if error == "no preview yet: refresh to make the next ones"]
    assert len(made) == THUMBNAIL_BACKFILL - 1 and first["junk"][1].startswith("the image cannot be decoded")
    assert len(waiting) == 4  # newest first: the junk one and 19 made, the 4 oldest wait
    second = previews(store)
    assert sum(1 for size, _ in second.values() if size == (160, 90)) == count
    assert store.connection.execute("SELECT count(*) FROM capture_thumbnails").fetchone()[0] == count + 1
    store.close()


# -- over the bus ----------------------------------------------------------------
def test_previews_over_the_bus_are_audited_and_checked(bus, persister):
    """Tried: previews as an operator, as a viewer, for a kind without
    previews, more than MAX_THUMBNAIL_ROWS at once; reading a capture to
    export it, and with a purpose that does not exist."""
    agent = bus.peer("a1")
    agent.publish(Kind.EVENT, "capture", {"width": 320, "height": 180, "format": "jpeg", "image": jpeg(320, 180)})
    wait_for(lambda: bus.admin.request("store.query", kind="captures"), what="the capture to be stored")
    operator = bus.peer("op-1", role="operator")
    rows = operator.request("store.query", kind="captures", client_id="a1", thumbnails=True)
    assert Image.open(io.BytesIO(rows[0]["thumbnail"])).size == (160, 90) and rows[0]["thumbnail_error"] is None
    assert "thumbnail" not in operator.request("store.query", kind="captures", client_id="a1")[0]

    viewer = bus.peer("view-1", role="viewer")
    for who, args, error in ((viewer, {"kind": "captures", "thumbnails": True}, "may not read captures"),
                             (operator, {"kind": "logs", "thumbnails": True}, "only captures have thumbnails"),
                             (operator, {"kind": "captures", "thumbnails": True, "limit": MAX_THUMBNAIL_ROWS + 1},
                              f"at most {MAX_THUMBNAIL_ROWS}"),
                             (operator, {"id": rows[0]["id"], "purpose": "print"}, "read to view or export")):
        with pytest.raises(RemoteError, match=error):
            who.request("store.capture" if "id" in args else "store.query", **args)
    assert operator.request("store.capture", id=rows[0]["id"], purpose="export")["image"] == jpeg(320, 180)

    def audit(action: str) -> list[dict]:
        return [r for r in bus.admin.request("store.query", kind="audit", limit=1000) if r["action"] == action]

    wait_for(lambda: audit("capture.thumbnails") and audit("capture.export"), what="the audit records")
    shown, exported = audit("capture.thumbnails"), audit("capture.export")
    assert [(r["operator"], r["role"], r["target"], r["detail"]["capture_ids"]) for r in shown] == [
        ("op-1", "operator", "a1", [rows[0]["id"]])]
    assert [(r["operator"], r["target"], r["detail"]["capture_id"]) for r in exported] == [("op-1", "a1", rows[0]["id"])]
    assert audit("capture.view") == []  # the refused purpose and the listing without previews are no views
