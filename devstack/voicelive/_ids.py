"""Server-side identifiers shaped like the real service's (`event_`, `item_`, `resp_` + base62)."""

from __future__ import annotations

import random
import string

__all__ = ["new_id"]

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 22) -> str:
    """`prefix` + `_` + `length` random base62 characters (real ids are 21-22 characters)."""
    return prefix + "_" + "".join(random.choices(_ALPHABET, k=length))
