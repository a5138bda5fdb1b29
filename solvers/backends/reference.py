"""Reference backend: the model's ``step`` run as plain Python, node by node.

Slow on purpose: it is the oracle the compiled backends are tested against, so it adds no
compilation, no parallelism and no fast-math between the equations and the numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cardiotwin.solvers.ionic.base import IonicModel

NAME = "reference"


def make_cell_kernel(model: IonicModel) -> Callable:
    """``kernel(y, p, pset, dt_ms, i_stim)``: advance every node of ``y`` by one step.

    ``y`` (n_states, n) float64, ``p`` (n_parameters, n_sets), ``pset`` (n,) int32,
    ``i_stim`` (n,) µA/µF.
    """
    step = model.step

    def kernel(y: np.ndarray, p: np.ndarray, pset: np.ndarray, dt_ms: float, i_stim):
        for k in range(y.shape[1]):
            step(y, p, k, int(pset[k]), dt_ms, float(i_stim[k]))

    return kernel
