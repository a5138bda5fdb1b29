"""Analytic meshes: exact surfaces, conforming positive tetrahedra, the wall volume."""

from itertools import combinations

import numpy as np
import pytest

from cardiotwin.meshing.boundary import boundary_faces
from cardiotwin.meshing.ellipsoid import (
    AtrialGeometry,
    LVGeometry,
    RVGeometry,
    atrial_shell,
    biv_ellipsoid,
    lv_ellipsoid,
)
from cardiotwin.meshing.mesh import boundary_triangles, check_mesh


def min_dihedral_deg(mesh) -> float:
    x = mesh.points_mm[mesh.tets]
    normals = []
    for face in ((1, 2, 3), (0, 3, 2), (0, 1, 3), (0, 2, 1)):
        a, b, c = (x[:, k] for k in face)
        n = np.cross(b - a, c - a)
        normals.append(n / np.linalg.norm(n, axis=1, keepdims=True))
    cosines = [np.einsum("ij,ij->i", normals[i], normals[j]) for i, j in combinations(range(4), 2)]
    return float(180.0 - np.degrees(np.arccos(np.clip(np.max(cosines), -1, 1))))


def face_set(triangles) -> set:
    return set(map(tuple, np.sort(triangles, axis=1).tolist()))


def assert_surfaces_partition_boundary(mesh):
    # the named surfaces are the boundary, each face once (a conforming mesh has no other)
    faces, _ = boundary_triangles(mesh.tets)
    named = [face_set(t) for t in mesh.surfaces.values()]
    assert sum(len(s) for s in named) == len(faces)
    assert set().union(*named) == face_set(faces)


def test_lv_surfaces_lie_exactly_on_their_ellipsoids_and_the_base_plane():
    g = LVGeometry.small()
    mesh = check_mesh(lv_ellipsoid(1.5, g))
    p = mesh.points_mm

    def on_ellipsoid(nodes, a, c):
        return (p[nodes, 0] ** 2 + p[nodes, 1] ** 2) / a**2 + p[nodes, 2] ** 2 / c**2

    endo, epi = np.unique(mesh.surfaces["endo"]), np.unique(mesh.surfaces["epi"])
    np.testing.assert_allclose(
        on_ellipsoid(endo, g.endo_radius_mm, g.endo_length_mm), 1, atol=1e-12
    )
    np.testing.assert_allclose(on_ellipsoid(epi, g.epi_radius_mm, g.epi_length_mm), 1, atol=1e-12)
    assert np.all(p[np.unique(mesh.surfaces["base"]), 2] == g.base_height_mm)
    assert_surfaces_partition_boundary(mesh)
    assert min_dihedral_deg(mesh) > 25.0  # structured prisms: no slivers (measured 32°)


def test_lv_wall_volume_converges_to_the_analytic_volume():
    # exact volume of the truncated ellipsoidal shell (closed-form integral in LVGeometry);
    # the inscribed polyhedron is smaller by O(h²)
    g = LVGeometry()
    exact = g.wall_volume_ml()
    errors = [abs(lv_ellipsoid(h, g).volume_ml() - exact) / exact for h in (4.0, 2.0)]
    assert errors[1] < 0.003
    assert errors[1] < errors[0] / 2.5


def test_surface_normals_point_out_of_the_tissue():
    mesh = lv_ellipsoid(2.0, LVGeometry.small())
    faces, _ = boundary_faces(mesh.tets)  # outward by construction; compare with the surfaces
    assert face_set(faces) == face_set(np.concatenate(list(mesh.surfaces.values())))
    x = mesh.points_mm[mesh.surfaces["endo"]]
    normal = np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])
    radial = x.mean(axis=1) * [1, 1, 0]
    assert np.mean(np.einsum("ij,ij->i", normal, radial) < 0) > 0.99  # into the cavity


def test_biventricular_mesh_has_a_crescent_rv_on_the_septal_side():
    g, rv = LVGeometry.small(), RVGeometry.small()
    mesh = check_mesh(biv_ellipsoid(1.5, g, rv))
    assert_surfaces_partition_boundary(mesh)
    p = mesh.points_mm
    septum = np.unique(mesh.surfaces["rv-septum"])
    free = np.unique(mesh.surfaces["rv-endo"])
    # the septum's RV face is the LV epicardium; the free wall lies outside it on the +x side
    level = (p[septum, 0] ** 2 + p[septum, 1] ** 2) / g.epi_radius_mm**2
    np.testing.assert_allclose(level + p[septum, 2] ** 2 / g.epi_length_mm**2, 1, atol=1e-12)
    outside = (p[free, 0] ** 2 + p[free, 1] ** 2) / g.epi_radius_mm**2
    assert np.all(outside + p[free, 2] ** 2 / g.epi_length_mm**2 >= 1 - 1e-12)
    angle = np.degrees(np.arctan2(p[free, 1], p[free, 0]))
    assert np.all(np.abs(angle) <= rv.half_angle_deg + 1e-9)
    assert min_dihedral_deg(mesh) > 10.0  # measured 16.9°


def test_atrial_shell_has_round_openings_through_a_layered_wall():
    g = AtrialGeometry()
    mesh = check_mesh(atrial_shell(1.5, g))
    assert_surfaces_partition_boundary(mesh)
    assert set(mesh.surfaces) == {"endo", "epi", "valve", "vein-1", "vein-2", "vein-3", "vein-4"}
    p = mesh.points_mm
    r = np.linalg.norm(p, axis=1)
    np.testing.assert_allclose(r[np.unique(mesh.surfaces["endo"])], g.radius_mm, atol=1e-9)
    np.testing.assert_allclose(
        r[np.unique(mesh.surfaces["epi"])], g.radius_mm + g.wall_mm, atol=1e-9
    )
    assert len(np.unique(np.round(r, 9))) >= 3  # at least two element layers
    # every rim node lies on its opening's circle (angular radius from the opening centre)
    for name, (polar, azimuth, radius) in zip(
        ["valve", "vein-1", "vein-2", "vein-3", "vein-4"], [g.valve, *g.veins], strict=True
    ):
        t, a = np.radians(polar), np.radians(azimuth)
        centre = np.array([np.sin(t) * np.cos(a), np.sin(t) * np.sin(a), np.cos(t)])
        nodes = np.unique(mesh.surfaces[name])
        angle = np.degrees(np.arccos(np.clip(p[nodes] @ centre / r[nodes], -1, 1)))
        np.testing.assert_allclose(angle, radius, atol=1e-6)
    assert min_dihedral_deg(mesh) > 10.0  # measured 13.5°


@pytest.mark.parametrize(
    "call",
    [
        lambda: lv_ellipsoid(0.0),
        lambda: lv_ellipsoid(float("nan")),
        lambda: LVGeometry(endo_radius_mm=20, epi_radius_mm=15),
        lambda: LVGeometry(base_height_mm=80),
        lambda: atrial_shell(1.5, layers=1),
    ],
)
def test_bad_geometry_is_refused(call):
    with pytest.raises(ValueError):
        call()
