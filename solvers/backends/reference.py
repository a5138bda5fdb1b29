"""Reference backend: the model's ``step`` run as plain Python, node by node.

Slow on purpose: it is the oracle the compiled backends are tested against, so it adds no
compilation, no parallelism, no lookup tables and no fast-math between the equations and
the numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

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
