"""Shared inputs for the backend-parity tests: a few nodes, several parameter sets.

Node 0 and 1 are stimulated (node 1 with a remodelled parameter set), node 2 rests,
node 3 starts half-depolarised, so upstroke, rest and recovery code paths all run.
"""

import numpy as np

STIMULUS_UA_PER_UF = 60.0


def initial_case(model):
    table = model.parameter_table()
    first = model.parameter_names[0]
    remodelled = table.add(**{first: 0.5})
    y = model.initial_state(4)
    y[0, 3] = 0.5 * (y[0, 3] + 0.0)  # halfway to 0 mV: a node in the middle of the range
    pset = np.array([0, remodelled, 0, remodelled], dtype=np.int32)
    stim = np.array([STIMULUS_UA_PER_UF, STIMULUS_UA_PER_UF, 0.0, 0.0])
    return y, table.as_array(), pset, stim


def run_steps(kernel, model, n_steps, dt_ms):
    """Advance the case ``n_steps`` with ``kernel``; stimulus during the first 1 ms."""
    y, p, pset, stim = initial_case(model)
    off = np.zeros_like(stim)
    for n in range(n_steps):
        kernel(y, p, pset, dt_ms, stim if n * dt_ms < 1.0 else off)
    return y
