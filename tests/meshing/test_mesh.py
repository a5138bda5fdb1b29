"""The Mesh type: box meshes, boundary faces and validity checks (files: test_io.py)."""

import numpy as np
import pytest

from cardiotwin.meshing.mesh import Mesh, MeshError, boundary_triangles, box_mesh, check_mesh


def _faces(tets):
    faces = np.concatenate([tets[:, [0, 1, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 3]],
                            tets[:, [1, 2, 3]]])  # fmt: skip
    return np.unique(np.sort(faces, axis=1), axis=0, return_counts=True)[1]


def test_box_mesh_counts_volume_and_orientation():
    mesh = box_mesh((2.0, 1.0, 1.5), 0.5)
    assert mesh.n_points == 5 * 3 * 4
    assert mesh.n_elements == 4 * 2 * 3 * 6  # 6 Kuhn tetrahedra per cube
    volumes = mesh.signed_volumes_mm3()
    np.testing.assert_allclose(volumes, 0.5**3 / 6)  # all positive, all equal
    assert volumes.sum() == pytest.approx(2.0 * 1.0 * 1.5)
    np.testing.assert_allclose(mesh.fibres, [[1.0, 0.0, 0.0]] * mesh.n_elements)
    assert mesh.points_mm.max(axis=0) == pytest.approx([2.0, 1.0, 1.5])
    check_mesh(mesh)


def test_box_mesh_is_conforming():
    # interior faces are shared by exactly two tetrahedra, boundary faces by one; the
    # boundary of a 2 x 1 x 1.5 mm box is 13 mm² = 13 / (0.5²/2) triangles
    counts = _faces(box_mesh((2.0, 1.0, 1.5), 0.5).tets)
    assert set(np.unique(counts)) == {1, 2}
    assert np.count_nonzero(counts == 1) == 2 * (2.0 + 3.0 + 1.5) / (0.5**2 / 2)


def test_box_mesh_rejects_bad_spacing():
    with pytest.raises(ValueError, match="positive"):
        box_mesh((1.0, 1.0, 1.0), 0.0)
    with pytest.raises(ValueError, match="positive"):
        box_mesh((1.0, 1.0, 1.0), -0.5)
    with pytest.raises(ValueError, match="whole number"):
        box_mesh((20.0, 7.0, 3.0), 0.3)


def test_boundary_triangles_point_outwards():
    mesh = box_mesh((2.0, 1.0, 1.5), 0.5)
    triangles, owner = boundary_triangles(mesh.tets)
    x = mesh.points_mm[triangles]
    normals = np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0])
    outward = x.mean(axis=1) - mesh.element_centres_mm()[owner]
    assert np.all(np.einsum("ij,ij->i", normals, outward) > 0)
    # closed surface: the area vectors cancel, the total area is the box's 13 mm²
    np.testing.assert_allclose(normals.sum(axis=0) / 2, 0.0, atol=1e-12)
    assert np.linalg.norm(normals, axis=1).sum() / 2 == pytest.approx(13.0)


def test_duplicate_element_is_named():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    tets = np.vstack([mesh.tets, mesh.tets[[4]]])
    with pytest.raises(MeshError, match=r"duplicate elements .* 48;"):
        check_mesh(Mesh(mesh.points_mm, tets))


def test_inverted_element_is_named():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    mesh.tets[7, [0, 1]] = mesh.tets[7, [1, 0]]
    with pytest.raises(MeshError, match=r"inverted elements \(negative volume\) 7;"):
        check_mesh(mesh)


def test_degenerate_element_is_named():
    points = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], float)
    tets = np.array([[0, 1, 2, 3], [0, 1, 4, 2]])  # the second one is flat (z = 0)
    with pytest.raises(MeshError, match=r"degenerate elements .* 1;"):
        check_mesh(Mesh(points, tets))


def test_out_of_range_and_nan_points_are_named():
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    mesh.tets[3, 2] = mesh.n_points + 5
    with pytest.raises(MeshError, match=r"elements 3 refer to nodes outside"):
        check_mesh(mesh)
    mesh = box_mesh((1.0, 1.0, 1.0), 0.5)
    mesh.points_mm[4, 1] = np.nan
    with pytest.raises(MeshError, match=r"non-finite .* nodes 4;"):
        check_mesh(mesh)


def test_shape_errors():
    with pytest.raises(MeshError, match=r"tets must have shape \(m, 4\)"):
        Mesh(np.zeros((4, 3)), np.zeros((1, 3), int))
    with pytest.raises(MeshError, match="one tag per element"):
        Mesh(np.zeros((4, 3)), np.array([[0, 1, 2, 3]]), region=np.array([1, 2]))
