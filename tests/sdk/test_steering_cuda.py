"""PaCE's CUDA path: the whole layer edit as one CUDA graph, no host reads, deferred check."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pace.steering import NoOp, PaCE, steer


class _CountingEdit:
    """An edit method whose layers report uncertified rows, as PaCE's CUDA edit does."""

    def prepare(self, atoms: torch.Tensor, undesirable: torch.Tensor) -> Any:
        edit = NoOp().prepare(atoms, undesirable)

        def counted(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return edit(z)

        counted.uncertified_rows = lambda: 2  # type: ignore[attr-defined]
        return counted


def test_the_handle_reports_and_warns_about_uncertified_rows(tiny_model: Callable) -> None:
    model = tiny_model("llama")
    atoms = {
        0: torch.randn(8, model.config.hidden_size),
        1: torch.randn(8, model.config.hidden_size),
    }
    handle = steer(model, atoms, undesirable=[0], method=_CountingEdit())
    assert handle.uncertified_rows == 4  # two layers, two rows each
    with pytest.warns(RuntimeWarning, match="4 token row"):
        handle.remove()
    handle.remove()  # idempotent, and silent the second time


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_graphed_edit_matches_the_synchronous_edit(
    tiny_model: Callable, dtype: torch.dtype
) -> None:
    model = tiny_model("llama").to("cuda", dtype)
    width, layers = model.config.hidden_size, model.config.num_hidden_layers
    g = torch.Generator().manual_seed(3)
    shared = torch.randn(1, width, generator=g)
    atoms = {k: (shared + torch.randn(300, width, generator=g)).cuda() for k in range(layers)}
    ids = torch.randint(2, model.config.vocab_size, (1, 12), generator=g).cuda()
    gen = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        vanilla = model(ids).logits.float()
        fast_method = PaCE(deferred_check=True)
        with steer(model, atoms, undesirable=list(range(30)), method=fast_method) as h:
            fast = model(ids).logits.float()
            fast_tokens = model.generate(ids, **gen)  # decode steps replay the graphs
            assert h.uncertified_rows == 0
        assert not h.active
        sync = PaCE()
        with steer(model, atoms, undesirable=list(range(30)), method=sync):
            exact = model(ids).logits.float()
            exact_tokens = model.generate(ids, **gen)
    assert not torch.allclose(fast, vanilla)  # the edit does something
    tol = 1e-3 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(fast, exact, atol=tol * exact.abs().max().item(), rtol=0)
    assert torch.equal(fast_tokens, exact_tokens)
