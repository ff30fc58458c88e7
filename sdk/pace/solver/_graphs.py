"""Replay a fixed sequence of CUDA kernels as a captured CUDA graph, one per input shape.

At batch 1 a solve is a few hundred small kernels, and launching them one by one from
Python costs more than running them. A CUDA graph launches the whole sequence at once.
The function must be free of host synchronisation (``FixedSchedule`` is). Each distinct
input shape is captured once (a handful per solver: the decode batch size, rarely more);
where capture fails (an old driver, an operation that cannot be captured) the function
simply runs eagerly from then on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["GraphedFunction"]


@dataclass
class _Entry:
    graph: torch.cuda.CUDAGraph
    static_in: torch.Tensor
    static_out: tuple[torch.Tensor, ...]


class GraphedFunction:
    """``fn(x) -> tuple of tensors``, replayed from a CUDA graph captured per ``x.shape``.

    Outputs are fresh tensors (copied out of the graph's static buffers), so callers may
    keep them. ``max_shapes`` bounds how many graphs are kept (least recently used go).
    Inputs of more than ``max_rows`` rows run eagerly: launch overhead matters little
    there, and each graph keeps its temporaries for good (a steered 7B model's prefill,
    32 layers x 32 rows, ran an H100 out of memory when every layer kept one).
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
        *,
        max_shapes: int = 4,
        max_rows: int = 8,
        warmup: int = 2,
    ) -> None:
        self._fn = fn
        self._max_shapes = max_shapes
        self._max_rows = max_rows
        self._warmup = warmup
        self._entries: OrderedDict[tuple[tuple[int, ...], torch.dtype], _Entry] = OrderedDict()
        self.capture_error: str | None = None
        """Why capture failed, if it did (the function then runs eagerly)."""

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.capture_error is not None or x.device.type != "cuda" or x.shape[0] > self._max_rows:
            return self._fn(x)
        key = (tuple(x.shape), x.dtype)
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = self._capture(x)
            except RuntimeError as exc:  # capture unsupported here: run eagerly from now on
                self.capture_error = f"{type(exc).__name__}: {exc}"
                self._entries.clear()
                return self._fn(x)
            self._entries[key] = entry
            while len(self._entries) > self._max_shapes:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        entry.static_in.copy_(x)
        entry.graph.replay()
        return tuple(t.clone() for t in entry.static_out)

    def _capture(self, x: torch.Tensor) -> _Entry:
        static_in = x.clone()
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self._warmup):  # lazy library handles and workspaces
                self._fn(static_in)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # a private memory pool per graph
            static_out = self._fn(static_in)
        return _Entry(graph, static_in, tuple(static_out))
