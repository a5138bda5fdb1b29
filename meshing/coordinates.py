"""Boundary surfaces and anatomical coordinates of ventricular and atrial meshes.

**Surfaces** (:func:`identify_surfaces`), for a mesh that lacks them. Outward normals of the
boundary faces point out of the tissue (into a cavity on an endocardium). Surfaces supplied
with a mesh may be wound either way: the functions here that read their normals re-wind them
outward first (:func:`wind_ventricular_surfaces_outward`).

- Ventricles: ``base`` is the largest planar set of boundary faces whose removal splits the
  rest of the boundary apart (a closed or ragged base is refused with what was found). The
  remaining pieces are the epicardium (the one piece facing outwards: its normals point away
  from the mesh's centre, Σ (x − c)·n A > 0) and one or two cavities. With two cavities the
  LV is the rounder one (higher sphericity π^⅓ (6V)^⅔ / A of the cavity closed at the base),
  the other is the RV, split into ``rv-septum`` (faces whose normal points away from the LV's
  long axis) and ``rv-endo`` (the free wall).
- Atria: the boundary is split at sharp edges (normals turning by more than
  ``feature_angle_deg``); the outward-facing large piece is ``epi``, the inward-facing one
  ``endo``, and each remaining group of pieces is an opening rim: the largest is ``valve``
  (the mitral / tricuspid annulus), the others ``vein-1`` … in decreasing size.

**Ventricular coordinates** (:func:`ventricular_coordinates`), after Bayer et al. 2018
(universal ventricular coordinates, Med Image Anal 45:83), as point fields:

- ``transmural``: Laplace solution, 0 on the endocardium, 1 on the epicardium. On a
  biventricular mesh the mesh is first split into LV (with the septum) and RV by the UVC
  transventricular solve (0 on ``endo``, ½ on ``rv-septum``, 1 on ``rv-endo``; LV where ≤ ½);
  in the LV the coordinate is 1 on the epicardium, on ``rv-septum`` and on the cut to the RV,
  in the RV 0 on ``rv-endo`` and 1 on the epicardium.
- ``apicobasal``: 0 at the epicardial apex, 1 on the base: the Laplace solution between the two
  remapped, as in UVC, to the normalised distance from the apex along epicardial geodesics to
  the base rim (so equal steps are equal distances).
- ``rotational``: radians in (−π, π] round the LV long axis, **0 at the middle of the septum**,
  +π/2 anterior, ±π the lateral (free) wall, −π/2 inferior (UVC's orientation). The axis runs
  through the centroids of the LV endocardium at each height; the anterior direction is
  long axis × septum, which is anatomically right for meshes in a right-handed patient frame
  (scanner RAS / LPS mm).

The septum comes from the RV (centroid of ``rv-septum``) on a biventricular mesh; an LV-only
mesh takes a septum point from the caller (config ``anatomy.septum_point_mm``, CLI
``--septum-mm``) or else falls back, with a warning, to the phantoms' convention: anterior is
scanner +y (RAS anterior) across the long axis, the septum anterior × long axis (towards
patient right); the analytic meshes of :mod:`.ellipsoid` (long axis +z) get septum +x.

**Atrial coordinates** (:func:`atrial_coordinates`): ``transmural`` (0 endo, 1 epi) and
``valve_vein`` (Laplace, 0 on the valve rim, 1 on every vein rim).

Heights along the long axis (for the AHA segments) come with the frame:
:class:`VentricularFrame`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.sparse import csgraph

from cardiotwin.meshing.boundary import (
    boundary_faces,
    edge_graph,
    face_adjacency,
    triangle_normals_and_areas,
)
from cardiotwin.meshing.laplace import DirichletLaplace, stiffness_matrix
from cardiotwin.meshing.mesh import Mesh, MeshError, outward_surfaces

log = logging.getLogger(__name__)

VENTRICLE_SURFACES = ("endo", "epi", "base")
BIV_SURFACES = ("rv-endo", "rv-septum")
#: the opening rim taken as the AV valve; other openings are veins (any other name)
VALVE_NAMES = ("valve", "mv", "tv", "mitral", "tricuspid")


class SurfaceError(MeshError):
    """Boundary surfaces that cannot be identified; the message says what was found."""


# --- helpers ---------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def surface_nodes(mesh: Mesh, *names: str) -> np.ndarray:
    """Boolean mask of the nodes on any of the named surfaces."""
    mask = np.zeros(mesh.n_points, dtype=bool)
    for name in names:
        if name in mesh.surfaces:
            mask[mesh.surfaces[name].ravel()] = True
    return mask


def _components(n_faces: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    from scipy import sparse

    graph = sparse.coo_matrix((np.ones(len(first)), (first, second)), shape=(n_faces, n_faces))
    return csgraph.connected_components(graph, directed=False)[1]


def _mean_edge(points: np.ndarray, triangles: np.ndarray) -> float:
    x = points[triangles]
    return float(np.mean(np.linalg.norm(x - np.roll(x, 1, axis=1), axis=2)))


def _outward_measure(centres, normals, areas, reference) -> float:
    """Σ (x − reference)·n A: positive when the faces face away from ``reference``."""
    return float(np.sum(np.einsum("ij,ij->i", centres - reference, normals) * areas))


# --- surface identification ------------------------------------------------------------------


@dataclass
class _Boundary:
    faces: np.ndarray
    centres: np.ndarray
    normals: np.ndarray
    areas: np.ndarray
    first: np.ndarray
    second: np.ndarray
    edge_mm: float
    centre: np.ndarray

    @classmethod
    def of(cls, mesh: Mesh) -> _Boundary:
        faces, _ = boundary_faces(mesh.tets)
        if len(faces) == 0:
            raise SurfaceError("the mesh has no boundary faces (is it empty?)")
        normals, areas = triangle_normals_and_areas(mesh.points_mm, faces)
        first, second, _ = face_adjacency(faces, mesh.points_mm)
        return cls(
            faces,
            mesh.points_mm[faces].mean(axis=1),
            normals,
            areas,
            first,
            second,
            _mean_edge(mesh.points_mm, faces),
            mesh.points_mm.mean(axis=0),
        )

    def split(self, removed: np.ndarray) -> np.ndarray:
        """Component label of every face once ``removed`` faces are cut out (-1 for those)."""
        keep = ~removed[self.first] & ~removed[self.second]
        labels = _components(len(self.faces), self.first[keep], self.second[keep])
        out = np.full(len(self.faces), -1, dtype=np.int64)
        out[~removed] = np.unique(labels[~removed], return_inverse=True)[1]
        return out


def _planar_support(b: _Boundary, normal, point, tolerance_mm, cos_angle) -> np.ndarray:
    distance = np.abs((b.centres - point) @ normal)
    return (b.normals @ normal >= cos_angle) & (distance <= tolerance_mm)


#: depth (mm) below the end of the long axis searched for a base plane, at least: the warp of
#: a base from thick slices is a property of the image (a millimetre or more), not of the
#: edge length, so at 0.5 mm three edges no longer cover it
BASE_END_WINDOW_MM = 3.0


def _axis_end_planes(b: _Boundary, tolerance_mm: float, cos_angle: float) -> list[tuple]:
    """Candidate base planes at both ends of the boundary's long axis (its principal axis):
    the faces near an end facing along the axis, fitted as one plane whose tolerance covers
    their spread. A base meshed from thick image slices is warped by a millimetre or so (the
    interpolation between slices), more than a local plane fit tolerates."""
    centre = (b.centres.T @ b.areas) / b.areas.sum()
    offsets = b.centres - centre
    _, _, axes = np.linalg.svd(offsets * np.sqrt(b.areas)[:, None], full_matrices=False)
    candidates = []
    for axis in (axes[0], -axes[0]):
        height = offsets @ axis
        window = max(3.0 * b.edge_mm, BASE_END_WINDOW_MM)
        near_end = (height >= height.max() - window) & (b.normals @ axis >= cos_angle)
        if b.areas[near_end].sum() < 0.01 * b.areas.sum():
            continue
        normal = _unit(b.normals[near_end].T @ b.areas[near_end])
        point = (b.centres[near_end].T @ b.areas[near_end]) / b.areas[near_end].sum()
        spread = np.abs((b.centres[near_end] - point) @ normal)
        tolerance = max(tolerance_mm, float(np.percentile(spread, 98)))
        area = float(b.areas[_planar_support(b, normal, point, tolerance, cos_angle)].sum())
        candidates.append((area, normal, point, tolerance))
    return sorted(candidates, key=lambda c: -c[0])


#: times a candidate base plane is refitted to its support
PLANE_REFINEMENTS = 4


def _find_base(b: _Boundary, tolerance_mm: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Faces of the planar base and the component labels of the rest (-1 on the base).

    Candidate planes come from up to 400 faces spread evenly through the face list (so the
    result is reproducible), each refined once on its support; candidates are tried by
    decreasing refined support area until one's removal separates the boundary as a base
    does (:func:`_ventricle_like`: an outward epicardium and inward cavities, so flat
    terraces of thick-slice images or a wall clipped by the field of view are not taken).
    """
    cos_angle = math.cos(math.radians(30.0))
    total = b.areas.sum()
    picks = np.unique(np.linspace(0, len(b.faces) - 1, min(400, len(b.faces))).astype(int))
    scores = []
    for start in range(0, len(picks), 64):
        chunk = picks[start : start + 64]
        aligned = b.normals @ b.normals[chunk].T >= cos_angle
        offsets = np.abs(
            np.einsum("ij,kj->ik", b.centres, b.normals[chunk])
            - np.einsum("kj,kj->k", b.centres[chunk], b.normals[chunk])[None, :]
        )
        support = aligned & (offsets <= tolerance_mm)
        scores.append(b.areas @ support)
    scores = np.concatenate(scores)
    # one face's normal is noisy on a rounded or ridged surface: rank the candidates by the
    # support of their refined plane (the area-weighted plane of the support, iterated)
    planes = []
    for candidate in picks[np.argsort(-scores, kind="stable")]:
        normal, point = b.normals[candidate], b.centres[candidate]
        for _ in range(PLANE_REFINEMENTS):
            support = _planar_support(b, normal, point, tolerance_mm, cos_angle)
            if not support.any():
                break
            normal = _unit(b.normals[support].T @ b.areas[support])
            point = (b.centres[support].T @ b.areas[support]) / b.areas[support].sum()
        support = _planar_support(b, normal, point, tolerance_mm, cos_angle)
        planes.append((float(b.areas[support].sum()), normal, point))
    planes.sort(key=lambda plane: -plane[0])
    tried: list[np.ndarray] = []
    found = []
    for area, normal, point, tolerance in _axis_end_planes(b, tolerance_mm, cos_angle) + [
        (*plane, tolerance_mm) for plane in planes[:40]
    ]:
        support = _planar_support(b, normal, point, tolerance, cos_angle)
        if any(np.array_equal(support, seen) for seen in tried):
            continue
        tried.append(support)
        if area < 0.01 * total:
            break
        labels = b.split(support)
        found.append((area, _large_pieces(b, labels)))
        if _ventricle_like(b, labels):
            return support, labels, ""
        # a rounded rim joins endo and epi: cut a band round the plane, give it back after
        band = np.abs((b.centres - point) @ normal) <= 2.0 * tolerance
        labels = b.split(band | support)
        if _ventricle_like(b, labels):
            labels = _give_back(b, labels, band & ~support)
            return support, labels, "rounded base rim: faces near the base plane reassigned"
    listing = ", ".join(f"{a:.0f} mm² → {n} piece(s)" for a, n in found[:5]) or "none"
    raise SurfaceError(
        "could not find the planar open base of the ventricles: no plane of boundary faces "
        "separates an outward-facing epicardium from one or two cavities (largest planar "
        f"sets: {listing}; "
        f"boundary area {total:.0f} mm²). The base may be closed or the mesh may have holes; "
        "cut the base open with a plane, or give the mesh 'endo', 'epi' and 'base' surfaces"
    )


#: boundary pieces smaller than this share of the boundary area are crumbs or voids
CRUMB_SHARE = 0.005


def _large_pieces(b: _Boundary, labels: np.ndarray) -> int:
    """Number of labelled pieces (label ≥ 0) holding at least CRUMB_SHARE of the area (an
    internal void is a closed piece of its own, so it must not count as a split)."""
    areas = np.bincount(labels[labels >= 0], weights=b.areas[labels >= 0])
    return int(np.sum(areas >= CRUMB_SHARE * b.areas.sum()))


#: a cavity opened by the base holds at least this share of the boundary area
CAVITY_SHARE = 0.05


def _ventricle_like(b: _Boundary, labels: np.ndarray) -> bool:
    """Does the split look like ventricles: one outward-facing large piece (the epicardium)
    and one or two inward-facing ones (cavities), each a real share of the area? A flat patch
    elsewhere (a terrace of thick slices, a wall clipped by the field of view) can split off
    a small piece, but not an inward-facing cavity."""
    outward = inward = 0
    total = b.areas.sum()
    for label in range(labels.max() + 1):
        faces = labels == label
        area = b.areas[faces].sum()
        if area < CRUMB_SHARE * total:
            continue
        if _outward_measure(b.centres[faces], b.normals[faces], b.areas[faces], b.centre) > 0:
            outward += 1
        elif area >= CAVITY_SHARE * total:
            inward += 1
        else:
            return False
    return outward == 1 and inward in (1, 2)


def _give_back(b: _Boundary, labels: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Give each face in ``faces`` (labelled -1) the label of an edge neighbour, repeatedly."""
    labels = labels.copy()
    labels[faces] = -1
    for _ in range(100):
        missing = labels[b.first] < 0
        take = missing & (labels[b.second] >= 0)
        labels[b.first[take]] = labels[b.second[take]]
        missing = labels[b.second] < 0
        take = missing & (labels[b.first] >= 0)
        labels[b.second[take]] = labels[b.first[take]]
        if not np.any(labels[faces] < 0):
            break
    return labels


def _ventricle_surfaces(mesh: Mesh, b: _Boundary) -> tuple[dict[str, np.ndarray], list[str]]:
    notes = []
    base, labels, note = _find_base(b, tolerance_mm=max(0.5 * b.edge_mm, 1e-6))
    if note:
        notes.append(note)
    total = b.areas.sum()
    pieces = []
    base_nodes = np.zeros(mesh.n_points, dtype=bool)
    base_nodes[b.faces[base].ravel()] = True
    crumbs_on_base, voids = [], []
    for label in range(labels.max() + 1):
        faces = labels == label
        area = float(b.areas[faces].sum())
        if area < CRUMB_SHARE * total:  # a crumb beside the base plane, or a void in the wall
            if base_nodes[b.faces[faces].ravel()].any():
                base |= faces
                crumbs_on_base.append(area)
            else:
                voids.append(area)
            continue
        pieces.append(faces)
    if crumbs_on_base:
        notes.append(
            f"{len(crumbs_on_base)} small boundary piece(s) beside the base "
            f"({sum(crumbs_on_base):.1f} mm²) added to it"
        )
    if voids:
        notes.append(
            f"{len(voids)} small closed boundary piece(s) inside the wall (voids, "
            f"{sum(voids):.1f} mm²) left unnamed (zero flux)"
        )
    centre = mesh.points_mm.mean(axis=0)
    facing = [_outward_measure(b.centres[f], b.normals[f], b.areas[f], centre) for f in pieces]
    outward = [i for i, m in enumerate(facing) if m > 0]
    summary = ", ".join(
        f"{b.areas[f].sum():.0f} mm² facing {'out' if m > 0 else 'in'}"
        for f, m in zip(pieces, facing, strict=True)
    )
    if len(outward) != 1 or len(pieces) not in (2, 3):
        raise SurfaceError(
            "expected the boundary (without the base) to fall into one outward-facing "
            f"epicardium and one or two cavities, found {len(pieces)} pieces ({summary}); "
            "a mesh with holes, a closed cavity or several hearts cannot be labelled "
            "automatically: give it 'endo', 'epi' and 'base' surfaces"
        )
    epi = pieces[outward[0]]
    cavities = [f for i, f in enumerate(pieces) if i != outward[0]]
    base_normal = _unit(b.normals[base].T @ b.areas[base])
    base_point = (b.centres[base].T @ b.areas[base]) / b.areas[base].sum()
    surfaces = {"epi": b.faces[epi], "base": b.faces[base]}
    if len(cavities) == 1:
        surfaces["endo"] = b.faces[cavities[0]]
        return surfaces, notes
    split, note = _split_cavities(
        mesh.points_mm, b.faces[cavities[0]], b.faces[cavities[1]], base_point, base_normal
    )
    notes.append(note)
    surfaces.update(split)
    return surfaces, notes


def _split_cavities(points, first, second, base_point, base_normal):
    """Two cavity surfaces → ``endo`` (the rounder: the LV), ``rv-septum`` and ``rv-endo``."""

    def sphericity(triangles):
        normals, areas = triangle_normals_and_areas(points, triangles)
        centres = points[triangles].mean(axis=1)
        # origin on the base plane: the cap closing the cavity adds nothing to the volume
        volume = -_outward_measure(centres, normals, areas, base_point) / 3
        cap = abs(float(base_normal @ (normals.T @ areas)))
        return math.pi ** (1 / 3) * (6 * max(volume, 0.0)) ** (2 / 3) / (areas.sum() + cap)

    round_ = [sphericity(first), sphericity(second)]
    lv, rv = (first, second) if round_[0] >= round_[1] else (second, first)
    note = (
        f"two cavities: sphericity {max(round_):.2f} taken as the LV, {min(round_):.2f} as the RV"
    )
    # the septum's RV face looks away from the LV axis, the free wall's endocardium towards it
    axis_point = points[np.unique(lv)].mean(axis=0)
    normals, _ = triangle_normals_and_areas(points, rv)
    radial = points[rv].mean(axis=1) - axis_point
    radial -= np.outer(radial @ base_normal, base_normal)
    septal = np.einsum("ij,ij->i", normals, radial) > 0
    return {"endo": lv, "rv-septum": rv[septal], "rv-endo": rv[~septal]}, note


def split_endocardium(mesh: Mesh) -> tuple[dict[str, np.ndarray], str] | None:
    """When a ventricular mesh's ``endo`` holds two separate cavities (a mesher that named
    the LV and RV endocardium alike) and it has no RV surfaces, the LV ``endo``,
    ``rv-septum`` and ``rv-endo`` split as :func:`identify_surfaces` would; else ``None``."""
    if is_biventricular(mesh) or "endo" not in mesh.surfaces or "base" not in mesh.surfaces:
        return None
    mesh, _ = wind_ventricular_surfaces_outward(mesh)
    endo = mesh.surfaces["endo"]
    first, second, _ = face_adjacency(endo, mesh.points_mm)
    labels = _components(len(endo), first, second)
    _, areas = triangle_normals_and_areas(mesh.points_mm, endo)
    piece_area = np.bincount(labels, weights=areas)
    large = np.nonzero(piece_area >= 0.05 * areas.sum())[0]
    if large.size != 2:
        return None
    base = mesh.surfaces["base"]
    normals, base_areas = triangle_normals_and_areas(mesh.points_mm, base)
    base_normal = _unit(normals.T @ base_areas)
    base_point = mesh.points_mm[base].mean(axis=1).T @ base_areas / base_areas.sum()
    # crumbs of the endocardium go with the larger cavity
    bigger = large[np.argmax(piece_area[large])]
    labels = np.where(np.isin(labels, large), labels, bigger)
    return _split_cavities(
        mesh.points_mm, endo[labels == large[0]], endo[labels == large[1]], base_point, base_normal
    )


def _feature_patches(b: _Boundary, feature_angle_deg: float) -> np.ndarray:
    smooth = np.einsum("ij,ij->i", b.normals[b.first], b.normals[b.second]) >= math.cos(
        math.radians(feature_angle_deg)
    )
    labels = _components(len(b.faces), b.first[smooth], b.second[smooth])
    return np.unique(labels, return_inverse=True)[1]


def _atrium_surfaces(
    mesh: Mesh, b: _Boundary, feature_angle_deg: float
) -> tuple[dict[str, np.ndarray], list[str]]:
    notes = []
    labels = _feature_patches(b, feature_angle_deg)
    areas = np.bincount(labels, weights=b.areas)
    total = areas.sum()
    # crumbs (< 0.05 % of the boundary) join the neighbour they share most edges with
    crumbs = np.nonzero(areas < 5e-4 * total)[0]
    if crumbs.size:
        labels = _give_back(b, labels, np.isin(labels, crumbs))
        labels = np.unique(labels, return_inverse=True)[1]
        areas = np.bincount(labels, weights=b.areas)
        notes.append(f"{crumbs.size} tiny boundary patches merged into their neighbours")
    centre = mesh.points_mm.mean(axis=0)
    order = np.argsort(-areas, kind="stable")
    if len(order) < 3:
        raise SurfaceError(
            f"expected an endocardium, an epicardium and at least one opening separated by "
            f"sharp edges (> {feature_angle_deg:g}°), found {len(order)} patch(es) of "
            f"{', '.join(f'{a:.0f}' for a in areas[order])} mm²; a closed shell has no "
            "openings: give the mesh 'endo', 'epi' and opening surfaces"
        )
    big = order[:2]
    facing = [
        _outward_measure(
            b.centres[labels == k], b.normals[labels == k], b.areas[labels == k], centre
        )
        for k in big
    ]
    if (facing[0] > 0) == (facing[1] > 0):
        raise SurfaceError(
            "the two largest boundary patches "
            f"({areas[big[0]]:.0f} and {areas[big[1]]:.0f} mm²) do not face opposite ways, "
            "so endocardium and epicardium cannot be told apart; give the mesh 'endo' and "
            "'epi' surfaces"
        )
    epi, endo = (big[0], big[1]) if facing[0] > 0 else (big[1], big[0])
    rim_faces = ~np.isin(labels, big)
    # rim patches that touch each other belong to one opening
    touching = rim_faces[b.first] & rim_faces[b.second]
    groups = _components(len(b.faces), b.first[touching], b.second[touching])
    openings = np.unique(groups[rim_faces])
    opening_area = np.array([b.areas[rim_faces & (groups == g)].sum() for g in openings])
    openings = openings[np.argsort(-opening_area, kind="stable")]
    surfaces = {"endo": b.faces[labels == endo], "epi": b.faces[labels == epi]}
    for rank, group in enumerate(openings):
        name = "valve" if rank == 0 else f"vein-{rank}"
        surfaces[name] = b.faces[rim_faces & (groups == group)]
    notes.append(
        f"{len(openings)} opening(s); the largest "
        f"({opening_area.max():.0f} mm² of rim) is taken as the valve"
    )
    return surfaces, notes


def identify_surfaces(
    mesh: Mesh, kind: str, *, feature_angle_deg: float
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Name the boundary faces of ``mesh`` (see the module docstring for the rules).

    Returns ``(surfaces, notes)``: name → (k, 3) triangles with outward normals, and what was
    decided on the way (for the report). ``feature_angle_deg`` (atria): edges where the
    normals turn by more than this separate patches. Raises :class:`SurfaceError` saying what
    was found when the boundary does not fit the kind.
    """
    b = _Boundary.of(mesh)
    if kind == "ventricle":
        return _ventricle_surfaces(mesh, b)
    if kind == "atrium":
        return _atrium_surfaces(mesh, b, feature_angle_deg)
    raise ValueError(f"kind must be 'ventricle' or 'atrium', got {kind!r}")


# --- ventricular coordinates -----------------------------------------------------------------


@dataclass(frozen=True)
class VentricularFrame:
    """Landmarks and axes of the LV, scanner mm.

    ``long_axis``: unit vector apex → base (the base faces' mean outward normal); ``septum``
    and ``anterior``: unit vectors across the long axis (anterior = long axis × septum);
    ``septum_source``: ``"rv"``, ``"caller"`` or ``"default"``. Heights are measured along the
    long axis from the epicardial apex: the endocardial apex (the end of the LV cavity) sits at
    ``cavity_apex_height_mm``, the base plane at ``base_height_mm``.
    """

    apex_node: int
    apex_mm: np.ndarray
    base_centre_mm: np.ndarray
    long_axis: np.ndarray
    septum: np.ndarray
    anterior: np.ndarray
    septum_source: str
    cavity_apex_height_mm: float
    base_height_mm: float
    centreline_heights_mm: np.ndarray
    centreline_mm: np.ndarray

    def heights_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """Height of each point above the epicardial apex along the long axis, mm."""
        return (np.asarray(points_mm) - self.apex_mm) @ self.long_axis

    def axis_points_mm(self, heights_mm: np.ndarray) -> np.ndarray:
        """The LV centreline (endocardial centroids) at the given heights."""
        return np.stack(
            [
                np.interp(heights_mm, self.centreline_heights_mm, self.centreline_mm[:, k])
                for k in range(3)
            ],
            axis=1,
        )

    def rotational(self, points_mm: np.ndarray) -> np.ndarray:
        """Angle round the centreline, radians in (−π, π]: 0 septum, +π/2 anterior."""
        points_mm = np.asarray(points_mm, dtype=np.float64)
        d = points_mm - self.axis_points_mm(self.heights_mm(points_mm))
        angle = np.arctan2(d @ self.anterior, d @ self.septum)
        return np.where(angle <= -np.pi, np.pi, angle)


@dataclass
class VentricularFields:
    """Point fields of :func:`ventricular_coordinates` and the Laplace solutions behind them.

    ``phi_epi``, ``phi_lv``, ``phi_rv`` (Bayer 2012): 1 on the epicardium / LV endocardium /
    RV endocardium (free wall and septal face), 0 on the other two; ``psi``: the apex → base
    Laplace solution; ``lv``: True for LV nodes (with the septum).
    """

    transmural: np.ndarray
    apicobasal: np.ndarray
    rotational: np.ndarray
    lv: np.ndarray
    psi: np.ndarray
    phi_epi: np.ndarray
    phi_lv: np.ndarray
    phi_rv: np.ndarray
    frame: VentricularFrame
    notes: list[str] = field(default_factory=list)


def _require(mesh: Mesh, names) -> None:
    missing = [n for n in names if n not in mesh.surfaces or len(mesh.surfaces[n]) == 0]
    if missing:
        raise SurfaceError(
            f"the mesh lacks the surface(s) {', '.join(missing)} (it has: "
            f"{', '.join(sorted(mesh.surfaces)) or 'none'}); run identify_surfaces or "
            "cardiotwin prepare first"
        )


def wind_ventricular_surfaces_outward(mesh: Mesh) -> tuple[Mesh, dict[str, int]]:
    """``mesh`` with ``endo``, ``epi``, ``base``, ``rv-endo`` and ``rv-septum`` wound so every
    normal points out of the tissue, and the number of triangles re-wound per surface.

    Everything here that reads a surface's normals (which cavity is the LV, the septal face of
    the RV, the long axis from the base) assumes outward normals; surfaces supplied with a mesh
    may be wound inward. Returns ``mesh`` itself when nothing needed re-winding. Raises
    :class:`MeshError` naming a surface with triangles that are not boundary faces.
    """
    given = {n: mesh.surfaces[n] for n in VENTRICLE_SURFACES + BIV_SURFACES if n in mesh.surfaces}
    wound, rewound = outward_surfaces(mesh.tets, given)
    if not any(rewound.values()):
        return mesh, rewound
    return replace(mesh, surfaces={**mesh.surfaces, **wound}), rewound


def is_biventricular(mesh: Mesh) -> bool:
    """True when the mesh has an RV cavity (``rv-endo`` or ``rv-septum``)."""
    return any(len(mesh.surfaces.get(n, ())) for n in BIV_SURFACES)


#: how far a caller's septum point may lie from the mesh, mm (it names a direction, but one
#: far outside the heart is a wrong frame or a typo, not a septum)
SEPTUM_POINT_MAX_DISTANCE_MM = 20.0


def _frame(mesh: Mesh, septum_point_mm, lv_nodes: np.ndarray, notes: list[str]) -> VentricularFrame:
    points = mesh.points_mm
    base = mesh.surfaces["base"]
    normals, areas = triangle_normals_and_areas(points, base)
    long_axis = _unit(normals.T @ areas)
    base_centre = (points[base].mean(axis=1).T @ areas) / areas.sum()
    epi_nodes = np.unique(mesh.surfaces["epi"])
    epi_lv = epi_nodes[lv_nodes[epi_nodes]] if lv_nodes[epi_nodes].any() else epi_nodes
    apex_node = int(epi_lv[np.argmin(points[epi_lv] @ long_axis)])
    apex = points[apex_node]
    endo_nodes = np.unique(mesh.surfaces["endo"])
    endo_heights = (points[endo_nodes] - apex) @ long_axis
    base_height = float((base_centre - apex) @ long_axis)
    cavity_apex = float(endo_heights.min())
    # centreline: centroids of the LV endocardium in 24 height bands
    edges = np.linspace(cavity_apex, endo_heights.max(), 25)
    band = np.clip(np.searchsorted(edges, endo_heights, side="right") - 1, 0, 23)
    counts = np.bincount(band, minlength=24)
    sums = np.stack(
        [np.bincount(band, weights=points[endo_nodes, k], minlength=24) for k in range(3)], 1
    )
    filled = counts > 0
    centreline = sums[filled] / counts[filled, None]
    centre_heights = (centreline - apex) @ long_axis
    order = np.argsort(centre_heights)
    centre_heights, centreline = centre_heights[order], centreline[order]
    if is_biventricular(mesh) and len(mesh.surfaces.get("rv-septum", ())):
        target = points[np.unique(mesh.surfaces["rv-septum"])].mean(axis=0)
        source = "rv"
    elif septum_point_mm is not None:
        target = np.asarray(septum_point_mm, dtype=np.float64).reshape(3)
        source = "caller"
    else:
        target = None
        source = "default"
    if target is not None and source == "caller":
        nearest_mm = float(np.sqrt(((points - target) ** 2).sum(axis=1).min()))
        if not nearest_mm <= SEPTUM_POINT_MAX_DISTANCE_MM:
            raise MeshError(
                f"the septum point {np.round(target, 1).tolist()} mm is {nearest_mm:.0f} mm from "
                f"the nearest point of the mesh (at most {SEPTUM_POINT_MAX_DISTANCE_MM:g} mm "
                "allowed): give a point in the septum, in the scanner mm of the image (an "
                "LPS point in a RAS image has x and y negated)"
            )
    if target is not None:
        height = (target - apex) @ long_axis
        offset = target - np.array(
            [np.interp(height, centre_heights, centreline[:, k]) for k in range(3)]
        )
        septum = offset - (offset @ long_axis) * long_axis
        if np.linalg.norm(septum) < 1e-6 * max(1.0, np.linalg.norm(offset)):
            raise MeshError(
                f"the septum point {np.round(target, 2).tolist()} mm lies on the LV long axis, "
                "so it gives no direction; choose a point in the septum"
            )
    else:
        # scanner +y (anterior in RAS) across the long axis is taken as anterior; the septum
        # is then anterior × long axis (towards patient right), as in the phantoms' frame
        anterior = np.array([0.0, 1.0, 0.0]) - long_axis[1] * long_axis
        if np.linalg.norm(anterior) < 0.2:  # long axis along y: take +x as the septum
            septum = np.array([1.0, 0.0, 0.0]) - long_axis[0] * long_axis
        else:
            septum = np.cross(anterior, long_axis)
        message = (
            "no RV and no septum point: the anterior wall is assumed towards scanner +y "
            "(RAS anterior) and the septum towards patient right; pass --septum-mm X Y Z "
            "(config anatomy.septum_point_mm) for a reliable rotational coordinate and AHA "
            "segments (a mesh in LPS coordinates, as ITK-based tools write them, would get its "
            "segments turned by 180°)"
        )
        log.warning(message)
        notes.append(message)
    septum = _unit(septum)
    anterior = _unit(np.cross(long_axis, septum))
    return VentricularFrame(
        apex_node=apex_node,
        apex_mm=apex.copy(),
        base_centre_mm=base_centre,
        long_axis=long_axis,
        septum=septum,
        anterior=anterior,
        septum_source=source,
        cavity_apex_height_mm=cavity_apex,
        base_height_mm=base_height,
        centreline_heights_mm=centre_heights,
        centreline_mm=centreline,
    )


def _apicobasal(mesh: Mesh, stiffness, frame: VentricularFrame) -> tuple[np.ndarray, np.ndarray]:
    """(raw Laplace ψ, ψ remapped to normalised geodesic distance from the apex)."""
    fixed = surface_nodes(mesh, "base")
    fixed[frame.apex_node] = True
    values = surface_nodes(mesh, "base").astype(np.float64)
    psi = DirichletLaplace(stiffness, fixed).solve(values)
    # geodesics on the epicardium from the apex to points spread round the base rim
    epi = mesh.surfaces["epi"]
    graph = edge_graph(mesh.points_mm, epi)
    distance, predecessors = csgraph.dijkstra(
        graph, indices=frame.apex_node, return_predecessors=True
    )
    rim = np.intersect1d(np.unique(epi), np.unique(mesh.surfaces["base"]))
    rim = rim[np.isfinite(distance[rim])]
    if rim.size == 0:
        raise SurfaceError("the epicardium does not reach the base: no apex-to-base path")
    angle = frame.rotational(mesh.points_mm[rim])
    rim = rim[np.argsort(angle)][:: max(1, rim.size // 24)]
    samples_psi, samples_s = [0.0, 1.0], [0.0, 1.0]
    for end in rim:
        path = [int(end)]
        while path[-1] != frame.apex_node and predecessors[path[-1]] >= 0:
            path.append(int(predecessors[path[-1]]))
        path = np.array(path)
        samples_psi.extend(psi[path].tolist())
        samples_s.extend((distance[path] / distance[end]).tolist())
    samples_psi, samples_s = np.array(samples_psi), np.array(samples_s)
    # a monotone map ψ → s from the means in 50 bins of ψ
    bins = np.clip((samples_psi * 50).astype(int), 0, 49)
    counts = np.bincount(bins, minlength=50)
    mean_psi = np.bincount(bins, weights=samples_psi, minlength=50)[counts > 0] / counts[counts > 0]
    mean_s = np.bincount(bins, weights=samples_s, minlength=50)[counts > 0] / counts[counts > 0]
    mean_s = np.maximum.accumulate(mean_s)
    xp = np.concatenate([[0.0], mean_psi, [1.0]])
    fp = np.concatenate([[0.0], mean_s, [1.0]])
    return psi, np.clip(np.interp(psi, xp, fp), 0.0, 1.0)


def ventricular_coordinates(mesh: Mesh, *, septum_point_mm=None) -> VentricularFields:
    """Transmural, apico-basal and rotational coordinates of a ventricular mesh with named
    surfaces (``endo``, ``epi``, ``base``; plus ``rv-endo`` / ``rv-septum`` for a
    biventricular mesh). See the module docstring for the definitions."""
    _require(mesh, VENTRICLE_SURFACES)
    mesh, _ = wind_ventricular_surfaces_outward(mesh)
    notes: list[str] = []
    stiffness = stiffness_matrix(mesh.points_mm, mesh.tets)
    endo = surface_nodes(mesh, "endo")
    epi = surface_nodes(mesh, "epi")
    rv = surface_nodes(mesh, *BIV_SURFACES)
    biv = is_biventricular(mesh)
    # Bayer 2012 fields; a node on an endocardium and the epicardium (an RV insertion)
    # counts as endocardial
    fixed = endo | epi | rv
    walls = DirichletLaplace(stiffness, fixed)
    epi_only = epi & ~endo & ~rv
    phi_epi = walls.solve(epi_only.astype(np.float64))
    if biv:
        phi_lv = walls.solve((endo & ~rv).astype(np.float64))
        phi_rv = walls.solve(rv.astype(np.float64))
        lv, transmural = _uvc_transmural(mesh, stiffness, endo, epi, rv)
    else:
        phi_lv = 1.0 - phi_epi
        phi_rv = np.zeros(mesh.n_points)
        lv = np.ones(mesh.n_points, dtype=bool)
        transmural = phi_epi.copy()
    frame = _frame(mesh, septum_point_mm, lv, notes)
    psi, apicobasal = _apicobasal(mesh, stiffness, frame)
    return VentricularFields(
        transmural=np.clip(transmural, 0.0, 1.0),
        apicobasal=apicobasal,
        rotational=frame.rotational(mesh.points_mm),
        lv=lv,
        psi=psi,
        phi_epi=phi_epi,
        phi_lv=phi_lv,
        phi_rv=phi_rv,
        frame=frame,
        notes=notes,
    )


def _uvc_transmural(mesh: Mesh, stiffness, endo, epi, rv):
    """LV/RV split (UVC transventricular coordinate) and the transmural coordinate of each."""
    septum = surface_nodes(mesh, "rv-septum")
    rv_free = surface_nodes(mesh, "rv-endo") & ~septum
    fixed = endo | septum | rv_free
    values = np.where(septum, 0.5, np.where(rv_free, 1.0, 0.0))
    transventricular = DirichletLaplace(stiffness, fixed).solve(values)
    lv_node = transventricular <= 0.51  # rv-septum (0.5) belongs to the LV, as in UVC
    lv_element = np.all(lv_node[mesh.tets], axis=1)
    transmural = np.full(mesh.n_points, np.nan)
    parts = []
    for in_part in (lv_element, ~lv_element):
        tets = mesh.tets[in_part]
        active = np.zeros(mesh.n_points, dtype=bool)
        active[tets.ravel()] = True
        parts.append((tets, active))
    (lv_tets, lv_active), (rv_tets, rv_active) = parts
    cut = lv_active & rv_active
    k_lv = stiffness_matrix(mesh.points_mm, lv_tets, mesh.n_points)
    lv_ones = (epi | septum | cut) & ~endo
    lv_solution = DirichletLaplace(k_lv, (endo | lv_ones) & lv_active, lv_active).solve(
        lv_ones.astype(np.float64)
    )
    transmural[lv_active] = lv_solution[lv_active]
    if rv_tets.size:
        k_rv = stiffness_matrix(mesh.points_mm, rv_tets, mesh.n_points)
        rv_zero = rv_free & rv_active
        rv_one = epi & rv_active & ~rv_zero
        rv_solution = DirichletLaplace(k_rv, rv_zero | rv_one, rv_active).solve(
            rv_one.astype(np.float64)
        )
        only_rv = rv_active & ~lv_active
        transmural[only_rv] = rv_solution[only_rv]
    return lv_active, transmural


# --- atrial coordinates ----------------------------------------------------------------------


@dataclass
class AtrialFields:
    """``transmural`` (0 endo, 1 epi) and ``valve_vein`` (0 valve rim, 1 vein rims)."""

    transmural: np.ndarray
    valve_vein: np.ndarray
    valve: str
    veins: list[str]


def atrial_openings(mesh: Mesh) -> tuple[str, list[str]]:
    """(valve surface name, vein surface names) of an atrial mesh: every surface other than
    ``endo`` / ``epi`` is an opening; the valve is the one named like a valve, else the
    largest."""
    openings = [n for n in mesh.surfaces if n not in ("endo", "epi") and len(mesh.surfaces[n])]
    if len(openings) < 2:
        raise SurfaceError(
            f"an atrial mesh needs a valve and at least one vein opening besides 'endo' and "
            f"'epi'; its surfaces are: {', '.join(sorted(mesh.surfaces)) or 'none'}"
        )
    named = [n for n in openings if n.lower() in VALVE_NAMES]
    if named:
        valve = named[0]
    else:
        areas = {
            n: float(triangle_normals_and_areas(mesh.points_mm, mesh.surfaces[n])[1].sum())
            for n in openings
        }
        valve = max(openings, key=lambda n: (areas[n], n))
    return valve, sorted(n for n in openings if n != valve)


def atrial_coordinates(mesh: Mesh) -> AtrialFields:
    """Transmural and valve → vein coordinates of an atrial mesh with named surfaces."""
    _require(mesh, ("endo", "epi"))
    valve, veins = atrial_openings(mesh)
    stiffness = stiffness_matrix(mesh.points_mm, mesh.tets)
    endo, epi = surface_nodes(mesh, "endo"), surface_nodes(mesh, "epi")
    transmural = DirichletLaplace(stiffness, endo | epi).solve((epi & ~endo).astype(np.float64))
    valve_nodes, vein_nodes = surface_nodes(mesh, valve), surface_nodes(mesh, *veins)
    valve_vein = DirichletLaplace(stiffness, valve_nodes | vein_nodes).solve(
        (vein_nodes & ~valve_nodes).astype(np.float64)
    )
    return AtrialFields(np.clip(transmural, 0, 1), np.clip(valve_vein, 0, 1), valve, veins)
