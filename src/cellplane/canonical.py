"""Canonical JSON and its digest: the same value always gives the same bytes, whatever the order of its keys.

Release ids are taken from such a digest (``controlplane.releases``), so the bytes must never change: keys
sorted, no whitespace, UTF-8 as is (``ensure_ascii=False``). ``default`` turns a value JSON does not know into one
it does (the desired state's unsealed secrets, say); without it such a value is a ``TypeError``. Cost: one
``json.dumps`` and one SHA-256 over the result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any


def canonical(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=default).encode()


def digest(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """The SHA-256 of ``canonical(value)``, in hex."""
    return hashlib.sha256(canonical(value, default)).hexdigest()
