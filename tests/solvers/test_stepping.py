"""Operator splitting: diffusion against the heat equation, batches, backend parity, errors."""

import math

import numpy as np
import pytest
from scipy.sparse import diags
from scipy.sparse.linalg import expm_multiply, splu, spsolve

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper, select_backend
from cardiotwin.solvers.trackers import ActivationTracker

# isotropic 0.14 S/m with chi = 1400 /cm, Cm = 1 uF/cm^2 gives D = 0.1 mm^2/ms
SIGMA_S_PER_M = 0.14
D_MM2_PER_MS = 0.1
LENGTH_MM = 4.0
WAVENUMBER = 2 * math.pi / LENGTH_MM  # cos(kx): a no-flux eigenmode of the box
T_MS = 2.0


def _diffusion_problem(dx_mm):
    mesh = box_mesh((LENGTH_MM, 0.5, 0.5), dx_mm)
    return MonodomainProblem(mesh, "mitchell-schaeffer", {1: (SIGMA_S_PER_M, SIGMA_S_PER_M)})


def _diffuse(problem, dt_ms, mass, scheme, theta=0.5, substeps="auto"):
    """Diffusion only (no ionic step): cos(kx) advanced to T_MS with the stepper's operator."""
    stepper = SplitStepper(
        problem, dt_ms, mass=mass, diffusion=scheme, theta=theta, substeps=substeps
    )
    u0 = np.cos(WAVENUMBER * problem.points_mm[:, 0])
    v = stepper.ops.asarray(u0[:, None])
    stepper.diffuse(v, round(T_MS / dt_ms))
    return u0, stepper.ops.to_host(v)[:, 0]


def _semi_discrete(problem, mass, u0):
    """exp(-M^-1 K T) u0: the exact-in-time solution of the spatial discretisation."""
    k = problem.stiffness
    if mass == "lumped":
        a = diags(1.0 / problem.lumped_mass) @ k
    else:
        a = splu(problem.consistent_mass.tocsc()).solve(k.toarray())
    return expm_multiply(-T_MS * a, u0)


@pytest.mark.parametrize(
    ("mass", "scheme", "dt"),
    [
        ("lumped", "explicit", 0.001),
        ("consistent", "explicit", 0.001),
        ("lumped", "implicit", 0.01),  # Crank-Nicolson: its O(dt^2) error is negligible
        ("consistent", "implicit", 0.01),
    ],
)
def test_cosine_mode_decays_at_the_analytic_rate_with_second_order_in_space(mass, scheme, dt):
    # u = exp(-D k^2 t) cos(kx) solves the heat equation with no-flux ends; P1 elements
    # converge at O(dx^2) in the L2 norm: halving dx divides the error by ~4 (consistent
    # mass approaches it from below: 3.31, 3.71, 3.90 measured down to 0.0625 mm). (The maximum
    # error sits at the box corners, where the Kuhn split is not symmetric, and converges
    # at ~dx^1.6: measured 0.051, 0.020, 0.0067, 0.0021 for dx 0.5 ... 0.0625 mm.)
    l2_errors, max_errors = [], []
    for dx in (0.5, 0.25, 0.125):
        problem = _diffusion_problem(dx)
        u0, u = _diffuse(problem, dt, mass, scheme)
        error = u - math.exp(-D_MM2_PER_MS * WAVENUMBER**2 * T_MS) * u0
        l2_errors.append(math.sqrt(error @ (problem.consistent_mass @ error)))
        max_errors.append(np.abs(error).max())
    l2_ratios = np.array(l2_errors[:-1]) / np.array(l2_errors[1:])
    assert l2_errors[-1] < 1.2e-3
    assert np.all((l2_ratios > 3.2) & (l2_ratios < 4.5)), (l2_errors, l2_ratios)
    assert max_errors[-1] < 8e-3 and max_errors[0] / max_errors[-1] > 6.0, max_errors


@pytest.mark.parametrize(
    ("mass", "scheme", "theta", "order"),
    [
        ("lumped", "explicit", 0.5, 1),
        ("consistent", "explicit", 0.5, 1),
        ("lumped", "implicit", 0.5, 2),
        ("consistent", "implicit", 0.5, 2),
        ("consistent", "implicit", 1.0, 1),
    ],
)
def test_time_convergence_order(mass, scheme, theta, order):
    # against the semi-discrete exact solution: forward/backward Euler are first order,
    # Crank-Nicolson second order in dt (explicit: one substep, below the stability bound)
    problem = _diffusion_problem(0.25)
    dts = (0.016, 0.008, 0.004) if scheme == "explicit" else (0.04, 0.02, 0.01)
    substeps = 1 if scheme == "explicit" else "auto"
    errors = []
    for dt in dts:
        u0, u = _diffuse(problem, dt, mass, scheme, theta, substeps)
        errors.append(np.abs(u - _semi_discrete(problem, mass, u0)).max())
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 2.0**order, rtol=0.1, err_msg=str(errors))


def test_explicit_substeps_follow_the_stability_bound():
    problem = _diffusion_problem(0.125)
    stepper = SplitStepper(problem, 0.05)
    limit = stepper.stability_limit_ms()
    lumped = problem.lumped_mass
    exact = np.linalg.eigvals(problem.stiffness.toarray() / lumped[:, None]).real.max()
    assert limit == pytest.approx(2 / (1.02 * exact), rel=1e-5)  # Lanczos with 2 % margin
    assert stepper.substeps == math.ceil(0.05 / (0.95 * limit))
    assert stepper.substeps > 1
    gershgorin = SplitStepper(problem, 0.05, stability_bound="gershgorin")
    assert gershgorin.stability_limit_ms() <= limit
    consistent = SplitStepper(problem, 0.05, mass="consistent")
    assert consistent.stability_limit_ms() < limit / 4


def test_dt_above_the_bound_without_substeps_is_a_clear_error():
    problem = _diffusion_problem(0.125)
    with pytest.raises(ValueError, match=r"dt = 0\.05 ms .* stability bound .*substeps='auto'"):
        SplitStepper(problem, 0.05, substeps=1)
    SplitStepper(problem, 0.05, diffusion="implicit")  # the implicit scheme has no bound


@pytest.mark.parametrize("dt", [0.0, -0.01, float("nan"), float("inf")])
def test_non_positive_dt_is_rejected(dt):
    with pytest.raises(ValueError, match="time step must be a positive number of ms"):
        SplitStepper(_diffusion_problem(0.5), dt)


def test_bad_options_are_rejected():
    problem = _diffusion_problem(0.5)
    with pytest.raises(ValueError, match="mass must be one of"):
        SplitStepper(problem, 0.01, mass="diagonal")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        SplitStepper(problem, 0.01, backend="gpu")
    with pytest.raises(ValueError, match="theta"):
        SplitStepper(problem, 0.01, diffusion="implicit", theta=0.2)
    assert select_backend("auto").NAME in ("cpu", "cuda")


def test_cell_tables_only_where_the_model_has_them():
    # Mitchell-Schaeffer declares no tabulated voltage terms: exact rates, nothing to build
    assert SplitStepper(_diffusion_problem(0.5), 0.01, cell_tables=True).cell_tables is False


def test_nan_in_the_initial_state_names_state_and_node():
    problem = _diffusion_problem(0.5)
    y = problem.initial_state()
    y[1, 7] = np.nan
    with pytest.raises(ValueError, match=r"initial state 'h' is nan at node 7 \(3\.5, 0, 0 mm\)"):
        SplitStepper(problem, 0.01, state=y)


# --- batches and backends -----------------------------------------------------------------


def _ms_problem(stimuli, parameter_set=None, table=None, batch_size=1, size=(3.0, 1.0, 0.5)):
    mesh = box_mesh(size, 0.25)
    return MonodomainProblem(
        mesh,
        "mitchell-schaeffer",
        {1: (0.1334, 0.01761)},
        stimuli=stimuli,
        parameters=table,
        parameter_set=parameter_set,
        batch_size=batch_size,
    )


def _run(problem, scheme, mass, t_end=12.0, backend="cpu", splitting="godunov"):
    stepper = SplitStepper(
        problem, 0.02, mass=mass, diffusion=scheme, backend=backend, splitting=splitting
    )
    activation = ActivationTracker()
    stepper.run(t_end, [activation])
    return stepper.state, activation.first_ms


@pytest.mark.parametrize(("scheme", "mass"), [("explicit", "lumped"), ("implicit", "consistent")])
def test_batch_equals_single_runs(scheme, mass):
    from cardiotwin.solvers.ionic import get_model

    model = get_model("mitchell-schaeffer")
    table = model.parameter_table()
    slow = table.add(tau_close=0.5, tau_out=1.2)
    fast = table.add(tau_in=0.7)
    left = dict(start_ms=0.0, duration_ms=1.0, strength_ua_per_uf=50.0)
    sites = [
        ((0, 0, 0), (0.25, 1, 0.5)),
        ((2.75, 0, 0), (3, 1, 0.5)),
        ((1.25, 0, 0), (1.75, 1, 0.5)),
    ]
    mesh_nodes = box_mesh((3.0, 1.0, 0.5), 0.25).n_points
    per_member = np.zeros((mesh_nodes, 3), dtype=np.int32)
    per_member[:, 1] = slow
    per_member[::2, 2] = fast  # member 2 mixes two sets node by node
    stimuli = [Stimulus(**left, box_mm=site, members=(b,)) for b, site in enumerate(sites)]
    batch = _ms_problem(stimuli, per_member, table, batch_size=3)
    y_batch, act_batch = _run(batch, scheme, mass)
    n = batch.n_nodes
    for b, site in enumerate(sites):
        single = _ms_problem([Stimulus(**left, box_mm=site)], per_member[:, b], table)
        y_single, act_single = _run(single, scheme, mass)
        np.testing.assert_allclose(y_batch.reshape(2, n, 3)[:, :, b], y_single, rtol=0, atol=1e-12)
        np.testing.assert_allclose(act_batch[:, b], act_single[:, 0], rtol=0, atol=1e-12)
    assert np.all(np.isfinite(act_batch))  # every member activated the whole strip
    assert not np.allclose(act_batch[:, 0], act_batch[:, 1])


@pytest.mark.parametrize(
    ("scheme", "mass", "splitting"),
    [
        ("explicit", "lumped", "godunov"),
        ("explicit", "consistent", "godunov"),
        ("implicit", "lumped", "strang"),
        ("implicit", "consistent", "godunov"),
    ],
)
def test_reference_backend_matches_cpu(scheme, mass, splitting):
    stimulus = Stimulus(0.0, 1.0, 50.0, box_mm=((0, 0, 0), (0.25, 0.5, 0.5)))
    problem = _ms_problem([stimulus], size=(2.0, 0.5, 0.5))
    y_cpu, act_cpu = _run(problem, scheme, mass, t_end=4.0, splitting=splitting)
    y_ref, act_ref = _run(
        problem, scheme, mass, t_end=4.0, backend="reference", splitting=splitting
    )
    assert np.ptp(y_ref[0]) > 50.0  # a wave is travelling: the comparison is not trivial
    np.testing.assert_allclose(y_cpu, y_ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(act_cpu, act_ref, rtol=0, atol=1e-10)


def test_extrapolated_cg_guess_saves_iterations_on_a_travelling_wave():
    # While a front crosses the strip the diffusion increment V+ - V changes little from one
    # step to the next, so V + (last increment) is a better CG start than V.
    mesh = box_mesh((6.0, 0.5, 0.5), 0.1)
    stimulus = Stimulus(0.0, 1.0, 60.0, box_mm=((0, 0, 0), (0.5, 0.5, 0.5)))
    problem = MonodomainProblem(
        mesh, "mitchell-schaeffer", {1: (0.1334, 0.01761)}, stimuli=[stimulus]
    )
    dt = 0.05
    stepper = SplitStepper(problem, dt, mass="consistent", diffusion="implicit", cg_rtol=1e-8)
    stepper.run(4.0)  # the front is mid-strip
    ops, operator = stepper.ops, stepper.diffusion_operator
    stepper._ionic()  # the next step up to its diffusion solve
    v = ops.to_host(stepper.voltage)[:, 0]
    increment = ops.to_host(operator.increment)[:, 0]
    m, k = problem.consistent_mass, problem.stiffness
    rhs = (m - 0.5 * dt * k) @ v
    lhs = (m + 0.5 * dt * k).tocsr()
    solution = spsolve(lhs.tocsc(), rhs)
    assert np.abs(increment).max() > 0.1  # the front moves V by more than 0.1 mV per step
    error_from_v = np.abs(solution - v).max()
    error_extrapolated = np.abs(solution - (v + increment)).max()
    assert error_extrapolated < 0.2 * error_from_v
    # CG needs fewer iterations from the extrapolated guess ...
    iterations = []
    for guess in (v, v + increment):
        x = ops.asarray(guess[:, None].copy())
        iterations.append(operator.cg.solve(ops.asarray(rhs[:, None]), x))
        np.testing.assert_allclose(ops.to_host(x)[:, 0], solution, atol=1e-5)
    assert iterations[1] < iterations[0]
    # ... and the stepper's own diffusion step starts from it
    before = operator.cg.iterations
    operator.apply(stepper.voltage)
    assert operator.cg.iterations - before == iterations[1]
    np.testing.assert_allclose(ops.to_host(stepper.voltage)[:, 0], solution, atol=1e-5)


@pytest.mark.parametrize(
    ("user_setting", "expected"),
    [({}, "10000"), ({"GOMP_SPINCOUNT": "300"}, "300"), ({"OMP_WAIT_POLICY": "PASSIVE"}, None)],
)
def test_cpu_backend_shortens_openmp_spinning_unless_the_user_chose(user_setting, expected):
    # a short spin count keeps parallel kernels from collapsing on shared cores (cpu.py)
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    code = (
        "import os; from cardiotwin.solvers.backends import cpu; "
        "print(os.environ.get('GOMP_SPINCOUNT'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={**env, **user_setting}, capture_output=True,
        text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert out == str(expected)


def _ms_box(stimuli=(), **kwargs):
    mesh = box_mesh((2.0, 1.0, 1.0), 0.5)
    return MonodomainProblem(mesh, "mitchell-schaeffer", {1: (0.1, 0.1)}, stimuli=stimuli, **kwargs)


@pytest.mark.parametrize(
    ("start", "duration", "period", "what"),
    [(0.1, 0.1, None, "start"), (0.0, 0.2, None, "duration"), (0.0, 0.5, 10.1, "period")],
)
def test_a_stimulus_off_the_step_grid_is_refused(start, duration, period, what):
    # a step is stimulated when it starts inside the pulse: at dt 0.25 ms a 0.1-0.2 ms pulse
    # was skipped altogether (no node excited) and a 0-0.2 ms one delivered 0.25 ms
    count = 1 if period is None else 3
    stimulus = Stimulus(start, duration, 50.0, box_mm=((0, 0, 0), (0.5, 1, 1)),
                        period_ms=period, count=count)  # fmt: skip
    with pytest.raises(ValueError, match=f"{what} .* ms is not a whole number of time steps"):
        SplitStepper(_ms_box([stimulus]), 0.25)
    SplitStepper(_ms_box([stimulus]), 0.05 if what != "period" else 0.1)  # on the grid


@pytest.mark.parametrize(("rtol", "iterations"), [(float("nan"), 100), (1.0, 100), (1e-8, 0)])
def test_conjugate_gradient_settings_that_would_skip_diffusion_are_refused(rtol, iterations):
    # cg_rtol = NaN made every column "converged" at iteration 0: V did not diffuse at all
    with pytest.raises(ValueError, match="cg_rtol|cg_max_iterations"):
        SplitStepper(_ms_box(), 0.05, diffusion="implicit", cg_rtol=rtol,
                     cg_max_iterations=iterations)  # fmt: skip


def test_fractional_parameter_set_indices_are_refused():
    mesh_nodes = box_mesh((2.0, 1.0, 1.0), 0.5).n_points
    with pytest.raises(ValueError, match="integer set indices"):
        _ms_box(parameter_set=np.full(mesh_nodes, 0.0))
    with pytest.raises(ValueError, match="integer indices or a boolean mask"):
        SplitStepper(_ms_box([Stimulus(0.0, 1.0, 50.0, nodes=np.array([0.0, 1.7]))]), 0.05)


def test_numpy_row_stack_is_restored_for_numba_cuda(monkeypatch):
    """numba-cuda compiles no kernel at all without np.row_stack (gone in NumPy 2.5)."""
    import cardiotwin.solvers as solvers

    monkeypatch.delattr(np, "row_stack", raising=False)
    solvers.restore_numpy_aliases()
    assert np.row_stack is np.vstack  # noqa: NPY201
    stacked = np.row_stack([np.arange(3), np.arange(3) + 3])  # noqa: NPY201
    np.testing.assert_array_equal(stacked, np.arange(6).reshape(2, 3))
