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


def beat_activation_at(
    k, v_prev, v, t_prev_ms, dt_ms, threshold_mv, rearm_mv, armed, recording, n_members,
    n_keep, times_ms, count, last_ms,
):  # fmt: skip
    """Per-beat activation times with hysteresis: an upward crossing of ``threshold_mv``
    (interpolated in time, as :func:`activation_at`) counts only when node ``k`` is
    ``armed``, i.e. V has fallen below ``rearm_mv`` since its last counted beat (a stimulus
    or an electrotonic bump during a plateau near the threshold is not a new beat). The
    time goes into the node's ring of the last ``n_keep`` (``times_ms[k·n_keep + count mod
    n_keep]``), is counted and kept as ``last_ms[k]``, unless the node's batch member
    (``k mod n_members``) has stopped ``recording``. Then ``v_prev[k] = v[k]``."""
    a = v_prev[k]
    b = v[k]
    v_prev[k] = b
    if b < rearm_mv:
        armed[k] = 1
    if recording[k % n_members] == 0:
        return
    if armed[k] == 1 and a < threshold_mv and b >= threshold_mv:
        t = t_prev_ms + dt_ms * (threshold_mv - a) / (b - a)
        times_ms[k * n_keep + count[k] % n_keep] = t
        count[k] += 1
        last_ms[k] = t
        armed[k] = 0


def gather_at(k, source, index, out):
    """``out[k] = source[index[k]]`` (pick a few entries on the device before a copy)."""
    out[k] = source[index[k]]


def fixed_arity_kernel(rule, loop: str, namespace: dict):
    """Source-generate ``_kernel(n, a0, …, a_m)`` that calls ``rule(k, a0, …, a_m)`` for each
    ``k`` of ``loop`` (the backend's loop header over ``k`` up to ``n``, e.g.
    ``"    for k in numba.prange(n):"``), in ``namespace`` (which holds the compiled ``rule``).
    Numba compiles neither ``*args`` calls of inlined functions nor CUDA kernels with
    ``*args`` in every version, so each backend's one generic launcher is written out for
    the rule's number of arguments."""
    names = ", ".join(f"a{i}" for i in range(rule.__code__.co_argcount - 1))
    exec(f"def _kernel(n, {names}):\n{loop}\n        rule(k, {names})\n", namespace)
    return namespace["_kernel"]
