"""How an ionic model is declared: tables of states and parameters, and one scalar step.

A model file (one per model, see ``aliev_panfilov.py`` for the smallest) holds

- ``STATES``: :class:`State` rows (name, initial value, unit, whether it is a gate),
- ``PARAMETERS``: :class:`Parameter` rows (name, default, unit, description),
- ``CITATION``: the paper the equations come from,
- ``step(y, p, k, s, dt_ms, i_stim)``: one time step of node ``k`` written once, as plain
  ``math``-only Python that the backends compile unchanged (plain Python for the reference
  backend, ``numba.njit`` for the CPU, ``numba.cuda.jit(device=True)`` for CUDA).

``y`` is the state array, shape ``(n_states, n_nodes)``, row order as in ``STATES``; the
first state is always the membrane potential in mV. ``p`` is the parameter table, shape
``(n_parameters, n_sets)``; node ``k`` uses column ``s``. ``i_stim`` is the stimulus current
in µA/µF (= mV/ms at C_m = 1 µF/cm²), positive depolarising. ``step`` updates ``y[:, k]`` in
place: Rush–Larsen for the states marked as gates, forward Euler for the others
(Rush & Larsen 1978, IEEE Trans Biomed Eng 25:389).

Parameter sets let regions (healthy, border zone, fibrosis) and batch members carry their
own remodelling without a parameter array per node (see :class:`ParameterTable`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np


@dataclass(frozen=True)
class State:
    """One state variable: name, initial value, unit, and whether it is a gating variable."""

    name: str
    initial: float
    unit: str
    gate: bool = False
    description: str = ""


@dataclass(frozen=True)
class Parameter:
    """One model parameter: name, default value and unit."""

    name: str
    default: float
    unit: str
    description: str = ""


class UnknownNameError(KeyError):
    """A model, state or parameter name that does not exist (the message lists valid names)."""

    def __str__(self) -> str:  # KeyError quotes its argument; people want the sentence
        return str(self.args[0])


@dataclass(frozen=True, eq=False)  # hashed by identity: compiled kernels are cached per model
class IonicModel:
    """A declared ionic model; see the module docstring for what a model file provides."""

    name: str
    states: tuple[State, ...]
    parameters: tuple[Parameter, ...]
    citation: str
    step: Callable
    module: str
    description: str = ""
    #: Parameter values that make this variant (e.g. TP06 endo vs epi), by name.
    defaults_override: Mapping[str, float] = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return len(self.states)

    @property
    def n_parameters(self) -> int:
        return len(self.parameters)

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    def state_index(self, name: str) -> int:
        try:
            return self.state_names.index(name)
        except ValueError:
            raise UnknownNameError(
                f"model {self.name!r} has no state {name!r}; states: {', '.join(self.state_names)}"
            ) from None

    def parameter_index(self, name: str) -> int:
        try:
            return self.parameter_names.index(name)
        except ValueError:
            raise UnknownNameError(
                f"model {self.name!r} has no parameter {name!r}; "
                f"parameters: {', '.join(self.parameter_names)}"
            ) from None

    def default_parameters(self) -> np.ndarray:
        """Default parameter vector (float64), with this variant's overrides applied."""
        values = np.array([p.default for p in self.parameters], dtype=np.float64)
        for name, value in self.defaults_override.items():
            values[self.parameter_index(name)] = value
        return values

    def initial_state(self, n_nodes: int = 1, overrides: Mapping[str, float] | None = None):
        """State array of shape ``(n_states, n_nodes)`` filled with the initial values."""
        y0 = np.array([s.initial for s in self.states], dtype=np.float64)
        for name, value in (overrides or {}).items():
            y0[self.state_index(name)] = value
        return np.repeat(y0[:, None], n_nodes, axis=1)

    def parameter_table(self) -> ParameterTable:
        return ParameterTable(self)


class ParameterTable:
    """Parameter sets of one model, built by name: ``table.add(GNa=0.38, GCaL=0.31)``.

    Values given to :meth:`add` are *scale factors* on the defaults (remodelling is stated
    that way in the literature, e.g. border zone GNa×0.38); :meth:`add_values` takes
    absolute values. Set 0 is always the unmodified default.
    """

    def __init__(self, model: IonicModel):
        self.model = model
        self._sets: list[np.ndarray] = [model.default_parameters()]

    def add(self, **scales: float) -> int:
        """Append a set with the named parameters scaled; returns its index."""
        values = self.model.default_parameters()
        for name, factor in scales.items():
            values[self.model.parameter_index(name)] *= float(factor)
        return self._append(values)

    def add_values(self, **values: float) -> int:
        """Append a set with the named parameters set to absolute values; returns its index."""
        row = self.model.default_parameters()
        for name, value in values.items():
            row[self.model.parameter_index(name)] = float(value)
        return self._append(row)

    def _append(self, values: np.ndarray) -> int:
        for i, existing in enumerate(self._sets):
            if np.array_equal(existing, values):
                return i
        self._sets.append(values)
        return len(self._sets) - 1

    def __len__(self) -> int:
        return len(self._sets)

    def as_array(self) -> np.ndarray:
        """Shape ``(n_parameters, n_sets)``, C-contiguous float64."""
        return np.ascontiguousarray(np.stack(self._sets, axis=1))


def model_from_module(module: ModuleType, name: str, **extra) -> IonicModel:
    """Build an :class:`IonicModel` from a model file's tables and ``step``."""
    states = tuple(module.STATES)
    if states[0].unit != "mV":
        raise ValueError(f"{module.__name__}: the first state must be the membrane potential (mV)")
    return IonicModel(
        name=name,
        states=states,
        parameters=tuple(module.PARAMETERS),
        citation=module.CITATION,
        step=module.step,
        module=module.__name__,
        **extra,
    )


def load(module_name: str) -> ModuleType:
    return importlib.import_module(f"cardiotwin.solvers.ionic.{module_name}")
