"""Operator splitting for the monodomain equation: ionic step, then diffusion.

One time step of Δt (Godunov, the default; Qu & Garfinkel 1999, IEEE TBME 46:1166):

1. ionic: every node's cell model advances Δt (the backend's cell kernel: Rush–Larsen gates,
   forward Euler otherwise) with the stimulus current of the step's start time;
2. diffusion: M dV/dt = −K V over Δt (P1 FEM, :mod:`cardiotwin.solvers.fem`).

Strang splitting (``splitting="strang"``) does diffusion Δt/2, ionic Δt, diffusion Δt/2.

Diffusion schemes (``diffusion=``):

- ``"explicit"``: forward Euler V ← V − h M⁻¹K V, stable for h ≤ 2/λ_max(M⁻¹K). The bound is
  computed from the mesh (see :meth:`SplitStepper.stability_limit_ms`) and Δt is split into
  the fewest equal substeps h ≤ 0.95·2/λ_max (``substeps="auto"``); a fixed ``substeps=n``
  whose h exceeds the bound is an error. With the consistent mass each substep solves
  M V⁺ = (M − hK) V by CG.
- ``"implicit"``: θ-scheme (M + θΔt K) V⁺ = (M − (1−θ)Δt K) V (θ = 0.5 Crank–Nicolson, the
  default; θ = 1 backward Euler), solved by conjugate gradients with a Jacobi preconditioner
  started from V plus the previous step's diffusion increment (see ``_Theta``).

Mass: ``"lumped"`` (row sums; diagonal) or ``"consistent"``; the N-version benchmark shows the
difference is large on coarse meshes (../shared/NVERSION.md §1).

Backends (``backend=``): ``"cpu"`` (Numba), ``"reference"`` (numpy/scipy/plain Python, the
oracle), ``"cuda"`` (when it implements the tissue operations), ``"auto"`` (CUDA if a device
is usable and supported, else CPU). The stepper uses only these backend operations, on
backend-owned arrays, so nothing of size N crosses between host and device per step:
``make_split_cell_kernel``, ``run_context``, ``asarray``, ``to_host``, ``empty``, ``zeros``,
``sparse``, ``reduction_workspace``, ``spmm``, ``spmm_dot``, ``col_dot``, ``axpby``, ``axpbyz``,
``copy``, ``fill``, ``set_at``, ``precondition``, ``cg_update``, ``cg_direction`` and, for the
trackers, ``activation_update``, ``apd_update``, ``first_bad_index``, ``count_nan``. Host work
per step is O(1) (plus O(B) scalars per CG iteration on the CPU). A backend may instead bring
its own ``ConjugateGradient`` that keeps the scalars on the device, as the CUDA backend does;
it then needs none of the reduction operations (``reduction_workspace`` … ``cg_direction``).

State and precision. The membrane potential lives apart from the other states, in two
buffers: the cell kernel reads V from one and writes the other, and the diffusion step reads
that one and writes back ("ping-pong": no copy per step). ``precision="mixed"`` stores V, the
gates and most concentrations, the matrices' values and the CG vectors in float32 and keeps
the states float32 cannot resolve per step in float64 (:mod:`cardiotwin.solvers.precision`);
the arithmetic is float64 in both.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import scipy.sparse as sp

from cardiotwin.solvers.ionic.base import TABLE_ROWS, build_table, n_table_columns
from cardiotwin.solvers.monodomain import MonodomainProblem
from cardiotwin.solvers.precision import state_layout

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuda", "reference")
#: largest time step (ms) that resolves each model's action-potential upstroke with the
#: forward-Euler/Rush–Larsen cell step, by model file. TP06 and Courtemanche: the fast Na⁺
#: current rises in ~1 ms; the N-version benchmark and openCARP use 0.005–0.05 ms, and
#: 0.1 ms already delays activation by several % (forward Euler on V). The phenomenological
#: models have upstrokes of τ_in = 0.3 ms (Mitchell–Schaeffer) or ~1 ms (Aliev–Panfilov).
#: A larger dt is refused rather than run to a wrong answer (``verify nversion --dt 2``
#: delayed activation 4× before this check).
MAX_DT_MS = {
    "cardiotwin.solvers.ionic.tentusscher_panfilov_2006": 0.1,
    "cardiotwin.solvers.ionic.courtemanche_1998": 0.1,
    "cardiotwin.solvers.ionic.mitchell_schaeffer": 0.25,
    "cardiotwin.solvers.ionic.aliev_panfilov": 0.25,
}
#: for models not listed above
DEFAULT_MAX_DT_MS = 0.5
#: explicit substeps use at most this fraction of the forward-Euler limit 2/λ_max, so the
#: fastest modes are damped (|1 − hλ| ≤ 0.9) rather than left undamped
STABILITY_SAFETY = 0.95
#: Lanczos estimates approach λ_max from below; this margin covers their tolerance
LANCZOS_MARGIN = 1.02


def time_step_ms(dt_ms) -> float:
    """``dt_ms`` as a Python float, or a ValueError that says what is wrong with it.

    Any real number is accepted (Python or numpy, e.g. ``np.float32(0.01)``); a float32 is
    read as the decimal it prints as (0.01, not 0.009999999776), so that time steps add up to
    whole milliseconds as the user meant.
    """
    import numbers

    if isinstance(dt_ms, bool) or not isinstance(dt_ms, numbers.Real):
        raise ValueError(
            f"time step must be a positive number of ms, got {dt_ms!r} ({type(dt_ms).__name__})"
        )
    if isinstance(dt_ms, np.floating) and np.finfo(type(dt_ms)).bits < 64:
        value = float(str(dt_ms))
    else:
        value = float(dt_ms)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"time step must be a positive number of ms, got dt = {dt_ms}")
    return value


class StopSimulation(Exception):
    """Raised by a tracker to end a run early (e.g. all nodes activated); not an error."""


def cuda_usable() -> bool:
    """Whether a CUDA device is usable (False without numba-cuda or a driver)."""
    return cuda_unavailable_reason() is None


def cuda_unavailable_reason() -> str | None:
    """Why no CUDA device can be used here (for provenance), or None when one can."""
    try:
        from numba import cuda
    except Exception as exc:  # numba-cuda missing or broken
        return f"numba-cuda cannot be imported ({type(exc).__name__}: {exc})"
    try:
        if cuda.is_available():
            return None
    except Exception as exc:  # a driver that fails to initialise
        return f"the CUDA driver failed ({type(exc).__name__}: {exc})"
    try:
        import cupy  # noqa: F401

        has_cupy = True
    except Exception:
        has_cupy = False
    return "no usable CUDA device" + (
        " (CuPy is installed, but it needs a device too)" if has_cupy else ""
    )


class BackendUnavailable(ValueError):
    """The backend asked for cannot run on this machine (e.g. CUDA without a GPU); a
    ValueError, so commands report it as a bad option (one line, exit status 2)."""


def select_backend(name: str) -> ModuleType:
    """The backend module for ``name`` (``auto``, ``cpu``, ``cuda``, ``reference``)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "auto":
        if cuda_usable():
            module = importlib.import_module("cardiotwin.solvers.backends.cuda")
            if getattr(module, "SUPPORTS_TISSUE", False):
                log.info("backend auto: using CUDA")
                return module
            log.warning("backend auto: a CUDA device is usable but the CUDA backend has no "
                        "tissue operations yet; using the CPU")  # fmt: skip
        else:
            log.info("backend auto: no usable CUDA device; using the CPU")
        name = "cpu"
    if name == "cuda" and not cuda_usable():
        raise BackendUnavailable(
            "backend 'cuda' was asked for, but no usable CUDA device was found (no GPU, no "
            "driver, or numba-cuda not installed: pip install 'cardiotwin[gpu]'); use "
            "backend 'cpu', or 'auto' to take a GPU only when there is one"
        )
    module = importlib.import_module(f"cardiotwin.solvers.backends.{name}")
    if not getattr(module, "SUPPORTS_TISSUE", False):
        raise NotImplementedError(
            f"the {name} backend does not implement the tissue operations yet (spmm, CG, "
            "tracker updates; see solvers/stepping.py); use backend='cpu'"
        )
    return module


@dataclass(frozen=True)
class RunSummary:
    """What :meth:`SplitStepper.run` did."""

    t_ms: float  # time reached, ms
    steps: int  # steps taken in this call
    wall_s: float  # wall-clock time of the stepping loop, s
    stopped_by: str | None  # the tracker message that ended the run early, if any
    node_steps_per_s: float  # N·B·steps / wall_s


class ConjugateGradient:
    """Batched preconditioned CG for SPD ``matrix`` (N, N) on (N, B) right-hand sides.

    Jacobi preconditioner; each column stops at ‖r‖ ≤ ``rtol``·‖b‖ (columns with b = 0
    relative to their initial residual). Written once with the backend operations; the
    scalars (α, β, residuals, which columns are still active) are (B,) host arrays. Vectors
    and matrix values are stored as ``dtype``; sums and scalars are float64.
    """

    def __init__(
        self, ops, matrix: sp.csr_matrix, n_cols: int, rtol: float, max_iterations,
        dtype=np.float64,
    ):  # fmt: skip
        self.ops = ops
        n = matrix.shape[0]
        self.matrix = ops.sparse(matrix, dtype)
        self.diag_inv = ops.asarray(1.0 / matrix.diagonal(), dtype=dtype)
        self.r, self.z, self.p, self.q = (ops.empty((n, n_cols), dtype) for _ in range(4))
        self.work = ops.reduction_workspace(n, n_cols)
        self.rtol = float(rtol)
        self.max_iterations = int(max_iterations)
        self.iterations = 0  # total over all solves
        self.solves = 0

    def solve(self, b, x) -> int:
        """Solve ``matrix · x = b`` in place, ``x`` holding the initial guess; returns the
        number of iterations."""
        ops = self.ops
        ops.spmm(self.matrix, x, self.r)
        ops.axpby(1.0, b, -1.0, self.r)  # r = b − A x
        bb = ops.col_dot(b, b, self.work)
        rz = ops.precondition(self.r, self.diag_inv, self.z, self.work)
        rr = ops.col_dot(self.r, self.r, self.work)
        tol2 = self.rtol**2 * np.where(bb > 0, bb, rr)
        active = rr > tol2
        self.solves += 1
        if not active.any():
            return 0
        ops.copy(self.z, self.p)
        for iteration in range(1, self.max_iterations + 1):
            pq = ops.spmm_dot(self.matrix, self.p, self.q, self.work)
            alpha = np.divide(rz, pq, out=np.zeros_like(rz), where=active & (pq != 0))
            rr, rz_new = ops.cg_update(
                alpha, self.p, self.q, x, self.r, self.diag_inv, self.z, self.work
            )
            active = rr > tol2
            if not active.any():
                self.iterations += iteration
                return iteration
            beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=active & (rz != 0))
            rz = rz_new
            ops.cg_direction(self.z, beta, self.p)
        raise RuntimeError(
            f"conjugate gradients did not converge in {self.max_iterations} iterations "
            f"(relative residual {np.sqrt((rr / np.where(bb > 0, bb, 1.0)).max()):.3g}, "
            f"asked {self.rtol:g}); raise cg_max_iterations or lower dt"
        )


class _PingPong:
    """A diffusion scheme applied to V in ``src`` with a free buffer ``spare`` of the same
    shape: :meth:`apply` returns whichever of the two holds the result (the other is free),
    so no copy is needed; without ``spare`` the result is put back into ``src``."""

    def apply(self, src, spare=None):
        if spare is not None:
            return self._apply(src, spare)
        if getattr(self, "_spare", None) is None:
            self._spare = self.ops.empty(src.shape, src.dtype)
        result = self._apply(src, self._spare)
        if result is not src:
            self.ops.copy(result, src)
        return src


class _ExplicitLumped(_PingPong):
    """V ← (I − h M_L⁻¹K)^n V: one SpMM per substep."""

    def __init__(self, ops, problem, dt_ms, substeps, n_cols, dtype):
        self.ops, self.substeps = ops, substeps
        h = dt_ms / substeps
        step = (
            sp.identity(problem.n_nodes, format="csr")
            - h * sp.diags(1.0 / problem.lumped_mass) @ problem.stiffness
        )
        self.matrix = ops.sparse(step.tocsr(), dtype)

    def _apply(self, src, spare):
        for _ in range(self.substeps):
            self.ops.spmm(self.matrix, src, spare)
            src, spare = spare, src
        return src

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, data) -> None:
        pass


class _Theta(_PingPong):
    """(M + θh K) V⁺ = (M − (1−θ)h K) V by CG, ``substeps`` times.

    θ = 0 with the consistent mass is forward Euler: solving M V⁺ = (M − hK) V rather than
    M x = K V keeps the right-hand side at the size of M V, so a relative CG tolerance
    stays meaningful when V is nearly uniform (K V ≈ 0 at rest).

    CG starts from V plus the previous solve's diffusion increment V⁺ − V (a first-order
    extrapolation in time: the increment changes little from one step to the next while a
    wave front crosses a node), which saves iterations over starting from V. The increment
    is state: it goes into checkpoints so a resumed run repeats the same iterations.
    """

    def __init__(
        self, ops, problem, dt_ms, theta, mass, substeps, n_cols, rtol, max_iterations, dtype
    ):
        self.ops, self.substeps = ops, substeps
        h = dt_ms / substeps
        m = sp.diags(problem.lumped_mass) if mass == "lumped" else problem.consistent_mass
        k = problem.stiffness
        self.rhs_matrix = ops.sparse((m - (1.0 - theta) * h * k).tocsr(), dtype)
        solver = getattr(ops, "ConjugateGradient", ConjugateGradient)
        self.cg = solver(ops, (m + theta * h * k).tocsr(), n_cols, rtol, max_iterations, dtype)
        self.fused = hasattr(self.cg, "solve_product")  # b formed inside the solver's kernel
        self.rhs = None if self.fused else ops.empty((problem.n_nodes, n_cols), dtype)
        self.increment = ops.zeros((problem.n_nodes, n_cols), dtype)  # last V⁺ − V, mV

    def _apply(self, src, spare):
        ops = self.ops
        for _ in range(self.substeps):
            if not self.fused:
                ops.spmm(self.rhs_matrix, src, self.rhs)

            def new_increment(src=src, spare=spare):
                ops.axpbyz(1.0, spare, -1.0, src, self.increment)  # V⁺ − V

            if self.fused:
                # the guess V + last increment, the solve and the new increment are queued
                # by the solver (on a device: one graph), before it waits for convergence
                self.cg.solve_product(
                    self.rhs_matrix, src, spare, guess_from=self.increment, then=new_increment
                )
            else:
                ops.axpbyz(1.0, self.increment, 1.0, src, spare)  # initial guess
                self.cg.solve(self.rhs, spare)
                new_increment()
            src, spare = spare, src
        return src

    def state_dict(self) -> dict:
        return {"increment": np.asarray(self.ops.to_host(self.increment), dtype=np.float64)}

    def load_state_dict(self, data) -> None:
        increment = data.get("increment")
        if increment is None:
            self.ops.fill(self.increment, 0.0)
        else:
            self.ops.copy(self.ops.asarray(increment, dtype=self.increment.dtype), self.increment)


def _check_stimuli_on_grid(stimuli, dt_ms: float) -> None:
    """Refuse a stimulus whose start, duration or period is not a whole number of steps: a
    step is stimulated when it starts inside the pulse, so an off-grid pulse delivers a
    rounded charge, and one shorter than a step can be skipped altogether."""
    for stimulus in stimuli:
        for name in ("start_ms", "duration_ms", "period_ms"):
            value = getattr(stimulus, name)
            if value is None or (name == "period_ms" and stimulus.count == 1):
                continue
            steps = value / dt_ms
            if abs(steps - round(steps)) > 1e-6 * max(1.0, abs(steps)):
                raise ValueError(
                    f"{stimulus.describe()}: {name[:-3]} {value:g} ms is not a whole number "
                    f"of time steps (dt = {dt_ms:g} ms); the current is on for whole steps "
                    "only, so it would deliver a rounded charge or none. Put the stimulus on "
                    "the step grid"
                )


class SplitStepper:
    """Advance a :class:`MonodomainProblem` in time by operator splitting.

    Parameters: ``dt_ms`` (> 0), ``backend`` (see module doc), ``mass`` (``"lumped"`` |
    ``"consistent"``), ``diffusion`` (``"explicit"`` | ``"implicit"``), ``theta`` (implicit:
    0.5 Crank–Nicolson, 1 backward Euler), ``splitting`` (``"godunov"`` | ``"strang"``),
    ``substeps`` (explicit: ``"auto"`` or a fixed count), ``stability_bound``
    (``"lanczos"`` or ``"gershgorin"``, see :meth:`stability_limit_ms`), ``cg_rtol``,
    ``cg_max_iterations``, ``cell_tables`` (gate rates from the model's voltage lookup tables
    built for ``dt_ms`` on a 0.05 mV grid, as openCARP and TorchCor do: 3–6× faster for TP06
    and Courtemanche, and the default; ``False`` evaluates the exact rates every step;
    models without tables ignore it), ``precision`` (``"fp64"``, the default, or
    ``"mixed"``: see the module doc and :mod:`cardiotwin.solvers.precision`; a model or Δt
    that mixed precision cannot serve is a :class:`~cardiotwin.solvers.precision.
    PrecisionError`), ``state`` (initial (n_states, N·B) array; default the problem's).

    The stepper owns the state on the backend; :attr:`t_ms` is ``step_index · dt_ms``.
    """

    def __init__(
        self,
        problem: MonodomainProblem,
        dt_ms: float,
        *,
        backend: str = "cpu",
        mass: str = "lumped",
        diffusion: str = "explicit",
        theta: float = 0.5,
        splitting: str = "godunov",
        substeps: int | str = "auto",
        stability_bound: str = "lanczos",
        cg_rtol: float = 1e-10,
        cg_max_iterations: int = 1000,
        cell_tables: bool = True,
        precision: str = "fp64",
        state: np.ndarray | None = None,
    ) -> None:
        dt_ms = time_step_ms(dt_ms)
        max_dt = MAX_DT_MS.get(problem.model.module, DEFAULT_MAX_DT_MS)
        if dt_ms > max_dt:
            raise ValueError(
                f"time step dt = {dt_ms:g} ms is too large for the {problem.model.name} model: "
                f"its action-potential upstroke is not resolved above {max_dt:g} ms and the "
                f"solution would be wrong, not just inexact. Use dt ≤ {max_dt:g} ms "
                "(0.01–0.05 ms is usual for detailed models)"
            )
        for name, value, allowed in (
            ("mass", mass, ("lumped", "consistent")),
            ("diffusion", diffusion, ("explicit", "implicit")),
            ("splitting", splitting, ("godunov", "strang")),
            ("stability_bound", stability_bound, ("lanczos", "gershgorin")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if diffusion == "implicit" and not 0.5 <= theta <= 1.0:
            raise ValueError(f"theta must lie in [0.5, 1] (unconditionally stable), got {theta}")
        if substeps != "auto" and not (isinstance(substeps, int) and substeps >= 1):
            raise ValueError(f"substeps must be 'auto' or a positive integer, got {substeps!r}")
        if not (math.isfinite(cg_rtol) and 0 < cg_rtol < 1):
            # NaN passed every column as converged at once: no diffusion, without a word
            raise ValueError(f"cg_rtol must lie in (0, 1), got {cg_rtol}")
        if int(cg_max_iterations) != cg_max_iterations or cg_max_iterations < 1:
            raise ValueError(
                f"cg_max_iterations must be a positive integer, got {cg_max_iterations}"
            )
        _check_stimuli_on_grid(problem.stimuli, float(dt_ms))
        self.problem = problem
        self.dt_ms = float(dt_ms)
        self.mass, self.diffusion, self.theta = mass, diffusion, float(theta)
        self.splitting, self.stability_bound = splitting, stability_bound
        self.cg_rtol, self.cg_max_iterations = float(cg_rtol), int(cg_max_iterations)
        self.layout = state_layout(problem.model, precision, dt_ms)
        self.precision = precision
        self.ops = select_backend(backend)
        self.backend = self.ops.NAME
        if precision != "fp64" and not getattr(self.ops, "SUPPORTS_MIXED", False):
            raise ValueError(
                f"precision={precision!r} runs on the cpu and cuda backends; the {self.backend} "
                "backend is the float64 oracle. Use precision='fp64' or backend='cpu'"
            )
        self.n_nodes, self.batch_size = problem.n_nodes, problem.batch_size
        self._check_device_memory()

        diffusion_dt = self.dt_ms / 2 if splitting == "strang" else self.dt_ms
        self.substeps = 1
        if diffusion == "explicit":
            self.substeps = self._explicit_substeps(diffusion_dt, substeps)
        self.diffusion_operator = self._make_diffusion(diffusion_dt)

        self._p = self.ops.asarray(problem.parameters.as_array())
        self.cell_tables = bool(cell_tables) and n_table_columns(problem.model) > 0
        pset = problem.parameter_sets()
        #: every node uses parameter set 0: the cell kernel skips the per-node set lookup
        self.single_parameter_set = problem.parameters.as_array().shape[1] == 1 or not pset.any()
        self._table = None
        self._cell_kernel = self._make_cell_kernel()
        self._fused_kernels: dict[tuple, object] = {}
        self._pset = self.ops.asarray(pset[:1] if self.single_parameter_set else pset, np.int32)
        n_flat = self.n_nodes * self.batch_size
        self._i_stim = self.ops.zeros(n_flat)
        self._stimulus_index = [
            self.ops.asarray(problem.stimulus_indices(s), dtype=np.int64) for s in problem.stimuli
        ]
        self._stimulus_key: tuple | None = None
        initial = problem.initial_state() if state is None else np.asarray(state, np.float64)
        self._check_state(initial)
        v, y32, y64 = self.layout.split(initial)
        #: V in two buffers (ping-pong); ``_current`` holds it
        self._v = [self.ops.asarray(v, v.dtype), self.ops.empty(v.shape, v.dtype)]
        self._current = 0
        self._y32 = self.ops.asarray(y32, np.float32)
        self._y64 = self.ops.asarray(y64, np.float64)
        self.step_index = 0
        self.t_end_ms: float | None = None
        self.trackers: list = []
        self._fingerprint: str | None = None
        self._warm_up()

    # --- set-up -------------------------------------------------------------------------

    def _make_cell_kernel(self, rules: tuple = ()):
        """The cell kernel ``(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, *rule_args)``;
        with ``rules``, tracker rules run inside it (backends with ``FUSES_TRACKERS``)."""
        model = self.problem.model
        options = {"rules": rules} if rules else {}
        kernel = self.ops.make_split_cell_kernel(
            model, self.layout.placement, self.cell_tables, self.single_parameter_set, **options
        )
        if self.cell_tables and self._table is None:
            parameters = self.problem.parameters.as_array()
            self._table = self.ops.asarray(build_table(model, parameters, self.dt_ms))
        table = self._table

        def cell_kernel(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, *rule_args):
            kernel(v_in, v_out, y32, y64, p, pset, dt_ms, i_stim, table, *rule_args)

        return cell_kernel

    def _warm_up(self) -> None:
        """Compile the cell kernel now (one step of a one-node copy), so that the time of a
        run is the stepping alone (TP06 takes tens of seconds to compile)."""
        ops = self.ops

        def first(a):
            return ops.asarray(ops.to_host(a)[..., :1], a.dtype)

        v = first(self._v[0])
        self._cell_kernel(v, ops.empty(1, v.dtype), first(self._y32), first(self._y64), self._p,
                          first(self._pset), self.dt_ms, ops.zeros(1))  # fmt: skip

    def stability_limit_ms(self) -> float:
        """Largest stable forward-Euler diffusion substep, 2/λ_max(M⁻¹K), in ms (no margin).

        λ_max of the lumped M_L⁻¹K: ``stability_bound="lanczos"`` (default) computes it by
        Lanczos (×1.02 margin; 3.6 s for the 442 k nodes of the 0.1 mm N-version slab),
        ``"gershgorin"`` bounds it by row sums (rigorous, instant, 1.53× too large on box
        meshes). For the consistent mass, 5× that (rigorous, since M_C ⪰ M_L/5; the true
        ratio is 4.33 on box meshes, and Lanczos on the generalized problem needs an inner
        CG per iteration: ~2 min at 58 k nodes).
        """
        from cardiotwin.solvers import fem

        problem = self.problem
        # one bound per problem (branches of a protocol share the problem's matrices)
        cache = problem.__dict__.setdefault("_stability_limits", {})
        key = (self.stability_bound, self.mass)
        if key in cache:
            return cache[key]
        if self.stability_bound == "lanczos":
            lam = LANCZOS_MARGIN * fem.largest_eigenvalue(problem.stiffness, problem.lumped_mass)
        else:
            lam = fem.gershgorin_bound(problem.stiffness, problem.lumped_mass)
        if self.mass == "consistent":
            lam *= fem.CONSISTENT_OVER_LUMPED_EIGENVALUE
        cache[key] = math.inf if lam <= 0 else 2.0 / lam
        return cache[key]

    def _explicit_substeps(self, diffusion_dt: float, substeps) -> int:
        limit = STABILITY_SAFETY * self.stability_limit_ms()
        needed = max(1, math.ceil(diffusion_dt / limit * (1 - 1e-12)))
        if substeps == "auto":
            return needed
        if diffusion_dt / substeps > limit:
            raise ValueError(
                f"dt = {self.dt_ms:g} ms with {substeps} diffusion substep(s) exceeds the "
                f"explicit diffusion stability bound of this mesh: substeps of at most "
                f"{limit:.4g} ms ({STABILITY_SAFETY} × 2/λ_max(M⁻¹K), {self.mass} mass). "
                f"Use substeps='auto' ({needed} substeps), substeps ≥ {needed}, "
                f"dt ≤ {limit * substeps:.4g} ms, or diffusion='implicit'"
            )
        return int(substeps)

    def _make_diffusion(self, dt_ms: float):
        args = (self.ops, self.problem, dt_ms)
        b, dtype = self.problem.batch_size, self.layout.value_dtype
        if self.diffusion == "explicit" and self.mass == "lumped":
            return _ExplicitLumped(*args, self.substeps, b, dtype)
        theta = self.theta if self.diffusion == "implicit" else 0.0
        return _Theta(
            *args, theta, self.mass, self.substeps, b, self.cg_rtol, self.cg_max_iterations,
            dtype,
        )  # fmt: skip

    def memory_bytes(self) -> tuple[int, int]:
        """Backend memory this stepper allocates: (per batch member, shared by the batch),
        bytes. Per member and node: V twice, the float32 and float64 state rows, the stimulus
        current and, for CG, the increment and four CG vectors, plus 64 bytes for trackers;
        shared: the sparse matrices (value + int32 index per non-zero, one row pointer per
        node) and the lookup table."""
        problem, layout = self.problem, self.layout
        value = layout.value_dtype.itemsize
        per_node = 2 * value + 4 * layout.n32 + 8 * layout.n64 + 8 + 64
        nnz = problem.stiffness.nnz
        matrices = 1
        if not (self.diffusion == "explicit" and self.mass == "lumped"):
            per_node += 5 * value
            matrices = 2
        shared = matrices * (nnz * (value + 4) + 4 * (self.n_nodes + 1))
        n_sets = problem.parameters.as_array().shape[1]
        shared += 8 * max(1, n_table_columns(problem.model)) * TABLE_ROWS * n_sets
        return per_node * self.n_nodes, shared

    def _check_device_memory(self) -> None:
        free = getattr(self.ops, "free_memory_bytes", None)
        if free is None:
            return
        available = free()
        per_member, shared = self.memory_bytes()
        needed = shared + self.batch_size * per_member
        if needed <= 0.9 * available:
            return
        fit = max(0, int((0.9 * available - shared) // per_member))
        raise BackendUnavailable(
            f"the GPU has {available / 2**30:.2f} GiB free, but {self.batch_size} batch "
            f"members of {self.n_nodes} nodes need about {needed / 2**30:.2f} GiB "
            f"({per_member / 2**20:.1f} MiB per member, {shared / 2**20:.1f} MiB shared); at "
            f"most {fit} member(s) fit. Run the batch in parts of {fit} or fewer, use "
            "precision='mixed' (about half the memory), or backend='cpu'"
        )

    def _check_state(self, y: np.ndarray) -> None:
        model = self.problem.model
        expected = (model.n_states, self.n_nodes * self.batch_size)
        if y.shape != expected:
            raise ValueError(
                f"state must have shape {expected} (states × tissue nodes·batch), got {y.shape}"
            )
        bad = np.argwhere(~np.isfinite(y))
        if bad.size:
            i, k = bad[0]
            node, member = divmod(int(k), self.batch_size)
            x = self.problem.points_mm[node]
            raise ValueError(
                f"initial state {model.state_names[i]!r} is {y[i, k]} at node {node} "
                f"({x[0]:.4g}, {x[1]:.4g}, {x[2]:.4g} mm), batch member {member}; "
                "give finite initial values"
            )

    # --- state --------------------------------------------------------------------------

    @property
    def t_ms(self) -> float:
        return self.step_index * self.dt_ms

    @property
    def voltage(self):
        """Backend (N, B) view of the membrane potential (mV); for trackers. Under
        ``precision="mixed"`` it is float32. The stepper alternates between two buffers:
        fetch it again after each step rather than keeping it."""
        return self._v[self._current].reshape(self.n_nodes, self.batch_size)

    @property
    def voltage_mv(self) -> np.ndarray:
        """Host copy (N, B) of the membrane potential, mV (float64)."""
        return np.asarray(self.ops.to_host(self.voltage), dtype=np.float64)

    @property
    def state(self) -> np.ndarray:
        """Host copy (n_states, N·B) of the full state, float64."""
        ops = self.ops
        v = ops.to_host(self._v[self._current])
        return self.layout.join(v, ops.to_host(self._y32), ops.to_host(self._y64))

    def member_state(self, members) -> np.ndarray:
        """Host copy (n_states, N, M) float64 of the given batch members' state. Only their
        values cross to the host (gathered on the device), not the whole batch's."""
        from cardiotwin.solvers.backends import node_rules

        n, b, ops = self.n_nodes, self.batch_size, self.ops
        members = np.asarray(list(members), dtype=np.int64).reshape(-1)
        if members.size == 0 or members.min() < 0 or members.max() >= b:
            raise ValueError(f"members must lie in 0..{b - 1}, got {members.tolist()}")
        index = (np.arange(n, dtype=np.int64)[:, None] * b + members[None, :]).reshape(-1)
        on_device = ops.asarray(index, dtype=np.int64)
        gather = ops.node_kernel(node_rules.gather_at)

        def pick(row) -> np.ndarray:
            out = ops.empty(index.size, dtype=row.dtype)
            gather(index.size, row, on_device, out)
            return ops.to_host(out)

        def rows(block, dtype) -> np.ndarray:
            picked = [pick(block[r]) for r in range(block.shape[0])]
            return np.stack(picked) if picked else np.empty((0, index.size), dtype=dtype)

        state = self.layout.join(
            pick(self._v[self._current]), rows(self._y32, np.float32), rows(self._y64, np.float64)
        )
        return state.reshape(-1, n, members.size)

    def set_state(self, y: np.ndarray, t_ms: float | None = None) -> None:
        """Replace the state (host array, same shape); optionally the time (a whole step)."""
        y = np.asarray(y, dtype=np.float64)
        self._check_state(y)
        ops = self.ops
        for host, device in zip(self.layout.split(y), self._state_arrays(), strict=True):
            ops.copy(ops.asarray(host, device.dtype), device)
        if t_ms is not None:
            self.step_index = round(t_ms / self.dt_ms)

    def _state_arrays(self):
        return self._v[self._current], self._y32, self._y64

    # --- stepping -----------------------------------------------------------------------

    def _set_stimulus(self, t_ms: float) -> None:
        tol = 1e-6 * self.dt_ms
        key = tuple(s.is_on(t_ms, tol) for s in self.problem.stimuli)
        if key == self._stimulus_key:
            return
        self.ops.fill(self._i_stim, 0.0)
        for on, stimulus, index in zip(
            key, self.problem.stimuli, self._stimulus_index, strict=True
        ):
            if on:
                self.ops.set_at(self._i_stim, index, stimulus.strength_ua_per_uf)
        self._stimulus_key = key

    def _ionic(self, fused=()) -> None:
        """The cell step: V from the current buffer into the other, which becomes current.
        ``fused``: trackers whose update for the previous step runs inside the kernel."""
        self._set_stimulus(self.t_ms)
        v_in, v_out = self._v[self._current], self._v[1 - self._current]
        kernel, extra = self._cell_kernel, ()
        if fused:
            pairs = [tracker.fused_rule(self) for tracker in fused]
            rules = tuple(rule for rule, _ in pairs)
            if rules not in self._fused_kernels:
                self._fused_kernels[rules] = self._make_cell_kernel(rules)
            kernel = self._fused_kernels[rules]
            extra = tuple(arg for _, args in pairs for arg in args)
        kernel(v_in, v_out, self._y32, self._y64, self._p, self._pset, self.dt_ms, self._i_stim,
               *extra)  # fmt: skip
        self._current = 1 - self._current

    def _diffuse_voltage(self) -> None:
        n, b = self.n_nodes, self.batch_size
        src = self._v[self._current].reshape(n, b)
        spare = self._v[1 - self._current].reshape(n, b)
        result = self.diffusion_operator.apply(src, spare)
        if result is spare:
            self._current = 1 - self._current

    def advance(self, _fused=()) -> None:
        """One split step of ``dt_ms`` (no trackers)."""
        if self.splitting == "godunov":
            self._ionic(_fused)
            self._diffuse_voltage()
        else:
            self._diffuse_voltage()
            self._ionic()
            self._diffuse_voltage()
        self.step_index += 1

    def diffuse(self, v, steps: int = 1) -> None:
        """Apply only the diffusion operator ``steps`` times to backend array ``v`` (N, B),
        in place, without ionic steps or time advance (diffusion tests, smoothing)."""
        with self.ops.run_context(self.n_nodes * self.batch_size):
            for _ in range(steps):
                self.diffusion_operator.apply(v)

    def run(self, t_end_ms: float, trackers=(), resume_from: str | os.PathLike | None = None):
        """Step until ``t_end_ms`` (or a tracker stops the run); returns a :class:`RunSummary`.

        ``trackers``: objects of :mod:`cardiotwin.solvers.trackers`. ``resume_from``: a
        checkpoint written by :class:`~cardiotwin.solvers.trackers.CheckpointTracker` (or
        :meth:`save_checkpoint`) for this same problem and numerics, with the same list of
        tracker types; the run then continues exactly as the interrupted one would have.
        """
        if not math.isfinite(t_end_ms):
            raise ValueError(f"t_end must be a finite time in ms, got {t_end_ms}")
        self.trackers = list(trackers)
        self.t_end_ms = float(t_end_ms)
        resumed = None
        if resume_from is not None:
            from cardiotwin.solvers.checkpoint import restore_stepper

            resumed = restore_stepper(self, resume_from, self.trackers)
        # trackers start at the resumed time and state (a recorder's first frame, a progress
        # bar's total, the NaN guard's last good time), then get their records back
        for tracker in self.trackers:
            tracker.start(self)
        if resumed is not None:
            from cardiotwin.solvers.checkpoint import restore_trackers

            restore_trackers(resumed, resume_from, self.trackers)
        n_end = math.ceil(t_end_ms / self.dt_ms - 1e-9)
        updating = [t for t in self.trackers if t.updates_every_step]
        # divergence checks first (a blown-up member must not be taken for one at rest and
        # stop the run before the check), trackers that read the others' results last
        handled = sorted(
            (t for t in self.trackers if t.interval_ms is not None),
            key=lambda t: (-getattr(t, "handle_first", False), getattr(t, "handle_last", False)),
        )
        every = [max(1, round(t.interval_ms / self.dt_ms)) for t in handled]
        # A backend that fuses trackers runs their update for step n inside the cell kernel
        # of step n + 1 (no launch of their own); before any tracker is handled, finished or
        # the run ends, a pending update is done the ordinary way.
        fuse = getattr(self.ops, "FUSES_TRACKERS", False) and self.splitting == "godunov"
        fused = [t for t in updating if fuse and hasattr(t, "fused_rule")]
        plain = [t for t in updating if t not in fused]
        pending = False

        def flush() -> None:
            nonlocal pending
            if pending:
                for tracker in fused:
                    tracker.update(self)
                pending = False

        stopped_by = None
        start_step = self.step_index
        started = time.perf_counter()
        try:
            with self.ops.run_context(self.n_nodes * self.batch_size):
                while self.step_index < n_end:
                    owed, pending = (fused if pending else ()), False
                    self.advance(owed)
                    pending = bool(fused)
                    for tracker in plain:
                        tracker.update(self)
                    due = [tracker for tracker, n in zip(handled, every, strict=True)
                           if self.step_index % n == 0 or self.step_index == n_end]  # fmt: skip
                    if due:
                        flush()
                    for tracker in due:
                        tracker.handle(self)
        except StopSimulation as stop:
            stopped_by = str(stop)
            log.info("stopped at t = %.4g ms: %s", self.t_ms, stopped_by)
        finally:
            flush()
            for tracker in self.trackers:
                tracker.finish(self)
        wall = time.perf_counter() - started
        steps = self.step_index - start_step
        return RunSummary(
            t_ms=self.t_ms,
            steps=steps,
            wall_s=wall,
            stopped_by=stopped_by,
            node_steps_per_s=self.n_nodes * self.batch_size * steps / wall if wall > 0 else 0.0,
        )

    # --- checkpoints (solvers/checkpoint.py) ---------------------------------------------

    def fingerprint(self) -> str:
        """Hash of the problem and the numerics: a checkpoint resumes only the same run."""
        if self._fingerprint is None:
            import hashlib

            numerics = (self.dt_ms, self.mass, self.diffusion, self.theta, self.splitting,
                        self.substeps, self.cg_rtol, self.cell_tables)  # fmt: skip
            if self.precision != "fp64":  # fp64 checkpoints of earlier versions stay valid
                numerics += (self.precision,)
            text = self.problem.fingerprint() + repr(numerics)
            self._fingerprint = hashlib.sha256(text.encode()).hexdigest()
        return self._fingerprint

    def save_checkpoint(self, path: str | os.PathLike, trackers=()) -> Path:
        """Write a checkpoint file (see :func:`cardiotwin.solvers.checkpoint.save_checkpoint`)."""
        from cardiotwin.solvers.checkpoint import save_checkpoint

        return save_checkpoint(self, path, trackers)

    def load_checkpoint(self, path: str | os.PathLike, trackers=()) -> None:
        """Restore a checkpoint (see :func:`cardiotwin.solvers.checkpoint.load_checkpoint`)."""
        from cardiotwin.solvers.checkpoint import load_checkpoint

        load_checkpoint(self, path, trackers)
