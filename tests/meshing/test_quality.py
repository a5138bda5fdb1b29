"""Quality statistics against elements with known angles; islands."""

import logging

import numpy as np

from cardiotwin.meshing.mesh import Mesh, box_mesh
from cardiotwin.meshing.quality import (
    aspect_ratios,
    dihedral_angles_deg,
    drop_islands,
    quality_summary,
)

REGULAR = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)


def test_regular_tetrahedron():
    tets = np.array([[0, 1, 2, 3]])
    # a regular tetrahedron's dihedral angle is arccos(1/3) = 70.5288°, its R/(3r) is 1
    np.testing.assert_allclose(dihedral_angles_deg(REGULAR, tets), np.degrees(np.arccos(1 / 3)))
    np.testing.assert_allclose(aspect_ratios(REGULAR, tets), 1.0)


def test_kuhn_cube_angles_and_a_sliver():
    mesh = box_mesh((1.0, 1.0, 1.0), 1.0)
    angles = np.round(dihedral_angles_deg(mesh.points_mm, mesh.tets), 6)
    # Kuhn tetrahedra (path tetrahedra of the cube) have dihedral angles of 45°, 60° and 90°
    assert set(np.unique(angles)) == {45.0, 60.0, 90.0}
    sliver = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0.01]], dtype=float)
    assert dihedral_angles_deg(sliver, np.array([[0, 1, 2, 3]])).min() < 2.0
    assert aspect_ratios(sliver, np.array([[0, 1, 2, 3]]))[0] > 10.0


def test_drop_islands_keeps_the_largest_piece(caplog):
    big = box_mesh((4.0, 4.0, 4.0), 1.0)
    small = box_mesh((1.0, 1.0, 1.0), 1.0, origin_mm=(10.0, 0.0, 0.0))
    mesh = Mesh(
        np.vstack([big.points_mm, small.points_mm]),
        np.vstack([big.tets, small.tets + big.n_points]),
        surfaces={"tri": np.array([[0, 1, 2], [big.n_points, big.n_points + 1, big.n_points + 2]])},
    )
    with caplog.at_level(logging.WARNING):
        kept, dropped = drop_islands(mesh)
    assert kept.n_elements == big.n_elements and kept.n_points == big.n_points
    assert abs(dropped - 1.0 / 65.0) < 1e-12  # 1 mm³ of 65 mm³
    assert len(kept.surfaces["tri"]) == 1
    assert "dropped 1 island" in caplog.text


def test_summary_reports_volumes_and_the_goal():
    mesh = box_mesh((2.0, 1.0, 1.0), 0.5, region=3)
    summary = quality_summary(mesh)
    assert summary["tags"]["3"]["volume_ml"] == 0.002
    assert summary["inverted_elements"] == 0 and summary["connected_components"] == 1
    assert summary["dihedral_deg"]["min"] == 45.0 or abs(summary["dihedral_deg"]["min"] - 45) < 1e-9
    assert summary["goal"]["met"] is True
    flipped = Mesh(mesh.points_mm, mesh.tets[:, [0, 1, 3, 2]])
    assert quality_summary(flipped)["inverted_elements"] == mesh.n_elements
    assert quality_summary(flipped)["goal"]["met"] is False
