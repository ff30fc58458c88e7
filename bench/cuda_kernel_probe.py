"""The Triton working-set kernel alone, by batch, working-set size and warps per program.

On the solver bench's dictionary (n = 10,000, d = 4,096, fp16): each row's top-K screened
slots, their system solved by the kernel (timed) and on the host (for the answer), then
the whole fixed schedule at batch 1 per warps setting (20 calls queued, one sync).

    python bench/cuda_kernel_probe.py
"""

from __future__ import annotations

import torch
from solver_bench import make_atoms, make_targets, timeit

from pace.solver import ElasticNet, ElasticNetConfig
from pace.solver import _triton_homotopy as kernel
from pace.solver._host import solve_on_host

L1, TOL = 0.0475, 1e-6
DEV = torch.device("cuda")


def main() -> None:
    atoms = make_atoms(10_000, 4096, seed=14_096).to("cuda", torch.float16)
    unit = ElasticNet(atoms, config=ElasticNetConfig(fixed_schedule=False)).atoms
    for b in (1, 64):
        y = make_targets(unit.float().cpu(), b, seed=b).cuda()
        r = (y.half() @ unit.T).float()
        for k in (32, 64):
            dw = unit[torch.topk(r.abs(), k, dim=1).indices].float()
            h = dw @ dw.transpose(1, 2) + 0.0025 * torch.eye(k, device="cuda")
            rhs = (dw @ y.unsqueeze(-1)).squeeze(-1)
            valid = torch.ones(b, k, dtype=torch.bool, device="cuda")
            ref, _ = solve_on_host(h, rhs, valid, L1, TOL)
            nnz = float((ref != 0).sum(1).float().mean())
            for warps in (2, 4, 8):
                kernel.NUM_WARPS = warps
                c, ok = kernel.homotopy_systems(h, rhs, valid, L1, TOL)
                ms = 1e3 * timeit(lambda: kernel.homotopy_systems(h, rhs, valid, L1, TOL), 20, DEV)  # noqa: B023
                print(
                    f"kernel b={b} K={k} warps={warps}: {ms:.3f} ms, mean nnz {nnz:.1f}, "
                    f"ok {bool(ok.all())}, max diff to host {float((c - ref).abs().max()):.1e}",
                    flush=True,
                )
    y1 = make_targets(unit.float().cpu(), 1, seed=1).cuda()
    for warps in (2, 4, 8):
        kernel.NUM_WARPS = warps
        solver = ElasticNet(atoms)
        _, ok = solver.try_solve_sparse(y1)

        def queued(s: ElasticNet = solver) -> None:
            for _ in range(20):
                s.try_solve_sparse(y1)

        print(
            f"schedule b=1 warps={warps}: {1e3 * timeit(queued, 5, DEV) / 20:.3f} ms per call "
            "queued, "
            f"certified {bool(ok.all())}",
            flush=True,
        )
    kernel.NUM_WARPS = 8


if __name__ == "__main__":
    main()
