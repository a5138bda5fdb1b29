"""CUDA backend: the model's ``step`` compiled as a Numba-CUDA device function.

Imported only when CUDA is asked for. Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run
in Numba's CUDA simulator, which is how CI checks their logic without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from numba import cuda

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
