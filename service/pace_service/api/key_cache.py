"""A short-lived in-process cache of API-key lookups.

Every request resolves its bearer key to a principal; on the search hot path that
lookup was a round trip of its own. Entries live ``ttl`` seconds (setting
``PACE_AUTH_CACHE_SECONDS``, default 2; 0 disables the cache) and are keyed by the
key's sha256, never by the secret. Revoking a key through this process clears the
cache at once; a key revoked elsewhere (another service process, SQL) stops working
within ``ttl`` seconds. Unknown keys are never cached, so a new key works at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["KeyCache"]

T = TypeVar("T")

_MAX_ENTRIES = 10_000


class KeyCache(Generic[T]):
    """``key hash -> principal`` for ``ttl`` seconds (thread-safe)."""

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, key_hash: str) -> T | None:
        """The cached principal, or None if absent or expired."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            with self._lock:
                self._entries.pop(key_hash, None)
            return None
        return entry[1]

    def put(self, key_hash: str, principal: T) -> None:
        """Remember a principal just read from the database."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()  # crude bound; a refill costs one lookup per key
            self._entries[key_hash] = (self._clock() + self.ttl, principal)

    def clear(self) -> None:
        """Forget every entry (after a revocation)."""
        with self._lock:
            self._entries.clear()
