"""Which undesirable concepts were removed, per token, and a PNG heatmap of it.

Positions are the token positions the model processed while recording, in order: the
prompt (first forward pass), then one position per decode step. The activation at
position ``p`` produces the token at ``p + 1``, so generated token ``j`` of a
``model.generate`` call was produced from position ``prompt_length - 1 + j``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from pace.steering.errors import SteeringError

__all__ = ["Explanation", "build_explanation"]


@dataclass(frozen=True)
class Explanation:
    """Removed coefficients of undesirable concepts, per position and layer.

    ``coefficients[b, p, l, k]`` is the coefficient ``c_U`` removed at batch row ``b``,
    position ``p``, layer ``layers[l]``, for concept ``concept_names[k]`` (0 where
    nothing was removed, and at pad positions, which are never edited).
    """

    concept_names: list[str]
    layers: list[int]
    coefficients: Tensor
    """float32 (batch, positions, layers, n_undesirable)."""
    edited: Tensor
    """bool (batch, positions): False at pad positions."""
    prompt_length: int

    def per_token(self) -> Tensor:
        """(batch, positions, n_undesirable): coefficients summed over layers."""
        return self.coefficients.sum(dim=2)

    def generated(self, batch_index: int = 0) -> Tensor:
        """(n_undesirable, n_generated): column j = the edit that produced generated token j."""
        start = self.prompt_length - 1
        return self.per_token()[batch_index, start:].T.contiguous()

    def removed(self, position: int, batch_index: int = 0) -> list[tuple[str, float]]:
        """Concepts removed at one position (summed over layers), largest |c| first."""
        row = self.per_token()[batch_index, position]
        order = torch.argsort(row.abs(), descending=True)
        return [(self.concept_names[i], float(row[i])) for i in order.tolist() if row[i] != 0]

    def plot(
        self,
        path: str | os.PathLike[str],
        *,
        batch_index: int = 0,
        token_labels: Sequence[str] | None = None,
        max_concepts: int = 30,
    ) -> Path:
        """Write a PNG heatmap: concepts (rows) by generated token (columns).

        Rows are the ``max_concepts`` concepts with the largest total removal;
        ``token_labels`` (e.g. the decoded generated tokens) label the columns.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if not 0 <= batch_index < self.coefficients.shape[0]:
            raise SteeringError(
                f"batch_index {batch_index} out of range for batch {self.coefficients.shape[0]}"
            )
        grid = self.generated(batch_index)
        if grid.shape[0] == 0 or grid.shape[1] == 0:
            raise SteeringError("nothing to plot: no undesirable concepts or no tokens recorded")
        if token_labels is not None and len(token_labels) != grid.shape[1]:
            raise SteeringError(
                f"token_labels has {len(token_labels)} entries; {grid.shape[1]} tokens recorded"
            )
        totals = grid.abs().sum(dim=1)
        rows = torch.argsort(totals, descending=True)[:max_concepts].tolist()
        data = grid[rows].numpy()
        names = [self.concept_names[i] for i in rows]
        width = min(2.0 + 0.35 * data.shape[1], 40.0)
        height = min(1.5 + 0.3 * len(rows), 30.0)
        fig, ax = plt.subplots(figsize=(width, height))
        try:
            image = ax.imshow(data, aspect="auto", cmap="magma", interpolation="nearest")
            ax.set_yticks(range(len(names)), labels=names)
            labels = list(token_labels) if token_labels is not None else None
            if labels is None:
                labels = [str(j) for j in range(data.shape[1])]
            ax.set_xticks(range(data.shape[1]), labels=labels, rotation=90)
            ax.set_xlabel("generated token")
            ax.set_title("removed coefficient (sum over layers)")
            fig.colorbar(image, ax=ax)
            fig.tight_layout()
            out = Path(path)
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, format="png", dpi=100)
        finally:
            plt.close(fig)
        return out


def build_explanation(
    passes: Sequence[dict[int, Tensor]],
    keeps: Sequence[Tensor],
    layers: Sequence[int],
    concept_names: Sequence[str],
) -> Explanation:
    """Stack recorded passes into an :class:`Explanation`."""
    used = [(p, k) for p, k in zip(passes, keeps, strict=True) if p]
    if not used:
        raise SteeringError(
            "nothing recorded: attach with record=True and run the model "
            "(only PaCE records coefficients)"
        )
    n_u = len(concept_names)
    per_pass: list[Tensor] = []
    edited: list[Tensor] = []
    batch = next(iter(used[0][0].values())).shape[0]
    for rec, keep in used:
        sample = next(iter(rec.values()))
        b, s = sample.shape[0], sample.shape[1]
        if b != batch:
            raise SteeringError(
                f"recorded forward passes have batch sizes {batch} and {b}; "
                "clear the record between generations (handle.clear_record())"
            )
        zeros = torch.zeros(b, s, n_u)
        per_pass.append(torch.stack([rec.get(layer, zeros) for layer in layers], dim=2))
        edited.append(keep)
    prompt_length = int(per_pass[0].shape[1])
    return Explanation(
        concept_names=list(concept_names),
        layers=list(layers),
        coefficients=torch.cat(per_pass, dim=1),
        edited=torch.cat(edited, dim=1),
        prompt_length=prompt_length,
    )
