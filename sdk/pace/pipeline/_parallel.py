"""Run LLM requests on a few threads; results come back in submission order."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["map_ordered"]

T = TypeVar("T")
R = TypeVar("R")


def map_ordered(fn: Callable[[T], R], items: Sequence[T], max_workers: int) -> Iterator[R]:
    """``map(fn, items)`` on up to ``max_workers`` threads (the openai client is
    thread-safe; requests are I/O-bound). Results are yielded in input order."""
    if max_workers < 1:
        raise ValueError(f"max_workers must be >= 1, got {max_workers}")
    if max_workers == 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
        yield from pool.map(fn, items)
