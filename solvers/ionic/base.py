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
from types import FunctionType, ModuleType

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


# ---------------------------------------------------------------------------------------
# Compiling a model, and voltage lookup tables
#
# A model file may split its equations into ``step`` and helper functions (for instance
# ``voltage_term(c, V, p, s, dt_ms)``: every quantity that depends only on V, the parameters
# and dt, such as gate steady states and Rush–Larsen factors exp(−dt/τ)). ``step`` asks for
# such a quantity with ``lookup(c, V, p, s, dt_ms, table, row, frac)`` after
# ``row, frac = table_position(V, table)``. Compiling rebinds those names: ``lookup``
# evaluates ``voltage_term`` exactly, or interpolates a precomputed table (as openCARP's
# LIMPET does), and every function of the model file is compiled by the same ``jit``.
# The equations stay written once.
# ---------------------------------------------------------------------------------------

#: voltage grid of the lookup tables (mV); V outside is clamped to the ends of the table
TABLE_V_MIN_MV = -200.0
TABLE_V_MAX_MV = 200.0
TABLE_DV_MV = 0.05
TABLE_ROWS = int(round((TABLE_V_MAX_MV - TABLE_V_MIN_MV) / TABLE_DV_MV)) + 1


def table_position(V, table):
    """Row and fraction of ``V`` (mV) in the lookup-table grid (clamped to the grid)."""
    x = (V - TABLE_V_MIN_MV) * (1.0 / TABLE_DV_MV)
    if x < 0.0:
        x = 0.0
    elif x > TABLE_ROWS - 1.000001:
        x = TABLE_ROWS - 1.000001
    row = int(x)
    return row, x - row


def lookup(c, V, p, s, dt_ms, table, row, frac):
    """Quantity ``c`` at ``V``: the exact ``voltage_term`` (rebound to the table when compiled
    with tables)."""
    return voltage_term(c, V, p, s, dt_ms)  # noqa: F821 - resolved in the model's namespace


def _table_lookup(c, V, p, s, dt_ms, table, row, frac):
    a = table[s, row, c]
    return a + frac * (table[s, row + 1, c] - a)


def compile_step(model: IonicModel, jit: Callable, use_table: bool = False) -> Callable:
    """The model's ``step`` with every function of its file compiled by ``jit``.

    ``jit`` is ``lambda f: f`` (plain Python), ``numba.njit`` or
    ``numba.cuda.jit(device=True)``. With ``use_table`` the voltage terms come from the
    table built by :func:`build_table` instead of being evaluated exactly.
    """
    return compile_step_of_module(model.module, jit, use_table)


def compile_step_of_module(module_name: str, jit: Callable, use_table: bool = False) -> Callable:
    """:func:`compile_step` by model file name (all variants of a file share one step)."""
    return _compiled_namespace(module_name, jit, use_table)["step"]


def _compiled_namespace(module_name: str, jit: Callable, use_table: bool) -> dict:
    """A copy of the model file's namespace whose functions are all compiled by ``jit``."""
    module = importlib.import_module(module_name)
    namespace = dict(vars(module))
    own = {
        name: f
        for name, f in vars(module).items()
        if isinstance(f, FunctionType) and f.__module__ == module.__name__
    }
    own["table_position"] = table_position
    own["lookup"] = _table_lookup if use_table else lookup
    namespace.update(TABLE_V_MIN_MV=TABLE_V_MIN_MV, TABLE_DV_MV=TABLE_DV_MV, TABLE_ROWS=TABLE_ROWS)
    for name, f in own.items():
        rebound = FunctionType(f.__code__, namespace, name, f.__defaults__, f.__closure__)
        namespace[name] = jit(rebound)
    return namespace


def n_table_columns(model: IonicModel) -> int:
    return len(getattr(importlib.import_module(model.module), "TABULATED", ()))


def build_table(model: IonicModel, parameters: np.ndarray, dt_ms: float) -> np.ndarray:
    """Lookup table of the model's voltage terms, shape (n_sets, TABLE_ROWS, n_columns).

    A model without ``TABULATED`` columns gets a (n_sets, 2, 1) placeholder, so kernels
    have one signature. Rebuild it when ``dt_ms`` or the parameter sets change.
    """
    parameters = np.ascontiguousarray(parameters, dtype=np.float64)
    n_sets = parameters.shape[1]
    n_columns = n_table_columns(model)
    if n_columns == 0:
        return np.zeros((n_sets, 2, 1))
    volts = TABLE_V_MIN_MV + TABLE_DV_MV * np.arange(TABLE_ROWS)
    table = np.empty((n_sets, TABLE_ROWS, n_columns))
    _table_filler(model.module)(table, volts, parameters, float(dt_ms))
    return table


def empty_table(n_sets: int = 1) -> np.ndarray:
    """The placeholder table passed when tables are not used."""
    return np.zeros((n_sets, 2, 1))


_FILLERS: dict[str, Callable] = {}


def _table_filler(module_name: str) -> Callable:
    """Compiled ``fill(table, volts, parameters, dt_ms)`` for one model file (cached)."""
    import numba

    if module_name not in _FILLERS:
        term = _compiled_namespace(module_name, numba.njit, False)["voltage_term"]

        @numba.njit
        def fill(table, volts, parameters, dt_ms):
            for s in range(table.shape[0]):
                for r in range(table.shape[1]):
                    for c in range(table.shape[2]):
                        table[s, r, c] = term(c, volts[r], parameters, s, dt_ms)

        _FILLERS[module_name] = fill
    return _FILLERS[module_name]


def takes_table(model: IonicModel) -> bool:
    """Whether the model's ``step`` has the ``table`` argument (7 arguments)."""
    return model.step.__code__.co_argcount == 7
