"""Element quality of a tetrahedral mesh: edges, dihedral angles, aspect, validity, islands.

The statistics a modeller checks before simulating (meshtool's ``query quality``, MMG's
report): edge lengths (mm), dihedral angles (degrees; 70.53° for a regular tetrahedron,
near 0° or 180° for slivers), the aspect ratio ``R / (3 r)`` (circumradius over three times
the inradius: 1 for a regular tetrahedron, large for a degenerate one), inverted and
degenerate element counts, and connected components. The goal set for patient meshes: no
dihedral angle below :data:`MIN_DIHEDRAL_GOAL_DEG`, first percentile at least
:data:`P1_DIHEDRAL_GOAL_DEG`, no inverted or degenerate element.
"""

from __future__ import annotations

import logging

import numpy as np

from cardiotwin.meshing.mesh import (
    DEGENERATE_RELATIVE_VOLUME,
    Mesh,
    group_rows,
    volumes_and_longest_edges,
)
from cardiotwin.meshing.tags import TISSUE_NAMES

log = logging.getLogger(__name__)

#: quality goals of the meshing issue: no dihedral below 5°, 1st percentile ≥ 15°
MIN_DIHEDRAL_GOAL_DEG = 5.0
P1_DIHEDRAL_GOAL_DEG = 15.0

_EDGE_PAIRS = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])
#: the two faces (as the vertex left out) that meet at each edge of _EDGE_PAIRS
_FACES_AT_EDGE = np.array([(2, 3), (1, 3), (1, 2), (0, 3), (0, 2), (0, 1)])
#: elements per chunk of the geometric statistics (bounds their temporary memory)
CHUNK = 1_000_000


def unique_edges(tets: np.ndarray) -> np.ndarray:
    """(e, 2) node pairs (lower index first) of every edge of the mesh, each once."""
    tets = np.asarray(tets, dtype=np.int64)
    n = int(tets.max()) + 1 if tets.size else 1
    keys = np.empty(6 * len(tets), dtype=np.int64)
    for k, (a, b) in enumerate(_EDGE_PAIRS):
        lo, hi = np.minimum(tets[:, a], tets[:, b]), np.maximum(tets[:, a], tets[:, b])
        keys[k * len(tets) : (k + 1) * len(tets)] = lo * n + hi
    keys = np.unique(keys)  # 1-D keys sort far faster than rows (np.unique axis=0)
    return np.stack([keys // n, keys % n], axis=1)


def edge_lengths_mm(points_mm: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Length (mm) of every edge of the mesh, each edge once."""
    edges = unique_edges(tets)
    return np.linalg.norm(points_mm[edges[:, 0]] - points_mm[edges[:, 1]], axis=1)


def dihedral_angles_deg(points_mm: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """(m, 6) interior dihedral angle at each edge of each element, degrees."""
    out = np.empty((len(tets), 6))
    for start in range(0, len(tets), CHUNK):
        x = points_mm[tets[start : start + CHUNK]]
        # outward-agnostic face normals: face opposite vertex v
        normals = []
        for v in range(4):
            a, b, c = (x[:, w] for w in range(4) if w != v)
            normal = np.cross(b - a, c - a)
            # orient away from the opposite vertex (outward)
            flip = np.einsum("ij,ij->i", normal, x[:, v] - a) > 0
            normal[flip] *= -1
            norm = np.linalg.norm(normal, axis=1, keepdims=True)
            normals.append(normal / np.maximum(norm, 1e-300))
        normals = np.stack(normals, axis=1)
        n1 = normals[:, _FACES_AT_EDGE[:, 0]]
        n2 = normals[:, _FACES_AT_EDGE[:, 1]]
        cosine = np.clip(np.einsum("ijk,ijk->ij", n1, n2), -1.0, 1.0)
        out[start : start + CHUNK] = 180.0 - np.degrees(np.arccos(cosine))
    return out


def aspect_ratios(points_mm: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """(m,) ``R / (3 r)`` per element: 1 for a regular tetrahedron, ∞ when degenerate."""
    out = np.empty(len(tets))
    for start in range(0, len(tets), CHUNK):
        x = points_mm[tets[start : start + CHUNK]]
        a, b, c = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0], x[:, 3] - x[:, 0]
        six_volume = np.abs(np.einsum("ij,ij->i", a, np.cross(b, c)))
        area = 0.0
        for v in range(4):
            p, q, r = (x[:, w] for w in range(4) if w != v)
            area = area + 0.5 * np.linalg.norm(np.cross(q - p, r - p), axis=1)
        inradius = 0.5 * six_volume / np.maximum(area, 1e-300)  # r = 3V / A
        # circumradius: |a²(b×c) + b²(c×a) + c²(a×b)| / (2 a·(b×c))
        numerator = (
            np.einsum("ij,ij->i", a, a)[:, None] * np.cross(b, c)
            + np.einsum("ij,ij->i", b, b)[:, None] * np.cross(c, a)
            + np.einsum("ij,ij->i", c, c)[:, None] * np.cross(a, b)
        )
        circumradius = np.linalg.norm(numerator, axis=1) / np.maximum(2.0 * six_volume, 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = circumradius / (3.0 * inradius)
        out[start : start + CHUNK] = np.where(six_volume > 0, ratio, np.inf)
    return out


def node_components(n_points: int, tets: np.ndarray) -> tuple[int, np.ndarray]:
    """Connected components of the elements (joined through shared nodes).

    Returns ``(count, label per element)``, labels 0..count-1 ordered by size (0 largest).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    tets = np.asarray(tets, dtype=np.int64)
    if tets.size == 0:
        return 0, np.empty(0, dtype=np.int64)
    rows = np.repeat(tets[:, 0], 3)
    cols = tets[:, 1:].reshape(-1)
    graph = coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), (n_points, n_points))
    _, node_label = connected_components(graph, directed=False)
    element_label = node_label[tets[:, 0]]
    used, element_label = np.unique(element_label, return_inverse=True)
    sizes = np.bincount(element_label)
    rank = np.empty(used.size, dtype=np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(used.size)
    return used.size, rank[element_label]


def shared_facet_components(cells: np.ndarray, facets: np.ndarray) -> tuple[int, np.ndarray]:
    """Components of cells joined through shared facets: ``facets`` lists the local vertex
    indices of each facet (a tetrahedron's faces, :data:`~cardiotwin.meshing.mesh.TET_FACES`,
    or a triangle's edges). Returns ``(count, component per cell)``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    cells = np.asarray(cells, dtype=np.int64)
    per_cell = len(facets)
    keys = np.sort(cells[:, facets].reshape(len(cells) * per_cell, -1), axis=1)
    owner = np.repeat(np.arange(len(cells)), per_cell)
    inverse, _ = group_rows(keys)
    order = np.argsort(inverse, kind="stable")
    shared = np.nonzero(inverse[order][1:] == inverse[order][:-1])[0]
    a, b = owner[order][shared], owner[order][shared + 1]
    graph = coo_matrix((np.ones(a.size), (a, b)), (len(cells), len(cells)))
    return connected_components(graph, directed=False)


def keep_elements(mesh: Mesh, keep: np.ndarray) -> Mesh:
    """The mesh restricted to elements ``keep`` (bool mask), unused nodes removed.

    Element fields follow; surfaces keep the triangles whose nodes all survive; node sets and
    point fields are renumbered.
    """
    keep = np.asarray(keep, dtype=bool)
    tets = mesh.tets[keep]
    used = np.zeros(mesh.n_points, dtype=bool)
    used[tets.reshape(-1)] = True
    new_index = np.cumsum(used) - 1
    surfaces = {name: new_index[tri[used[tri].all(axis=1)]] for name, tri in mesh.surfaces.items()}
    node_sets = {name: new_index[nodes[used[nodes]]] for name, nodes in mesh.node_sets.items()}
    return Mesh(
        points_mm=mesh.points_mm[used],
        tets=new_index[tets],
        region=mesh.region[keep],
        fibres=None if mesh.fibres is None else mesh.fibres[keep],
        sheets=None if mesh.sheets is None else mesh.sheets[keep],
        surfaces=surfaces,
        node_sets=node_sets,
        point_data={name: values[used] for name, values in mesh.point_data.items()},
        affine=mesh.affine,
    )


def drop_islands(mesh: Mesh, *, source: str = "mesh") -> tuple[Mesh, float]:
    """Keep the largest connected piece of ``mesh``; log a warning naming what was dropped.

    Returns ``(mesh, dropped volume fraction)``; the caller decides whether that fraction is
    acceptable (a wall in fragments is bad input, a few stray voxels are not).
    """
    count, label = node_components(mesh.n_points, mesh.tets)
    if count <= 1:
        return mesh, 0.0
    volumes = np.abs(volumes_and_longest_edges(mesh.points_mm, mesh.tets)[0])
    total = volumes.sum()
    dropped = float(volumes[label > 0].sum() / total) if total > 0 else 0.0
    log.warning(
        "%s: dropped %d island(s) not connected to the main mesh (%d elements, %.2f %% of the "
        "volume)",
        source,
        count - 1,
        int(np.count_nonzero(label > 0)),
        100.0 * dropped,
    )
    return keep_elements(mesh, label == 0), dropped


def _stats(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"min": None, "p1": None, "p5": None, "mean": None, "median": None,
                "p99": None, "max": None}  # fmt: skip
    p1, p5, median, p99 = np.percentile(finite, [1, 5, 50, 99])
    return {
        "min": float(finite.min()),
        "p1": float(p1),
        "p5": float(p5),
        "mean": float(finite.mean()),
        "median": float(median),
        "p99": float(p99),
        "max": float(values.max()),
    }


def quality_summary(mesh: Mesh) -> dict:
    """JSON-ready quality report: counts, volumes per tag (ml), edge (mm), dihedral (deg),
    aspect statistics, inverted / degenerate counts, components and the goal verdict."""
    volumes, longest = volumes_and_longest_edges(mesh.points_mm, mesh.tets)
    degenerate = np.abs(volumes) < DEGENERATE_RELATIVE_VOLUME * longest**3
    inverted = (volumes < 0) & ~degenerate
    dihedral = dihedral_angles_deg(mesh.points_mm, mesh.tets)
    count, _ = node_components(mesh.n_points, mesh.tets)
    tags = {}
    for tag in np.unique(mesh.region):
        name = TISSUE_NAMES.get(int(tag), f"tag {int(tag)}")
        selected = mesh.region == tag
        tags[str(int(tag))] = {
            "name": name,
            "elements": int(np.count_nonzero(selected)),
            "volume_ml": float(np.abs(volumes[selected]).sum() / 1000.0),
        }
    dihedral_stats = _stats(dihedral)
    goal_met = bool(
        not inverted.any()
        and not degenerate.any()
        and dihedral_stats["min"] is not None
        and dihedral_stats["min"] >= MIN_DIHEDRAL_GOAL_DEG
        and dihedral_stats["p1"] >= P1_DIHEDRAL_GOAL_DEG
    )
    return {
        "nodes": int(mesh.n_points),
        "elements": int(mesh.n_elements),
        "volume_ml": float(np.abs(volumes).sum() / 1000.0),
        "tags": tags,
        "edge_mm": _stats(edge_lengths_mm(mesh.points_mm, mesh.tets)),
        "dihedral_deg": dihedral_stats,
        "aspect_ratio": _stats(aspect_ratios(mesh.points_mm, mesh.tets)),
        "inverted_elements": int(np.count_nonzero(inverted)),
        "degenerate_elements": int(np.count_nonzero(degenerate)),
        "connected_components": int(count),
        "goal": {
            "min_dihedral_deg": MIN_DIHEDRAL_GOAL_DEG,
            "p1_dihedral_deg": P1_DIHEDRAL_GOAL_DEG,
            "no_inverted_or_degenerate": True,
            "met": goal_met,
        },
    }
