"""Atrial meshes: the blood-pool surface extruded outward through the thin wall.

An atrial wall is 2–3 mm thick against 1.25–2.5 mm voxels, so its mask breaks into pieces
and cannot be meshed directly. As CemrgApp and AugmentA do, the mesh is built from the
blood pool instead:

1. the blood-pool mask's smoothed signed distance (mm) gives a smooth endocardium; a thin
   shell inside it is filled by isosurface stuffing (:mod:`.stuffing`) only to obtain
   well-shaped surface triangles of the target edge on that endocardium;
2. openings (pulmonary veins, mitral valve) are where no wall lies outside the endocardium:
   the wall mask is sampled along each vertex normal; regions without wall larger than
   ``min_opening_mm2`` are cut out (smaller gaps are a thin wall the segmentation missed,
   and stay closed);
3. the remaining surface is extruded along smoothed vertex normals by the wall thickness
   in ``layers`` layers of prisms, each split into three tetrahedra conformingly; where the
   surface curves tightly (the grooves where the veins join the body) the converging,
   tilted columns leave a few flat elements, so the nodes inside the wall and on the
   epicardium around the worst elements are then relaxed (:mod:`.improve`; the endocardium,
   the opening rims, the layers and every tag stay as they are);
4. every element takes the tissue class of its surface column, from the LGE image intensity
   ratio sampled along the normal through the wall (IIR = LGE / mean blood pool; Benito
   2017: fibrosis ≥ 1.20, dense ≥ 1.32) or, without an image, from the label map sampled
   the same way.

Named surfaces: ``endo``, ``epi``, and one per opening rim (the cut face of the wall around
it): the largest ``mitral``, the others ``vein-1`` … ``vein-N`` by decreasing size.
"""

from __future__ import annotations

import logging

import numpy as np

from cardiotwin.meshing.from_labels import MeshingError, finish_mesh
from cardiotwin.meshing.improve import improve_min_dihedral
from cardiotwin.meshing.mesh import Mesh, boundary_triangles
from cardiotwin.meshing.quality import element_volumes_mm3, shared_facet_components
from cardiotwin.meshing.stuffing import lattice_spacing_for_edge, split_prisms, stuff
from cardiotwin.meshing.surfaces import (
    mm_to_voxel,
    sample_along_normals,
    triangle_normals,
    vertex_normals,
    voxel_to_mm,
)
from cardiotwin.meshing.tags import BORDER_ZONE, DENSE_SCAR, HEALTHY, LESION

log = logging.getLogger(__name__)

#: a region without wall smaller than this (mm²) is a gap in the wall mask, not an opening
#: (a pulmonary vein of 8 mm diameter has 50 mm²)
MIN_OPENING_MM2 = 20.0
#: vertex-normal smoothing passes (neighbour averaging) before the extrusion at 1 mm edge, so
#: that columns do not cross where the surface curves more tightly than the wall is thick;
#: scaled by 1 / edge² so that the smoothing acts over the same distance (~9 mm) at any edge
NORMAL_SMOOTHING_PASSES_AT_1MM = 80
#: if columns still cross after that, the smoothing is repeated up to this many times
MAX_EXTRA_SMOOTHING_ROUNDS = 3


def signed_distance_mm(mask: np.ndarray, affine: np.ndarray, smoothing_mm: float) -> np.ndarray:
    """Signed distance (mm, negative inside) to the boundary between ``mask`` and the rest,
    on the mask's grid, smoothed with a Gaussian of ``smoothing_mm``."""
    from scipy import ndimage

    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    mask = np.asarray(mask, dtype=bool)
    half = 0.5 * float(spacing.min())
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing) - half
    inside = ndimage.distance_transform_edt(mask, sampling=spacing) - half
    distance = np.where(mask, -inside, outside)
    if smoothing_mm > 0:
        distance = ndimage.gaussian_filter(distance, smoothing_mm / spacing)
    return distance


class DistanceField:
    """Smoothed signed distance (mm, negative inside) to a mask's boundary, sampled
    trilinearly anywhere in scanner mm (the grid is padded so that the field is right up to
    ``margin_mm`` outside the mask's image)."""

    def __init__(self, mask: np.ndarray, affine: np.ndarray, smoothing_mm: float,
                 margin_mm: float):  # fmt: skip
        affine = np.asarray(affine, dtype=np.float64)
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        pad = int(np.ceil(margin_mm / spacing.min())) + 3
        self.distance = signed_distance_mm(np.pad(mask, pad), affine, smoothing_mm)
        self.affine = affine.copy()
        self.affine[:3, 3] = voxel_to_mm(affine, -float(pad) * np.ones((1, 3)))[0]

    def __call__(self, points_mm: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        voxels = mm_to_voxel(self.affine, points_mm).T
        return ndimage.map_coordinates(self.distance, voxels, order=1, mode="nearest")


def endocardial_surface(
    field: DistanceField, lower_mm: np.ndarray, upper_mm: np.ndarray, edge_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """Well-shaped triangles of the target edge on the zero level of ``field`` (the
    smoothed blood-pool boundary) inside the box; normals point out of the blood pool."""
    h = lattice_spacing_for_edge(edge_mm)
    depth = 2.0 * h

    def shell_phi(points_mm: np.ndarray) -> np.ndarray:
        value = field(points_mm)
        return np.maximum(value, -depth - value)

    points, tets = stuff(shell_phi, lower_mm, upper_mm, h)
    if tets.size == 0:
        raise MeshingError("the blood pool is too small to mesh at this edge length")
    triangles, _ = boundary_triangles(tets)
    value = field(points)
    on_endo = np.abs(value) < np.abs(value + depth)
    triangles = triangles[on_endo[triangles].all(axis=1)]
    used = np.unique(triangles)
    return points[used], np.searchsorted(used, triangles)


def _vertex_neighbours(n: int, triangles: np.ndarray):
    from scipy.sparse import coo_matrix

    rows = triangles[:, [0, 1, 2, 1, 2, 0]].reshape(-1)
    cols = triangles[:, [1, 2, 0, 0, 1, 2]].reshape(-1)
    adjacency = coo_matrix((np.ones(rows.size), (rows, cols)), (n, n)).tocsr()
    adjacency.data[:] = 1.0
    return adjacency


def smoothed_normals(
    points: np.ndarray, triangles: np.ndarray, passes: int, start: np.ndarray | None = None
) -> np.ndarray:
    """Vertex normals (or the unit vectors ``start``) averaged with their neighbours
    ``passes`` times (unit length)."""
    normals = vertex_normals(points, triangles) if start is None else start.copy()
    adjacency = _vertex_neighbours(len(points), triangles)
    for _ in range(passes):
        normals = normals + adjacency @ normals
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
    return normals


def extrude(
    points: np.ndarray,
    triangles: np.ndarray,
    directions: np.ndarray,
    thickness_mm: float,
    n_layers: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prism layers from a surface: node sheet ``k`` is ``points + k / n_layers ×
    thickness_mm × directions``; each prism is split into three tetrahedra (conformingly).

    Returns ``(points (n·(L+1), 3), tets, surface triangle of each element)``. Elements are
    oriented as they would be positive in a right prism over their triangle (extruded along
    the triangle's own normal, towards ``directions``), so an element with a non-positive
    volume is one whose column crossed its neighbours': it is left negative for the caller
    to see, not flipped into a valid-looking overlap.
    """
    nv = len(points)
    layered = np.concatenate(
        [points + (layer / n_layers) * thickness_mm * directions for layer in range(n_layers + 1)]
    )
    prisms = split_prisms(triangles, triangles + nv)  # same split in every layer
    # orientation in the right prism over each triangle (rows: 3 blocks of one per triangle)
    face = triangle_normals(points, triangles)
    towards = np.sign(np.einsum("ij,ij->i", face, directions[triangles].sum(axis=1)))
    face *= np.where(towards < 0, -1.0, 1.0)[:, None]
    lift = np.tile(face, (3, 1))[:, None, :] * (prisms >= nv)[..., None]
    negative = element_volumes_mm3(points[prisms % nv] + lift * thickness_mm / n_layers) < 0
    prisms[negative] = prisms[negative][:, [0, 1, 3, 2]]
    tets = np.concatenate([prisms + layer * nv for layer in range(n_layers)])
    column = np.tile(np.arange(len(triangles)), 3 * n_layers)
    return layered, tets, column


def _improve_extrusion(
    layered: np.ndarray, tets: np.ndarray, triangles: np.ndarray, nv: int, n_layers: int
) -> np.ndarray:
    """Node positions after relaxing the worst elements (:mod:`.improve`): the endocardium
    and the opening rims stay where they are, epicardial nodes slide along the epicardium,
    the nodes inside the wall move freely; connectivity (tags, surfaces, layers) is kept."""
    edges = np.sort(triangles[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2), axis=1)
    keys, counts = np.unique(edges[:, 0] * nv + edges[:, 1], return_counts=True)
    rim = np.zeros(nv, dtype=bool)
    rim[keys[counts == 1] // nv] = rim[keys[counts == 1] % nv] = True
    sheet = np.arange(len(layered)) // nv
    fixed = (sheet == 0) | np.tile(rim, n_layers + 1)
    slide = np.zeros_like(layered)
    top = n_layers * nv
    slide[top:] = vertex_normals(layered, triangles + top)[top:]
    improved, _ = improve_min_dihedral(layered, tets, fixed=fixed, slide_normals=slide)
    return improved


def _triangle_components(triangles: np.ndarray) -> tuple[int, np.ndarray]:
    """Components of triangles joined through shared edges."""
    return shared_facet_components(triangles, np.array([[0, 1], [1, 2], [2, 0]]))


def _areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    x = points[triangles]
    return 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1)


def find_openings(
    points: np.ndarray,
    triangles: np.ndarray,
    normals: np.ndarray,
    wall: np.ndarray,
    wall_affine: np.ndarray,
    thickness_mm: float,
    min_opening_mm2: float = MIN_OPENING_MM2,
) -> np.ndarray:
    """Bool per triangle: true where the surface lies in an opening (no wall outside it)."""
    from scipy import ndimage

    spacing = np.linalg.norm(np.asarray(wall_affine)[:3, :3], axis=0)
    presence = ndimage.gaussian_filter(np.asarray(wall, dtype=np.float32), 0.5 / spacing * 1.0)
    found = sample_along_normals(
        presence, wall_affine, points, normals, band_mm=(-0.5, thickness_mm + 1.0), reduce="max"
    )
    found = np.nan_to_num(found, nan=0.0)
    open_triangle = found[triangles].mean(axis=1) < 0.5
    if not open_triangle.any():
        return open_triangle
    candidates = np.nonzero(open_triangle)[0]
    count, label = _triangle_components(triangles[candidates])
    area = np.bincount(label, weights=_areas(points, triangles[candidates]), minlength=count)
    small = area[label] < min_opening_mm2
    open_triangle[candidates[small]] = False
    return open_triangle


def mesh_atrium(
    blood: np.ndarray,
    wall: np.ndarray,
    affine: np.ndarray,
    edge_mm: float,
    *,
    thickness_mm: float,
    layers: int = 2,
    smoothing_mm: float = 1.0,
    lge: np.ndarray | None = None,
    lge_affine: np.ndarray | None = None,
    blood_mean: float | None = None,
    fibrosis_iir: float = 1.20,
    dense_iir: float = 1.32,
    labels: np.ndarray | None = None,
    max_island_fraction: float = 0.05,
    image_affine: np.ndarray | None = None,
) -> Mesh:
    """Tagged tetrahedral atrial wall from the blood pool (points in scanner mm).

    ``blood``, ``wall`` (and ``labels``): masks on one near-isotropic grid with voxel →
    scanner-mm ``affine``. ``thickness_mm``: the wall thickness extruded outward, in at least
    ``layers`` element layers (more when the edge is shorter than the layer). Tissue tags
    from ``lge`` (any grid, ``lge_affine``) as IIR = mean along the normal through the wall /
    ``blood_mean``; otherwise from ``labels`` (maximum along the normal); otherwise healthy.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if not np.any(blood):
        raise MeshingError(
            "has no blood pool to build the atrium from; give the blood-pool mask (--blood)"
        )
    if not np.any(wall):
        raise MeshingError("has no wall (every voxel is background); give the atrial wall mask")
    log.info("meshing: endocardium from the blood pool at %.3g mm edge", edge_mm)
    field = DistanceField(blood, affine, smoothing_mm, margin_mm=thickness_mm + 4.0)
    index = np.argwhere(blood)
    lo, hi = index.min(axis=0) - 2, index.max(axis=0) + 2
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])], dtype=np.float64)  # fmt: skip
    corners_mm = voxel_to_mm(affine, corners)
    points, triangles = endocardial_surface(
        field, corners_mm.min(axis=0), corners_mm.max(axis=0), edge_mm
    )
    passes = int(np.ceil(NORMAL_SMOOTHING_PASSES_AT_1MM / edge_mm**2))
    normals = smoothed_normals(points, triangles, passes)
    opening = find_openings(points, triangles, normals, wall, affine, thickness_mm)
    n_openings = _triangle_components(triangles[opening])[0] if opening.any() else 0
    triangles = triangles[~opening]
    if triangles.size == 0:
        raise MeshingError("no wall lies outside the blood pool; check the wall and blood masks")
    used = np.unique(triangles)
    points, normals = points[used], normals[used]
    triangles = np.searchsorted(used, triangles)
    n_layers = max(int(layers), int(np.ceil(thickness_mm / edge_mm - 0.25)))
    log.info(
        "meshing: %d openings cut; extruding %.2f mm in %d layers",
        n_openings,
        thickness_mm,
        n_layers,
    )
    layered, tets, column = extrude(points, triangles, normals, thickness_mm, n_layers)
    for _ in range(MAX_EXTRA_SMOOTHING_ROUNDS):
        folded = np.count_nonzero(element_volumes_mm3(layered[tets]) <= 0)
        if not folded:
            break
        # columns cross where the surface curves more tightly than the wall is thick
        log.info("meshing: %d elements folded; smoothing the extrusion directions more", folded)
        normals = smoothed_normals(points, triangles, passes, start=normals)
        layered, tets, column = extrude(points, triangles, normals, thickness_mm, n_layers)
    layered = _improve_extrusion(layered, tets, triangles, len(points), n_layers)

    region = np.full(len(triangles), HEALTHY, dtype=np.int32)
    band = (0.0, thickness_mm)
    if lge is not None:
        if not (blood_mean and blood_mean > 0):
            raise MeshingError("the mean blood-pool intensity must be positive for the IIR")
        value = sample_along_normals(
            lge, affine if lge_affine is None else lge_affine, points, normals,
            band_mm=band, reduce="mean",
        )  # fmt: skip
        iir = np.nan_to_num(value, nan=0.0)[triangles].mean(axis=1) / blood_mean
        region[iir >= fibrosis_iir] = BORDER_ZONE
        region[iir >= dense_iir] = DENSE_SCAR
    elif labels is not None:
        value = sample_along_normals(
            np.asarray(labels, dtype=np.float64), affine, points, normals, band_mm=band,
            reduce="max", order=0,
        )  # fmt: skip
        region = np.rint(np.nanmax(np.nan_to_num(value, nan=HEALTHY)[triangles], axis=1))
        region = np.clip(region, HEALTHY, LESION).astype(np.int32)  # a lesion stays one
    region = region[column]

    mesh = Mesh(points_mm=layered, tets=tets, region=region)
    mesh.surfaces = _named_surfaces(mesh, len(points), n_layers)
    mesh.affine = affine if image_affine is None else np.asarray(image_affine, dtype=np.float64)
    return finish_mesh(
        mesh,
        max_island_fraction,
        fragments="the atrial surface is in fragments; check the blood-pool mask",
        invalid="the extrusion produced an invalid mesh: the wall is thicker than the surface's "
        "curvature allows; give a smaller mesh.atrial_wall_mm or more smoothing",
    )


def _named_surfaces(mesh: Mesh, nv: int, n_layers: int) -> dict[str, np.ndarray]:
    """endo (layer 0), epi (top layer) and one rim surface per opening."""
    triangles, _ = boundary_triangles(mesh.tets)
    layer = triangles // nv
    endo = (layer == 0).all(axis=1)
    epi = (layer == n_layers).all(axis=1)
    surfaces = {"endo": triangles[endo], "epi": triangles[epi]}
    rim = triangles[~endo & ~epi]
    if rim.size:
        count, label = _triangle_components(rim % nv)
        area = np.bincount(label, weights=_areas(mesh.points_mm, rim), minlength=count)
        order = np.argsort(-area, kind="stable")
        for rank, component in enumerate(order):
            name = "mitral" if rank == 0 else f"vein-{rank}"
            surfaces[name] = rim[label == component]
    return surfaces
