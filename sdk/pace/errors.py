"""The SDK's exception tree. Every error the SDK raises on purpose is a ``PaceError``.

``ServiceError`` subclasses carry the service's stable machine-readable ``code``.
"""

from __future__ import annotations

__all__ = ["DictionaryFormatError", "PaceError"]


class PaceError(Exception):
    """Base of every error raised by the pace SDK."""


class DictionaryFormatError(PaceError, ValueError):
    """A dictionary file or response is not valid ``pace.dictionary/1``."""
