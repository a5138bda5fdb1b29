"""Per-node tracker rules, written once and compiled by each backend.

Plain scalar Python on flat arrays at index ``k``: the CPU backend wraps them in
``numba.njit`` (called from a ``prange`` loop), the CUDA backend in ``cuda.jit(device=True)``
(called from a grid-stride kernel), the reference backend may call them as they are. Times in
ms, voltages in mV.
"""

import math


def activation_at(k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, first_ms, last_ms, count):
    """Record an upward crossing of ``threshold_mv`` between ``v_prev[k]`` (at ``t_prev_ms``)
    and ``v[k]`` (one step later), linearly interpolated in time; then ``v_prev[k] = v[k]``."""
    a = v_prev[k]
    b = v[k]
    if a < threshold_mv and b >= threshold_mv:
        t = t_prev_ms + dt_ms * (threshold_mv - a) / (b - a)
        if math.isnan(first_ms[k]):
            first_ms[k] = t
        last_ms[k] = t
        count[k] += 1
    v_prev[k] = b


def apd_at(
    k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, fraction, phase, t_up, v_min, v_peak,
    apd_ms, count,
):  # fmt: skip
    """Action potential duration at ``fraction`` repolarisation (0.9: APD90) at node ``k``:
    from the upward ``threshold_mv`` crossing to the downward crossing of
    ``v_min + (1 − fraction)(v_peak − v_min)``; ``phase`` 0 waits for an upstroke, 1 for
    repolarisation. Then ``v_prev[k] = v[k]``."""
    a = v_prev[k]
    b = v[k]
    if phase[k] == 0:
        if b < v_min[k]:
            v_min[k] = b
        if a < threshold_mv and b >= threshold_mv:
            phase[k] = 1
            t_up[k] = t_prev_ms + dt_ms * (threshold_mv - a) / (b - a)
            v_peak[k] = b
    else:
        if b > v_peak[k]:
            v_peak[k] = b
        level = v_min[k] + (1.0 - fraction) * (v_peak[k] - v_min[k])
        if a >= level and b < level:
            t_down = t_prev_ms + dt_ms * (a - level) / (a - b)
            apd_ms[k] = t_down - t_up[k]
            count[k] += 1
            phase[k] = 0
            v_min[k] = b
    v_prev[k] = b
