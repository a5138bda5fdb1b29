"""P1 finite elements against facts that hold exactly for linear elements."""

import numpy as np
import pytest

from cardiotwin.meshing.mesh import box_mesh
from cardiotwin.solvers import fem


def _jittered_box(seed=0):
    """A 2 x 1.5 x 1 mm box whose interior nodes are moved randomly (no special structure)."""
    mesh = box_mesh((2.0, 1.5, 1.0), 0.25)
    p = mesh.points_mm
    interior = np.all((p > 1e-9) & (p < np.array([2.0, 1.5, 1.0]) - 1e-9), axis=1)
    rng = np.random.default_rng(seed)
    p[interior] += rng.uniform(-0.06, 0.06, size=(interior.sum(), 3))
    return mesh, interior


def _random_fibres(m, seed=1):
    f = np.random.default_rng(seed).normal(size=(m, 3))
    return f / np.linalg.norm(f, axis=1)[:, None]


def test_conductivity_to_diffusivity():
    # NVERSION §1: 0.1334 S/m / (1400 cm^-1 x 1 uF/cm^2) = 9.529e-5 m^2/s = 0.09529 mm^2/ms
    assert fem.diffusivity_mm2_per_ms(0.1334, 1400.0, 1.0) == pytest.approx(0.095286, rel=1e-4)
    assert fem.diffusivity_mm2_per_ms(0.01761, 1400.0, 1.0) == pytest.approx(0.0125786, rel=1e-4)


def test_stiffness_is_symmetric_with_zero_row_sums():
    mesh, _ = _jittered_box()
    k = fem.stiffness_matrix(mesh.points_mm, mesh.tets, 0.3, 0.05, _random_fibres(mesh.n_elements))
    assert abs(k - k.T).max() < 1e-14
    assert np.abs(np.asarray(k.sum(axis=1))).max() < 1e-13  # constants are in the kernel
    assert np.all(k.diagonal() > 0)


def test_linear_field_has_zero_interior_residual():
    # K u = -∫ div(D grad u) phi = 0 for linear u and constant D, except on the boundary
    mesh, interior = _jittered_box()
    fibre = np.array([1.0, 2.0, -0.5]) / np.linalg.norm([1.0, 2.0, -0.5])
    fibres = np.tile(fibre, (mesh.n_elements, 1))
    k = fem.stiffness_matrix(mesh.points_mm, mesh.tets, 0.3, 0.05, fibres)
    u = mesh.points_mm @ np.array([0.7, -1.3, 2.1]) + 4.0
    residual = k @ u
    assert np.abs(residual[interior]).max() < 1e-12
    assert np.abs(residual[~interior]).max() > 1e-3  # the boundary flux is not zero


def test_anisotropic_energy_along_and_across_the_fibre():
    # u = x has energy ∫ grad u · D grad u = D_xx |box|: D_l with fibres along x, D_t with
    # fibres along y, (D_l + D_t)/2 with fibres at 45 degrees in the xy plane
    mesh, _ = _jittered_box()
    volume = 2.0 * 1.5 * 1.0
    u = mesh.points_mm[:, 0]
    d_l, d_t = 0.3, 0.05
    for fibre, expected in (
        ((1.0, 0.0, 0.0), d_l),
        ((0.0, 1.0, 0.0), d_t),
        ((1.0, 1.0, 0.0), (d_l + d_t) / 2),
    ):
        fibres = np.tile(np.array(fibre) / np.linalg.norm(fibre), (mesh.n_elements, 1))
        k = fem.stiffness_matrix(mesh.points_mm, mesh.tets, d_l, d_t, fibres)
        assert u @ k @ u == pytest.approx(expected * volume, rel=1e-12)


def test_masses_sum_to_the_volume():
    mesh, _ = _jittered_box()
    lumped = fem.lumped_mass_vector(mesh.points_mm, mesh.tets)
    consistent = fem.consistent_mass_matrix(mesh.points_mm, mesh.tets)
    assert lumped.sum() == pytest.approx(3.0, rel=1e-13)
    assert consistent.sum() == pytest.approx(3.0, rel=1e-13)
    np.testing.assert_allclose(np.asarray(consistent.sum(axis=1)).ravel(), lumped, rtol=1e-12)
    # the consistent mass integrates products exactly: ∫ x dV = 2 * 3 / 2 on this box
    x = mesh.points_mm[:, 0]
    assert np.ones_like(x) @ consistent @ x == pytest.approx(3.0, rel=1e-12)
    assert x @ consistent @ x == pytest.approx(1.5 * 1.0 * 8.0 / 3.0, rel=1e-12)  # ∫ x² dV


def test_anisotropy_needs_fibres():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    with pytest.raises(ValueError, match="fibre"):
        fem.stiffness_matrix(mesh.points_mm, mesh.tets, 0.3, 0.05, None)
    k = fem.stiffness_matrix(mesh.points_mm, mesh.tets, 0.1, 0.1, None)  # isotropic is fine
    assert k.shape == (mesh.n_points, mesh.n_points)


def test_kuhn_box_stiffness_is_the_seven_point_stencil():
    # fibres along an axis: the diagonal edges of the Kuhn cubes carry no coupling, so an
    # interior row has 7 entries: -D_x h, -D_y h, -D_z h (twice each) and the diagonal
    mesh = box_mesh((2.0, 2.0, 2.0), 0.5)
    k = fem.stiffness_matrix(mesh.points_mm, mesh.tets, 0.3, 0.05, mesh.fibres)
    centre = int(np.argmin(np.linalg.norm(mesh.points_mm - 1.0, axis=1)))
    row = k.getrow(centre)
    assert row.nnz == 7
    np.testing.assert_allclose(
        np.sort(row.data), np.sort([-0.15, -0.15, -0.025, -0.025, -0.025, -0.025, 0.4]), rtol=1e-12
    )


def test_stability_bounds_bracket_the_largest_eigenvalue():
    mesh, _ = _jittered_box()
    fibres = _random_fibres(mesh.n_elements)
    k = fem.stiffness_matrix(mesh.points_mm, mesh.tets, 0.3, 0.05, fibres)
    lumped = fem.lumped_mass_vector(mesh.points_mm, mesh.tets)
    consistent = fem.consistent_mass_matrix(mesh.points_mm, mesh.tets)
    exact_lumped = np.linalg.eigvals(k.toarray() / lumped[:, None]).real.max()
    exact_consistent = np.linalg.eigvals(np.linalg.solve(consistent.toarray(), k.toarray()))
    exact_consistent = exact_consistent.real.max()
    assert fem.largest_eigenvalue(k, lumped) == pytest.approx(exact_lumped, rel=1e-5)
    assert fem.largest_eigenvalue(k, consistent) == pytest.approx(exact_consistent, rel=1e-5)
    assert exact_lumped <= fem.gershgorin_bound(k, lumped) < 3 * exact_lumped
    # M_C >= M_L / 5, so the consistent eigenvalue is at most 5x the lumped one
    factor = fem.CONSISTENT_OVER_LUMPED_EIGENVALUE
    assert exact_lumped < exact_consistent <= factor * exact_lumped
