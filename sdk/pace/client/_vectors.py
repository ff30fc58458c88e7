"""Encode concept vectors as the safetensors bodies of ``POST /v1/models/{id}/vectors``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from safetensors.torch import save as st_save_bytes

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "VectorBatch", "encode_batch", "split_rows"]

DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
"""Upper bound on one upload request's vector payload; larger uploads are split."""

_WIRE_DTYPES = (torch.float16, torch.float32, torch.bfloat16)

IntsLike = torch.Tensor | np.ndarray | Sequence[int] | int


class VectorBatch:
    """Validated (m, d) vectors with one concept id and one layer per row, on the CPU."""

    def __init__(
        self,
        vectors: torch.Tensor | np.ndarray,
        concept_ids: IntsLike,
        layers: IntsLike,
    ) -> None:
        v = torch.as_tensor(vectors).detach()
        if v.ndim != 2:
            raise ValueError(f"vectors must be 2-D (m, d); got shape {tuple(v.shape)}")
        if not v.is_floating_point():
            raise TypeError(f"vectors must be floating point; got {v.dtype}")
        if v.dtype not in _WIRE_DTYPES:
            v = v.to(torch.float32)  # float64 and friends: the wire takes up to fp32
        m = v.shape[0]
        self.vectors = v.to("cpu").contiguous()
        self.concept_ids = _ints(concept_ids, m, "concept_ids")
        self.layers = _ints(layers, m, "layers")

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def row_bytes(self) -> int:
        return int(self.vectors.shape[1]) * self.vectors.element_size() + 16


def _ints(values: IntsLike, m: int, name: str) -> torch.Tensor:
    if isinstance(values, int):  # one layer (or id) for every row
        return torch.full((m,), values, dtype=torch.int64)
    t = torch.as_tensor(values).detach().to("cpu")
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be integers; got {t.dtype}")
    if t.shape != (m,):
        raise ValueError(f"{name} must have shape ({m},) to match vectors; got {tuple(t.shape)}")
    return t.to(torch.int64).contiguous()


def split_rows(batch: VectorBatch, max_request_bytes: int) -> Iterator[slice]:
    """Row ranges whose payload stays under ``max_request_bytes`` (at least one row each)."""
    if max_request_bytes <= 0:
        raise ValueError(f"max_request_bytes must be positive; got {max_request_bytes}")
    step = max(1, max_request_bytes // batch.row_bytes)
    for start in range(0, len(batch), step):
        yield slice(start, min(start + step, len(batch)))


def encode_batch(batch: VectorBatch, rows: slice | None = None) -> bytes:
    """The safetensors body for some rows: ``vectors``, ``concept_ids``, ``layers``."""
    sel = rows if rows is not None else slice(None)
    return st_save_bytes(
        {
            "vectors": batch.vectors[sel].contiguous(),
            "concept_ids": batch.concept_ids[sel].contiguous(),
            "layers": batch.layers[sel].contiguous(),
        }
    )
