"""CPU backend: the model's ``step`` compiled by Numba, nodes in parallel (``prange``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numba
import numpy as np

from cardiotwin.solvers.ionic.base import IonicModel

NAME = "cpu"


@cache
def make_cell_kernel(model: IonicModel) -> Callable:
    """Compiled ``kernel(y, p, pset, dt_ms, i_stim)``; same contract as the reference one."""
    step = numba.njit(model.step, fastmath=False, error_model="numpy")

    @numba.njit(parallel=True, error_model="numpy")
    def kernel(y, p, pset, dt_ms, i_stim):
        for k in numba.prange(y.shape[1]):
            step(y, p, k, pset[k], dt_ms, i_stim[k])

    return kernel


def set_threads(n_threads: int | None) -> int:
    """Limit Numba's worker threads (``None``: all); returns the number in use."""
    if n_threads is not None:
        numba.set_num_threads(int(n_threads))
    return numba.get_num_threads()


def as_state(y: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(y, dtype=np.float64)
