"""``Client``: the SDK's typed HTTP client for the pace concept service.

Example::

    from pace.client import Client

    with Client("http://127.0.0.1:8000") as client:      # key: $PACE_API_KEY or key file
        d = client.pull_dictionary(
            concept_set_version_id=3, model_id=1, layers=[10, 12], recipe_id=1,
            partition_id=7, device="cuda", dtype=torch.bfloat16,
        )
"""

from __future__ import annotations

import enum
import json as _json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import torch

from pace.client._cache import DictionaryCache, validate_hash
from pace.client._config import resolve_api_key, resolve_base_url
from pace.client._download import stream_into_cache
from pace.client._errors import error_from_response, transport_error
from pace.client._retry import RETRY_STATUSES, RetryPolicy
from pace.client._types import (
    Me,
    Model,
    NearestResult,
    Neighbor,
    Page,
    Recipe,
    UploadResult,
)
from pace.client._vectors import (
    DEFAULT_MAX_REQUEST_BYTES,
    IntsLike,
    VectorBatch,
    encode_batch,
    split_rows,
)
from pace.dictionary import ConceptDictionary
from pace.errors import (
    ClientClosedError,
    IntegrityError,
    PaceError,
    ServiceError,
    TransportError,
    UnexpectedResponseError,
)

__all__ = ["DEFAULT_TIMEOUT", "Client"]

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout)

R = TypeVar("R")
Json = Any
Stimulus = str | Mapping[str, Any]


class _State(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


def _version() -> str:
    from pace import __version__

    return __version__


class Client:
    """A connection to the pace service, with retries and a dictionary cache.

    Args:
        base_url: the service root; else ``$PACE_URL``, else ``http://127.0.0.1:8000``.
        api_key: a ``pace_...`` key; else ``$PACE_API_KEY``, else the key file that the
            embedded service writes (``platformdirs.user_data_dir("pace")/api-key``).
        timeout: an ``httpx.Timeout`` (or seconds) for every request.
        retries: how many times to retry (an int), or a full ``RetryPolicy``.
        transport: an httpx transport, e.g. to reach the service over a unix socket.
        cache_dir: the cache root; else ``$PACE_CACHE_DIR``, else the user cache folder.
        progress: show a progress bar for dictionary downloads of 4 MB or more.
        max_upload_bytes: split vector uploads into requests of at most this payload.

    A client is a context manager; after ``close()`` every call raises
    ``ClientClosedError``. It is safe to share between threads.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = 3,
        transport: httpx.BaseTransport | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: bool = True,
        max_upload_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        if max_upload_bytes <= 0:
            raise ValueError(f"max_upload_bytes must be positive; got {max_upload_bytes}")
        self.base_url = resolve_base_url(base_url)
        self.retry = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)
        self.cache = DictionaryCache(cache_dir)
        self.progress = progress
        self.max_upload_bytes = max_upload_bytes
        headers = {"User-Agent": f"pace-sdk/{_version()}", "Accept": "application/json"}
        key = resolve_api_key(api_key)
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
            transport=transport,
        )
        self._state = _State.OPEN

    # -- lifetime ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool; further calls raise ``ClientClosedError``."""
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            self._http.close()

    @property
    def is_closed(self) -> bool:
        return self._state is _State.CLOSED

    def __enter__(self) -> Client:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, state={self._state.value})"

    def _check_open(self) -> None:
        if self._state is _State.CLOSED:
            raise ClientClosedError("this Client is closed; create a new one")

    # -- transport core ----------------------------------------------------------------
    def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Json = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One attempt: a 2xx/304 response, or a mapped ``PaceError``."""
        self._check_open()
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        request = self._http.build_request(
            method,
            path,
            params=clean or None,
            json=json_body,
            content=content,
            headers=dict(headers or {}),
        )
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if response.is_success or response.status_code == 304:
            return response
        try:
            response.read()
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        finally:
            response.close()
        raise error_from_response(response)

    def _retrying(self, attempt: Callable[[], R], *, idempotent: bool) -> R:
        """Run ``attempt`` until it succeeds or the retry policy gives up."""
        tries = 0
        while True:
            try:
                return attempt()
            except (TransportError, ServiceError) as exc:
                delay = self._retry_delay(exc, tries, idempotent)
                if delay is None:
                    raise
            self.retry.sleep(delay)
            tries += 1

    def _retry_delay(self, exc: PaceError, tries: int, idempotent: bool) -> float | None:
        if isinstance(exc, ServiceError):
            if idempotent and exc.status in RETRY_STATUSES:
                return self.retry.delay_for(tries, exc.response)
            return None
        # A connection that was never opened carried nothing: safe to retry any call.
        if idempotent or isinstance(exc.__cause__, _NEVER_SENT):
            return self.retry.delay_for(tries, None)
        return None

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Json = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Json:
        """Send a request (retried if idempotent) and return its decoded JSON body.

        The escape hatch for endpoints without a typed method. ``idempotent`` defaults
        to True for GET/HEAD/PUT/DELETE/OPTIONS. A 204 gives None.
        """
        method = method.upper()
        idem = method in _IDEMPOTENT_METHODS if idempotent is None else idempotent
        response = self._retrying(
            lambda: self._send_once(
                method, path, params=params, json_body=json, content=content, headers=headers
            ),
            idempotent=idem,
        )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except (_json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UnexpectedResponseError(
                f"{method} {path}: expected JSON, got {response.headers.get('content-type')}"
            ) from exc

    def _page(self, path: str, params: Mapping[str, Any], limit: int, offset: int) -> Page[Json]:
        body = self.request_json("GET", path, params={**params, "limit": limit, "offset": offset})
        try:
            return Page(
                items=list(body["items"]),
                total=int(body["total"]),
                limit=int(body["limit"]),
                offset=int(body["offset"]),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise UnexpectedResponseError(f"GET {path}: not a list page: {body!r}") from exc

    def _iterate(self, path: str, params: Mapping[str, Any], page_size: int) -> Iterator[Json]:
        if page_size <= 0:
            raise ValueError(f"page_size must be positive; got {page_size}")
        offset = 0
        while True:
            page = self._page(path, params, page_size, offset)
            yield from page.items
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    # -- identity ----------------------------------------------------------------------
    def me(self) -> Me:
        """The namespace and role of this client's API key."""
        return Me.from_json(self.request_json("GET", "/v1/me"))

    def create_key(self, role: str) -> dict[str, Any]:
        """A new key in this namespace (admin only); the returned ``key`` is shown once."""
        return _obj(self.request_json("POST", "/v1/keys", json={"role": role}))

    # -- models and recipes ------------------------------------------------------------
    def create_model(
        self,
        hf_id: str,
        revision: str,
        *,
        hidden_size: int,
        num_layers: int,
        architecture: str,
    ) -> Model:
        """Register a model; ``DuplicateError`` if that hf_id+revision exists."""
        body = {
            "hf_id": hf_id,
            "revision": revision,
            "hidden_size": hidden_size,
            "num_layers": num_layers,
            "architecture": architecture,
        }
        return Model.from_json(self.request_json("POST", "/v1/models", json=body))

    def get_model(self, model_id: int) -> Model:
        return Model.from_json(self.request_json("GET", f"/v1/models/{int(model_id)}"))

    def find_model(self, hf_id: str, revision: str) -> Model | None:
        """The model registered as hf_id at revision, or None."""
        page = self._page("/v1/models", {"hf_id": hf_id, "revision": revision}, 1, 0)
        return Model.from_json(page.items[0]) if page.items else None

    def ensure_model(
        self,
        hf_id: str,
        revision: str,
        *,
        hidden_size: int,
        num_layers: int,
        architecture: str,
    ) -> Model:
        """Find or register a model; raises ValueError if the stored shape differs."""
        model = self.find_model(hf_id, revision)
        if model is None:
            try:
                return self.create_model(
                    hf_id,
                    revision,
                    hidden_size=hidden_size,
                    num_layers=num_layers,
                    architecture=architecture,
                )
            except ServiceError as exc:  # lost a race with another registrant
                if exc.code != "duplicate" or (model := self.find_model(hf_id, revision)) is None:
                    raise
        if (model.hidden_size, model.num_layers) != (hidden_size, num_layers):
            raise ValueError(
                f"{hf_id}@{revision} is registered with hidden_size={model.hidden_size}, "
                f"num_layers={model.num_layers}; got {hidden_size}, {num_layers}"
            )
        return model

    def get_or_create_recipe(
        self,
        *,
        token_position: str = "last",
        reduction: str = "mean",
        prompt_template: str = "{stimulus}",
        code_version: str | None = None,
    ) -> Recipe:
        """The recipe with exactly these fields (created if new; safe to repeat)."""
        body = {
            "token_position": token_position,
            "reduction": reduction,
            "prompt_template": prompt_template,
            "code_version": code_version if code_version is not None else _version(),
        }
        data = self.request_json("POST", "/v1/recipes", json=body, idempotent=True)
        return Recipe.from_json(data)

    # -- concepts ----------------------------------------------------------------------
    def create_concept(
        self,
        name: str,
        *,
        description: str = "",
        tags: Sequence[str] = (),
        stimuli: Sequence[Stimulus] = (),
        source: str = "human",
    ) -> dict[str, Any]:
        """Create a concept. Plain-string stimuli get ``source`` and empty provenance."""
        body = _concept_body(name, description, tags, stimuli, source)
        return _obj(self.request_json("POST", "/v1/concepts", json=body))

    def create_concepts(
        self, concepts: Sequence[Mapping[str, Any]], *, skip_existing: bool = False
    ) -> dict[str, Any]:
        """Create many concepts in one transaction (all or none).

        Each item has the fields of ``create_concept`` (``name``, optional
        ``description``, ``tags``, ``stimuli``; stimuli may be plain strings). A name
        that exists is a ``DuplicateError`` unless ``skip_existing``, which reports it
        as ``created: false`` (and makes the call safe to retry). Returns
        ``{"created": int, "existing": int, "items": [{"id", "name", "created"}]}``.
        """
        bodies = [
            _concept_body(
                c["name"],
                c.get("description", ""),
                c.get("tags", ()),
                c.get("stimuli", ()),
                c.get("source", "human"),
            )
            for c in concepts
        ]
        params = {"on_existing": "skip" if skip_existing else "error"}
        data = self.request_json(
            "POST", "/v1/concepts:bulk", params=params, json=bodies, idempotent=skip_existing
        )
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise UnexpectedResponseError(f"POST /v1/concepts:bulk: unexpected body {data!r}")
        return data

    def get_concept(self, concept_id: int) -> dict[str, Any]:
        return _obj(self.request_json("GET", f"/v1/concepts/{int(concept_id)}"))

    def update_concept(
        self, concept_id: int, *, if_match: int | str | None = None, **changes: Any
    ) -> dict[str, Any]:
        """PATCH a concept's fields (``description=...``, ``tags=[...]``, ...).

        ``if_match``: the ``revision`` (or ETag) you last read; if the concept changed
        since, nothing is written and ``PreconditionFailedError`` is raised.
        """
        path = f"/v1/concepts/{int(concept_id)}"
        return _obj(
            self.request_json("PATCH", path, json=changes, headers=_if_match_header(if_match))
        )

    def delete_concept(self, concept_id: int) -> None:
        self.request_json("DELETE", f"/v1/concepts/{int(concept_id)}")

    def list_concepts(
        self, *, name: str | None = None, tag: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[dict[str, Any]]:
        """One page of concepts, optionally filtered by exact name or tag."""
        return self._page("/v1/concepts", {"name": name, "tag": tag}, limit, offset)

    def iter_concepts(
        self, *, name: str | None = None, tag: str | None = None, page_size: int = 500
    ) -> Iterator[dict[str, Any]]:
        """Every concept matching the filters, fetched page by page."""
        return self._iterate("/v1/concepts", {"name": name, "tag": tag}, page_size)

    # -- concept sets and versions -----------------------------------------------------
    def create_concept_set(
        self, name: str, *, description: str = "", public: bool = False
    ) -> dict[str, Any]:
        body = {"name": name, "description": description, "public": public}
        return _obj(self.request_json("POST", "/v1/concept-sets", json=body))

    def list_concept_sets(
        self,
        *,
        name: str | None = None,
        namespace: str | None = None,
        public: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[dict[str, Any]]:
        """One page of the sets this key can read (its own and public ones)."""
        params = {"name": name, "namespace": namespace, "public": public}
        return self._page("/v1/concept-sets", params, limit, offset)

    def get_concept_set(self, concept_set_id: int) -> dict[str, Any]:
        """A concept set with a summary of its versions."""
        return _obj(self.request_json("GET", f"/v1/concept-sets/{int(concept_set_id)}"))

    def create_version(
        self, concept_set_id: int, *, from_version: int | None = None, empty: bool = False
    ) -> dict[str, Any]:
        """A new draft version of a set.

        Its concepts are copied from version number ``from_version`` (default: the
        set's latest version), or it starts with none when ``empty``.
        """
        body: dict[str, Any] = {"empty": empty}
        if from_version is not None:
            body["from_version"] = int(from_version)
        path = f"/v1/concept-sets/{int(concept_set_id)}/versions"
        return _obj(self.request_json("POST", path, json=body))

    def add_concepts(
        self,
        version_id: int,
        concept_ids: Sequence[int],
        *,
        if_match: int | str | None = None,
    ) -> dict[str, Any]:
        """Add concepts to a draft version (``ImmutableError`` once published).

        ``if_match``: the draft's ``revision`` (or ETag) you last read; if it changed
        since, nothing is written and ``PreconditionFailedError`` is raised.
        """
        path = f"/v1/concept-set-versions/{int(version_id)}/concepts"
        body = {"concept_ids": [int(i) for i in concept_ids]}
        headers = _if_match_header(if_match)
        return _obj(self.request_json("POST", path, json=body, headers=headers))

    def remove_concepts(
        self,
        version_id: int,
        concept_ids: Sequence[int],
        *,
        if_match: int | str | None = None,
    ) -> dict[str, Any]:
        path = f"/v1/concept-set-versions/{int(version_id)}/concepts"
        body = {"concept_ids": [int(i) for i in concept_ids]}
        headers = _if_match_header(if_match)
        return _obj(self.request_json("DELETE", path, json=body, headers=headers))

    def publish_version(
        self, version_id: int, *, if_match: int | str | None = None
    ) -> dict[str, Any]:
        """Freeze a draft version; its content can no longer change."""
        path = f"/v1/concept-set-versions/{int(version_id)}/publish"
        return _obj(self.request_json("POST", path, headers=_if_match_header(if_match)))

    def get_version(self, version_id: int) -> dict[str, Any]:
        """A concept-set version, with its concept ids."""
        return _obj(self.request_json("GET", f"/v1/concept-set-versions/{int(version_id)}"))

    def diff_versions(self, a: int, b: int) -> dict[str, Any]:
        path = f"/v1/concept-set-versions/{int(a)}/diff/{int(b)}"
        return _obj(self.request_json("GET", path))

    def fork_concept_set(
        self,
        concept_set_id: int,
        name: str,
        *,
        description: str | None = None,
        public: bool = False,
        from_version: int | None = None,
    ) -> dict[str, Any]:
        """Copy a readable (own or public) set into this key's namespace as ``name``.

        ``from_version`` is a version number of the source set (default: its latest
        published version).
        """
        body: dict[str, Any] = {"name": name, "public": public}
        if description is not None:
            body["description"] = description
        if from_version is not None:
            body["from_version"] = int(from_version)
        path = f"/v1/concept-sets/{int(concept_set_id)}/fork"
        return _obj(self.request_json("POST", path, json=body))

    # -- tasks and partitions ----------------------------------------------------------
    def create_task(self, name: str, *, description: str = "") -> dict[str, Any]:
        body = {"name": name, "description": description}
        return _obj(self.request_json("POST", "/v1/tasks", json=body))

    def get_task(self, task_id: int) -> dict[str, Any]:
        return _obj(self.request_json("GET", f"/v1/tasks/{int(task_id)}"))

    def list_tasks(
        self, *, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[dict[str, Any]]:
        """One page of this namespace's tasks, optionally by exact name."""
        return self._page("/v1/tasks", {"name": name}, limit, offset)

    def create_partition(
        self,
        task_id: int,
        concept_set_version_id: int,
        labels: Sequence[Mapping[str, Any]],
        *,
        provenance: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new partition version: one label dict per concept (see the API docs)."""
        body = {
            "task_id": int(task_id),
            "concept_set_version_id": int(concept_set_version_id),
            "labels": [dict(x) for x in labels],
            "provenance": dict(provenance or {}),
        }
        return _obj(self.request_json("POST", "/v1/partitions", json=body))

    def override_labels(
        self, partition_id: int, labels: Sequence[Mapping[str, Any]], *, note: str = ""
    ) -> dict[str, Any]:
        """A new partition version with these labels replaced (a human review).

        Each label is ``{"concept_id", "label", "score"?, "rationale"?, "labeler"?}``.
        """
        path = f"/v1/partitions/{int(partition_id)}/overrides"
        body = {"labels": [dict(x) for x in labels], "note": note}
        return _obj(self.request_json("POST", path, json=body))

    def latest_partition(
        self, task_id: int, *, concept_set_version_id: int | None = None
    ) -> dict[str, Any]:
        """The newest partition of a task (``NotFoundError`` if it has none)."""
        params = {"task_id": int(task_id), "concept_set_version_id": concept_set_version_id}
        return _obj(self.request_json("GET", "/v1/partitions/latest", params=params))

    def get_partition(self, partition_id: int) -> dict[str, Any]:
        """A partition version with its labels."""
        return _obj(self.request_json("GET", f"/v1/partitions/{int(partition_id)}"))

    def list_partitions(
        self,
        *,
        task_id: int | None = None,
        concept_set_version_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[dict[str, Any]]:
        params = {"task_id": task_id, "concept_set_version_id": concept_set_version_id}
        return self._page("/v1/partitions", params, limit, offset)

    # -- vectors -----------------------------------------------------------------------
    def upload_vectors(
        self,
        model_id: int,
        recipe_id: int,
        vectors: torch.Tensor | np.ndarray,
        concept_ids: IntsLike,
        layers: IntsLike,
        *,
        max_request_bytes: int | None = None,
    ) -> UploadResult:
        """Store concept atoms: row i of ``vectors`` (m, d) is concept_ids[i] at layers[i].

        ``layers`` may be one int for all rows. fp16/bf16/fp32 go as they are, other
        float dtypes as fp32. Large uploads are split into requests of at most
        ``max_request_bytes``; each is one transaction, and since re-sending identical
        rows only counts them as ``skipped``, a failed upload can simply be repeated.
        """
        batch = VectorBatch(vectors, concept_ids, layers)
        limit = max_request_bytes if max_request_bytes is not None else self.max_upload_bytes
        path = f"/v1/models/{int(model_id)}/vectors"
        total = UploadResult(0, 0)
        for rows in split_rows(batch, limit):
            body = encode_batch(batch, rows)
            data = self.request_json(
                "POST",
                path,
                params={"recipe_id": int(recipe_id)},
                content=body,
                headers={"Content-Type": "application/octet-stream"},
                idempotent=True,
            )
            try:
                total += UploadResult(int(data["inserted"]), int(data["skipped"]))
            except (TypeError, KeyError, ValueError) as exc:
                raise UnexpectedResponseError(f"POST {path}: unexpected body {data!r}") from exc
        return total

    def vectors_present(
        self,
        model_id: int,
        recipe_id: int,
        layers: Sequence[int],
        concept_ids: Sequence[int],
    ) -> list[int]:
        """The concepts among ``concept_ids`` that already have atoms at all ``layers``."""
        body = {
            "recipe_id": int(recipe_id),
            "layers": [int(x) for x in layers],
            "concept_ids": [int(i) for i in concept_ids],
        }
        path = f"/v1/models/{int(model_id)}/vectors:present"
        data = self.request_json("POST", path, json=body, idempotent=True)
        try:
            return [int(i) for i in data["present"]]
        except (TypeError, KeyError, ValueError) as exc:
            raise UnexpectedResponseError(f"POST {path}: unexpected body {data!r}") from exc

    # -- dictionaries ------------------------------------------------------------------
    def materialize_dictionary(
        self,
        concept_set_version_id: int,
        model_id: int,
        layers: Sequence[int],
        recipe_id: int,
        partition_id: int | None = None,
    ) -> str:
        """Have the service build (or find) a dictionary; returns its content hash."""
        body = {
            "concept_set_version_id": int(concept_set_version_id),
            "model_id": int(model_id),
            "layers": [int(x) for x in layers],
            "recipe_id": int(recipe_id),
            "partition_id": None if partition_id is None else int(partition_id),
        }
        data = self.request_json("POST", "/v1/dictionaries", json=body, idempotent=True)
        try:
            return validate_hash(data["hash"])
        except (TypeError, KeyError, ValueError) as exc:
            raise UnexpectedResponseError(f"POST /v1/dictionaries: no hash in {data!r}") from exc

    def pull_dictionary(
        self,
        *,
        concept_set_version_id: int,
        model_id: int,
        layers: Sequence[int],
        recipe_id: int,
        partition_id: int | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> ConceptDictionary:
        """Materialize a dictionary and load it from the cache (downloading it if new).

        The atoms land on ``device`` in ``dtype`` (default: the file's float16).
        """
        h = self.materialize_dictionary(
            concept_set_version_id, model_id, layers, recipe_id, partition_id
        )
        return self.pull_dictionary_by_hash(h, device=device, dtype=dtype)

    def pull_dictionary_by_hash(
        self,
        content_hash: str,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> ConceptDictionary:
        """Load a dictionary by content hash: from the cache, else download it once.

        A verified blob in the cache is used without any network call. Downloads are
        atomic and serialized per hash, so concurrent pulls (threads or processes)
        fetch it once and never see a partial file.
        """
        self._check_open()
        validate_hash(content_hash)
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype; got {dtype}")
        path = self.cache.get(content_hash)
        if path is None:
            with self.cache.lock(content_hash):
                path = self.cache.get(content_hash)  # another puller may have finished
                if path is None:
                    path = self._retrying(lambda: self._download(content_hash), idempotent=True)
        d = ConceptDictionary.load(path, device=device, dtype=dtype)
        if d.content_hash != content_hash:  # check_blob already did; this guards the load
            raise IntegrityError(f"{path}: loaded content hash {d.content_hash!r}")
        return d

    def _download(self, content_hash: str) -> Path:
        response = self._send_once("GET", f"/v1/dictionaries/{content_hash}", stream=True)
        try:
            if response.status_code != 200:
                raise UnexpectedResponseError(
                    f"GET /v1/dictionaries/{content_hash}: status {response.status_code}"
                )
            return stream_into_cache(response, self.cache, content_hash, progress=self.progress)
        finally:
            response.close()

    # -- search ------------------------------------------------------------------------
    def search_nearest(
        self,
        model_id: int,
        layer: int,
        vector: torch.Tensor | np.ndarray | Sequence[float],
        *,
        k: int = 10,
        recipe_id: int | None = None,
        concept_set_version_id: int | None = None,
        partition_id: int | None = None,
        task_id: int | None = None,
        exact: bool = False,
    ) -> NearestResult:
        """The ``k`` concepts whose atoms are nearest (cosine) to ``vector``.

        The vector travels as raw little-endian float32 (``application/octet-stream``),
        the other fields in the query string: no decimal formatting of 4,096 floats.
        """
        flat = torch.as_tensor(vector, dtype=torch.float32).detach().to("cpu").reshape(-1)
        params: dict[str, Any] = {
            "model_id": int(model_id),
            "layer": int(layer),
            "k": int(k),
            "exact": "true" if exact else "false",
        }
        optional = {
            "recipe_id": recipe_id,
            "concept_set_version_id": concept_set_version_id,
            "partition_id": partition_id,
            "task_id": task_id,
        }
        params.update({key: int(v) for key, v in optional.items() if v is not None})
        data = self.request_json(
            "POST",
            "/v1/search/nearest",
            params=params,
            content=flat.numpy().astype("<f4").tobytes(),
            headers={"Content-Type": "application/octet-stream"},
            idempotent=True,
        )
        try:
            results = [Neighbor.from_json(r) for r in data["results"]]
            return NearestResult(results=results, exact=bool(data["exact"]))
        except (TypeError, KeyError) as exc:
            raise UnexpectedResponseError(f"POST /v1/search/nearest: unexpected {data!r}") from exc


def _obj(data: Json) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UnexpectedResponseError(f"expected a JSON object, got {data!r}")
    return data


def _if_match_header(if_match: int | str | None) -> dict[str, str] | None:
    """``If-Match`` from a ``revision`` (quoted into an ETag) or an ETag as received."""
    if if_match is None:
        return None
    return {"If-Match": f'"{if_match}"' if isinstance(if_match, int) else if_match}


def _concept_body(
    name: str,
    description: str,
    tags: Sequence[str],
    stimuli: Sequence[Stimulus],
    source: str,
) -> dict[str, Any]:
    if isinstance(tags, str) or isinstance(stimuli, str):
        raise TypeError("tags and stimuli are sequences, not a single string")
    items = [
        {"text": s, "source": source, "provenance": {}} if isinstance(s, str) else dict(s)
        for s in stimuli
    ]
    return {"name": name, "description": description, "tags": list(tags), "stimuli": items}
