"""Macro-re-entry round openings (pipeline/induction/anatomy.py), on analytic activation
maps over a sheet with two holes named like the atrial mesher names openings."""

import numpy as np
import pytest

from cardiotwin.meshing.mesh import Mesh, boundary_triangles, box_mesh
from cardiotwin.pipeline.induction.anatomy import circled, opening_loops, opening_windings

HOLES_MM = ((18.0, 20.0), (44.0, 20.0))
CL_MS = 250.0


def _sheet():
    """A 60 x 40 x 1 mm sheet with 3 mm holes ``vein-1``, ``vein-2`` and a surface named
    ``epi`` that is not an opening; tissue-node numbering and edge adjacency as detection
    has them."""
    import scipy.sparse as sp

    mesh = box_mesh((60.0, 40.0, 1.0), 1.0)
    c = mesh.element_centres_mm()
    inside = np.zeros(len(c), dtype=bool)
    for x, y in HOLES_MM:
        inside |= np.hypot(c[:, 0] - x, c[:, 1] - y) < 3.0
    mesh = Mesh(mesh.points_mm, mesh.tets[~inside], region=mesh.region[~inside])
    triangles, _ = boundary_triangles(mesh.tets)
    centre = mesh.points_mm[triangles].mean(axis=1)
    for k, (x, y) in enumerate(HOLES_MM, start=1):
        mesh.surfaces[f"vein-{k}"] = triangles[np.hypot(centre[:, 0] - x, centre[:, 1] - y) < 4]
    mesh.surfaces["epi"] = triangles[centre[:, 2] > 0.99]
    tissue_nodes = np.unique(mesh.tets)
    local = np.full(mesh.n_points, -1)
    local[tissue_nodes] = np.arange(len(tissue_nodes))
    tets = local[mesh.tets]
    pairs = [(a, b) for a in range(4) for b in range(4) if a != b]
    rows = np.concatenate([tets[:, a] for a, _ in pairs])
    cols = np.concatenate([tets[:, b] for _, b in pairs])
    n = len(tissue_nodes)
    adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    return mesh, tissue_nodes, mesh.points_mm[tissue_nodes], adjacency


@pytest.mark.parametrize("sense", [1, -1])
def test_a_wave_circling_one_vein_is_macro_reentry_round_it_alone(sense):
    mesh, tissue_nodes, points, adjacency = _sheet()
    loops = opening_loops(mesh.surfaces, tissue_nodes, mesh.n_points, points, adjacency)
    assert [loop.name for loop in loops] == ["vein-1", "vein-2"]  # "epi" is not an opening
    x, y = HOLES_MM[0]
    angle = np.mod(sense * np.arctan2(points[:, 1] - y, points[:, 0] - x), 2 * np.pi)
    activation = angle / (2 * np.pi) * CL_MS
    turns = opening_windings(loops, points, activation, CL_MS)
    assert abs(abs(turns["vein-1"]) - 1.0) < 0.05 and abs(turns["vein-2"]) < 0.05
    assert circled(turns) == ["vein-1"]
    # a plane wave passes both veins and circles neither
    plane = opening_windings(loops, points, points[:, 0] / 0.7, CL_MS)
    assert circled(plane) == [] and all(abs(w) < 0.05 for w in plane.values())
    # a loop most of whose nodes did not activate gives no answer, not a winding of 0
    partial = np.where(points[:, 1] > HOLES_MM[0][1] - 2.0, np.nan, activation)
    assert opening_windings(loops, points, partial, CL_MS)["vein-1"] is None
