"""How an ionic model is declared: tables of states and parameters, and one scalar step.

A model file (one per model, see ``aliev_panfilov.py`` for the smallest) holds

- ``STATES``: :class:`State` rows (name, initial value, unit, whether it is a gate),
- ``PARAMETERS``: :class:`Parameter` rows (name, default, unit, description),
- ``CITATION``: the paper the equations come from,
- ``SLOW_STATES`` (optional): states that take many minutes of pacing to settle (the
  intracellular Na⁺ and K⁺ of a model with ion homeostasis); single-cell pre-pacing holds
  them at their initial values (``pipeline.tissue.prepaced_states``),
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

import ast
import importlib
import inspect
import textwrap
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
    #: the model file's ``SLOW_STATES``: names of states that settle over minutes of pacing
    slow_states: tuple[str, ...] = ()

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
    slow = tuple(getattr(module, "SLOW_STATES", ()))
    unknown = sorted(set(slow) - {s.name for s in states})
    if unknown:
        raise ValueError(f"{module.__name__}: SLOW_STATES names no state {unknown}")
    return IonicModel(
        name=name,
        states=states,
        parameters=tuple(module.PARAMETERS),
        citation=module.CITATION,
        step=module.step,
        module=module.__name__,
        slow_states=slow,
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
    """Row and fraction of ``V`` (mV) in the lookup-table grid (clamped to the grid; NaN
    reads row 0, so a diverged node reads inside the table and its NaN V propagates)."""
    x = (V - TABLE_V_MIN_MV) * (1.0 / TABLE_DV_MV)
    if not x >= 0.0:
        x = 0.0
    elif x > TABLE_ROWS - 1.000001:
        x = TABLE_ROWS - 1.000001
    row = int(x)
    return row, x - row


def _table_position_unsigned(V, table):
    """:func:`table_position` with an unsigned row, for compiled backends: Numba tests every
    signed index for wrap-around (``a[-1]``), an unsigned one it does not."""
    x = (V - TABLE_V_MIN_MV) * (1.0 / TABLE_DV_MV)
    if not x >= 0.0:
        x = 0.0
    elif x > TABLE_ROWS - 1.000001:
        x = TABLE_ROWS - 1.000001
    row = uint64(x)  # noqa: F821 - numba.uint64, bound when compiled
    return row, x - row


def lookup(c, V, p, s, dt_ms, table, row, frac):
    """Quantity ``c`` at ``V``: the exact ``voltage_term`` (rebound to the table when compiled
    with tables)."""
    return voltage_term(c, V, p, s, dt_ms)  # noqa: F821 - resolved in the model's namespace


def _table_lookup(c, V, p, s, dt_ms, table, row, frac):
    a = table[s, row, c]
    return a + frac * (table[s, row + 1, c] - a)


def _table_lookup_unsigned(c, V, p, s, dt_ms, table, row, frac):
    a = table[s, row, c]
    return a + frac * (table[s, row + uint64(1), c] - a)  # noqa: F821 - see above


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


def _compiled_namespace(
    module_name: str,
    jit: Callable,
    use_table: bool,
    unsigned_rows: bool = False,
    parameter_tuple: bool = False,
    math_module=None,
    varying_parameters: frozenset[int] | None = None,
) -> dict:
    """A copy of the model file's namespace whose functions are all compiled by ``jit``
    (``unsigned_rows``: table rows as numba.uint64, for the compiled backends;
    ``parameter_tuple``, ``math_module``, ``varying_parameters``: see
    :func:`compile_split_step`)."""
    module = importlib.import_module(module_name)
    namespace = dict(vars(module))
    if math_module is not None:
        namespace["math"] = math_module
    own = {
        name: f
        for name, f in vars(module).items()
        if isinstance(f, FunctionType) and f.__module__ == module.__name__
    }
    # the model's own functions that index p, rewritten from source (not with
    # varying_parameters: then the step calls none, see compile_split_step)
    if parameter_tuple and varying_parameters is None:
        for name, f in list(own.items()):
            if "p" in f.__code__.co_varnames[: f.__code__.co_argcount]:
                tree = _function_ast(f)
                _ParameterTupleRewriter(module_name).visit(tree)
                exec(_compile_tree(tree, f), namespace)
                own[name] = namespace[name]
    if unsigned_rows:
        import numba

        namespace["uint64"] = numba.uint64
        own["table_position"] = _table_position_unsigned
        own["lookup"] = _table_lookup_unsigned if use_table else lookup
    else:
        own["table_position"] = table_position
        own["lookup"] = _table_lookup if use_table else lookup
    namespace.update(TABLE_V_MIN_MV=TABLE_V_MIN_MV, TABLE_DV_MV=TABLE_DV_MV, TABLE_ROWS=TABLE_ROWS)
    for name, f in own.items():
        rebound = FunctionType(f.__code__, namespace, name, f.__defaults__, f.__closure__)
        namespace[name] = jit(rebound)
    return namespace


# ---------------------------------------------------------------------------------------
# Split state: V apart, the other states in a float32 and a float64 array
#
# The tissue backends keep the membrane potential out of the state array: the cell kernel
# reads V from one buffer and writes it to another, and the diffusion step then reads that
# one and writes the first ("ping-pong": no copy per step). Under precision="mixed" the
# states that float32 carries live in a float32 array, the others in a float64 array
# (``cardiotwin.solvers.precision``). The model's ``step`` stays written once against
# ``y[STATE, k]``: compiling rewrites each such access (a transform of its syntax tree) to
# ``v_in[k]`` (read) / ``v_out[k]`` (write), ``y32[row, k]`` or ``y64[row, k]``. Values read
# from float32 storage are widened with ``float(...)``, so the arithmetic is float64
# whatever the storage; with every state in float64 the numbers are those of ``step``.
# ---------------------------------------------------------------------------------------

#: where a state lives in the split layout: ("v", 0), ("y32", row) or ("y64", row)
Placement = tuple[tuple[str, int], ...]

SPLIT_STEP_ARGUMENTS = ("v_in", "v_out", "y32", "y64")


class StepSourceError(ValueError):
    """A model's ``step`` cannot be compiled for the split state layout (the message says
    which line does what the rewrite does not understand)."""


def compile_split_step(
    module_name: str,
    jit: Callable,
    use_table: bool,
    placement: Placement,
    unsigned_rows: bool = False,
    parameter_tuple: bool = False,
    row_arguments: bool = False,
    math_module=None,
    varying_parameters: frozenset[int] | None = None,
) -> Callable:
    """The model file's ``step`` rewritten for the split layout and compiled by ``jit``.

    The result is ``step(v_in, v_out, y32, y64, p, k, s, dt_ms, i_stim[, table])``; the
    membrane potential (state 0) comes from ``v_in[k]`` and goes to ``v_out[k]`` (they may be
    the same array), state i ≥ 1 lives at ``placement[i]``. Raises :class:`StepSourceError`
    when ``step`` touches ``y`` other than as ``y[STATE, k]`` with a constant ``STATE``, or
    reads V after writing it. ``unsigned_rows``: see :func:`_table_position_unsigned`.

    ``parameter_tuple``: every node uses parameter set 0, given as a tuple ``p`` of the
    parameter values instead of the (n_parameters, n_sets) array: each ``p[NAME, s]`` of the
    model file becomes ``p[NAME]``. A tuple is a value, not memory the state stores might
    overwrite, so the compiler computes the parameter-only terms (F/RT, √(K_o/5.4), volume
    ratios, …) once per kernel call instead of once per node; the arithmetic is unchanged.

    ``varying_parameters`` (with ``parameter_tuple``): the nodes use several parameter sets
    that differ only in these parameters (indices into the model's parameter table). The
    step then takes ``p, p_sets`` where it took ``p``: ``p`` a tuple of every parameter's
    value in set 0, read for the parameters that are the same in every set (``p[NAME, s]`` →
    ``p[NAME]``), and ``p_sets`` the (n_parameters, n_sets) array, read per node only for the
    varying ones (``p_sets[NAME, s]``). A compiled loop over nodes then gathers a handful of
    values per node instead of every parameter (TP06: 50), and computes the rest once per
    call. Only for a step that calls none of the model's functions that read ``p``: one
    compiled with tables (``use_table``), or a model without voltage terms.

    ``row_arguments``: each row of ``y32`` and ``y64`` is an argument of its own, a 1-D array
    (the result is ``step(v_in, v_out, y32_0, …, y64_0, …, p, k, …)``, names from
    :func:`split_row_arguments`). Rows of one 2-D array may overlap as far as the compiler
    can tell, so a loop over nodes that stores one row and reads another needs a run-time
    overlap test per pair, which LLVM gives up on beyond a few; separate arrays it may treat
    as disjoint, and the loop vectorises.

    ``math_module``: the module the model file's ``math.`` names resolve to (for instance
    :data:`cardiotwin.solvers.backends.vector_math.MATH`); by default Python's ``math``.
    """
    module = importlib.import_module(module_name)
    namespace = _compiled_namespace(
        module_name, jit, use_table, unsigned_rows, parameter_tuple, math_module, varying_parameters
    )
    tree = _split_step_function(module, placement, row_arguments)
    if parameter_tuple:
        _ParameterTupleRewriter(module_name, varying_parameters).visit(tree)
    if parameter_tuple and varying_parameters is not None:
        arguments = tree.body[0].args.args
        where = next(i for i, a in enumerate(arguments) if a.arg == "p")
        arguments.insert(where + 1, ast.arg("p_sets"))
    exec(_compile_tree(tree, module.step), namespace)  # defines "split_step"
    return jit(namespace["split_step"])


def _function_ast(f: FunctionType) -> ast.Module:
    """The syntax tree of ``f``'s source, with the line numbers of its file."""
    lines, first_line = inspect.getsourcelines(f)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, first_line - 1)
    return tree


def _compile_tree(tree: ast.Module, original: FunctionType):
    filename = inspect.getsourcefile(original) or original.__module__
    return compile(ast.fix_missing_locations(tree), filename=filename, mode="exec")


class _ParameterTupleRewriter(ast.NodeTransformer):
    """``p[NAME, s]`` → ``p[NAME]``; with ``varying``, ``p_sets[NAME, s]`` for a parameter in
    it or whose index is not a module constant (see ``parameter_tuple`` and
    ``varying_parameters`` in :func:`compile_split_step`)."""

    def __init__(self, module_name: str, varying: frozenset[int] | None = None):
        self.module_name = module_name
        self.varying = varying
        module = importlib.import_module(module_name)
        self.constants = {n: v for n, v in vars(module).items() if type(v) is int}

    def _is_uniform(self, name: ast.expr) -> bool:
        if isinstance(name, ast.Constant) and type(name.value) is int:
            return name.value not in self.varying
        if isinstance(name, ast.Name) and name.id in self.constants:
            return self.constants[name.id] not in self.varying
        return False  # an index computed at run time: read it per node

    def visit_Subscript(self, node: ast.Subscript):
        if isinstance(node.value, ast.Name) and node.value.id == "p":
            index = node.slice
            if not (
                isinstance(index, ast.Tuple)
                and len(index.elts) == 2
                and isinstance(index.elts[1], ast.Name)
                and index.elts[1].id == "s"
            ):
                raise StepSourceError(
                    f"{self.module_name}, line {node.lineno}: parameters must be read as p[NAME, s]"
                )
            if self.varying is None or self._is_uniform(index.elts[0]):
                return ast.copy_location(ast.Subscript(node.value, index.elts[0], node.ctx), node)
            p_sets = ast.Name("p_sets", ast.Load())
            return ast.copy_location(ast.Subscript(p_sets, index, node.ctx), node)
        return self.generic_visit(node)


def _split_step_function(
    module: ModuleType, placement: Placement, row_arguments: bool = False
) -> ast.Module:
    tree = _function_ast(module.step)
    function = tree.body[0]
    if not isinstance(function, ast.FunctionDef) or function.args.args[0].arg != "y":
        raise StepSourceError(f"{module.__name__}.step must be def step(y, p, k, s, ...)")
    constants = {n: v for n, v in vars(module).items() if type(v) is int}
    _SplitRewriter(module.__name__, placement, constants, row_arguments).visit(function)
    _check_v_read_before_written(module.__name__, function)
    function.name = "split_step"
    function.decorator_list = []
    names = split_row_arguments(placement) if row_arguments else SPLIT_STEP_ARGUMENTS
    function.args.args = [ast.arg(name) for name in names] + function.args.args[1:]
    return tree


def split_row_arguments(placement: Placement) -> tuple[str, ...]:
    """The state arguments of a step compiled with ``row_arguments``: ``v_in``, ``v_out``,
    then ``y32_<row>`` and ``y64_<row>`` for each row of the split layout."""
    n32 = sum(1 for where, _ in placement if where == "y32")
    n64 = sum(1 for where, _ in placement if where == "y64")
    return ("v_in", "v_out", *(f"y32_{i}" for i in range(n32)), *(f"y64_{i}" for i in range(n64)))


def _is_state_access(node) -> bool:
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and (node.value.id == "y")
    )


class _SplitRewriter(ast.NodeTransformer):
    def __init__(
        self, module_name: str, placement: Placement, constants: dict[str, int], row_arguments: bool
    ):
        self.module_name, self.placement, self.constants = module_name, placement, constants
        self.row_arguments = row_arguments

    def _fail(self, node, what: str):
        raise StepSourceError(
            f"{self.module_name}.step, line {node.lineno}: {what}; write state accesses as "
            "y[STATE, k] with STATE a module-level integer constant (e.g. y[CA_I, k])"
        )

    def _state(self, node: ast.Subscript) -> int:
        index = node.slice
        if not (isinstance(index, ast.Tuple) and len(index.elts) == 2):
            self._fail(node, "y indexed other than y[STATE, k]")
        row, column = index.elts
        if not (isinstance(column, ast.Name) and column.id == "k"):
            self._fail(node, "a state of another node than k")
        if isinstance(row, ast.Constant) and type(row.value) is int:
            state = row.value
        elif isinstance(row, ast.Name) and row.id in self.constants:
            state = self.constants[row.id]
        else:
            self._fail(node, "a state index that is not a constant")
        if not 0 <= state < len(self.placement):
            self._fail(node, f"state index {state} out of range")
        return state

    def _access(self, node: ast.Subscript, ctx) -> ast.expr:
        where, row = self.placement[self._state(node)]
        k = ast.Name("k", ast.Load())
        if where == "v":
            name = "v_in" if isinstance(ctx, ast.Load) else "v_out"
            new = ast.Subscript(ast.Name(name, ast.Load()), k, ctx)
        else:
            if self.row_arguments:  # y32_<row>[k]: one array argument per row
                new = ast.Subscript(ast.Name(f"{where}_{row}", ast.Load()), k, ctx)
            else:
                index = ast.Tuple([ast.Constant(row), k], ast.Load())
                new = ast.Subscript(ast.Name(where, ast.Load()), index, ctx)
            if where == "y32" and isinstance(ctx, ast.Load):  # widen: float64 arithmetic
                new = ast.Call(ast.Name("float", ast.Load()), [new], [])
        return ast.copy_location(new, node)

    def visit_AugAssign(self, node: ast.AugAssign):
        if not _is_state_access(node.target):
            return self.generic_visit(node)
        # y[X, k] op= e  ->  y'[X, k] = y[X, k] op (e): the same arithmetic
        value = ast.BinOp(self._access(node.target, ast.Load()), node.op, self.visit(node.value))
        store = self._access(node.target, ast.Store())
        return ast.copy_location(ast.Assign([store], ast.copy_location(value, node)), node)

    def visit_Subscript(self, node: ast.Subscript):
        if _is_state_access(node):
            return self._access(node, node.ctx)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name):
        if node.id == "y":
            self._fail(node, "y used other than as y[STATE, k] (passed on, sliced or rebound)")
        return node


def _check_v_read_before_written(module_name: str, function: ast.FunctionDef) -> None:
    """V comes from ``v_in`` and goes to ``v_out``: a read after the write would see the old
    value when the two differ, so it is refused (statements in source order; a statement's
    right-hand side counts before its target)."""
    written = None

    def names(node) -> set[str]:
        return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}

    statements = [n for n in ast.walk(function) if isinstance(n, ast.stmt)]
    for statement in sorted(statements, key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(statement, ast.FunctionDef):
            continue
        if isinstance(statement, ast.Assign | ast.AugAssign | ast.AnnAssign):
            reads = names(statement.value) if statement.value is not None else set()
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            writes = set().union(*(names(t) for t in targets))
        elif isinstance(statement, ast.If | ast.While):
            reads, writes = names(statement.test), set()
        elif isinstance(statement, ast.Return | ast.Expr) and statement.value is not None:
            reads, writes = names(statement.value), set()
        else:
            continue
        if written is not None and "v_in" in reads:
            raise StepSourceError(
                f"{module_name}.step, line {statement.lineno}: reads the membrane potential "
                f"after writing it (line {written}); read V once into a local at the start"
            )
        if "v_out" in writes and written is None:
            written = statement.lineno


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
