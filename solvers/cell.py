"""Single-cell pacing and action-potential measurements (the ``verify cell`` protocol).

Protocol (../shared/NVERSION.md §2): pace one cell at a fixed cycle length with a square
stimulus of 0.5 ms at twice the diastolic threshold, and measure the last beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numba
import numpy as np

from cardiotwin.solvers.ionic.base import (
    IonicModel,
    compile_split_step,
    compile_step_of_module,
    empty_table,
    takes_table,
)
from cardiotwin.solvers.precision import state_layout

#: a beat counts as an action potential when V crosses this level (mV)
EXCITATION_LEVEL_MV = 0.0


@dataclass(frozen=True)
class CellRun:
    """The recorded last beat and the state after it."""

    time_ms: np.ndarray  # (n,) time since the last beat's stimulus onset, ms
    voltage_mv: np.ndarray  # (n,) membrane potential, mV (sample 0 is before the stimulus)
    final_state: np.ndarray  # (n_states,) state at the end of the run
    stimulus_amplitude: float  # µA/µF
    dt_ms: float


def _pace_loop(step, y, p, dt_ms, n_steps, bcl_steps, stim_steps, amplitude, record_from, out):
    """Advance one cell ``n_steps``; record V before each step from ``record_from`` on."""
    for n in range(n_steps):
        i_stim = amplitude if (n % bcl_steps) < stim_steps else 0.0
        if n >= record_from:
            out[n - record_from] = y[0, 0]
        step(y, p, 0, 0, dt_ms, i_stim)
    out[n_steps - record_from] = y[0, 0]


def _split_pace_loop(step, v, y32, y64, p, dt_ms, n_steps, bcl_steps, stim_steps, amplitude,
                     record_from, out):  # fmt: skip
    """:func:`_pace_loop` for the split state of ``precision="mixed"`` (V in ``v[0]``)."""
    for n in range(n_steps):
        i_stim = amplitude if (n % bcl_steps) < stim_steps else 0.0
        if n >= record_from:
            out[n - record_from] = v[0]
        step(v, v, y32, y64, p, 0, 0, dt_ms, i_stim)
    out[n_steps - record_from] = v[0]


def _cell_step(model: IonicModel, jit):
    """The model's step for one node, exact (no lookup tables), with a 6-argument signature."""
    step = compile_step_of_module(model.module, jit, use_table=False)
    if not takes_table(model):
        return step
    table = empty_table(1)

    def step6(y, p, k, s, dt_ms, i_stim):
        step(y, p, k, s, dt_ms, i_stim, table)

    return jit(step6)


def _compiled_pace_loop(model: IonicModel):
    # one compilation per model file: the variants of a file differ only in parameters
    key = model.module
    if key not in _PACE_LOOPS:
        _PACE_LOOPS[key] = _build_pace_loop(model)
    return _PACE_LOOPS[key]


_PACE_LOOPS: dict[str, object] = {}


def _build_pace_loop(model: IonicModel):
    jit = partial(numba.njit, error_model="numpy")
    step = _cell_step(model, jit)
    loop = jit(_pace_loop)

    def run(*args):
        return loop(step, *args)

    return run


def _runner(model: IonicModel, backend: str, precision: str = "fp64"):
    if precision != "fp64":
        if backend != "cpu":
            raise ValueError(f"precision={precision!r} single-cell runs use backend 'cpu'")
        return _mixed_pace_loop(model, precision)
    if backend == "reference":
        step = _cell_step(model, lambda f: f)
        return lambda *args: _pace_loop(step, *args)
    if backend == "cpu":
        return _compiled_pace_loop(model)
    raise ValueError(f"single-cell pacing runs on 'cpu' or 'reference', not {backend!r}")


def _mixed_pace_loop(model: IonicModel, precision: str):
    """``run(y, p, ...)`` with the contract of :func:`_pace_loop`, the state kept in the
    layout of ``precision`` (float32 where it declares float32) while it runs."""
    layout = state_layout(model, precision)
    key = (model.module, layout.placement)
    if key not in _PACE_LOOPS:
        jit = partial(numba.njit, error_model="numpy")
        step = compile_split_step(model.module, jit, False, layout.placement)
        if takes_table(model):
            inner, table = step, empty_table(1)

            def step9(v_in, v_out, y32, y64, p, k, s, dt_ms, i_stim):
                inner(v_in, v_out, y32, y64, p, k, s, dt_ms, i_stim, table)

            step = jit(step9)
        loop = jit(_split_pace_loop)
        _PACE_LOOPS[key] = lambda *args: loop(step, *args)
    compiled = _PACE_LOOPS[key]

    def run(y, p, *args):
        v, y32, y64 = layout.split(y)
        compiled(v, y32, y64, p, *args)
        y[...] = layout.join(v, y32, y64)

    return run


def _steps(duration_ms: float, dt_ms: float, what: str) -> int:
    n = round(duration_ms / dt_ms)
    if n < 1 or abs(n * dt_ms - duration_ms) > 1e-9 * max(1.0, duration_ms):
        raise ValueError(
            f"{what} {duration_ms} ms is not a whole number of time steps of {dt_ms} ms"
        )
    return n


def pace_cell(
    model: IonicModel,
    *,
    beats: int = 1,
    bcl_ms: float = 1000.0,
    dt_ms: float = 0.01,
    stim_duration_ms: float = 0.5,
    stim_amplitude: float | None = None,
    parameters: np.ndarray | None = None,
    initial_state: np.ndarray | None = None,
    backend: str = "cpu",
    precision: str = "fp64",
) -> CellRun:
    """Pace one cell for ``beats`` cycles of ``bcl_ms``; record the last beat at every step.

    ``stim_amplitude`` (µA/µF) defaults to twice the threshold found by
    :func:`stimulus_threshold` (in float64). ``parameters``: a vector of the model's
    parameters (default: the model defaults). ``initial_state``: (n_states,) start state
    (default: the model's). ``precision``: ``"mixed"`` keeps the states as a tissue run with
    ``precision="mixed"`` does (:mod:`cardiotwin.solvers.precision`; exact rates).
    """
    if dt_ms <= 0:
        raise ValueError(f"time step must be positive, got dt = {dt_ms} ms")
    if beats < 1:
        raise ValueError(f"beats must be at least 1, got {beats}")
    p, y = _cell_inputs(model, parameters, initial_state)
    if stim_amplitude is None:
        stim_amplitude = 2.0 * stimulus_threshold(
            model,
            stim_duration_ms=stim_duration_ms,
            dt_ms=dt_ms,
            parameters=p[:, 0],
            initial_state=y[:, 0],
            backend=backend,
        )
    bcl_steps = _steps(bcl_ms, dt_ms, "cycle length")
    stim_steps = _steps(stim_duration_ms, dt_ms, "stimulus duration")
    n_steps = beats * bcl_steps
    record_from = n_steps - bcl_steps
    out = np.empty(bcl_steps + 1)
    _runner(model, backend, precision)(
        y, p, dt_ms, n_steps, bcl_steps, stim_steps, float(stim_amplitude), record_from, out
    )
    return CellRun(
        time_ms=np.arange(bcl_steps + 1) * dt_ms,
        voltage_mv=out,
        final_state=y[:, 0].copy(),
        stimulus_amplitude=float(stim_amplitude),
        dt_ms=dt_ms,
    )


def _cell_inputs(model: IonicModel, parameters, initial_state) -> tuple[np.ndarray, np.ndarray]:
    """(n_parameters, 1) parameters and (n_states, 1) state of one cell, checked: the kernels
    index them without bounds checks, so a short vector reads past its end."""
    p = model.default_parameters() if parameters is None else np.asarray(parameters, float)
    if p.shape != (model.n_parameters,):
        raise ValueError(
            f"{model.name}: parameters must be a vector of its {model.n_parameters} parameters "
            f"(model.parameter_names), got shape {p.shape}"
        )
    y = model.initial_state(1)
    if initial_state is not None:
        state = np.asarray(initial_state, float)
        if state.shape != (model.n_states,):
            raise ValueError(
                f"{model.name}: initial_state must be a vector of its {model.n_states} states, "
                f"got shape {state.shape}"
            )
        y[:, 0] = state
    return np.ascontiguousarray(p.reshape(-1, 1)), y


def stimulus_threshold(
    model: IonicModel,
    *,
    stim_duration_ms: float = 0.5,
    dt_ms: float = 0.01,
    parameters: np.ndarray | None = None,
    initial_state: np.ndarray | None = None,
    backend: str = "cpu",
    window_ms: float = 60.0,
    rel_tol: float = 0.01,
) -> float:
    """Smallest square-pulse amplitude (µA/µF) that makes V cross 0 mV within ``window_ms``.

    Found by bisection to ``rel_tol``, from ``initial_state`` (default: the model's).
    """
    p, y0 = _cell_inputs(model, parameters, initial_state)
    run = _runner(model, backend)
    window_steps = _steps(window_ms, dt_ms, "threshold window")
    stim_steps = _steps(stim_duration_ms, dt_ms, "stimulus duration")

    def excites(amplitude: float) -> bool:
        y = y0.copy()
        out = np.empty(window_steps + 1)
        run(y, p, dt_ms, window_steps, window_steps + 1, stim_steps, amplitude, 0, out)
        return bool(np.nanmax(out) > EXCITATION_LEVEL_MV)

    low, high = 0.0, 1.0
    while not excites(high):
        low, high = high, 2.0 * high
        if high > 1e4:
            raise RuntimeError(
                f"{model.name}: no excitation below 1e4 µA/µF for {stim_duration_ms} ms"
            )
    while high - low > rel_tol * high:
        mid = 0.5 * (low + high)
        low, high = (low, mid) if excites(mid) else (mid, high)
    return high


def action_potential_metrics(run: CellRun) -> dict[str, float]:
    """Resting and peak potential, maximal upstroke velocity and APD90 of the recorded beat.

    - ``v_rest_mv``: V just before the stimulus;
    - ``v_peak_mv``: maximum V;
    - ``dvdt_max_v_per_s``: maximum of the step-to-step dV/dt (mV/ms = V/s);
    - ``apd90_ms``: from the time of maximal dV/dt to the first time after the peak at which V
      falls below V_rest + 10 % of the amplitude (linear interpolation between samples).
    """
    v = run.voltage_mv
    t = run.time_ms
    if not np.all(np.isfinite(v)):
        raise FloatingPointError("the recorded beat contains NaN or inf")
    v_rest = float(v[0])
    dvdt = np.diff(v) / run.dt_ms
    i_up = int(np.argmax(dvdt))
    t_up = 0.5 * (t[i_up] + t[i_up + 1])
    i_peak = int(np.argmax(v))
    v_peak = float(v[i_peak])
    level = v_rest + 0.1 * (v_peak - v_rest)
    below = np.nonzero(v[i_peak:] < level)[0]
    if v_peak < EXCITATION_LEVEL_MV or below.size == 0:
        apd90 = float("nan")
    else:
        j = i_peak + int(below[0])
        frac = (v[j - 1] - level) / (v[j - 1] - v[j])
        apd90 = float(t[j - 1] + frac * run.dt_ms - t_up)
    return {
        "v_rest_mv": v_rest,
        "v_peak_mv": v_peak,
        "dvdt_max_v_per_s": float(dvdt[i_up]),
        "apd90_ms": apd90,
    }
