"""Benchmark the exact elastic-net solver against scikit-learn and a plain 50-step FISTA.

All figures come from one process, so the ratios are meaningful even on a busy machine.
Per configuration it prints the median time per call of:

- ``ours``: ``pace.solver.ElasticNet.solve`` (exact: KKT-certified optimum);
- ``fista50``: ``pace.solver.fista_elastic_net`` with 50 steps, batched (approximate);
- ``sklearn``: ``sklearn.linear_model.ElasticNet`` with the parameters mapped, one call per
  vector (timed on up to ``--sklearn-rows`` rows and scaled to the batch);
- ``floor``: one product ``y @ D^T`` in the dictionary's compute dtype (one pass over D),

- ``numpy``: ours with ``compiled=False`` (the NumPy path: what runs without numba, and
  the implementation before the compiled kernels),

then the ratios and two accuracy checks: the largest KKT violation of ours (fp64) and how
far FISTA-50's objective is above ours. Then the steering case: ``y`` nudged by noise of
norm 0.3 (cosine about 0.96, like the same layer at the next token), solved cold and with
``warm_start`` from the answer for ``y``.

On CPU it first measures the steering call itself (n=2,000, d=576, batch 1: one call per
edited layer per generated token): ``solve_sparse`` on many different ``y``, interleaved
with the floor and the NumPy path, as wall-clock and as this thread's CPU time (the
machine may be shared; CPU time is less disturbed by other jobs).

    python bench/solver_bench.py                      # CPU: n=2,000/d=576 and n=10,000/d=4,096
    python bench/solver_bench.py --device cuda        # GPU: n=10,000, d=4,096, fp16 atoms
    python bench/solver_bench.py --quick              # small smoke run
    python bench/solver_bench.py --latency-only       # just the steering-call latency
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial

import torch

from pace.solver import (
    ElasticNet,
    ElasticNetConfig,
    elastic_net_objective,
    fista_elastic_net,
    kkt_violation,
    spectral_norm_sq,
)

ALPHA, TAU = 0.05, 0.95


def make_atoms(n: int, d: int, seed: int) -> torch.Tensor:
    """Activation-like atoms: a shared direction, a few shared factors and noise."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(d, generator=g)
    factors = torch.randn(8, d, generator=g)
    mix = torch.randn(n, 8, generator=g)
    return 3.0 * common + mix @ factors + 0.7 * torch.randn(n, d, generator=g)


def make_targets(unit_atoms: torch.Tensor, b: int, seed: int, k: int = 8) -> torch.Tensor:
    """Unit-norm sparse combinations of k atoms plus noise."""
    g = torch.Generator().manual_seed(seed)
    n, d = unit_atoms.shape
    idx = torch.randint(0, n, (b, k), generator=g)
    w = torch.randn(b, k, 1, generator=g)
    y = (w * unit_atoms[idx].float()).sum(1) + 0.05 * torch.randn(b, d, generator=g)
    return y / y.norm(dim=1, keepdim=True)


def timeit(fn: Callable[[], object], reps: int, device: torch.device) -> float:
    """Median seconds per call after one warm-up call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sklearn_per_vector(atoms_unit: torch.Tensor, y: torch.Tensor, rows: int) -> float:
    """Seconds per vector for scikit-learn (parameters mapped: alpha/d, l1_ratio=tau)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import ElasticNet as SkElasticNet

    x = atoms_unit.double().cpu().T.numpy()
    model = SkElasticNet(alpha=ALPHA / x.shape[0], l1_ratio=TAU, fit_intercept=False)
    ys = y[:rows].double().cpu().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        for row in ys:
            model.fit(x, row)
    return (time.perf_counter() - t0) / len(ys)


def run(
    n: int, d: int, batch: int, device: torch.device, dtype: torch.dtype, args: argparse.Namespace
) -> None:
    atoms = make_atoms(n, d, seed=n + d).to(device, dtype)
    solver = ElasticNet(atoms, alpha=ALPHA, tau=TAU)
    unit = solver.atoms
    y = make_targets(unit.cpu(), batch, seed=batch).to(device, dtype)
    compute = unit if device.type == "cuda" else unit.float()
    y_c = y.to(compute.dtype)
    lip = spectral_norm_sq(compute)
    reps = args.reps if n * d <= 2_000_000 else max(3, args.reps // 10)

    t_ours = timeit(lambda: solver.solve(y), reps, device)
    t_numpy = float("nan")
    if device.type == "cpu":
        numpy_path = ElasticNet(
            atoms, alpha=ALPHA, tau=TAU, config=ElasticNetConfig(compiled=False)
        )
        t_numpy = timeit(lambda: numpy_path.solve(y), max(2, reps // 5), device)
    else:
        cuda_figures(solver, atoms, y, reps)
        # The general path: rounds decided by batched steps on the device, each round's
        # systems solved on the host by the compiled homotopy. (At up to 16 rows ``ours``
        # keeps the rounds on the host instead: pace.solver._host_rounds.)
        general_cfg = ElasticNetConfig(fixed_schedule=False, host_rounds_max_rows=0)
        general = ElasticNet(atoms, alpha=ALPHA, tau=TAU, config=general_cfg)
        t_numpy = timeit(lambda: general.solve(y), max(2, reps // 5), device)
    # The steering case: the same layer at the next token, warm-started from this one.
    g = torch.Generator().manual_seed(batch + 1)
    y_next = y.float().cpu() + 0.3 * torch.randn(y.shape, generator=g) / d**0.5
    y_next = (y_next / y_next.norm(dim=1, keepdim=True)).to(device, dtype)
    prev = solver.solve_sparse(y)
    t_next = timeit(lambda: solver.solve(y_next), reps, device)
    t_warm = timeit(lambda: solver.solve(y_next, warm_start=prev), reps, device)
    t_floor = timeit(lambda: y_c @ compute.T, reps, device)
    fista_reps = max(2, reps // 5)
    t_fista = float("nan")
    if not args.no_baselines:
        t_fista = timeit(lambda: fista_elastic_net(compute, y_c, lipschitz=lip), fista_reps, device)
    sk_rows = 0 if args.no_baselines else min(batch, args.sklearn_rows)
    t_sk = sklearn_per_vector(unit, y, sk_rows) * batch if sk_rows else float("nan")

    c = solver.solve(y).cpu()
    yf = y.float().cpu()
    viol = float(kkt_violation(unit.cpu(), yf, c, alpha=ALPHA, tau=TAU).max())
    f_ours = elastic_net_objective(unit.cpu(), yf, c, alpha=ALPHA, tau=TAU)
    fista_excess = float("nan")
    if not args.no_baselines:
        c_fista = fista_elastic_net(compute, y_c, lipschitz=lip).cpu()
        f_fista = elastic_net_objective(unit.cpu(), yf, c_fista, alpha=ALPHA, tau=TAU)
        fista_excess = float(((f_fista - f_ours) / f_ours).max())
    nnz = float((c != 0).sum(1).float().mean())

    ms = 1e3
    print(
        f"{device.type:4} {str(dtype).removeprefix('torch.'):8} n={n:6d} d={d:5d} b={batch:3d} | "
        f"ours {t_ours * ms:9.3f} ms  fista50 {t_fista * ms:9.3f} ms  "
        f"sklearn {t_sk * ms:10.1f} ms  floor {t_floor * ms:7.3f} ms | "
        f"sklearn/ours {t_sk / t_ours:8.1f}x  fista50/ours {t_fista / t_ours:6.2f}x  "
        f"ours/floor {t_ours / t_floor:6.1f}x | "
        f"{'numpy path' if device.type == 'cpu' else 'general path'} {t_numpy * ms:.3f} ms "
        f"({t_numpy / t_ours:.1f}x ours) | per row {t_ours / batch * ms:.3f} ms | "
        f"nnz {nnz:.1f}  kkt {viol:.1e}  fista50 obj +{fista_excess:.1e} | "
        f"next token cold {t_next * ms:.3f} ms, warm {t_warm * ms:.3f} ms",
        flush=True,
    )


def cuda_figures(solver: ElasticNet, atoms: torch.Tensor, y: torch.Tensor, reps: int) -> None:
    """The fixed schedule on CUDA: certified rows, and its cost with and without host waits.

    ``graph, waited``: one ``try_solve_sparse`` (a CUDA graph replay) and a sync, per call;
    ``graph, queued``: 50 calls queued back to back and one sync (what a steered model sees:
    the device time per call, while the host goes on); ``eager``: the same schedule launched
    kernel by kernel (no graph).
    """
    _, ok = solver.try_solve_sparse(y)
    t_wait = timeit(lambda: solver.try_solve_sparse(y), reps, y.device)

    def queued() -> None:
        for _ in range(50):
            solver.try_solve_sparse(y)

    t_queue = timeit(queued, max(3, reps // 10), y.device) / 50
    eager_cfg = ElasticNetConfig(cuda_graphs=False)
    eager = ElasticNet(atoms, alpha=ALPHA, tau=TAU, config=eager_cfg)
    t_eager = timeit(lambda: eager.try_solve_sparse(y), max(3, reps // 3), y.device)
    graphed = solver._graphed
    capture = "ok" if graphed is None or graphed.capture_error is None else graphed.capture_error
    print(
        f"  fixed schedule b={y.shape[0]}: certified {int(ok.sum())}/{ok.numel()} rows | graph, "
        f"waited {t_wait * 1e3:.3f} ms; graph, queued {t_queue * 1e3:.3f} ms per call; eager "
        f"{t_eager * 1e3:.3f} ms | capture: {capture}",
        flush=True,
    )


def steering_latency(args: argparse.Namespace) -> None:
    """Per-call latency at the steering size: n=2,000, d=576, batch 1, fp32 on the CPU."""
    n, d, count = 2_000, 576, args.latency_vectors
    atoms = make_atoms(n, d, seed=n + d)
    t0 = time.perf_counter()
    solver = ElasticNet(atoms, alpha=ALPHA, tau=TAU)
    ys = make_targets(solver.atoms, count, seed=7)
    solver.solve_sparse(ys[:1])
    first = time.perf_counter() - t0
    numpy_path = ElasticNet(atoms, alpha=ALPHA, tau=TAU, config=ElasticNetConfig(compiled=False))
    compute = solver.atoms.float()
    g = torch.Generator().manual_seed(8)
    nxt = ys + 0.3 * torch.randn(ys.shape, generator=g) / d**0.5
    nxt = nxt / nxt.norm(dim=1, keepdim=True)
    prev = [solver.solve_sparse(ys[i : i + 1]) for i in range(count)]
    names = ("floor", "ours", "ours dense", "next cold", "next warm", "numpy")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    for i in range(count):
        y, y_next, warm = ys[i : i + 1], nxt[i : i + 1], prev[i]
        calls: dict[str, Callable[[], object]] = {
            "floor": partial(torch.matmul, y, compute.T),
            "ours": partial(solver.solve_sparse, y),
            "ours dense": partial(solver.solve, y),
            "next cold": partial(solver.solve_sparse, y_next),
            "next warm": partial(solver.solve_sparse, y_next, warm_start=warm),
        }
        if i % 5 == 0:
            calls["numpy"] = partial(numpy_path.solve_sparse, y)
        for _ in range(args.latency_reps):
            for name, fn in calls.items():
                w0, c0 = time.perf_counter(), time.thread_time()
                fn()
                cpu[name].append(time.thread_time() - c0)
                wall[name].append(time.perf_counter() - w0)
    med = {k: statistics.median(v) * 1e3 for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) * 1e3 for k, v in cpu.items()}
    print(
        f"steering call n={n} d={d} b=1, {count} vectors x {args.latency_reps} reps "
        f"(first call incl. JIT/cache load: {first:.1f} s); medians, wall | CPU:"
    )
    for k in names:
        print(
            f"  {k:10} {med[k]:7.3f} ms | {med_cpu[k]:7.3f} ms   "
            f"/floor {med[k] / med['floor']:5.2f}x | {med_cpu[k] / med_cpu['floor']:5.2f}x"
        )
    print(
        f"  numpy path / ours: {med['numpy'] / med['ours']:.1f}x wall, "
        f"{med_cpu['numpy'] / med_cpu['ours']:.1f}x CPU",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--sklearn-rows", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke test)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--latency-vectors", type=int, default=50)
    parser.add_argument("--latency-reps", type=int, default=5)
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--skip-large", action="store_true", help="only n=2,000, d=576 on CPU")
    parser.add_argument("--large-only", action="store_true", help="only n=10,000, d=4,096 on CPU")
    parser.add_argument(
        "--no-baselines", action="store_true", help="skip FISTA-50 and scikit-learn (slow)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, alpha={ALPHA}, tau={TAU}")
    if device.type == "cpu":
        steering_latency(args)
        if args.latency_only:
            return
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name()}")
        configs = [(10_000, 4_096, b, torch.float16) for b in (1, 64)]
    elif args.quick:
        configs = [(2_000, 576, b, torch.float32) for b in (1, 8)]
    else:
        configs = [
            (n, d, b, torch.float32) for n, d in ((2_000, 576), (10_000, 4_096)) for b in (1, 64)
        ]
        if args.skip_large:
            configs = configs[:2]
        if args.large_only:
            configs = configs[2:]
    for n, d, b, dtype in configs:
        run(n, d, b, device, dtype, args)


if __name__ == "__main__":
    main()
