"""Several EMS servers in one ``ems_web``: what they share and what each keeps to itself.

One EMS server *serves* the web UI: it ran ``ems sync init`` (or ``ems up``)
first, so the web UI's MySQL user and the web key (``DATA/web/web.key``) are
its. Every other server *joins* (``ems sync init --join --web-key FILE``, or
``ems up --mysql-url URL --join-web --web-key FILE``):

* it gets a sync writer of its own, :func:`joined_writer` (one MySQL user per
  server, so one server can be cut off alone), and no web UI user;
* it seals with the serving server's web key, copied to its data dir: the web
  UI holds one key and opens every server's rows with it.

Each sync worker stamps the id of its key (:attr:`sync.web_crypto.WebKey.key_id`,
a hash, never the key) on its ``servers`` row. A server whose key is not the
one the other servers' rows carry is refused, at init and by its sync worker
(:func:`key_conflict`), with the way out; the Servers tab flags any row sealed
under a key the web UI does not hold.
"""
from __future__ import annotations

import hashlib

JOINED_WRITER_PREFIX = "ems_sync_"


def joined_writer(server_id: str) -> str:
    """The MySQL user a joining server's sync worker writes as (a name MySQL accepts, stable per server)."""
    return JOINED_WRITER_PREFIX + hashlib.sha256(server_id.encode()).hexdigest()[:12]


def key_conflict(cursor, server_id: str, key_id: str) -> str | None:
    """Why ``server_id`` may not write with the key ``key_id`` (another server's rows carry another key), or None."""
    cursor.execute(
        "SELECT server_id, name, web_key_id FROM servers WHERE server_id <> %s AND web_key_id NOT IN ('', %s)"
        " ORDER BY updated DESC LIMIT 1",
        (server_id, key_id),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    other, name, other_key = row
    return (
        f"this server's web key (id {key_id}) is not the key server {name or other}'s rows are sealed with "
        f"(id {other_key}), and the web UI opens every server's rows with one key: copy the serving server's "
        "DATA/web/web.key here with `ems sync init --join --web-key FILE`, then start the sync worker again"
    )
