"""The Client against the real service: uvicorn on loopback over embedded PostgreSQL.

Nothing here is faked: requests go over TCP to the FastAPI app, which stores in
PostgreSQL + pgvector. The only wrapper is a transport that counts the bytes
received, so that "the second pull downloads nothing" is measured, not assumed.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
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
    """The app's paths with parameter names erased: ``/v1/models/{}``."""
    return {re.sub(r"\{[^}]*\}", "{}", p) for p in app.openapi()["paths"]}


def has_route(app: Any, path: str) -> bool:
    return re.sub(r"\{[^}]*\}", "{}", path) in _routes(app)


def require(app: Any, *paths: str) -> None:
    """Skip when the service does not have an endpoint yet (it is built in parallel)."""
    missing = [p for p in paths if not has_route(app, p)]
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


MODEL_ARGS: dict[str, Any] = {
    "hidden_size": HIDDEN,
    "num_layers": 4,
    "architecture": "LlamaForCausalLM",
}


@dataclass
class Catalog:
    model: Model
    recipe: Recipe
    concept_ids: list[int]
    names: list[str]


def build_catalog(sdk: Client, app: Any) -> Catalog:
    """A model, a recipe and five concepts (two of them harmful)."""
    require(app, "/v1/models", "/v1/recipes", "/v1/concepts", "/v1/concepts:bulk")
    model = sdk.create_model("test/tiny-llama", "main", **MODEL_ARGS)
    recipe = sdk.get_or_create_recipe(token_position="last", reduction="mean")
    first = sdk.create_concept("hatred", tags=["harm"], stimuli=["You despise your neighbour."])
    imported = {"text": "You visit Paris.", "source": "imported", "provenance": {"f": "x.jsonl"}}
    rest = sdk.create_concepts(
        [
            {"name": "kindness", "tags": ["virtue"], "stimuli": ["You help a stranger."]},
            {"name": "threat", "tags": ["harm"], "stimuli": ["You warn them, menacingly."]},
            {"name": "Paris", "stimuli": [imported]},
            {"name": "patience", "stimuli": ["You wait calmly."]},
        ]
    )
    assert (rest["created"], rest["existing"]) == (4, 0)
    concepts = [first, *rest["items"]]
    return Catalog(
        model, recipe, [int(c["id"]) for c in concepts], [str(c["name"]) for c in concepts]
    )


def build_world(sdk: Client, app: Any) -> World:
    """The catalog in a published concept-set version, with a detox partition."""
    catalog = build_catalog(sdk, app)
    require(app, "/v1/concept-sets", "/v1/tasks", "/v1/partitions")
    ids = catalog.concept_ids
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
    return World(
        catalog.model,
        catalog.recipe,
        ids,
        catalog.names,
        vid,
        int(partition["id"]),
        undesirable,
        atoms,
    )


def upload_world(sdk: Client, app: Any, world: World) -> None:
    require(app, "/v1/models/{model_id}/vectors")
    vectors = torch.cat([world.atoms[layer] for layer in LAYERS])
    ids = world.concept_ids * len(LAYERS)
    layers = [layer for layer in LAYERS for _ in world.concept_ids]
    result = sdk.upload_vectors(world.model.id, world.recipe.id, vectors, ids, layers)
    assert (result.inserted, result.skipped) == (len(ids), 0)


def test_models_recipes_and_concepts_round_trip(sdk: Client, app: Any) -> None:
    catalog = build_catalog(sdk, app)
    model = catalog.model
    assert sdk.get_model(model.id) == model
    assert sdk.find_model("test/tiny-llama", "main") == model
    assert sdk.find_model("test/tiny-llama", "other") is None
    with pytest.raises(errors.DuplicateError) as dup:
        sdk.create_model("test/tiny-llama", "main", **MODEL_ARGS)
    assert dup.value.status == 409 and dup.value.code == "duplicate"
    assert sdk.ensure_model("test/tiny-llama", "main", **MODEL_ARGS) == model
    with pytest.raises(ValueError, match="hidden_size"):
        sdk.ensure_model("test/tiny-llama", "main", **{**MODEL_ARGS, "hidden_size": 32})
    with pytest.raises(errors.NotFoundError) as missing:
        sdk.get_model(10**9)
    assert missing.value.code == "not_found"
    assert isinstance(missing.value, LookupError)

    assert sdk.get_or_create_recipe(token_position="last", reduction="mean") == catalog.recipe
    other = sdk.get_or_create_recipe(token_position="mean", reduction="pc1")
    assert other.id != catalog.recipe.id and (other.token_position, other.reduction) == (
        "mean",
        "pc1",
    )
    with pytest.raises(errors.ValidationError) as no_slot:
        sdk.get_or_create_recipe(prompt_template="no placeholder")
    assert no_slot.value.field == "prompt_template"

    harm = [c["name"] for c in sdk.iter_concepts(tag="harm", page_size=1)]
    assert sorted(harm) == ["hatred", "threat"]
    assert sdk.list_concepts(limit=2).total == 5
    walked = [int(c["id"]) for c in sdk.iter_concepts(page_size=2)]  # pages of 2, 2, 1
    assert sorted(walked) == sorted(catalog.concept_ids)
    paris = sdk.get_concept(catalog.concept_ids[3])
    assert paris["stimuli"][0]["source"] == "imported"
    assert paris["stimuli"][0]["provenance"] == {"f": "x.jsonl"}
    again = sdk.create_concepts([{"name": "kindness"}], skip_existing=True)
    assert (again["created"], again["existing"]) == (0, 1)
    assert again["items"][0]["id"] == catalog.concept_ids[1]
    with pytest.raises(errors.DuplicateError):
        sdk.create_concepts([{"name": "brand-new"}, {"name": "kindness"}])
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


def test_read_only_keys_cannot_write(sdk: Client, app: Any, live_service: tuple[str, str]) -> None:
    require(app, "/v1/concepts")
    reader_key = sdk.create_key("read")["key"]
    sdk.create_concept("visible", stimuli=["You can see this."])
    with Client(live_service[0], reader_key, retries=0) as reader:
        assert reader.list_concepts(name="visible").total == 1
        with pytest.raises(errors.PermissionDeniedError) as info:
            reader.create_concept("forbidden", stimuli=["You may not."])
    assert info.value.code == "forbidden"
    assert sdk.list_concepts(name="forbidden").total == 0


def test_concept_sets_versions_and_forks(sdk: Client, app: Any) -> None:
    catalog = build_catalog(sdk, app)
    require(app, "/v1/concept-sets", "/v1/concept-sets/{}/versions", "/v1/concept-sets/{}/fork")
    ids = catalog.concept_ids
    cset = sdk.create_concept_set("harms", description="harmful things", public=True)
    v1 = sdk.create_version(int(cset["id"]))
    assert v1["status"] == "draft" and v1["concept_ids"] == []
    sdk.add_concepts(int(v1["id"]), ids)
    after = sdk.remove_concepts(int(v1["id"]), [ids[4]])
    assert sorted(after["concept_ids"]) == sorted(ids[:4])
    published = sdk.publish_version(int(v1["id"]))
    assert published["status"] == "published"
    with pytest.raises(errors.ImmutableError) as frozen:
        sdk.add_concepts(int(v1["id"]), [ids[4]])
    assert frozen.value.status == 409
    v2 = sdk.create_version(int(cset["id"]), from_version=int(v1["number"]))
    assert sorted(v2["concept_ids"]) == sorted(ids[:4])
    sdk.remove_concepts(int(v2["id"]), [ids[0]])
    sdk.add_concepts(int(v2["id"]), [ids[4]])
    diff = sdk.diff_versions(int(v1["id"]), int(v2["id"]))
    assert [c["id"] for c in diff["added"]] == [ids[4]]
    assert [c["name"] for c in diff["removed"]] == [catalog.names[0]]
    fork = sdk.fork_concept_set(int(cset["id"]), "my-harms")
    assert fork["name"] == "my-harms" and fork["forked_from_set_id"] == cset["id"]
    assert len(sdk.get_concept_set(int(cset["id"]))["versions"]) == 2
    found = sdk.list_concept_sets(name="my-harms")
    assert [x["id"] for x in found.items] == [fork["id"]]
    assert sdk.list_concept_sets(name="nothing-like-this").total == 0
    with pytest.raises(errors.NotFoundError):
        sdk.get_version(10**9)


def test_if_match_edits_refuse_a_stale_revision(sdk: Client, app: Any) -> None:
    catalog = build_catalog(sdk, app)
    ids = catalog.concept_ids
    draft = sdk.create_version(int(sdk.create_concept_set("edited")["id"]), empty=True)
    seen = int(draft["revision"])
    moved = sdk.add_concepts(int(draft["id"]), ids[:1], if_match=seen)
    assert moved["revision"] == seen + 1
    with pytest.raises(errors.PreconditionFailedError) as stale:
        sdk.add_concepts(int(draft["id"]), ids[1:2], if_match=seen)
    assert stale.value.status == 412
    with pytest.raises(errors.PreconditionFailedError):
        sdk.publish_version(int(draft["id"]), if_match=seen)
    assert sdk.get_version(int(draft["id"]))["concept_ids"] == ids[:1]
    concept = sdk.get_concept(ids[0])
    sdk.update_concept(ids[0], description="new", if_match=int(concept["revision"]))
    with pytest.raises(errors.PreconditionFailedError):
        sdk.update_concept(ids[0], description="lost", if_match=f'"{concept["revision"]}"')
    assert sdk.publish_version(int(draft["id"]), if_match=seen + 1)["status"] == "published"


def test_sets_versions_and_partitions(sdk: Client, app: Any) -> None:
    world = build_world(sdk, app)
    version = sdk.get_version(world.version_id)
    assert sorted(version["concept_ids"]) == sorted(world.concept_ids)
    partition = sdk.get_partition(world.partition_id)
    got = {lab["concept_id"]: lab["label"] for lab in partition["labels"]}
    assert {c for c, lab in got.items() if lab == "undesirable"} == world.undesirable
    kindness = world.concept_ids[1]
    override = {
        "concept_id": kindness,
        "label": "undesirable",
        "score": 1.0,
        "rationale": "reviewer",
        "labeler": {"kind": "human", "name": "reviewer"},
    }
    newer = sdk.override_labels(world.partition_id, [override])
    assert int(newer["id"]) != world.partition_id
    relabelled = sdk.get_partition(int(newer["id"]))
    flagged = {lab["concept_id"] for lab in relabelled["labels"] if lab["label"] == "undesirable"}
    assert flagged == world.undesirable | {kindness}
    listed = sdk.list_partitions(concept_set_version_id=world.version_id)
    assert listed.total == 2
    task_id = int(relabelled["task_id"])
    assert sdk.latest_partition(task_id)["id"] == newer["id"]
    with pytest.raises(errors.ValidationError) as bad_label:
        sdk.override_labels(world.partition_id, [{"concept_id": kindness, "label": "evil"}])
    assert bad_label.value.field == "labels.0.label"


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
    raw = {
        "params": {"recipe_id": recipe_id},
        "headers": {"Content-Type": "application/octet-stream"},
    }
    path = f"/v1/models/{model_id}/vectors"
    with pytest.raises(errors.BadRequestError) as empty:
        sdk.request_json("POST", path, content=b"", **raw)
    assert empty.value.code == "empty_body"
    with pytest.raises(errors.BadRequestError) as garbage:
        sdk.request_json("POST", path, content=b"definitely not safetensors", **raw)
    assert garbage.value.code == "malformed_safetensors"
    # Uploads split into many requests add up like one.
    sdk.max_upload_bytes = 3 * (HIDDEN * 4 + 16)
    split = sdk.upload_vectors(model_id, recipe_id, torch.randn(5, HIDDEN), world.concept_ids, 0)
    assert (split.inserted, split.skipped) == (5, 0)
    if has_route(app, "/v1/models/{id}/vectors:present"):
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


class CuttingProxy:
    """A TCP proxy on loopback that drops its first ``cuts`` connections after
    ``cut_after`` body bytes from the server: a real mid-download network failure."""

    def __init__(self, upstream_port: int, *, cut_after: int, cuts: int = 1) -> None:
        self.upstream_port, self.cut_after, self.cuts_left = upstream_port, cut_after, cuts
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            limit = None
            if self.cuts_left > 0:
                self.cuts_left -= 1
                limit = self.cut_after
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for src, dst, budget in ((downstream, upstream, None), (upstream, downstream, limit)):
                t = threading.Thread(target=self._pump, args=(src, dst, budget), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, body_budget: int | None) -> None:
        """Copy src to dst; with a budget, stop after that many bytes past the headers."""
        head = b""
        limit: int | None = None  # bytes still allowed once the header end is known
        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if body_budget is not None:
                    if limit is None:
                        head += chunk
                        end = head.find(b"\r\n\r\n")
                        if end < 0:
                            dst.sendall(chunk)
                            continue
                        limit = end + 4 + body_budget - (len(head) - len(chunk))
                    chunk = chunk[: max(limit, 0)]
                    limit -= len(chunk)
                dst.sendall(chunk)
                if limit == 0:
                    break
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.listener.close()
        self._accepting.join(timeout=5)
        for t in self.threads:
            t.join(timeout=5)


def test_a_download_cut_by_the_network_is_retried_without_corrupting_the_cache(
    sdk: Client, app: Any, live_service: tuple[str, str], tmp_path: Path
) -> None:
    world = build_world(sdk, app)
    upload_world(sdk, app, world)
    require(app, "/v1/dictionaries", "/v1/dictionaries/{}")
    h = sdk.materialize_dictionary(
        world.version_id, world.model.id, list(LAYERS), world.recipe.id, world.partition_id
    )
    whole = sdk.pull_dictionary_by_hash(h)  # through the direct connection
    size = sdk.cache.blob_path(h).stat().st_size
    base, key = live_service
    port = int(base.rsplit(":", 1)[1])
    cache_dir = tmp_path / "proxied"
    blobs = cache_dir / "dictionaries" / "blobs"
    proxy = CuttingProxy(port, cut_after=size // 2, cuts=1)
    try:
        url = f"http://127.0.0.1:{proxy.port}"
        with Client(url, key, cache_dir=cache_dir, retries=0) as fragile:
            with pytest.raises(errors.TransportError) as cut:
                fragile.pull_dictionary_by_hash(h)
            assert "complete message body" in str(cut.value.__cause__)
            assert fragile.cache.get(h) is None
        assert list(blobs.glob("*")) == []  # no blob, no temp file
        sleeps: list[float] = []
        policy = RetryPolicy(retries=2, backoff_base=0.01, sleep=sleeps.append)
        proxy.cuts_left = 1  # the next connection is cut too, then the retry gets through
        with Client(url, key, cache_dir=cache_dir, retries=policy) as sturdy:
            d = sturdy.pull_dictionary_by_hash(h)
        assert len(sleeps) == 1 and proxy.connections == 3
    finally:
        proxy.close()
    assert (blobs / f"{h}.safetensors").read_bytes() == sdk.cache.blob_path(h).read_bytes()
    assert [p.name for p in blobs.glob("*")] == [f"{h}.safetensors"]
    for layer in LAYERS:
        assert torch.equal(d.atoms[layer], whole.atoms[layer])
