"""The conducting tissue of a mesh as a graph, and the anchors a lesion line may end on.

**Tissue graph** (:class:`TissueGraph`): the nodes of conducting elements (tags not in
``blocking``: by default :data:`~cardiotwin.meshing.tags.NONCONDUCTING`, dense scar and
lesions; the ablation stage passes the tags its tissue configuration does not conduct, so in
an atrium, where dense fibrosis conducts, only lesions) joined by the edges of those elements: the
P1 finite-element coupling, so two nodes exchange current exactly when they share an edge of
a conducting element. Removing a set of nodes from this graph (making every element that
touches them non-conducting) removes every path of conduction through them. Each node
carries its lumped volume (a quarter of each conducting element around it, mm³), whether it
touches border zone / fibrosis, and the numbering maps to and from mesh nodes.

**Anchors** (:func:`anchors`): where a clinical ablation line may end without leaving a gap
the wave can turn around: non-conducting tissue (dense scar, earlier lesions) and the mesh's
*openings*: named surfaces other than endocardium / epicardium (``base``, ``mitral``,
``vein-1``..). A surface whose name has ``endo`` or ``epi`` as a word (``endo``, ``lv-epi``,
``rv-endo``) is a wall face, not an opening: a line ending there has not reached an obstacle.
A mesh without named surfaces anchors on non-conducting tissue only. Anchors are grouped into
connected components (one scar island, one opening, or both where they touch), so a line can
be checked to join two *different* obstacles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from cardiotwin.meshing.mesh import TET_EDGES, Mesh
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, NONCONDUCTING, TISSUE_NAMES

#: surface names that are wall faces, not openings (a word of the name)
WALL_FACE = re.compile(r"(^|[-_.])(endo|epi)([-_.]|$)", re.IGNORECASE)


def unique_edges(tets: np.ndarray) -> np.ndarray:
    """(E, 2) sorted node pairs of the edges of ``tets``, each once (one int64 key per pair:
    a 1-D unique, far faster than ``np.unique(axis=0)`` on millions of rows)."""
    tets = np.asarray(tets, dtype=np.int64)
    if tets.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    low = np.concatenate([np.minimum(tets[:, a], tets[:, b]) for a, b in TET_EDGES])
    high = np.concatenate([np.maximum(tets[:, a], tets[:, b]) for a, b in TET_EDGES])
    base = int(tets.max()) + 1
    keys = np.sort(low * base + high)
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
    return np.stack([keys // base, keys % base], axis=1)


@dataclass(eq=False)
class TissueGraph:
    """The conducting tissue of ``mesh`` as a node graph (see the module docstring).

    ``nodes`` (N,) mesh indices of tissue nodes (ascending); ``local`` (n_mesh,) the tissue
    index of each mesh node (−1: no tissue); ``edges`` (E, 2) tissue-index pairs;
    ``length_mm`` (E,); ``volume_mm3`` (N,) lumped volume; ``border`` (N,) bool, the node
    touches conducting border zone / fibrosis (or dense fibrosis, where it conducts).
    """

    mesh: Mesh
    conducting: np.ndarray
    nodes: np.ndarray
    local: np.ndarray
    edges: np.ndarray
    length_mm: np.ndarray
    volume_mm3: np.ndarray
    border: np.ndarray

    @classmethod
    def of(cls, mesh: Mesh, blocking: tuple[int, ...] = NONCONDUCTING) -> TissueGraph:
        """The graph of ``mesh``'s conducting tissue: elements whose tag is not in
        ``blocking`` (the non-conducting tags of the tissue the mesh is simulated with)."""
        conducting = ~np.isin(mesh.region, blocking)
        tets = mesh.tets[conducting]
        used = np.zeros(mesh.n_points, dtype=bool)
        used[tets.ravel()] = True
        nodes = np.nonzero(used)[0]
        local = np.full(mesh.n_points, -1, dtype=np.int64)
        local[nodes] = np.arange(nodes.size)
        edges = local[unique_edges(tets)]
        points = mesh.points_mm[nodes]
        length = np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1)
        volume = np.abs(mesh.signed_volumes_mm3()[conducting])
        node_volume = np.bincount(local[tets].ravel(), np.repeat(volume / 4.0, 4), nodes.size)
        border = np.zeros(nodes.size, dtype=bool)
        # remodelled tissue: border zone / fibrosis, and dense fibrosis where it conducts
        fibrotic = np.isin(mesh.region[conducting], (BORDER_ZONE, DENSE_SCAR))
        border[local[tets[fibrotic]].ravel()] = True
        return cls(mesh, conducting, nodes, local, edges, length, node_volume, border)

    @property
    def n(self) -> int:
        return int(self.nodes.size)

    @cached_property
    def points_mm(self) -> np.ndarray:
        """(N, 3) tissue node coordinates, mm."""
        return self.mesh.points_mm[self.nodes]

    @cached_property
    def spacing_mm(self) -> float:
        """Mean edge length of the conducting tissue, mm."""
        return float(self.length_mm.mean()) if self.length_mm.size else 0.0

    @cached_property
    def max_edge_mm(self) -> float:
        return float(self.length_mm.max()) if self.length_mm.size else 0.0

    def adjacency(self, keep: np.ndarray | None = None, weights: str = "length") -> sp.csr_array:
        """(N, N) symmetric adjacency over the edges (``keep``: a mask over edges), with
        edge lengths (mm) or ones as weights."""
        edges = self.edges if keep is None else self.edges[keep]
        w = self.length_mm if keep is None else self.length_mm[keep]
        if weights != "length":
            w = np.ones(len(edges))
        rows = np.concatenate([edges[:, 0], edges[:, 1]])
        cols = np.concatenate([edges[:, 1], edges[:, 0]])
        return sp.csr_array((np.concatenate([w, w]), (rows, cols)), shape=(self.n, self.n))

    def nearest_path(self, start: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, float]:
        """Shortest path through the tissue (edge lengths) from any node of ``start`` to any
        of ``targets`` (tissue indices): (nodes along it, start first; length mm). Empty and
        inf when no target can be reached."""
        targets = np.unique(np.asarray(targets, dtype=np.int64))
        if targets.size == 0 or len(start) == 0:
            return np.zeros(0, dtype=np.int64), np.inf
        distance, predecessor, _ = dijkstra(
            self.adjacency(), directed=False, indices=targets, min_only=True,
            return_predecessors=True,
        )  # fmt: skip
        start = np.asarray(start, dtype=np.int64)
        best = start[np.argmin(distance[start])]
        if not np.isfinite(distance[best]):
            return np.zeros(0, dtype=np.int64), np.inf
        path = [int(best)]
        while predecessor[path[-1]] >= 0:
            path.append(int(predecessor[path[-1]]))
        return np.asarray(path, dtype=np.int64), float(distance[best])


@dataclass(eq=False)
class Anchors:
    """Anchor components touching the tissue: ``component`` (N,) per tissue node (−1: not an
    anchor node), ``names`` per component (e.g. ``"dense scar"``, ``"surface base"``)."""

    component: np.ndarray
    names: list[str]

    @property
    def count(self) -> int:
        return len(self.names)

    def nodes_of(self, components) -> np.ndarray:
        return np.nonzero(np.isin(self.component, list(components)))[0]


def is_opening(surface_name: str) -> bool:
    """Whether a named surface is an opening (an anchor) rather than a wall face."""
    return not WALL_FACE.search(surface_name)


def anchors(graph: TissueGraph) -> Anchors:
    """The anchor components of ``graph``'s mesh that touch its tissue (module docstring)."""
    mesh = graph.mesh
    blocked = mesh.tets[~graph.conducting]
    openings = {name: tri for name, tri in mesh.surfaces.items() if is_opening(name)}
    pieces = [unique_edges(blocked)] if blocked.size else []
    for tri in openings.values():
        if tri.size:
            pieces.append(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [0, 2]]]))
    member = np.zeros(mesh.n_points, dtype=bool)
    member[blocked.ravel()] = True
    for tri in openings.values():
        member[tri.ravel()] = True
    component = np.full(graph.n, -1, dtype=np.int64)
    if not member.any():
        return Anchors(component, [])
    edges = np.concatenate(pieces) if pieces else np.zeros((0, 2), dtype=np.int64)
    link = sp.csr_array(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(mesh.n_points,) * 2
    )
    _, label = connected_components(link, directed=False)
    # components that reach the tissue, renumbered 0..k-1 in order of first tissue node
    touching = member[graph.nodes]
    labels_here = label[graph.nodes[touching]]
    unique, first = np.unique(labels_here, return_index=True)
    order = unique[np.argsort(first)]
    renumber = {int(old): new for new, old in enumerate(order)}
    component[touching] = [renumber[int(v)] for v in labels_here]
    names = []
    for old in order:
        kinds = []
        tags = np.unique(mesh.region[~graph.conducting][label[blocked[:, 0]] == old])
        kinds += [TISSUE_NAMES.get(int(t), f"tag {int(t)}") for t in tags]
        for name, tri in openings.items():
            if tri.size and np.any(label[tri[:, 0]] == old):
                kinds.append(f"surface {name}")
        names.append(" + ".join(kinds))
    return Anchors(component, names)
