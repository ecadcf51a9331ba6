"""What the store's queries accept, for the persister that answers them and the consoles that ask.

Who may ask which query is :mod:`broker.core.permissions`'s table; this
module holds the bounds both sides must agree on.
"""
from __future__ import annotations

#: why a stored capture is read (``store.capture`` ``purpose``): audited as ``capture.<purpose>``
CAPTURE_PURPOSES = ("view", "export")
#: captures per ``store.query`` with ``thumbnails`` (each preview is ~6 KB; a reply stays ~1 MB)
MAX_THUMBNAIL_ROWS = 200
