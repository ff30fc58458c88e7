"""The pace service client and its on-disk dictionary cache.

Example::

    from pace.client import Client

    with Client() as client:          # $PACE_URL / $PACE_API_KEY or the embedded defaults
        print(client.me())
        d = client.pull_dictionary(concept_set_version_id=3, model_id=1, layers=[12],
                                   recipe_id=1, partition_id=7, device="cuda")
"""

from pace.client._cache import DictionaryCache, default_cache_dir
from pace.client._client import DEFAULT_TIMEOUT, Client
from pace.client._config import DEFAULT_BASE_URL, api_key_file
from pace.client._retry import RetryPolicy
from pace.client._types import Me, Model, NearestResult, Neighbor, Page, Recipe, UploadResult

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "Client",
    "DictionaryCache",
    "Me",
    "Model",
    "NearestResult",
    "Neighbor",
    "Page",
    "Recipe",
    "RetryPolicy",
    "UploadResult",
    "api_key_file",
    "default_cache_dir",
]
