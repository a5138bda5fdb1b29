"""The monodomain problem: tissue, conductivities, stimuli, conduction velocity, bad input."""

import numpy as np
import pytest

from cardiotwin.meshing.mesh import MeshError, box_mesh
from cardiotwin.solvers.ionic import UnknownNameError, get_model
from cardiotwin.solvers.monodomain import MonodomainProblem, Stimulus
from cardiotwin.solvers.stepping import SplitStepper
from cardiotwin.solvers.trackers import ActivationTracker

SIGMA = {1: (0.1334, 0.01761)}


def _conduction_velocity_m_per_s(sigma_l, dx=0.1, length=8.0):
    mesh = box_mesh((length, dx, dx), dx)
    stimulus = Stimulus(0.0, 1.0, 60.0, box_mm=((0, 0, 0), (0.5, dx, dx)))
    problem = MonodomainProblem(
        mesh, "mitchell-schaeffer", {1: (sigma_l, 0.01761)}, stimuli=[stimulus]
    )
    activation = ActivationTracker(stop_when_all_activated=True)
    SplitStepper(problem, 0.01).run(100.0, [activation])
    x, t = problem.points_mm[:, 0], activation.first_ms[:, 0]
    middle = (x > 0.3 * length) & (x < 0.8 * length)  # away from the stimulus and the end
    return 1.0 / np.polyfit(x[middle], t[middle], 1)[0]  # mm/ms = m/s


def test_conduction_velocity_scales_with_the_square_root_of_sigma():
    # CV ~ sqrt(D) for a travelling front (NVERSION §3); measured on this strip: ratio
    # 2.024 at dx 0.2 mm, 2.014 at 0.1 and 0.05 mm
    slow = _conduction_velocity_m_per_s(0.1334)
    fast = _conduction_velocity_m_per_s(4 * 0.1334)
    assert 0.25 < slow < 0.45  # Mitchell-Schaeffer with D = 0.095 mm^2/ms: 0.33 m/s
    assert fast / slow == pytest.approx(2.0, rel=0.03)


def test_diffusivity_from_conductivity():
    problem = MonodomainProblem(box_mesh((1.0, 1.0, 1.0), 0.5), "mitchell-schaeffer", SIGMA)
    d_l, d_t = problem.diffusivities_mm2_per_ms
    # 1000 sigma / (chi Cm): 0.1334 S/m -> 0.09529 mm^2/ms (NVERSION §1 values)
    np.testing.assert_allclose(d_l, 0.1334 / 1.4, rtol=1e-12)
    np.testing.assert_allclose(d_t, 0.01761 / 1.4, rtol=1e-12)
    scaled = MonodomainProblem(
        box_mesh((1.0, 1.0, 1.0), 0.5),
        "mitchell-schaeffer",
        SIGMA,
        conductivity_scale=np.tile([1.0, 0.1], (48, 1)),
    )
    np.testing.assert_allclose(scaled.diffusivities_mm2_per_ms[1], 0.1 * d_t)


def _scarred_mesh():
    # a 2 x 1 x 1 mm box whose x > 1 half is scar (tag 3); the plane x = 1 still has tissue
    mesh = box_mesh((2.0, 1.0, 1.0), 0.5)
    centroids = mesh.points_mm[mesh.tets].mean(axis=1)
    mesh.region[centroids[:, 0] > 1.0] = 3
    return mesh


def test_nonconducting_elements_are_dropped_and_their_nodes_excluded():
    mesh = _scarred_mesh()
    problem = MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA, nonconducting_regions=[3])
    x = mesh.points_mm[:, 0]
    np.testing.assert_array_equal(problem.tissue_nodes, np.nonzero(x <= 1.0)[0])
    assert problem.n_nodes == 3 * 3 * 3
    assert problem.lumped_mass.sum() == pytest.approx(1.0)  # only the healthy half
    field = problem.mesh_field(np.arange(problem.n_nodes, dtype=float))
    assert np.isnan(field[x > 1.0]).all() and np.isfinite(field[x <= 1.0]).all()
    # a wave started in the tissue stays there: the scar is a no-flux boundary
    stimulus = Stimulus(0.0, 1.0, 60.0, box_mm=((0, 0, 0), (0, 1, 1)))
    problem = MonodomainProblem(
        mesh, "mitchell-schaeffer", SIGMA, stimuli=[stimulus], nonconducting_regions=[3]
    )
    activation = ActivationTracker(stop_when_all_activated=True)
    summary = SplitStepper(problem, 0.02).run(50.0, [activation])
    assert summary.stopped_by is not None


def test_stimulus_trains_and_members():
    train = Stimulus(10.0, 2.0, 40.0, box_mm=((0, 0, 0), (1, 1, 1)), period_ms=100.0, count=3)
    on = [t for t in np.arange(0.0, 400.0, 0.5) if train.is_on(t)]
    assert on == [10.0, 10.5, 11.0, 11.5, 110.0, 110.5, 111.0, 111.5, 210.0, 210.5, 211.0, 211.5]
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    one = Stimulus(0.0, 1.0, 40.0, nodes=[0, 2], members=[1])
    problem = MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA, stimuli=[one], batch_size=3)
    np.testing.assert_array_equal(problem.stimulus_indices(one), [0 * 3 + 1, 2 * 3 + 1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(duration_ms=0.0), "duration must be positive"),
        (dict(count=3), "needs period_ms"),
        (dict(box_mm=((1, 0, 0), (0, 1, 1))), "x0 ≤ x1"),
        (dict(nodes=[0], box_mm=((0, 0, 0), (1, 1, 1))), "exactly one of"),
        (dict(strength_ua_per_uf=float("nan")), "must be finite"),
    ],
)
def test_bad_stimuli(kwargs, message):
    base = dict(
        start_ms=0.0, duration_ms=1.0, strength_ua_per_uf=40.0, box_mm=((0, 0, 0), (1, 1, 1))
    )
    with pytest.raises(ValueError, match=message):
        Stimulus(**{**base, **kwargs})


def test_stimulus_outside_the_tissue_or_batch_is_an_error():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    away = Stimulus(0.0, 1.0, 40.0, box_mm=((5, 5, 5), (6, 6, 6)))
    with pytest.raises(ValueError, match="covers no tissue node"):
        MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA, stimuli=[away])
    member = Stimulus(0.0, 1.0, 40.0, nodes=[0], members=[2])
    with pytest.raises(ValueError, match=r"members are 0\.\.1"):
        MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA, stimuli=[member], batch_size=2)


def test_unknown_names_are_errors():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    with pytest.raises(UnknownNameError, match="choose one of: .*mitchell-schaeffer"):
        MonodomainProblem(mesh, "mitchel-schaefer", SIGMA)
    with pytest.raises(UnknownNameError, match="has no state 'u'"):
        MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA, state_overrides={"u": 0.0})
    with pytest.raises(UnknownNameError, match="has no parameter 'tau_inn'"):
        get_model("mitchell-schaeffer").parameter_table().add(tau_inn=2.0)


def test_conductivity_errors():
    mesh = _scarred_mesh()
    with pytest.raises(ValueError, match=r"region tags \[3\] have no conductivity"):
        MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA)
    with pytest.raises(
        ValueError, match=r"conductivity of region 1 must be .* got \(0\.1, -1\.0\)"
    ):
        MonodomainProblem(mesh, "mitchell-schaeffer", {1: (0.1, -1.0)}, nonconducting_regions=[3])
    with pytest.raises(ValueError, match="no conducting elements"):
        MonodomainProblem(mesh, "mitchell-schaeffer", {}, nonconducting_regions=[1, 3])


def test_nan_parameter_and_bad_parameter_sets_are_errors():
    model = get_model("mitchell-schaeffer")
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    table = model.parameter_table()
    table.add_values(tau_out=float("nan"))
    with pytest.raises(ValueError, match=r"parameter 'tau_out' of set 1 is nan"):
        MonodomainProblem(mesh, model, SIGMA, parameters=table)
    table = model.parameter_table()
    with pytest.raises(ValueError, match=r"refers to sets 0\.\.4, but the table has 1"):
        MonodomainProblem(mesh, model, SIGMA, parameters=table, parameter_set=np.arange(27) % 5)
    with pytest.raises(ValueError, match="parameter_set must have shape"):
        MonodomainProblem(mesh, model, SIGMA, parameter_set=np.zeros(5, int))


def test_inverted_element_is_refused_before_anything_runs():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    mesh.tets[11, [1, 2]] = mesh.tets[11, [2, 1]]
    with pytest.raises(MeshError, match="inverted elements .* 11"):
        MonodomainProblem(mesh, "mitchell-schaeffer", SIGMA)
