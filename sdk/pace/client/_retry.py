"""When and how long to wait before retrying a request."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

__all__ = ["RETRY_STATUSES", "RetryPolicy", "parse_retry_after"]

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
"""Statuses that mean "try again later" and that a repeat cannot make worse."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring ``Retry-After``.

    Attempt ``i`` (0-based) waits a uniform random time in
    ``[0, min(backoff_max, backoff_base * 2**i)]``, unless the response said
    ``Retry-After``, which is obeyed exactly when it is at most ``retry_after_max``
    (longer waits are not retried: the error is raised instead).

    Only idempotent requests are retried on a dropped connection, a timeout or a
    429/502/503/504; any request is retried when the connection could not even be
    opened, because then nothing reached the service.
    """

    retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.retry_after_max < 0:
            raise ValueError("backoff_base, backoff_max and retry_after_max must be >= 0")

    def backoff(self, attempt: int) -> float:
        """The jittered wait before retry number ``attempt + 1``."""
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        return self.rng.uniform(0.0, cap)

    def delay_for(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before the next try, or None when not to retry at all."""
        if attempt >= self.retries:
            return None
        if response is not None:
            after = parse_retry_after(response.headers.get("retry-after"))
            if after is not None:
                return after if after <= self.retry_after_max else None
        return self.backoff(attempt)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
