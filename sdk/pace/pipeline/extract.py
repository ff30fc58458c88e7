"""Read concept atoms from a local transformers model's activations.

For each concept, every stimulus (rendered through the recipe's prompt template) is run
through the model; the hidden state of decoder block ``L`` (its output, the residual
stream) is taken at the last non-pad token (``token_position="last"``) or averaged over
the non-pad tokens (``"mean"``); the per-stimulus vectors are then reduced to one atom per
layer: their mean (``reduction="mean"``), or the first principal component of the
centered vectors with its sign aligned to the mean (``"pc1"``; unit norm; with fewer than
two distinct stimuli it falls back to the normalized mean).

Layer ``L`` is the output of decoder block ``L``, read with a forward hook on the block,
which is exactly what steering edits. It equals ``hidden_states[L + 1]`` of transformers
for every block but the last, where transformers applies the final norm first.

Speed and memory: stimuli of a chunk are sorted by token length (little padding), run in
batches under ``torch.inference_mode``, with explicit ``position_ids`` so left and right
padding give the same result as no padding; the forward pass stops after the deepest
requested block (no LM head). Concepts are streamed in chunks: an iterator of records in,
an iterator of ``ExtractedChunk`` out, so memory stays bounded by the chunk size (for
``pc1``, the chunk's per-stimulus vectors: stimuli x layers x d x 4 bytes).

Example::

    extractor = Extractor(model, tokenizer, layers=[10, 12], recipe=Recipe())
    for chunk in extractor.iter_chunks(records, skip=already_stored):
        vectors, ids, layers = chunk.upload_rows(name_to_id)
        client.upload_vectors(model_id, recipe_id, vectors, ids, layers)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

import torch
from torch import nn
from tqdm.auto import tqdm

import pace
from pace.pipeline.errors import PipelineError
from pace.pipeline.records import ConceptRecord
from pace.steering.errors import SteeringError
from pace.steering.layers import decoder_layers

__all__ = [
    "ExtractedChunk",
    "ExtractionSummary",
    "Extractor",
    "Recipe",
    "Reduction",
    "SkipSpec",
    "TokenPosition",
    "reduce_stimuli",
]

TokenPosition = Literal["last", "mean"]
Reduction = Literal["mean", "pc1"]
SkipSpec = Container[str] | Callable[[Sequence[ConceptRecord]], Collection[str]]
"""Names to skip: a container (``name in skip``), or a callable given each chunk's
records that returns the names to skip (one query per chunk, e.g. the service's
``vectors:present``)."""


@dataclass(frozen=True)
class Recipe:
    """How atoms are made; recorded with them (``POST /v1/recipes``)."""

    token_position: TokenPosition = "last"
    reduction: Reduction = "mean"
    prompt_template: str = "{stimulus}"
    code_version: str = pace.__version__

    def __post_init__(self) -> None:
        if self.token_position not in ("last", "mean"):
            raise ValueError(
                f"token_position must be 'last' or 'mean', not {self.token_position!r}"
            )
        if self.reduction not in ("mean", "pc1"):
            raise ValueError(f"reduction must be 'mean' or 'pc1', not {self.reduction!r}")
        if "{stimulus}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{stimulus}'")

    def render(self, stimulus: str) -> str:
        # str.replace, not str.format: templates may hold other braces (JSON, chat markup).
        return self.prompt_template.replace("{stimulus}", stimulus)

    def to_dict(self) -> dict[str, str]:
        return {
            "token_position": self.token_position,
            "reduction": self.reduction,
            "prompt_template": self.prompt_template,
            "code_version": self.code_version,
        }


@dataclass
class ExtractedChunk:
    """Atoms for up to ``chunk_size`` concepts; row ``i`` of every layer is ``concepts[i]``."""

    concepts: list[ConceptRecord]
    vectors: dict[int, torch.Tensor]
    """layer -> (m, d) float32 on the CPU."""
    recipe: Recipe
    skipped: list[str] = field(default_factory=list)
    """Names skipped: already stored (``skip``) or repeated in the input."""
    empty: list[str] = field(default_factory=list)
    """Names with no stimuli: nothing to extract."""
    n_stimuli: int = 0
    n_truncated: int = 0

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def __len__(self) -> int:
        return len(self.concepts)

    def upload_rows(
        self, concept_ids: Mapping[str, int], *, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(vectors (m*L, d), concept_ids (m*L,), layers (m*L,))`` for ``upload_vectors``.

        ``concept_ids`` maps each name to its service id; a missing name raises KeyError.
        """
        layers = sorted(self.vectors)
        m = len(self.concepts)
        if not layers or m == 0:
            d = next(iter(self.vectors.values())).shape[1] if self.vectors else 0
            empty = torch.empty(0, dtype=torch.int64)
            return torch.empty(0, d, dtype=dtype), empty, empty
        ids = torch.tensor([concept_ids[c.name] for c in self.concepts], dtype=torch.int64)
        vectors = torch.cat([self.vectors[layer] for layer in layers]).to(dtype)
        layer_col = torch.tensor(layers, dtype=torch.int64).repeat_interleave(m)
        return vectors, ids.repeat(len(layers)), layer_col


@dataclass
class ExtractionSummary:
    concepts: int = 0
    stimuli: int = 0
    skipped: int = 0
    empty: int = 0
    truncated: int = 0
    """Stimuli cut to ``max_length`` tokens (their last token is then not the text's)."""
    seconds: float = 0.0

    @property
    def stimuli_per_second(self) -> float:
        return self.stimuli / self.seconds if self.seconds > 0 else 0.0


def reduce_stimuli(x: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Reduce per-stimulus vectors (k, d) to one atom (d,), as in the module docstring."""
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"expected a non-empty (k, d) matrix, got shape {tuple(x.shape)}")
    x = x.float()
    mean = x.mean(dim=0)
    if reduction == "mean":
        return mean
    if reduction != "pc1":
        raise ValueError(f"reduction must be 'mean' or 'pc1', not {reduction!r}")
    centered = x - mean
    if x.shape[0] < 2 or float(centered.abs().max()) == 0.0:
        return mean / mean.norm().clamp_min(1e-12)
    _, _, vh = torch.linalg.svd(centered.double(), full_matrices=False)
    v = vh[0].float()
    return -v if float(v @ mean) < 0 else v


class _StopForward(Exception):
    """Raised by the deepest hook to skip the rest of the model and the LM head."""


def _move(bar: tqdm, n: float) -> None:
    """Put ``bar`` at ``n`` concepts. Set, not added: increments of fractions of a concept
    summed in ``bar.n`` ran a hair past the total, and tqdm warned "clamping frac to range
    [0, 1]" and showed a negative time left; ``start + done`` never passes a whole count."""
    bar.n = n
    bar.update(0)  # display, with the rate


class Extractor:
    """Runs a model over stimuli and returns concept atoms at the chosen layers.

    ``padding_side`` defaults to the tokenizer's; both sides give the same atoms.
    ``layer_modules`` overrides the discovery of decoder blocks (see ``decoder_layers``).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        layers: Sequence[int],
        recipe: Recipe | None = None,
        batch_size: int = 16,
        max_length: int = 256,
        padding_side: Literal["left", "right"] | None = None,
        layer_modules: Sequence[nn.Module] | Mapping[int, nn.Module] | None = None,
    ) -> None:
        try:
            blocks = decoder_layers(model, layer_modules)
        except SteeringError as exc:
            raise PipelineError(str(exc)) from exc
        self.layers = sorted({int(layer) for layer in layers})
        if not self.layers:
            raise ValueError("layers must name at least one decoder block")
        bad = [layer for layer in self.layers if layer not in blocks]
        if bad:
            raise ValueError(
                f"layers {bad} do not exist: the model has decoder blocks 0..{len(blocks) - 1}"
            )
        if batch_size < 1 or max_length < 1:
            raise ValueError("batch_size and max_length must be >= 1")
        side = padding_side or getattr(tokenizer, "padding_side", "right")
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {side!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.recipe = recipe or Recipe()
        self.batch_size = batch_size
        self.max_length = max_length
        self.padding_side: Literal["left", "right"] = side
        self._blocks = {layer: blocks[layer] for layer in self.layers}
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(tokenizer, "eos_token_id", None)
        # The pad id's value never matters (masked out); only that it is a valid token.
        self._pad_id = int(pad) if isinstance(pad, int) else 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- per stimulus ------------------------------------------------------------------
    def _tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], int]:
        rendered = [self.recipe.render(t) for t in texts]
        enc = self.tokenizer(rendered, add_special_tokens=True, truncation=False)
        ids: list[list[int]] = [list(x) for x in enc["input_ids"]]
        truncated = sum(len(x) > self.max_length for x in ids)
        ids = [x[: self.max_length] if x else [self._pad_id] for x in ids]
        return ids, truncated

    def _pad(self, seqs: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        input_ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if self.padding_side == "right":
                input_ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            else:
                input_ids[i, width - len(s) :] = torch.tensor(s)
                mask[i, width - len(s) :] = 1
        return input_ids, mask

    def _forward(self, seqs: Sequence[list[int]]) -> dict[int, torch.Tensor]:
        """Per-sequence vectors (b, d) float32 at each layer, for one padded batch."""
        input_ids, mask = self._pad(seqs)
        device = self.device
        input_ids, mask = input_ids.to(device), mask.to(device)
        position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
        captured: dict[int, torch.Tensor] = {}
        deepest = self.layers[-1]
        fmask = mask.unsqueeze(-1).float()
        last_idx = (mask * torch.arange(mask.shape[1], device=device)).argmax(dim=1)
        rows = torch.arange(mask.shape[0], device=device)

        def make_hook(layer: int) -> Callable[..., None]:
            def hook(_module: nn.Module, _args: Any, output: Any) -> None:
                h = output[0] if isinstance(output, tuple) else output
                h = h.float()
                if self.recipe.token_position == "last":
                    captured[layer] = h[rows, last_idx]
                else:
                    captured[layer] = (h * fmask).sum(1) / fmask.sum(1)
                if layer == deepest:
                    raise _StopForward

            return hook

        was_training = self.model.training
        self.model.eval()  # dropout would make atoms random
        handles = [blk.register_forward_hook(make_hook(lyr)) for lyr, blk in self._blocks.items()]
        try:
            with torch.inference_mode():
                self.model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=position_ids,
                    use_cache=False,
                )
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        missing = [layer for layer in self.layers if layer not in captured]
        if missing:
            raise PipelineError(f"the forward pass never reached decoder blocks {missing}")
        return {layer: v.cpu() for layer, v in captured.items()}

    def stimulus_vectors(self, texts: Sequence[str]) -> dict[int, torch.Tensor]:
        """Per-stimulus vectors: layer -> (len(texts), d) float32, in input order."""
        ids, _ = self._tokenize(texts)
        out: dict[int, torch.Tensor] = {}
        for _, batch in self._batches(ids):
            got = self._forward([ids[i] for i in batch])
            for layer, v in got.items():
                if layer not in out:
                    out[layer] = torch.empty(len(ids), v.shape[1])
                out[layer][torch.tensor(batch)] = v
        return out

    def _batches(self, ids: Sequence[list[int]]) -> Iterator[tuple[int, list[int]]]:
        # Longest first: the first batch shows the peak memory, and sorting keeps padding low.
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            yield start, order[start : start + self.batch_size]

    # -- per concept -------------------------------------------------------------------
    def extract(
        self, records: Sequence[ConceptRecord], *, on_batch: Callable[[int], None] | None = None
    ) -> ExtractedChunk:
        """Atoms for these records (each needs at least one stimulus); one chunk."""
        texts: list[str] = []
        owner: list[int] = []
        for row, record in enumerate(records):
            if not record.stimuli:
                raise ValueError(f"concept {record.name!r} has no stimuli")
            texts.extend(record.texts)
            owner.extend([row] * len(record.stimuli))
        m = len(records)
        ids, truncated = self._tokenize(texts) if texts else ([], 0)
        owner_t = torch.tensor(owner, dtype=torch.long)
        keep_all = self.recipe.reduction == "pc1"
        per_stim: dict[int, torch.Tensor] = {}
        sums: dict[int, torch.Tensor] = {}
        for _, batch in self._batches(ids):
            got = self._forward([ids[i] for i in batch])
            idx = torch.tensor(batch, dtype=torch.long)
            for layer, v in got.items():
                if keep_all:
                    if layer not in per_stim:
                        per_stim[layer] = torch.empty(len(ids), v.shape[1])
                    per_stim[layer][idx] = v
                else:
                    if layer not in sums:
                        sums[layer] = torch.zeros(m, v.shape[1])
                    sums[layer].index_add_(0, owner_t[idx], v)
            if on_batch is not None:
                on_batch(len(batch))
        vectors: dict[int, torch.Tensor] = {}
        if keep_all:
            for layer, x in per_stim.items():
                vectors[layer] = torch.stack(
                    [reduce_stimuli(x[owner_t == row], "pc1") for row in range(m)]
                )
        else:
            counts = torch.bincount(owner_t, minlength=m).clamp_min(1).unsqueeze(1).float()
            vectors = {layer: s / counts for layer, s in sums.items()}
        return ExtractedChunk(
            list(records), vectors, self.recipe, n_stimuli=len(ids), n_truncated=truncated
        )

    def iter_chunks(
        self,
        concepts: Iterable[ConceptRecord],
        *,
        chunk_size: int = 256,
        skip: SkipSpec | None = None,
        progress: bool = True,
        total: int | None = None,
    ) -> Iterator[ExtractedChunk]:
        """Stream concepts in chunks of ``chunk_size``; skipped/empty ones are listed.

        Shows a tqdm progress bar (concepts, with ETA) unless ``progress=False``;
        ``total`` defaults to ``len(concepts)`` when it has one.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if total is None and isinstance(concepts, Collection):
            total = len(concepts)
        seen: set[str] = set()
        processed = 0  # concepts of the finished chunks
        iterator = iter(concepts)
        # Progress moves by fractions of a concept per batch (smooth ETA); show it rounded.
        fmt = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}]"
        with tqdm(
            total=total,
            unit="concept",
            desc="extracting",
            disable=not progress,
            smoothing=0.1,
            bar_format=fmt if total else "{desc}: {n:.0f} concepts [{elapsed}, {rate_fmt}]",
        ) as bar:
            while True:
                chunk = list(islice(iterator, chunk_size))
                if not chunk:
                    return
                if callable(skip):
                    stored = set(skip(chunk))
                else:
                    stored = {c.name for c in chunk if skip is not None and c.name in skip}
                todo: list[ConceptRecord] = []
                skipped: list[str] = []
                empty: list[str] = []
                for c in chunk:
                    if c.name in seen or c.name in stored:
                        skipped.append(c.name)
                    elif not c.stimuli:
                        empty.append(c.name)
                    else:
                        todo.append(c)
                    seen.add(c.name)
                start = processed + len(skipped) + len(empty)
                _move(bar, start)
                n_stim = sum(len(c.stimuli) for c in todo)
                step = len(todo) / n_stim if n_stim else 0.0
                done = 0.0

                def advance(
                    k: int, step: float = step, limit: int = len(todo), start: int = start
                ) -> None:
                    nonlocal done
                    done = min(done + k * step, limit)
                    _move(bar, start + done)

                if todo:
                    result = self.extract(todo, on_batch=advance)
                else:
                    result = ExtractedChunk([], {}, self.recipe)
                processed += len(chunk)
                _move(bar, processed)
                result.skipped, result.empty = skipped, empty
                yield result

    def run(
        self,
        concepts: Iterable[ConceptRecord],
        sink: Callable[[ExtractedChunk], None],
        **kwargs: Any,
    ) -> ExtractionSummary:
        """Extract everything, hand each chunk to ``sink`` (e.g. an upload), then drop it."""
        summary = ExtractionSummary()
        start = time.perf_counter()
        for chunk in self.iter_chunks(concepts, **kwargs):
            summary.concepts += len(chunk)
            summary.stimuli += chunk.n_stimuli
            summary.skipped += len(chunk.skipped)
            summary.empty += len(chunk.empty)
            summary.truncated += chunk.n_truncated
            if len(chunk):
                sink(chunk)
        summary.seconds = time.perf_counter() - start
        return summary
