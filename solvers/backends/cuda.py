"""CUDA backend: the model's ``step`` compiled as a Numba-CUDA device function.

Imported only when CUDA is asked for. Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run
in Numba's CUDA simulator, which is how CI checks their logic without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from numba import cuda

from cardiotwin.solvers.ionic.base import IonicModel

NAME = "cuda"
THREADS_PER_BLOCK = 128


@cache
def make_cell_kernel(model: IonicModel) -> Callable:
    """``kernel(y, p, pset, dt_ms, i_stim)`` on device arrays; same contract as the CPU one."""
    step = cuda.jit(device=True)(model.step)

    @cuda.jit
    def _kernel(y, p, pset, dt_ms, i_stim):
        k = cuda.grid(1)
        if k < y.shape[1]:
            step(y, p, k, pset[k], dt_ms, i_stim[k])

    def kernel(y, p, pset, dt_ms, i_stim):
        n = y.shape[1]
        blocks = (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK
        _kernel[blocks, THREADS_PER_BLOCK](y, p, pset, dt_ms, i_stim)

    return kernel
