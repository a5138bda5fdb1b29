"""CUDA backend: the model's ``step`` compiled as a Numba-CUDA device function, and the tissue
operations of the monodomain stepper as Numba-CUDA kernels that keep everything on the device.

Imported only when CUDA is asked for. Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run
in Numba's CUDA simulator, which is how CI checks their logic (and counts their launches and
transfers, ``tests/solvers/test_cuda_launches.py``) without a GPU.

What runs per time step (no transfer between host and device inside the step loop):

- lumped mass, explicit diffusion: the cell kernel (V from one buffer into the other, see
  ``solvers/stepping.py``; the activation and APD trackers' updates run inside it) and one
  sparse product per diffusion substep, which writes V back into the first buffer:
  1 + substeps launches;
- θ-scheme / consistent mass: the cell kernel, the initial guess, then
  :class:`ConjugateGradient` entirely on the device (its first kernel forms the right-hand
  side row by row; α, β, residuals and which batch members are still iterating live in
  small device arrays; 3 launches per iteration), and the new increment: 4 + 3 per issued
  CG iteration. Convergence is read on the host through one asynchronous copy of two
  integers per group of :data:`CG_CHECK_EVERY` iterations.

Counted under the simulator by ``tests/solvers/test_cuda_launches.py``. On a device the
CG's work is captured once as CUDA graphs and replayed with one driver call each
(:data:`CUDA_GRAPHS`; ``CARDIOTWIN_CUDA_GRAPHS=0`` launches the kernels one by one): the
initial guess, the start, the first groups of iterations and the new increment as one graph
per pair of V buffers, and each further group of iterations as another. A CG step then costs
the host two dispatches (cell kernel, graph), one 8-byte copy and one wait.
Not here: a CuPy path (cuSPARSE SpMV); the numba-cuda kernels are measured against the
bandwidth ceiling by ``benchmarks/gpu_check.sh`` first.

Sparse matrices are stored as sliced ELLPACK by default (:func:`sliced_ell`: a warp reads
its 32 rows' entries coalesced), or CSR (``CARDIOTWIN_CUDA_SPMV=csr``); both sum each row in
column order, so products and CG iterates are bit-identical between them
(``tests/solvers/test_cuda_layouts.py``).

Reductions are deterministic: a fixed number of row chunks (a function of the problem size
only), a fixed tree inside each block, and the chunks' partial sums added in a fixed order
by whichever block finishes last (a counter in device memory). Stored values may be float32
(``precision="mixed"``); sums, α and β are float64 throughout.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from functools import cache

import numpy as np
import scipy.sparse as sp
from numba import config as numba_config
from numba import cuda, float64, int32

from cardiotwin.solvers.backends import node_rules
from cardiotwin.solvers.ionic.base import (
    IonicModel,
    Placement,
    compile_split_step,
    compile_step_of_module,
    empty_table,
    takes_table,
)

NAME = "cuda"
log = logging.getLogger(__name__)
THREADS_PER_BLOCK = 128

_STREAM: list = []


def stream():
    """The one CUDA stream of this backend: every kernel and copy of a run goes on it, in
    order, so the host never has to wait except to read a result."""
    if not _STREAM:
        _STREAM.append(cuda.stream())
    return _STREAM[0]


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
        _kernel[blocks, THREADS_PER_BLOCK, stream()](y, p, pset, dt_ms, i_stim, table)

    return kernel


def make_split_cell_kernel(
    model: IonicModel,
    placement: Placement,
    use_table: bool = False,
    single_set: bool = False,
    rules: tuple = (),
) -> Callable:
    """``kernel(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table, *rule_args)`` for the
    stepper's split state; contract as the CPU backend's (one thread per node and member).

    ``rules``: per-node tracker rules of :mod:`~cardiotwin.solvers.backends.node_rules`
    (e.g. ``activation_at``) run by each thread before its cell step, with their arguments
    after ``table``, one rule after the other: the trackers' updates ride along with the
    cell kernel instead of being launches of their own (see ``SplitStepper.run``).
    """
    return _split_kernel(
        model.module, use_table, takes_table(model), placement, single_set, tuple(rules),
        CELL_MAX_REGISTERS,
    )  # fmt: skip


#: trackers with a ``fused_rule`` run inside the cell kernel (stepper: Godunov splitting)
FUSES_TRACKERS = True


@cache
def _device_rule(rule: Callable):
    return cuda.jit(device=True)(rule)


@cache
def _split_kernel(
    module_name, use_table, with_table, placement, single_set, rules, max_registers=None
) -> Callable:
    source = split_kernel_source(module_name, use_table, with_table, placement, single_set, rules)
    if max_registers and not numba_config.ENABLE_CUDASIM:  # the simulator has no registers
        kernel = cuda.jit(source, max_registers=int(max_registers))
    else:
        kernel = cuda.jit(source)
    placeholder = []

    def launch(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table=None, *rule_args):
        if table is None:
            if not placeholder:
                placeholder.append(cuda.to_device(empty_table(1)))
            table = placeholder[0]
        n = v_in.shape[0]
        blocks = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
        kernel[blocks, THREADS_PER_BLOCK, stream()](
            v_in, v_out, y32, y64, p, pset, float(dt_ms), i_stim, table, *rule_args
        )

    launch.kernel = kernel
    return launch


def split_kernel_source(module_name, use_table, with_table, placement, single_set, rules=()):
    """The Python function the split cell kernel is compiled from (also used to emit PTX
    for ``benchmarks/ptxas_report.py``)."""
    step = compile_split_step(module_name, _device, use_table, placement, unsigned_rows=True)
    namespace = {"cuda": cuda, "step": step}
    node_set = "0" if single_set else "pset[k]"
    table = ", table" if with_table else ""
    parameters, calls = [], []
    for r, rule in enumerate(rules):
        namespace[f"rule{r}"] = _device_rule(rule)
        names = [f"r{r}_{i}" for i in range(rule.__code__.co_argcount - 1)]
        parameters += names
        calls.append(f"        rule{r}(k, {', '.join(names)})\n")
    extra = "".join(f", {name}" for name in parameters)
    exec(
        f"def split_cell_kernel(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table{extra}):\n"
        "    k = cuda.grid(1)\n"
        "    if k < v_in.shape[0]:\n"
        + "".join(calls)
        + f"        step(v_in, v_out, y32, y64, p, k, {node_set}, dt_ms, i_stim[k]{table})\n",
        namespace,
    )
    return namespace["split_cell_kernel"]


# --- tissue operations ---------------------------------------------------------------------
# The same operations as the CPU backend (see solvers/backends/cpu.py and
# solvers/stepping.py), on Numba-CUDA device arrays. Element-wise kernels use grid-stride
# loops over flat views. CuPy is not needed; every kernel also runs under the CUDA simulator.

SUPPORTS_TISSUE = True
#: float32 storage with float64 arithmetic (precision="mixed") is supported
SUPPORTS_MIXED = True

#: blocks for grid-stride kernels (enough to fill an H100's 132 SMs several times)
MAX_BLOCKS = 4096
#: most row chunks of a column reduction (one block each); the number used depends only on
#: the problem size, never on the device, so sums are the same on every GPU
REDUCTION_CHUNKS = 1024
#: the CG's host loop reads "are all members converged?" after groups of this many
#: iterations (one asynchronous 8-byte copy per check); iterations issued past convergence
#: return at once. Which value is fastest is for benchmarks/gpu_check.sh to measure
CG_CHECK_EVERY = 2
#: replay each group of CG iterations as one captured CUDA graph instead of launching its
#: kernels one by one (the default; ``CARDIOTWIN_CUDA_GRAPHS=0`` turns it off). On an H200 a
#: CG step at B = 1 took 920 µs of which the kernels were 470 µs: the rest was the host
#: dispatching 3 launches per iteration through Numba. Measured there side by side
#: (benchmarks/RESULTS.md, "CUDA graphs for the CG"): 1.2-2.4x the throughput at B = 1, no
#: change at B = 16, parity with the CPU unchanged. The simulator cannot capture graphs, so
#: CI tests the fallback and a stand-in; ``benchmarks/gpu_check.sh`` runs the real capture
CUDA_GRAPHS = os.environ.get("CARDIOTWIN_CUDA_GRAPHS", "1") != "0"
#: register cap of the cell kernel (``CARDIOTWIN_CUDA_CELL_REGISTERS``; unset: none). TP06
#: takes 143-144 registers, which leaves an sm_90 SM 12 warps of this memory-bound kernel
#: (18.8 % occupancy, 17 % achieved on an H200); ptxas at 128 spills 32-48 bytes per thread
#: for 16 warps, at 96 160-184 bytes for 20 (benchmarks/ptxas_report.py --max-registers).
#: Whether the warps gained outweigh the spills is for benchmarks/gpu_check.sh to measure
CELL_MAX_REGISTERS = int(os.environ.get("CARDIOTWIN_CUDA_CELL_REGISTERS", "0")) or None
#: most graphs one CG solver keeps (keyed by the buffers they were captured for; a stepper
#: alternates two V buffers, so it needs a handful); beyond it work is launched directly
MAX_GRAPHS = 32
#: how sparse matrices are stored on the device: ``sell`` (sliced ELLPACK, slices of
#: :data:`SLICE_ROWS` rows stored column by column: a warp reads the matrix coalesced) or
#: ``csr`` (row-per-thread reads 32 scattered rows per load). Bit-identical products; which
#: is faster on the device is for benchmarks/gpu_check.sh to measure (part 2b).
#: ``CARDIOTWIN_CUDA_SPMV=csr`` selects CSR; matrices built afterwards take the new value
SPMV_LAYOUT = os.environ.get("CARDIOTWIN_CUDA_SPMV", "sell")
#: rows per SELL slice (one warp), and the alignment of the reduction kernels' row chunks
SLICE_ROWS = 32


def _blocks(n: int) -> int:
    return max(1, min(MAX_BLOCKS, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK))


def _flat(a):
    return a.reshape(a.size)


def _launch(kernel, n: int):
    """``kernel`` configured for a grid-stride loop over ``n`` items on the backend stream."""
    return kernel[_blocks(n), THREADS_PER_BLOCK, stream()]


def sliced_ell(matrix, dtype=np.float64, height: int = 32):
    """``matrix`` in the sliced ELLPACK layout SELL-``height`` (Kreutzer et al. 2014, SIAM J
    Sci Comput 36:C401), as host arrays ``(start, length, indices, data)``.

    Rows are cut into slices of ``height`` consecutive rows; each slice is padded to its
    longest row and stored column by column, so entry k of row i sits at
    ``start[i] + k * height``. The threads of a warp, which handle consecutive rows, then
    read the matrix in one coalesced sweep per k instead of ``height`` scattered ones (the
    row-per-thread CSR kernel reached 37 % of the H200's bandwidth). Each row's entries stay
    in column order, so a product sums them in the same order as over CSR: bit-identical.
    The padding (zeros) is never read: a row stops at its own ``length``."""
    csr = sp.csr_matrix(matrix)
    csr.sort_indices()
    n = csr.shape[0]
    length = np.diff(csr.indptr).astype(np.int64)
    n_slices = -(-n // height)
    padded = np.zeros(n_slices * height, dtype=np.int64)
    padded[:n] = length
    width = padded.reshape(n_slices, height).max(axis=1)
    slice_start = np.concatenate([[0], np.cumsum(width * height)])
    rows = np.arange(n, dtype=np.int64)
    start = slice_start[rows // height] + rows % height
    row_of_entry = np.repeat(rows, length)
    k = np.arange(csr.nnz, dtype=np.int64) - csr.indptr[row_of_entry]
    position = start[row_of_entry] + k * height
    total = int(slice_start[-1])
    indices = np.zeros(total, dtype=np.int32)
    indices[position] = csr.indices
    data = np.zeros(total, dtype=dtype)
    data[position] = csr.data
    return start, length, indices, data


class CSRMatrix:
    """A sparse matrix on the device, stored as :data:`SPMV_LAYOUT` says: ``sell`` (sliced
    ELLPACK, :func:`sliced_ell`) or ``csr``. Kernels see one form for both: entry k of row
    i is at ``start[i] + k * stride`` for k < ``length[i]`` (``stride`` 1 for CSR, the slice
    height for SELL), in column order, so the two give bit-identical products. Indices are
    int32 (half the index traffic of int64); ``data`` float64 or float32."""

    def __init__(self, matrix, dtype=np.float64, layout: str | None = None):
        matrix = sp.csr_matrix(matrix)
        matrix.sort_indices()
        layout = SPMV_LAYOUT if layout is None else layout
        if layout == "sell":
            start, length, indices, data = sliced_ell(matrix, dtype, SLICE_ROWS)
            self.stride = SLICE_ROWS
        elif layout == "csr":
            start, length = matrix.indptr[:-1], np.diff(matrix.indptr)
            indices, data, self.stride = matrix.indices, matrix.data, 1
        else:
            raise ValueError(f"unknown sparse layout {layout!r}; use 'sell' or 'csr'")
        if len(data) >= np.iinfo(np.int32).max:
            raise ValueError(
                f"the matrix needs {len(data)} stored entries ({matrix.nnz} non-zeros, "
                f"{layout} layout); the CUDA backend indexes them with int32 (at most "
                "2 147 483 646). Split the problem or use backend='cpu'"
            )
        self.layout = layout
        self.start = cuda.to_device(np.ascontiguousarray(start, dtype=np.int32))
        self.length = cuda.to_device(np.ascontiguousarray(length, dtype=np.int32))
        self.indices = cuda.to_device(np.ascontiguousarray(indices, dtype=np.int32))
        self.data = cuda.to_device(np.ascontiguousarray(data, dtype=dtype))
        self.shape = matrix.shape
        self.nnz = matrix.nnz
        self.stored = len(data)

    @property
    def args(self) -> tuple:
        """What a kernel takes to read the matrix: (start, length, stride, indices, data)."""
        return self.start, self.length, self.stride, self.indices, self.data


def run_context(n_entries: int):
    return nullcontext()


def free_memory_bytes() -> float:
    """Free memory of the current device, bytes (the stepper checks a batch fits; the CUDA
    simulator reports infinity)."""
    return float(cuda.current_context().get_memory_info()[0])


def asarray(a, dtype=np.float64):
    """A device copy of host array ``a`` (C-contiguous)."""
    return cuda.to_device(np.array(a, dtype=dtype, order="C", copy=True))


def to_host(a) -> np.ndarray:
    """A host copy of device array ``a`` (waits for the work queued before it)."""
    out = a.copy_to_host(stream=stream())
    stream().synchronize()
    return out


def empty(shape, dtype=np.float64):
    return cuda.device_array(shape, dtype=dtype)


def zeros(shape, dtype=np.float64):
    out = cuda.device_array(shape, dtype=dtype)
    fill(out, 0)
    return out


def sparse(matrix, dtype=np.float64) -> CSRMatrix:
    return CSRMatrix(matrix, dtype)


def _chunks(n_rows: int, n_cols: int) -> int:
    """Row chunks of a reduction over an (n_rows, n_cols) array: a function of the size
    only (about one block of work per chunk, at most REDUCTION_CHUNKS)."""
    return max(1, min(REDUCTION_CHUNKS, (n_rows * n_cols) // THREADS_PER_BLOCK))


def _threads_for(n_cols: int) -> int:
    """Threads of a reduction block that do work: a multiple of the batch size, so each
    thread always handles the same member (element e = node·B + member, stride = threads).

    The threads per member, and so the order of a member's sums, depend on the batch size:
    one member's CG can differ in the last bits between batches of different sizes (3.6e-14
    mV after 3 steps under the simulator), unlike the CPU backend, whose chunks depend on N
    only. Trials compacted into a smaller batch on a GPU are therefore not bit-identical to
    an uncompacted run; their answers agree to rounding."""
    if n_cols > THREADS_PER_BLOCK:
        raise ValueError(
            f"the CUDA reductions handle batches of up to {THREADS_PER_BLOCK} members, got "
            f"{n_cols}; split the batch"
        )
    return THREADS_PER_BLOCK - THREADS_PER_BLOCK % n_cols


@cuda.jit(device=True)
def _reduce_block(acc, t, n_cols, n_threads):
    """Block-wide sums per member: ``acc[t]`` (t < n_threads) holds thread t's sum for member
    ``t % n_cols``; afterwards ``acc[b]`` holds member b's sum (b < n_cols). A fixed tree
    while the halves keep members apart, then a fixed serial tail: deterministic."""
    cuda.syncthreads()
    count = n_threads
    while count % 2 == 0 and (count // 2) % n_cols == 0:
        half = count // 2
        if t < half:
            acc[t] += acc[t + half]
        cuda.syncthreads()
        count = half
    if count > n_cols:
        if t < n_cols:
            total = acc[t]
            for j in range(t + n_cols, count, n_cols):
                total += acc[j]
            acc[t] = total
        cuda.syncthreads()


@cuda.jit(device=True)
def _last_block(control, n_blocks, flag):
    """True in the block that finishes last (all others' partial sums are then written):
    each block bumps ``control[2]``; the last one resets it for the next launch."""
    cuda.threadfence()
    cuda.syncthreads()
    if cuda.threadIdx.x == 0:
        done = cuda.atomic.add(control, 2, 1)
        flag[0] = 1 if done == n_blocks - 1 else 0
        if flag[0] == 1:
            control[2] = 0
    cuda.syncthreads()
    return flag[0] == 1


@cuda.jit(device=True)
def _sum_partials(partial, q, n_cols, acc, t, n_threads):
    """``acc[b]`` = Σ_c partial[q, c, b] in a fixed order (threads stride over the flat
    (chunk, member) array, then :func:`_reduce_block`)."""
    total = 0.0
    if t < n_threads:
        for e in range(t, partial.shape[1] * n_cols, n_threads):
            c = e // n_cols
            total += partial[q, c, e - c * n_cols]
    acc[t] = total
    _reduce_block(acc, t, n_cols, n_threads)


@cuda.jit(device=True)
def _row_times(start, length, stride, indices, data, x, i, b):
    """Σ_k A[i, k] x[k, b] over row i's stored entries in column order (see CSRMatrix)."""
    acc = 0.0
    jj = start[i]
    for _ in range(length[i]):
        acc += float(data[jj]) * x[indices[jj], b]
        jj += stride
    return acc


@cuda.jit(device=True)
def _chunk_rows(c, n, n_chunks):
    """Rows [lo, hi) of reduction chunk c: a function of n and n_chunks only, with bounds on
    multiples of SLICE_ROWS so that a warp's rows share one SELL slice."""
    lo = (c * n // n_chunks) // SLICE_ROWS * SLICE_ROWS
    hi = n if c + 1 == n_chunks else ((c + 1) * n // n_chunks) // SLICE_ROWS * SLICE_ROWS
    return lo, hi


@cuda.jit
def _spmm_kernel(start, length, stride, indices, data, x, out):
    # one thread per (row, column): neighbouring threads read neighbouring columns of x
    n_cols = x.shape[1]
    total = out.shape[0] * n_cols
    first, step = cuda.grid(1), cuda.gridsize(1)
    for k in range(first, total, step):
        i = k // n_cols
        b = k - i * n_cols
        out[i, b] = _row_times(start, length, stride, indices, data, x, i, b)


def spmm(matrix: CSRMatrix, x, out) -> None:
    """``out = matrix @ x`` for (n, B) ``x``; ``out`` must not alias ``x``."""
    n = out.shape[0] * out.shape[1]
    _launch(_spmm_kernel, n)(*matrix.args, x, out)


@cuda.jit
def _axpby_kernel(a, x, b, y):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, y.size, stride):
        y[k] = a * x[k] + b * y[k]


def axpby(a: float, x, b: float, y) -> None:
    """``y = a·x + b·y`` element-wise."""
    _launch(_axpby_kernel, y.size)(float(a), _flat(x), float(b), _flat(y))


@cuda.jit
def _axpbyz_kernel(a, x, b, y, out):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, out.size, stride):
        out[k] = a * x[k] + b * y[k]


def axpbyz(a: float, x, b: float, y, out) -> None:
    """``out = a·x + b·y`` element-wise (``out`` may be ``x`` or ``y``)."""
    _launch(_axpbyz_kernel, out.size)(float(a), _flat(x), float(b), _flat(y), _flat(out))


@cuda.jit
def _copy_kernel(src, dst):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, dst.size, stride):
        dst[k] = src[k]


def copy(src, dst) -> None:
    _launch(_copy_kernel, dst.size)(_flat(src), _flat(dst))


@cuda.jit
def _fill_kernel(a, value):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, a.size, stride):
        a[k] = value


def fill(a, value) -> None:
    flat = _flat(a)
    _launch(_fill_kernel, flat.size)(flat, flat.dtype.type(value))


@cuda.jit
def _set_at_kernel(a, index, value):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, index.size, stride):
        a[index[k]] = value


def set_at(a, index, value: float) -> None:
    """``a.flat[index] = value`` for a device integer array ``index``."""
    if index.size:
        _launch(_set_at_kernel, index.size)(_flat(a), index, float(value))


# --- conjugate gradients on the device ------------------------------------------------------
# rows of ConjugateGradient.scalars (float64, one column per batch member)
_BB, _RR, _RZ, _ALPHA, _BETA, _TOL2 = range(6)
# control (int32): [0] members still iterating, [1] iterations done in this solve, [2] the
# block counter of _last_block
_ACTIVE, _DONE, _COUNTER = range(3)


@cuda.jit(device=True)
def _cg_start_row(start, length, stride, indices, data, bi, x, r, z, p, diag_inv, i, b):
    """One entry of r = b − A x, z = D⁻¹ r, p = z; returns (r_i as stored, z_i as stored)."""
    ax = _row_times(start, length, stride, indices, data, x, i, b)
    r[i, b] = bi - ax
    ri = float(r[i, b])
    z[i, b] = diag_inv[i] * ri
    p[i, b] = z[i, b]
    return ri, float(z[i, b])


@cuda.jit(device=True)
def _cg_start_finish(partial, scalars, active, control, rtol2, acc_bb, acc_rr, acc_rz, flag,
                     n_cols, n_threads):  # fmt: skip
    """After the rows: block sums into the partials; in the last block, b·b, r·r, r·z, the
    tolerances and which members start active."""
    t, c = cuda.threadIdx.x, cuda.blockIdx.x
    _reduce_block(acc_bb, t, n_cols, n_threads)
    _reduce_block(acc_rr, t, n_cols, n_threads)
    _reduce_block(acc_rz, t, n_cols, n_threads)
    if t < n_cols:
        partial[0, c, t] = acc_bb[t]
        partial[1, c, t] = acc_rr[t]
        partial[2, c, t] = acc_rz[t]
    if not _last_block(control, partial.shape[1], flag):
        return
    _sum_partials(partial, 0, n_cols, acc_bb, t, n_threads)
    _sum_partials(partial, 1, n_cols, acc_rr, t, n_threads)
    _sum_partials(partial, 2, n_cols, acc_rz, t, n_threads)
    if t < n_cols:
        bb = acc_bb[t]
        rr = acc_rr[t]
        scalars[_BB, t] = bb
        scalars[_RR, t] = rr
        scalars[_RZ, t] = acc_rz[t]
        tol2 = rtol2 * (bb if bb > 0.0 else rr)
        scalars[_TOL2, t] = tol2
        active[t] = 1 if rr > tol2 else 0
    cuda.syncthreads()
    if t == 0:
        count = 0
        for b in range(n_cols):
            count += active[b]
        control[_ACTIVE] = count
        control[_DONE] = 0


@cuda.jit
def _cg_start_product_kernel(b_start, b_length, b_stride, b_indices, b_data, src, start, length,
                             stride, indices, data, x, r, z, p, diag_inv, partial, scalars,
                             active, control, rtol2, n_threads):  # fmt: skip
    """r = b − A x, z = D⁻¹ r, p = z with b = B·src formed row by row and never stored (the
    θ-scheme's right-hand side: one launch and one vector write and read fewer than a
    separate product); b·b, r·r, r·z; then (last block) the tolerances and which members
    start active."""
    n, n_cols = x.shape
    c, t = cuda.blockIdx.x, cuda.threadIdx.x
    n_chunks = partial.shape[1]
    lo, hi = _chunk_rows(c, n, n_chunks)
    acc_bb = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    acc_rr = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    acc_rz = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    flag = cuda.shared.array(1, dtype=int32)
    sbb = 0.0
    srr = 0.0
    srz = 0.0
    if t < n_threads:
        for e in range(lo * n_cols + t, hi * n_cols, n_threads):
            i = e // n_cols
            b = e - i * n_cols
            bi = _row_times(b_start, b_length, b_stride, b_indices, b_data, src, i, b)
            r[i, b] = bi  # rounded to the storage precision, as a stored right-hand side is
            bi = float(r[i, b])
            ri, zi = _cg_start_row(
                start, length, stride, indices, data, bi, x, r, z, p, diag_inv, i, b
            )
            sbb += bi * bi
            srr += ri * ri
            srz += ri * zi
    acc_bb[t] = sbb
    acc_rr[t] = srr
    acc_rz[t] = srz
    _cg_start_finish(partial, scalars, active, control, rtol2, acc_bb, acc_rr, acc_rz, flag,
                     n_cols, n_threads)  # fmt: skip


@cuda.jit
def _cg_spmm_dot_kernel(start, length, stride, indices, data, p, q, partial, scalars, active,
                        control, n_threads):  # fmt: skip
    """q = A p; p·q; then (last block) α = r·z / p·q for the active members (0 otherwise)."""
    if control[_ACTIVE] == 0:
        return  # every member converged: iterations issued past that do nothing
    n, n_cols = p.shape
    c, t = cuda.blockIdx.x, cuda.threadIdx.x
    n_chunks = partial.shape[1]
    lo, hi = _chunk_rows(c, n, n_chunks)
    acc = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    flag = cuda.shared.array(1, dtype=int32)
    total = 0.0
    if t < n_threads:
        for e in range(lo * n_cols + t, hi * n_cols, n_threads):
            i = e // n_cols
            b = e - i * n_cols
            q[i, b] = _row_times(start, length, stride, indices, data, p, i, b)
            total += float(p[i, b]) * q[i, b]
    acc[t] = total
    _reduce_block(acc, t, n_cols, n_threads)
    if t < n_cols:
        partial[0, c, t] = acc[t]
    if not _last_block(control, n_chunks, flag):
        return
    _sum_partials(partial, 0, n_cols, acc, t, n_threads)
    if t < n_cols:
        pq = acc[t]
        ok = active[t] == 1 and pq != 0.0
        scalars[_ALPHA, t] = scalars[_RZ, t] / pq if ok else 0.0


@cuda.jit
def _cg_update_step_kernel(p, q, x, r, z, diag_inv, partial, scalars, active, control,
                           n_threads):  # fmt: skip
    """x += αp, r −= αq, z = D⁻¹r; r·r, r·z; then (last block) which members go on, β, and
    the count of members still iterating."""
    if control[_ACTIVE] == 0:
        return
    n, n_cols = x.shape
    c, t = cuda.blockIdx.x, cuda.threadIdx.x
    n_chunks = partial.shape[1]
    lo, hi = _chunk_rows(c, n, n_chunks)
    acc_rr = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    acc_rz = cuda.shared.array(THREADS_PER_BLOCK, dtype=float64)
    flag = cuda.shared.array(1, dtype=int32)
    srr = 0.0
    srz = 0.0
    if t < n_threads:
        for e in range(lo * n_cols + t, hi * n_cols, n_threads):
            i = e // n_cols
            b = e - i * n_cols
            a = scalars[_ALPHA, b]
            x[i, b] += a * p[i, b]
            r[i, b] = r[i, b] - a * q[i, b]
            ri = float(r[i, b])
            z[i, b] = diag_inv[i] * ri
            zi = float(z[i, b])
            srr += ri * ri
            srz += ri * zi
    acc_rr[t] = srr
    acc_rz[t] = srz
    _reduce_block(acc_rr, t, n_cols, n_threads)
    _reduce_block(acc_rz, t, n_cols, n_threads)
    if t < n_cols:
        partial[0, c, t] = acc_rr[t]
        partial[1, c, t] = acc_rz[t]
    if not _last_block(control, n_chunks, flag):
        return
    _sum_partials(partial, 0, n_cols, acc_rr, t, n_threads)
    _sum_partials(partial, 1, n_cols, acc_rz, t, n_threads)
    if t < n_cols:
        rr = acc_rr[t]
        rz_new = acc_rz[t]
        still = rr > scalars[_TOL2, t]
        rz = scalars[_RZ, t]
        scalars[_RR, t] = rr
        scalars[_BETA, t] = rz_new / rz if still and rz != 0.0 else 0.0
        scalars[_RZ, t] = rz_new
        active[t] = 1 if still else 0
    cuda.syncthreads()
    if t == 0:
        count = 0
        for b in range(n_cols):
            count += active[b]
        control[_ACTIVE] = count
        control[_DONE] += 1


@cuda.jit
def _cg_direction_step_kernel(z, p, scalars, control):
    """p = z + β p (skipped once every member has converged)."""
    if control[_ACTIVE] == 0:
        return
    n_cols = p.shape[1]
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, p.shape[0] * n_cols, stride):
        i = k // n_cols
        b = k - i * n_cols
        p[i, b] = z[i, b] + scalars[_BETA, b] * p[i, b]


def device_pointer(a) -> int:
    """The address of device array ``a``'s data (the simulator's: its host buffer's)."""
    if hasattr(a, "device_ctypes_pointer"):
        return int(a.device_ctypes_pointer.value or 0)
    return int(a._ary.ctypes.data)


class CapturedGraph:
    """The work ``issue()`` puts on ``stream`` captured once as a CUDA graph (stream capture
    through the driver API of cuda-bindings, which numba-cuda itself uses) and replayed by
    :meth:`launch` with one driver call. Whatever ``issue`` launches must take the same
    arguments at every replay."""

    def __init__(self, stream, issue: Callable[[], None]) -> None:
        from cuda.bindings import driver

        self._driver = driver
        self._graph = self._exec = None
        handle = driver.CUstream(int(stream.handle))
        mode = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        self._check(driver.cuStreamBeginCapture(handle, mode), "cuStreamBeginCapture")
        try:
            issue()
        finally:
            self._graph = self._check(driver.cuStreamEndCapture(handle), "cuStreamEndCapture")
        self._exec = self._check(driver.cuGraphInstantiate(self._graph, 0), "cuGraphInstantiate")

    def _check(self, result, call: str):
        error, *value = result if isinstance(result, tuple) else (result,)
        if error != self._driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"{call}: {error}")
        return value[0] if value else None

    def launch(self, stream) -> None:
        handle = self._driver.CUstream(int(stream.handle))
        self._check(self._driver.cuGraphLaunch(self._exec, handle), "cuGraphLaunch")

    def __del__(self) -> None:
        driver = getattr(self, "_driver", None)
        if driver is None:
            return
        if self._exec is not None:
            driver.cuGraphExecDestroy(self._exec)
        if self._graph is not None:
            driver.cuGraphDestroy(self._graph)


class ConjugateGradient:
    """Batched Jacobi-preconditioned CG on the device; the contract of
    :class:`cardiotwin.solvers.stepping.ConjugateGradient` (same stopping rule per member,
    same iterates up to the order of floating-point sums), without host round trips.

    Every buffer is allocated here, once. Per iteration three kernels: ``q = A p`` with
    ``p·q`` and α, the update of x, r, z with ``r·r``, ``r·z``, β and the members still
    active, and the new direction p; the scalars never leave the device. The host issues
    iterations in groups of :data:`CG_CHECK_EVERY` followed by an asynchronous copy of
    (members active, iterations done) into pinned memory: first as many groups as the
    previous solve needed, then one group at a time. Iterations issued after every member
    has converged return at once.
    """

    def __init__(self, ops, matrix, n_cols: int, rtol: float, max_iterations, dtype=np.float64):
        n = matrix.shape[0]
        self.matrix = CSRMatrix(matrix, dtype)
        self.diag_inv = asarray(1.0 / matrix.diagonal(), dtype=dtype)
        self.r, self.z, self.p, self.q = (empty((n, n_cols), dtype) for _ in range(4))
        self.partial = cuda.device_array((3, _chunks(n, n_cols), n_cols))
        self.scalars = cuda.to_device(np.zeros((6, n_cols)))
        self.active = cuda.to_device(np.zeros(n_cols, dtype=np.int32))
        self.control = cuda.to_device(np.zeros(3, dtype=np.int32))
        self._status = cuda.pinned_array(2, dtype=np.int32)
        self._event = cuda.event()
        self._expected = 1  # iterations of the previous solve: how many to issue unchecked
        self._identity = None
        self.rtol = float(rtol)
        self.max_iterations = int(max_iterations)
        self.check_every = max(1, int(CG_CHECK_EVERY))
        self.n_threads = _threads_for(n_cols)
        self.n_chunks = self.partial.shape[1]
        self.iterations = 0  # total over all solves
        self.solves = 0
        self.use_graphs = CUDA_GRAPHS and not numba_config.ENABLE_CUDASIM
        self._graphs: dict[tuple, CapturedGraph] = {}

    def _issue_iterations(self, count: int) -> None:
        if count % self.check_every == 0:
            graph = self._graph(
                ("group", device_pointer(self.x)),
                lambda: self._launch_iterations(self.check_every),
            )
            if graph is not None:
                for _ in range(count // self.check_every):
                    graph.launch(stream())
                return
        self._launch_iterations(count)

    def _graph(self, key: tuple, issue: Callable[[], None]) -> CapturedGraph | None:
        """The work ``issue()`` queues, captured once as a graph under ``key`` (a graph holds
        its kernels' arguments, so the key names every buffer they take that can change), or
        None: graphs off, the kernels not compiled yet (the first solve launches them), more
        than :data:`MAX_GRAPHS` keys, or capture failed (then never again for this solver,
        logged once)."""
        if not (self.use_graphs and self.solves > 1):
            return None
        if key not in self._graphs:
            if len(self._graphs) >= MAX_GRAPHS:
                return None
            try:
                self._graphs[key] = CapturedGraph(stream(), issue)
            except Exception as exc:  # a driver or binding without capture: launch as before
                log.warning("CUDA graph capture failed (%s); CG kernels launched one by one", exc)
                self.use_graphs = False
                return None
        return self._graphs[key]

    def _launch_iterations(self, count: int) -> None:
        s, m, chunks, threads = stream(), self.matrix, self.n_chunks, THREADS_PER_BLOCK
        for _ in range(count):
            _cg_spmm_dot_kernel[chunks, threads, s](
                *m.args, self.p, self.q, self.partial, self.scalars,
                self.active, self.control, self.n_threads,
            )  # fmt: skip
            _cg_update_step_kernel[chunks, threads, s](
                self.p, self.q, self.x, self.r, self.z, self.diag_inv, self.partial,
                self.scalars, self.active, self.control, self.n_threads,
            )  # fmt: skip
            _launch(_cg_direction_step_kernel, self.p.size)(
                self.z, self.p, self.scalars, self.control
            )

    def solve(self, b, x) -> int:
        """Solve ``matrix · x = b`` in place (``x`` holds the initial guess); returns the
        number of iterations (of the member that needed most)."""
        if self._identity is None:  # b = I·b through the one start kernel (tests use this)
            self._identity = CSRMatrix(sp.identity(self.matrix.shape[0], format="csr"))
        return self.solve_product(self._identity, b, x)

    def solve_product(
        self, rhs_matrix: CSRMatrix, src, x, guess_from=None, then: Callable | None = None
    ) -> int:
        """:meth:`solve` with b = ``rhs_matrix · src``, formed row by row inside the first
        kernel and never stored.

        ``guess_from``: if given, the initial guess is ``src + guess_from`` (written into
        ``x`` first; the stepper's V plus its last increment). ``then()``: if given, queues
        work that reads the solution and arrays fixed for the solver's life, and nothing the
        solver writes (the stepper's new increment): it is issued before the host waits for
        the convergence flag, and again after any further iterations.

        On a device the guess, the start, the first groups of iterations and ``then`` are
        replayed as one CUDA graph per (right-hand-side matrix, ``src``, ``x``,
        ``guess_from``, ``then`` or not, groups): the host dispatches one graph instead of
        their launches, the heaviest of which (the start kernel) takes 24 arguments."""
        self.x, self.src = x, src
        self.solves += 1
        groups = max(1, -(-self._expected // self.check_every))

        def first() -> None:
            if guess_from is not None:
                axpbyz(1.0, guess_from, 1.0, src, x)
            m, bm = self.matrix, rhs_matrix
            _cg_start_product_kernel[self.n_chunks, THREADS_PER_BLOCK, stream()](
                *bm.args, src, *m.args, x, self.r, self.z, self.p, self.diag_inv,
                self.partial, self.scalars, self.active, self.control, self.rtol**2,
                self.n_threads,
            )  # fmt: skip
            self._launch_iterations(groups * self.check_every)
            if then is not None:
                then()

        # every array of the right-hand side's matrix and its stride: a graph holds them
        arrays = (rhs_matrix.start, rhs_matrix.length, rhs_matrix.indices, rhs_matrix.data)
        matrix_key = (rhs_matrix.stride, *(device_pointer(a) for a in arrays))
        key = (
            "start", matrix_key, device_pointer(src), device_pointer(x),
            0 if guess_from is None else device_pointer(guess_from), then is not None, groups,
        )  # fmt: skip
        graph = self._graph(key, first)
        if graph is not None:
            graph.launch(stream())
        else:
            first()
        return self._wait(then)

    def _wait(self, then: Callable | None) -> int:
        """Read (members active, iterations done) through one asynchronous copy; while some
        member is still iterating, issue one more group (then ``then``) and read again. The
        first round issued as many groups as the previous solve needed, so the host usually
        waits once per solve."""
        while True:
            self.control[0:2].copy_to_host(self._status, stream=stream())
            self._event.record(stream())
            self._event.synchronize()
            active, done = (int(v) for v in self._status)
            if active == 0:
                self._expected = max(done, 1)
                self.iterations += done
                return done
            if done >= self.max_iterations:
                raise RuntimeError(
                    f"conjugate gradients did not converge in {self.max_iterations} "
                    f"iterations (asked relative residual {self.rtol:g}); raise "
                    "cg_max_iterations or lower dt"
                )
            self._issue_iterations(self.check_every)
            if then is not None:
                then()


_activation_at = cuda.jit(device=True)(node_rules.activation_at)
_apd_at = cuda.jit(device=True)(node_rules.apd_at)


@cuda.jit
def _activation_kernel(v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, v.size, stride):
        _activation_at(k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count)


def activation_update(v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    """Upward crossings of ``threshold_mv`` (time-interpolated); then ``v_prev = v``."""
    _activation_kernel[_blocks(v_prev.size), THREADS_PER_BLOCK, stream()](
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
    _apd_kernel[_blocks(v_prev.size), THREADS_PER_BLOCK, stream()](
        v_prev, _flat(v), float(t_prev_ms), float(dt_ms), float(threshold_mv), float(fraction),
        phase, t_up, v_min, v_peak, apd_ms, count,
    )  # fmt: skip


@cuda.jit
def _first_bad_kernel(v, limit, result):
    start, stride = cuda.grid(1), cuda.gridsize(1)
    for k in range(start, v.size, stride):
        if not abs(v[k]) <= limit:  # also true for NaN
            cuda.atomic.min(result, 0, k)


_SCALARS: list = []


def _scalar(value: int):
    """The backend's one int64 device scalar, set to ``value`` on the stream: the checks
    below run every few steps, and a fresh 8-byte allocation each time was a cuMemAlloc and
    a deferred free per check (seen on an H200: most of an induction's log lines)."""
    if not _SCALARS:
        _SCALARS.append(cuda.device_array(1, dtype=np.int64))
    fill(_SCALARS[0], value)  # a kernel on the stream: ordered before the check's kernel
    return _SCALARS[0]


def first_bad_index(v, limit: float) -> int:
    """Smallest flat index where ``v`` is NaN/inf or |v| > ``limit``; −1 if none."""
    flat = _flat(v)
    result = _scalar(flat.size)
    _first_bad_kernel[_blocks(flat.size), THREADS_PER_BLOCK, stream()](flat, float(limit), result)
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
    result = _scalar(0)
    _count_nan_kernel[_blocks(flat.size), THREADS_PER_BLOCK, stream()](flat, result)
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
            kernel[_blocks(n), THREADS_PER_BLOCK, stream()](int(n), *args)

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
            if m == m and (x > m or x != x):  # a NaN, once met, stays
                m = x
        acc[t] = m
        cuda.syncthreads()
        width = THREADS_PER_BLOCK // 2
        while width > 0:
            if t < width:
                x = acc[t + width]
                if acc[t] == acc[t] and (x > acc[t] or x != x):
                    acc[t] = x
            cuda.syncthreads()
            width //= 2
        if t == 0:
            partial[c, b] = acc[0]
        cuda.syncthreads()


def member_max(a, n_members: int) -> np.ndarray:
    """Per batch member, the largest entry of a flat node-major array (host); NaN for a
    member with any NaN (as :func:`cardiotwin.solvers.backends.cpu.member_max`)."""
    flat = _flat(a)
    n = flat.size // n_members
    chunks = min(REDUCTION_CHUNKS, max(n, 1))
    partial = cuda.device_array((chunks, n_members))
    _member_max_partial[chunks, THREADS_PER_BLOCK, stream()](flat, int(n_members), partial)
    return partial.copy_to_host().max(axis=0)
