"""Isosurface stuffing: a smooth region of space filled with well-shaped tetrahedra.

Labelle & Shewchuk 2007 (SIGGRAPH, "Isosurface stuffing: fast tetrahedral meshes with good
dihedral angles"): a body-centred cubic (BCC) lattice of spacing ``h`` (corners of a cubic
grid plus the cube centres) is cut by the zero level set of a function ``phi`` (negative
inside). Lattice vertices very close to the surface are moved ("warped") onto it; every
lattice tetrahedron that reaches inside is then filled from a small table of stencils, with
new vertices where the surface cuts lattice edges. The boundary is therefore the level set
itself (smooth, not a voxel staircase), the interior is BCC tetrahedra (dihedral angles 60°
and 90°), and no cut point lies closer to a lattice vertex than the warp thresholds, which
keeps boundary elements from becoming slivers.

Warp thresholds (fraction of an edge's length) are the paper's values for its uniform
lattice, ``ALPHA_LONG`` for the axis-parallel ("black", length h) edges and ``ALPHA_SHORT``
for the diagonal ("red", length √3/2·h) ones. Where a stencil produces a quadrilateral on a
lattice face (a prism or pyramid), both tetrahedra sharing that face split it along the
diagonal through the quadrilateral's lowest-numbered vertex (Dompierre et al. 1999, "How to
subdivide pyramids, prisms and hexahedra into tetrahedra"), so the mesh is conforming; the
paper's own diagonal choice (its parity rule) is not reproduced, so its angle bound (10.7°)
is not guaranteed here: :mod:`cardiotwin.meshing.quality` measures what each mesh got.

Everything is vectorised with numpy; memory is about 1 kB per output tetrahedron at peak.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: warp threshold on black (axis-parallel, length h) edges, fraction of the edge length
ALPHA_LONG = 0.24999
#: warp threshold on red (diagonal, length √3/2 h) edges, fraction of the edge length
ALPHA_SHORT = 0.41189
#: mean edge length of the BCC lattice over its spacing h: (2·1 + 4·√3/2) / 6
BCC_MEAN_EDGE_PER_SPACING = (2.0 + 4.0 * np.sqrt(3.0) / 2.0) / 6.0

#: regula falsi (Illinois) steps that move each cut point onto the level set
ROOT_STEPS = 6
#: lattice vertices evaluated per call of ``phi`` (bounds the memory of one call)
EVALUATION_CHUNK = 1_000_000

LevelSet = Callable[[np.ndarray], np.ndarray]


class _Lattice:
    """BCC lattice over a box: corner vertices (n+1 per axis) then cube centres (n per axis)."""

    def __init__(self, lower_mm: np.ndarray, cells: np.ndarray, spacing_mm: float):
        self.lower = np.asarray(lower_mm, dtype=np.float64)
        self.cells = np.asarray(cells, dtype=np.int64)
        self.h = float(spacing_mm)
        self.corner_shape = tuple(int(c) + 1 for c in self.cells)
        self.n_corners = int(np.prod(self.corner_shape))
        self.n_centres = int(np.prod(self.cells))
        self.n_vertices = self.n_corners + self.n_centres

    def corner_id(self, i, j, k):
        nx, ny, _ = self.corner_shape
        return i + nx * (j + ny * k)

    def centre_id(self, i, j, k):
        nx, ny, _ = self.cells
        return self.n_corners + i + nx * (j + ny * k)

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """(k, 3) mm positions of lattice vertices ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        is_centre = ids >= self.n_corners
        out = np.empty((ids.size, 3))
        corner = ids[~is_centre]
        nx, ny, _ = self.corner_shape
        out[~is_centre] = np.stack([corner % nx, (corner // nx) % ny, corner // (nx * ny)], axis=1)
        centre = ids[is_centre] - self.n_corners
        cx, cy, _ = self.cells
        out[is_centre] = (
            np.stack([centre % cx, (centre // cx) % cy, centre // (cx * cy)], axis=1) + 0.5
        )
        return self.lower + self.h * out

    def tetrahedra(self, interesting: np.ndarray) -> np.ndarray:
        """(m, 4) lattice tetrahedra with at least one vertex where ``interesting`` is true.

        Each BCC tetrahedron has two centres one cube apart and two corners of the face
        their cubes share; enumerating centre pairs along each axis visits each once.
        """
        found = []
        cells = self.cells
        for axis in range(3):
            b, c = (axis + 1) % 3, (axis + 2) % 3
            shape = cells.copy()
            shape[axis] -= 1
            if np.any(shape < 1):
                continue
            index = np.indices(tuple(int(s) for s in shape)).reshape(3, -1)
            step = np.zeros((3, 1), dtype=np.int64)
            step[axis] = 1
            centre_a = self.centre_id(*index)
            centre_b = self.centre_id(*(index + step))
            # the shared face lies on corner plane index[axis] + 1; its corners span b, c
            face = index + step
            corners = []
            for db, dc in ((0, 0), (1, 0), (1, 1), (0, 1)):
                offset = np.zeros((3, 1), dtype=np.int64)
                offset[b], offset[c] = db, dc
                corners.append(self.corner_id(*(face + offset)))
            keep = interesting[centre_a] | interesting[centre_b]
            for corner in corners:
                keep |= interesting[corner]
            centre_a, centre_b = centre_a[keep], centre_b[keep]
            corners = [corner[keep] for corner in corners]
            for q in range(4):
                p, r = corners[q], corners[(q + 1) % 4]
                tets = np.stack([centre_a, centre_b, p, r], axis=1)
                found.append(tets[interesting[tets].any(axis=1)])
        if not found:
            return np.empty((0, 4), dtype=np.int64)
        return np.concatenate(found)


def lattice_spacing_for_edge(edge_mm: float) -> float:
    """BCC spacing h whose tetrahedra have mean edge ``edge_mm`` (interior elements)."""
    return float(edge_mm) / BCC_MEAN_EDGE_PER_SPACING


def _evaluate(phi: LevelSet, points: np.ndarray) -> np.ndarray:
    values = np.empty(points.shape[0])
    for start in range(0, points.shape[0], EVALUATION_CHUNK):
        chunk = points[start : start + EVALUATION_CHUNK]
        values[start : start + EVALUATION_CHUNK] = np.asarray(phi(chunk), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("the level-set function returned NaN or infinite values")
    return values


def _cut_fractions(
    phi: LevelSet, a_mm: np.ndarray, b_mm: np.ndarray, phi_a: np.ndarray, phi_b: np.ndarray
) -> np.ndarray:
    """Fraction t in (0, 1) along a→b where phi changes sign (phi_a < 0 < phi_b)."""
    lo_t, hi_t = np.zeros(len(a_mm)), np.ones(len(a_mm))
    lo_v, hi_v = phi_a.copy(), phi_b.copy()
    last_side = np.zeros(len(a_mm), dtype=np.int8)
    t = lo_v / (lo_v - hi_v)
    for _ in range(ROOT_STEPS):
        t = (lo_t * hi_v - hi_t * lo_v) / (hi_v - lo_v)
        value = _evaluate(phi, a_mm + t[:, None] * (b_mm - a_mm))
        below = value < 0
        # Illinois: halve the value kept on the side that stayed put twice
        lo_t = np.where(below, t, lo_t)
        lo_v = np.where(below, value, np.where(last_side == 1, lo_v * 0.5, lo_v))
        hi_t = np.where(below, hi_t, t)
        hi_v = np.where(below, np.where(last_side == -1, hi_v * 0.5, hi_v), value)
        last_side = np.where(below, -1, 1).astype(np.int8)
    return np.clip(t, 1e-6, 1.0 - 1e-6)


def _edge_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(a, b) * n + np.maximum(a, b)


def split_prisms(bottom: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Three tetrahedra per prism (bottom[i] – top[i] are its vertical edges), each side
    quadrilateral split through its lowest-numbered vertex (Dompierre et al. 1999)."""
    six = np.concatenate([bottom, top], axis=1)
    first = np.argmin(six, axis=1)
    flip = first >= 3
    a = np.where(flip[:, None], top, bottom)
    b = np.where(flip[:, None], bottom, top)
    shift = first % 3
    order = (np.arange(3)[None, :] + shift[:, None]) % 3
    a = np.take_along_axis(a, order, axis=1)
    b = np.take_along_axis(b, order, axis=1)
    a0, a1, a2 = a.T
    b0, b1, b2 = b.T
    through_a1 = np.minimum(a1, b2) < np.minimum(a2, b1)
    second = np.where(
        through_a1[:, None], np.stack([a0, a1, a2, b2], 1), np.stack([a0, a1, a2, b1], 1)
    )
    third = np.where(
        through_a1[:, None], np.stack([a0, a1, b2, b1], 1), np.stack([a0, a2, b2, b1], 1)
    )
    return np.concatenate([np.stack([a0, b0, b1, b2], 1), second, third])


def _split_pyramids(apex: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Two tetrahedra per pyramid (quad in cyclic order), split through its lowest vertex."""
    q0, q1, q2, q3 = quad.T
    through_q0 = np.minimum(q0, q2) < np.minimum(q1, q3)
    first = np.where(
        through_q0[:, None], np.stack([apex, q0, q1, q2], 1), np.stack([apex, q1, q2, q3], 1)
    )
    second = np.where(
        through_q0[:, None], np.stack([apex, q0, q2, q3], 1), np.stack([apex, q1, q3, q0], 1)
    )
    return np.concatenate([first, second])


def stuff(phi: LevelSet, lower_mm, upper_mm, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Tetrahedral mesh of ``{x : phi(x) < 0}`` inside the box ``lower_mm``..``upper_mm``.

    ``phi`` maps (k, 3) points in mm to (k,) values, negative inside, smooth across the
    boundary (a signed distance or a smoothed indicator minus its threshold). ``spacing_mm``
    is the BCC lattice spacing h (see :func:`lattice_spacing_for_edge`). The region must not
    touch the box. Returns ``(points_mm (n, 3), tets (m, 4))``, positively oriented, every
    point used.
    """
    h = float(spacing_mm)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"lattice spacing must be a positive number of mm, got {spacing_mm}")
    lower = np.asarray(lower_mm, dtype=np.float64) - 2.0 * h
    upper = np.asarray(upper_mm, dtype=np.float64) + 2.0 * h
    cells = np.ceil((upper - lower) / h).astype(np.int64)
    lattice = _Lattice(lower, cells, h)
    n = lattice.n_vertices

    ids = np.arange(n, dtype=np.int64)
    values = np.empty(n)
    for start in range(0, n, EVALUATION_CHUNK):
        chunk = ids[start : start + EVALUATION_CHUNK]
        values[chunk] = _evaluate(phi, lattice.positions(chunk))
    del ids
    inside = values < 0
    if not inside.any():
        return np.empty((0, 3)), np.empty((0, 4), dtype=np.int64)

    # 1. cut points on lattice edges that cross the surface
    tets = lattice.tetrahedra(inside)
    signs = np.sign(values[tets])
    tets = tets[(signs > 0).any(axis=1) & (signs < 0).any(axis=1)]
    pairs = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])
    edges = tets[:, pairs].reshape(-1, 2)
    del tets
    edges = edges[values[edges[:, 0]] * values[edges[:, 1]] < 0]
    keys = np.unique(_edge_keys(edges[:, 0], edges[:, 1], n))
    edges = np.stack([keys // n, keys % n], axis=1)
    # orient each cut edge from its inside end (a) to its outside end (b)
    swap = values[edges[:, 0]] > 0
    edges[swap] = edges[swap][:, ::-1]
    a_mm, b_mm = lattice.positions(edges[:, 0]), lattice.positions(edges[:, 1])
    t = _cut_fractions(phi, a_mm, b_mm, values[edges[:, 0]], values[edges[:, 1]])
    cut_mm = a_mm + t[:, None] * (b_mm - a_mm)
    black = (edges[:, 0] >= lattice.n_corners) == (edges[:, 1] >= lattice.n_corners)
    alpha = np.where(black, ALPHA_LONG, ALPHA_SHORT)
    length = np.where(black, h, 0.5 * np.sqrt(3.0) * h)

    # 2. warp: a vertex with a cut point within alpha × edge length moves onto the nearest
    near_vertex = np.concatenate([edges[t < alpha, 0], edges[(1 - t) < alpha, 1]])
    near_distance = np.concatenate([(t * length)[t < alpha], ((1 - t) * length)[(1 - t) < alpha]])
    near_cut = np.concatenate([np.nonzero(t < alpha)[0], np.nonzero((1 - t) < alpha)[0]])
    order = np.lexsort((near_distance, near_vertex))
    near_vertex, near_cut = near_vertex[order], near_cut[order]
    first = np.ones(near_vertex.size, dtype=bool)
    first[1:] = near_vertex[1:] != near_vertex[:-1]
    warped, warped_to = near_vertex[first], near_cut[first]
    sign = np.sign(values).astype(np.int8)
    sign[warped] = 0
    # surviving cut points: both ends still strictly on opposite sides
    alive = (sign[edges[:, 0]] != 0) & (sign[edges[:, 1]] != 0)
    edges, cut_mm = edges[alive], cut_mm[alive]

    # 3. fill every lattice tetrahedron that reaches inside from its stencil
    tets = lattice.tetrahedra(sign <= 0)
    s = sign[tets]
    n_neg = (s < 0).sum(axis=1)
    n_zero = (s == 0).sum(axis=1)
    n_pos = (s > 0).sum(axis=1)
    # vertices ordered negative, zero, positive (stable)
    order = np.argsort(s, axis=1, kind="stable")
    tets = np.take_along_axis(tets, order, axis=1)

    cut_keys = _edge_keys(edges[:, 0], edges[:, 1], n)
    key_order = np.argsort(cut_keys)
    cut_keys = cut_keys[key_order]

    def cut(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Output id of the cut point on lattice edge u–v (ids n, n+1, … follow the lattice)."""
        where = np.searchsorted(cut_keys, _edge_keys(u, v, n))
        return n + key_order[where]

    pieces = [tets[(n_pos == 0) & (n_neg > 0)]]  # wholly inside (zeros allowed)
    all_zero = tets[n_zero == 4]
    if all_zero.size:  # on the surface at all four corners: keep if its centre is inside
        positions = np.zeros((n, 3))
        positions[np.unique(all_zero)] = lattice.positions(np.unique(all_zero))
        centre_value = _evaluate(phi, positions[all_zero].mean(axis=1))
        pieces.append(all_zero[centre_value < 0])
    for nn, nz, npos in ((1, 0, 3), (1, 1, 2), (1, 2, 1), (2, 0, 2), (2, 1, 1), (3, 0, 1)):
        group = tets[(n_neg == nn) & (n_zero == nz) & (n_pos == npos)]
        if not group.size:
            continue
        v = group.T
        if (nn, nz) == (1, 0):
            pieces.append(np.stack([v[0], cut(v[0], v[1]), cut(v[0], v[2]), cut(v[0], v[3])], 1))
        elif (nn, nz) == (1, 1):
            pieces.append(np.stack([v[0], v[1], cut(v[0], v[2]), cut(v[0], v[3])], 1))
        elif (nn, nz) == (1, 2):
            pieces.append(np.stack([v[0], v[1], v[2], cut(v[0], v[3])], 1))
        elif (nn, nz) == (2, 0):
            bottom = np.stack([v[0], cut(v[0], v[2]), cut(v[0], v[3])], 1)
            top = np.stack([v[1], cut(v[1], v[2]), cut(v[1], v[3])], 1)
            pieces.append(split_prisms(bottom, top))
        elif (nn, nz) == (2, 1):
            quad = np.stack([v[0], v[1], cut(v[1], v[3]), cut(v[0], v[3])], 1)
            pieces.append(_split_pyramids(v[2], quad))
        else:
            top = np.stack([cut(v[0], v[3]), cut(v[1], v[3]), cut(v[2], v[3])], 1)
            pieces.append(split_prisms(group[:, :3], top))
    del tets, s, order
    out = np.concatenate(pieces)

    # 4. positions (warped lattice vertices, cut points), compact numbering, orientation
    used = np.unique(out)
    lattice_used = used[used < n]
    points = np.empty((used.size, 3))
    is_lattice = used < n
    points[is_lattice] = lattice.positions(lattice_used)
    points[~is_lattice] = cut_mm[used[~is_lattice] - n]
    warp_target = np.full(warped.size, -1, dtype=np.int64)
    where = np.searchsorted(used, warped)
    present = (where < used.size) & (used[np.minimum(where, used.size - 1)] == warped)
    warp_target[present] = where[present]
    # warped vertices sit on the cut point that attracted them (computed before the warp)
    all_cut_mm = a_mm + t[:, None] * (b_mm - a_mm)
    points[warp_target[present]] = all_cut_mm[warped_to[present]]
    tets_out = np.searchsorted(used, out)
    del out
    return points, orient_positively(points, tets_out)


def orient_positively(points_mm: np.ndarray, tets: np.ndarray, chunk: int = 1_000_000):
    """Swap two vertices of every negatively oriented element (in place; returns ``tets``)."""
    for start in range(0, len(tets), chunk):
        block = tets[start : start + chunk]
        x = points_mm[block]
        volume = np.einsum(
            "ij,ij->i", x[:, 1] - x[:, 0], np.cross(x[:, 2] - x[:, 0], x[:, 3] - x[:, 0])
        )
        negative = volume < 0
        block[negative] = block[negative][:, [0, 1, 3, 2]]
    return tets
