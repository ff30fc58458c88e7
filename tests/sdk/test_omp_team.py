"""Work on torch's own OpenMP threads (pace.solver._omp_team)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
import torch

from pace.solver import _omp_team

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "OpenMP" not in torch.__config__.parallel_info(),
    reason="torch's runtime here is not GNU libgomp",
)


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_torch_linux_wheel_has_a_team() -> None:
    assert _omp_team.team() is not None


def test_parts_run_in_order_on_the_teams_threads(two_threads: None) -> None:
    team = _omp_team.team()
    assert team is not None
    torch.ones(1 << 16).mul_(2)  # torch's team exists and its worker is awake
    ids: list[list[int]] = []
    for _ in range(3):
        got = team.run(2, lambda i: (i, threading.get_native_id()))
        assert [i for i, _ in got] == [0, 1]
        ids.append([tid for _, tid in got])
    main = threading.get_native_id()
    assert all(run[0] == main for run in ids)  # part 0: the calling thread, as in OpenMP
    workers = {run[1] for run in ids}
    assert main not in workers
    assert len(workers) == 1  # the same pooled worker every time, not new threads


def test_an_error_in_a_part_is_raised_after_the_region(two_threads: None) -> None:
    team = _omp_team.team()
    assert team is not None

    def fn(i: int) -> int:
        if i == 1:
            raise ValueError("part 1 failed")
        return i

    with pytest.raises(ValueError, match="part 1 failed"):
        team.run(2, fn)
    assert team.run(2, lambda i: i * 10) == [0, 10]  # the team still works afterwards
