"""Field encryption: the key file, the blob format, tamper detection, rotation,
and what actually lands on disk."""
from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from test_store_support import PLAIN_MARKER, SECRETS, make_store, sample_records

from broker.core.errors import ConfigError
from broker.persister.crypto import BLOB_VERSION, NONCE_BYTES, SecurityManager, TamperedValue, aad_for
from broker.persister.store import ENCRYPTED

AAD = aad_for("client_logs", "message", "a1", "m1")


@pytest.fixture
def crypto(tmp_path):
    return SecurityManager(tmp_path / "keys" / "store-keys.json")


# -- the key file ------------------------------------------------------------------
def test_key_file_is_created_private_with_one_256_bit_key(tmp_path, crypto):
    path = tmp_path / "keys" / "store-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["current"] == "k1" == crypto.current_key_id
    assert len(base64.b64decode(doc["keys"]["k1"])) == 32
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_key_file_readable_by_others_is_refused(tmp_path, crypto):
    os.chmod(crypto.key_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SecurityManager(crypto.key_file)


@pytest.mark.parametrize(
    "content",
    ["not json", '{"current": "k9", "keys": {"k1": "AAAA"}}', '{"current": "k1", "keys": {"k1": "c2hvcnQ="}}', "[]"],
)
def test_corrupt_key_file_is_a_config_error(tmp_path, content):
    path = tmp_path / "k.json"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="key file"):
        SecurityManager(path)


# -- values ------------------------------------------------------------------------
def test_blob_is_self_describing_and_round_trips(crypto):
    blob = crypto.encrypt(b"hello", AAD)
    assert blob[0] == BLOB_VERSION
    assert blob[1] == 2 and blob[2:4] == b"k1"
    assert len(blob) == 4 + NONCE_BYTES + len(b"hello") + 16
    assert crypto.key_id_of(blob) == "k1"
    assert crypto.decrypt(blob, AAD) == b"hello"
    assert crypto.encrypt(b"hello", AAD) != blob  # fresh nonce every time


def test_every_kind_of_damage_raises_tampered_value_saying_what(crypto):
    blob = crypto.encrypt(b"hello", AAD)
    flipped = bytearray(blob)
    flipped[-3] ^= 0x01
    with pytest.raises(TamperedValue, match="tag mismatch"):
        crypto.decrypt(bytes(flipped), AAD)
    with pytest.raises(TamperedValue, match="tag mismatch"):
        crypto.decrypt(blob, aad_for("client_logs", "message", "a1", "m2"))  # another row
    with pytest.raises(TamperedValue, match="tag mismatch"):
        crypto.decrypt(blob, aad_for("chat_messages", "body", "a1", "m1"))  # another column
    with pytest.raises(TamperedValue, match="truncated"):
        crypto.decrypt(blob[:20], AAD)
    with pytest.raises(TamperedValue, match="truncated"):
        crypto.decrypt(b"\x01", AAD)
    with pytest.raises(TamperedValue, match="unknown key id 'k7'"):
        crypto.decrypt(blob[:2] + b"k7" + blob[4:], AAD)
    with pytest.raises(TamperedValue, match="version"):
        crypto.decrypt(b"\x09" + blob[1:], AAD)


def test_row_keys_cannot_collide():
    assert aad_for("t", "c", "a:b", "c") != aad_for("t", "c", "a", "b:c")
    assert aad_for("t", "c", 'a"', "b") != aad_for("t", "c", "a", '"b')


def test_rotate_key_keeps_old_values_readable_and_is_saved(crypto):
    old = crypto.encrypt(b"old", AAD)
    assert crypto.rotate_key() == "k2"
    new = crypto.encrypt(b"new", AAD)
    assert crypto.key_id_of(new) == "k2"
    assert crypto.decrypt(old, AAD) == b"old"
    again = SecurityManager(crypto.key_file)
    assert again.current_key_id == "k2" and set(again.key_ids) == {"k1", "k2"}
    assert again.decrypt(old, AAD) == b"old" and again.decrypt(new, AAD) == b"new"
    assert stat.S_IMODE(crypto.key_file.stat().st_mode) == 0o600


def test_another_process_picks_up_a_rotated_key(crypto):
    reader = SecurityManager(crypto.key_file)  # loaded before the rotation
    crypto.rotate_key()
    assert reader.decrypt(crypto.encrypt(b"x", AAD), AAD) == b"x"


# -- in the store --------------------------------------------------------------------
def _raw_bytes(store) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        path = store.path.with_name(store.path.name + suffix)
        if path.exists():
            data += path.read_bytes()
    return data


def test_encrypted_fields_never_reach_the_disk_in_clear(tmp_path):
    store = make_store(tmp_path)
    store.write_batch(sample_records("a1"))
    raw = _raw_bytes(store)
    assert PLAIN_MARKER.encode() in raw  # the scan does see the data
    for name, secret in SECRETS.items():
        needle = secret if isinstance(secret, bytes) else secret.encode()
        assert needle[:19] not in raw, f"{name} is stored in clear"
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = _raw_bytes(store)
    assert PLAIN_MARKER.encode() in raw
    assert not any((s if isinstance(s, bytes) else s.encode())[:19] in raw for s in SECRETS.values())
    # ... and read back in clear through the store
    assert store.query("messages")[0]["body"] == SECRETS["chat"]
    assert store.query("logs")[0]["message"] == SECRETS["log"]
    fileop = store.query("fileops")[0]
    assert (fileop["path"], fileop["error"]) == (SECRETS["path"], SECRETS["error"])
    assert store.query("activity")[0]["data"]["title"] == SECRETS["activity"]
    capture = store.query("captures")[0]
    assert "image" not in capture
    assert store.get_capture(capture["id"])["image"] == SECRETS["image"]
    store.close()


def _all_key_ids(store) -> set[str]:
    ids = set()
    for table, column in ENCRYPTED:
        for (blob,) in store.connection.execute(f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"):
            ids.add(store.crypto.key_id_of(blob))
    return ids


def test_rotation_reencrypts_everything_with_the_new_key(tmp_path):
    store = make_store(tmp_path)
    for n in range(7):
        store.write_batch(sample_records(f"c{n}", tag=f"{n}-"))
    expected = {k: store.query(k, limit=1000) for k in ("messages", "logs", "fileops", "activity")}
    captures = [store.get_capture(c["id"]) for c in store.query("captures")]
    assert _all_key_ids(store) == {"k1"}

    store.crypto.rotate_key()
    calls = []
    changed = store.rotate_encryption(batch_size=3, progress=lambda done, total: calls.append((done, total)))

    total = 7 * 6  # six encrypted values per sample batch
    assert changed == total
    assert calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert _all_key_ids(store) == {"k2"}
    assert {k: store.query(k, limit=1000) for k in expected} == expected
    assert [store.get_capture(c["id"]) for c in store.query("captures")] == captures
    assert store.rotate_encryption() == 0  # nothing left to do: resumable
    store.close()


def _first(store, table: str, column: str, client: str = "a1") -> tuple[int, bytes]:
    return store.connection.execute(
        f"SELECT id, {column} FROM {table} WHERE client_id = ? ORDER BY id LIMIT 1", (client,)
    ).fetchone()


def test_a_flipped_byte_in_the_database_is_reported_with_table_and_row(tmp_path):
    store = make_store(tmp_path)
    store.write_batch(sample_records("a1"))
    row_id, blob = _first(store, "client_logs", "message")
    damaged = bytearray(blob)
    damaged[len(damaged) // 2 + 8] ^= 0x20
    store.connection.execute("UPDATE client_logs SET message = ? WHERE id = ?", (bytes(damaged), row_id))
    with pytest.raises(TamperedValue, match=rf"client_logs row {row_id} \(message\).*tag mismatch"):
        store.query("logs")
    store.crypto.rotate_key()
    with pytest.raises(TamperedValue, match=rf"client_logs row {row_id}"):
        store.rotate_encryption()  # stops at the bad value instead of re-sealing it
    assert store.query("messages")  # other tables are unaffected
    store.close()


def test_swapping_ciphertexts_between_rows_or_columns_is_detected(tmp_path):
    store = make_store(tmp_path)
    store.write_batch(sample_records("a1") + sample_records("a2", tag="b-"))
    conn = store.connection
    (id1, body1), (id2, body2) = _first(store, "chat_messages", "body", "a1"), _first(store, "chat_messages", "body", "a2")
    conn.execute("UPDATE chat_messages SET body = ? WHERE id = ?", (body2, id1))
    conn.execute("UPDATE chat_messages SET body = ? WHERE id = ?", (body1, id2))
    with pytest.raises(TamperedValue, match=rf"chat_messages row ({id1}|{id2}) \(body\)"):
        store.query("messages")
    # path and error of one file operation trade places
    conn.execute("UPDATE file_operations SET path = error, error = path WHERE client_id = 'a1'")
    with pytest.raises(TamperedValue, match=r"file_operations row \d+ \((path|error)\)"):
        store.query("fileops", client_id="a1")
    assert store.query("fileops", client_id="a2")[0]["path"] == SECRETS["path"]
    store.close()
