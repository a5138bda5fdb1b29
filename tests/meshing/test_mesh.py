"""The Mesh type: box meshes, VTU round trip, atomic writes and validity checks."""

import numpy as np
import pytest

from cardiotwin.meshing.mesh import Mesh, MeshError, box_mesh, check_mesh, read_mesh, write_mesh


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


def test_vtu_round_trip(tmp_path):
    mesh = box_mesh((1.0, 1.0, 0.5), 0.5)
    mesh.region[::3] = 2
    path = write_mesh(mesh, tmp_path / "slab.vtu")
    back = read_mesh(path)
    np.testing.assert_array_equal(back.points_mm, mesh.points_mm)
    np.testing.assert_array_equal(back.tets, mesh.tets)
    np.testing.assert_array_equal(back.region, mesh.region)
    np.testing.assert_array_equal(back.fibres, mesh.fibres)
    assert back.region.dtype == np.int32 and back.tets.dtype == np.int64
    assert [p.name for p in tmp_path.iterdir()] == ["slab.vtu"]  # no temporary left


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import meshio

    def broken(path, *args, **kwargs):
        with open(path, "w") as fh:
            fh.write("<VTKFile")  # half a file, then the disk fills up
        raise OSError("disk full")

    monkeypatch.setattr(meshio, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        write_mesh(box_mesh((1.0, 1.0, 1.0), 0.5), tmp_path / "mesh.vtu")
    assert list(tmp_path.iterdir()) == []


def test_read_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.vtu"):
        read_mesh(tmp_path / "nope.vtu")


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
