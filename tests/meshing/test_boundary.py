"""Boundary faces and their adjacency, including non-manifold edges (an RV insertion)."""

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from cardiotwin.meshing.boundary import boundary_faces, face_adjacency
from cardiotwin.meshing.ellipsoid import biv_ellipsoid
from cardiotwin.meshing.mesh import boundary_triangles, box_mesh


def pieces(n: int, first, second) -> int:
    graph = sparse.coo_matrix((np.ones(len(first)), (first, second)), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[0]


def test_boundary_faces_are_the_reference_ones_with_their_owners():
    mesh = box_mesh((4.0, 3.0, 2.0), 1.0)
    faces, owner = boundary_faces(mesh.tets)
    reference, reference_owner = boundary_triangles(mesh.tets)
    assert sorted(map(tuple, faces.tolist())) == sorted(map(tuple, reference.tolist()))
    assert sorted(zip(map(tuple, faces.tolist()), owner.tolist(), strict=True)) == sorted(
        zip(map(tuple, reference.tolist()), reference_owner.tolist(), strict=True)
    )


def test_non_manifold_edges_pair_faces_round_the_empty_sectors():
    # the analytic RV cavity closes to a line at the insertions, where four boundary faces
    # meet (LV epicardium, RV rim, RV free wall, septum): paired across the empty sectors the
    # boundary without the base is three surfaces (epicardium, LV cavity, RV cavity);
    # ignoring those edges cuts the epicardium apart (5 pieces on this mesh)
    mesh = biv_ellipsoid(1.5)
    faces = np.concatenate([mesh.surfaces[n] for n in ("epi", "endo", "rv-endo", "rv-septum")])
    assert pieces(len(faces), *face_adjacency(faces)[:2]) > 3
    first, second, edges = face_adjacency(faces, mesh.points_mm)
    assert pieces(len(faces), first, second) == 3
    # a pair never joins a cavity face to an epicardial face
    epi = np.zeros(len(faces), bool)
    epi[: len(mesh.surfaces["epi"])] = True
    assert np.all(epi[first] == epi[second])
    assert np.all(np.sort(edges, axis=1) == edges)
