"""API key generation and hashing. Keys are stored only as sha256 hex digests."""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["KEY_PREFIX", "generate_key", "hash_key", "key_display_prefix"]

KEY_PREFIX = "pace_"


def generate_key() -> str:
    """A new secret key: ``pace_`` + 43 url-safe characters (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key (sha256 hex)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_display_prefix(key: str) -> str:
    """A non-secret prefix for listing keys (``pace_`` + 6 characters)."""
    return key[: len(KEY_PREFIX) + 6]
