"""CPU backend: the model's ``step`` compiled by Numba, nodes in parallel (``prange``).

Besides the cell kernel, the tissue operations of the monodomain stepper (sparse × dense
products, CG updates, tracker updates) as Numba ``prange`` kernels; scipy's sparse products
are single-threaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial

import numba
import numpy as np

from cardiotwin.solvers.backends import node_rules, vector_math
from cardiotwin.solvers.ionic.base import (
    IonicModel,
    Placement,
    compile_split_step,
    compile_step_of_module,
    empty_table,
    split_row_arguments,
    takes_table,
)

NAME = "cpu"

#: GNU OpenMP (Numba's default threading layer on Linux) lets idle workers spin for a long
#: time; when other processes share the cores a parallel region then waits whole time
#: slices for a descheduled worker. Measured on the 2-core dev machine, 0.2 mm slab, two
#: busy processes beside it: 0.30e6 node-steps/s by default, 1.70e6 with a spin count of
#: 10 000, 2.65e6 with OMP_WAIT_POLICY=PASSIVE; on the idle machine the spin count costs
#: nothing (4.9-5.0e6 vs 4.8e6) where PASSIVE costs 25-40 %. libgomp reads it when Numba
#: first loads it, i.e. at the first parallel kernel; a user's own setting wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "10000"


#: small helpers taking arrays: a real call per lookup costs more than the lookup itself
#: (measured 3.9e6 -> 5.5e6 TP06 node-steps/s on one thread). Inlining the exact
#: ``voltage_term`` too would paste its whole if-chain into every lookup: minutes of compiling.
#: The split step is inlined into the node loop of its kernel: one call per node with some
#: forty arguments costs about 8 % of the TP06 table step (thread time, 58 176 nodes).
_INLINED = frozenset({"lookup", "table_position", "split_step"})


#: LLVM fast-math flags of the tissue cell kernel (``make_split_cell_kernel``); empty: IEEE
#: arithmetic, the reference backend's numbers to the last bit. Fused multiply-adds,
#: reassociation, reciprocals and approximate functions, never ``nnan``/``ninf`` (the
#: blow-up checks rely on NaN and infinity propagating). On a Zen 5 EPYC (AVX-512) they
#: make the TP06 table kernel 1.17-1.2x faster (46 -> 39 ns per node-step, one thread) and
#: leave the N-version activation times unchanged to the microsecond; on the older, shared
#: AVX-512 machine they measured no gain (benchmarks/RESULTS.md, "Cell kernels on Zen 5").
#: Single-cell pre-pacing (``make_cell_kernel``) keeps IEEE arithmetic.
CELL_FASTMATH: frozenset = frozenset({"contract", "arcp", "reassoc", "nsz", "afn"})


#: compile the tissue cell kernels against :mod:`~cardiotwin.solvers.backends.vector_math`
#: (``log``/``exp`` as arithmetic, within 2 ulp of the C library's), so that their node loop
#: vectorises; False: the C library's, called once per node. With the state rows as separate
#: arrays, the TP06 table kernel goes from 39 to 20 ns per node-step on a Zen 5 EPYC (one
#: thread, AVX-512; benchmarks/RESULTS.md, "The cell kernel vectorised"). Not for a model's
#: exact voltage terms (``cell_tables=False``): their if-chain of some sixty ``exp`` calls
#: does not vectorise, and with ``exp`` pasted in at each it compiled 16x longer (235 s)
#: and ran 2.7x slower.
CELL_VECTOR_MATH = True

#: with several parameter sets, read per node only the parameters that differ between the
#: sets, and the others once per call (``varying_parameters`` of
#: :func:`~cardiotwin.solvers.ionic.base.compile_split_step`); False: every parameter per
#: node. A ventricle's epi/M/endo and border-zone TP06 sets differ in a few conductances, and
#: the node loop gathered all 50 parameters: 33 against 24 ns per node-step on a Zen 5 EPYC
#: (one thread, 1.4 M cells; benchmarks/RESULTS.md, "Several parameter sets").
CELL_UNIFORM_PARAMETERS = True


def _njit(f, fastmath=False):
    inline = "always" if f.__name__ in _INLINED else "never"
    return numba.njit(f, error_model="numpy", inline=inline, fastmath=fastmath)


def make_cell_kernel(model: IonicModel, use_table: bool = False) -> Callable:
    """Compiled ``kernel(y, p, pset, dt_ms, i_stim, table=None)``; contract as the reference.

    With ``use_table`` the voltage terms are interpolated from ``table`` (build it with
    :func:`~cardiotwin.solvers.ionic.base.build_table` for the same ``p`` and ``dt_ms``).
    """
    return _kernel_for_module(model.module, use_table, takes_table(model))


@cache
def _kernel_for_module(module_name: str, use_table: bool, with_table: bool) -> Callable:
    """One compilation per model file: variants (e.g. tp06-epi/endo/m) differ only in p."""
    step = compile_step_of_module(module_name, _njit, use_table)

    if with_table:

        @numba.njit(parallel=True, error_model="numpy")
        def _kernel(y, p, pset, dt_ms, i_stim, table):
            for k in numba.prange(y.shape[1]):
                step(y, p, k, pset[k], dt_ms, i_stim[k], table)

    else:

        @numba.njit(parallel=True, error_model="numpy")
        def _kernel(y, p, pset, dt_ms, i_stim, table):
            for k in numba.prange(y.shape[1]):
                step(y, p, k, pset[k], dt_ms, i_stim[k])

    placeholder = empty_table(1)

    def kernel(y, p, pset, dt_ms, i_stim, table=None):
        _kernel(y, p, pset, dt_ms, i_stim, placeholder if table is None else table)

    kernel.compiled = _kernel
    return kernel


def make_split_cell_kernel(
    model: IonicModel, placement: Placement, use_table: bool = False, single_set: bool = False
) -> Callable:
    """Compiled ``kernel(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table)`` for the
    stepper's split state (see :func:`~cardiotwin.solvers.ionic.base.compile_split_step`):
    V read from ``v_in`` and written to ``v_out`` (may be the same array), the other states
    at ``placement``. ``single_set``: every node uses parameter set 0, and ``pset`` is not
    read (no per-node gather), and the parameters reach the kernel as a tuple of values, so
    their terms are computed once per call (``parameter_tuple`` of
    :func:`~cardiotwin.solvers.ionic.base.compile_split_step`).

    The node loop vectorises (8 nodes per AVX-512 instruction, table reads as gathers), for
    two reasons. Each state row reaches the compiled loop as an array of its own
    (``row_arguments`` of ``compile_split_step``): when nothing in a ``prange`` loop derives
    one array from another, Numba tells LLVM that its arrays do not overlap, and LLVM needs
    that to move table reads past state stores. And ``log``/``exp`` are arithmetic
    (:data:`CELL_VECTOR_MATH`).

    With several sets, the parameters that are the same in every set are read once per call
    and only those that differ per node (:data:`CELL_UNIFORM_PARAMETERS`); which ones differ
    is read from ``p`` at each call, and each combination is compiled once."""
    key = (model.module, use_table, takes_table(model), placement)
    options = (CELL_VECTOR_MATH, frozenset(CELL_FASTMATH))
    # exact voltage terms read every parameter per node (_split_kernel): one compilation
    if single_set or not CELL_UNIFORM_PARAMETERS or not _tabulated(use_table, key[2]):
        return _split_kernel(*key, single_set, None, *options)

    def compiled_for(p):
        return _split_kernel(*key, False, varying_parameters(p), *options)

    last = [None, b"", None]  # the last parameter array, its bytes, its launch

    def launch(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table=None):
        # a stepper passes the same array every step: finding the varying rows again costs
        # more than a small mesh's whole cell step, so it is redone only when p changed
        values = p.tobytes()
        if p is not last[0] or values != last[1]:
            last[:] = p, values, compiled_for(p)
        last[2](v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table)

    launch.compiled_for = compiled_for  # the launch for one parameter array (tests)
    return launch


def varying_parameters(p: np.ndarray) -> frozenset[int]:
    """The rows of a (n_parameters, n_sets) parameter array whose value is not the same in
    every set (a NaN counts as differing)."""
    same = p == p[:, :1]
    return frozenset(np.flatnonzero(~same.all(axis=1)).tolist())


def _tabulated(use_table: bool, with_table: bool) -> bool:
    """The kernel's voltage terms come from the lookup table, or the model has none (its
    functions of V do not read the parameters per node)."""
    return use_table or not with_table


@cache
def _split_kernel(
    module_name, use_table, with_table, placement, single_set, varying, use_vector_math,
    fastmath_flags,
) -> Callable:  # fmt: skip
    """``varying``: None, or the parameters read per node (see ``make_split_cell_kernel``)."""
    fastmath = set(fastmath_flags) or False
    tabulated = _tabulated(use_table, with_table)
    arithmetic_math = use_vector_math and tabulated  # see CELL_VECTOR_MATH
    if not tabulated:
        varying = None  # exact voltage terms read p in the model's functions: every p per node
    step = compile_split_step(
        module_name, partial(_njit, fastmath=fastmath), use_table, placement,
        unsigned_rows=True, parameter_tuple=single_set or varying is not None,
        row_arguments=True, math_module=vector_math.MATH if arithmetic_math else None,
        varying_parameters=None if single_set else varying,
    )  # fmt: skip
    namespace = {"numba": numba, "step": step}
    node_set = "0" if single_set else "pset[k]"
    table = ", table" if with_table else ""
    states = ", ".join(split_row_arguments(placement))  # one array per state row
    parameters = "p" if varying is None or single_set else "p, p_sets"
    exec(
        f"def _kernel({states}, p, p_sets, pset, dt_ms, i_stim, table):\n"
        "    for k in numba.prange(v_in.shape[0]):\n"
        f"        step({states}, {parameters}, k, {node_set}, dt_ms, i_stim[k]{table})\n",
        namespace,
    )
    kernel = numba.njit(namespace["_kernel"], parallel=True, error_model="numpy", fastmath=fastmath)
    placeholder = empty_table(1)

    def launch(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table=None):
        table = placeholder if table is None else table
        p_sets = p
        if single_set or varying is not None:
            p = tuple(p[:, 0].tolist())
        kernel(v_in, v_out, *y32, *y64, p, p_sets, pset, dt_ms, i_stim, table)

    launch.compiled = kernel
    return launch


def set_threads(n_threads: int | None) -> int:
    """Limit Numba's worker threads (``None``: all); returns the number in use."""
    if n_threads is not None:
        numba.set_num_threads(int(n_threads))
    return numba.get_num_threads()


def as_state(y: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(y, dtype=np.float64)


# --- tissue operations ---------------------------------------------------------------------
# The monodomain stepper (solvers/stepping.py) needs only the operations below, on arrays
# this backend owns ("device" arrays; plain numpy here). Fields of a batch are (n_nodes, B)
# C-contiguous; element-wise operations take the flat (n_nodes·B,) view. Reductions return
# small host arrays of B values; nothing of size n crosses to the host per step.

#: this backend implements the tissue operations (the stepper checks it), in float64 and
#: under precision="mixed" (float32 storage)
SUPPORTS_TISSUE = True
SUPPORTS_MIXED = True

#: below this many (node, member) entries a run uses one thread: a parallel launch costs more
#: than the work there, and much more when the cores are shared (measured on 2 loaded
#: cores, 195 nodes: 60 µs per step on one thread, 2.6 ms on two)
SERIAL_BELOW = 20_000

#: column sums are split into this many fixed row chunks and summed in chunk order, so dot
#: products (and hence CG iterates) do not depend on the number of threads
REDUCTION_CHUNKS = 64


@dataclass(frozen=True)
class CSRMatrix:
    """A CSR matrix as three arrays (unsigned ``indptr``, ``indices``; ``data`` float64, or
    float32 under ``precision="mixed"``).

    Unsigned indices: Numba wraps negative signed indices (``x[-1]``), a test and branch on
    every gathered ``x[indices[jj]]``; with unsigned ones there is none, and the sparse
    product runs 2.4× faster on 2 threads (0.47 vs 1.1 ms for the 0.2 mm slab's 827k
    non-zeros). uint64 with float64 values (as measured), uint32 with float32 (half the
    index traffic, to go with the halved value traffic)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]


@contextmanager
def run_context(n_entries: int):
    """Context for a stepping loop over ``n_entries`` (node, member) values: small runs go
    single-threaded (Numba's thread count is per calling thread and restored on exit)."""
    if n_entries >= SERIAL_BELOW:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def asarray(a, dtype=np.float64) -> np.ndarray:
    """A C-contiguous copy of host array ``a`` owned by this backend."""
    return np.array(a, dtype=dtype, order="C", copy=True)


def to_host(a) -> np.ndarray:
    """A numpy copy of backend array ``a``."""
    return np.array(a, copy=True)


def empty(shape, dtype=np.float64) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


def zeros(shape, dtype=np.float64) -> np.ndarray:
    return np.zeros(shape, dtype=dtype)


def sparse(matrix, dtype=np.float64) -> CSRMatrix:
    """Backend copy of a scipy CSR matrix (sorted indices), values as ``dtype``."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    index = np.uint64 if np.dtype(dtype) == np.float64 else np.uint32
    if matrix.nnz >= np.iinfo(index).max:
        raise ValueError(f"{matrix.nnz} non-zeros do not fit {np.dtype(index).name} indices")
    return CSRMatrix(
        np.ascontiguousarray(matrix.indptr, dtype=index),
        np.ascontiguousarray(matrix.indices, dtype=index),
        np.ascontiguousarray(matrix.data, dtype=dtype),
        matrix.shape,
    )


def reduction_workspace(n_rows: int, n_cols: int) -> np.ndarray:
    """Scratch space for :func:`col_dot`, :func:`spmm_dot` and :func:`cg_update`."""
    return np.empty((2, min(REDUCTION_CHUNKS, max(n_rows, 1)), n_cols))


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _spmm(indptr, indices, data, x, out):
    n = out.shape[0]
    n_cols = x.shape[1]
    if n_cols == 1:
        for i in numba.prange(n):
            acc = 0.0
            for jj in range(indptr[i], indptr[i + 1]):
                acc += data[jj] * x[indices[jj], 0]
            out[i, 0] = acc
    else:
        for i in numba.prange(n):
            for b in range(n_cols):
                out[i, b] = 0.0
            for jj in range(indptr[i], indptr[i + 1]):
                a = data[jj]
                j = indices[jj]
                for b in range(n_cols):
                    out[i, b] += a * x[j, b]


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _spmm_wide(indptr, indices, data, x, out):
    # float32 storage: products and sums in float64 registers, one rounding per entry
    n = out.shape[0]
    n_cols = x.shape[1]
    for i in numba.prange(n):
        for b in range(n_cols):
            acc = 0.0
            for jj in range(indptr[i], indptr[i + 1]):
                acc += float(data[jj]) * x[indices[jj], b]
            out[i, b] = acc


def spmm(matrix: CSRMatrix, x: np.ndarray, out: np.ndarray) -> None:
    """``out = matrix @ x`` for dense (n, B) ``x``; ``out`` must not alias ``x``."""
    kernel = _spmm if out.dtype == np.float64 else _spmm_wide
    kernel(matrix.indptr, matrix.indices, matrix.data, x, out)


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _col_dot_partial(x, y, partial):
    n, n_cols = x.shape
    n_chunks = partial.shape[0]
    for c in numba.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        if n_cols == 1:  # one simulation: a register accumulator
            acc = 0.0
            for i in range(lo, hi):
                acc += float(x[i, 0]) * y[i, 0]
            partial[c, 0] = acc
            continue
        for b in range(n_cols):
            partial[c, b] = 0.0
        for i in range(lo, hi):
            for b in range(n_cols):
                partial[c, b] += float(x[i, b]) * y[i, b]


@numba.njit(error_model="numpy", cache=True)
def _sum_chunks(partial):
    n_chunks, n_cols = partial.shape
    out = np.zeros(n_cols)
    for c in range(n_chunks):
        for b in range(n_cols):
            out[b] += partial[c, b]
    return out


def col_dot(x: np.ndarray, y: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Column-wise dot products of (n, B) arrays: host array (B,)."""
    _col_dot_partial(x, y, work[0])
    return _sum_chunks(work[0])


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _spmm_dot(indptr, indices, data, x, out, partial):
    n, n_cols = out.shape
    n_chunks = partial.shape[0]
    for c in numba.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        if n_cols == 1:
            dot = 0.0
            for i in range(lo, hi):
                acc = 0.0
                for jj in range(indptr[i], indptr[i + 1]):
                    acc += data[jj] * x[indices[jj], 0]
                out[i, 0] = acc
                dot += x[i, 0] * acc
            partial[c, 0] = dot
            continue
        for b in range(n_cols):
            partial[c, b] = 0.0
        for i in range(lo, hi):
            for b in range(n_cols):
                out[i, b] = 0.0
            for jj in range(indptr[i], indptr[i + 1]):
                a = data[jj]
                j = indices[jj]
                for b in range(n_cols):
                    out[i, b] += a * x[j, b]
            for b in range(n_cols):
                partial[c, b] += x[i, b] * out[i, b]


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _spmm_dot_wide(indptr, indices, data, x, out, partial):
    # float32 storage: float64 sums; the dot product uses the stored (rounded) entries
    n, n_cols = out.shape
    n_chunks = partial.shape[0]
    for c in numba.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for b in range(n_cols):
            partial[c, b] = 0.0
        for i in range(lo, hi):
            for b in range(n_cols):
                acc = 0.0
                for jj in range(indptr[i], indptr[i + 1]):
                    acc += float(data[jj]) * x[indices[jj], b]
                out[i, b] = acc
                partial[c, b] += float(x[i, b]) * out[i, b]


def spmm_dot(matrix: CSRMatrix, x: np.ndarray, out: np.ndarray, work: np.ndarray):
    """``out = matrix @ x``; returns the column-wise ``x · out`` (B,) (the CG curvature).
    One pass: the dot products are summed per row chunk as the rows are computed."""
    kernel = _spmm_dot if out.dtype == np.float64 else _spmm_dot_wide
    kernel(matrix.indptr, matrix.indices, matrix.data, x, out, work[0])
    return _sum_chunks(work[0])


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _axpby(a, x, b, y):
    for k in numba.prange(y.size):
        y[k] = a * x[k] + b * y[k]


def axpby(a: float, x: np.ndarray, b: float, y: np.ndarray) -> None:
    """``y = a·x + b·y`` element-wise (flat arrays of equal size)."""
    _axpby(float(a), x.reshape(-1), float(b), y.reshape(-1))


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _axpbyz(a, x, b, y, out):
    for k in numba.prange(out.size):
        out[k] = a * x[k] + b * y[k]


def axpbyz(a: float, x: np.ndarray, b: float, y: np.ndarray, out: np.ndarray) -> None:
    """``out = a·x + b·y`` element-wise (``out`` may be ``x`` or ``y``)."""
    _axpbyz(float(a), x.reshape(-1), float(b), y.reshape(-1), out.reshape(-1))


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _copy(src, dst):
    for k in numba.prange(dst.size):
        dst[k] = src[k]


def copy(src: np.ndarray, dst: np.ndarray) -> None:
    """``dst[...] = src`` (same size)."""
    _copy(src.reshape(-1), dst.reshape(-1))


def fill(a: np.ndarray, value: float) -> None:
    a.fill(value)


def set_at(a: np.ndarray, index: np.ndarray, value: float) -> None:
    """``a.flat[index] = value`` for a backend integer array ``index``."""
    a.reshape(-1)[index] = value


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _cg_update(alpha, p, q, x, r, diag_inv, z, partial_rr, partial_rz):
    n, n_cols = x.shape
    n_chunks = partial_rr.shape[0]
    for c in numba.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        if n_cols == 1:  # one simulation: register accumulators
            a = alpha[0]
            rr = 0.0
            rz = 0.0
            for i in range(lo, hi):
                x[i, 0] += a * p[i, 0]
                r[i, 0] = r[i, 0] - a * q[i, 0]
                ri = float(r[i, 0])  # as stored (float32 under mixed precision)
                z[i, 0] = diag_inv[i] * ri
                zi = float(z[i, 0])
                rr += ri * ri
                rz += ri * zi
            partial_rr[c, 0] = rr
            partial_rz[c, 0] = rz
            continue
        for b in range(n_cols):
            partial_rr[c, b] = 0.0
            partial_rz[c, b] = 0.0
        for i in range(lo, hi):
            for b in range(n_cols):
                x[i, b] += alpha[b] * p[i, b]
                r[i, b] = r[i, b] - alpha[b] * q[i, b]
                ri = float(r[i, b])
                z[i, b] = diag_inv[i] * ri
                zi = float(z[i, b])
                partial_rr[c, b] += ri * ri
                partial_rz[c, b] += ri * zi


def cg_update(alpha, p, q, x, r, diag_inv, z, work):
    """One CG update per column: x += αp, r −= αq, z = D⁻¹r; returns (r·r, r·z), each (B,)."""
    _cg_update(alpha, p, q, x, r, diag_inv, z, work[0], work[1])
    return _sum_chunks(work[0]), _sum_chunks(work[1])


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _precondition(r, diag_inv, z, partial_rz):
    n, n_cols = r.shape
    n_chunks = partial_rz.shape[0]
    for c in numba.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        if n_cols == 1:
            rz = 0.0
            for i in range(lo, hi):
                z[i, 0] = diag_inv[i] * r[i, 0]
                rz += float(r[i, 0]) * z[i, 0]
            partial_rz[c, 0] = rz
            continue
        for b in range(n_cols):
            partial_rz[c, b] = 0.0
        for i in range(lo, hi):
            for b in range(n_cols):
                z[i, b] = diag_inv[i] * r[i, b]
                partial_rz[c, b] += float(r[i, b]) * z[i, b]


def precondition(r, diag_inv, z, work):
    """z = D⁻¹ r (Jacobi); returns the column-wise r·z (B,)."""
    _precondition(r, diag_inv, z, work[0])
    return _sum_chunks(work[0])


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _cg_direction(z, beta, p):
    n, n_cols = p.shape
    if n_cols == 1:
        beta_0 = beta[0]
        for i in numba.prange(n):
            p[i, 0] = z[i, 0] + beta_0 * p[i, 0]
        return
    for i in numba.prange(n):
        for b in range(n_cols):
            p[i, b] = z[i, b] + beta[b] * p[i, b]


def cg_direction(z, beta, p) -> None:
    """p = z + β p per column."""
    _cg_direction(z, beta, p)


_activation_at = numba.njit(inline="always", error_model="numpy", cache=True)(
    node_rules.activation_at
)
_apd_at = numba.njit(inline="always", error_model="numpy", cache=True)(node_rules.apd_at)


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _activation_update(v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    for k in numba.prange(v.size):
        _activation_at(k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count)


def activation_update(v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    """Record upward crossings of ``threshold_mv`` between ``v_prev`` (at ``t_prev_ms``) and
    ``v`` (one step later), linearly interpolated in time; then ``v_prev = v``. Flat arrays."""
    _activation_update(
        v_prev,
        v.reshape(-1),
        float(t_prev_ms),
        float(dt_ms),
        float(threshold_mv),
        first_ms,
        last_ms,
        count,
    )


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _apd_update(
    v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak, apd_ms, count
):
    for k in numba.prange(v.size):
        _apd_at(
            k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak,
            apd_ms, count,
        )  # fmt: skip


def apd_update(
    v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak, apd_ms, count
):
    """Action potential duration at ``fraction`` repolarisation (0.9: APD90), per node: from
    the upward ``threshold_mv`` crossing to the downward crossing of
    ``v_min + (1 − fraction)(v_peak − v_min)``. Flat arrays; ``v_prev = v`` afterwards."""
    _apd_update(
        v_prev,
        v.reshape(-1),
        float(t_prev_ms),
        float(dt_ms),
        float(threshold_mv),
        float(fraction),
        phase,
        t_up,
        v_min,
        v_peak,
        apd_ms,
        count,
    )


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _first_bad_index(v, limit):
    bad = v.size
    for k in numba.prange(v.size):
        if not abs(v[k]) <= limit:  # also true for NaN
            bad = min(bad, k)
    return bad


def first_bad_index(v, limit: float) -> int:
    """Smallest flat index where ``v`` is NaN/inf or |v| > ``limit``; −1 if none."""
    flat = v.reshape(-1)
    bad = _first_bad_index(flat, float(limit))
    return -1 if bad >= flat.size else int(bad)


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _count_nan(a):
    total = 0
    for k in numba.prange(a.size):
        if math.isnan(a[k]):
            total += 1
    return total


def count_nan(a) -> int:
    """Number of NaN entries of ``a``."""
    return int(_count_nan(a.reshape(-1)))


@cache
def node_kernel(rule: Callable) -> Callable:
    """``launch(n, *args)``: run the per-node ``rule(k, *args)`` of
    :mod:`~cardiotwin.solvers.backends.node_rules` for k = 0..n−1 in parallel."""
    namespace = {"numba": numba, "rule": numba.njit(rule, inline="always", error_model="numpy")}
    source = node_rules.fixed_arity_kernel(rule, "    for k in numba.prange(n):", namespace)
    kernel = numba.njit(source, parallel=True, error_model="numpy")

    def launch(n: int, *args) -> None:
        kernel(int(n), *args)

    return launch


@numba.njit(parallel=True, error_model="numpy", cache=True)
def _member_max_partial(a, n_members, partial):
    n = a.size // n_members
    n_chunks = partial.shape[0]
    for c in numba.prange(n_chunks):
        lo = c * n // n_chunks
        hi = (c + 1) * n // n_chunks
        for b in range(n_members):
            partial[c, b] = -np.inf
        for i in range(lo, hi):
            for b in range(n_members):
                x = a[i * n_members + b]
                m = partial[c, b]
                if m == m and (x > m or x != x):  # a NaN, once met, stays
                    partial[c, b] = x


def member_max(a, n_members: int) -> np.ndarray:
    """Per batch member, the largest entry of a flat node-major (N·B,) array: host array
    (B,), NaN for a member with any NaN (a blown-up member never reads as at rest), −inf for
    a member with no nodes."""
    flat = a.reshape(-1)
    n = flat.size // n_members
    partial = np.empty((min(REDUCTION_CHUNKS, max(n, 1)), n_members))
    _member_max_partial(flat, int(n_members), partial)
    return partial.max(axis=0)
