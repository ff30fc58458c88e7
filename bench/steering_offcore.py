"""The decode edit on torch's other OpenMP thread: does the main core's cache matter?

A decode edit reads about 2.5 MB on the core that runs the interpreter and torch's
dispatcher, and the next layer's first op then runs slower (``steering_submodules.py``).
Here the same compiled edit (``_compiled.remove_row_lowp``) runs instead on the last
thread of torch's own OpenMP team, entered through ``GOMP_parallel`` with a numba
``cfunc`` body that finds its arrays through a table of addresses; the main thread only
waits at the region's barrier. Whole generations, the overhead bench's CPU setup
(SmolLM2-135M, 2,000 centered atoms + mean atom on 30 layers, sink guard, greedy),
alternated in one process: vanilla, steered with the edit in place ("in"), steered with
the edit off the main core ("off"). Prints each repeat's ratios to vanilla, the medians,
the paired off/in ratios, and whether "off" generated the same tokens as "in".

    flock /tmp/bench.lock .venv/bin/python bench/steering_offcore.py --repeats 6

Linux only (torch's bundled libgomp); a prototype for measurement, not the SDK's path.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import statistics
import sys
import time
from typing import Any

import numba as nb
import numpy as np
import torch
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

sys.path.insert(0, os.path.dirname(__file__))
import steering_overhead as so

import pace.steering.hooks as hooks
import pace.steering.methods as methods
from pace.solver import _compiled

_lib = glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*.so*"))[0]
gomp = ctypes.CDLL(_lib)
_tid = gomp.omp_get_thread_num
_tid.restype = ctypes.c_int
_tid.argtypes = []
_nth = gomp.omp_get_num_threads
_nth.restype = ctypes.c_int
_nth.argtypes = []
GOMP_parallel = gomp.GOMP_parallel
GOMP_parallel.restype = None
GOMP_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]


@intrinsic
def _ptr(typingctx, addr):  # type: ignore[no-untyped-def]
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


# The job table: int64 slots (addresses, sizes, results); l1, l2, tol as float64 bits.
Z, OUT, CU, Q, SCALE, COL, ERR, ATOMS, GRAM, POS, DU, N, D, NU = range(14)
L1, L2, TOL, SCREEN, ROUNDS, STATUS, CHANGED = range(14, 21)
JOB = 21


@nb.cfunc(types.void(types.voidptr), nopython=True, cache=False)
def _body(data):  # type: ignore[no-untyped-def]
    if _tid() != _nth() - 1:
        return
    job = nb.carray(data, (JOB,), np.int64)
    jf = nb.carray(data, (JOB,), np.float64)
    n = job[N]
    d = job[D]
    nu = job[NU]
    z = nb.carray(_ptr(job[Z]), (d,), np.float32)
    out = nb.carray(_ptr(job[OUT]), (d,), np.float32)
    cu = nb.carray(_ptr(job[CU]), (nu,), np.float32)
    q = nb.carray(_ptr(job[Q]), (n, d), np.int8)
    scale = nb.carray(_ptr(job[SCALE]), (n,), np.float32)
    col = nb.carray(_ptr(job[COL]), (d,), np.float32)
    err = nb.carray(_ptr(job[ERR]), (n,), np.float64)
    atoms = nb.carray(_ptr(job[ATOMS]), (n, d), np.float32)
    gram = nb.carray(_ptr(job[GRAM]), (n, n), np.float32)
    pos = nb.carray(_ptr(job[POS]), (n,), np.int64)
    du = nb.carray(_ptr(job[DU]), (nu, d), np.float32)
    cu[:] = 0.0
    status, changed = _compiled.remove_row_lowp(
        z, q, scale, col, err, atoms, gram, jf[L1], jf[L2], jf[TOL], job[SCREEN], job[ROUNDS],
        pos, du, cu, out,
    )  # fmt: skip
    job[STATUS] = status
    job[CHANGED] = 1 if changed else 0


BODY = _body.address


class OffcoreToken:
    """Per layer: the job table; ``__call__`` edits one (1, 1, d) hidden state."""

    def __init__(self, fused: tuple, pos: np.ndarray, d_u: np.ndarray) -> None:
        q, scale, col, err, atoms, gram, l1, l2, tol, screen, rounds = fused
        for a, dt in ((q, np.int8), (scale, np.float32), (err, np.float64), (atoms, np.float32),
                      (gram, np.float32), (pos, np.int64), (d_u, np.float32)):  # fmt: skip
            assert a.dtype == dt and a.flags.c_contiguous, (a.dtype, dt)
        assert col.dtype == np.float32, col.shape
        self._keep = (q, scale, col, err, atoms, gram, pos, d_u)
        job = np.zeros(JOB, np.int64)
        jf = job.view(np.float64)
        for slot, a in ((Q, q), (SCALE, scale), (COL, col), (ERR, err), (ATOMS, atoms),
                        (GRAM, gram), (POS, pos), (DU, d_u)):  # fmt: skip
            job[slot] = a.ctypes.data
        job[N], job[D] = atoms.shape
        job[NU] = d_u.shape[0]
        jf[L1], jf[L2], jf[TOL] = l1, l2, tol
        job[SCREEN], job[ROUNDS] = screen, rounds
        self.job = job
        self.addr = job.ctypes.data
        self.nu = d_u.shape[0]
        self.d = atoms.shape[1]
        self.cu = torch.zeros(1, 1, self.nu)
        self.cu_addr = self.cu.data_ptr()
        self.threads = torch.get_num_threads()

    def __call__(self, hidden: torch.Tensor, want_coef: bool):
        job = self.job
        out = torch.empty(1, 1, self.d)
        job[Z] = hidden.data_ptr()
        job[OUT] = out.data_ptr()
        if want_coef:
            cu = torch.empty(1, 1, self.nu)
            job[CU] = cu.data_ptr()
        else:
            cu = None
            job[CU] = self.cu_addr
        GOMP_parallel(BODY, self.addr, self.threads, 0)
        if job[STATUS] != 0:
            return None
        return (out if job[CHANGED] else None), cu


MODE = {"off": False}
real_token = methods._PaCEEdit.edit_token


def patched(self: Any, hidden: torch.Tensor, want_coef: bool) -> Any:
    if not MODE["off"] or self._fused is None or hidden.dtype is not torch.float32:
        return real_token(self, hidden, want_coef)
    oc = self.__dict__.get("_oc")
    if oc is None:
        oc = self._oc = OffcoreToken(self._fused, self._pos_np, self._d_u_np)
    return oc(hidden, want_coef)


methods._PaCEEdit.edit_token = patched  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    torch.manual_seed(0)
    model, enc, atoms, und = so.smollm2_setup()
    cen = so.centered_atoms(atoms, und)
    n = args.new_tokens
    clock = {"edit": 0.0}
    real_apply = hooks._apply

    def timed_apply(hidden: torch.Tensor, *rest: Any) -> Any:
        t = time.perf_counter()
        got = real_apply(hidden, *rest)
        if hidden.shape[1] == 1:
            clock["edit"] += time.perf_counter() - t
        return got

    hooks._apply = timed_apply

    def generate() -> tuple[float, float, Any]:
        clock["edit"] = 0.0
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=model.config.eos_token_id)  # fmt: skip
        return (time.perf_counter() - t) * 1e3, clock["edit"] * 1e3, out

    arms = ["vanilla", "in", "off"]
    res: dict[str, list[tuple[float, float]]] = {a: [] for a in arms}
    outs: dict[str, Any] = {}
    for rep in range(args.repeats + 1):
        for arm in arms:
            MODE["off"] = arm == "off"
            with so.centered_steering(model, cen, arm != "vanilla"):
                total, edit, out = generate()
            outs[arm] = out
            if rep > 0:
                res[arm].append((total, edit))
        if rep > 0:
            v = res["vanilla"][-1][0]
            print(f"rep {rep}: vanilla {v:.0f} ms; in {res['in'][-1][0] / v:.3f}x "
                  f"(edits {res['in'][-1][1]:.0f} ms); off {res['off'][-1][0] / v:.3f}x "
                  f"(edits {res['off'][-1][1]:.0f} ms)", flush=True)  # fmt: skip
    print("identical tokens in/off:", torch.equal(outs["in"], outs["off"]),
          "; differs from vanilla:", not torch.equal(outs["in"], outs["vanilla"]))  # fmt: skip
    med = {a: statistics.median(t for t, _ in r) for a, r in res.items()}
    print(
        f"medians: vanilla {med['vanilla']:.0f} ms; in {med['in'] / med['vanilla']:.3f}x; "
        f"off {med['off'] / med['vanilla']:.3f}x; off/in {med['off'] / med['in']:.3f}"
    )
    ratios = [o[0] / i[0] for o, i in zip(res["off"], res["in"], strict=True)]
    print("paired off/in:", " ".join(f"{r:.3f}" for r in ratios),
          f"median {np.median(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
