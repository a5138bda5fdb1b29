"""CUDA backend: the model's ``step`` compiled as a Numba-CUDA device function.

Imported only when CUDA is asked for. Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run
in Numba's CUDA simulator, which is how CI checks their logic without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from functools import cache

import numpy as np
from numba import cuda, float64

from cardiotwin.solvers.backends import node_rules
from cardiotwin.solvers.ionic.base import (
    IonicModel,
    compile_step_of_module,
    empty_table,
    takes_table,
)

NAME = "cuda"
THREADS_PER_BLOCK = 128


def _device(f):
    return cuda.jit(device=True)(f)


def make_cell_kernel(model: IonicModel, use_table: bool = False) -> Callable:
    """``kernel(y, p, pset, dt_ms, i_stim, table=None)`` on device arrays; contract as CPU."""
    return _kernel_for_module(model.module, use_table, takes_table(model))


@cache
def _kernel_for_module(module_name: str, use_table: bool, with_table: bool) -> Callable:
    """One compilation per model file: variants (e.g. tp06-epi/endo/m) differ only in p."""
    step = compile_step_of_module(module_name, _device, use_table)

    if with_table:

        @cuda.jit
        def _kernel(y, p, pset, dt_ms, i_stim, table):
            k = cuda.grid(1)
            if k < y.shape[1]:
                step(y, p, k, pset[k], dt_ms, i_stim[k], table)

    else:

        @cuda.jit
        def _kernel(y, p, pset, dt_ms, i_stim, table):
            k = cuda.grid(1)
            if k < y.shape[1]:
                step(y, p, k, pset[k], dt_ms, i_stim[k])

    placeholder = []

    def kernel(y, p, pset, dt_ms, i_stim, table=None):
        if table is None:
            if not placeholder:
                placeholder.append(cuda.to_device(empty_table(1)))
            table = placeholder[0]
        n = y.shape[1]
        blocks = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
        _kernel[blocks, THREADS_PER_BLOCK](y, p, pset, dt_ms, i_stim, table)

    return kernel


# --- tissue operations ---------------------------------------------------------------------
# The same operations as the CPU backend (see solvers/backends/cpu.py and
# solvers/stepping.py), on Numba-CUDA device arrays. Element-wise kernels use grid-stride
# loops over flat views; column reductions write one partial sum per block and chunk, and the
# host adds the (few) partials in a fixed order, so results do not depend on the device.
# CuPy is not needed; every kernel also runs under the CUDA simulator.

SUPPORTS_TISSUE = True

#: blocks for grid-stride kernels (enough to fill an H100's 132 SMs several times)
MAX_BLOCKS = 4096
#: fixed number of row chunks of a column reduction (independent of the device)
REDUCTION_CHUNKS = 256


def _blocks(n: int) -> int:
    return max(1, min(MAX_BLOCKS, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK))


def _flat(a):
    return a.reshape(a.size)


class CSRMatrix:
    """A CSR matrix on the device (``indptr``, ``indices``, ``data``)."""

    def __init__(self, matrix):
        matrix = matrix.tocsr()
        matrix.sort_indices()
        self.indptr = cuda.to_device(np.ascontiguousarray(matrix.indptr, dtype=np.int64))
        self.indices = cuda.to_device(np.ascontiguousarray(matrix.indices, dtype=np.int64))
        self.data = cuda.to_device(np.ascontiguousarray(matrix.data, dtype=np.float64))
        self.shape = matrix.shape


def run_context(n_entries: int):
    return nullcontext()


def asarray(a, dtype=np.float64):
    """A device copy of host array ``a`` (C-contiguous)."""
    return cuda.to_device(np.array(a, dtype=dtype, order="C", copy=True))


def to_host(a) -> np.ndarray:
    return a.copy_to_host()


def empty(shape, dtype=np.float64):
    return cuda.device_array(shape, dtype=dtype)


def zeros(shape, dtype=np.float64):
    out = cuda.device_array(shape, dtype=dtype)
    fill(out, 0)
    return out


def sparse(matrix) -> CSRMatrix:
    return CSRMatrix(matrix)


def reduction_workspace(n_rows: int, n_cols: int):
    chunks = min(REDUCTION_CHUNKS, max(n_rows, 1))
    return cuda.device_array((2, chunks, n_cols))


@cuda.jit
def _spmm_kernel(indptr, indices, data, x, out):
    # one thread per (row, column): neighbouring threads read neighbouring columns of x
    n_cols = x.shape[1]
    total = out.shape[0] * n_cols
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, total, stride):
        i = k // n_cols
        b = k - i * n_cols
        acc = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            acc += data[jj] * x[indices[jj], b]
        out[i, b] = acc


def spmm(matrix: CSRMatrix, x, out) -> None:
    """``out = matrix @ x`` for (n, B) ``x``; ``out`` must not alias ``x``."""
    n = out.shape[0] * out.shape[1]
    _spmm_kernel[_blocks(n), THREADS_PER_BLOCK](matrix.indptr, matrix.indices, matrix.data, x, out)


@cuda.jit
def _col_dot_partial(x, y, partial):
    # chunk c = block; threads of the block stride over the chunk's rows; shared-memory tree
    n, n_cols = x.shape
    n_chunks = partial.shape[0]
    c = cuda.blockIdx.x
    t = cuda.threadIdx.x
    lo = c * n // n_chunks
    hi = (c + 1) * n // n_chunks
    acc = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    for b in range(n_cols):
        s = 0.0
        for i in range(lo + t, hi, THREADS_PER_BLOCK):
            s += x[i, b] * y[i, b]
        acc[t] = s
        cuda.syncthreads()
        width = THREADS_PER_BLOCK // 2
        while width > 0:
            if t < width:
                acc[t] += acc[t + width]
            cuda.syncthreads()
            width //= 2
        if t == 0:
            partial[c, b] = acc[0]
        cuda.syncthreads()


def _sum_chunks(partial) -> np.ndarray:
    host = partial.copy_to_host()
    out = np.zeros(host.shape[1])
    for row in host:  # fixed order: deterministic
        out += row
    return out


def col_dot(x, y, work) -> np.ndarray:
    """Column-wise dot products of (n, B) device arrays: host array (B,)."""
    partial = work[0]
    _col_dot_partial[partial.shape[0], THREADS_PER_BLOCK](x, y, partial)
    return _sum_chunks(partial)


def spmm_dot(matrix: CSRMatrix, x, out, work) -> np.ndarray:
    spmm(matrix, x, out)
    return col_dot(x, out, work)


@cuda.jit
def _axpby_kernel(a, x, b, y):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, y.size, stride):
        y[k] = a * x[k] + b * y[k]


def axpby(a: float, x, b: float, y) -> None:
    """``y = a·x + b·y`` element-wise."""
    _axpby_kernel[_blocks(y.size), THREADS_PER_BLOCK](float(a), _flat(x), float(b), _flat(y))


@cuda.jit
def _copy_kernel(src, dst):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, dst.size, stride):
        dst[k] = src[k]


def copy(src, dst) -> None:
    _copy_kernel[_blocks(dst.size), THREADS_PER_BLOCK](_flat(src), _flat(dst))


@cuda.jit
def _fill_kernel(a, value):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, a.size, stride):
        a[k] = value


def fill(a, value) -> None:
    flat = _flat(a)
    _fill_kernel[_blocks(flat.size), THREADS_PER_BLOCK](flat, flat.dtype.type(value))


@cuda.jit
def _set_at_kernel(a, index, value):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, index.size, stride):
        a[index[k]] = value


def set_at(a, index, value: float) -> None:
    """``a.flat[index] = value`` for a device integer array ``index``."""
    if index.size:
        _set_at_kernel[_blocks(index.size), THREADS_PER_BLOCK](_flat(a), index, float(value))


@cuda.jit
def _cg_update_kernel(alpha, p, q, x, r, diag_inv, z, partial_rr, partial_rz):
    n, n_cols = x.shape
    n_chunks = partial_rr.shape[0]
    c = cuda.blockIdx.x
    t = cuda.threadIdx.x
    lo = c * n // n_chunks
    hi = (c + 1) * n // n_chunks
    acc_rr = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    acc_rz = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    for b in range(n_cols):
        srr = 0.0
        srz = 0.0
        for i in range(lo + t, hi, THREADS_PER_BLOCK):
            x[i, b] += alpha[b] * p[i, b]
            ri = r[i, b] - alpha[b] * q[i, b]
            r[i, b] = ri
            zi = diag_inv[i] * ri
            z[i, b] = zi
            srr += ri * ri
            srz += ri * zi
        acc_rr[t] = srr
        acc_rz[t] = srz
        cuda.syncthreads()
        width = THREADS_PER_BLOCK // 2
        while width > 0:
            if t < width:
                acc_rr[t] += acc_rr[t + width]
                acc_rz[t] += acc_rz[t + width]
            cuda.syncthreads()
            width //= 2
        if t == 0:
            partial_rr[c, b] = acc_rr[0]
            partial_rz[c, b] = acc_rz[0]
        cuda.syncthreads()


def cg_update(alpha, p, q, x, r, diag_inv, z, work):
    """x += αp, r −= αq, z = D⁻¹r per column; returns host (r·r, r·z), each (B,)."""
    d_alpha = cuda.to_device(np.ascontiguousarray(alpha, dtype=np.float64))
    _cg_update_kernel[work.shape[1], THREADS_PER_BLOCK](
        d_alpha, p, q, x, r, diag_inv, z, work[0], work[1]
    )
    return _sum_chunks(work[0]), _sum_chunks(work[1])


@cuda.jit
def _jacobi_kernel(r, diag_inv, z):
    n_cols = r.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, r.shape[0] * n_cols, stride):
        i = k // n_cols
        b = k - i * n_cols
        z[i, b] = diag_inv[i] * r[i, b]


def precondition(r, diag_inv, z, work) -> np.ndarray:
    """z = D⁻¹ r (Jacobi); returns host column-wise r·z (B,)."""
    _jacobi_kernel[_blocks(r.size), THREADS_PER_BLOCK](r, diag_inv, z)
    return col_dot(r, z, work)


@cuda.jit
def _cg_direction_kernel(z, beta, p):
    n_cols = p.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, p.shape[0] * n_cols, stride):
        i = k // n_cols
        b = k - i * n_cols
        p[i, b] = z[i, b] + beta[b] * p[i, b]


def cg_direction(z, beta, p) -> None:
    d_beta = cuda.to_device(np.ascontiguousarray(beta, dtype=np.float64))
    _cg_direction_kernel[_blocks(p.size), THREADS_PER_BLOCK](z, d_beta, p)


_activation_at = cuda.jit(device=True)(node_rules.activation_at)
_apd_at = cuda.jit(device=True)(node_rules.apd_at)


@cuda.jit
def _activation_kernel(v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, v.size, stride):
        _activation_at(k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count)


def activation_update(v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    """Upward crossings of ``threshold_mv`` (time-interpolated); then ``v_prev = v``."""
    _activation_kernel[_blocks(v_prev.size), THREADS_PER_BLOCK](
        v_prev, _flat(v), float(t_prev_ms), float(dt_ms), float(threshold_mv),
        first_ms, last_ms, count,
    )  # fmt: skip


@cuda.jit
def _apd_kernel(
    v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak, apd_ms, count
):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, v.size, stride):
        _apd_at(
            k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak,
            apd_ms, count,
        )  # fmt: skip


def apd_update(
    v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak, apd_ms, count
):
    """APD at ``fraction`` repolarisation per node; contract as the CPU backend's."""
    _apd_kernel[_blocks(v_prev.size), THREADS_PER_BLOCK](
        v_prev, _flat(v), float(t_prev_ms), float(dt_ms), float(threshold_mv), float(fraction),
        phase, t_up, v_min, v_peak, apd_ms, count,
    )  # fmt: skip


@cuda.jit
def _first_bad_kernel(v, limit, result):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, v.size, stride):
        if not abs(v[k]) <= limit:  # also true for NaN
            cuda.atomic.min(result, 0, k)


def first_bad_index(v, limit: float) -> int:
    """Smallest flat index where ``v`` is NaN/inf or |v| > ``limit``; −1 if none."""
    flat = _flat(v)
    result = cuda.to_device(np.array([flat.size], dtype=np.int64))
    _first_bad_kernel[_blocks(flat.size), THREADS_PER_BLOCK](flat, float(limit), result)
    bad = int(result.copy_to_host()[0])
    return -1 if bad >= flat.size else bad


@cuda.jit
def _count_nan_kernel(a, result):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, a.size, stride):
        if math.isnan(a[k]):
            cuda.atomic.add(result, 0, 1)


def count_nan(a) -> int:
    flat = _flat(a)
    result = cuda.to_device(np.zeros(1, dtype=np.int64))
    _count_nan_kernel[_blocks(flat.size), THREADS_PER_BLOCK](flat, result)
    return int(result.copy_to_host()[0])


@cache
def node_kernel(rule: Callable) -> Callable:
    """``launch(n, *args)``: run the per-node ``rule(k, *args)`` of
    :mod:`~cardiotwin.solvers.backends.node_rules` over k = 0..n−1 (grid-stride loop)."""
    namespace = {"cuda": cuda, "rule": cuda.jit(device=True)(rule)}
    loop = (
        "    start = cuda.grid(1)\n    stride = cuda.gridsize(1)\n"
        "    for k in range(start, n, stride):"
    )
    kernel = cuda.jit(node_rules.fixed_arity_kernel(rule, loop, namespace))

    def launch(n: int, *args) -> None:
        if n > 0:
            kernel[_blocks(n), THREADS_PER_BLOCK](int(n), *args)

    return launch


@cuda.jit
def _member_max_partial(a, n_members, partial):
    # chunk c = block; threads stride over the chunk's nodes; shared-memory tree per member
    n = a.size // n_members
    n_chunks = partial.shape[0]
    c = cuda.blockIdx.x
    t = cuda.threadIdx.x
    lo = c * n // n_chunks
    hi = (c + 1) * n // n_chunks
    acc = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    for b in range(n_members):
        m = -math.inf
        for i in range(lo + t, hi, THREADS_PER_BLOCK):
            x = a[i * n_members + b]
            if x > m:
                m = x
        acc[t] = m
        cuda.syncthreads()
        width = THREADS_PER_BLOCK // 2
        while width > 0:
            if t < width and acc[t + width] > acc[t]:
                acc[t] = acc[t + width]
            cuda.syncthreads()
            width //= 2
        if t == 0:
            partial[c, b] = acc[0]
        cuda.syncthreads()


def member_max(a, n_members: int) -> np.ndarray:
    """Per batch member, the largest entry of a flat node-major array, ignoring NaN (host)."""
    flat = _flat(a)
    n = flat.size // n_members
    chunks = min(REDUCTION_CHUNKS, max(n, 1))
    partial = cuda.device_array((chunks, n_members))
    _member_max_partial[chunks, THREADS_PER_BLOCK](flat, int(n_members), partial)
    return partial.copy_to_host().max(axis=0)
