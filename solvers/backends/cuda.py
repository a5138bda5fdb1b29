"""CUDA backend: the model's ``step`` compiled as a Numba-CUDA device function.

Imported only when CUDA is asked for. Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run
in Numba's CUDA simulator, which is how CI checks their logic without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from numba import cuda

from cardiotwin.solvers.ionic.base import IonicModel, compile_step, empty_table, takes_table

NAME = "cuda"
THREADS_PER_BLOCK = 128


def _device(f):
    return cuda.jit(device=True)(f)


@cache
def make_cell_kernel(model: IonicModel, use_table: bool = False) -> Callable:
    """``kernel(y, p, pset, dt_ms, i_stim, table=None)`` on device arrays; contract as CPU."""
    step = compile_step(model, _device, use_table)

    if takes_table(model):

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
