"""Reference backend: the model's ``step`` run as plain Python, node by node.

Slow on purpose: it is the oracle the compiled backends are tested against, so it adds no
compilation, no parallelism, no lookup tables and no fast-math between the equations and
the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np

from cardiotwin.solvers.backends import node_rules
from cardiotwin.solvers.ionic.base import IonicModel, compile_step, empty_table, takes_table

NAME = "reference"


def make_cell_kernel(model: IonicModel, use_table: bool = False) -> Callable:
    """``kernel(y, p, pset, dt_ms, i_stim, table=None)``: advance every node one step.

    ``y`` (n_states, n) float64, ``p`` (n_parameters, n_sets), ``pset`` (n,) int32,
    ``i_stim`` (n,) µA/µF, ``table`` from :func:`~cardiotwin.solvers.ionic.base.build_table`
    when ``use_table`` (the reference backend is normally run exactly: ``use_table=False``).
    """
    step = compile_step(model, lambda f: f, use_table)
    with_table = takes_table(model)

    def kernel(y: np.ndarray, p: np.ndarray, pset: np.ndarray, dt_ms: float, i_stim, table=None):
        if table is None:
            table = empty_table(p.shape[1])
        for k in range(y.shape[1]):
            if with_table:
                step(y, p, k, int(pset[k]), dt_ms, float(i_stim[k]), table)
            else:
                step(y, p, k, int(pset[k]), dt_ms, float(i_stim[k]))

    return kernel


def make_split_cell_kernel(model: IonicModel, placement, use_table=False, single_set=False):
    """``kernel(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table=None)`` for the
    stepper's split state: the states are gathered into one float64 array, the model's own
    ``step`` runs on it (no rewriting of the equations here: this is the oracle), and they
    are put back; V goes to ``v_out``."""
    kernel = make_cell_kernel(model, use_table)
    rows = placement[1:]

    def split_kernel(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table=None):
        y = np.empty((len(placement), v_in.size))
        y[0] = v_in
        for i, (where, row) in enumerate(rows, start=1):
            y[i] = (y32 if where == "y32" else y64)[row]
        if single_set:
            pset = np.zeros(v_in.size, dtype=np.int32)
        kernel(y, p, pset, dt_ms, i_stim, table)
        v_out[...] = y[0]
        for i, (where, row) in enumerate(rows, start=1):
            (y32 if where == "y32" else y64)[row] = y[i]

    return split_kernel


# --- tissue operations ---------------------------------------------------------------------
# The same operations as the CPU backend's (see there for the contract), written with numpy
# and scipy.sparse: the oracle the compiled kernels are compared against.

SUPPORTS_TISSUE = True


def run_context(n_entries: int):
    return nullcontext()


def asarray(a, dtype=np.float64) -> np.ndarray:
    return np.array(a, dtype=dtype, order="C", copy=True)


def to_host(a) -> np.ndarray:
    return np.array(a, copy=True)


def empty(shape, dtype=np.float64) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype=np.float64) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def sparse(matrix, dtype=np.float64):
    """The scipy CSR matrix itself (sorted indices); float64 only (the oracle)."""
    if np.dtype(dtype) != np.float64:
        raise ValueError("the reference backend computes in float64 only")
    matrix = matrix.tocsr().copy()
    matrix.sort_indices()
    return matrix


def reduction_workspace(n_rows: int, n_cols: int) -> None:
    return None


def spmm(matrix, x: np.ndarray, out: np.ndarray) -> None:
    out[...] = matrix @ x


def col_dot(x: np.ndarray, y: np.ndarray, work=None) -> np.ndarray:
    return np.einsum("ij,ij->j", x, y)


def spmm_dot(matrix, x, out, work=None) -> np.ndarray:
    spmm(matrix, x, out)
    return col_dot(x, out)


def axpby(a: float, x: np.ndarray, b: float, y: np.ndarray) -> None:
    y[...] = a * x.reshape(y.shape) + b * y


def axpbyz(a: float, x: np.ndarray, b: float, y: np.ndarray, out: np.ndarray) -> None:
    out[...] = a * x.reshape(out.shape) + b * y.reshape(out.shape)


def copy(src: np.ndarray, dst: np.ndarray) -> None:
    dst[...] = src.reshape(dst.shape)


def fill(a: np.ndarray, value: float) -> None:
    a.fill(value)


def set_at(a: np.ndarray, index: np.ndarray, value: float) -> None:
    a.reshape(-1)[index] = value


def cg_update(alpha, p, q, x, r, diag_inv, z, work=None):
    x += alpha * p
    r -= alpha * q
    z[...] = diag_inv[:, None] * r
    return col_dot(r, r), col_dot(r, z)


def precondition(r, diag_inv, z, work=None):
    z[...] = diag_inv[:, None] * r
    return col_dot(r, z)


def cg_direction(z, beta, p) -> None:
    p[...] = z + beta * p


def activation_update(v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    v = v.reshape(-1)
    up = (v_prev < threshold_mv) & (v >= threshold_mv)
    if np.any(up):
        a, b = v_prev[up], v[up]
        t = t_prev_ms + dt_ms * (threshold_mv - a) / (b - a)
        first = first_ms[up]
        first_ms[up] = np.where(np.isnan(first), t, first)
        last_ms[up] = t
        count[up] += 1
    v_prev[...] = v


def apd_update(
    v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak, apd_ms,
    count,
):  # fmt: skip
    v = v.reshape(-1)
    for k in range(v.size):  # the shared per-node rule, run uncompiled one node at a time
        node_rules.apd_at(
            k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak,
            apd_ms, count,
        )  # fmt: skip


def first_bad_index(v, limit: float) -> int:
    bad = np.nonzero(~(np.abs(v.reshape(-1)) <= limit))[0]
    return int(bad[0]) if bad.size else -1


def count_nan(a) -> int:
    return int(np.count_nonzero(np.isnan(a)))


def node_kernel(rule):
    """``launch(n, *args)``: the per-node rule run uncompiled, one node at a time."""

    def launch(n: int, *args) -> None:
        for k in range(int(n)):
            rule(k, *args)

    return launch


def member_max(a, n_members: int) -> np.ndarray:
    values = np.asarray(a, dtype=np.float64).reshape(-1, n_members)
    return values.max(axis=0, initial=-np.inf)  # NaN wherever a member has one
