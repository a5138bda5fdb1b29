"""Aliev–Panfilov 1996 two-variable phenomenological model, in mV and ms.

Aliev RR, Panfilov AV (1996) A simple two-variable model of cardiac excitation.
Chaos, Solitons & Fractals 7(3):293–301.

Dimensionless form: du/dτ = −k u (u − a)(u − 1) − u v,
dv/dτ = ε(u, v) (−v − k u (u − a − 1)), ε = ε₀ + μ₁ v / (u + μ₂).
Mapped to physical units by V = V_rest + V_amp·u (mV; −80 + 100u) and t = t_unit·τ
(ms; 12.9 ms per unit), as in ../shared/NVERSION.md §2.
"""

from cardiotwin.solvers.ionic.base import Parameter, State

CITATION = "Aliev RR, Panfilov AV (1996) Chaos Solitons Fractals 7:293-301"

STATES = (
    State("V", -80.0, "mV", description="membrane potential"),
    State("v", 0.0, "1", description="recovery variable"),
)

#: no state needs float64 under precision="mixed" (cardiotwin.solvers.precision): both move
#: by many float32 ulps per step wherever they move
FP64_STATES = ()

PARAMETERS = (
    Parameter("k", 8.0, "1", "excitation rate constant"),
    Parameter("a", 0.15, "1", "excitation threshold"),
    Parameter("eps0", 0.002, "1", "recovery rate far from the excited state"),
    Parameter("mu1", 0.2, "1", "recovery rate coefficient"),
    Parameter("mu2", 0.3, "1", "recovery rate offset"),
    Parameter("t_unit", 12.9, "ms", "milliseconds per dimensionless time unit"),
    Parameter("V_rest", -80.0, "mV", "potential at u = 0"),
    Parameter("V_amp", 100.0, "mV", "potential difference between u = 0 and u = 1"),
)
K, A, EPS0, MU1, MU2, T_UNIT, V_REST, V_AMP = range(8)


def step(y, p, k, s, dt_ms, i_stim):
    u = (y[0, k] - p[V_REST, s]) / p[V_AMP, s]
    v = y[1, k]
    kk = p[K, s]
    a = p[A, s]
    eps = p[EPS0, s] + p[MU1, s] * v / (u + p[MU2, s])
    du = -kk * u * (u - a) * (u - 1.0) - u * v
    dv = eps * (-v - kk * u * (u - a - 1.0))
    y[0, k] += dt_ms * (p[V_AMP, s] * du / p[T_UNIT, s] + i_stim)
    y[1, k] = v + dt_ms * dv / p[T_UNIT, s]
