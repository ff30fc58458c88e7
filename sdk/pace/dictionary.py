"""The in-memory concept dictionary and its safetensors file format.

The format is specified in ``docs/dictionary-format.md`` (``pace.dictionary/1``); this
module is the SDK's reader and writer for it. It knows nothing of HTTP.

Example::

    d = ConceptDictionary.load("detox.safetensors", device="cuda", dtype=torch.bfloat16)
    d.atoms[12].shape          # (n, d)
    d.undesirable.sum()        # how many concepts are to be removed
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import load_file as st_load_file
from safetensors.torch import save as st_save_bytes

from pace.errors import DictionaryFormatError

__all__ = ["BENIGN", "FORMAT", "UNDESIRABLE", "UNLABELLED", "ConceptDictionary"]

FORMAT = "pace.dictionary/1"
UNDESIRABLE, BENIGN, UNLABELLED = 1, 0, -1
_ATOMS_PREFIX = "atoms."


@dataclass(frozen=True)
class ConceptDictionary:
    """Per-layer atom matrices over one ordered list of concepts, with optional labels."""

    atoms: Mapping[int, torch.Tensor]
    """layer -> (n, d) raw atoms; the same n rows, in the same order, for every layer."""
    concept_names: Sequence[str]
    concept_ids: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    """int8 (n,): 1 undesirable, 0 benign, -1 unlabelled; None without a partition."""
    scores: torch.Tensor | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Decoded ``__metadata__`` (model, recipe, concept_set, partition, missing, ...)."""

    def __post_init__(self) -> None:
        if not self.atoms:
            raise ValueError("a dictionary needs atoms for at least one layer")
        n = len(self.concept_names)
        for layer, a in self.atoms.items():
            if a.ndim != 2 or a.shape[0] != n:
                raise ValueError(
                    f"atoms for layer {layer} have shape {tuple(a.shape)}; expected ({n}, d)"
                )
        for name in ("concept_ids", "labels", "scores"):
            t = getattr(self, name)
            if t is not None and t.shape != (n,):
                raise ValueError(f"{name} has shape {tuple(t.shape)}; expected ({n},)")

    # -- views -------------------------------------------------------------------------
    @property
    def layers(self) -> list[int]:
        return sorted(self.atoms)

    @property
    def hidden_size(self) -> int:
        return int(next(iter(self.atoms.values())).shape[1])

    def __len__(self) -> int:
        return len(self.concept_names)

    @property
    def content_hash(self) -> str | None:
        h = self.metadata.get("content_hash")
        return str(h) if h is not None else None

    @property
    def undesirable(self) -> torch.Tensor:
        """Boolean mask (n,) of the concepts to remove; all False without labels."""
        device = next(iter(self.atoms.values())).device
        if self.labels is None:
            return torch.zeros(len(self), dtype=torch.bool, device=device)
        return (self.labels == UNDESIRABLE).to(device)

    def with_labels(self, labels: torch.Tensor | Sequence[int]) -> ConceptDictionary:
        """A copy with other labels (e.g. a local override), same atoms."""
        t = torch.as_tensor(labels, dtype=torch.int8)
        return replace(self, labels=t)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> ConceptDictionary:
        """Move the atoms (only) to a device and/or floating dtype."""
        atoms = {k: v.to(device=device, dtype=dtype) for k, v in self.atoms.items()}
        return replace(self, atoms=atoms)

    # -- (de)serialization -------------------------------------------------------------
    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        tensors: dict[str, torch.Tensor] = {
            f"{_ATOMS_PREFIX}{layer}": a.detach().to("cpu", torch.float16).contiguous()
            for layer, a in self.atoms.items()
        }
        if self.concept_ids is not None:
            tensors["concept_ids"] = self.concept_ids.to("cpu", torch.int64).contiguous()
        if self.labels is not None:
            tensors["labels"] = self.labels.to("cpu", torch.int8).contiguous()
        if self.scores is not None:
            tensors["scores"] = self.scores.to("cpu", torch.float32).contiguous()
        meta: dict[str, str] = {}
        for key, value in self.metadata.items():
            meta[key] = value if isinstance(value, str) else json.dumps(value)
        meta["format"] = FORMAT
        meta["concept_names"] = json.dumps(list(self.concept_names))
        meta["layers"] = json.dumps(self.layers)
        return tensors, meta

    def to_bytes(self) -> bytes:
        tensors, meta = self.to_tensors()
        return st_save_bytes(tensors, metadata=meta)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically: a temp file in the same folder, then ``os.replace``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.to_bytes())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> ConceptDictionary:
        try:
            tensors = st_load_bytes(data)
            meta = _read_metadata(data)
        except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
            raise DictionaryFormatError(f"not a valid dictionary file: {exc}") from exc
        return cls._from_parts(tensors, meta, device=device, dtype=dtype)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
    ) -> ConceptDictionary:
        try:
            tensors = st_load_file(str(path))
            with open(path, "rb") as f:
                header = f.read(8)
                size = int.from_bytes(header, "little")
                meta = _decode_header(f.read(size))
        except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
            raise DictionaryFormatError(f"{path}: not a valid dictionary file: {exc}") from exc
        return cls._from_parts(tensors, meta, device=device, dtype=dtype)

    @classmethod
    def _from_parts(
        cls,
        tensors: dict[str, torch.Tensor],
        meta: dict[str, str],
        *,
        device: torch.device | str,
        dtype: torch.dtype | None,
    ) -> ConceptDictionary:
        if meta.get("format") != FORMAT:
            raise DictionaryFormatError(
                f"unsupported dictionary format {meta.get('format')!r}; expected {FORMAT!r}"
            )
        try:
            names = json.loads(meta["concept_names"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise DictionaryFormatError("dictionary metadata lacks concept_names") from exc
        atoms = {
            int(k[len(_ATOMS_PREFIX) :]): v.to(device=device, dtype=dtype)
            for k, v in tensors.items()
            if k.startswith(_ATOMS_PREFIX)
        }
        decoded: dict[str, Any] = {}
        for key, value in meta.items():
            if key in ("concept_names", "format"):
                continue
            try:
                decoded[key] = json.loads(value)
            except json.JSONDecodeError:
                decoded[key] = value
        try:
            return cls(
                atoms=atoms,
                concept_names=names,
                concept_ids=tensors.get("concept_ids"),
                labels=tensors.get("labels"),
                scores=tensors.get("scores"),
                metadata=decoded,
            )
        except ValueError as exc:
            raise DictionaryFormatError(str(exc)) from exc


def _decode_header(raw: bytes) -> dict[str, str]:
    header = json.loads(raw)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("__metadata__ is not an object")
    return {str(k): str(v) for k, v in meta.items()}


def _read_metadata(data: bytes) -> dict[str, str]:
    if len(data) < 8:
        raise ValueError("file too short")
    size = int.from_bytes(data[:8], "little")
    return _decode_header(data[8 : 8 + size])
