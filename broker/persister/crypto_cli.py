"""``ems crypto``: the store's encryption keys (rotate, status)."""
from __future__ import annotations

from broker.core.cli_common import add_data_dir
from broker.persister.cli import open_store
from broker.core.progress import ProgressBar
from broker.core.config import DataDir, resolve_data_dir


def configure(p) -> None:
    """Options of this sub-command (its name and one-line help are in ``broker.cli.main.SUBCOMMANDS``)."""
    p.description = (
        "Sensitive fields in the store (chat bodies, client log messages, file paths, capture images, "
        "activity payloads) are encrypted with AES-GCM; the keys are in DATA/keys/store-keys.json (mode 0600), "
        "outside the database. `rotate` makes a new current key and re-encrypts every value with it, in batches, "
        "with a progress bar; old keys stay in the file so that an interrupted rotation can simply be run again. "
        "Run it on the server; the persister may keep running."
    )
    p.add_argument("action", choices=["status", "rotate"], help="show the keys in use, or rotate to a new key")
    add_data_dir(p)
    p.add_argument("--batch", type=int, default=500, help="rows per transaction (default %(default)s)")
    p.set_defaults(run=run)


def run(args) -> int:
    data = DataDir(resolve_data_dir(args.data_dir))
    with open_store(data) as store:
        crypto = store.crypto
        if args.action == "rotate":
            old, new = crypto.current_key_id, crypto.rotate_key()
            print(f"new current key {new} (was {old}); re-encrypting stored values...")
            changed = store.rotate_encryption(batch_size=args.batch, progress=ProgressBar("re-encrypting"))
            print(f"{changed:,} values now under key {new}")
        else:
            print(f"current key: {crypto.current_key_id}; all keys: {', '.join(crypto.key_ids)}")
    return 0
