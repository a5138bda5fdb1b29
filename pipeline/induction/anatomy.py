"""Which openings of an atrium a driver circles: macro-re-entry round veins and valves.

DESIGN §7 asks for atrial macro-re-entry round valves and veins to be reported apart from
drivers in the wall, because it decides the ablation: pulmonary vein isolation stops a circuit
round a vein, a mitral isthmus line one round the mitral valve, and neither stops a rotor in
fibrotic wall.

A wave that circulates round an opening activates a closed loop round it once per cycle, so
the activation phase φ = 2π t / CL winds by ±1 turn along the loop; round an opening it does
not circle, φ rises and falls back (winding 0). The loop round an opening: the tissue nodes
at a geodesic distance (along mesh edges, through tissue that conducts) of ``band_mm`` from
the opening's nodes, ordered by their angle round the opening's axis (the normal of the plane
fitted to its nodes) and binned in ``bins`` sectors; a sector's phase is the circular mean of
its nodes'. A loop with under 3/4 of its sectors activated gives no answer (None). Winding
+1 is anticlockwise seen along the axis as the fit orients it: the sign is not a chirality
(an opening has no outside to look from), only whether it is ±1 or 0 is read.

Openings are the mesh's surfaces named like the atrial mesher names them (``mitral``,
``vein-1`` …) or as openCARP meshes often do (:data:`OPENING_PREFIXES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

#: surface names taken as openings (by prefix)
OPENING_PREFIXES = (
    "mitral",
    "tricuspid",
    "vein",
    "pv",
    "lspv",
    "lipv",
    "rspv",
    "ripv",
    "svc",
    "ivc",
)

#: the loop's distance from the opening (geodesic, mm), and its sectors
BAND_MM = (4.0, 8.0)
BINS = 16


def opening_axis(points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, unit normal) of the plane fitted to an opening's nodes, mm."""
    centre = points_mm.mean(axis=0)
    _, _, vt = np.linalg.svd(points_mm - centre, full_matrices=False)
    return centre, vt[2]


def winding(
    points_mm: np.ndarray, phase: np.ndarray, centre: np.ndarray, normal: np.ndarray, bins: int
) -> float | None:
    """Phase winding (turns) of ``phase`` (rad) at ``points_mm`` going once round the axis
    through ``centre`` along ``normal``; None when under 3/4 of the sectors hold a phase."""
    u = np.cross(normal, [1.0, 0.0, 0.0])
    if np.linalg.norm(u) < 0.1:
        u = np.cross(normal, [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    rel = points_mm - centre
    angle = np.arctan2(rel @ v, rel @ u)
    sector = np.minimum(((angle + np.pi) / (2 * np.pi) * bins).astype(int), bins - 1)
    z = np.exp(1j * phase)
    means = [np.angle(z[sector == k].mean()) for k in range(bins) if np.any(sector == k)]
    if len(means) < 0.75 * bins:
        return None
    steps = np.diff(np.asarray(means + means[:1]))
    steps = (steps + np.pi) % (2 * np.pi) - np.pi
    return float(steps.sum() / (2 * np.pi))


def _edge_lengths(adjacency: sp.csr_matrix, points_mm: np.ndarray) -> sp.csr_matrix:
    """The adjacency with each edge weighted by its length, mm."""
    coo = adjacency.tocoo()
    length = np.linalg.norm(points_mm[coo.row] - points_mm[coo.col], axis=1)
    return sp.csr_matrix((length, (coo.row, coo.col)), shape=adjacency.shape)


@dataclass
class OpeningLoop:
    """The loop of tissue round one opening (tissue-node indices) and the opening's axis."""

    name: str
    nodes: np.ndarray
    centre_mm: np.ndarray
    normal: np.ndarray


def opening_loops(
    surfaces: dict[str, np.ndarray],
    tissue_nodes: np.ndarray,
    n_mesh_nodes: int,
    points_mm: np.ndarray,
    adjacency: sp.csr_matrix,
    band_mm: tuple[float, float] = BAND_MM,
) -> list[OpeningLoop]:
    """The loops round every opening among ``surfaces`` (mesh-node triangles).

    ``tissue_nodes``: the mesh node of each tissue node; ``points_mm`` and ``adjacency`` in
    tissue-node numbering (detection's :class:`~.detection.Geometry`). An opening with no
    tissue node, or no loop, is left out.
    """
    local = np.full(n_mesh_nodes, -1, dtype=np.int64)
    local[tissue_nodes] = np.arange(len(tissue_nodes))
    weighted = None
    loops = []
    for name in sorted(surfaces):
        if not name.lower().startswith(OPENING_PREFIXES):
            continue
        rim = local[np.unique(np.asarray(surfaces[name]))]
        rim = rim[rim >= 0]
        if rim.size < 3:
            continue
        if weighted is None:
            weighted = _edge_lengths(adjacency, points_mm)
        distance = dijkstra(weighted, directed=False, indices=rim, min_only=True)
        ring = np.nonzero((distance >= band_mm[0]) & (distance <= band_mm[1]))[0]
        if ring.size == 0:
            continue
        centre, normal = opening_axis(points_mm[rim])
        loops.append(OpeningLoop(name, ring, centre, normal))
    return loops


def opening_windings(
    loops: list[OpeningLoop],
    points_mm: np.ndarray,
    activation_ms: np.ndarray,
    cycle_length_ms: float,
    bins: int = BINS,
) -> dict[str, float | None]:
    """Per opening, the winding (turns, 2 decimals) of one cycle's activation map
    (tissue-node numbering, ms from the cycle's start, NaN where a node did not activate)."""
    out: dict[str, float | None] = {}
    for loop in loops:
        t = activation_ms[loop.nodes]
        ok = np.isfinite(t)
        turns = None
        if ok.sum() >= bins:
            phase = 2 * np.pi * np.mod(t[ok], cycle_length_ms) / cycle_length_ms
            turns = winding(points_mm[loop.nodes[ok]], phase, loop.centre_mm, loop.normal, bins)
        out[loop.name] = None if turns is None else round(turns, 2)
    return out


def circled(windings: dict[str, float | None]) -> list[str]:
    """The openings a driver circles: winding within 0.25 of ±1 turn."""
    return [name for name, w in windings.items() if w is not None and abs(abs(w) - 1.0) <= 0.25]
