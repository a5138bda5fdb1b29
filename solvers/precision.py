"""Storage precision of a tissue run: ``"fp64"`` (the default) or ``"mixed"``.

``precision="mixed"`` stores in float32 what float32 carries — the membrane potential, the
gates, the concentrations that move by many float32 steps per time step, the diffusion
matrices' values and the CG vectors — and keeps in float64 the states whose change per time
step is below float32's resolution, which a float32 store would lose (TP06's Na_i and K_i
change by less than half a float32 ulp in most steps at Δt = 0.01 ms, so they would stop
moving). The arithmetic stays float64 everywhere: values are widened when read and rounded
once when stored, and dot products and the CG scalars are float64. On a GPU, where the step
is bound by memory traffic, this nearly halves the bytes per node-step; on the CPU it makes
mixed-precision runs comparable with float64 runs, which is how parity is tested.

Which states need float64 is declared by each model file (``FP64_STATES``) and checked by
``tests/solvers/test_precision.py`` with the rule of :func:`lost_change_share`: over one
paced beat at :data:`MIXED_MIN_DT_MS`, a state whose updates below half a float32 ulp add
up to more than :data:`MAX_LOST_SHARE` of its total movement goes to float64. A model file
without the declaration, or a time step below :data:`MIXED_MIN_DT_MS`, is refused for
``"mixed"`` with a :class:`PrecisionError` that names the state or the limit.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from cardiotwin.solvers.ionic.base import IonicModel, Placement

PRECISIONS = ("fp64", "mixed")
#: the smallest time step at which the models' FP64_STATES were checked (ms): a smaller Δt
#: makes every per-step change smaller and may push more states below float32 resolution
MIXED_MIN_DT_MS = 0.005
#: a state whose sub-half-ulp updates exceed this share of its movement over a beat is kept
#: in float64 (see :func:`lost_change_share`)
MAX_LOST_SHARE = 0.01


class PrecisionError(ValueError):
    """``precision="mixed"`` cannot be used for this model or time step (the message says
    which state and why); a ValueError, so commands report it as a bad option."""


def fp64_states(model: IonicModel) -> tuple[str, ...]:
    """The states of ``model`` kept in float64 under ``precision="mixed"`` (its file's
    ``FP64_STATES``), or a :class:`PrecisionError` when the file does not declare them."""
    module = importlib.import_module(model.module)
    declared = getattr(module, "FP64_STATES", None)
    if declared is None:
        raise PrecisionError(
            f"precision='mixed' is not available for model {model.name!r}: its file "
            f"({model.module}) does not declare FP64_STATES, so it is not known which of its "
            "states change per time step by less than float32 resolves (such a state would "
            "stop moving in float32, as TP06's K_i does). Find them with "
            f"`python benchmarks/precision_check.py --models {model.name} --resolution`, "
            "declare them in the model file, or use precision='fp64'"
        )
    for name in declared:
        model.state_index(name)  # an unknown name is an UnknownNameError listing the states
    if model.state_names[0] in declared:
        raise PrecisionError(
            f"model {model.name!r} declares its membrane potential in FP64_STATES; "
            "precision='mixed' stores V in float32 (the diffusion operates on it), so use "
            "precision='fp64' for this model"
        )
    return tuple(declared)


@dataclass(frozen=True)
class StateLayout:
    """Where each state of a model lives in a tissue run: V in its own (N·B,) buffers of
    ``value_dtype``, the other states as rows of a float32 array (``n32`` rows) and a float64
    array (``n64`` rows). ``placement`` is in the form the cell-kernel compiler takes."""

    precision: str
    placement: Placement
    value_dtype: np.dtype
    state_names: tuple[str, ...] = ()

    @property
    def n32(self) -> int:
        return sum(1 for where, _ in self.placement if where == "y32")

    @property
    def n64(self) -> int:
        return sum(1 for where, _ in self.placement if where == "y64")

    def split(self, state: np.ndarray):
        """Host (n_states, n) float64 state → (v (n,), y32 (n32, n), y64 (n64, n))."""
        state = np.asarray(state, dtype=np.float64)
        n = state.shape[1]
        v = np.array(state[0], dtype=self.value_dtype, order="C", copy=True)
        y32 = np.empty((self.n32, n), dtype=np.float32)
        y64 = np.empty((self.n64, n), dtype=np.float64)
        for i, (where, row) in enumerate(self.placement[1:], start=1):
            (y32 if where == "y32" else y64)[row] = state[i]
        return v, y32, y64

    def join(self, v: np.ndarray, y32: np.ndarray, y64: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`split`: host (n_states, n) float64."""
        state = np.empty((len(self.placement), v.size), dtype=np.float64)
        state[0] = v
        for i, (where, row) in enumerate(self.placement[1:], start=1):
            state[i] = (y32 if where == "y32" else y64)[row]
        return state

    def describe(self) -> str:
        """One line for provenance: which states are float32 and which float64."""
        if self.precision == "fp64":
            return "fp64: every state, V and the diffusion vectors in float64"
        names = self.state_names
        wide = [names[i] for i, (where, _) in enumerate(self.placement) if where == "y64"]
        return (
            "mixed: V, gates, concentrations and diffusion vectors/matrix values in float32 "
            f"(arithmetic in float64); kept in float64: {', '.join(wide) or 'none'}"
        )


def state_layout(model: IonicModel, precision: str, dt_ms: float | None = None) -> StateLayout:
    """The layout of ``model``'s states under ``precision`` (``"fp64"`` or ``"mixed"``).

    ``"mixed"`` needs the model file's ``FP64_STATES`` and Δt ≥ :data:`MIXED_MIN_DT_MS`
    (when ``dt_ms`` is given); otherwise a :class:`PrecisionError` says why.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    names = model.state_names
    if precision == "fp64":
        placement = (("v", 0),) + tuple(("y64", i - 1) for i in range(1, len(names)))
        return StateLayout("fp64", placement, np.dtype(np.float64), names)
    wide = set(fp64_states(model))
    if dt_ms is not None and dt_ms < MIXED_MIN_DT_MS * (1 - 1e-9):
        kept = ", ".join(sorted(wide)) or "none"
        raise PrecisionError(
            f"precision='mixed' with dt = {dt_ms:g} ms: the float32/float64 split of model "
            f"{model.name!r} (float64: {kept}) was checked for dt ≥ {MIXED_MIN_DT_MS:g} ms; "
            "below that the per-step change of its slowest float32 states approaches half a "
            "float32 ulp and would be lost. Use dt ≥ "
            f"{MIXED_MIN_DT_MS:g} ms or precision='fp64'"
        )
    placement, n32, n64 = [("v", 0)], 0, 0
    for name in names[1:]:
        if name in wide:
            placement.append(("y64", n64))
            n64 += 1
        else:
            placement.append(("y32", n32))
            n32 += 1
    return StateLayout("mixed", tuple(placement), np.dtype(np.float32), names)


def lost_change_share(trajectory: np.ndarray) -> np.ndarray:
    """Per state, the share of its total movement (Σ|Δx| over the steps of ``trajectory``,
    (n_states, n_steps + 1) float64) made of updates smaller than half a float32 ulp of the
    state's value: the movement a float32 store would lose (round-to-nearest gives back the
    old value)."""
    x = np.asarray(trajectory, dtype=np.float64)
    change = np.abs(np.diff(x, axis=1))
    ulp = np.spacing(np.abs(x[:, :-1]).astype(np.float32)).astype(np.float64)
    lost = np.where(change < 0.5 * ulp, change, 0.0).sum(axis=1)
    total = change.sum(axis=1)
    return np.divide(lost, total, out=np.zeros_like(total), where=total > 0)
