"""Where a decode edit's time goes: the compiled kernel's phases, in CPU cycles.

It instruments a copy of ``pace/solver/_compiled.py``: a cycle counter (LLVM's
``readcyclecounter``) read around each phase of ``remove_row_lowp``, with the counts added
into an array that the copy's functions pass along. It then runs every decode edit of a
real generation through that copy. The inputs are those ``bench/steering_solver_replay.py``
captures, the same as ``bench/solver_kernel_ab.py`` uses. As there, a buffer is streamed
before each call (``--evict-mb``, 15 MB by default), so each call starts cold. Printed: the
microseconds per call of each phase, for a few layers and for all of them, with each
phase's share. Also per call: homotopy events, Gram rows read by the KKT products, and
exact correlations computed.

The phases are:
- pass: the int8 screening pass;
- screen: the first working set;
- exact dots: the fp32 correlations of atoms that join;
- h build: the working set's rows of the Gram;
- homotopy: the path, continued from round to round;
- KKT product: ``g = r - c_W G_W``;
- KKT select: the violators, and the exact correlations that the pass's bound leaves
  undecided;
- total: the whole call, including the normalisation and the removal.

    .venv/bin/python bench/solver_phases.py --inputs /tmp/replay.pt

The instrumentation is text inserted at anchors in the kernel's source; a changed kernel
makes an anchor fail by name (then update the anchor here). Cycles are converted to
microseconds by timing the instrumented call itself, so they include no Python.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from solver_kernel_ab import _load, _Replay

SOURCE = Path(__file__).parent.parent / "sdk" / "pace" / "solver" / "_compiled.py"

_CYCLES = """


def _make_cycles() -> Any:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    def typer(typingctx: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter"
            )
            return builder.call(fn, [])

        return types.int64(), codegen

    typer.__name__ = "_cycles"
    return intrinsic(typer)


_cycles: Any = _make_cycles()"""

# Counter slots.
EVENTS, KKT_ROWS, JOIN_DOTS, UNDECIDED_DOTS = 1, 2, 3, 4
PHASES = {16: "pass", 23: "screen", 17: "exact dots", 18: "h build", 19: "homotopy",
          20: "KKT product", 21: "KKT select", 24: "total"}  # fmt: skip
NEW = "np.zeros(32, np.int64)"

# (anchor, replacement) pairs, applied in order, each to the first match.
EDITS = [
    ("_fetch_add: Any = _atomic_fetch_add()", "_fetch_add: Any = _atomic_fetch_add()" + _CYCLES),
    # _homotopy takes the counters and counts its events.
    ("    carry_inv: npt.NDArray[np.float64],\n) -> tuple[int, int, npt.NDArray[np.int64],",
     "    carry_inv: npt.NDArray[np.float64],\n    stats: npt.NDArray[np.int64],\n"
     ") -> tuple[int, int, npt.NDArray[np.int64],"),
    ("    for event in range(max_steps):\n",
     f"    for event in range(max_steps):\n        stats[{EVENTS}] += 1\n"),
    ("c, 0, np.empty(0, np.int64), np.empty((0, 0))\n    )",
     f"c, 0, np.empty(0, np.int64), np.empty((0, 0)), {NEW}\n    )"),
    ("c, k_old, carry_order, carry_inv)\n", f"c, k_old, carry_order, carry_inv, {NEW})\n"),
    # _solve_row takes the counters and times its phases.
    ("    out_val: npt.NDArray[np.float32],\n) -> tuple[int, int]:\n    \"\"\"One row",
     "    out_val: npt.NDArray[np.float32],\n    stats: npt.NDArray[np.int64],\n"
     ") -> tuple[int, int]:\n    \"\"\"One row"),
    ("    for j in _top(score, min(n, screen)):",
     "    t_a = _cycles()\n    for j in _top(score, min(n, screen)):"),
    ("    g = np.empty(n)\n", "    stats[23] += _cycles() - t_a\n    g = np.empty(n)\n"),
    ("        _exact_dots(atoms, y64, fresh[:nu], r64, known)\n",
     f"        t_a = _cycles()\n        stats[{JOIN_DOTS}] += nu\n"
     "        _exact_dots(atoms, y64, fresh[:nu], r64, known)\n"
     "        t_b = _cycles()\n        stats[17] += t_b - t_a\n"),
    ("        bw = r64[w[:k]]\n", "        bw = r64[w[:k]]\n        t_c = _cycles()\n"
     "        stats[18] += t_c - t_b\n"),
    ("c[:k], k_old, carry_order, carry_inv\n        )",
     "c[:k], k_old, carry_order, carry_inv, stats\n        )\n"
     "        t_d = _cycles()\n        stats[19] += t_d - t_c"),
    ("            for j in range(n):\n                g[j] = r64[j]\n",
     f"            stats[{KKT_ROWS}] += na\n"
     "            for j in range(n):\n                g[j] = r64[j]\n"),
    ("            nviol = 0\n            thr = l1 + tol\n",
     "            t_e = _cycles()\n            stats[20] += t_e - t_d\n"
     "            nviol = 0\n            thr = l1 + tol\n"),
    ("                if nviol == 0 and nund > 0:\n",
     f"                if nviol == 0 and nund > 0:\n"
     f"                    stats[{UNDECIDED_DOTS}] += nund\n"),
    ("            done = nviol == 0\n", "            done = nviol == 0\n"
     "            stats[21] += _cycles() - t_e\n"),
    ("idx[i], val[i],\n            )  # fmt: skip\n            if st != OK:",
     f"idx[i], val[i], {NEW},\n            )  # fmt: skip\n            if st != OK:"),
    # _solve_lowp_row passes them on and times the pass.
    ("    out_val: npt.NDArray[np.float32],\n) -> tuple[int, int]:\n    \"\"\"``_solve_row``",
     "    out_val: npt.NDArray[np.float32],\n    stats: npt.NDArray[np.int64],\n"
     ") -> tuple[int, int]:\n    \"\"\"``_solve_row``"),
    ("    _pass_lowp(q, scale, col, y32, r64)\n",
     "    t_a = _cycles()\n    _pass_lowp(q, scale, col, y32, r64)\n"
     "    stats[16] += _cycles() - t_a\n"),
    ("        seed, seed_on, out_idx, out_val,\n    )",
     "        seed, seed_on, out_idx, out_val, stats,\n    )"),
    ("idx[i], val[i],\n        )  # fmt: skip\n        if status != OK:",
     f"idx[i], val[i], {NEW},\n        )  # fmt: skip\n        if status != OK:"),
    # remove_row_lowp takes them and times the whole call.
    ("    out: npt.NDArray[np.float32],\n) -> tuple[int, bool]:\n    \"\"\"PaCE's removal",
     "    out: npt.NDArray[np.float32],\n    stats: npt.NDArray[np.int64],\n"
     ") -> tuple[int, bool]:\n    \"\"\"PaCE's removal"),
    ("    d = z.shape[0]\n    nrm2 = 0.0\n",
     "    t_0 = _cycles()\n    d = z.shape[0]\n    nrm2 = 0.0\n"),
    ("np.empty(0, np.bool_), idx, val,\n    )", "np.empty(0, np.bool_), idx, val, stats,\n    )"),
    ("                    out[i] -= w * row[i]\n    return OK, changed",
     "                    out[i] -= w * row[i]\n    stats[24] += _cycles() - t_0\n"
     "    return OK, changed"),
    ("        pos, d_u, coef, out[0, 0],\n    )",
     f"        pos, d_u, coef, out[0, 0], {NEW},\n    )"),
]  # fmt: skip


def instrumented(source: str) -> str:
    for anchor, replacement in EDITS:
        if anchor not in source:
            raise SystemExit(f"anchor not found in {SOURCE.name}: {anchor!r}")
        source = source.replace(anchor, replacement, 1)
    return source


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inputs", default="/tmp/replay.pt", help="captured solver inputs")
    p.add_argument("--atoms", choices=["cen", "raw"], default="cen")
    p.add_argument("--layers", type=int, nargs="*", default=[0, 5, 10, 15, 20, 28, 29])
    p.add_argument("--evict-mb", type=int, default=15, help="MB streamed before each call")
    args = p.parse_args()
    torch.set_num_threads(1)
    replay = _Replay(args.inputs, args.atoms, args.evict_mb)
    with tempfile.TemporaryDirectory() as workdir:
        copy = Path(workdir) / "source.py"
        copy.write_text(instrumented(SOURCE.read_text()))
        kernels = _load(str(copy), "kernels_phases", workdir)

        def call(li: int, z: np.ndarray, stats: np.ndarray) -> None:
            c_u, out = np.zeros(replay.n_u, np.float32), np.empty_like(z)
            args_li = replay.solvers[li].cpu_row_kernel_args
            status, _ = kernels.remove_row_lowp(
                z, *args_li, replay.pos, replay.d_u, c_u, out, stats
            )
            assert status == kernels.OK, status

        # Cycles per microsecond, from the instrumented call's own total (warm, repeated).
        z0, stats = replay.rows[0][0], np.zeros(32, np.int64)
        call(0, z0, stats)
        stats[:] = 0
        t0 = time.perf_counter()
        for _ in range(200):
            call(0, z0, stats)
        per_us = stats[24] / ((time.perf_counter() - t0) * 1e6)
        print(f"{per_us:.0f} cycles per microsecond; {args.evict_mb} MB streamed before each call")
        print("layer " + " ".join(f"{v:>11}" for v in PHASES.values()) + "   us per call")
        total = np.zeros(32, np.int64)
        calls = 0
        for li in range(len(replay.rows)):
            stats = np.zeros(32, np.int64)
            for z in replay.rows[li]:
                replay.evict()
                call(li, z, stats)
            n = len(replay.rows[li])
            total += stats
            calls += n
            if li in args.layers:
                print(f"{li:5d} " + " ".join(f"{stats[i] / n / per_us:11.1f}" for i in PHASES))
        print("  all " + " ".join(f"{total[i] / calls / per_us:11.1f}" for i in PHASES))
        print("share " + " ".join(f"{total[i] / total[24]:11.2f}" for i in PHASES))
        per = total / calls
        print(f"per call: {per[EVENTS]:.1f} homotopy events, {per[KKT_ROWS]:.1f} Gram rows in "
              f"KKT products, {per[JOIN_DOTS]:.1f} exact correlations of joining atoms, "
              f"{per[UNDECIDED_DOTS]:.1f} of undecided ones")  # fmt: skip


if __name__ == "__main__":
    main()
