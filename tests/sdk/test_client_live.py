"""The Client against the real service: uvicorn on loopback over embedded PostgreSQL.

Nothing here is faked: requests go over TCP to the FastAPI app, which stores in
PostgreSQL + pgvector. The only wrapper is a transport that counts the bytes
received, so that "the second pull downloads nothing" is measured, not assumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from pace import errors
from pace.client import Client, Model, Recipe, RetryPolicy
from pace.dictionary import UNDESIRABLE

HIDDEN, LAYERS = 16, (1, 2)


class CountingTransport(httpx.BaseTransport):
    """The real HTTP transport, counting requests and response body bytes per path."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[tuple[str, str]] = []
        self.body_bytes: dict[str, int] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        response = self.inner.handle_request(request)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CountingStream(response.stream, self, path),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self.inner.close()

    def downloaded(self, prefix: str) -> int:
        return sum(n for p, n in self.body_bytes.items() if p.startswith(prefix))


class _CountingStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, owner: CountingTransport, path: str) -> None:
        self.inner, self.owner, self.path = inner, owner, path

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.owner.body_bytes[self.path] = self.owner.body_bytes.get(self.path, 0) + len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


def _routes(app: Any) -> set[str]:
    return {getattr(r, "path", "") for r in app.routes}


def require(app: Any, *paths: str) -> None:
    """Skip when the service does not have an endpoint yet (it is built in parallel)."""
    missing = [p for p in paths if p not in _routes(app)]
    if missing:
        pytest.skip(f"service endpoint(s) not implemented yet: {missing}")


@pytest.fixture
def counting() -> CountingTransport:
    return CountingTransport()


@pytest.fixture
def sdk(
    live_service: tuple[str, str], tmp_path: Path, counting: CountingTransport
) -> Iterator[Client]:
    base, key = live_service
    policy = RetryPolicy(retries=2, backoff_base=0.05)
    with Client(base, key, cache_dir=tmp_path / "cache", transport=counting, retries=policy) as c:
        yield c


# -- identity and keys (service-core) ---------------------------------------------------
def test_me_and_keys_over_http(sdk: Client, live_service: tuple[str, str]) -> None:
    me = sdk.me()
    assert (me.namespace, me.role) == ("team-a", "admin")
    created = sdk.create_key("read")
    assert created["role"] == "read" and created["key"].startswith("pace_")
    base, _ = live_service
    with Client(base, created["key"], retries=0) as reader:
        assert reader.me().role == "read"
        with pytest.raises(errors.PermissionDeniedError) as info:
            reader.create_key("admin")
    assert info.value.status == 403 and info.value.code == "forbidden"


def test_unknown_key_and_bad_role_map_to_typed_errors(
    sdk: Client, live_service: tuple[str, str]
) -> None:
    base, key = live_service
    with (
        Client(base, key + "x", retries=0) as stranger,
        pytest.raises(errors.AuthenticationError) as info,
    ):
        stranger.me()
    assert info.value.code == "unauthenticated"
    with pytest.raises(errors.ValidationError) as bad:
        sdk.create_key("superuser")
    assert bad.value.code == "validation_error" and bad.value.field == "role"


# -- models, recipes, concepts, sets, partitions, vectors, dictionaries ------------------
@dataclass
class World:
    model: Model
    recipe: Recipe
    concept_ids: list[int]
    names: list[str]
    version_id: int
    partition_id: int
    undesirable: set[int]
    atoms: dict[int, torch.Tensor]  # layer -> (n, d), rows in concept_ids order


def build_world(sdk: Client, app: Any) -> World:
    require(
        app,
        "/v1/models",
        "/v1/recipes",
        "/v1/concepts",
        "/v1/concepts:bulk",
        "/v1/concept-sets",
        "/v1/tasks",
        "/v1/partitions",
    )
    model = sdk.create_model(
        "test/tiny-llama", "main", hidden_size=HIDDEN, num_layers=4, architecture="LlamaForCausalLM"
    )
    recipe = sdk.get_or_create_recipe(token_position="last", reduction="mean")
    first = sdk.create_concept("hatred", tags=["harm"], stimuli=["You despise your neighbour."])
    rest = sdk.create_concepts(
        [
            {"name": "kindness", "tags": ["virtue"], "stimuli": ["You help a stranger."]},
            {"name": "threat", "tags": ["harm"], "stimuli": ["You warn them, menacingly."]},
            {
                "name": "Paris",
                "stimuli": [
                    {
                        "text": "You visit Paris.",
                        "source": "imported",
                        "provenance": {"file": "x.jsonl"},
                    }
                ],
            },
            {"name": "patience", "stimuli": ["You wait calmly."]},
        ]
    )
    assert (rest["created"], rest["existing"]) == (4, 0)
    concepts = [first, *rest["items"]]
    ids = [int(c["id"]) for c in concepts]
    names = [str(c["name"]) for c in concepts]
    cset = sdk.create_concept_set("detox-mini", description="five concepts")
    version = sdk.create_version(int(cset["id"]))
    vid = int(version["id"])
    sdk.add_concepts(vid, ids)
    sdk.publish_version(vid)
    task = sdk.create_task("detox", description="no insults, hate or threats")
    undesirable = {ids[0], ids[2]}
    labels = [
        {
            "concept_id": cid,
            "label": "undesirable" if cid in undesirable else "benign",
            "score": 0.9,
            "rationale": "test",
            "labeler": {"kind": "human", "name": "pytest"},
        }
        for cid in ids
    ]
    partition = sdk.create_partition(int(task["id"]), vid, labels, provenance={"by": "pytest"})
    g = torch.Generator().manual_seed(0)
    atoms = {layer: torch.randn(len(ids), HIDDEN, generator=g) for layer in LAYERS}
    return World(model, recipe, ids, names, vid, int(partition["id"]), undesirable, atoms)


def upload_world(sdk: Client, app: Any, world: World) -> None:
    require(app, "/v1/models/{model_id}/vectors")
    vectors = torch.cat([world.atoms[layer] for layer in LAYERS])
    ids = world.concept_ids * len(LAYERS)
    layers = [layer for layer in LAYERS for _ in world.concept_ids]
    result = sdk.upload_vectors(world.model.id, world.recipe.id, vectors, ids, layers)
    assert (result.inserted, result.skipped) == (len(ids), 0)


def test_resources_round_trip_and_map_real_errors(sdk: Client, app: Any) -> None:
    world = build_world(sdk, app)
    assert sdk.get_model(world.model.id) == world.model
    assert sdk.find_model("test/tiny-llama", "main") == world.model
    assert sdk.find_model("test/tiny-llama", "other") is None
    with pytest.raises(errors.DuplicateError) as dup:
        sdk.create_model(
            "test/tiny-llama",
            "main",
            hidden_size=HIDDEN,
            num_layers=4,
            architecture="LlamaForCausalLM",
        )
    assert dup.value.status == 409
    again = sdk.ensure_model(
        "test/tiny-llama", "main", hidden_size=HIDDEN, num_layers=4, architecture="LlamaForCausalLM"
    )
    assert again == world.model
    with pytest.raises(ValueError, match="hidden_size"):
        sdk.ensure_model(
            "test/tiny-llama", "main", hidden_size=32, num_layers=4, architecture="LlamaForCausalLM"
        )
    assert sdk.get_or_create_recipe(token_position="last", reduction="mean") == world.recipe
    with pytest.raises(errors.NotFoundError) as missing:
        sdk.get_model(10**9)
    assert missing.value.code == "not_found"
    assert isinstance(missing.value, LookupError)
    with pytest.raises(errors.ImmutableError):
        sdk.add_concepts(world.version_id, world.concept_ids[:1])
    version = sdk.get_version(world.version_id)
    assert sorted(version["concept_ids"]) == sorted(world.concept_ids)
    assert [c["name"] for c in sdk.iter_concepts(tag="harm", page_size=1)] == ["hatred", "threat"]
    assert sdk.list_concepts(limit=2).total == 5
    again = sdk.create_concepts([{"name": "kindness"}], skip_existing=True)
    assert (again["created"], again["existing"]) == (0, 1)
    assert again["items"][0]["id"] == world.concept_ids[1]
    with pytest.raises(errors.DuplicateError):
        sdk.create_concepts([{"name": "kindness"}, {"name": "brand-new"}])
    assert sdk.list_concepts(name="brand-new").total == 0  # all or none
    temp = sdk.create_concept("temporary", stimuli=["You will be deleted."])
    changed = sdk.update_concept(int(temp["id"]), description="now described")
    assert changed["description"] == "now described"
    sdk.delete_concept(int(temp["id"]))
    with pytest.raises(errors.NotFoundError):
        sdk.get_concept(int(temp["id"]))
    with pytest.raises(errors.ValidationError) as invalid:
        sdk.create_concept("bad", stimuli=[""])
    assert invalid.value.field == "stimuli.0.text"
    partition = sdk.get_partition(world.partition_id)
    got = {lab["concept_id"]: lab["label"] for lab in partition["labels"]}
    assert {c for c, lab in got.items() if lab == "undesirable"} == world.undesirable


def test_upload_is_idempotent_and_conflicts_are_typed(sdk: Client, app: Any) -> None:
    world = build_world(sdk, app)
    upload_world(sdk, app, world)
    model_id, recipe_id = world.model.id, world.recipe.id
    again = sdk.upload_vectors(model_id, recipe_id, world.atoms[1], world.concept_ids, 1)
    assert (again.inserted, again.skipped) == (0, len(world.concept_ids))
    with pytest.raises(errors.ConflictError) as conflict:
        sdk.upload_vectors(model_id, recipe_id, world.atoms[1][:1] + 1.0, world.concept_ids[:1], 1)
    assert conflict.value.code == "conflict"
    with pytest.raises(errors.DimensionMismatchError):
        sdk.upload_vectors(
            model_id, recipe_id, torch.randn(1, HIDDEN + 1), world.concept_ids[:1], 3
        )
    nan = torch.randn(1, HIDDEN)
    nan[0, 3] = float("nan")
    with pytest.raises(errors.NonFiniteError):
        sdk.upload_vectors(model_id, recipe_id, nan, world.concept_ids[:1], 3)
    # Uploads split into many requests add up like one.
    sdk.max_upload_bytes = 3 * (HIDDEN * 4 + 16)
    split = sdk.upload_vectors(model_id, recipe_id, torch.randn(5, HIDDEN), world.concept_ids, 0)
    assert (split.inserted, split.skipped) == (5, 0)
    if "/v1/models/{model_id}/vectors:present" in _routes(app):
        present = sdk.vectors_present(model_id, recipe_id, [0, 1, 2], world.concept_ids)
        assert sorted(present) == sorted(world.concept_ids)
        assert sdk.vectors_present(model_id, recipe_id, [3], world.concept_ids) == []


def test_pull_twice_downloads_once_and_matches_the_upload(
    sdk: Client, app: Any, counting: CountingTransport
) -> None:
    world = build_world(sdk, app)
    upload_world(sdk, app, world)
    require(app, "/v1/dictionaries", "/v1/dictionaries/{content_hash}")
    args: dict[str, Any] = {
        "concept_set_version_id": world.version_id,
        "model_id": world.model.id,
        "layers": list(LAYERS),
        "recipe_id": world.recipe.id,
        "partition_id": world.partition_id,
    }
    first = sdk.pull_dictionary(**args)
    downloaded = counting.downloaded("/v1/dictionaries/")
    assert downloaded > 0
    h = first.content_hash
    assert h is not None
    assert sdk.cache.blob_path(h).stat().st_size == downloaded

    gets_before = counting.requests.count(("GET", f"/v1/dictionaries/{h}"))
    second = sdk.pull_dictionary(**args, dtype=torch.float32)
    assert counting.downloaded("/v1/dictionaries/") == downloaded  # zero new bytes
    assert counting.requests.count(("GET", f"/v1/dictionaries/{h}")) == gets_before == 1
    assert second.content_hash == h

    # The content is what was uploaded, in the dictionary's own row order.
    assert first.concept_ids is not None and first.labels is not None
    order = [world.concept_ids.index(int(i)) for i in first.concept_ids]
    assert sorted(order) == list(range(len(world.concept_ids)))
    assert list(first.concept_names) == [world.names[i] for i in order]
    assert first.layers == list(LAYERS)
    for layer in LAYERS:
        expected = world.atoms[layer][order]
        assert first.atoms[layer].dtype == torch.float16
        assert second.atoms[layer].dtype == torch.float32
        torch.testing.assert_close(second.atoms[layer], expected, rtol=1e-3, atol=1e-3)
    flagged = {
        int(i) for i, lab in zip(first.concept_ids, first.labels, strict=True) if lab == UNDESIRABLE
    }
    assert flagged == world.undesirable
    assert first.metadata["model"]["hidden_size"] == HIDDEN

    # Without a partition: another hash, no labels.
    plain = sdk.pull_dictionary(**{**args, "partition_id": None})
    assert plain.content_hash is not None and plain.content_hash != h
    assert plain.labels is None
    assert sorted(sdk.cache.hashes()) == sorted([h, plain.content_hash])


def test_search_nearest_finds_the_uploaded_atom(sdk: Client, app: Any) -> None:
    world = build_world(sdk, app)
    upload_world(sdk, app, world)
    require(app, "/v1/search/nearest")
    target = world.concept_ids[2]
    query = world.atoms[2][2] * 3.0  # cosine ignores the scale
    found = sdk.search_nearest(
        world.model.id,
        2,
        query,
        k=3,
        recipe_id=world.recipe.id,
        partition_id=world.partition_id,
        exact=True,
    )
    assert found.exact is True and len(found.results) == 3
    top = found.results[0]
    assert (top.concept_id, top.name, top.label) == (target, "threat", "undesirable")
    assert top.similarity == pytest.approx(1.0, abs=1e-3)
    assert [r.similarity for r in found.results] == sorted(
        (r.similarity for r in found.results), reverse=True
    )
    with pytest.raises(errors.ValidationError):
        sdk.search_nearest(world.model.id, 2, torch.randn(HIDDEN), k=0)
