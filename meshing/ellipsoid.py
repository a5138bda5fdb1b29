"""Analytic meshes for tests and development: ellipsoidal LV, biventricular and atrial shells.

Built without a mesher: a triangulated reference surface (rings of nodes stitched into
triangles, ring node counts chosen so the triangles stay close to equilateral), copied into
layers through the wall, each prism between two layers split into three tetrahedra. A prism
is split by the surface-index order of its triangle (Dompierre et al. 1999, "How to subdivide
pyramids, prisms and hexahedra into tetrahedra"): the diagonal of every quad face depends only
on that face's two surface nodes, so neighbouring prisms share their diagonals and the mesh is
conforming. Every tetrahedron is positively oriented.

- :func:`lv_ellipsoid`: a truncated prolate-ellipsoidal LV shell (:class:`LVGeometry`). Layer
  ``t`` ∈ [0, 1] of the wall is the ellipsoid with semi-axes interpolated linearly between the
  endocardial and epicardial ones, and every layer is cut by the same plane ``z = base_height``,
  so ``endo`` and ``epi`` lie exactly on their ellipsoids and ``base`` exactly on the plane.
- :func:`biv_ellipsoid`: the same LV with a crescent-shaped RV free wall over its septal side
  (``rv-endo`` free-wall endocardium, ``rv-septum`` the septum's RV face, disjoint).
- :func:`atrial_shell`: a thin spherical shell (≥ 2 element layers) with one large valve
  opening and four vein openings (surfaces ``endo``, ``epi``, ``valve``, ``vein-1`` ..
  ``vein-4``).

Frame of every analytic mesh (mm): long axis along +z from apex to base (apex at
``z = -epi_length``, base plane ``z = base_height``), septum towards +x, anterior towards +y
(``anterior = long axis × septum``, the right-handed convention of
:mod:`cardiotwin.meshing.coordinates`). Element tags are all ``HEALTHY``; no fibres, no point
fields: :func:`cardiotwin.meshing.prepare.prepare` adds those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cardiotwin.meshing.boundary import border_edges, boundary_faces, edge_graph
from cardiotwin.meshing.mesh import Mesh
from cardiotwin.meshing.tags import HEALTHY

# --- reference surfaces: rings of nodes stitched into triangles ----------------------------


def _stitch(first_a: int, n_a: int, first_b: int, n_b: int, shift_b: float) -> np.ndarray:
    """Triangles between ring A (n_a nodes) and ring B (n_b nodes), nodes numbered from
    ``first_a`` / ``first_b`` counter-clockwise. Ring B's node k sits at angle
    2π (k + shift_b) / n_b, ring A's at 2π k / n_a (a pole when n == 1)."""
    a = first_a + np.arange(n_a)
    b = first_b + np.arange(n_b)
    if n_a == 1:
        return np.stack([np.full(n_b, a[0]), b, np.roll(b, -1)], axis=1)
    if n_b == 1:
        return np.stack([a, np.full(n_a, b[0]), np.roll(a, -1)], axis=1)
    # walk round both rings at once, always advancing the ring whose next node comes first
    next_a = np.arange(1, n_a + 1) / n_a
    next_b = (np.arange(1, n_b + 1) + shift_b) / n_b
    is_a = np.concatenate([np.ones(n_a, bool), np.zeros(n_b, bool)])
    is_a = is_a[np.argsort(np.concatenate([next_a, next_b]), kind="stable")]
    i = np.cumsum(is_a) - is_a
    j = np.cumsum(~is_a) - ~is_a
    ia, ib = a[i % n_a], b[j % n_b]
    third = np.where(is_a, a[(i + 1) % n_a], b[(j + 1) % n_b])
    return np.where(is_a[:, None], np.stack([ia, third, ib], 1), np.stack([ia, third, ib], 1))


def ring_surface(counts: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A triangulated surface of stacked rings (a disc when ``counts[0] == 1``, a sphere when
    the last count is 1 too).

    Returns ``(ring (s,) int, angle_rad (s,), triangles (k, 3))`` for the s nodes; ring r's
    nodes are numbered consecutively, counter-clockwise, odd rings turned by half a step.
    """
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    shifts = 0.5 * (np.arange(counts.size) % 2)
    ring = np.repeat(np.arange(counts.size), counts)
    local = np.arange(counts.sum()) - starts[ring]
    angle = 2.0 * np.pi * (local + shifts[ring]) / counts[ring]
    triangles = [
        _stitch(starts[r], counts[r], starts[r + 1], counts[r + 1], shifts[r + 1] - shifts[r])
        for r in range(counts.size - 1)
    ]
    return ring, angle, np.concatenate(triangles)


def extrude_prisms(triangles: np.ndarray, n_surface: int, layers: int) -> np.ndarray:
    """Tetrahedra filling the prisms between ``layers + 1`` copies of a triangulated surface
    (layer L's copy of surface node i is node ``L * n_surface + i``), three per prism, split by
    surface-index order so that neighbouring prisms share quad-face diagonals."""
    tri = np.sort(np.asarray(triangles, dtype=np.int64), axis=1)
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    blocks = []
    for layer in range(layers):
        lo, hi = layer * n_surface, (layer + 1) * n_surface
        blocks.append(np.stack([a + lo, b + lo, c + lo, c + hi], axis=1))
        blocks.append(np.stack([a + lo, b + lo, b + hi, c + hi], axis=1))
        blocks.append(np.stack([a + lo, a + hi, b + hi, c + hi], axis=1))
    return np.concatenate(blocks)


def orient_positive(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """``tets`` with two nodes swapped wherever the signed volume is negative."""
    x = points[tets]
    volume = np.einsum(
        "ij,ij->i", x[:, 1] - x[:, 0], np.cross(x[:, 2] - x[:, 0], x[:, 3] - x[:, 0])
    )
    tets = tets.copy()
    flip = volume < 0
    tets[flip, 1], tets[flip, 2] = tets[flip, 2], tets[flip, 1].copy()
    return tets


def _compact(points: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drop nodes no element uses; returns (points, tets, old → new index map (-1 dropped))."""
    used = np.zeros(points.shape[0], dtype=bool)
    used[tets.ravel()] = True
    new_index = np.full(points.shape[0], -1, dtype=np.int64)
    new_index[used] = np.arange(int(used.sum()))
    return points[used], new_index[tets], new_index


# --- the ellipsoidal LV ---------------------------------------------------------------------


@dataclass(frozen=True)
class LVGeometry:
    """A truncated prolate-ellipsoidal LV wall, mm.

    The defaults are an adult LV like the ``lv-infarct`` phantom's (25 mm cavity radius,
    10 mm free wall, 8 mm at the apex, base plane 22.4 mm above the equator; ~132 ml of
    wall). ``LVGeometry.small()`` is a quick one for simulation tests.
    """

    endo_radius_mm: float = 25.0
    epi_radius_mm: float = 35.0
    endo_length_mm: float = 56.0
    epi_length_mm: float = 64.0
    base_height_mm: float = 22.4

    @classmethod
    def small(cls) -> LVGeometry:
        """A small LV (12 mm cavity radius, 5 mm wall, ~14 ml of wall) for fast tests."""
        return cls(12.0, 17.0, 26.0, 30.0, 8.0)

    def __post_init__(self) -> None:
        if not (0 < self.endo_radius_mm < self.epi_radius_mm):
            raise ValueError(
                f"radii must satisfy 0 < endo ({self.endo_radius_mm}) < epi "
                f"({self.epi_radius_mm}) mm"
            )
        if not (0 < self.endo_length_mm < self.epi_length_mm):
            raise ValueError(
                f"long semi-axes must satisfy 0 < endo ({self.endo_length_mm}) < epi "
                f"({self.epi_length_mm}) mm"
            )
        if not (-self.endo_length_mm < self.base_height_mm < self.endo_length_mm):
            raise ValueError(
                f"the base plane z = {self.base_height_mm} mm must cut the cavity "
                f"(|z| < {self.endo_length_mm} mm)"
            )

    def semi_axes(self, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(short, long) semi-axes, mm, of the wall layer at ``depth`` (0 endo, 1 epi)."""
        depth = np.asarray(depth, dtype=np.float64)
        short = self.endo_radius_mm + depth * (self.epi_radius_mm - self.endo_radius_mm)
        long = self.endo_length_mm + depth * (self.epi_length_mm - self.endo_length_mm)
        return short, long

    def layer_points(self, depth, u, angle) -> np.ndarray:
        """(…, 3) points of layer ``depth`` at meridional fraction ``u`` (0 apex, 1 base
        plane) and angle ``angle`` (radians from +x towards +y)."""
        short, long = self.semi_axes(depth)
        mu = np.asarray(u) * np.arccos(-self.base_height_mm / long)
        return np.stack(
            [
                short * np.sin(mu) * np.cos(angle),
                short * np.sin(mu) * np.sin(angle),
                -long * np.cos(mu),
            ],
            axis=-1,
        )

    def depth(self, points_mm: np.ndarray) -> np.ndarray:
        """The wall layer (0 endo, 1 epi) through each point: the analytic transmural depth
        (bisection on the layer equation r²/a(t)² + z²/c(t)² = 1, to 1e-12)."""
        p = np.asarray(points_mm, dtype=np.float64)
        r2, z2 = p[:, 0] ** 2 + p[:, 1] ** 2, p[:, 2] ** 2
        lo, hi = np.full(len(p), -0.5), np.full(len(p), 1.5)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            a, c = self.semi_axes(mid)
            outside = r2 / a**2 + z2 / c**2 > 1.0
            lo, hi = np.where(outside, mid, lo), np.where(outside, hi, mid)
        return 0.5 * (lo + hi)

    def wall_frame(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit (circumferential, longitudinal, transmural) directions at each point.

        Transmural: the normal of the point's wall layer, outwards (endo → epi);
        longitudinal: the layer's meridian tangent towards the base; circumferential:
        longitudinal × transmural (counter-clockwise seen from the base). A right-handed helix
        (fibre angle > 0) turns counter-clockwise as it rises towards the base.
        """
        p = np.asarray(points_mm, dtype=np.float64)
        a, c = self.semi_axes(self.depth(p))
        normal = np.stack([p[:, 0] / a**2, p[:, 1] / a**2, p[:, 2] / c**2], axis=1)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        circ = np.cross(np.array([0.0, 0.0, 1.0]), normal)
        circ /= np.maximum(np.linalg.norm(circ, axis=1, keepdims=True), 1e-300)
        longitudinal = np.cross(normal, circ)
        return circ, longitudinal, normal

    def wall_volume_ml(self) -> float:
        """Exact volume of the wall below the base plane, ml."""

        def below(a, c):
            zb = self.base_height_mm
            return math.pi * a * a / (c * c) * (c * c * (zb + c) - (zb**3 + c**3) / 3.0)

        epi = below(self.epi_radius_mm, self.epi_length_mm)
        endo = below(self.endo_radius_mm, self.endo_length_mm)
        return (epi - endo) / 1000.0


def _meridian_rings(geometry: LVGeometry, edge_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Meridional fractions u of the rings (0 apex … 1 base) spaced evenly in mid-wall arc
    length, and each ring's node count for ~``edge_mm`` spacing round the mid-wall."""
    u_fine = np.linspace(0.0, 1.0, 2001)
    mid = geometry.layer_points(0.5, u_fine, 0.0)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(mid, axis=0), axis=1))])
    n_rings = max(3, int(round(arc[-1] / edge_mm)))
    u = np.interp(np.linspace(0.0, arc[-1], n_rings + 1), arc, u_fine)
    radius = np.hypot(*geometry.layer_points(0.5, u, 0.0)[:, :2].T)
    counts = np.maximum(6, np.rint(2.0 * np.pi * radius / edge_mm)).astype(np.int64)
    counts[0] = 1
    return u, counts


def _layer_count(thickness_mm: float, edge_mm: float, layers: int | None) -> int:
    if layers is None:
        layers = max(2, int(round(thickness_mm / edge_mm)))
    if layers < 1:
        raise ValueError(f"need at least one element layer through the wall, got {layers}")
    return int(layers)


def _check_edge(edge_mm: float) -> float:
    if not (np.isfinite(edge_mm) and edge_mm > 0):
        raise ValueError(f"edge length must be a positive number of mm, got {edge_mm}")
    return float(edge_mm)


def lv_ellipsoid(
    edge_mm: float = 2.0, geometry: LVGeometry | None = None, *, layers: int | None = None
) -> Mesh:
    """The truncated ellipsoidal LV shell with exact ``endo``, ``epi`` and ``base`` surfaces.

    ``edge_mm``: target edge length along the mid-wall (the endocardial edges are shorter,
    the epicardial ones longer, in the ratio of the radii); ``layers``: element layers through
    the wall (default: wall thickness / edge, at least 2). The default adult LV at 2 mm has
    ~17k nodes and ~80k elements; ``LVGeometry.small()`` at 1 mm ~20k / ~100k.
    """
    geometry = geometry or LVGeometry()
    edge_mm = _check_edge(edge_mm)
    thickness = geometry.epi_radius_mm - geometry.endo_radius_mm
    layers = _layer_count(thickness, edge_mm, layers)
    u_rings, counts = _meridian_rings(geometry, edge_mm)
    ring, angle, triangles = ring_surface(counts)
    n_surface = ring.size
    depth = np.repeat(np.arange(layers + 1) / layers, n_surface)
    points = geometry.layer_points(
        depth, np.tile(u_rings[ring], layers + 1), np.tile(angle, layers + 1)
    )
    points[np.tile(ring == ring.max(), layers + 1), 2] = geometry.base_height_mm  # exactly
    tets = orient_positive(points, extrude_prisms(triangles, n_surface, layers))
    layer_of = np.repeat(np.arange(layers + 1), n_surface)
    on_base = np.tile(ring == ring.max(), layers + 1)
    faces, _ = boundary_faces(tets)
    surfaces = {
        "endo": faces[np.all(layer_of[faces] == 0, axis=1)],
        "epi": faces[np.all(layer_of[faces] == layers, axis=1)],
        "base": faces[np.all(on_base[faces], axis=1)],
    }
    _check_partition(faces, surfaces)
    return Mesh(points_mm=points, tets=tets, region=np.full(len(tets), HEALTHY), surfaces=surfaces)


def _check_partition(faces: np.ndarray, surfaces: dict[str, np.ndarray]) -> None:
    named = sum(len(t) for t in surfaces.values())
    if named != len(faces):  # a construction bug, not a user error
        raise AssertionError(f"{len(faces)} boundary faces but {named} named")


# --- biventricular variant -----------------------------------------------------------------


@dataclass(frozen=True)
class RVGeometry:
    """A crescent RV free wall over the LV's septal side (+x), mm and degrees.

    The RV cavity spans ``half_angle_deg`` either side of +x round the LV and reaches from
    the base down to meridional fraction ``apex_fraction`` of the LV (0 apex, 1 base); its
    depth between the septum and the free wall peaks at ``cavity_depth_mm``.
    """

    wall_mm: float = 4.0
    cavity_depth_mm: float = 16.0
    half_angle_deg: float = 65.0
    apex_fraction: float = 0.3

    @classmethod
    def small(cls) -> RVGeometry:
        """An RV in proportion to :meth:`LVGeometry.small`."""
        return cls(2.5, 7.0, 65.0, 0.3)


def biv_ellipsoid(
    edge_mm: float = 2.0,
    geometry: LVGeometry | None = None,
    rv: RVGeometry | None = None,
    *,
    layers: int | None = None,
) -> Mesh:
    """The ellipsoidal LV with an RV free wall attached along two insertion lines.

    The RV cavity is the gap between the LV epicardium (the septum's RV face, surface
    ``rv-septum``) and the RV free wall (its endocardium is ``rv-endo``); the gap closes at the
    anterior and inferior insertions and at the RV apex, where the RV wall continues onto the
    LV epicardium. Surfaces: ``endo`` (LV), ``epi`` (LV free wall, RV free wall and the RV
    wall's rim), ``base``, ``rv-endo``, ``rv-septum``.
    """
    geometry = geometry or LVGeometry()
    rv = rv or RVGeometry()
    edge_mm = _check_edge(edge_mm)
    thickness = geometry.epi_radius_mm - geometry.endo_radius_mm
    layers = _layer_count(thickness, edge_mm, layers)
    rv_layers = max(2, int(round(rv.wall_mm / edge_mm)))
    u_rings, counts = _meridian_rings(geometry, edge_mm)
    ring, angle, triangles = ring_surface(counts)
    n_surface = ring.size
    u = u_rings[ring]
    top_ring = ring == ring.max()

    # the RV region on the reference surface: its triangles, and the gap at each node
    wrapped = np.angle(np.exp(1j * angle))  # (-π, π], 0 at +x (septum)
    across = wrapped / math.radians(rv.half_angle_deg)
    along = (u - rv.apex_fraction) / (1.0 - rv.apex_fraction)
    inside = (np.abs(across) < 1.0) & (along > 0.0)
    patch = triangles[np.all(inside[triangles], axis=1)]
    rim = np.zeros(n_surface, dtype=bool)
    rim_edges = border_edges(patch)
    # the rim is where the cavity closes: every patch border except the base ring
    rim_edges = rim_edges[~np.all(top_ring[rim_edges], axis=1)]
    rim[rim_edges.ravel()] = True
    # depth of the cavity: parabolic across the RV, rising from the RV apex over half its
    # length (gentle slopes at the insertions keep the RV wall's elements well shaped)
    shape = np.clip(1.0 - across**2, 0, 1) * np.clip(2.0 * along, 0, 1)
    gap = np.where(rim, 0.0, rv.cavity_depth_mm * shape)

    # LV layers as in lv_ellipsoid
    lv_depth = np.repeat(np.arange(layers + 1) / layers, n_surface)
    lv_points = geometry.layer_points(lv_depth, np.tile(u, layers + 1), np.tile(angle, layers + 1))
    lv_points[np.tile(top_ring, layers + 1), 2] = geometry.base_height_mm
    lv_tets = extrude_prisms(triangles, n_surface, layers)

    # RV layers: ellipsoids grown from the LV epicardium by gap + s × wall, cut by the base
    # plane the same way (so the RV base is exactly planar too)
    short_epi, long_epi = geometry.epi_radius_mm, geometry.epi_length_mm
    offsets = gap[None, :] + (np.arange(rv_layers + 1)[:, None] / rv_layers) * rv.wall_mm
    short, long = short_epi + offsets, long_epi + offsets
    mu = u[None, :] * np.arccos(-geometry.base_height_mm / long)
    rv_points = np.stack(
        [
            short * np.sin(mu) * np.cos(angle),
            short * np.sin(mu) * np.sin(angle),
            -long * np.cos(mu),
        ],
        axis=-1,
    )
    rv_points[:, top_ring, 2] = geometry.base_height_mm
    # global index of each RV layer node: layer 0 rim nodes are the LV epicardial nodes
    n_lv = (layers + 1) * n_surface
    rv_index = n_lv + np.arange((rv_layers + 1) * n_surface).reshape(rv_layers + 1, n_surface)
    rv_index[0, rim] = layers * n_surface + np.nonzero(rim)[0]
    local_tets = extrude_prisms(patch, n_surface, rv_layers)
    rv_tets = rv_index.ravel()[local_tets]
    points = np.concatenate([lv_points, rv_points.reshape(-1, 3)])
    points, tets, new_index = _compact(points, np.concatenate([lv_tets, rv_tets]))
    tets = orient_positive(points, tets)

    faces, _ = boundary_faces(tets)
    lv_layer0 = np.zeros(points.shape[0], dtype=bool)
    lv_layer0[:n_surface] = True  # LV nodes come first and are all kept
    lv_epi = np.zeros(points.shape[0], dtype=bool)
    lv_epi[layers * n_surface : n_lv] = True
    rv_layer0 = np.zeros(points.shape[0], dtype=bool)
    rv_layer0[new_index[rv_index[0]]] = True  # includes the rim (shared LV epicardial) nodes
    surface_index = np.full(points.shape[0], -1, dtype=np.int64)
    surface_index[:n_lv] = np.arange(n_lv) % n_surface
    base = np.all(np.abs(points[faces, 2] - geometry.base_height_mm) < 1e-9, axis=1)
    endo = ~base & np.all(lv_layer0[faces], axis=1)
    on_lv_epi = ~base & np.all(lv_epi[faces], axis=1)
    # an LV epicardial face under the RV cavity (all its surface nodes inside the RV region)
    septum = on_lv_epi & np.all(inside[surface_index[faces]], axis=1)
    rv_endo = ~base & ~on_lv_epi & np.all(rv_layer0[faces], axis=1)
    epi = ~(base | endo | septum | rv_endo)
    surfaces = {
        "endo": faces[endo],
        "epi": faces[epi],
        "base": faces[base],
        "rv-endo": faces[rv_endo],
        "rv-septum": faces[septum],
    }
    _check_partition(faces, surfaces)
    return Mesh(points_mm=points, tets=tets, region=np.full(len(tets), HEALTHY), surfaces=surfaces)


# --- atrial shell --------------------------------------------------------------------------


@dataclass(frozen=True)
class AtrialGeometry:
    """A thin spherical atrial shell with circular openings, mm and degrees.

    Openings are given by their centre direction (polar angle from +z, azimuth from +x) and
    angular radius; the first is the AV valve (mitral for an LA), the rest veins.
    """

    radius_mm: float = 25.0
    wall_mm: float = 2.5
    valve: tuple[float, float, float] = (180.0, 0.0, 32.0)  # at the bottom, ~27 mm across
    veins: tuple[tuple[float, float, float], ...] = (
        (50.0, 140.0, 14.0),
        (80.0, 160.0, 14.0),
        (50.0, 220.0, 14.0),
        (80.0, 200.0, 14.0),
    )


def _direction(polar_deg: float, azimuth_deg: float) -> np.ndarray:
    p, a = math.radians(polar_deg), math.radians(azimuth_deg)
    return np.array([math.sin(p) * math.cos(a), math.sin(p) * math.sin(a), math.cos(p)])


def _round_openings(
    unit: np.ndarray, triangles: np.ndarray, centres: np.ndarray, radii_rad: np.ndarray
) -> np.ndarray:
    """Move the border nodes of each opening onto its circle (angular radius on the unit
    sphere), then relax the nodes near the openings (umbrella smoothing, projected back onto
    the sphere) so the triangles the move stretched even out again."""
    border = np.zeros(len(unit), dtype=bool)
    border[border_edges(triangles).ravel()] = True
    unit = unit.copy()
    nearest = np.argmax(unit @ centres.T, axis=1)
    c = centres[nearest[border]]
    r = radii_rad[nearest[border]]
    p = unit[border]
    w = p - np.einsum("ij,ij->i", p, c)[:, None] * c
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    unit[border] = np.cos(r)[:, None] * c + np.sin(r)[:, None] * w
    # nodes within a few rings of an opening relax towards the mean of their neighbours
    angle_to_circle = np.arccos(np.clip(unit @ centres.T, -1, 1)) - radii_rad[None, :]
    near = (angle_to_circle.min(axis=1) < 0.25) & ~border
    used = np.zeros(len(unit), dtype=bool)
    used[triangles.ravel()] = True
    near &= used
    adjacency = edge_graph(unit, triangles)
    adjacency.data[:] = 1.0
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    for _ in range(10):
        mean = adjacency @ unit / np.maximum(degree, 1)[:, None]
        unit[near] = mean[near] / np.linalg.norm(mean[near], axis=1, keepdims=True)
    return unit


def atrial_shell(
    edge_mm: float = 1.5, geometry: AtrialGeometry | None = None, *, layers: int | None = None
) -> Mesh:
    """A thin spherical shell with a valve and four vein openings, extruded outwards from its
    endocardial sphere in ``layers`` element layers (default: wall / edge, at least 2).
    Surfaces: ``endo``, ``epi``, ``valve``, ``vein-1`` .. ``vein-4`` (the opening rims)."""
    geometry = geometry or AtrialGeometry()
    edge_mm = _check_edge(edge_mm)
    layers = _layer_count(geometry.wall_mm, edge_mm, layers)
    if layers < 2:
        raise ValueError(f"an atrial wall needs at least 2 element layers, got {layers}")
    radius = geometry.radius_mm
    n_rings = max(4, int(round(math.pi * radius / edge_mm)))
    polar = np.linspace(0.0, math.pi, n_rings + 1)
    counts = np.maximum(6, np.rint(2 * math.pi * radius * np.sin(polar) / edge_mm)).astype(int)
    counts[0] = counts[-1] = 1
    ring, angle, triangles = ring_surface(counts)
    theta = polar[ring]
    unit = np.stack(
        [np.sin(theta) * np.cos(angle), np.sin(theta) * np.sin(angle), np.cos(theta)], 1
    )
    openings = [geometry.valve, *geometry.veins]
    centres = np.stack([_direction(p, a) for p, a, _ in openings])
    cos_radius = np.cos(np.radians([r for _, _, r in openings]))
    tri_centre = unit[triangles].mean(axis=1)
    tri_centre /= np.linalg.norm(tri_centre, axis=1, keepdims=True)
    opening_of_tri = tri_centre @ centres.T >= cos_radius[None, :]
    kept = triangles[~opening_of_tri.any(axis=1)]
    for _ in range(4):  # drop "ears" (all three nodes on a border): snapped flat they degenerate
        border = np.zeros(len(unit), dtype=bool)
        border[border_edges(kept).ravel()] = True
        ears = np.all(border[kept], axis=1)
        if not ears.any():
            break
        kept = kept[~ears]
    unit = _round_openings(unit, kept, centres, np.radians([r for _, _, r in openings]))
    n_surface = ring.size
    radii = radius + np.arange(layers + 1) * geometry.wall_mm / layers
    points = (radii[:, None, None] * unit[None, :, :]).reshape(-1, 3)
    tets = extrude_prisms(kept, n_surface, layers)
    points, tets, new_index = _compact(points, tets)
    tets = orient_positive(points, tets)
    faces, _ = boundary_faces(tets)
    r = np.linalg.norm(points, axis=1)
    endo = np.all(np.abs(r[faces] - radii[0]) < 1e-9, axis=1)
    epi = np.all(np.abs(r[faces] - radii[-1]) < 1e-9, axis=1)
    rims = ~(endo | epi)
    centre_dir = points[faces].mean(axis=1)
    centre_dir /= np.linalg.norm(centre_dir, axis=1, keepdims=True)
    nearest = np.argmax(centre_dir @ centres.T, axis=1)
    surfaces = {"endo": faces[endo], "epi": faces[epi], "valve": faces[rims & (nearest == 0)]}
    for k in range(1, len(openings)):
        surfaces[f"vein-{k}"] = faces[rims & (nearest == k)]
    _check_partition(faces, surfaces)
    del new_index
    return Mesh(points_mm=points, tets=tets, region=np.full(len(tets), HEALTHY), surfaces=surfaces)
