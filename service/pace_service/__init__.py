"""pace_service: the concept-dictionary service (FastAPI + PostgreSQL/pgvector).

The service never imports torch or the ``pace`` SDK; the two share only the HTTP API
(docs/api.md, the OpenAPI schema) and the dictionary file format
(docs/dictionary-format.md).
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
