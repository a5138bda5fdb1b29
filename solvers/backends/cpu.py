"""CPU backend: the model's ``step`` compiled by Numba, nodes in parallel (``prange``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numba
import numpy as np

from cardiotwin.solvers.ionic.base import IonicModel, compile_step, empty_table, takes_table

NAME = "cpu"


def _njit(f):
    return numba.njit(f, error_model="numpy")


@cache
def make_cell_kernel(model: IonicModel, use_table: bool = False) -> Callable:
    """Compiled ``kernel(y, p, pset, dt_ms, i_stim, table=None)``; contract as the reference.

    With ``use_table`` the voltage terms are interpolated from ``table`` (build it with
    :func:`~cardiotwin.solvers.ionic.base.build_table` for the same ``p`` and ``dt_ms``).
    """
    step = compile_step(model, _njit, use_table)

    if takes_table(model):

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


def set_threads(n_threads: int | None) -> int:
    """Limit Numba's worker threads (``None``: all); returns the number in use."""
    if n_threads is not None:
        numba.set_num_threads(int(n_threads))
    return numba.get_num_threads()


def as_state(y: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(y, dtype=np.float64)
