"""Mitchell–Schaeffer 2003 two-current model, in mV and ms.

Mitchell CC, Schaeffer DG (2003) A two-current model for the dynamics of cardiac membrane.
Bull Math Biol 65:767–793.

dv/dt = h v² (1 − v)/τ_in − v/τ_out + J_stim; the gate h opens with τ_open while
v < v_gate and closes with τ_close otherwise (a gate: h_inf ∈ {0, 1}, Rush–Larsen).
v ∈ [0, 1] is mapped to V = V_min + (V_max − V_min) v (mV), as openCARP's MitchellSchaeffer.
"""

import math

from cardiotwin.solvers.ionic.base import Parameter, State

CITATION = "Mitchell CC, Schaeffer DG (2003) Bull Math Biol 65:767-793"

STATES = (
    State("V", -80.0, "mV", description="membrane potential"),
    State("h", 1.0, "1", gate=True, description="inward-current gate"),
)

#: no state needs float64 under precision="mixed" (cardiotwin.solvers.precision): both move
#: by many float32 ulps per step wherever they move
FP64_STATES = ()

PARAMETERS = (
    Parameter("tau_in", 0.3, "ms", "inward current time constant"),
    Parameter("tau_out", 6.0, "ms", "outward current time constant"),
    Parameter("tau_open", 120.0, "ms", "gate opening time constant"),
    Parameter("tau_close", 150.0, "ms", "gate closing time constant"),
    Parameter("v_gate", 0.13, "1", "gate switching potential (normalised)"),
    Parameter("V_min", -80.0, "mV", "potential at v = 0"),
    Parameter("V_max", 20.0, "mV", "potential at v = 1"),
)
TAU_IN, TAU_OUT, TAU_OPEN, TAU_CLOSE, V_GATE, V_MIN, V_MAX = range(7)


def step(y, p, k, s, dt_ms, i_stim):
    span = p[V_MAX, s] - p[V_MIN, s]
    v = (y[0, k] - p[V_MIN, s]) / span
    h = y[1, k]
    dv = h * v * v * (1.0 - v) / p[TAU_IN, s] - v / p[TAU_OUT, s]
    y[0, k] += dt_ms * (span * dv + i_stim)
    if v < p[V_GATE, s]:
        y[1, k] = 1.0 - (1.0 - h) * math.exp(-dt_ms / p[TAU_OPEN, s])
    else:
        y[1, k] = h * math.exp(-dt_ms / p[TAU_CLOSE, s])
