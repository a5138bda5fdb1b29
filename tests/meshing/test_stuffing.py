"""Isosurface stuffing against analytic shapes: volume, boundary on the surface, conformity."""

import numpy as np

from cardiotwin.meshing.mesh import Mesh, boundary_triangles, check_mesh
from cardiotwin.meshing.quality import dihedral_angles_deg, edge_lengths_mm, node_components
from cardiotwin.meshing.stuffing import lattice_spacing_for_edge, split_prisms, stuff

R_IN, R_OUT = 12.0, 20.0
CENTRE = np.array([3.0, -7.0, 11.0])


def shell(points):
    r = np.linalg.norm(points - CENTRE, axis=1)
    return np.maximum(r - R_OUT, R_IN - r)


def test_spherical_shell_is_filled_exactly_and_conformingly():
    points, tets = stuff(shell, CENTRE - R_OUT, CENTRE + R_OUT, lattice_spacing_for_edge(2.0))
    mesh = check_mesh(Mesh(points, tets))  # positive volumes, no duplicates/degenerates
    exact_ml = 4.0 / 3.0 * np.pi * (R_OUT**3 - R_IN**3) / 1000.0
    # polyhedral approximation of two spheres at h ≈ 2.2 mm: chords lose ~ h²/(8R) of radius
    assert abs(mesh.volume_ml() / exact_ml - 1.0) < 0.01
    triangles, _ = boundary_triangles(tets)
    r = np.linalg.norm(points[np.unique(triangles)] - CENTRE, axis=1)
    # every boundary vertex lies on one of the two spheres (cut points and warped vertices)
    assert np.all(np.minimum(abs(r - R_IN), abs(r - R_OUT)) < 1e-6)
    # conforming: each boundary edge is shared by exactly two boundary triangles (a closed
    # 2-manifold; a hanging face inside would leave edges used once or thrice)
    edges = np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)
    # Euler characteristic of the two sphere surfaces: 2 + 2
    n_vertices = np.unique(triangles).size
    assert n_vertices - len(np.unique(edges, axis=0)) + len(triangles) == 4
    assert node_components(len(points), tets)[0] == 1
    # target mean edge (the BCC lattice has mean edge 0.91 h)
    assert abs(edge_lengths_mm(points, tets).mean() - 2.0) < 0.1
    # warping keeps boundary elements away from slivers; the quality goal of the issue
    dihedral = dihedral_angles_deg(points, tets)
    assert dihedral.min() > 5.0 and np.percentile(dihedral, 1) > 15.0


def test_nothing_inside_gives_an_empty_mesh():
    points, tets = stuff(lambda x: np.ones(len(x)), [0, 0, 0], [5, 5, 5], 1.0)
    assert points.shape == (0, 3) and tets.shape == (0, 4)


def test_prism_split_is_conforming_for_any_numbering():
    # two prisms sharing a quadrilateral face, numbered at random: the shared face must be
    # cut along the same diagonal from both sides (lowest-vertex rule)
    rng = np.random.default_rng(0)
    for _ in range(20):
        ids = rng.permutation(8)
        bottom = np.array([[ids[0], ids[1], ids[2]], [ids[1], ids[3], ids[2]]])
        top = np.array([[ids[4], ids[5], ids[6]], [ids[5], ids[7], ids[6]]])
        tets = split_prisms(bottom, top)
        faces = np.sort(tets[:, [[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]]].reshape(-1, 3), 1)
        quad = {ids[1], ids[2], ids[5], ids[6]}
        on_quad = [f for f in faces if set(f) <= quad]
        _, counts = np.unique(np.array(on_quad), axis=0, return_counts=True)
        assert len(on_quad) == 4 and np.all(counts == 2)  # two triangles, each seen twice
