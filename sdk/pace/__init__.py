"""pace: PaCE concept engineering for transformers models.

Pull a task dictionary, then steer a model with sparse-coded concept removal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pace.errors import DictionaryFormatError, PaceError

if TYPE_CHECKING:
    from pace.dictionary import ConceptDictionary

__version__ = "0.1.0"

__all__ = ["ConceptDictionary", "DictionaryFormatError", "PaceError", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: importing torch costs seconds, and `pace --help` or the error tree need none.
    if name == "ConceptDictionary":
        from pace.dictionary import ConceptDictionary

        return ConceptDictionary
    raise AttributeError(f"module 'pace' has no attribute {name!r}")
