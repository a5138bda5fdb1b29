"""Local improvement of a tetrahedral mesh's worst elements by moving nodes.

Optimisation-based smoothing in the manner of Freitag & Ollivier-Gooch 1997 ("Tetrahedral
mesh improvement using swapping and smoothing", IJNME 40): only the nodes of elements whose
smallest dihedral angle is below a target move, each to the trial position that most raises
the smallest dihedral angle of the elements around it, and a move is kept only if it raises
that local minimum (so the mesh's worst angle never gets worse) and leaves every element
around the node positively oriented. Trial positions lie along three directions: down the
gradient of the summed inverse mean ratio of the node's elements (Knupp 2001, "Algebraic
mesh quality metrics", SIAM J. Sci. Comput. 23: ``η = 12 (3V)^(2/3) / Σ l²``, 1 for a
regular tetrahedron, 0 for a flat one), down the gradient of the worst element's inverse
mean ratio alone, and towards the centroid of the node's neighbours (smart Laplacian).

Connectivity never changes, so element tags, named surfaces and node sets stay as they are.
Nodes may be ``fixed`` (they define a surface exactly) or slide in a plane (``slide_normals``:
a node on a boundary surface moves only tangentially, so the surface keeps its place to
second order in the step). Nodes moved together are an independent set (no two share an
element), so each acceptance test is exact. Deterministic: the order comes from a seeded
generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.quality import element_dihedral_angles_deg, element_volumes_mm3

log = logging.getLogger(__name__)

#: smallest dihedral angle (degrees) below which an element's nodes are moved by default
TARGET_DIHEDRAL_DEG = 15.0
#: trial steps along the gradient directions, as fractions of the node's mean edge length
GRADIENT_STEPS = (0.3, 0.15, 0.075, 0.0375, 0.019, 0.0095)
#: trial fractions of the way to the neighbours' centroid
CENTROID_STEPS = (1.0, 0.5, 0.25)
#: a move must raise the local smallest dihedral angle by at least this much, degrees
MIN_GAIN_DEG = 1e-3
#: a trial is refused if an element's volume falls below this × its longest edge³
MIN_RELATIVE_VOLUME = 1e-4


@dataclass
class ImprovementReport:
    """What a pass did: rounds run, nodes moved, smallest dihedral (degrees) before / after,
    elements below the target before / after."""

    rounds: int
    moves: int
    min_before_deg: float
    min_after_deg: float
    below_target_before: int
    below_target_after: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _incidence(n_points: int, tets: np.ndarray):
    """CSR node → (element, local slot) incidence."""
    from scipy.sparse import csr_matrix

    m = len(tets)
    rows = tets.reshape(-1)
    cols = np.repeat(np.arange(m, dtype=np.int64), 4)
    slots = np.tile(np.arange(1, 5, dtype=np.int8), m)  # 1..4: 0 would be dropped
    return csr_matrix((slots, (rows, cols)), shape=(n_points, m))


def _inverse_mean_ratio_gradient(x: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``1/η`` of elements ``x`` (p, 4, 3) and its gradient (p, 3) with respect to corner
    ``slot`` (p,). Elements must be positively oriented."""
    rows = np.arange(len(x))
    node = x[rows, slot]
    volume = element_volumes_mm3(x)
    squares = 0.0
    for i in range(4):
        for j in range(i + 1, 4):
            squares = squares + np.sum((x[:, i] - x[:, j]) ** 2, axis=1)
    inverse = squares / (12.0 * np.cbrt(3.0 * volume) ** 2)
    # ∂(Σ l²)/∂x_k = 2 Σ_j (x_k − x_j) = 2 (4 x_k − Σ_j x_j)
    d_squares = 2.0 * (4.0 * node - x.sum(axis=1))
    # ∂V/∂x_k: a third of the opposite face's area, along the face's normal towards x_k
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[slot]
    a, b, c = (x[rows, others[:, k]] for k in range(3))
    face = np.cross(b - a, c - a) / 6.0
    towards = np.sign(np.einsum("ij,ij->i", face, node - a))
    d_volume = face * towards[:, None]
    gradient = inverse[:, None] * (
        d_squares / squares[:, None] - (2.0 / 3.0) * d_volume / volume[:, None]
    )
    return inverse, gradient


def _independent(candidates: np.ndarray, priority: np.ndarray, incidence) -> np.ndarray:
    """The candidates whose priority beats every other candidate sharing an element."""
    sub = incidence[candidates]
    elements = sub.indices
    owner = np.repeat(np.arange(candidates.size), np.diff(sub.indptr))
    unique_elements, inverse = np.unique(elements, return_inverse=True)
    best = np.full(unique_elements.size, -1, dtype=np.int64)
    np.maximum.at(best, inverse, priority[candidates][owner])
    beaten = np.zeros(candidates.size, dtype=bool)
    beaten[owner[best[inverse] != priority[candidates][owner]]] = True
    return candidates[~beaten]


def improve_min_dihedral(
    points_mm: np.ndarray,
    tets: np.ndarray,
    *,
    fixed: np.ndarray | None = None,
    slide_normals: np.ndarray | None = None,
    target_deg: float = TARGET_DIHEDRAL_DEG,
    max_rounds: int = 20,
    seed: int = 0,
) -> tuple[np.ndarray, ImprovementReport]:
    """New node positions (mm) raising the smallest dihedral angles of ``tets`` (positively
    oriented); the input arrays are not changed.

    ``fixed``: bool per node, never moved. ``slide_normals``: (n, 3) per node, zero for a
    free node, else the unit normal of the plane it may move in. Elements whose smallest
    dihedral angle is below ``target_deg`` have their movable nodes relaxed, in at most
    ``max_rounds`` rounds (a round visits every such node once); it stops early when a round
    moves nothing.
    """
    points = np.array(points_mm, dtype=np.float64, copy=True)
    tets = np.asarray(tets, dtype=np.int64)
    n = len(points)
    movable = np.ones(n, dtype=bool) if fixed is None else ~np.asarray(fixed, dtype=bool)
    slide = np.zeros((n, 3)) if slide_normals is None else np.asarray(slide_normals, float)
    incidence = _incidence(n, tets)
    worst = np.empty(len(tets))
    for start in range(0, len(tets), 500_000):
        block = points[tets[start : start + 500_000]]
        worst[start : start + 500_000] = element_dihedral_angles_deg(block).min(axis=1)
    min_before, below_before = float(worst.min()), int(np.count_nonzero(worst < target_deg))
    rng = np.random.default_rng(seed)
    priority = rng.permutation(n).astype(np.int64)
    rounds = moves = 0
    while rounds < max_rounds:
        rounds += 1
        bad = np.nonzero(worst < target_deg)[0]
        pending = np.unique(tets[bad])
        pending = pending[movable[pending]]
        moved_this_round = 0
        while pending.size:
            chosen = _independent(pending, priority, incidence)
            pending = np.setdiff1d(pending, chosen, assume_unique=True)
            accepted = _move(points, tets, chosen, incidence, worst, slide)
            moved_this_round += accepted
        moves += moved_this_round
        if moved_this_round == 0:
            break
    report = ImprovementReport(
        rounds=rounds,
        moves=moves,
        min_before_deg=min_before,
        min_after_deg=float(worst.min()),
        below_target_before=below_before,
        below_target_after=int(np.count_nonzero(worst < target_deg)),
    )
    log.info(
        "mesh improvement: %d node moves in %d rounds; smallest dihedral %.2f° → %.2f°, "
        "elements below %.0f°: %d → %d",
        moves,
        rounds,
        min_before,
        report.min_after_deg,
        target_deg,
        below_before,
        report.below_target_after,
    )
    return points, report


def _move(points, tets, nodes, incidence, worst, slide) -> int:
    """Move each of ``nodes`` (an independent set) to its best trial position if that raises
    the smallest dihedral angle around it; updates ``points`` and ``worst`` in place and
    returns the number moved."""
    sub = incidence[nodes]
    elements = sub.indices.astype(np.int64)
    slot = sub.data.astype(np.int64) - 1
    owner = np.repeat(np.arange(nodes.size), np.diff(sub.indptr))
    corners = points[tets[elements]]  # (p, 4, 3)
    local_worst = np.full(nodes.size, np.inf)
    np.minimum.at(local_worst, owner, worst[elements])

    _, gradient = _inverse_mean_ratio_gradient(corners, slot)
    total = np.zeros((nodes.size, 3))
    np.add.at(total, owner, gradient)
    # the worst element's own gradient (ties: any of them)
    is_worst = worst[elements] == local_worst[owner]
    single = np.zeros((nodes.size, 3))
    single[owner[is_worst]] = gradient[is_worst]
    edge = np.zeros(nodes.size)
    centroid = np.zeros((nodes.size, 3))
    np.add.at(centroid, owner, corners.sum(axis=1) - corners[np.arange(len(slot)), slot])
    count = np.bincount(owner, minlength=nodes.size).astype(float)
    centroid /= 3.0 * count[:, None]
    here = points[nodes]
    np.add.at(edge, owner, np.linalg.norm(corners - here[owner][:, None, :], axis=2).sum(1) / 3)
    edge /= count

    normal = slide[nodes]

    def tangential(vector):
        return vector - np.einsum("ij,ij->i", vector, normal)[:, None] * normal

    trials = []
    for direction in (tangential(-total), tangential(-single)):
        length = np.linalg.norm(direction, axis=1, keepdims=True)
        unit = np.where(length > 0, direction / np.maximum(length, 1e-300), 0.0)
        trials += [here + (step * edge)[:, None] * unit for step in GRADIENT_STEPS]
    towards = tangential(centroid - here)
    trials += [here + fraction * towards for fraction in CENTROID_STEPS]

    best_value = local_worst.copy()
    best_position = here.copy()
    rows = np.arange(len(slot))
    for trial in trials:
        moved = corners.copy()
        moved[rows, slot] = trial[owner]
        volume = element_volumes_mm3(moved)
        longest = np.zeros(len(moved))
        for i in range(4):
            for j in range(i + 1, 4):
                longest = np.maximum(longest, np.linalg.norm(moved[:, i] - moved[:, j], axis=1))
        angle = element_dihedral_angles_deg(moved).min(axis=1)
        angle = np.where(volume > MIN_RELATIVE_VOLUME * longest**3, angle, -1.0)
        value = np.full(nodes.size, np.inf)
        np.minimum.at(value, owner, angle)
        better = value > best_value + MIN_GAIN_DEG
        best_value[better] = value[better]
        best_position[better] = trial[better]
    accept = best_value > local_worst + MIN_GAIN_DEG
    if not accept.any():
        return 0
    points[nodes[accept]] = best_position[accept]
    touched = np.unique(elements[accept[owner]])
    worst[touched] = element_dihedral_angles_deg(points[tets[touched]]).min(axis=1)
    return int(np.count_nonzero(accept))
