"""pace: PaCE concept engineering for transformers models.

Pull a task dictionary, then steer a model with sparse-coded concept removal.
"""

from pace.dictionary import ConceptDictionary
from pace.errors import DictionaryFormatError, PaceError

__version__ = "0.1.0"

__all__ = ["ConceptDictionary", "DictionaryFormatError", "PaceError", "__version__"]
